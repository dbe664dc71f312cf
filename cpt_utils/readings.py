"""The words of the statistics: how a comparison reads in a report (an untestable set, a detectable
change, a change against the control, the mitigation recommendation and its table).

``analysis`` decides (which class, which variant) and returns data; every sentence the index, notebook 05
and the model card show about those decisions is built here, so a wording changes in one place.
"""

from __future__ import annotations

import math

from . import analysis
from .analysis import (CANNOT_TEST, DOMAIN_SPECIFIC, GENERIC, INCONCLUSIVE, MIN_DOCUMENTS, confidence_interval,
                       effect_class)


def cannot_test_words(n: int) -> str:
    """How an untestable held-out set is shown in place of a p-value."""
    return f"cannot be tested ({n} documents)"


def mde_words(mde: float) -> str:
    """A detectable change in words; 0 means no item differed, so the paired SE says nothing."""
    return f"{mde:.3g}" if mde and math.isfinite(mde) else "? (no item differed)"


def pm(d: dict | None, digits: int = 3) -> str:
    """A comparison's change ± SE ("—" where there is none)."""
    if not d or not math.isfinite(d.get("delta", math.nan)):
        return "—"
    return f"{d['delta']:+.{digits}f} ± {d['se']:.{digits}f}"


# ------------------------------------------------------------------------- control: generic vs domain
def improves(delta: float, better_when: str) -> bool:
    return delta < 0 if better_when == "lower" else delta > 0


def effect_words(reading: str, vs_base: dict, vs_control: dict, better_when: str,
                 control_vs_base: dict | None = None) -> str:
    """The words of ``analysis.effect_class``'s ``reading``: the direction, the control's own change, the
    interval of continued − control where inconclusive, and the minimum detectable effect at 80% power."""
    if reading == CANNOT_TEST:
        return cannot_test_words(vs_control.get("n") or vs_base.get("n") or 0)
    mde_c, mde_b = (mde_words(d.get("mde_80", math.nan)) for d in (vs_control, vs_base))
    if reading == DOMAIN_SPECIFIC:
        which = "gain" if improves(vs_control["delta"], better_when) else "loss"
        return f"domain-specific {which} (MDE vs control ≈ {mde_c})"
    if reading == GENERIC:
        own = control_vs_base
        which = "gains" if improves(vs_base["delta"], better_when) else "loses"
        return f"generic: the control {which} as much (its own change {own['delta']:+.3g}; MDE vs control ≈ {mde_c})"
    if reading == INCONCLUSIVE:
        lo, hi = confidence_interval(vs_control)
        return (f"inconclusive: continued − control {vs_control['delta']:+.3g} (95% interval {lo:+.3g} to "
                f"{hi:+.3g}) and the control's own change is not significant")
    return f"not detected (MDE ≈ {mde_b} vs base, {mde_c} vs control)"


def effect_reading(vs_base: dict, vs_control: dict, better_when: str,
                   control_vs_base: dict | None = None) -> tuple[str, str]:
    """(class, words) of one measure: ``analysis.effect_class`` and ``effect_words``."""
    reading = effect_class(vs_base, vs_control, better_when, control_vs_base)
    return reading, effect_words(reading, vs_base, vs_control, better_when, control_vs_base)


def with_reading_words(rows: list[dict]) -> list[dict]:
    """``analysis.control_deltas`` rows with their ``reading words`` in place of the comparisons they are
    built from (``reading inputs``)."""
    for r in rows:
        vs_base, vs_control, own = r.pop("reading inputs")
        r["reading words"] = effect_words(r["reading"], vs_base, vs_control, r["better_when"], own)
    return rows


def control_readings(base: dict, continued: dict, control: dict, groups: dict[str, list[str]] | None = None,
                     alpha: float = 0.05) -> list[dict]:
    """``analysis.control_deltas`` with each row's reading in words (``reading words``)."""
    return with_reading_words(analysis.control_deltas(base, continued, control, groups, alpha))


# ---------------------------------------------------------------------- mitigation: which, at what cost
def domain_cost_words(costs: list[tuple[str, dict]]) -> list[str]:
    """``analysis.domain_costs`` in words (empty: none detected)."""
    return [f"{what} {pm(d, 3 if what == 'domain-group accuracy' else 4)}"
            f"{' nats/token' if what == 'held-out domain loss' else ''} (p = {d['p']:.2g})" for what, d in costs]


def _reference_sentence(decision: dict) -> str:
    """What the unmitigated reference forgets against the base."""
    reference, f_ref, splits = decision["reference"], decision["forgetting"], ", ".join(decision["splits"])
    if decision["reference forgets"]:
        return (f"Without mitigation (`{reference}`) the held-out loss outside the domain rises by {pm(f_ref, 4)} "
                f"nats/token on average over {splits} (p = {f_ref['p']:.2g}; worst: {f_ref['worst']} "
                f"{f_ref['worst_delta']:+.4f} ± {f_ref['worst_se']:.4f}).")
    if not f_ref["testable"]:
        return (f"Without mitigation (`{reference}`) the mean held-out loss change over {splits} is {pm(f_ref, 4)} "
                f"nats/token but cannot be tested: a split has fewer than {MIN_DOCUMENTS} documents.")
    return (f"Without mitigation (`{reference}`) no forgetting is detected: the mean held-out loss change over "
            f"{splits} is {pm(f_ref, 4)} nats/token (p = {f_ref['p']:.2g}; MDE at 80% power ≈ {f_ref['mde_80']:.4f}), "
            "so there is little for a mitigation to reduce on these held-out sets.")


