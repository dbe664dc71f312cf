"""Keep the memory a CPU training step frees for the next step, instead of handing it back to the kernel.

Why: a step allocates and frees the same large tensors every time (autocast's bf16 copies of the
weights, activations, the loss head's 113 MB gradient). glibc's malloc serves every block above its
mmap threshold (128 KiB, rising with use to at most 32 MiB) with a fresh ``mmap`` and unmaps it on
``free``, so each step faults in, and the kernel zero-fills, the same hundreds of MB again. Raising the
mmap threshold and the trim threshold keeps those pages in the heap for reuse. Measured on an eager bf16
SmolLM2-135M step at the quickstart's shape (2-core Intel Xeon with AMX, 3 interleaved rounds of
8 steps): median 1.72 → 1.60 s per step, the same loss to the last bit, peak RSS +1.4%
(benchmarks/README.md, "The allocator"). Only the allocator's bookkeeping changes: no number does.

``CPT_MALLOC_TUNING=off`` leaves glibc's defaults alone; other C libraries (musl, macOS) are untouched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

from .paths import switched_off

OPT_OUT = "CPT_MALLOC_TUNING"

# glibc's mallopt parameters (malloc.h) and the values set (mallopt takes a C int): blocks up to 1 GiB
# come from the heap, the heap is trimmed only when 2 GiB lie free at its top, and grows 256 MiB at a time
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {M_MMAP_THRESHOLD: 1 << 30, M_TRIM_THRESHOLD: (1 << 31) - 1, M_TOP_PAD: 256 << 20}

_applied: bool | None = None


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (the only one whose ``mallopt`` these values mean)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 — musl and others lack it
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed blocks for reuse (once per process); True if it is in effect.

    Called before a model is loaded (``modeling.load_model``), so every process that trains or scores a
    model on CPU gets it. Refused values (an older glibc caps the mmap threshold) fall back to the
    largest accepted one; nothing is set when ``CPT_MALLOC_TUNING`` is ``off``/``0``/``false``/``no``.
    """
    global _applied
    if _applied is not None:
        return _applied
    if switched_off(OPT_OUT):
        _applied = False
        return _applied
    libc = _glibc()
    if libc is None:
        _applied = False
        return _applied
    libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    accepted = []
    for param, value in SETTINGS.items():
        while value >= 1 << 20 and libc.mallopt(param, value) != 1:
            value //= 2  # glibc refuses an mmap threshold above its HEAP_MAX_SIZE / 2
        accepted.append(value >= 1 << 20)
    _applied = all(accepted)
    return _applied
