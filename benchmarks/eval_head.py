"""Probe of a rejected speed-up: the evaluation's fp32 output head in oneDNN's implicit bf16 (inputs
rounded to bf16, fp32 sums — what cpt's *training* head does on a bf16-native CPU) against the IEEE fp32
head cpt's evaluation keeps (``precision.fp32_logits``), side by side in one process.

The switch is oneDNN's ``torch.backends.mkldnn.matmul.fp32_precision = "bf16"`` for the whole scoring:
under bf16 autocast the body's matmuls are bf16 anyway, so only the fp32 head changes.

Held-out scoring (``heldout_eval.score_heldout``: every held-out split, as the evaluation scores it) of the
base model and, with --checkpoint, of a trained checkpoint, the two heads alternating over --rounds; then,
with --tasks, the task suite once each way. Prints the times, the ratio, and how far the implicit head moves
each split's loss and the base → checkpoint change (nats/token; per document, nats), and the task items'
log-likelihoods.

    .venv/bin/python benchmarks/eval_head.py runs/quickstart/data \
        [--checkpoint runs/quickstart/checkpoints/tokens-000000032768/model] [--rounds 2] [--tasks]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="prepared quickstart data (cpt prepare params/quickstart.yaml)")
    parser.add_argument("--checkpoint", type=Path, help="a trained checkpoint's model folder")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tasks", action="store_true", help="also the task suite, once each way")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    import torch

    from cpt_utils.config import load_params
    from cpt_utils.evaluate import eval_precision
    from cpt_utils.hardware import cpu_model
    from cpt_utils.heldout_eval import score_heldout
    from cpt_utils.modeling import load_model, load_tokenizer
    from cpt_utils.precision import cpu_multiplies_bf16
    from cpt_utils.task_build import run_tasks

    params = load_params(ROOT / "params" / "quickstart.yaml")
    tokenizer = load_tokenizer(params.model)
    models = {"base": load_model(params.model).eval()}
    if args.checkpoint:
        models["checkpoint"] = AutoModelForCausalLM.from_pretrained(args.checkpoint).eval()
    precision = eval_precision(params, models["base"])
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; evaluation precision {precision}")
    if precision != "bf16" or not cpu_multiplies_bf16():
        sys.exit("the implicit-bf16 head applies only to bf16 evaluation on a bf16-native CPU")

    def head(ieee: bool) -> None:
        torch.backends.mkldnn.matmul.fp32_precision = "ieee" if ieee else "bf16"

    seen = {True: [], False: []}
    results: dict[bool, dict] = {}
    for round_ in range(args.rounds):
        for ieee in ((True, False) if round_ % 2 == 0 else (False, True)):
            head(ieee)
            start = time.perf_counter()
            results[ieee] = {name: score_heldout(params, m, tokenizer, args.data_dir, precision)
                             for name, m in models.items()}
            seen[ieee].append((time.perf_counter() - start) / len(models))
            print(f"round {round_ + 1} {'IEEE head    ' if ieee else 'implicit bf16'}: {seen[ieee][-1]:.2f} s per "
                  f"model (all held-out splits)", flush=True)
    head(True)
    ieee_s, fast_s = statistics.median(seen[True]), statistics.median(seen[False])
    print(f"held-out scoring: IEEE head {ieee_s:.2f} s, implicit bf16 {fast_s:.2f} s: ratio {ieee_s / fast_s:.2f}x")
    for split in results[True]["base"]:
        line = [f"{split:12s}"]
        for name in models:
            a, b = results[True][name][split], results[False][name][split]
            docs = np.abs(np.array(a["per_document"]["nats"]) - np.array(b["per_document"]["nats"]))
            line.append(f"{name} loss {a['loss']:.5f} vs {b['loss']:.5f} (per document ≤ {docs.max():.3f} nats)")
        if "checkpoint" in models:
            d_ieee = results[True]["checkpoint"][split]["loss"] - results[True]["base"][split]["loss"]
            d_fast = results[False]["checkpoint"][split]["loss"] - results[False]["base"][split]["loss"]
            line.append(f"change {d_ieee:+.5f} vs {d_fast:+.5f}")
        print("  ".join(line))
    if args.tasks:
        times, lls = {}, {}
        for ieee in (True, False):
            head(ieee)
            start = time.perf_counter()
            out = run_tasks(params, models["base"], tokenizer, args.data_dir, precision)
            times[ieee] = time.perf_counter() - start
            lls[ieee] = np.concatenate([np.asarray(t["per_item_gold_ll"], dtype=float) for t in out.values()])
        head(True)
        diff = np.abs(lls[True] - lls[False])
        print(f"task suite (base): IEEE head {times[True]:.2f} s, implicit bf16 {times[False]:.2f} s: ratio "
              f"{times[True] / times[False]:.2f}x; gold log-likelihoods of {len(lls[True])} items ≤ {diff.max():.4f} "
              f"nats apart (relative ≤ {(diff / np.abs(lls[True])).max():.4f}; bf16's resolution 2^-8 = 0.0039)")


if __name__ == "__main__":
    main()
