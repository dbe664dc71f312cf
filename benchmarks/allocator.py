"""The allocator setting (``cpt_utils.allocator``) against glibc's defaults, side by side in one run.

Each round starts two fresh processes on the same work, one with ``CPT_MALLOC_TUNING=off`` (glibc's
defaults: what any other script gets) and one with cpt's setting, in alternating order so the machine's
drift hits both alike; a round measures

- ``train``: the median of --steps training steps of the packaged SmolLM2-135M at the quickstart's shape
  (4 × 256, per-document positions, the resolved precision's autocast, fused AdamW, cpt's chunked loss),
  after one untimed step; the last loss is printed to show both ways compute the same numbers;
- ``heldout``: held-out scoring of every held-out split (``heldout_eval.score_heldout``, as the
  evaluation scores it), wall seconds and the summed loss.

    .venv/bin/python benchmarks/allocator.py runs/quickstart/data [--rounds 3] [--steps 8] [--what train heldout]

Prints each round, then the medians and the ratio off / on (> 1: the setting is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = "--child"


def _train(data_dir: Path, steps: int) -> dict:
    import numpy as np
    import torch

    from cpt_utils.config import load_params
    from cpt_utils.losses import causal_lm_loss
    from cpt_utils.modeling import load_model
    from cpt_utils.packing import PackedSplit
    from cpt_utils.precision import autocast, resolve_precision

    params = load_params(ROOT / "params" / "quickstart.yaml")
    model = load_model(params.model, seed=0)
    model.config.use_cache = False
    model.train()
    split = PackedSplit(data_dir / "train")
    rows = [split[i] for i in range(params.train.micro_batch_size)]
    ids = torch.from_numpy(np.stack([r[0] for r in rows]))
    pos = torch.from_numpy(np.stack([r[1] for r in rows]))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    precision = resolve_precision(params.train.precision, "cpu")

    def step() -> float:
        with autocast(precision, "cpu"):
            loss = causal_lm_loss(model, ids, pos, params.train.loss_chunk_tokens)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    step()
    times, loss = [], None
    for _ in range(steps):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "value": loss, "precision": precision}


def _heldout(data_dir: Path) -> dict:
    from cpt_utils.config import load_params
    from cpt_utils.evaluate import eval_precision
    from cpt_utils.heldout_eval import score_heldout
    from cpt_utils.modeling import load_model, load_tokenizer

    params = load_params(ROOT / "params" / "quickstart.yaml")
    model = load_model(params.model, seed=0).eval()
    tokenizer = load_tokenizer(params.model)
    precision = eval_precision(params, model)
    start = time.perf_counter()
    results = score_heldout(params, model, tokenizer, data_dir, precision)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "value": sum(r["loss"] for r in results.values()), "precision": precision}


def _child(what: str, data_dir: Path, steps: int) -> None:
    out = _train(data_dir, steps) if what == "train" else _heldout(data_dir)
    print(json.dumps(out))


def _run(what: str, tuned: bool, args) -> dict:
    env = {**os.environ, "CPT_MALLOC_TUNING": "on" if tuned else "off"}
    proc = subprocess.run([sys.executable, __file__, CHILD, what, str(args.data_dir), str(args.steps)],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"{what} ({'tuned' if tuned else 'glibc defaults'}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        _child(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="prepared quickstart data (cpt prepare params/quickstart.yaml)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per process")
    parser.add_argument("--what", nargs="+", choices=["train", "heldout"], default=["train", "heldout"])
    args = parser.parse_args()
    from cpt_utils.hardware import cpu_model

    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs")
    for what in args.what:
        seen: dict[bool, list[float]] = {False: [], True: []}
        for round_ in range(args.rounds):
            for tuned in ((False, True) if round_ % 2 == 0 else (True, False)):
                out = _run(what, tuned, args)
                seen[tuned].append(out["seconds"])
                print(f"{what} round {round_ + 1} {'cpt setting  ' if tuned else 'glibc default'}: "
                      f"{out['seconds']:.3f} s  ({out['precision']}; value {out['value']!r})", flush=True)
        off, on = statistics.median(seen[False]), statistics.median(seen[True])
        unit = "s per step" if what == "train" else "s for all held-out splits"
        print(f"{what}: glibc default {off:.3f} {unit}, cpt setting {on:.3f}: ratio {off / on:.2f}x")


if __name__ == "__main__":
    main()
