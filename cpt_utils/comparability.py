"""Whether two stored evaluations may be paired: the parts of their ``evaluated_with`` records (precision,
model, data, code, library versions) must agree, or their difference would mix the weights' effect with
the setting's.

A leaf: the statistics (``analysis.compare_evals``) refuse such a pair and the result store
(``results.stale_reason``) names the parts that differ, both from here.
"""

from __future__ import annotations

import json


class IncomparableResults(ValueError):
    """Two evaluations that were made differently (precision, model, data, code…) cannot be paired."""


def _label(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)[:60]


def differences(a: dict, b: dict, strict: bool = False) -> list[str]:
    """The parts of two ``evaluated_with`` records that differ, as 'part (a vs b)'; a part only one of
    them records counts only when ``strict``."""
    keys = sorted(set(a) | set(b)) if strict else sorted(set(a) & set(b))
    return [f"{k} ({_label(a.get(k))} vs {_label(b.get(k))})" for k in keys if a.get(k) != b.get(k)]


def check_comparable(a: dict, b: dict) -> None:
    """Refuse to pair two evaluations that were made differently (another precision, model, data, code
    or library version): their difference would mix the weights' effect with the setting's."""
    wa = {"precision": a.get("precision"), **(a.get("evaluated_with") or {})}
    wb = {"precision": b.get("precision"), **(b.get("evaluated_with") or {})}
    wa, wb = ({k: v for k, v in w.items() if v is not None} for w in (wa, wb))
    differ = differences(wa, wb)
    if differ:
        raise IncomparableResults(f"cannot pair {a.get('checkpoint', '?')} with {b.get('checkpoint', '?')}: "
                                  f"evaluated with different {'; '.join(differ)}")
