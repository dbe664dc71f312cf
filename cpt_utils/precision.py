"""One precision policy for training and evaluation.

Why one place: bf16 autocast is ≈ 6× faster than fp32 for matmuls on this AMX CPU and the natural choice
on GPUs, but *log-probabilities* compared between checkpoints must not carry bf16 rounding (a logit of
10 in bf16 is off by up to 0.04, the size of the effects we look for). So: the body of the network runs
in the resolved precision, the output head and log-softmax always in fp32 (``fp32_logits``).
"""

from __future__ import annotations

import contextlib
from typing import Literal

Precision = Literal["bf16", "fp16", "fp32"]


def resolve_precision(requested: str, device_type: str) -> Precision:
    """``auto`` → bf16 wherever it is fast and supported (CPU autocast included), fp16 on older GPUs,
    otherwise what was asked for."""
    if requested != "auto":
        if requested not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"precision: {requested!r} is not one of auto, bf16, fp16, fp32")
        return requested  # type: ignore[return-value]
    if device_type == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16"


def accelerate_mixed_precision(precision: Precision) -> str:
    """Accelerate's name for the same choice (``no`` for fp32)."""
    return {"fp32": "no"}.get(precision, precision)


def autocast(precision: Precision, device_type: str):
    """The autocast context for ``precision`` (a no-op for fp32)."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def fp32_logits(model, hidden):
    """Logits from the output head computed in fp32 outside autocast, whatever precision the body ran
    in: the head's rounding would otherwise dominate the small log-likelihood deltas between checkpoints."""
    import torch

    head = model.get_output_embeddings()
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        bias = None if getattr(head, "bias", None) is None else head.bias.float()
        return torch.nn.functional.linear(hidden.float(), head.weight.float(), bias)
