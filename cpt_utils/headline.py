"""The headline: base vs continued (vs control) on every benchmark, task group and held-out register.

One builder makes its rows (``comparisons`` — the paired comparisons — and ``headline_rows``, the
paper's table from them); the index (``pipeline``), notebook 05 (``analysis_report``) and the model card
(``model_card``) render them, each in its own form (HTML, DataFrame, markdown).
"""

from __future__ import annotations

import math
from pathlib import Path

from . import analysis
from .readings import cannot_test_words, control_readings
from .results import load_evals, matched_control_evals


def comparisons(base: dict, other: dict, groups: dict[str, list[str]] | None = None, control: dict | None = None,
                alpha: float = 0.05) -> dict:
    """Every headline comparison of ``other`` with ``base``: per held-out split and task (``rows``,
    ``analysis.compare_evals``), per declared task group (``groups``, ``analysis.group_deltas``) and, with
    a ``control`` evaluation at the same tokens, every measure three ways with its reading (``control``,
    ``analysis.control_deltas`` with words)."""
    groups = groups or {}
    return {"rows": analysis.compare_evals(base, other, alpha), "groups": analysis.group_deltas(base, other, groups, alpha),
            "control": control_readings(base, other, control, groups, alpha) if control is not None else []}


def compare_to_control(run_dir: str | Path, groups: dict[str, list[str]] | None = None, alpha: float = 0.05) -> list[dict]:
    """``analysis.control_deltas`` (with words) at every checkpoint the main run and its control
    (``runs/<run>/control``) both evaluated, against the main run's base evaluation; each row names its
    checkpoint and tokens. Empty when there is no control run or no base evaluation."""
    evals = load_evals(run_dir)
    if "base" not in evals:
        return []
    rows = []
    for continued, control in matched_control_evals(run_dir):
        rows += [{"checkpoint": continued["checkpoint"], "tokens": continued["tokens"], **r}
                 for r in control_readings(evals["base"], continued, control, groups, alpha)]
    return rows


