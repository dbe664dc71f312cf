"""Training throughput: cpt's new default loop vs its old settings vs the `run_clm_no_trainer.py` way.

Same model (the packaged SmolLM2-135M), same data (the quickstart's corpus packed at --seq-len), same
sequence length and micro-batch. Each loop runs in its own process (peak memory is per process) for
--warmup steps and then --steps timed optimizer steps; the figure is the median step time.

- reference:   `run_clm_no_trainer.py`'s structure: `group_texts` blocks in a DataLoader with
               `default_data_collator`, `accelerator.prepare(model, optimizer, dataloader, scheduler)`,
               `accelerator.accumulate`, `accelerator.backward`, a transformers LR scheduler, foreach
               AdamW, in the precision cpt's policy picks for this machine (fp32 or bf16 autocast).
- cpt-old:     `cpt_utils.train.train` with the settings before issue 11: bf16 autocast on any CPU,
               foreach AdamW, eager (per-document attention on, as in every cpt row).
- cpt-eager:   the new precision policy (``cpt_utils.precision``) and fused AdamW, eager.
- cpt-compiled: the same with `torch.compile` of the whole model (compile time reported apart: `compile_s`).
- cpt-regions: the same with the decoder layers compiled (`train.compile: regions`, one graph for all layers).
- cpt-eager-whole, cpt-regions-whole: cpt-eager and cpt-regions without the row blocks
               (``cpt_utils.row_blocks``; ``CPT_ROW_BLOCKS=off``): every Linear product in one piece.

    .venv/bin/python benchmarks/train_throughput.py [--steps 3] [--warmup 1] [--old-steps 1] [--batch 4]
    .venv/bin/python benchmarks/train_throughput.py --loops reference cpt-regions --steps 8 --warmup 2 --rounds 3
    .venv/bin/python benchmarks/train_throughput.py --gpu   # = --device cuda --seq-len 2048 --batch 8
    .venv/bin/python benchmarks/train_throughput.py --gpu --attn flex_attention

``--attn flex_attention``: cpt's loops run transformers' FlexAttention and isolate documents with a block
mask (``cpt_utils.attention``, built outside the model's forward with a compiled ``create_block_mask``, so
the compiled loop receives it as an input); the reference stays `run_clm_no_trainer.py`'s sdpa over whole
blocks (``--reference-attn`` to change it). CUDA only: FlexAttention has no backward on CPU (``train.setup``
refuses it there).

On a machine that cannot install the packaged model (a lent GPU without a package index), give the
architecture and tokenizer as a folder and let the benchmark initialise the weights at random; throughput
does not depend on the weights' values, and every loop gets the same ones:

    python benchmarks/train_throughput.py --gpu --model-dir CONFIG_AND_TOKENIZER --random-weights \
        --data-dir PREPARED_DATA    # data prepared elsewhere at the same --seq-len with the same tokenizer

Each loop also prints what 10⁹ training tokens cost in hours at its measured tokens/s. ``--rounds N`` runs the
loops N times in turn and prints the ratio to the reference within each round, with their median and range: a
shared machine's speed drifts between the minutes two loops run in, so one round's ratio can be off by ±5%.

MFU = tokens/s × (6N + 12·L·d·T) FLOPs per token (``cpt_utils.train.flops_per_token``) ÷ the device's
peak from ``cpt_utils.hardware`` (CPU: the faster of its measured bf16/fp32 matmul peaks, cached once
per machine; GPU: the exact-name bf16 table, unknown → MFU "unknown").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))



def _data_dir(args) -> Path:
    """The prepared quickstart data at --seq-len: --data-dir when given, else prepared here once."""
    from cpt_utils.paths import runs_root

    return Path(args.data_dir) if args.data_dir else runs_root() / f"bench-train-{args.seq_len}" / "data"


def _params(args):
    """The quickstart's parameters at --seq-len, with --model-dir (a local folder) and --attn applied.

    --model-dir, --seq-len and --attn go in before validation, so the file is checked against the model the
    loops run (its positions against --seq-len) and never reads the packaged GGUF, whose check imports
    ``gguf``: a lent GPU has neither the GGUF nor ``gguf`` (``gpu_kit.py``)."""
    from cpt_utils.config import load_params

    model = {"attn_implementation": args.attn}
    if args.model_dir:
        model |= {"source": "local", "name": str(Path(args.model_dir).resolve())}
    return load_params(ROOT / "params/quickstart.yaml",
                       overrides={"model": model, "preprocess": {"seq_len": args.seq_len}})


def _model(args):
    """The benchmark's model (fp32 weights; the packaged SmolLM2-135M unless --model-dir) — the one cpt's loop loads."""
    from cpt_utils.modeling import load_model

    return load_model(_params(args).model).to(args.device)


def copy_config_and_tokenizer(source_dir: Path, out_dir: Path) -> Path:
    """``source_dir``'s files but its weights: the architecture and the tokenizer, a few MiB that travel
    where the weights cannot (``gpu_kit.py``) and that ``write_random_weights`` gives weights again."""
    import shutil

    out_dir.mkdir(parents=True, exist_ok=True)
    for f in source_dir.iterdir():
        if f.is_file() and not f.name.endswith((".safetensors", ".bin", ".gguf")):
            shutil.copy2(f, out_dir / f.name)
    return out_dir


def write_random_weights(source_dir: Path, out_dir: Path, seed: int = 0) -> Path:
    """A model folder with ``source_dir``'s config and tokenizer and seeded random weights (fp32).

    For machines where the packaged weights cannot be installed: step time depends on shapes, not values."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    stamp = json.dumps({"config": json.loads((source_dir / "config.json").read_text()), "seed": seed}, sort_keys=True)
    if (out_dir / "model.safetensors").is_file() and (out_dir / "random_from.json").is_file() \
            and (out_dir / "random_from.json").read_text() == stamp:
        return out_dir  # written before from the same config and seed: reuse
    copy_config_and_tokenizer(source_dir, out_dir)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source_dir), dtype=torch.float32)
    model.save_pretrained(out_dir)
    (out_dir / "random_from.json").write_text(stamp)
    return out_dir


