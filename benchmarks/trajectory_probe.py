"""Probe: does the run's result survive rounding? The main run trained several ways that differ only in
rounding, each scored on the domain and general held-out sets against the base model.

    .venv/bin/python benchmarks/trajectory_probe.py params/quickstart.yaml runs/quickstart/data \
        eager foreach fp32 regions regions

Each way trains the parameter file's whole recipe in its own process (no in-loop evaluation, no
checkpoints, nothing written outside a temporary folder) and prints the largest gradient norm with its
step and the held-out change (nats/token, bf16 scoring of the whole sets) on ``val_domain`` and
``val_general``. Ways: ``eager`` (the recipe as written, compile off), ``foreach`` (foreach instead of
fused AdamW), ``fp32`` (no autocast), ``regions`` / ``model`` (``train.compile``); repeat a way to see
whether it reproduces across processes.

Why: the report's intervals cover evaluation sampling only. On the quickstart (2-core AMX Xeon, torch
2.13.0+cpu, 2026-12-06, benchmarks/README.md) the domain gain was −0.313 to −0.322 in every way, while the
general-text change ran from −0.177 to −0.227 here and −0.035 in a compiled fresh-clone run — it moves
with gradient spikes that rounding alone decides.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.getcwd())
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SPLITS = ("val_domain", "val_general")
WAYS = {"eager": {"compile": False}, "foreach": {"compile": False, "fused_adamw": "off"},
        "fp32": {"compile": False, "precision": "fp32"}, "regions": {"compile": "regions"},
        "model": {"compile": True}}


def held_out(params, model, tokenizer, data: Path) -> dict[str, float]:
    """The evaluation's own held-out scoring (``score_heldout``), in bf16, on the domain and general sets."""
    from cpt_utils.heldout_eval import score_heldout
    params = params.model_copy(update={"eval": params.eval.model_copy(update={"heldout_splits": list(SPLITS)})})
    return {s: r["loss"] for s, r in score_heldout(params, model, tokenizer, data, "bf16").items()}


def one_way(params_path: str, data: Path, way: str) -> dict:
    """Train the recipe ``way`` in this process; the largest gradient norm, its step and the held-out losses."""
    from cpt_utils.config import load_params
    from cpt_utils.modeling import load_model, load_tokenizer
    from scratch_run import scratch_fit, scratch_params
    params = load_params(params_path)
    if way == "base":
        model = load_model(params.model, seed=params.seed).eval()
        model.config.use_cache = False
        return {"held_out": held_out(params, model, load_tokenizer(params.model), data)}
    params = scratch_params(params, **WAYS[way])
    state, rows = scratch_fit(params, data)
    norms = [r["grad_norm"] for r in rows if r["kind"] == "train"]
    # Accelerate's prepare() wraps forward in its own autocast; unwrapped, the scoring's precision decides
    model = state.accelerator.unwrap_model(state.model, keep_fp32_wrapper=False).eval()
    peak = max(range(len(norms)), key=norms.__getitem__)
    return {"steps": len(norms), "max_grad_norm": norms[peak], "at_step": peak + 1,
            "held_out": held_out(params, model, state.tokenizer, data)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("params")
    ap.add_argument("data", help="the prepared data (runs/<run>/data)")
    ap.add_argument("ways", nargs="+", choices=[*WAYS, "base"])
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child process: one way, JSON out
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_way(args.params, Path(args.data), args.ways[0])))
        return

    def child(way: str) -> dict:
        out = subprocess.run([sys.executable, __file__, args.params, args.data, way, "--one"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    base = child("base")["held_out"]
    print("base model: " + ", ".join(f"{s} {base[s]:.4f}" for s in SPLITS) + " nats/token")
    print(f"{'way':10s} {'largest grad norm (step)':>26s} " + " ".join(f"{'Δ ' + s:>16s}" for s in SPLITS))
    for way in args.ways:
        r = child(way)
        print(f"{way:10s} {r['max_grad_norm']:18.2f} ({r['at_step']:>3d})  "
              + " ".join(f"{r['held_out'][s] - base[s]:+16.4f}" for s in SPLITS), flush=True)


if __name__ == "__main__":
    main()