def _task_sections(tasks: list[str], groups: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """Tasks by declared group (in the file's order), then the ungrouped ones."""
    sections, seen = [], set()
    for group, members in groups.items():
        found = [t for t in members if t in tasks]
        if found:
            sections.append((f"{group} tasks", found))
            seen |= set(found)
    rest = [t for t in tasks if t not in seen]
    if rest:
        sections.append(("other tasks" if sections else "tasks", rest))
    return sections


def p_cells(r: dict, name: str) -> dict:
    """The raw and family-adjusted p of a row, or "cannot be tested (n documents)" in both."""
    if not r.get("testable", True):
        words = cannot_test_words(r.get("n") or 0)
        return {name: words, f"{name} (adjusted)": words}
    return {name: r["p"], f"{name} (adjusted)": r.get("p_adj", math.nan)}


def _row(section: str, measure: str, r: dict, vs_control: dict, digits: int = 3, key: tuple | None = None) -> dict:
    """One headline row: n, base, continued, change ± SE, p (raw, adjusted), MDE; and against the control."""
    out = {"section": section, "measure": measure, "n": r.get("n"), "base": round(r["base"], digits),
           "continued": round(r["other"], digits), "change ± SE": f"{r['delta']:+.{digits}f} ± {r['se']:.{digits}f}",
           **p_cells(r, "p"), "MDE (80% power)": round(r["mde_80"], digits), "better": r["better_when"]}
    c = vs_control.get(key)
    if c is not None:
        out.update({"control − base ± SE": f"{c['control − base']:+.{digits}f} ± {c['control − base SE']:.{digits}f}",
                    "vs control ± SE": f"{c['continued − control']:+.{digits}f} ± "
                                                            f"{c['continued − control SE']:.{digits}f}",
                    **p_cells({"p": c["continued − control p"], "p_adj": c["continued − control p_adj"],
                               "testable": c["testable"], "n": c["n"]}, "p vs control"),
                    "MDE vs control (80% power)": round(c["MDE vs control (80% power)"], digits),
                    "reading": c["reading words"]})
    return out


def headline_rows(base: dict, final: dict, groups: dict[str, list[str]] | None = None,
                  control: dict | None = None) -> list[dict]:
    """The paper's table as rows, from ``comparisons``: tasks grouped as declared with each group's paired
    aggregate, then held-out text by register (loss and bits per byte), then tokens and time."""
    groups = groups or {}
    found = comparisons(base, final, groups, control)
    cmp = {(r["kind"], r["subject"]): r for r in found["rows"]}
    vs_control = {(r["kind"], r["subject"]): r for r in found["control"]}
    row = lambda *a, **k: _row(*a, vs_control=vs_control, **k)  # noqa: E731
    rows = []
    group_rows = {(g["group"], g["kind"]): g for g in found["groups"]}
    for section, tasks in _task_sections(list(base.get("tasks", {})), groups):
        for task in tasks:
            t = base["tasks"][task]
            if ("accuracy", task) in cmp:
                flag = " — at chance (position bias)" if t.get("at_chance_by_position") else ""
                rows.append(row(section, f"{task} ({t['metric']}){flag}", cmp[("accuracy", task)], key=("accuracy", task)))
            if ("gold bits/byte", task) in cmp:
                rows.append(row(section, f"{task} (gold bits/byte)", cmp[("gold bits/byte", task)], digits=4,
                                key=("gold bits/byte", task)))
        group = section.removesuffix(" tasks")
        for kind, unit in (("accuracy", "mean accuracy"), ("gold bits/byte", "mean gold bits/byte")):
            g = group_rows.get((group, kind))
            if g:
                rows.append(row(section, f"{group} group: {unit} over {g['tasks']} tasks",
                                {**g, "better_when": g["better_when"]}, digits=4 if kind != "accuracy" else 3,
                                key=(f"group {kind}", group)))
    for split in base["perplexity"]:
        for kind, unit in (("held-out loss", "loss (nats/token)"), ("held-out bits/byte", "bits/byte")):
            if (kind, split) in cmp:
                r = cmp[(kind, split)]
                rows.append(row("held-out text", f"{split} {unit}", r, digits=4, key=(kind, split))
                            | {"n": f"{r['n']} documents"})
    rows.append({"section": "run", "measure": "tokens seen", "continued": final["tokens"]})
    rows.append({"section": "run", "measure": "evaluation time per checkpoint (s)",
                 "base": round(base.get("time_s", math.nan), 1), "continued": round(final.get("time_s", math.nan), 1)})
    return rows


def headline_table(run_dir: str | Path, groups: dict[str, list[str]] | None = None, control: bool = True):
    """The paper's table, computed from the run: benchmark × (n, base, continued, change ± SE, p raw and
    adjusted within its family (``analysis.FAMILIES``), minimum detectable effect at 80% power), tasks grouped as declared in ``eval.task_groups`` with each group's paired
    aggregate, then held-out text by register (loss and bits per byte), then tokens and time. Empty
    until the run has the base and at least one checkpoint evaluated.

    With a control run evaluated at the final checkpoint's token count (``control``: look for one), each
    row gains ``control − base``, the "vs control" column ``continued − control ± SE`` with its p (raw and
    adjusted), and the reading (``readings.effect_reading``: domain-specific, generic, inconclusive, not detected).
    A held-out set too small to test shows "cannot be tested (n documents)" in place of its p."""
    import pandas as pd  # lazy: the index's light path must not import pandas before it has a table

    run_dir = Path(run_dir)
    evals = load_evals(run_dir)
    if "base" not in evals or len(evals) < 2:
        return pd.DataFrame()
    base, final = evals["base"], list(evals.values())[-1]
    pair = [c for f, c in matched_control_evals(run_dir) if f["checkpoint"] == final["checkpoint"]] if control else []
    return pd.DataFrame(headline_rows(base, final, groups, pair[0] if pair else None))
