"""Probe: does ``torch.compile`` pay on this CPU kind, and does it keep the numbers? Training steps and the
held-out scoring of SmolLM2-135M at the quickstart's shapes, eager against compiled, in one process.

    .venv/bin/python benchmarks/compile_probe.py train   runs/quickstart/data [--precision fp32|bf16] [--steps 4] [--regional]
    .venv/bin/python benchmarks/compile_probe.py heldout runs/quickstart/data [--precision fp32|bf16] [--dynamic] [--regional]

``train``: the median of ``--steps`` steps (4 × 256, cpt's chunked loss, fused AdamW, per-document
positions) after one untimed step, eager then compiled from the same starting weights; the compiled
first step (the compile) is printed apart, and the first losses of the two are compared.
``heldout``: every ``val_*`` split scored by ``perplexity.perplexity`` (eval's batch of 16) with the
decoder eager, then compiled (``model.model = torch.compile(model.model)``); first pass (with the compile)
and second pass timed, and the largest per-document |Δ nats/token| against eager.

``--regional`` compiles each decoder layer instead of the whole model (accelerate's ``compile_regions``:
the 30 layers share one compiled graph, so the cold compile is one layer's, not the model's; the small
modules outside them are compiled apart, cpt's loss head runs eager).

``TORCHINDUCTOR_CACHE_DIR`` decides the inductor cache: an empty folder times a cold compile, the same
folder in a second process a warm one (what a persistent cache under the cpt cache would give).
The precision defaults to what ``precision: auto`` resolves to on this CPU.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
from accelerate.utils import compile_regions

sys.path.insert(0, os.getcwd())
from cpt_utils.config import load_params  # noqa: E402
from cpt_utils.losses import causal_lm_loss  # noqa: E402
from cpt_utils.modeling import load_model, load_tokenizer  # noqa: E402
from cpt_utils.packing import PackedSplit  # noqa: E402
from cpt_utils.perplexity import perplexity  # noqa: E402
from cpt_utils.precision import autocast, resolve_precision  # noqa: E402


def _machine() -> str:
    flags = [f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in open("/proc/cpuinfo").read()]
    return f"{platform.processor() or 'cpu'} {torch.get_num_threads()} threads, flags {' '.join(flags)}, torch {torch.__version__}"


def probe_train(model, data: str, precision: str, steps: int, regional: bool) -> None:
    split = PackedSplit(os.path.join(data, "train"))
    batches = []
    for b in range(steps + 1):
        rows = range(4 * b, 4 * b + 4)
        batches.append((torch.from_numpy(np.stack([split[i][0] for i in rows])),
                        torch.from_numpy(np.stack([split[i][1] for i in rows]))))
    start = copy.deepcopy(model.state_dict())

    def run(step_model, label: str) -> tuple[float, list[float]]:
        model.load_state_dict(start)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
        times, losses = [], []
        for ids, pos in batches:
            t = time.perf_counter()
            with autocast(precision, "cpu"):
                loss = causal_lm_loss(step_model, ids, pos, 1024)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            times.append(time.perf_counter() - t)
        median = statistics.median(times[1:])
        print(f"{label:9s} first step {times[0]:7.1f} s, median of {steps} {median:6.2f} s = {1024 / median:6.0f} tokens/s,"
              f" losses {' '.join(f'{x:.5f}' for x in losses[:3])}", flush=True)
        return median, losses

    eager, eager_losses = run(model, "eager")
    if regional:
        compiled, compiled_losses = run(compile_regions(model), "regional")
    else:
        compiled, compiled_losses = run(torch.compile(model), "compiled")
    print(f"compiled / eager speed: {eager / compiled:.2f}x; first-loss |diff| {abs(eager_losses[0] - compiled_losses[0]):.2e}")


def probe_heldout(model, data: str, precision: str, dynamic: bool | None, regional: bool) -> None:
    tok = load_tokenizer(load_params("params/quickstart.yaml").model)
    splits = [s for s in sorted(os.listdir(data)) if s.startswith("val_")]

    def score(label: str) -> dict:
        t = time.perf_counter()
        out = {s: perplexity(model, PackedSplit(os.path.join(data, s)), None, 16, True, precision, tok) for s in splits}
        seconds = time.perf_counter() - t
        tokens = sum(r["tokens"] for r in out.values())
        print(f"{label:18s} {seconds:7.1f} s, {tokens} tokens = {tokens / seconds:6.0f} tokens/s", flush=True)
        return out

    eager = score("eager")
    score("eager again")
    eager_body = model.model
    model.model = compile_regions(eager_body, dynamic=dynamic) if regional else torch.compile(eager_body, dynamic=dynamic)
    compiled = score("compiled (1st)")
    score("compiled (2nd)")
    model.model = eager_body
    worst = 0.0
    for s in splits:
        e, c = eager[s]["per_document"], compiled[s]["per_document"]
        for ne, nc, n in zip(e["nats"], c["nats"], e["tokens"]):
            worst = max(worst, abs(ne - nc) / n)
    print(f"largest per-document |delta nats/token| compiled vs eager: {worst:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["train", "heldout"])
    ap.add_argument("data", help="a prepared run's data folder (runs/<run>/data)")
    ap.add_argument("--precision", default=None, help="fp32|bf16 (default: what auto resolves to here)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--dynamic", action="store_true", help="torch.compile(dynamic=True) for held-out scoring")
    ap.add_argument("--regional", action="store_true", help="compile each decoder layer, not the whole model")
    args = ap.parse_args()
    precision = args.precision or resolve_precision("auto", "cpu")
    print(_machine(), "| precision", precision, "| inductor cache", os.environ.get("TORCHINDUCTOR_CACHE_DIR", "torch default"))
    model = load_model(load_params("params/quickstart.yaml").model, seed=0)
    model.config.use_cache = False
    if args.what == "train":
        model.train()
        probe_train(model, args.data, precision, args.steps, args.regional)
    else:
        probe_heldout(model, args.data, precision, True if args.dynamic else None, args.regional)


if __name__ == "__main__":
    main()
