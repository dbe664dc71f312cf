"""Analysis functions on synthetic data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cpt_utils.analysis import (
    compare_evals, diminishing_returns, fit_loss_curve, holdout_error, marginal_gains, mcnemar_exact, paired_delta,
    paper_finding, pareto_front, per_subject_deltas, prediction_band, score_trends, stability_plasticity,
    tokens_to_reach,
)

TOKENS = np.array([0, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6])
#: The simulated points' covariance: independent noise of SD 0.002 (what the fits below are told).
COV = 0.002 ** 2 * np.eye(len(TOKENS))


def _power_law(d, e=2.0, a=40.0, alpha=0.35):
    return e + a * np.power(d, -alpha)


def test_power_law_parameters_are_recovered_with_honest_intervals():
    rng = np.random.default_rng(0)
    losses = _power_law(np.maximum(TOKENS, 1)) + rng.normal(0, 0.002, len(TOKENS))
    fit = fit_loss_curve(TOKENS, losses, cov=COV, draws=300)
    assert fit.ok and fit.n_points == 7  # the D = 0 point is excluded
    assert fit.params["E"] == pytest.approx(2.0, abs=0.05)
    assert fit.params["alpha"] == pytest.approx(0.35, abs=0.03)
    assert fit.intervals["alpha"][0] <= 0.35 <= fit.intervals["alpha"][1]
    assert fit.r2 > 0.999
    lo, hi = prediction_band(fit, [3e5])
    assert lo[0] <= fit.predict([3e5])[0] <= hi[0]
    assert abs(fit.predict([3e5])[0] - _power_law(3e5)) < 0.01 and 0 < hi[0] - lo[0] < 0.02
    # the power law beats the log-linear alternative on data generated from a power law
    assert fit.aic < fit_loss_curve(TOKENS, losses, model="log-linear").aic


def test_extrapolation_has_an_interval_and_is_refused_when_it_should_be():
    losses = _power_law(np.maximum(TOKENS, 1)) + np.random.default_rng(1).normal(0, 0.002, len(TOKENS))
    fit = fit_loss_curve(TOKENS, losses, cov=COV, draws=300)
    target = float(_power_law(4e6))
    reach = tokens_to_reach(fit, target)
    assert reach["ok"] and reach["interval"][0] <= reach["tokens"] <= reach["interval"][1]
    assert reach["tokens"] == pytest.approx(4e6, rel=0.3)
    below = tokens_to_reach(fit, 1.5)
    assert not below["ok"] and "asymptote" in below["reason"]
    noise = fit_loss_curve(TOKENS, 3 + np.random.default_rng(2).normal(0, 0.2, len(TOKENS)))
    refused = tokens_to_reach(noise, 2.5)
    assert not refused["ok"] and ("R²" in refused["reason"] or "converge" in refused["reason"])
    few = fit_loss_curve([0, 1e4, 2e4], [3.0, 2.9, 2.85])
    assert not few.ok and "at least 4" in few.reason and not tokens_to_reach(few, 2.0)["ok"]
    # 4 points, 3 parameters: the fit succeeds with R² ≈ 1, but extrapolating it is refused
    snug = fit_loss_curve(TOKENS[1:5], _power_law(TOKENS[1:5]), se=np.full(4, 0.002))
    assert snug.ok and snug.r2 > 0.99 and not snug.intervals  # 1 residual df: no interval either
    assert not tokens_to_reach(snug, 2.1)["ok"] and "needs ≥ 5 points" in tokens_to_reach(snug, 2.1)["reason"]


def test_marginal_gains_and_diminishing_returns():
    losses = _power_law(np.array([1e4, 2e4, 3e4, 4e4]))
    gains = marginal_gains([1e4, 2e4, 3e4, 4e4], losses, step=1e4)
    assert [g["loss_drop_per_step"] for g in gains] == pytest.approx(list(-np.diff(losses)))
    assert diminishing_returns([1e4, 2e4, 3e4, 4e4], losses)["diminishing"] is True
    assert diminishing_returns([1, 2, 3], [3.0, 2.9, 2.5])["diminishing"] is False


def test_paired_delta_standard_error_and_significance():
    base = [0, 1, 0, 1, 0, 0, 1, 0] * 25
    better = [1, 1, 0, 1, 1, 0, 1, 1] * 25  # 3 of 8 items flip to correct
    d = paired_delta(base, better)
    diff = np.array(better) - np.array(base)
    assert d["delta"] == pytest.approx(3 / 8)
    assert d["se"] == pytest.approx(diff.std(ddof=1) / math.sqrt(200))
    assert d["p"] < 1e-6
    same = paired_delta(base, base[1:] + base[:1])
    assert same["delta"] == pytest.approx(0) and same["p"] > 0.5


def _heldout(per_doc_loss, tokens=100):
    """A held-out result whose documents have ``tokens`` tokens each and the given mean losses."""
    return {"loss": float(np.mean(per_doc_loss)), "loss_se": 0.01,
            "per_document": {"nats": [x * tokens for x in per_doc_loss], "tokens": [tokens] * len(per_doc_loss)}}


def _eval(domain_seq, general_seq, items, subjects=None, gold_bpb=None, task="mmlu_offline_domain"):
    t = {"metric": "acc", "value": float(np.mean(items)), "stderr": 0.05, "n": len(items), "per_item": items}
    if subjects:
        t["item_subjects"] = subjects
    if gold_bpb is not None:
        t.update(per_item_gold_bpb=gold_bpb, gold_bpb=float(np.mean(gold_bpb)), gold_bpb_se=0.01)
    return {"perplexity": {"val_domain": _heldout(domain_seq), "val_general": _heldout(general_seq)},
            "tasks": {task: t}}


def test_compare_evals_flags_what_moved_beyond_noise():
    rng = np.random.default_rng(3)
    dom = list(3 + rng.normal(0, 0.3, 50))
    gen = list(3 + rng.normal(0, 0.3, 50))
    base = _eval(dom, gen, [0, 1] * 20, ["algebra"] * 20 + ["biology"] * 20)
    other = _eval([x - 0.2 for x in dom], [x + rng.normal(0, 0.01) for x in gen], [1, 1] * 10 + [0, 1] * 10,
                  ["algebra"] * 20 + ["biology"] * 20)
    rows = {r["measure"]: r for r in compare_evals(base, other)}
    assert rows["val_domain loss"]["delta"] == pytest.approx(-0.2) and rows["val_domain loss"]["significant"]
    assert not rows["val_general loss"]["significant"]
    assert rows["mmlu_offline_domain (acc)"]["paired"]
    subjects = {r["subject"]: r for r in per_subject_deltas(base, other, "mmlu_offline_domain")}
    assert subjects["algebra"]["delta"] == pytest.approx(0.5) and subjects["biology"]["delta"] == pytest.approx(0.0)


def test_pareto_front_on_a_hand_made_table():
    rows = [
        {"run": "none", "domain_gain": 0.40, "domain_gain_se": 0.01, "general_change": 0.10, "general_change_se": 0.01},
        {"run": "replay", "domain_gain": 0.35, "domain_gain_se": 0.01, "general_change": 0.02, "general_change_se": 0.01},
        {"run": "low_lr", "domain_gain": 0.20, "domain_gain_se": 0.01, "general_change": 0.05, "general_change_se": 0.01},
        {"run": "l2", "domain_gain": 0.10, "domain_gain_se": 0.01, "general_change": 0.00, "general_change_se": 0.01},
    ]
    assert pareto_front(rows) == ["none", "replay", "l2"]  # low_lr is dominated by replay


def test_stability_plasticity_from_eval_files():
    base = _eval([3.0] * 10 + [3.2] * 10, [3.1] * 20, [0, 1] * 5)
    run = _eval([2.8] * 10 + [3.0] * 10, [3.15] * 20, [0, 1] * 5)
    (row,) = stability_plasticity(base, {"run": run})
    assert row["domain_gain"] == pytest.approx(0.2) and row["general_change"] == pytest.approx(0.05)


def test_model_comparison_prefers_the_generating_curve_in_and_out_of_sample():
    rng = np.random.default_rng(4)
    d = TOKENS[1:]
    power = _power_law(d) + rng.normal(0, 0.002, len(d))
    loglin = 5.0 - 0.2 * np.log(d) + rng.normal(0, 0.002, len(d))
    pl, ll = fit_loss_curve(d, power), fit_loss_curve(d, power, model="log-linear")
    assert pl.aicc < ll.aicc and pl.aicc > pl.aic  # the small-sample penalty is added
    assert holdout_error(d, power)["rmse"] < holdout_error(d, power, model="log-linear")["rmse"]
    assert holdout_error(d, loglin, model="log-linear")["rmse"] < 0.01
    assert not holdout_error(d[:4], power[:4])["ok"]  # 2 points left to fit a 3-parameter curve


def test_mcnemar_counts_only_the_items_that_flipped():
    # 10 items flipped to correct, 0 back: exact two-sided p = 2 · 0.5^10
    assert mcnemar_exact(10, 0) == pytest.approx(2 * 0.5 ** 10)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == pytest.approx(1.0)
    unchanged = paired_delta([0, 1, 1, 0], [0, 1, 1, 0])
    assert unchanged["test"] == "McNemar exact" and unchanged["p"] == 1.0  # a z test would give NaN here
    assert paired_delta([2.5, 3.0, 3.1], [2.4, 2.9, 3.0])["test"] == "paired t"


def _checkpoint_evals(domain_means, tokens, scores, rng, n_seq=40, noise=0.3):
    """Eval dicts with per-sequence losses that share per-sequence difficulty (as real held-out sets do)."""
    difficulty = rng.normal(0, noise, n_seq)
    out = {}
    for mean, t, items in zip(domain_means, tokens, scores):
        seq = list(mean + difficulty + rng.normal(0, 0.005, n_seq))
        ev = _eval(seq, list(3 + difficulty), items)
        ev["tokens"], ev["checkpoint"] = t, "base" if t == 0 else f"tokens-{t:012d}"
        out[ev["checkpoint"]] = ev
    return out


def test_paper_finding_verdicts_on_constructed_runs():
    rng = np.random.default_rng(5)
    items = [[0, 1] * 20] * 3
    tokens = [0, 40_000, 100_000]
    reproduced = paper_finding(_checkpoint_evals([3.0, 2.6, 2.5], tokens, items, rng))
    assert reproduced["verdict"] == "reproduced" and reproduced["mid_tokens"] == 40_000
    assert reproduced["rate_ratio"] == pytest.approx((0.1 / 60_000) / (0.4 / 40_000), rel=0.1)
    flat = _checkpoint_evals([3.0, 2.6, 2.6], tokens, items, rng)
    mid, final = flat["tokens-000000040000"], flat["tokens-000000100000"]["perplexity"]["val_domain"]
    mid_nats = mid["perplexity"]["val_domain"]["per_document"]["nats"]
    final["per_document"]["nats"] = [x + (1.0 if i % 2 else -1.0) for i, x in enumerate(mid_nats)]
    final["loss"] = sum(final["per_document"]["nats"]) / sum(final["per_document"]["tokens"])  # no measurable gain
    flat = paper_finding(flat)
    assert flat["verdict"] == "not testable at this scale" and "within noise" in flat["reason"]
    accelerating = paper_finding(_checkpoint_evals([3.0, 2.9, 2.5], tokens, items, rng))
    assert accelerating["verdict"] == "not reproduced" and "did not diminish" in accelerating["reason"]
    worse = paper_finding(_checkpoint_evals([3.0, 2.6, 2.7], tokens, items, rng))
    assert worse["verdict"] == "not reproduced"
    one = paper_finding(_checkpoint_evals([3.0, 2.6], tokens[:2], items[:2], rng))
    assert one["verdict"] == "not testable at this scale" and "two evaluated checkpoints" in one["reason"]


def test_score_trends_extrapolate_only_scores_that_moved():
    rng = np.random.default_rng(6)
    tokens = [0, 10_000, 20_000, 40_000, 80_000]
    # accuracy grows linearly in ln D (by construction): 0.2 → 0.8 of 200 items, items flip only to correct
    acc = [0.2, 0.35, 0.5, 0.65, 0.8]
    items = [[1] * int(a * 200) + [0] * (200 - int(a * 200)) for a in acc]
    evals = _checkpoint_evals([3.0, 2.8, 2.7, 2.65, 2.6], tokens, items, rng)
    (row,) = score_trends(evals)
    assert row["moved"] and row["p"] < 1e-6 and row["delta"] == pytest.approx(0.6)
    # the fit over the checkpoints (0.15 per doubling) puts "one more SE" (the final stderr) at 80k·2^(SE/0.15)
    se = evals["tokens-000000080000"]["tasks"]["mmlu_offline_domain"]["stderr"]
    assert row["tokens_to_target"] == pytest.approx(80_000 * 2 ** (se / 0.15), rel=0.01)
    still = _checkpoint_evals([3.0, 2.8, 2.7, 2.65, 2.6], tokens, [[0, 1] * 20] * 5, rng)
    (flat,) = score_trends(still)
    assert not flat["moved"] and "within noise" in flat["extrapolation"] and "tokens_to_target" not in flat


def test_heldout_change_is_clustered_by_document():
    """Two documents of very different length: the ratio estimator weights them by tokens, and the
    paired SE comes from document-level differences (the jackknife: leave one document out), not from
    independent tokens or sequences; the t test has the effective documents − 1 df."""
    from cpt_utils.analysis import heldout_delta

    rng = np.random.default_rng(0)
    tokens = rng.integers(50, 2000, 40)
    base_nats = tokens * rng.normal(3.0, 0.3, 40)
    other_nats = base_nats - tokens * (0.1 + rng.normal(0, 0.05, 40))
    b = {"loss": 0, "per_document": {"nats": list(base_nats), "tokens": list(tokens)}}
    o = {"loss": 0, "per_document": {"nats": list(other_nats), "tokens": list(tokens)}}
    d = heldout_delta(b, o)
    assert d["paired"] and d["n"] == 40
    assert d["delta"] == pytest.approx((other_nats.sum() - base_nats.sum()) / tokens.sum())
    diff = other_nats - base_nats
    leave_one_out = (diff.sum() - diff) / (tokens.sum() - tokens)
    se = math.sqrt(((leave_one_out - d["delta"]) ** 2).sum())
    assert d["se"] == pytest.approx(se) and 0.005 < se < 0.05 and d["p"] < 1e-6
    assert d["df"] == pytest.approx(tokens.sum() ** 2 / (tokens ** 2).sum() - 1) and d["df"] < 39


def test_task_rows_carry_the_gold_bits_per_byte_and_the_minimum_detectable_effect():
    from scipy.stats import t

    rng = np.random.default_rng(1)
    bpb = list(rng.normal(1.5, 0.3, 200))
    items = [int(x) for x in rng.integers(0, 2, 200)]
    base = _eval([3.0] * 5, [3.0] * 5, items, gold_bpb=bpb)
    other = _eval([3.0] * 5, [3.0] * 5, items, gold_bpb=[x - 0.05 + rng.normal(0, 0.02) for x in bpb])
    rows = {r["measure"]: r for r in compare_evals(base, other)}
    acc, cont = rows["mmlu_offline_domain (acc)"], rows["mmlu_offline_domain (gold bits/byte)"]
    # no item flipped: the paired SE is 0, so the MDE at 80% power uses the unpaired SE of two proportions
    unpaired = math.sqrt(2 * acc["base"] * (1 - acc["base"]) / 200)
    assert acc["delta"] == 0 and acc["mde_80"] == pytest.approx((t.ppf(0.975, 199) + t.ppf(0.8, 199)) * unpaired)
    assert cont["delta"] == pytest.approx(-0.05, abs=0.005) and cont["significant"] and cont["mde_80"] < 0.01


def test_group_aggregates_are_macro_means_with_combined_paired_ses():
    from cpt_utils.analysis import group_deltas

    rng = np.random.default_rng(2)
    base, other = {"perplexity": {}, "tasks": {}}, {"perplexity": {}, "tasks": {}}
    for task, shift in (("sci_a", -0.10), ("sci_b", -0.06), ("gen_a", 0.02)):
        bpb = list(rng.normal(1.5, 0.3, 100))
        items = [int(x) for x in rng.integers(0, 2, 100)]
        base["tasks"].update(_eval([3.0], [3.0], items, gold_bpb=bpb, task=task)["tasks"])
        other["tasks"].update(_eval([3.0], [3.0], items, gold_bpb=[x + shift + rng.normal(0, 0.02) for x in bpb],
                                    task=task)["tasks"])
    rows = {(r["group"], r["kind"]): r for r in group_deltas(base, other, {"domain": ["sci_a", "sci_b"], "general": ["gen_a"]})}
    dom = rows[("domain", "gold bits/byte")]
    per_task = {r["measure"]: r for r in compare_evals(base, other)}
    a, b = per_task["sci_a (gold bits/byte)"], per_task["sci_b (gold bits/byte)"]
    assert dom["tasks"] == 2 and dom["n"] == 200
    assert dom["delta"] == pytest.approx((a["delta"] + b["delta"]) / 2)
    assert dom["se"] == pytest.approx(math.hypot(a["se"], b["se"]) / 2) and dom["significant"]
    assert rows[("general", "gold bits/byte")]["delta"] == pytest.approx(0.02, abs=0.01)


def test_headline_table_has_the_papers_shape(tmp_path):
    import json

    from cpt_utils.headline import headline_table

    rng = np.random.default_rng(5)
    bpb = list(rng.normal(1.5, 0.3, 50))
    items = [int(x) for x in rng.integers(0, 2, 50)]
    (tmp_path / "evals").mkdir()
    for name, tokens, shift in (("base", 0, 0.0), ("tokens-000000001000", 1000, -0.1)):
        ev = _eval([3.0 + shift] * 10, [3.0] * 10, items, gold_bpb=[x + shift for x in bpb], task="sciq_offline")
        ev.update(checkpoint=name, tokens=tokens, time_s=1.0)
        (tmp_path / "evals" / f"{name}.json").write_text(json.dumps(ev))
    table = headline_table(tmp_path, {"domain": ["sciq_offline"]})
    assert list(table.columns[:7]) == ["section", "measure", "n", "base", "continued", "change ± SE", "p"]
    sections = list(dict.fromkeys(table.section))
    assert sections == ["domain tasks", "held-out text", "run"]
    assert table.measure.str.contains("domain group: mean gold bits/byte over 1 tasks").any()


# ------------------------------------------------------------------------------- held-out registers
def _register_eval(shifts: dict[str, float], rng, base: dict | None = None, n_docs: int = 40, noise: float = 0.02) -> dict:
    """Held-out results per split; with ``base``, each document's loss is the base's plus the split's
    shift plus a little noise (so the paired change is known and its SE is small but not zero). Bytes
    are 4 per token and bits = nats / ln 2, so bits per byte = loss / (4 ln 2)."""
    out = {}
    for split, shift in shifts.items():
        tokens = [100] * n_docs
        if base is None:
            losses = list(3 + rng.normal(0, 0.3, n_docs))
        else:
            losses = [n / t + shift + rng.normal(0, noise) for n, t in zip(base["perplexity"][split]["per_document"]["nats"], tokens)]
        nats = [x * 100 for x in losses]
        out[split] = {"loss": float(np.mean(losses)), "loss_se": 0.05, "bits_per_byte": float(np.mean(losses)) / (4 * math.log(2)),
                      "bits_per_byte_se": 0.01, "per_document": {"nats": nats, "tokens": tokens,
                                                                 "bits": [x / math.log(2) for x in nats], "bytes": [400] * n_docs}}
    return {"perplexity": out, "tasks": {}, "tokens": 1000}


REGISTER_SHIFTS = {"val_domain": -0.2, "val_general": 0.0, "val_chat": 0.3, "val_code": 0.1}


def test_register_deltas_and_forgetting_score_recover_known_shifts():
    from cpt_utils.analysis import forgetting_score, register_deltas

    rng = np.random.default_rng(7)
    base = _register_eval(REGISTER_SHIFTS, rng)
    other = _register_eval(REGISTER_SHIFTS, rng, base=base)
    rows = {r["register"]: r for r in register_deltas(base, other)}
    assert list(rows) == ["general", "chat", "code"]  # every held-out split but the domain's, in order
    for name in rows:
        shift = REGISTER_SHIFTS[f"val_{name}"]
        assert rows[name]["loss_delta"] == pytest.approx(shift, abs=0.01) and rows[name]["paired"]
        assert 0 < rows[name]["loss_se"] < 0.01 and rows[name]["n"] == 40
        assert rows[name]["bpb_delta"] == pytest.approx(rows[name]["loss_delta"] / (4 * math.log(2)))
    assert rows["chat"]["significant"] and rows["code"]["significant"] and not rows["general"]["significant"]
    f = forgetting_score(base, other)
    assert f["registers"] == 3 and f["mean"] == pytest.approx((0.0 + 0.3 + 0.1) / 3, abs=0.01)
    assert f["mean_se"] == pytest.approx(math.sqrt(sum(r["loss_se"] ** 2 for r in rows.values())) / 3)
    assert f["worst_register"] == "chat" and f["worst"] == rows["chat"]["loss_delta"] and f["worst_se"] == rows["chat"]["loss_se"]
    assert f["forgotten"] == ["chat", "code"] and f["mean_p"] < 1e-6
    # a run that forgot nothing: the mean and the worst register are within noise
    same = _register_eval({s: 0.0 for s in REGISTER_SHIFTS}, rng, base=base)
    quiet = forgetting_score(base, same)
    assert abs(quiet["mean"]) < 3 * quiet["mean_se"] and quiet["forgotten"] == []


def test_forgetting_axis_is_the_general_change_without_registers():
    from cpt_utils.analysis import forgetting_score

    rng = np.random.default_rng(8)
    shifts = {"val_domain": -0.2, "val_general": 0.05}
    base = _register_eval(shifts, rng)
    run = _register_eval(shifts, rng, base=base)
    (row,) = stability_plasticity(base, {"run": run})
    assert row["forgetting"] == row["general_change"] and row["forgetting_se"] == row["general_change_se"]
    assert row["forgetting_registers"] == 1 and row["worst_register"] == "general"
    assert forgetting_score({"perplexity": {"val_domain": base["perplexity"]["val_domain"]}}, run)["registers"] == 0


def test_register_view_tables_figure_and_note():
    from cpt_utils import analysis_report as report
    from cpt_utils.plots import unlabelled_axes

    rng = np.random.default_rng(9)
    base = _register_eval(REGISTER_SHIFTS, rng)
    continued = _register_eval(REGISTER_SHIFTS, rng, base=base)
    replay = _register_eval({**REGISTER_SHIFTS, "val_chat": 0.05}, rng, base=base)
    variants = {"replay_chat": replay, "removed_variant": replay}  # a leftover folder of a removed variant

    class Params:  # only ``variants`` is read
        variants = {"replay_chat": None}

    table = report.register_table(base, continued, variants, Params)
    assert len(table) == 2 * 3 and set(table.run) == {"main run", "replay_chat"}
    chat = table[(table.run == "replay_chat") & (table.register == "chat")].iloc[0]
    assert chat["loss change (nats/token)"] == pytest.approx(0.05, abs=0.01)
    summary = report.forgetting_table(base, continued, variants, Params).set_index("run")
    assert summary.loc["main run", "worst register"] == "chat"
    assert summary.loc["replay_chat", "worst register"] == "code"  # chat replay moved the worst elsewhere
    assert summary.loc["main run", "forgetting: mean register change"] > summary.loc["replay_chat", "forgetting: mean register change"]
    assert summary.loc["main run", "domain gain (nats/token)"] == pytest.approx(0.2, abs=0.01)
    fig = report.fig_register_deltas(base, continued, variants, Params)
    assert unlabelled_axes(fig) == [] and "nats/token" in fig.axes[0].get_ylabel()
    bars = [p for p in fig.axes[0].patches]
    assert len(bars) == 2 * 3  # one bar per register and run
    heights = sorted(b.get_height() for b in bars)
    assert heights == pytest.approx([0.0, 0.0, 0.05, 0.1, 0.1, 0.3], abs=0.01)
    note = report.forgetting_axis_note(base, continued)
    assert "mean register change" in note and "worst register `chat`" in note and "significantly forgotten: chat, code" in note
    rows = report.variant_rows(base, continued, {"replay_chat": replay}, Params)
    stab = report.fig_stability_plasticity(rows)
    assert unlabelled_axes(stab) == [] and "mean loss change over 3 held-out registers" in stab.axes[0].get_xlabel()
    import matplotlib.pyplot as plt

    plt.close("all")


def test_bits_per_byte_se_counts_only_the_items_that_were_scored():
    """An item whose gold answer could not be scored (NaN) is not in n: counting it shrinks the SE."""
    from cpt_utils.perplexity import finite_mean_se

    scored = np.array([1.2, 1.5, 0.9, 1.4])
    mean, se = finite_mean_se([*scored, math.nan, math.nan])
    assert mean == pytest.approx(scored.mean()) and se == pytest.approx(scored.std(ddof=1) / math.sqrt(4))
    assert all(math.isnan(x) for x in finite_mean_se([math.nan]))


def test_a_family_reads_its_adjusted_p_values():
    """Three tests, each p < 0.05 alone: within one family (Holm, fewer than 5 tests) only the smallest
    survives, and ``significant`` follows the adjusted p; an untestable row stays out of the count."""
    from cpt_utils.analysis import FAMILIES, mark_family

    rows = [{"p": 0.01}, {"p": 0.04}, {"p": 0.03}, {"p": math.nan}]
    mark_family(rows, "registers")
    assert [r["significant"] for r in rows] == [True, False, False, False]
    assert rows[0]["p_adj"] == pytest.approx(0.03) and math.isnan(rows[3]["p_adj"])
    assert {r["family"] for r in rows} == {"registers"} and "registers" in FAMILIES
    with pytest.raises(ValueError, match="not a declared family"):
        mark_family(rows, "not a declared family")
