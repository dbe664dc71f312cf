"""One precision policy for training and evaluation.

    precision = resolve_precision(params.train.precision, device.type)   # "bf16" | "fp16" | "fp32"
    with autocast(precision, device.type):
        loss = model(...).loss

Weights stay fp32 (they are the master weights the optimizer updates); ``bf16``/``fp16`` mean autocast
runs the matmuls in half precision. ``auto`` is the fast choice *for this hardware*, not a guess:

- CUDA: bf16 where the GPU supports it, else fp16.
- CPU: bf16 only when the CPU multiplies bf16 natively (AMX or AVX-512 BF16). Elsewhere — an AVX2 CPU
  such as AMD EPYC Milan — PyTorch emulates bf16 matmuls and autocast is 10–200× *slower* than fp32
  (measured: a 2048² bf16 matmul ≈ 0.2 GFLOP/s vs fp32 ≈ 45 GFLOP/s on 2 AVX2 cores; one SmolLM2-135M
  training step 10× slower), so ``auto`` stays in fp32 there.

An explicit ``bf16`` on such a CPU is honoured (results must be reproducible across machines when
asked for), with a one-line warning that it is slow.

``CPT_CPU_BF16=native|emulated`` overrides the probe, so one machine can run what ``auto`` does on the
other kind of CPU (``make test-cpu-kinds`` runs the suite both ways; bf16 is slow, emulated, on AVX2).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterator, Literal

Precision = Literal["bf16", "fp16", "fp32"]
REQUESTS = ("auto", "bf16", "fp16", "fp32")
CPU_BF16_OVERRIDE = "CPT_CPU_BF16"
CPU_BF16_KINDS = ("native", "emulated")


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 matmul instructions (AMX tiles or AVX-512 BF16) that oneDNN uses,
    or when ``CPT_CPU_BF16`` says which kind to behave as (tests of the other CPU kind's path)."""
    override = os.environ.get(CPU_BF16_OVERRIDE, "").strip().lower()
    if override:
        if override not in CPU_BF16_KINDS:
            raise ValueError(f"{CPU_BF16_OVERRIDE}: '{override}' is not one of {CPU_BF16_KINDS}")
        return override == "native"
    return cpu_multiplies_bf16()


def cpu_multiplies_bf16() -> bool:
    """What the CPU itself can do, whatever ``CPT_CPU_BF16`` says."""
    import torch  # lazy: the results and config code import this module; torch only when a device is asked about

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(requested: str, device_type: str) -> Precision:
    """The precision a run uses: ``requested`` is one of ``auto|bf16|fp16|fp32`` (``train.precision``)."""
    if requested not in REQUESTS:
        raise ValueError(f"precision: '{requested}' is not one of {REQUESTS}")
    if requested == "auto":
        if device_type == "cuda":
            import torch  # lazy: the results and config code import this module; torch only when a device is asked about

            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device_type == "cpu" and cpu_has_native_bf16() else "fp32"
    if requested == "bf16" and device_type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("precision bf16 on a CPU without AMX/AVX-512 BF16: matmuls are emulated and 10× or more "
                      "slower than fp32 (precision: auto picks fp32 here)", stacklevel=2)
    if requested == "fp16" and device_type == "cpu":
        raise ValueError("precision: fp16 autocast is for GPUs; use auto, bf16 or fp32 on a CPU")
    return requested  # type: ignore[return-value]


def autocast_dtype(precision: Precision):
    """The torch dtype autocast runs matmuls in, or None for fp32 (autocast off)."""
    import torch  # lazy: the results and config code import this module; torch only when a device is asked about

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def accelerate_mixed_precision(precision: Precision) -> str:
    """The name ``accelerate.Accelerator(mixed_precision=...)`` uses for ``precision``."""
    return {"fp32": "no"}.get(precision, precision)


@contextlib.contextmanager
def autocast(precision: Precision, device_type: str) -> Iterator[None]:
    """``torch.autocast`` for ``precision`` on ``device_type`` (a no-op for fp32)."""
    import torch  # lazy: the results and config code import this module; torch only when a device is asked about

    dtype = autocast_dtype(precision)
    with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
        yield


def fp32_logits(model, hidden):
    """Logits from the output head computed in fp32 outside autocast, whatever precision the body ran
    in: the head's rounding would otherwise dominate the small log-likelihood deltas between checkpoints
    (a logit of 10 in bf16 is off by up to 0.04, the size of the effects evaluation looks for)."""
    import torch  # lazy: the results and config code import this module; torch only when a device is asked about

    head = model.get_output_embeddings()
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        bias = None if getattr(head, "bias", None) is None else head.bias.float()
        return torch.nn.functional.linear(hidden.float(), head.weight.float(), bias)
