"""Probe: is the compiled training step's gradient the eager one, at the weights a run actually reaches?

    .venv/bin/python benchmarks/compile_gradient_probe.py params/quickstart.yaml runs/quickstart/data \
        --compile regions --steps 22

Trains ``--steps`` steps of the parameter file's recipe with ``train.compile`` set to ``--compile`` (no
in-loop evaluation, no checkpoints, nothing written outside a temporary folder), then scores the next
batch the run would train on at those weights six ways — eager, the decoder layers compiled and the whole
model compiled, each in fp32 and in bf16 autocast — and prints each loss and gradient norm and the
parameters whose gradient is furthest from eager fp32's.

What it showed (2-core AMX Xeon, torch 2.13.0+cpu, 2026-12-06, benchmarks/README.md): compiled fp32
equals eager fp32 (loss to 1e-6, gradients to 1e-3 of their size), and compiled bf16 is as far from fp32
as eager bf16 is. An earlier version of this probe reported a compiled gradient 22x eager's: its "fp32"
forms ran bf16, because Accelerate's ``prepare`` wraps the model's forward in its own autocast — the
model is now unwrapped first — and those weights sat at a gradient spike (fp32 norm 51.6, eager and
compiled alike) where bf16 rounding alone moved the norm between 4.6 and 103.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from accelerate.utils import compile_regions

sys.path.insert(0, os.getcwd())
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scratch_run import scratch_fit, scratch_params  # noqa: E402
from cpt_utils.config import load_params  # noqa: E402
from cpt_utils.losses import causal_lm_loss  # noqa: E402
from cpt_utils.precision import autocast  # noqa: E402
from cpt_utils.train import _batch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("params")
    ap.add_argument("data", help="the prepared data (runs/<run>/data)")
    ap.add_argument("--compile", choices=["false", "true", "regions"], default="regions",
                    help="train.compile of the steps that reach the weights")
    ap.add_argument("--steps", type=int, default=22)
    args = ap.parse_args()
    params = scratch_params(load_params(args.params), milestones=[],
                            compile={"false": False, "true": True, "regions": "regions"}[args.compile])
    state, _ = scratch_fit(params, Path(args.data), args.steps)
    inputs = _batch(state, state.sampler.next_batch())
    # Accelerate's prepare() wrapped the model's forward in its own bf16 autocast (mixed_precision): left
    # there, every "fp32" form below would run bf16. Unwrapped, the autocast of each form decides.
    model = state.accelerator.unwrap_model(state.model, keep_fp32_wrapper=False)
    chunk = params.train.loss_chunk_tokens
    device = state.accelerator.device.type  # the CPU here; a GPU where the run trains on one

    def gradients(step_model, precision: str) -> tuple[float, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        with autocast(precision, device):
            loss = causal_lm_loss(step_model, inputs["input_ids"], inputs.get("position_ids"), chunk)
        loss.backward()
        return loss.item(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}

    regions = compile_regions(model)
    whole = torch.compile(model)
    ways = {"eager fp32": (model, "fp32"), "layers compiled fp32": (regions, "fp32"),
            "whole model compiled fp32": (whole, "fp32"), "eager bf16": (model, "bf16"),
            "layers compiled bf16": (regions, "bf16"), "whole model compiled bf16": (whole, "bf16")}
    print(f"weights after {args.steps} steps with train.compile={args.compile}; the next batch's loss and gradient:")
    results = {}
    for name, (step_model, precision) in ways.items():
        loss, grads = results[name] = gradients(step_model, precision)
        norm = torch.cat([g.flatten() for g in grads.values()]).norm().item()
        print(f"  {name:26s} loss {loss:.6f}  gradient norm {norm:8.3f}", flush=True)
    reference = results["eager fp32"][1]
    for name in list(ways)[1:]:
        grads = results[name][1]
        worst = sorted(((grads[n] - reference[n]).norm().item(), n) for n in reference)[-3:]
        print(f"  {name}: largest |g - g(eager fp32)|: " + ", ".join(f"{n} {d:.3f}" for d, n in reversed(worst)))


if __name__ == "__main__":
    main()
