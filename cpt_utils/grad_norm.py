"""Gradient clipping whose norm uses every CPU core: the same numbers as ``clip_grad_norm_``, sooner.

Why: on CPU, ``torch.nn.utils.clip_grad_norm_`` takes each gradient's norm with ``linalg.vector_norm``
one tensor after another, and that kernel runs on one thread: on a 2-core AMX Xeon the 272 gradients of
SmolLM2-135M took 39 ms per step on two threads and 42 ms on one, ≈ 4% of a quickstart training step
with the other core idle. Here the per-tensor norms are shared out among threads (the kernel releases
the GIL), each tensor's norm still computed by the same kernel on its own, and the total is taken from
them in the original order exactly as torch does, so the norm and the clipped gradients are equal bit
for bit (``tests/test_grad_norm.py``); side by side on that machine 65.4 → 48.2 ms for SmolLM2's 272
gradients (``benchmarks/grad_norm.py``, benchmarks/README.md).

Only where torch's own function would run on plain CPU tensors (one process, or DDP across CPU
processes, whose gradients are already reduced): FSDP, DeepSpeed, XLA, GPUs and sharded (DTensor)
gradients go through ``accelerator.clip_grad_norm_`` as before. ``CPT_THREADED_GRAD_NORM=off`` turns it off.
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor

import torch
from accelerate.utils import DistributedType

from .paths import switched_off

OPT_OUT = "CPT_THREADED_GRAD_NORM"


def clip_grad_norm(accelerator, parameters, max_norm: float) -> float:
    """``accelerator.clip_grad_norm_(parameters, max_norm)`` (2-norm), the norms threaded where that is
    plain CPU work; returns the total norm before clipping, as a float. ``max_norm`` inf: measure only."""
    parameters = list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not _threadable(accelerator, grads):
        return float(accelerator.clip_grad_norm_(parameters, max_norm))
    accelerator.unscale_gradients()  # a no-op without a GradScaler (bf16, fp32), as in accelerate's own path
    total = torch.linalg.vector_norm(torch.stack(_norms(grads)), 2.0)
    if not math.isinf(max_norm):  # × 1.0 (what torch does when there is no limit) changes nothing
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, total)
    return float(total)


def _threadable(accelerator, grads: list[torch.Tensor]) -> bool:
    """True where torch would take these norms one CPU tensor at a time and more than one thread can help."""
    if switched_off(OPT_OUT):
        return False
    if accelerator.distributed_type not in (DistributedType.NO, DistributedType.MULTI_CPU):
        return False
    if len(grads) < 2 or torch.get_num_threads() < 2:
        return False
    return all(type(g) is torch.Tensor and g.device.type == "cpu" and g.layout == torch.strided for g in grads)


def _norms(grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each gradient's 2-norm, in ``grads``' order, the tensors shared among threads by size."""
    workers = min(torch.get_num_threads(), len(grads))
    shares: list[list[int]] = [[] for _ in range(workers)]
    sizes = [0] * workers
    for index in sorted(range(len(grads)), key=lambda i: -grads[i].numel()):  # largest first, to the lightest
        lightest = sizes.index(min(sizes))
        shares[lightest].append(index)
        sizes[lightest] += grads[index].numel()

    def norms_of(share: list[int]) -> list[torch.Tensor]:
        return [torch.linalg.vector_norm(grads[i], 2.0) for i in share]

    # the calling thread takes the first share itself, the pool's threads one share each
    pending = [_pool(workers - 1).submit(norms_of, share) for share in shares[1:]]
    results = [norms_of(shares[0]), *(future.result() for future in pending)]
    norms: list[torch.Tensor | None] = [None] * len(grads)
    for share, share_norms in zip(shares, results):
        for index, norm in zip(share, share_norms):
            norms[index] = norm
    return norms  # type: ignore[return-value]


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    """One pool per process and size, kept: a step must not pay for starting threads."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cpt-grad-norm")