def _blocks(args, n: int):
    """Token blocks from the quickstart training split (prepared once by the parent process)."""
    from cpt_utils.packing import PackedSplit

    seq_len = args.seq_len
    split = PackedSplit(_data_dir(args) / "train")
    import numpy as np

    stream = np.concatenate([split[i][0] for i in range(len(split))])
    if len(stream) < n * seq_len:
        raise SystemExit(f"the quickstart corpus holds {len(stream):,} tokens, fewer than {n} blocks of {seq_len}: "
                         "use fewer --steps or a smaller --batch")
    blocks = [stream[i:i + seq_len] for i in range(0, len(stream) - seq_len, seq_len)][:n]
    return blocks


def _config_and_size(args):
    """The model's config and parameter count, from a weightless (meta-device) copy."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from cpt_utils.modeling import resolve_model_dir

    config = AutoConfig.from_pretrained(resolve_model_dir(_params(args).model))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return config, sum(p.numel() for p in model.parameters())


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _new_precision(device: str) -> str:
    from cpt_utils.precision import resolve_precision

    return resolve_precision("auto", device)


def run_reference(args) -> list[float]:
    import torch
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from transformers import default_data_collator, get_scheduler

    from cpt_utils.precision import accelerate_mixed_precision

    precision = accelerate_mixed_precision(_new_precision(args.device))
    accelerator = Accelerator(mixed_precision=precision, cpu=args.device == "cpu")
    model = _model(args)
    blocks = _blocks(args, (args.steps + args.warmup) * args.batch)
    dataset = [{"input_ids": b.tolist(), "attention_mask": [1] * len(b), "labels": b.tolist()} for b in blocks]
    loader = DataLoader(dataset, shuffle=False, collate_fn=default_data_collator, batch_size=args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    sched = get_scheduler("linear", optimizer=opt, num_warmup_steps=0, num_training_steps=args.steps + args.warmup)
    model, opt, loader, sched = accelerator.prepare(model, opt, loader, sched)
    model.train()
    times = []
    start = time.perf_counter()
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
        _sync(args.device)
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return times[args.warmup:]


#: train.* overrides of each cpt loop (micro-batch, budget and logging are set by run_cpt)
CPT_LOOPS = {
    "cpt-old": {"precision": "bf16", "fused_adamw": "off", "compile": False},
    "cpt-eager": {"precision": "auto", "fused_adamw": "auto", "compile": False},
    "cpt-compiled": {"precision": "auto", "fused_adamw": "auto", "compile": True},
    "cpt-regions": {"precision": "auto", "fused_adamw": "auto", "compile": "regions"},
    "cpt-eager-whole": {"precision": "auto", "fused_adamw": "auto", "compile": False},
    "cpt-regions-whole": {"precision": "auto", "fused_adamw": "auto", "compile": "regions"},
}
#: the environment a loop runs in besides its train.* settings: "-whole" loops without cpt_utils.row_blocks
LOOP_ENV = {"reference": {"CPT_MALLOC_TUNING": "off"}, "cpt-eager-whole": {"CPT_ROW_BLOCKS": "off"},
            "cpt-regions-whole": {"CPT_ROW_BLOCKS": "off"}}


def run_cpt(args) -> tuple[list[float], dict]:
    from cpt_utils.train import train

    steps, warmup = (args.old_steps, args.old_warmup) if args.worker == "cpt-old" else (args.steps, args.warmup)
    params = _params(args)
    params = params.model_copy(update={"train": params.train.model_copy(update={
        "token_budget": (steps + warmup) * args.batch * args.seq_len, "milestones": [], "eval_every_tokens": None,
        "eval_max_sequences": 1, "micro_batch_size": args.batch, "resume": "never", **CPT_LOOPS[args.worker]})})
    if args.set:  # validated like a parameter file: a wrong key or value names itself
        train_params = type(params.train).model_validate({**params.train.model_dump(), **_overrides(args.set)})
        params = params.model_copy(update={"train": train_params})
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(params, tmp, data_dir=_data_dir(args), progress=False)
        rows = [json.loads(l) for l in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    return [r["time_s"] for r in train_rows][warmup:], {
        "precision": summary["precision"], "compile_s": summary["compile_s"], "attention": summary.get("attention"),
        "row_blocks": summary.get("row_blocks"), "losses": [round(r["loss"], 5) for r in train_rows]}


def _overrides(pairs: list[str]) -> dict:
    """``key=value`` pairs of train.* settings (values read as YAML: ``false``, ``0``, ``bf16``)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair}: expected train_key=value, e.g. per_document_attention=false")
        out[key.strip()] = yaml.safe_load(value)
    return out


