"""The headline: base vs continued (vs control) on every benchmark, task group and held-out register.

One builder makes its rows (``comparisons`` — the paired comparisons — and ``headline_rows``, the
paper's table from them); the index (``pipeline``), notebook 05 (``analysis_report``) and the model card
(``model_card``) render them, each in its own form (HTML, DataFrame, markdown).
"""

from __future__ import annotations

import math
from pathlib import Path

from . import analysis, formatting
from .readings import cannot_test_words, control_readings, effect_words, improves, mitigation_sentence
from .results import load_evals, load_variant_evals, matched_control_evals


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


# ------------------------------------------------------------------------ the headline at a glance
#: How each kind of measure is shown: its unit in the reports and the factor from stored values to it
#: (accuracies are stored as fractions and shown in percent, their changes in points).
UNITS = {"accuracy": ("accuracy (%)", 100.0), "gold bits/byte": ("bits/byte", 1.0),
         "held-out bits/byte": ("bits/byte", 1.0), "held-out loss": ("nats/token", 1.0)}
#: The forest plot's axis unit of each kind: one axis per unit, never two units on one axis.
FOREST_UNITS = {"accuracy (%)": "accuracy (points)", "bits/byte": "bits/byte", "nats/token": "loss (nats/token)"}
TASK_LABELS = {"arc_easy": "ARC-Easy", "arc_challenge": "ARC-Challenge", "sciq": "SciQ", "openbookqa": "OpenBookQA",
               "hellaswag": "HellaSwag", "piqa": "PIQA", "winogrande": "Winogrande", "boolq": "BoolQ",
               "medmcqa": "MedMCQA", "medqa": "MedQA", "mmlu_offline_domain": "MMLU STEM & health (letters)",
               "mmlu_offline_general": "MMLU other subjects (letters)",
               "mmlu_offline_domain_cloze": "MMLU STEM & health (cloze)",
               "mmlu_offline_general_cloze": "MMLU other subjects (cloze)",
               "continuation_domain": "domain continuation", "continuation_general": "general continuation"}


def task_label(task: str) -> str:
    """A benchmark's name as papers print it (``arc_easy_offline`` → ARC-Easy); unknown names as given."""
    for key in (task, task.removesuffix("_offline"), task.removesuffix("_cloze_offline")):
        if key in TASK_LABELS:
            return TASK_LABELS[key] + (" (cloze)" if key != task and task.endswith("_cloze_offline") else "")
    return task


def split_label(split: str) -> str:
    """``val_domain`` → "domain text", ``val_general`` → "general text", ``val_chat`` → "chat"."""
    name = split.removeprefix("val_")
    return {"domain": "domain text", "general": "general text"}.get(name, name)


def _held_out_group(split: str) -> str:
    """The forest plot's group of a held-out split: the domain's own text, then each register unlike it."""
    return "held-out domain text" if split == "val_domain" else f"held-out register: {split_label(split)}"


