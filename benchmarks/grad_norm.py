"""Gradient clipping, side by side: torch's ``clip_grad_norm_`` (what ``accelerator.clip_grad_norm_`` runs on
CPU) vs ``cpt_utils.grad_norm.clip_grad_norm`` (the per-tensor norms shared among threads), on gradients
of SmolLM2-135M's 272 parameter shapes (random values; the time depends on the shapes only).

Interleaved repeats on the same gradients; prints each median, the ratio, and that the norms and the
clipped gradients are equal bit for bit.

    .venv/bin/python benchmarks/grad_norm.py [--repeats 21] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def smollm2_shapes() -> list[tuple[int, ...]]:
    """SmolLM2-135M's parameter shapes (tied embedding once), from its architecture."""
    d, ff, layers, vocab, kv = 576, 1536, 30, 49_152, 192
    per_layer = [(d, d), (kv, d), (kv, d), (d, d), (ff, d), (ff, d), (d, ff), (d,), (d,)]
    return [(vocab, d)] + per_layer * layers + [(d,)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()

    import torch
    from accelerate import Accelerator

    from cpt_utils.grad_norm import clip_grad_norm
    from cpt_utils.hardware import cpu_model

    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    grads = [torch.randn(shape, generator=generator) * 1e-3 for shape in smollm2_shapes()]

    def params_with(grads_):
        params = [torch.nn.Parameter(torch.empty_like(g)) for g in grads_]
        for p, g in zip(params, grads_):
            p.grad = g.clone()
        return params

    accelerator = Accelerator(cpu=True)
    loops = {"torch clip_grad_norm_": lambda ps: float(torch.nn.utils.clip_grad_norm_(ps, 1.0)),
             "cpt clip_grad_norm": lambda ps: clip_grad_norm(accelerator, ps, 1.0)}
    times = {name: [] for name in loops}
    results = {}
    for _ in range(args.repeats):
        for name, clip in loops.items():
            params = params_with(grads)
            start = time.perf_counter()
            norm = clip(params)
            times[name].append(time.perf_counter() - start)
            results[name] = (norm, [p.grad for p in params])
    (ref_norm, ref_grads), (our_norm, our_grads) = results.values()
    equal = ref_norm == our_norm and all(torch.equal(a, b) for a, b in zip(ref_grads, our_grads))
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = [f for f in ("amx_bf16", "avx512_bf16", "avx2") if f" {f}" in cpuinfo]
    print(f"{cpu_model()} ({', '.join(flags) or 'flags unknown'}); torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{len(grads)} gradients, {sum(g.numel() for g in grads) / 1e6:.1f} M values; {args.repeats} interleaved repeats")
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    for name, ms in medians.items():
        print(f"  {name:>22}: {ms:6.1f} ms (median)")
    reference, ours = medians.values()
    print(f"ratio torch / cpt: {reference / ours:.2f}×; norms and clipped gradients equal bit for bit: {equal}")


if __name__ == "__main__":
    main()