@contextlib.contextmanager
def profiled(args):
    """With ``--profile DIR``: torch.profiler around the loop's whole run (warm-up and timed steps alike, so
    shares, not absolute times, are the reading) and its operator table, by time on the device, written to
    ``DIR/profile-<loop>.txt`` — where a GPU step's time goes, for the next change."""
    if not args.profile:
        yield
        return
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = args.device == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as prof:
        yield
    if cuda:
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total",
                                      row_limit=40, max_name_column_width=70)
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"profile-{args.worker}.txt").write_text(f"{args.worker}: {args.warmup} warm-up + {args.steps} timed "
                                                    f"steps, seq {args.seq_len} x batch {args.batch}\n{table}\n")


def worker(args) -> None:
    import torch

    from cpt_utils.hardware import mfu, peak_flops
    from cpt_utils.train import flops_per_token

    if args.device == "cpu":
        torch.set_num_threads(os.cpu_count())
    if args.ieee_fp32:  # a user's explicit IEEE, which cpt_utils.losses keeps
        torch.backends.cuda.matmul.fp32_precision = torch.backends.mkldnn.matmul.fp32_precision = "ieee"
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    with profiled(args):
        if args.worker == "reference":
            times, extra = run_reference(args), {"precision": _new_precision(args.device), "compile_s": None,
                                                 "attention": args.attn}
        else:
            times, extra = run_cpt(args)
    result = {"median_step_s": statistics.median(times), "steps": len(times), **extra,
              "cpu_over_wall": (time.process_time() - cpu0) / (time.perf_counter() - wall0)}
    config, n_params = _config_and_size(args)
    tokens_per_s = args.batch * args.seq_len / result["median_step_s"]
    result["mfu"] = mfu(tokens_per_s, flops_per_token(config, n_params, args.seq_len), peak_flops(args.device))
    if args.device == "cuda":
        result["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def hours_per_billion(tokens_per_s: float) -> float:
    """Hours that 10⁹ training tokens take at ``tokens_per_s``."""
    return 1e9 / tokens_per_s / 3600


def prepare_data(args) -> None:
    """The quickstart corpus packed at --seq-len with the benchmark model's tokenizer (cached)."""
    from cpt_utils.preprocess import prepare_data as prepare

    if args.data_dir:
        if not (Path(args.data_dir) / "manifest.json").is_file():
            raise SystemExit(f"--data-dir {args.data_dir}: no manifest.json (prepare it with `cpt prepare` first)")
        return
    prepare(_params(args), _data_dir(args).parent, progress=False)


def run_round(args, tokens: int, failed: list[str]) -> dict:
    """Each of ``args.loops`` once, each in its own process, in order; their results by loop (a loop that
    fails is reported, added to ``failed`` and left out)."""
    results = {}
    for kind in args.loops:
        cmd = [sys.executable, __file__, "--worker", kind, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--old-steps", str(args.old_steps), "--old-warmup", str(args.old_warmup), "--device", args.device,
               "--seq-len", str(args.seq_len), "--batch", str(args.batch),
               "--attn", args.reference_attn if kind == "reference" else args.attn,
               *(["--model-dir", args.model_dir] if args.model_dir else []),
               *(["--data-dir", args.data_dir] if args.data_dir else []), *(["--set", *args.set] if args.set else []),
               *(["--ieee-fp32"] if args.ieee_fp32 else []), *(["--profile", args.profile] if args.profile else [])]
        # the reference is a user's run_clm_no_trainer.py: glibc's malloc as it comes, not cpt's tuning of it
        # (cpt_utils.allocator, applied by cpt's model loader, which this benchmark also uses to load it)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", **LOOP_ENV.get(kind, {})}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:  # report it and go on: one broken loop must not cost the others' figures
            failed.append(kind)
            print(f"{kind:>12}: FAILED (exit {proc.returncode}):\n{proc.stderr[-3000:]}", flush=True)
            continue
        r = json.loads(line[7:])
        r["tokens_per_s"] = tokens / r["median_step_s"]
        results[kind] = r
        mfu_text = "unknown" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        compile_text = f", compile {r['compile_s']:.0f} s" if r.get("compile_s") is not None else ""
        print(f"{kind:>12}: {r['tokens_per_s']:8.1f} tokens/s  MFU {mfu_text}  1B tokens "
              f"{hours_per_billion(r['tokens_per_s']):,.1f} h  ({r['precision']}, {r.get('attention')} attention, median of "
              f"{r['steps']} steps {r['median_step_s']:.2f} s, cpu/wall {r['cpu_over_wall']:.2f}, peak memory "
              f"{r['peak_mem_mb']:,.0f} MB{compile_text}"
              + (f", row blocks {r['row_blocks']}" if r.get("row_blocks") else "") + ")", flush=True)
        if r.get("losses"):
            print(f"{'':>12}  losses by step: {', '.join(f'{x:.4f}' for x in r['losses'])}", flush=True)
    return results


def print_ratios(results: dict) -> None:
    """Each loop's tokens/s over cpt-old's (when run) or the reference's, from one round."""
    base_kind = "cpt-old" if "cpt-old" in results else "reference"
    base = results.get(base_kind)
    for kind, r in results.items():
        if base is None or kind == base_kind:
            continue
        print(f"ratio {kind} / {'cpt-old' if 'cpt-old' in results else 'reference'}: "
              f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}×"
              + (f"; / reference {r['tokens_per_s'] / results['reference']['tokens_per_s']:.2f}×"
                 if "reference" in results and "cpt-old" in results else ""))


