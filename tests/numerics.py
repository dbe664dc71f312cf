"""Which precision a test compares two computations in, and how close "the same" is there.

``precision: auto`` is bf16 autocast on a CPU that multiplies bf16 natively (AMX, AVX-512 BF16) and fp32
elsewhere, so a test that inherits it compares different arithmetic on different machines. Two kinds of
claim, two rules:

- **Exact arithmetic** — two processes train like one with the same global batch, a resumed run like an
  unbroken one, a branch like its main run, compiled like eager, chunked loss like HF's, FastMCLM like
  HFLM, an export like its checkpoint: made in fp32 (``exact``) on every CPU. Only the order of fp32 sums
  differs between the two paths, so the tolerances are fp32 summation noise (≤ 1e-5 relative). In bf16,
  a sum taken in another order (a gradient all-reduce, another kernel's blocking) rounds to 8 significant
  bits and differs by far more: such a test would fail on a bf16-native CPU for the wrong reason.
- **The bf16 path** — the bf16 body scores like fp32, two processes under bf16 train like one: compared
  to bf16's own resolution, ``BF16_UNIT_ROUNDOFF`` of the value (``assert_within_bf16_rounding``). A
  bf16 number is only known to within half a unit in its 8th significant bit, 2⁻⁸ of itself; two paths
  that each round differently can be trusted to agree that far and no further. A mean over many tokens
  averages its roundings, so it sits well inside; a wrong mask, position or gradient moves a loss by
  ≥ 1e-2 relative (``tests/test_speed.py``), outside.
"""

from __future__ import annotations

from typing import Iterable

#: Rounding to a 16-bit float moves a value by at most this fraction of itself: bf16 keeps 8 significant
#: bits (7 stored + 1 implicit), f16 keeps 11.
UNIT_ROUNDOFF = {"bf16": 2.0 ** -8, "f16": 2.0 ** -11}
BF16_UNIT_ROUNDOFF = UNIT_ROUNDOFF["bf16"]
#: The precision exact-arithmetic claims are made in, on every CPU kind.
EXACT = "fp32"


def exact(params):
    """``params`` pinned to fp32 (training and evaluation both read ``train.precision``), for a
    comparison that claims exact arithmetic up to summation order."""
    return params.model_copy(update={"train": params.train.model_copy(update={"precision": EXACT})})


def assert_within_bf16_rounding(got: Iterable[float], expected: Iterable[float], what: str = "values") -> None:
    """Each of ``got`` agrees with ``expected`` to bf16's resolution of the value: ``|a − b| ≤ 2⁻⁸ max(|a|, |b|)``."""
    got, expected = list(got), list(expected)
    assert len(got) == len(expected), f"{what}: {len(got)} vs {len(expected)}"
    for i, (a, b) in enumerate(zip(got, expected)):
        bound = BF16_UNIT_ROUNDOFF * max(abs(a), abs(b))
        assert abs(a - b) <= bound, f"{what}[{i}]: {a!r} vs {b!r} differ by {abs(a - b):.3g} > bf16 rounding {bound:.3g}"
