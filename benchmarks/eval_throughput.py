"""Evaluation throughput: cpt's in-memory lm-eval run vs the `lm_eval` command line on the same saved
checkpoint, the same generated offline tasks (same items), batch size and precision.

The user-reported pain is that evaluating inside a training process is much slower than the CLI; here
both start from the checkpoint folder on disk, and each timing includes loading the model (the CLI's
also includes starting Python and importing lm-eval, which is what a user pays).

    .venv/bin/python benchmarks/eval_throughput.py [--run runs/quickstart] [--limit 40]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(ROOT / "params" / "quickstart.yaml"))
    parser.add_argument("--limit", type=int, default=40)
    args = parser.parse_args()

    from cpt_utils.checkpointing import list_checkpoints, load_checkpoint_model
    from cpt_utils.evaluate import run_tasks
    from cpt_utils.modeling import load_tokenizer
    from cpt_utils.params import load_params
    from cpt_utils.paths import configure_environment, run_dir
    from cpt_utils.tasks import build_task_dir

    params = load_params(args.params)
    params = params.model_copy(update={"eval": params.eval.model_copy(update={"limit": args.limit})})
    configure_environment(offline=True)
    run = run_dir(params.run_name)
    checkpoints = list_checkpoints(run)
    if not checkpoints:
        raise SystemExit(f"{run} has no checkpoint: run `make report` (or `cpt train {args.params}`) first")
    ckpt = Path(checkpoints[-1]["path"]) / "model"
    tokenizer = load_tokenizer(params.model)
    task_dir, counts = build_task_dir(params, run / "data", tokenizer)
    items = sum(counts.values())
    print(f"checkpoint {ckpt.parent.name}; tasks {', '.join(counts)}; {items} items; batch {params.eval.batch_size}; "
          "bf16 autocast, fp32 weights, CPU")

    cpu0, start = time.process_time(), time.perf_counter()
    model = load_checkpoint_model(ckpt.parent)
    ours = run_tasks(params, model, tokenizer, run / "data")
    ours_s = time.perf_counter() - start
    ours_cpu = (time.process_time() - cpu0) / ours_s
    del model

    with tempfile.TemporaryDirectory() as out:
        cmd = [str(Path(sys.executable).parent / "lm_eval"), "--model", "hf",
               "--model_args", f"pretrained={ckpt},dtype=float32,mixed_precision_dtype=bfloat16",
               "--tasks", ",".join(counts), "--include_path", str(task_dir), "--batch_size", str(params.eval.batch_size),
               "--device", "cpu", "--num_fewshot", "0", "--output_path", out, "--log_samples", "--seed", str(params.eval.seed)]
        start = time.perf_counter()
        usage0 = os.times()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        cli_s = time.perf_counter() - start
        usage1 = os.times()
        if proc.returncode != 0:
            raise SystemExit(f"lm_eval CLI failed:\n{proc.stderr[-3000:]}")
        cli_cpu = ((usage1.children_user - usage0.children_user) + (usage1.children_system - usage0.children_system)) / cli_s
        result_files = list(Path(out).rglob("results_*.json"))
        cli = json.loads(result_files[0].read_text())["results"] if result_files else {}

    print(f"{'':>14} {'seconds':>8} {'items/s':>8} {'cpu/wall':>8}")
    print(f"{'cpt in-memory':>14} {ours_s:8.1f} {items / ours_s:8.2f} {ours_cpu:8.2f}")
    print(f"{'lm_eval CLI':>14} {cli_s:8.1f} {items / cli_s:8.2f} {cli_cpu:8.2f}")
    print(f"ratio cpt/CLI items/s: {cli_s / ours_s:.2f}×")
    for task, r in ours.items():
        theirs = cli.get(task, {}).get(f"{r['metric']},none")
        print(f"  {task:28s} ours {r['value']:.3f}  CLI {theirs if theirs is None else f'{theirs:.3f}'}")


if __name__ == "__main__":
    main()
