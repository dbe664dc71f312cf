#!/usr/bin/env bash
# Issue 24's GPU measurement in one call of the device tool (a lent H100/H200): command
# `bash benchmarks/gpu_run.sh [PART ...]`, carry [".gpu"], timeout_s 600 — after `benchmarks/gpu_kit.py` made
# .gpu/ here. PARTs, in this order by default (each with its own time limit, so a hang in one still leaves the
# others' figures; to leave device time for a rerun, run `flex` alone first, timeout_s 400):
#
# flex: train_throughput.py --gpu (seq 2048 × batch 8, bf16) with per-document attention through FlexAttention
#    block masks: the run_clm_no_trainer reference (sdpa, whole blocks), cpt-eager and cpt-compiled, side by side;
# sdpa: the compiled loop again with today's sdpa 4-D mask, on the same machine, for the comparison;
# profile: the compiled FlexAttention loop under torch.profiler: its operator table by GPU time, profile-cpt-compiled.txt.
# First it installs the kit's wheels and checks that the benchmark's imports resolve. Logs land in $OUT (what
# the device tool brings back) or .gpu/out.
set -uo pipefail
cd "$(dirname "$0")/.."
KIT=${CPT_GPU_KIT:-.gpu}
OUT=${OUT:-$KIT/out}
[ -d "$KIT/whl" ] && [ -d "$KIT/model" ] && [ -f "$KIT/data/manifest.json" ] \
  || { echo "no kit in $KIT: run \`.venv/bin/python benchmarks/gpu_kit.py\` first, and carry .gpu"; exit 2; }
mkdir -p "$OUT"
PARTS=${*:-flex sdpa profile}
for part in $PARTS; do
  case $part in flex|sdpa|profile) ;; *) echo "unknown part '$part': expected flex, sdpa or profile"; exit 2 ;; esac
done
PY=${PYTHON:-python3}
SITE=${CPT_GPU_SITE:-/tmp/cpt-site}
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$KIT"/whl/*.whl \
  || { echo "installing the kit's wheels failed"; exit 3; }
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm \
  --format=csv 2>&1 | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers, accelerate, pydantic, cpt_utils.train, cpt_utils.attention; \
print('python', __import__('sys').version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'pydantic', pydantic.__version__)" \
  2>&1 | tee "$OUT/versions.txt" || { echo "the benchmark's imports do not resolve: see $OUT/versions.txt"; exit 4; }

BENCH=(benchmarks/train_throughput.py --model-dir "$KIT/model" --random-weights --data-dir "$KIT/data"
       --steps "${CPT_GPU_STEPS:-8}" --warmup "${CPT_GPU_WARMUP:-3}" ${CPT_GPU_ARGS:---gpu})
status=0
for part in $PARTS; do
  case $part in
    flex) timeout "${CPT_GPU_FLEX_S:-330}" $PY "${BENCH[@]}" --attn flex_attention \
            --loops ${CPT_GPU_LOOPS:-reference cpt-eager cpt-compiled} 2>&1 | tee "$OUT/flex_attention.log" || status=5 ;;
    sdpa) timeout "${CPT_GPU_SDPA_S:-120}" $PY "${BENCH[@]}" --attn sdpa --loops cpt-compiled \
            2>&1 | tee "$OUT/sdpa.log" || status=6 ;;
    profile) timeout "${CPT_GPU_PROFILE_S:-120}" $PY "${BENCH[@]}" --attn flex_attention --loops cpt-compiled \
               --steps 3 --warmup 2 --profile "$OUT" 2>&1 | tee "$OUT/profile.log" || status=7 ;;
  esac
done
exit $status