def print_round_ratios(rounds: list[dict]) -> None:
    """The ratio to the reference of each cpt loop in every round, and their median: loops that ran
    minutes apart see the machine at different speeds, so the ratio within a round is the measurement
    and the rounds show how much it moves."""
    for kind in dict.fromkeys(k for results in rounds for k in results):
        if kind == "reference":
            continue
        ratios = [r[kind]["tokens_per_s"] / r["reference"]["tokens_per_s"] for r in rounds if kind in r and "reference" in r]
        if ratios:
            print(f"ratio {kind} / reference by round: {', '.join(f'{x:.2f}' for x in ratios)}; "
                  f"median {statistics.median(ratios):.2f}×, range {min(ratios):.2f}–{max(ratios):.2f}×", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (the compiled loop compiles here)")
    parser.add_argument("--old-steps", type=int, default=None, help="timed steps of cpt-old (default --steps): "
                        "bf16 autocast on a CPU without native bf16 is so slow that 1 step may be all there is time for")
    parser.add_argument("--old-warmup", type=int, default=None, help="default --warmup (eager: 0 is fair)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--gpu", action="store_true", help="--device cuda, --seq-len 2048, --batch 8 unless given")
    parser.add_argument("--seq-len", type=int, default=None, help="default 256 (2048 with --gpu)")
    parser.add_argument("--batch", type=int, default=None, help="default 4 (8 with --gpu; the quickstart corpus holds ≈ 320k tokens)")
    parser.add_argument("--model-dir", default=None, help="a local model folder instead of the packaged SmolLM2-135M")
    parser.add_argument("--random-weights", action="store_true",
                        help="seeded random weights with --model-dir's config and tokenizer (its weights may be absent)")
    parser.add_argument("--data-dir", default=None, help="data already prepared at --seq-len with this tokenizer")
    parser.add_argument("--attn", default="auto", choices=["auto", "sdpa", "eager", "flash_attention_2", "flex_attention"],
                        help="model.attn_implementation of the cpt loops (default auto: cpt's own choice, "
                        "attention.training_attention; flash_attention_2 needs the flash-attn package and --batch 1; "
                        "flex_attention: per-document block masks, CUDA only for training)")
    parser.add_argument("--reference-attn", default=None, choices=["sdpa", "eager", "flash_attention_2", "flex_attention"],
                        help="the reference loop's attention (default: sdpa with --attn auto or flex_attention, else --attn)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="train.* settings for the cpt loops, e.g. per_document_attention=false loss_chunk_tokens=0")
    parser.add_argument("--ieee-fp32", action="store_true", help="keep the training loss head in IEEE fp32 "
                        "(torch.backends.{cuda,mkldnn}.matmul.fp32_precision = 'ieee'), not TF32 on CUDA or implicit "
                        "bf16 on a bf16-native CPU (cpt_utils.losses.head_matmul_precision)")
    parser.add_argument("--loops", nargs="+", default=["reference", *(k for k in CPT_LOOPS if not k.endswith("-whole"))],
                        choices=["reference", *CPT_LOOPS])
    parser.add_argument("--rounds", type=int, default=1, help="run the loops this many times in turn (reference, cpt…, "
                        "reference, cpt…): the ratio within each round, and their median and range")
    parser.add_argument("--profile", default=None, metavar="DIR", help="torch.profiler's operator table of each "
                        "loop's run into DIR/profile-<loop>.txt (it slows the steps: not for the timed figures)")
    parser.add_argument("--worker", choices=["reference", *CPT_LOOPS])
    args = parser.parse_args()
    if args.gpu:
        args.device = "cuda"
    args.seq_len = args.seq_len or (2048 if args.gpu else 256)
    args.batch = args.batch or (8 if args.gpu else 4)
    if args.reference_attn is None:
        args.reference_attn = "sdpa" if args.attn in ("auto", "flex_attention") else args.attn
    args.old_steps = args.steps if args.old_steps is None else args.old_steps
    args.old_warmup = args.warmup if args.old_warmup is None else args.old_warmup
    from cpt_utils.paths import configure_environment, runs_root

    configure_environment(offline=True)
    if args.worker:
        return worker(args)
    if args.random_weights:
        from cpt_utils.modeling import resolve_model_dir

        source = Path(args.model_dir) if args.model_dir else Path(resolve_model_dir(_params(args).model))
        args.model_dir = str(write_random_weights(source, runs_root() / "bench-train-random-model"))
    prepare_data(args)
    tokens = args.batch * args.seq_len
    from cpt_utils.hardware import cpu_model, peak_flops

    import torch
    import transformers

    peak = peak_flops(args.device)
    name = cpu_model() if args.device == "cpu" else torch.cuda.get_device_name()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}; attention {args.attn}"
          + (f" (reference: {args.reference_attn})" if args.reference_attn != args.attn else "") + "; model "
          f"{args.model_dir or 'packaged SmolLM2-135M'}{' (random weights)' if args.random_weights else ''}"
          + (f"; cpt loops with train.{', train.'.join(args.set)}" if args.set else ""))
    print(f"device {args.device} ({name}), peak "
          f"{'unknown' if peak is None else f'{peak / 1e9:,.0f} GFLOP/s'}; seq {args.seq_len} × batch {args.batch} = "
          f"{tokens} tokens/step; {args.warmup} warm-up + {args.steps} timed steps (cpt-old: "
          f"{args.old_warmup} + {args.old_steps})" + (f"; PROFILED into {args.profile}: the profiler slows every step, "
                                                      "read the tables, not these times" if args.profile else ""),
          flush=True)
    rounds: list[dict] = []  # per round: loop → result
    failed = []
    for round_index in range(args.rounds):
        if args.rounds > 1:
            print(f"round {round_index + 1} of {args.rounds}", flush=True)
        results = run_round(args, tokens, failed)
        rounds.append(results)
        print_ratios(results)
    if args.rounds > 1:
        print_round_ratios(rounds)
    if failed:
        raise SystemExit(f"failed: {', '.join(dict.fromkeys(failed))}")


if __name__ == "__main__":
    main()