def _no_reducer_sentences(decision: dict) -> list[str]:
    """No variant reduces forgetting detectably: say so (with the comparisons' MDE) and name those that forget more."""
    reference, worse = decision["reference"], decision["worse"]
    ses = [r["forgetting vs reference"]["mde_80"] for r in decision["others"]
           if math.isfinite(r["forgetting vs reference"]["mde_80"])]
    parts = [f"No variant reduces forgetting detectably against `{reference}` "
             + (f"(each comparison's MDE at 80% power ≈ {min(ses):.4f}–{max(ses):.4f} nats/token)" if ses else "")
             + ": the data cannot separate the variants, so none is recommended on this evidence."]
    if worse:
        names = ", ".join(f"`{r['variant']}`" for r in worse)
        parts.append(f"{names} forget{'s' if len(worse) == 1 else ''} "
                     "*more* than the reference.")
    return parts


def _recommended_sentences(decision: dict) -> list[str]:
    """The recommended variant, its cost, the variants it cannot be separated from and those that pay a cost."""
    reference, best = decision["reference"], decision["best"]
    d, dom = best["forgetting vs reference"], best["domain loss vs reference"]
    cost = domain_cost_words(decision["costs"])
    parts = [f"**Recommended: `{best['variant']}`** — it reduces forgetting by {-d['delta']:.4f} ± {d['se']:.4f} "
             f"nats/token against `{reference}` (p = {d['p']:.2g}, adjusted {d['p_adj']:.2g}), "
             + (f"at a cost of {'; '.join(cost)}." if cost else
                f"with no detected cost in domain gain (held-out domain loss {pm(dom, 4)} nats/token against "
                f"`{reference}`, p = {dom['p']:.2g}; MDE at 80% power ≈ {dom['mde_80']:.4f}).")]
    tied = [f"`{r['variant']}` ({diff['delta']:+.4f} ± {diff['se']:.4f} more forgetting, paired)"
            for r, diff in decision["tied"]]
    if tied:
        parts.append(f"The data cannot separate it from {', '.join(tied)}, which also reduce{'s' if len(tied) == 1 else ''} "
                     "forgetting; choose among them by cost.")
    paid = decision["paid"]
    if paid:
        names = ", ".join(f"`{v}`" for v in paid)
        parts.append(f"{names} also reduce{'s' if len(paid) == 1 else ''} forgetting but "
                     "at a detected domain cost.")
    return parts


def mitigation_frame(rows: list[dict]):
    """The mitigation table as shown: per variant its reading, forgetting and domain loss against the base
    and the reference (change ± SE, p raw and adjusted), the domain group's accuracy and gold bits/byte
    against the reference, and its domain cost in words."""
    import pandas as pd  # lazy: the words of a reading must not import pandas

    return pd.DataFrame([{
        "variant": r["variant"], "tokens": r["tokens"], "reading": r["reading"],
        "forgetting vs base (nats/token)": pm(r["forgetting vs base"], 4),
        "worst split": r["forgetting vs base"]["worst"],
        "forgetting vs reference": pm(r["forgetting vs reference"], 4),
        "p (forgetting vs reference)": r["forgetting vs reference"]["p"],
        "p adjusted (forgetting vs reference)": r["forgetting vs reference"].get("p_adj", math.nan),
        "domain loss vs base": pm(r["domain loss vs base"], 4),
        "domain loss vs reference": pm(r["domain loss vs reference"], 4),
        "p (domain loss vs reference)": r["domain loss vs reference"]["p"],
        "domain accuracy vs reference": pm(r["domain accuracy vs reference"]),
        "domain gold bits/byte vs reference": pm(r["domain gold bpb vs reference"], 4),
        "domain cost": "—" if r["reference"] else ("; ".join(domain_cost_words(r["domain costs"])) or "none detected"),
    } for r in rows])


def recommend_mitigation(base: dict, variants: dict[str, dict], reference: str | None,
                         groups: dict[str, list[str]] | None = None, domain_group: str = "domain",
                         alpha: float = 0.05):
    """Which mitigation reduces forgetting, at what cost in domain gain (``analysis.mitigation_decision``),
    as (markdown sentence, table)."""
    import pandas as pd  # lazy: the words of a reading must not import pandas

    decision = analysis.mitigation_decision(base, variants, reference, groups, domain_group, alpha)
    if decision["status"] == "no variants":
        return ("No variants are declared in the parameter file (`variants:`), so there is nothing to compare.",
                pd.DataFrame())
    if decision["status"] == "no reference":
        return (f"No unmitigated reference variant{f' ({reference!r} has no evaluation)' if reference else ''}: "
                "declare `no_mitigation` (the main recipe at the variants' budget) so each mitigation can be "
                "compared with no mitigation at equal budget.", pd.DataFrame())
    parts = [_reference_sentence(decision)]
    parts += _recommended_sentences(decision) if decision["best"] is not None else _no_reducer_sentences(decision)
    return " ".join(parts), mitigation_frame(decision["rows"])


def mitigation_sentence(base: dict, variants: dict[str, dict], reference: str | None,
                        groups: dict[str, list[str]] | None = None, alpha: float = 0.05) -> str | None:
    """The mitigation decision in one sentence for the headline (which variant, at what price, or that the
    data cannot separate them); None without variants or an unmitigated reference."""
    decision = analysis.mitigation_decision(base, variants, reference, groups, alpha=alpha)
    if decision["status"] != "compared":
        return None
    first = (_recommended_sentences(decision) if decision["best"] is not None else _no_reducer_sentences(decision))[0]
    return "Which mitigation: " + first.replace("**", "")