def _final_task_sections(tasks: list[str], base: dict, groups: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """``_task_sections``, with tasks outside every declared group but built for one (the catalogue's
    ``group``, e.g. MMLU's STEM subjects → domain) placed in that group's section: they are shown with it
    but not averaged into it (the group aggregate must mean the same tasks at every checkpoint)."""
    declared = {t for members in groups.values() for t in members}
    placed = {t: base["tasks"][t].get("group") for t in tasks if t not in declared}
    placed = {t: g for t, g in placed.items() if g in groups}
    sections = _task_sections([t for t in tasks if t not in placed], groups)
    for group in groups:
        extra = [t for t, g in placed.items() if g == group]
        if not extra:
            continue
        title = f"{group} tasks"
        for i, (section, members) in enumerate(sections):
            if section == title:
                sections[i] = (section, members + extra)
                break
        else:
            sections.append((title, extra))
    return sections


def _measure(section: str, group: str, label: str, kind: str, r: dict, ctl: dict | None) -> dict:
    """One headline measure with its comparisons as numbers (formatting is the readers' job)."""
    unit, scale = UNITS[kind.removeprefix("group ")]
    out = {"section": section, "group": group, "measure": label, "kind": kind, "subject": r.get("subject", r.get("group")),
           "unit": unit, "scale": scale,
           "better": r["better_when"], "n": r.get("n"), "base": r["base"], "continued": r["other"], "vs base": r,
           "control": None, "vs control": None, "control − base": None, "reading": None, "reading words": None}
    if ctl is not None:
        out.update({k: ctl[k] for k in ("control", "vs control", "control − base", "reading", "reading words")})
    return out


def _control_measures(base: dict, final: dict, control: dict | None, groups: dict, alpha: float) -> dict:
    """``analysis.control_deltas`` by (kind, subject): the control's value, continued − control, the
    control's own change and the reading (class and words)."""
    if control is None:
        return {}
    out = {}
    for r in analysis.control_deltas(base, final, control, groups, alpha):
        vs_base, vs_control, own = r["reading inputs"]
        out[(r["kind"], r["subject"])] = {
            "control": r["control"], "vs control": vs_control, "control − base": own, "reading": r["reading"],
            "reading words": effect_words(r["reading"], vs_base, vs_control, r["better_when"], own)}
    return out


def measures(base: dict, final: dict, groups: dict[str, list[str]] | None = None, control: dict | None = None,
             alpha: float = 0.05) -> list[dict]:
    """Every headline measure in display order — tasks by group (each task's accuracy and gold bits/byte,
    then the group's paired aggregate), then held-out text (the domain's, then each register: loss and
    bits per byte) — each with ``continued − base`` and, with a ``control`` evaluation, ``continued −
    control``, the control's own change and the reading. The forest plot, the compact table, the paper's
    table and the paragraph are all views of this list."""
    groups = groups or {}
    vs_base = {(r["kind"], r["subject"]): r for r in analysis.compare_evals(base, final, alpha)}
    vs_base.update({(f"group {g['kind']}", g["group"]): g for g in analysis.group_deltas(base, final, groups, alpha)})
    ctl = _control_measures(base, final, control, groups, alpha)
    out = []
    tasks = [t for t in base.get("tasks", {}) if t in final.get("tasks", {})]
    for section, members in _final_task_sections(tasks, base, groups):
        for task in members:
            for kind, what in (("accuracy", "accuracy"), ("gold bits/byte", "gold bits/byte")):
                if (kind, task) in vs_base:
                    out.append(_measure(section, section, f"{task_label(task)} {what}", kind, vs_base[(kind, task)],
                                        ctl.get((kind, task))))
        group = section.removesuffix(" tasks")
        for kind in ("group accuracy", "group gold bits/byte"):
            g = vs_base.get((kind, group))
            if g:
                what = kind.removeprefix("group ")
                out.append(_measure(section, section, f"{group} group: mean {what} ({g['tasks']} tasks)", kind, g,
                                    ctl.get((kind, group))))
    splits = sorted(base.get("perplexity", {}), key=lambda s: (s != "val_domain", s != "val_general", s))
    for split in splits:
        for kind in ("held-out bits/byte", "held-out loss"):
            if (kind, split) in vs_base:
                r = vs_base[(kind, split)]
                what = "bits/byte" if kind == "held-out bits/byte" else "loss"
                out.append(_measure("held-out text", _held_out_group(split), f"{split_label(split)} {what}", kind,
                                    r, ctl.get((kind, split))) | {"n": f"{r['n']} documents"})
    return out


def _interval(d: dict | None, scale: float) -> dict | None:
    """A comparison as the forest plot draws it: change, 95% interval (t on its df), significance."""
    if not d or not math.isfinite(d.get("delta", math.nan)) or not math.isfinite(d.get("se", math.nan)):
        return None
    lo, hi = analysis.confidence_interval(d)
    return {"delta": d["delta"] * scale, "low": lo * scale, "high": hi * scale,
            "significant": bool(d.get("significant", False) and d.get("testable", True))}


def at_a_glance(found: list[dict]) -> list[dict]:
    """The measures a glance needs: held-out text in bits per byte only (its loss in nats/token says the
    same on a tokenizer-dependent scale; kept where bits per byte was not measured)."""
    with_bpb = {m["subject"] for m in found if m["kind"] == "held-out bits/byte"}
    return [m for m in found if not (m["kind"] == "held-out loss" and m["subject"] in with_bpb)]


def forest_rows(found: list[dict]) -> list[dict]:
    """The forest plot's rows (``forest.fig_forest``): every measure of ``at_a_glance``, in its unit."""
    rows = []
    for m in at_a_glance(found):
        vs_base = _interval(m["vs base"], m["scale"])
        if vs_base is None:
            continue
        rows.append({"group": m["group"], "measure": m["measure"], "unit": FOREST_UNITS[m["unit"]], "better": m["better"],
                     "vs base": vs_base, "vs control": _interval(m["vs control"], m["scale"])})
    return rows


def short_reading(m: dict) -> str:
    """A measure's reading in two or three words (the full words are in the detailed table): against the
    control where there is one, else against the base."""
    d = m["vs control"] if m["reading"] is not None else m["vs base"]
    if m["reading"] is not None:
        if m["reading"] in (analysis.DOMAIN_SPECIFIC, analysis.GENERIC):
            which = "gain" if improves(d["delta"] if m["reading"] == analysis.DOMAIN_SPECIFIC else m["vs base"]["delta"],
                                       m["better"]) else "loss"
            return f"{m['reading']} {which}"
        return m["reading"]
    r = m["vs base"]
    if not r.get("testable", True):
        return analysis.CANNOT_TEST
    if not r.get("significant"):
        return analysis.NOT_DETECTED
    return "gain" if improves(r["delta"], m["better"]) else "loss"


def _value(x: float, m: dict, se: float) -> str:
    return formatting.fixed(x * m["scale"], formatting.decimals_for(se * m["scale"]))


def compact_rows(found: list[dict]) -> list[dict]:
    """The headline as a reader scans it: measure, n, base, continued, change ± SE (rounded to what the
    SE supports), its adjusted p ("< 0.001" below that), continued − control ± SE and the reading."""
    with_control = any(m["vs control"] is not None for m in found)
    rows = []  # the held-out loss in nats/token is in the full table
    for m in at_a_glance(found):
        r = m["vs base"]
        unit = "pts" if m["unit"] == "accuracy (%)" else m["unit"]
        row = {"measure": m["measure"], "n": formatting.count(m["n"]),
               "base": _value(m["base"], m, r["se"]), "continued": _value(m["continued"], m, r["se"]),
               "change ± SE": f"{formatting.change(r['delta'], r['se'], m['scale'])} {unit}",
               "p (adj.)": formatting.p_value(r.get("p_adj")) if r.get("testable", True) else "—"}
        if with_control:
            c = m["vs control"]
            row["vs control ± SE"] = formatting.change(c["delta"], c["se"], m["scale"]) if c else "—"
        row["reading"] = short_reading(m)
        rows.append(row)
    return rows


def paper_rows(found: list[dict]) -> list[dict]:
    """The seed paper's table: benchmark, base, continued, change in points and in percent of the base
    (accuracy of each task, then each group's mean), with the control's accuracy beside it where there is one."""
    rows = []
    for m in found:
        if m["kind"] not in ("accuracy", "group accuracy"):
            continue
        base, cont = 100 * m["base"], 100 * m["continued"]
        row = {"benchmark": m["measure"].removesuffix(" accuracy"), "group": m["section"].removesuffix(" tasks"),
               "n": formatting.count(m["n"]), "base (%)": f"{base:.1f}", "continued (%)": f"{cont:.1f}",
               "change (points)": formatting.fixed(cont - base, 1, signed=True),
               "change (%)": formatting.fixed(100 * (cont - base) / base, 1, signed=True) if base else "—"}
        if m["control"] is not None:
            row["control (%)"] = f"{100 * m['control']:.1f}"
        rows.append(row)
    return rows


def _t(d: dict) -> float:
    return abs(d["delta"] / d["se"]) if d.get("se") else 0.0


def _phrase(m: dict, d: dict) -> str:
    """"held-out domain text bits/byte −0.052 ± 0.008" (accuracy changes in points)."""
    unit = "points" if m["unit"] == "accuracy (%)" else m["unit"]
    return f"{m['measure']} {formatting.change(d['delta'], d['se'], m['scale'])} {unit}"


def _listing(items: list[dict], key: str, limit: int = 3) -> str:
    ranked = sorted(items, key=lambda m: -_t(m[key]))
    shown = "; ".join(_phrase(m, m[key]) for m in ranked[:limit])
    return shown + (f"; and {len(ranked) - limit} more" if len(ranked) > limit else "")


def paragraph(found: list[dict], mitigation: str | None = None) -> list[str]:
    """The headline in sentences, each built from the measures' numbers: what the domain added (beyond
    the control), what any training gives (the control's own change), what it cost (measures that got
    significantly worse than the base), and the mitigation sentence when one is given."""
    shown = at_a_glance(found)
    with_control = any(m["reading"] is not None for m in shown)
    sentences = []
    if with_control:
        beyond = [m for m in shown if m["reading"] == analysis.DOMAIN_SPECIFIC]
        worse_than_base = lambda m: m["vs base"].get("significant") and not improves(m["vs base"]["delta"], m["better"])  # noqa: E731
        # better than the control but worse than the base: the domain run forgot less, it added nothing
        domain = [m for m in beyond if improves(m["vs control"]["delta"], m["better"]) and not worse_than_base(m)]
        spared = [m for m in beyond if improves(m["vs control"]["delta"], m["better"]) and worse_than_base(m)]
        harmed = [m for m in beyond if not improves(m["vs control"]["delta"], m["better"])]
        generic = [m for m in shown if m["reading"] == analysis.GENERIC]
        unsure = [m for m in shown if m["reading"] == analysis.INCONCLUSIVE]
        if domain:
            sentences.append(f"What the domain added: {len(domain)} of {len(shown)} measures improved beyond the "
                             f"same-budget control — {_listing(domain, 'vs control')} (continued − control ± SE).")
        else:
            tested = [m for m in shown if m["vs control"] and math.isfinite(m["vs control"].get("mde_80", math.nan))]
            # the domain's own held-out text: where a domain effect shows first
            best = next((m for m in tested if m["group"] == "held-out domain text"), tested[0] if tested else None)
            sentences.append("What the domain added: no measure improved beyond the same-budget control"
                             + (f" (e.g. {best['measure']} would have shown a change of "
                                f"{best['vs control']['mde_80'] * best['scale']:.2g} "
                                f"{'points' if best['unit'] == 'accuracy (%)' else best['unit']} 80% of the time)."
                                if best else "."))
        if spared:
            sentences.append(f"It forgot less than the control on {len(spared)}: {_listing(spared, 'vs control')} "
                             "(continued − control; both got worse than the base).")
        if harmed:
            sentences.append(f"Worse than the control on {len(harmed)} — a cost of the domain, not of training as "
                             f"such: {_listing(harmed, 'vs control')} (continued − control).")
        if generic:
            sentences.append(f"What any training gives: {len(generic)} measures moved as much in the control run "
                             f"— {_listing(generic, 'vs base')} (continued − base).")
        if unsure:
            sentences.append(f"{len(unsure)} changes against the base are inconclusive: the control's own change "
                             "is not significant, so they cannot be attributed to the domain or to training as such.")
    else:
        gains = [m for m in shown if m["vs base"].get("significant") and improves(m["vs base"]["delta"], m["better"])]
        sentences.append(f"Against the base, {len(gains)} of {len(shown)} measures improved"
                         + (f" — {_listing(gains, 'vs base')}" if gains else "")
                         + "; without a control run none of it can be attributed to the domain rather than to training as such.")
    costs = [m for m in shown if m["vs base"].get("significant") and not improves(m["vs base"]["delta"], m["better"])]
    if costs:
        sentences.append(f"What it cost: {len(costs)} measures got worse than the base — {_listing(costs, 'vs base')}.")
    else:
        registers = [m for m in shown if m["group"].startswith("held-out register")]
        worst = max(registers, key=lambda m: m["vs base"].get("mde_80", -math.inf), default=None)
        mde = worst["vs base"].get("mde_80", math.nan) if worst else math.nan
        sentences.append("What it cost: no measure got significantly worse than the base"
                         + (f" (on every held-out register a change of {mde:.2g} {worst['unit']} or more would be found "
                            "80% of the time)." if math.isfinite(mde) else "."))
    if mitigation:
        sentences.append(mitigation)
    return sentences


def build(run_dir: str | Path, groups: dict[str, list[str]] | None = None, variants: list[str] | None = None,
          reference: str | None = None, control: bool = True) -> dict | None:
    """The one headline of a run, for the index, notebook 05 and the model card: its ``measures`` and their
    views (``forest`` rows, ``compact`` rows, the paper's table ``paper``, the ``paragraph`` sentences) at
    the final checkpoint, against the base and (``control``) the same-budget control; the mitigation
    sentence compares ``variants`` (names; None: every variant found) with ``reference``. None until the
    base and a checkpoint are evaluated."""
    run_dir = Path(run_dir)
    evals = load_evals(run_dir)
    if "base" not in evals or len(evals) < 2:
        return None
    base, final = evals["base"], list(evals.values())[-1]
    pair = [c for f, c in matched_control_evals(run_dir) if f["checkpoint"] == final["checkpoint"]] if control else []
    found = measures(base, final, groups, pair[0] if pair else None)
    runs = {n: e for n, e in load_variant_evals(run_dir).items() if variants is None or n in variants}
    mitigation = mitigation_sentence(base, runs, reference, groups) if runs else None
    return {"base": base, "final": final, "control": pair[0] if pair else None, "measures": found,
            "forest": forest_rows(found), "compact": compact_rows(found), "paper": paper_rows(found),
            "paragraph": paragraph(found, mitigation)}
