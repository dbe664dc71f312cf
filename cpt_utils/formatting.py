"""Numbers as a reader sees them: an estimate rounded to what its standard error supports, a p-value
that never prints 8.19e-28, accuracies in percent and their changes in points.

One place for these rules so the index, notebook 05 and the model card print the same row the same way.
"""

from __future__ import annotations

import math

#: p-values below this print as "< 0.001": smaller ones are no more informative at these sample sizes
P_FLOOR = 0.001


def decimals_for(se: float, max_decimals: int = 6) -> int:
    """Decimals that show ``se`` to two significant digits when it starts with 1 or 2, else one (the
    Particle Data Group's rounding rule, simplified); the estimate is printed to the same place."""
    if not se or not math.isfinite(se) or se <= 0:
        return 3
    exponent = math.floor(math.log10(se))
    leading = int(se / 10 ** exponent)
    places = -exponent + (1 if leading < 3 else 0)
    return max(0, min(max_decimals, places))


def fixed(x: float | None, decimals: int, signed: bool = False) -> str:
    """``x`` with ``decimals`` places, a true minus sign, "—" where there is no number."""
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "—"
    text = f"{x:+.{decimals}f}" if signed else f"{x:.{decimals}f}"
    return text.replace("-", "−")


def change(delta: float, se: float, scale: float = 1.0) -> str:
    """"+0.031 ± 0.009": a change and its SE, both rounded to what the SE supports."""
    if not (isinstance(delta, (int, float)) and math.isfinite(delta)):
        return "—"
    if se == 0:  # no item differed: the change is exact, and its SE says nothing about precision
        return f"{fixed(delta * scale, 1, signed=True)} ± 0"
    places = decimals_for(se * scale)
    return f"{fixed(delta * scale, places, signed=True)} ± {fixed(se * scale, places)}"


def p_value(p: float | None) -> str:
    """"< 0.001" below the floor, else two significant digits ("0.012", "0.34"); "—" where untested."""
    if p is None or not isinstance(p, (int, float)) or not math.isfinite(p):
        return "—"
    if p < P_FLOOR:
        return f"< {P_FLOOR:g}"
    return f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


def count(n) -> str:
    """A count with thousands separators; text (e.g. "24 documents") as given."""
    if isinstance(n, bool) or n is None:
        return "—"
    if isinstance(n, int) or (isinstance(n, float) and math.isfinite(n) and n == int(n)):
        return f"{int(n):,}"
    return str(n)
