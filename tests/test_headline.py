"""The one headline builder and its views (forest rows, compact table, the paper's table, the paragraph)
on synthetic runs whose answer is known (``three_runs``: the domain held-out loss falls 0.30 after the
domain run and 0.10 after the control; the science task's gold bits/byte fall 0.10 after both; the
general task does not move) — and the number formatting every view shares."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cpt_utils import formatting, headline

from .test_control import _write_run, three_runs  # noqa: F401


# ------------------------------------------------------------------------------------- formatting
@pytest.mark.parametrize("se, places", [(0.0087, 3), (0.031, 2), (0.25, 2), (2.3, 1), (0.0012, 4), (45, 0)])
def test_an_estimate_is_rounded_to_what_its_se_supports(se, places):
    assert formatting.decimals_for(se) == places


def test_changes_p_values_and_counts_read_as_a_reader_expects():
    assert formatting.change(-0.03123, 0.0087) == "−0.031 ± 0.009"
    assert formatting.change(0.093, 0.023, scale=100) == "+9.3 ± 2.3"
    assert formatting.change(math.nan, 0.1) == "—" and formatting.change(0.0, 0.0, 100) == "+0.0 ± 0"
    assert formatting.p_value(8.19e-28) == "< 0.001" and formatting.p_value(0.0123) == "0.012"
    assert formatting.p_value(0.456) == "0.46" and formatting.p_value(math.nan) == "—"
    assert formatting.count(14042) == "14,042" and formatting.count("24 documents") == "24 documents"
    assert formatting.fixed(None, 2) == "—" and formatting.fixed(-1.234, 1, signed=True) == "−1.2"


# ---------------------------------------------------------------------------------------- builder
GROUPS = {"domain": ["sci"], "general": ["gen"]}


def _measures(three_runs, control=True):  # noqa: F811
    base, continued, ctl = three_runs
    return headline.measures(base, continued, GROUPS, ctl if control else None)


def test_measures_come_in_the_papers_order_with_both_comparisons(three_runs):  # noqa: F811
    found = _measures(three_runs)
    sections = [m["section"] for m in found]
    assert sections.index("domain tasks") < sections.index("general tasks") < sections.index("held-out text")
    by = {m["measure"]: m for m in found}
    dom = by["domain text loss"]
    assert dom["group"] == "held-out domain text" and dom["reading"] == "domain-specific"
    assert by["sci gold bits/byte"]["reading"] == "generic" and by["gen gold bits/byte"]["reading"] == "not detected"
    assert by["domain group: mean accuracy (1 tasks)"]["kind"] == "group accuracy"
    # without a control: no control columns, readings from the base comparison only
    plain = _measures(three_runs, control=False)
    assert all(m["vs control"] is None and m["reading"] is None for m in plain)


def test_forest_rows_carry_95_intervals_one_unit_each_and_significance(three_runs):  # noqa: F811
    found = _measures(three_runs)
    rows = headline.forest_rows(found)
    assert {r["unit"] for r in rows} == {"accuracy (points)", "bits/byte", "loss (nats/token)"}
    dom = next(r for r in rows if r["measure"] == "domain text loss")
    m = next(m for m in found if m["measure"] == "domain text loss")
    assert dom["vs base"]["low"] < dom["vs base"]["delta"] < dom["vs base"]["high"] < 0 and dom["vs base"]["significant"]
    half = dom["vs control"]["high"] - dom["vs control"]["delta"]
    from scipy.stats import t as student_t
    assert half == pytest.approx(student_t.ppf(0.975, m["vs control"]["df"]) * m["vs control"]["se"])
    gen = next(r for r in rows if r["measure"] == "gen gold bits/byte")
    assert not gen["vs base"]["significant"] and not gen["vs control"]["significant"]
    acc = next(r for r in rows if r["measure"] == "sci accuracy")
    acc_m = next(m for m in found if m["measure"] == "sci accuracy")
    assert acc["vs base"]["delta"] == pytest.approx(100 * acc_m["vs base"]["delta"])  # points


def test_the_compact_table_rounds_to_the_se_and_floors_p(three_runs):  # noqa: F811
    rows = {r["measure"]: r for r in headline.compact_rows(_measures(three_runs))}
    dom = rows["domain text loss"]
    assert list(dom) == ["measure", "n", "base", "continued", "change ± SE", "p (adj.)", "vs control ± SE", "reading"]
    assert dom["p (adj.)"] == "< 0.001" and dom["reading"] == "domain-specific gain"
    assert dom["n"] == "60 documents" and dom["change ± SE"].startswith("−0.")
    delta, se = dom["change ± SE"].removesuffix(" nats/token").split(" ± ")
    assert len(delta.split(".")[1]) == len(se.split(".")[1])  # the change is printed to its SE's place
    assert rows["sci gold bits/byte"]["reading"] == "generic gain"
    assert not any(v in ("nan", "NaN", "None") for r in rows.values() for v in r.values())


def test_the_papers_table_shows_accuracy_in_percent_and_its_change_in_points_and_percent(three_runs):  # noqa: F811
    base, continued, ctl = three_runs
    rows = headline.paper_rows(_measures(three_runs))
    sci = next(r for r in rows if r["benchmark"] == "sci")
    b, c = 100 * base["tasks"]["sci"]["value"], 100 * continued["tasks"]["sci"]["value"]
    assert sci["base (%)"] == f"{b:.1f}" and sci["change (points)"] == formatting.fixed(c - b, 1, signed=True)
    assert sci["change (%)"] == formatting.fixed(100 * (c - b) / b, 1, signed=True)
    assert sci["control (%)"] == f"{100 * ctl['tasks']['sci']['value']:.1f}" and sci["group"] == "domain"


def test_the_paragraph_is_built_from_the_numbers(three_runs):  # noqa: F811
    text = " ".join(headline.paragraph(_measures(three_runs)))
    assert "What the domain added: 1 of" in text and "domain text loss −0.2" in text
    assert "What any training gives:" in text and "sci gold bits/byte" in text
    plain = " ".join(headline.paragraph(_measures(three_runs, control=False)))
    assert "without a control run none of it can be attributed" in plain


def test_a_task_built_for_a_group_is_shown_in_it_but_not_averaged_into_it(three_runs):  # noqa: F811
    base, continued, ctl = (dict(e, tasks=dict(e["tasks"])) for e in three_runs)
    for ev in (base, continued, ctl):
        ev["tasks"]["mmlu_offline_domain_cloze"] = dict(ev["tasks"]["sci"], group="domain")
    found = headline.measures(base, continued, GROUPS, ctl)
    mmlu = [m for m in found if m["measure"].startswith("MMLU STEM & health (cloze)")]
    assert mmlu and all(m["section"] == "domain tasks" for m in mmlu)
    group = next(m for m in found if m["kind"] == "group accuracy" and m["section"] == "domain tasks")
    assert group["vs base"]["tasks"] == 1  # the group still averages only its declared tasks


def test_build_reads_the_run_folders(three_runs, tmp_path):  # noqa: F811
    base, continued, ctl = three_runs
    assert headline.build(tmp_path, GROUPS) is None
    _write_run(tmp_path, {"base": base, "tokens-1000": continued})
    _write_run(tmp_path / "control", {"tokens-1000": ctl})
    found = headline.build(tmp_path, GROUPS)
    assert found["control"] is not None and found["forest"] and found["compact"] and found["paper"]
    assert "vs control ± SE" in found["compact"][0]
    assert np.isfinite([r["vs base"]["delta"] for r in found["forest"]]).all()


def _m(measure: str, vs_base: float, vs_control: float, base_sig: bool, reading: str) -> dict:
    """A hand-made bits/byte measure (lower is better) for the paragraph's sorting rules."""
    return {"measure": measure, "kind": "held-out bits/byte", "subject": measure, "group": "held-out register: x",
            "unit": "bits/byte", "scale": 1.0, "better": "lower", "reading": reading,
            "vs base": {"delta": vs_base, "se": 0.005, "significant": base_sig, "mde_80": 0.01},
            "vs control": {"delta": vs_control, "se": 0.004, "significant": reading == "domain-specific", "mde_80": 0.01}}


def test_the_paragraph_separates_added_spared_and_harmed():
    """Better than the control is not "added" when the run still got worse than the base (it forgot less);
    worse than the control is a cost of the domain."""
    found = [_m("domain text bits/byte", -0.07, -0.012, True, "domain-specific"),
             _m("news bits/byte", +0.021, -0.021, True, "domain-specific"),
             _m("piqa gold bits/byte", +0.010, +0.035, False, "domain-specific")]
    text = " ".join(headline.paragraph(found))
    assert "What the domain added: 1 of 3 measures improved beyond the same-budget control — domain text bits/byte" in text
    assert "It forgot less than the control on 1: news bits/byte −0.021 ± 0.004" in text
    assert "Worse than the control on 1 — a cost of the domain, not of training as such: piqa gold bits/byte +0.035" in text
    assert "What it cost: 1 measures got worse than the base — news bits/byte +0.021 ± 0.005" in text
