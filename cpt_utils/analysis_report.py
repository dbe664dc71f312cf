"""Tables, figures and computed sentences for notebooks 04 (token efficiency) and 05 (forgetting).

Every sentence a notebook prints about the results is built here from the numbers, so the words in a
report cannot drift from the data it shows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from . import analysis
from .checkpointing import list_checkpoints, load_checkpoint_model
from .config import ExperimentParams
from .display import fmt_number
from .headline import comparisons
from .plots import OKABE_ITO, PALETTE, label, series_color
from .readings import cannot_test_words, improves
from .results import annealed_points, branch_dir, branch_points, final_eval, load_evals, main_final
from .tasks import DOMAIN_SUBJECTS
from .training_report import load_metrics


def _fmt_tokens(n: float) -> str:
    if not math.isfinite(n):
        return "∞"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


# ---------------------------------------------------------------------------- 04: token efficiency
def loss_points(run_dir: Path):
    """Held-out losses against tokens: the in-loop evaluations (denser) from metrics.jsonl."""
    _, evals = load_metrics(run_dir)
    return evals.sort_values("tokens").reset_index(drop=True)


#: Fewest trained points the power law (3 parameters) is fitted to (``analysis.fit_loss_curve``).
MIN_FIT_POINTS = 4


def fit_points(run_dir: Path, params: ExperimentParams):
    """The points the token-efficiency fit uses, and a sentence saying which and why.

    With decay branches (``train.decay_branch_fraction``) they are the annealed models
    (``results.annealed_points``); otherwise the in-loop evaluations of the one run, with the caveat
    that its schedule bends them."""
    tp = params.train
    if not tp.decay_branch_fraction:
        how = {"cosine": "whose cosine anneal bends the last points down", "wsd": "whose final decay bends the last points down",
               "constant": "none of them annealed (each sits above what a decayed run would reach)"}[tp.schedule]
        return loss_points(run_dir), (
            f"**Fitted: the in-loop evaluations of one {tp.schedule} run**, {how}: the exponent and any extrapolation "
            "describe the schedule as much as the data. For points the schedule does not bend, set `train.schedule: wsd` "
            "and `train.decay_branch_fraction` (a short decay branch from each milestone; `cpt_utils.branches`).")
    points = annealed_points(params, run_dir)
    n = int((points.tokens > 0).sum()) if len(points) else 0
    final = (f", and the main run's final checkpoint (annealed by its own decay over the last {tp.decay_fraction:.0%} "
             "of its budget)" if tp.schedule != "constant" else "")
    text = (f"**Fitted: {n} annealed point{'s' if n != 1 else ''}** — the end of each decay branch ({tp.decay_branch_fraction:g} × "
            f"the milestone's tokens more while the LR falls ({tp.decay_shape}) to {tp.lr * tp.min_lr_ratio:.3g}) from the "
            f"milestones of this {tp.schedule} run{final}. A branch's point counts the milestone's tokens plus the "
            "branch's: the model trained on all of them. Why: every point is an annealed model, like the final model "
            "of a run with that budget, so the curve measures what the tokens bought and not the schedule (the "
            "in-loop points, grey, are not annealed).")
    if n < MIN_FIT_POINTS:
        text += (f" **Too few points:** {n} trained annealed point{'s' if n != 1 else ''}; the power law needs at least "
                 f"{MIN_FIT_POINTS} (add milestones to `train.milestones`), so the fit below says why it is not available.")
    return points, text


def annealed_evals(params: ExperimentParams, run_dir: Path) -> dict[str, dict]:
    """The evaluations of the annealed models only, by checkpoint name in token order: the base model,
    each finished decay branch's end, and the main run's final checkpoint when its schedule decays.

    Why: a checkpoint taken at the peak learning rate sits above what an annealed model of the same
    tokens reaches, so comparing it with the annealed final (``analysis.paper_finding``,
    ``analysis.score_trends``) credits the decay's drop to the extra tokens."""
    main = load_evals(run_dir)
    found = {"base": main["base"]} if "base" in main else {}
    for checkpoint in branch_points(params, run_dir):
        ev = final_eval(branch_dir(run_dir, checkpoint["name"]))
        if ev is not None:
            found[f"branch-{checkpoint['name']}"] = ev
    final = main_final(params, run_dir)
    if final is not None and final["name"] in main and params.train.schedule != "constant":
        found[final["name"]] = main[final["name"]]
    return dict(sorted(found.items(), key=lambda kv: kv[1]["tokens"]))


def fits(points, params: ExperimentParams, evals: dict[str, dict] | None = None) -> dict[str, analysis.Fit]:
    """Power-law and log-linear fits of the domain loss by GLS. The points' covariance is measured from
    the per-document sums of ``evals`` (the annealed evaluations the points came from, same order) when
    they carry them, else assumed from the points' SEs (``analysis.ASSUMED_POINT_CORRELATION``)."""
    d, y = points.tokens.to_numpy(), points.val_domain_loss.to_numpy()
    ordered = sorted((evals or {}).values(), key=lambda e: e["tokens"])
    cov = (analysis.point_covariance(ordered) if ordered and [e["tokens"] for e in ordered] == list(d) else None)
    se = points.val_domain_loss_se.to_numpy() if "val_domain_loss_se" in points else None
    return {m: analysis.fit_loss_curve(d, y, model=m, cov=cov, se=se, draws=params.analysis.bootstrap_samples,
                                       seed=params.seed)
            for m in ("power law", "log-linear")}


def fit_table(fitted: dict[str, analysis.Fit], points=None):
    """Both fits side by side: parameters with 95% intervals (GLS with the points' covariance; none where
    the fit has fewer than 2 residual degrees of freedom), R², AICc (lower is better), and
    — given the points — the RMSE of predicting the last two evaluations from a fit to the earlier ones."""
    import pandas as pd  # lazy: importing the report module must not import pandas

    rows = []
    for name, f in fitted.items():
        holdout = (analysis.holdout_error(points.tokens, points.val_domain_loss, model=name)
                   if points is not None else {"ok": False})
        row = {"model": name, "R²": None, "AICc": None,
               "hold-out RMSE, last 2 points (nats)": round(holdout["rmse"], 4) if holdout["ok"] else None}
        if not f.ok:
            rows.append({**row, "parameters (95% interval)": f"fit failed: {f.reason}"})
            continue
        if f.intervals:
            text = ", ".join(f"{k} = {v:.4g} [{f.intervals[k][0]:.3g}, {f.intervals[k][1]:.3g}]" for k, v in f.params.items())
            text += f" (covariance: {f.covariance})"
        else:
            text = ", ".join(f"{k} = {v:.4g}" for k, v in f.params.items()) + f"; {f.interval_note}"
        rows.append({**row, "parameters (95% interval)": text, "R²": round(f.r2, 4),
                     "AICc": round(f.aicc, 2) if math.isfinite(f.aicc) else None})
    return pd.DataFrame(rows).set_index("model")[["parameters (95% interval)", "R²", "AICc",
                                                  "hold-out RMSE, last 2 points (nats)"]]


def _interval(se, df=None):
    """95% interval half-widths of ``se`` (t on ``df`` where given, else normal), NaN kept."""
    se = np.asarray(se, dtype=float)
    df = np.full_like(se, math.inf) if df is None else np.asarray(df, dtype=float)
    return np.array([analysis.ci_half_width(s, d) if math.isfinite(s) else math.nan for s, d in zip(se, df)])


def fig_loss_curves(points, fitted: dict[str, analysis.Fit], milestones: list[int], context=None):
    """The fitted points with 95% intervals, the domain fit and its 95% band (only over the fitted
    tokens, and only where the fit has intervals) — or, when the fit is refused, the reason written in
    the figure; ``context`` (e.g. the in-loop points when annealed points are fitted) drawn faintly."""
    import matplotlib.pyplot as plt  # lazy: matplotlib loads only where a figure is drawn

    if points is None or not len(points):
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    if context is not None and len(context):
        for which in ("domain", "general"):
            ax.plot(context.tokens, context[f"val_{which}_loss"], ls="-", marker=".", ms=3, lw=0.8,
                    color=PALETTE[which], alpha=0.35, label=f"{which}, in-loop (not annealed)")
    for which, marker in (("domain", "o"), ("general", "s")):
        df = points[f"val_{which}_loss_df"] if f"val_{which}_loss_df" in points else None
        ax.errorbar(points.tokens, points[f"val_{which}_loss"], yerr=_interval(points[f"val_{which}_loss_se"], df),
                    fmt=marker, ms=5, capsize=3, color=PALETTE[which], label=f"{which} held-out (95% interval)")
    pl = fitted["power law"]
    if pl.ok:
        grid = np.linspace(max(1, points.tokens[points.tokens > 0].min()), points.tokens.max() * 1.5, 200)
        lo, hi = analysis.prediction_band(pl, grid)
        ax.plot(grid, pl.predict(grid), color=PALETTE["fit"],
                label=f"domain fit E + A·D^−α (α = {pl.params['alpha']:.2f}, R² = {pl.r2:.3f})")
        if np.isfinite(lo).any():
            ax.fill_between(grid, lo, hi, color=PALETTE["fit"], alpha=0.18, lw=0, label="fit's 95% band (within the data)")
    else:
        ax.text(0.98, 0.97, f"No fit drawn: {pl.reason}", transform=ax.transAxes, ha="right", va="top", fontsize=8,
                wrap=True, color=PALETTE["fit"], bbox={"boxstyle": "round", "fc": "white", "ec": PALETTE["fit"], "lw": 0.6})
    for i, m in enumerate(milestones):
        ax.axvline(m, color=PALETTE["base"], ls=":", lw=0.8, label="checkpoint milestones" if i == 0 else None)
    ax.legend(loc="lower left", fontsize=7)
    label(ax, "Held-out loss against tokens seen", "tokens seen", "held-out cross-entropy (nats/token)")
    return fig


def fig_task_curves(evals: dict[str, dict], milestones: list[int] = ()):
    """Accuracy (each task's own chance level dashed in its colour) and the gold answer's bits per byte
    at each checkpoint, with 95% intervals; ``None`` when no checkpoint scored a task."""
    import matplotlib.pyplot as plt  # lazy: matplotlib loads only where a figure is drawn

    ordered = sorted(evals.values(), key=lambda e: e["tokens"])
    tasks = list(dict.fromkeys(t for e in ordered for t in e.get("tasks", {})))
    if not tasks:
        return None
    fig, (acc_ax, bpb_ax) = plt.subplots(1, 2, figsize=(11, 4.4))
    for i, task in enumerate(tasks):
        color, marker = series_color(i), "osD^v<>p"[i % 8]
        pts = [(e["tokens"], e["tasks"][task]) for e in ordered if task in e.get("tasks", {})]
        x = [t for t, _ in pts]
        df = [r.get("n", math.inf) - 1 for _, r in pts]
        acc_ax.errorbar(x, [r["value"] for _, r in pts], yerr=_interval([r["stderr"] for _, r in pts], df),
                        marker=marker, ms=4, capsize=2, color=color, label=f"{task} ({pts[0][1]['metric']})")
        if "chance" in pts[0][1]:
            acc_ax.axhline(pts[0][1]["chance"], color=color, ls="--", lw=0.7)
        if "gold_bpb" in pts[0][1]:
            bpb_ax.errorbar(x, [r["gold_bpb"] for _, r in pts], yerr=_interval([r["gold_bpb_se"] for _, r in pts], df),
                            marker=marker, ms=4, capsize=2, color=color, label=task)
    for ax in (acc_ax, bpb_ax):
        for i, m in enumerate(milestones):
            ax.axvline(m, color=PALETTE["base"], ls=":", lw=0.8, label="checkpoint milestones" if i == 0 and ax is acc_ax else None)
    acc_ax.plot([], [], color=PALETTE["base"], ls="--", lw=0.7, label="each task's chance level")
    handles, labels = acc_ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=7)
    label(acc_ax, "Task accuracy at each checkpoint (95% intervals)", "tokens seen", "accuracy (fraction correct; higher is better)")
    label(bpb_ax, "Gold answer's bits per byte (95% intervals)", "tokens seen", "bits per UTF-8 byte (lower is better)")
    fig.set_layout_engine("constrained")
    return fig


#: Why a figure of notebooks 04/05 is missing, in one sentence each (``display.show_figure``).
NO_POINTS = "this run has no evaluated points (run notebook 03 first)."
NO_TASKS = "no checkpoint of this run scored a benchmark task (`eval.offline_tasks` is empty)."
NO_FIT = "neither the power law nor the log-linear curve could be fitted to these points (the table below says why)."
NO_REGISTERS = "this run has no held-out register to compare (no `val_general` nor `data.registers` split)."
NO_CONTROL = "no control run to compare with (declare `control:` in the parameter file)."
NO_VARIANTS = "no run finished with both a domain and a general held-out evaluation to place on the plot."


def subjects_reason(ev: dict | None) -> str:
    """Why there is no per-subject figure, in one sentence."""
    tasks = [t for t in (ev or {}).get("tasks", {}) if "mmlu" in t.lower()]
    if not tasks:
        return "the task suite has no MMLU task (`eval.offline_tasks`), so there are no subjects to break down."
    return f"the MMLU task{'s' if len(tasks) > 1 else ''} {', '.join(tasks)} stored no per-item subjects to break down."


def fig_fit_residuals(points, fitted: dict[str, analysis.Fit]):
    """Observed − fitted domain loss of each fit that succeeded; ``None`` when none did."""
    import matplotlib.pyplot as plt  # lazy: matplotlib loads only where a figure is drawn

    if not any(f.ok for f in fitted.values()):
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    d = points.tokens[points.tokens > 0].to_numpy()
    y = points.val_domain_loss[points.tokens > 0].to_numpy()
    for i, (name, f) in enumerate(fitted.items()):
        if f.ok:
            ax.plot(d, y - f.predict(d), marker="os"[i % 2], color=(PALETTE["fit"], PALETTE["domain"])[i % 2],
                    label=f"{name} (R² {f.r2:.3f})")
    ax.axhline(0, color=PALETTE["base"], lw=0.8)
    ax.legend()
    label(ax, "Goodness of fit: residuals of the domain-loss fits", "tokens seen", "observed − fitted (nats/token)")
    return fig


def fig_subjects(table):
    """Accuracy change per MMLU subject, one panel per task, domain subjects and general ones coloured;
    ``None`` when there are no per-subject results (``subjects_reason`` says why)."""
    import matplotlib.pyplot as plt  # lazy: matplotlib loads only where a figure is drawn
    from matplotlib.patches import Patch  # lazy: as above

    if table is None or table.empty:
        return None
    tasks = list(dict.fromkeys(table.task))
    fig, axes = plt.subplots(1, len(tasks), figsize=(min(11.0, 5.5 * len(tasks)), max(3.0, 0.12 * len(table) / len(tasks) + 1.8)),
                             squeeze=False, layout="constrained")
    for ax, task in zip(axes[0], tasks):
        part = table[table.task == task].sort_values(["group", "delta"])
        ax.barh(part.subject, 100 * part.delta, color=[PALETTE[g] for g in part.group], height=0.75)
        ax.axvline(0, color=PALETTE["base"], lw=0.8)
        ax.tick_params(axis="y", labelsize=6)
        ax.grid(axis="y", visible=False)
        label(ax, task, "accuracy change, continued − base (points)", "subject")
    fig.legend(handles=[Patch(color=PALETTE["domain"], label="domain subject"),
                        Patch(color=PALETTE["general"], label="general subject")], loc="outside lower center", ncol=2)
    fig.suptitle("Per-subject MMLU accuracy change (few items per subject: single bars are noisy)", fontweight="bold")
    return fig


def group_curve_table(evals: dict[str, dict], groups: dict[str, list[str]]):
    """Each declared task group at each checkpoint against the base: mean accuracy and mean gold bits per
    byte, their paired change ± SE and p (macro-average over the group's tasks)."""
    import pandas as pd  # lazy: importing the report module must not import pandas

    base = evals.get("base")
    rows = []
    for name, ev in evals.items():
        if base is None or name == "base":
            continue
        for g in analysis.group_deltas(base, ev, groups):
            rows.append({"checkpoint": name, "tokens": ev["tokens"], "group": g["group"], "measure": g["kind"],
                         "tasks": g["tasks"], "n": g["n"], "base": g["base"], "checkpoint value": g["other"],
                         "change": g["delta"], "SE": g["se"], "p": g["p"], "p (adjusted)": g["p_adj"],
                         "MDE (80% power)": g["mde_80"]})
    return pd.DataFrame(rows).round(4)


def efficiency_table(points, params: ExperimentParams, n_params: int):
    """Loss drop per 10% of the budget, tokens per parameter, at each evaluation."""
    import pandas as pd  # lazy: importing the report module must not import pandas

    step = params.train.token_budget / 10
    gains = analysis.marginal_gains(points.tokens, points.val_domain_loss, step)
    rows = [{"from": _fmt_tokens(g["from_tokens"]), "to": _fmt_tokens(g["to_tokens"]),
             "domain-loss drop per 10% of budget (nats)": round(g["loss_drop_per_step"], 4),
             "tokens per parameter at end": round(g["to_tokens"] / n_params, 6)} for g in gains]
    return pd.DataFrame(rows)


def efficiency_narrative(points, fitted, params: ExperimentParams, n_params: int, curve) -> str:
    d, y = points.tokens.to_numpy(), points.val_domain_loss.to_numpy()
    lines = [f"- Over {_fmt_tokens(d.max())} tokens ({d.max() / n_params:.2g} tokens per parameter of the "
             f"{_fmt_tokens(n_params)}-parameter model) the domain held-out loss went {y[0]:.3f} → {y[-1]:.3f} nats/token."]
    dr = analysis.diminishing_returns(d, y)
    if dr["ok"]:
        # a ratio of two point estimates, not a test: the verdict is the paired test against the paper
        lines.append(f"- Loss drop per token in the second half of the budget is {dr['ratio_second_to_first']:.2f}× "
                     "that of the first half (a ratio of point estimates, no test: whether returns diminish beyond "
                     "noise is the paired comparison against the paper's finding below).")
    pl, ll = fitted["power law"], fitted["log-linear"]
    if pl.ok:
        alpha_ci = (f" [{pl.intervals['alpha'][0]:.3f}, {pl.intervals['alpha'][1]:.3f}]" if pl.intervals
                    else f" ({pl.interval_note})")
        if ll.ok and math.isfinite(pl.aicc) and math.isfinite(ll.aicc):
            better = "power law" if pl.aicc < ll.aicc else "log-linear"
            verdict = f"by AICc (ΔAICc = {abs(pl.aicc - ll.aicc):.1f}) the {better} describes the points better"
        else:
            verdict = (f"with {pl.n_points} points AICc cannot compare it with the log-linear alternative "
                       "(the power law's 3 parameters need at least 5)")
        lines.append(f"- Power-law fit: E = {pl.params['E']:.3f} (the loss this data would approach), α = "
                     f"{pl.params['alpha']:.3f}{alpha_ci}, R² = {pl.r2:.3f}; {verdict}.")
        held = {m: analysis.holdout_error(d, y, model=m) for m in ("power law", "log-linear")}
        if all(h["ok"] for h in held.values()):
            lines.append(f"- Predicting the last two evaluations from the earlier ones: RMSE "
                         f"{held['power law']['rmse']:.4f} (power law) vs {held['log-linear']['rmse']:.4f} (log-linear) nats.")
        else:
            lines.append("- Hold-out check (predict the last two evaluations from the earlier ones) not possible: "
                         + "; ".join(f"{m}: {h['reason']}" for m, h in held.items() if not h["ok"]) + ".")
        # default target: close half of the remaining gap between the last loss and the fitted asymptote
        target = params.analysis.target_domain_loss or float(y[-1] - 0.5 * (y[-1] - pl.params["E"]))
        how = "(analysis.target_domain_loss)" if params.analysis.target_domain_loss else "(half the remaining gap to E)"
        reach = analysis.tokens_to_reach(pl, target, params.analysis.min_fit_r2)
        if reach["ok"]:
            lo, hi = reach["interval"]
            lines.append(f"- Extrapolation (stated with its error): a domain loss of {target:.3f} {how} would take "
                         f"≈ {_fmt_tokens(reach['tokens'])} tokens "
                         + (f"(95% interval {_fmt_tokens(lo)}–{_fmt_tokens(hi)}); " if not math.isnan(lo) else f"({reach['note']}); ")
                         + "extrapolating a few points far beyond the data is fragile.")
        else:
            lines.append(f"- No extrapolation to a loss of {target:.3f} {how}: {reach['reason']}.")
    else:
        lines.append(f"- The power-law fit is not available: {pl.reason}.")
    return "\n".join(lines)


def paper_comparison(evals: dict[str, dict]):
    """The paper's finding (400M → 1B: positive but diminishing returns) tested on this run's annealed
    evaluations (``annealed_evals``) with ``analysis.paper_finding``: one row with the verdict and the
    numbers behind it."""
    import pandas as pd  # lazy: importing the report module must not import pandas

    f = analysis.paper_finding(evals)
    span = (f"{_fmt_tokens(f['mid_tokens'])} → {_fmt_tokens(f['final_tokens'])} tokens "
            f"({f['final_tokens'] / f['mid_tokens']:.2g}× the tokens; the paper: 2.5×)" if "mid_tokens" in f else "—")
    return pd.DataFrame([{"finding (paper)": "400M → 1B tokens: positive but diminishing returns",
                          "this run": span, "verdict": f["verdict"], "evidence": f["reason"],
                          "caveat": "a far smaller token budget than the paper's; domain held-out loss only"}])


def score_trend_table(evals: dict[str, dict], params: ExperimentParams):
    """Task scores base → final (pass ``annealed_evals``): moved beyond noise or not (adjusted p within the
    tasks' family), and the extrapolation where it is allowed."""
    import pandas as pd  # lazy: importing the report module must not import pandas

    rows = analysis.score_trends(evals, min_r2=params.analysis.min_fit_r2)
    cols = ["task", "metric", "first", "last", "delta", "se", "p", "p_adj", "moved", "extrapolation"]
    return pd.DataFrame(rows, columns=cols).round({"first": 3, "last": 3, "delta": 3, "se": 3, "p": 3, "p_adj": 3}).rename(columns={"p_adj": "p (adjusted)"})


# ------------------------------------------------------------------------------- 05: forgetting
def comparison_table(base: dict, other: dict):
    """Every held-out split and task, base vs other: n, values, paired change ± SE, p (raw and adjusted
    within the comparison's family), and the minimum detectable effect at 80% power."""
    import pandas as pd  # lazy: importing the report module must not import pandas

    frame = pd.DataFrame(comparisons(base, other)["rows"])  # the headline's rows (``headline.comparisons``)
    if "ppl_change_pct" not in frame:
        frame["ppl_change_pct"] = frame["ppl_change_pct_se"] = math.nan
    frame["p"] = [p if t else cannot_test_words(n) for p, t, n in zip(frame.p, frame.testable, frame.n)]
    frame = frame[["measure", "n", "base", "other", "delta", "se", "mde_80", "p", "p_adj", "test", "significant",
                   "better_when", "ppl_change_pct", "ppl_change_pct_se"]]
    return frame.rename(columns={"other": "continued", "delta": "continued − base", "se": "SE", "p_adj": "p (adjusted)",
                                 "mde_80": "MDE (80% power)", "ppl_change_pct": "perplexity change %",
                                 "ppl_change_pct_se": "SE (%)"}).round(4)


def group_table(base: dict, other: dict, params: ExperimentParams):
    """The declared task groups (``eval.task_groups``), base vs other, paired."""
    import pandas as pd  # lazy: importing the report module must not import pandas

    rows = analysis.group_deltas(base, other, params.eval.task_groups)
    cols = ["group", "kind", "tasks", "n", "base", "other", "delta", "se", "p", "p_adj", "mde_80", "significant"]
    return pd.DataFrame(rows, columns=cols).rename(columns={
        "kind": "measure", "other": "continued", "delta": "change", "se": "SE", "p_adj": "p (adjusted)",
        "mde_80": "MDE (80% power)"}).round(4)


def task_info_table(ev: dict, run_dir: Path):
    """What each task's score can mean: items, chance, majority-class baseline, position bias (share of
    the most frequent predicted choice; a letter format answered mostly with one letter is at chance),
    and contamination (items whose 13-token windows occur in the training data)."""

    import pandas as pd  # lazy: importing the report module must not import pandas

    contamination = {}
    path = Path(run_dir) / "contamination.json"
    if path.is_file():
        contamination = json.loads(path.read_text()).get("tasks", {})
    rows = []
    for task, t in ev.get("tasks", {}).items():
        c = contamination.get(task, {})
        meta = t.get("meta", {})
        rows.append({"task": task, "n": t["n"], "metric": t["metric"], "formulation": meta.get("formulation", "—"),
                     "split": meta.get("split", "—"), "chance": t.get("chance"),
                     "majority-class baseline": t.get("majority_baseline"),
                     "most frequent prediction": t.get("most_frequent_pred_share"),
                     "at chance (position bias)": t.get("at_chance_by_position"),
                     "contaminated items": f"{c['contaminated']} of {c['items']}" if c else "not checked"})
    return pd.DataFrame(rows).round(3)


def forgetting_narrative(base: dict, other: dict, params: ExperimentParams | None = None) -> str:
    """What changed base → continued, in words built from ``compare_evals`` and ``group_deltas``."""
    rows = analysis.compare_evals(base, other)
    lines = []
    for r in rows:
        if r["kind"] != "held-out loss":
            continue
        if not r["testable"]:
            lines.append(f"- `{r['subject']}` held-out loss {r['delta']:+.3f} ± {r['se']:.3f} nats: "
                         f"{cannot_test_words(r['n'])}.")
            continue
        verdict = ("significant" if r["significant"] else "within noise") + f", p = {r['p']:.2g}, adjusted {r['p_adj']:.2g}"
        lines.append(f"- `{r['subject']}` held-out perplexity changed by {r['ppl_change_pct']:+.1f}% ± "
                     f"{r['ppl_change_pct_se']:.1f}% (loss {r['delta']:+.3f} ± {r['se']:.3f} nats over {r['n']} "
                     f"documents; {verdict}).")
    for kind, what in (("accuracy", "accuracies"), ("gold bits/byte", "gold-answer bits per byte")):
        tasks = [r for r in rows if r["kind"] == kind]
        if not tasks:
            continue
        moved = [r for r in tasks if r["significant"]]
        mde = [r["mde_80"] for r in tasks if math.isfinite(r["mde_80"]) and r["mde_80"] > 0]
        lines.append(f"- {len(moved)} of {len(tasks)} task {what} moved beyond noise (p < 0.05 "
                     "adjusted within the 'vs base' family)"
                     + (": " + ", ".join(f"{r['subject']} {r['delta']:+.3f}" for r in moved) if moved else "")
                     + (f"; these item counts detect changes of about {min(mde):.3f}–{max(mde):.3f} "
                        "(minimum detectable effects at 80% power)." if mde else "."))
    if params is not None and params.eval.task_groups:
        for g in analysis.group_deltas(base, other, params.eval.task_groups):
            lines.append(f"- Group **{g['group']}** ({g['tasks']} tasks, {g['n']} items), {g['kind']}: "
                         f"{g['base']:.3f} → {g['other']:.3f}, change {g['delta']:+.4f} ± {g['se']:.4f} (p = {g['p']:.2g}, "
                         f"adjusted {g['p_adj']:.2g}; MDE at 80% power ≈ {g['mde_80']:.4f}).")
    return "\n".join(lines)


def subject_table(base: dict, other: dict):
    """Accuracy change per subject, per task (each MMLU formulation separately: the letter and cloze
    versions share items, so pooling them would double n)."""
    import pandas as pd  # lazy: importing the report module must not import pandas

    rows = []
    for task in base.get("tasks", {}):
        for r in analysis.per_subject_deltas(base, other, task):
            rows.append({"task": task, "group": "domain" if r["subject"] in DOMAIN_SUBJECTS else "general", **r})
    return pd.DataFrame(rows)


def variant_rows(base: dict, main_final: dict | None, variants, params: ExperimentParams,
                 control: dict | None = None) -> list[dict]:
    """Stability–plasticity rows for the variants declared in ``params`` (leftover folders of variants
    no longer in the file are ignored), plus the main run and the control run's final evaluation
    (``control``; ``final_eval(run_dir / "control")``) for reference. ``variants``: name → final
    evaluation, or the table ``run_variants`` returns."""
    if hasattr(variants, "to_dict"):  # the run_variants table: read each variant's final evaluation
        variants = {r["variant"]: final_eval(r["path"]) for r in variants.to_dict("records")}
    runs = {name: ev for name, ev in variants.items() if ev and name in params.variants}
    rows = analysis.stability_plasticity(base, runs)
    for r in rows:
        r["tokens"] = runs[r["run"]]["tokens"]
    for name, ev in (("main run", main_final), (CONTROL_RUN, control)):
        if ev:
            for row in analysis.stability_plasticity(base, {name: ev}):
                rows.append({**row, "tokens": ev["tokens"]})
    return rows


#: The control run's name on the stability–plasticity plot and in its table.
CONTROL_RUN = "control (other text)"
_REFERENCE_RUNS = ("main run", CONTROL_RUN)


def _place_labels(ax, points: list[tuple[float, float, str]], fontsize: float = 8) -> None:
    """Label each point where the label box overlaps no earlier label and no other point: the first of
    a ring of offsets that is free (the last one otherwise), joined to its point by a thin line."""
    fig = ax.figure
    fig.canvas.draw()  # limits and the transform are final now
    px = fig.dpi / 72
    to_px = ax.transData.transform
    dots = [to_px((x, y)) for x, y, _ in points]
    taken = [(dx - 6, dy - 6, dx + 6, dy + 6) for dx, dy in dots]
    ring = [(10, 10), (10, -14), (-10, 10), (-10, -14), (22, 0), (-22, 0), (0, 20), (0, -22), (28, 24), (-28, -26)]
    for (x, y, text), (cx, cy) in zip(points, dots):
        w, h = 0.6 * fontsize * len(text) * px, 1.4 * fontsize * px
        for ox, oy in ring:
            left = cx + ox * px - (w if ox < 0 else 0)
            box = (left, cy + oy * px - h / 2, left + w, cy + oy * px + h / 2)
            if not any(box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken):
                break
        taken.append(box)
        ax.annotate(text, (x, y), xytext=(ox, oy), textcoords="offset points", fontsize=fontsize,
                    ha="right" if ox < 0 else "left", va="center",
                    arrowprops={"arrowstyle": "-", "color": PALETTE["base"], "lw": 0.5, "shrinkA": 0, "shrinkB": 3})


def fig_stability_plasticity(rows: list[dict]):
    """Domain gain against the forgetting score (``analysis.forgetting_score``: the mean loss change over
    the held-out registers), 95% intervals, for each variant, the main run and the control; the Pareto
    front of the variants drawn as a step line. ``None`` without rows."""
    import matplotlib.pyplot as plt  # lazy: matplotlib loads only where a figure is drawn

    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    variants = [r for r in rows if r["run"] not in _REFERENCE_RUNS]
    front = set(analysis.pareto_front(variants, cost="forgetting")) if variants else set()
    style = {"main run": (PALETTE["continued"], "D", "main run (full budget, for reference)"),
             CONTROL_RUN: (PALETTE["control"], "s", "control: same recipe on other text")}
    seen = set()
    for r in rows:
        color, marker, name = style.get(r["run"], (PALETTE["front"], "o", "variant on the Pareto front") if r["run"] in front
                                        else (PALETTE["variant"], "o", "dominated variant"))
        ax.errorbar(r["forgetting"], r["domain_gain"], xerr=analysis.ci_half_width(r["forgetting_se"]),
                    yerr=analysis.ci_half_width(r["domain_gain_se"]), fmt=marker, ms=6, color=color, capsize=2.5,
                    elinewidth=0.9, label=None if name in seen else name, zorder=3)
        seen.add(name)
    pts = sorted((r["forgetting"], r["domain_gain"]) for r in variants if r["run"] in front)
    if len(pts) > 1:
        ax.step(*zip(*pts), where="post", color=PALETTE["front"], ls="--", lw=1, label="Pareto front (variants)", zorder=2)
    ax.axvline(0, color=PALETTE["base"], lw=0.8)
    ax.axhline(0, color=PALETTE["base"], lw=0.8)
    ax.margins(0.18)
    ax.text(0.02, 0.98, "better: up and left\n(more domain gain, less forgetting)", transform=ax.transAxes,
            ha="left", va="top", fontsize=7.5, color="#444444")
    ax.legend(fontsize=7.5, loc="lower right")
    registers = max((r.get("forgetting_registers", 1) for r in rows), default=1)
    label(ax, "Stability–plasticity: what each run gained and what it lost (95% intervals)",
          f"forgetting: mean loss change over {registers} held-out register{'s' if registers != 1 else ''} "
          "vs base (nats/token; right = forgetting)",
          "domain held-out loss gain vs base\n(nats/token; up = learning)")
    _place_labels(ax, [(r["forgetting"], r["domain_gain"], r["run"]) for r in rows])
    return fig


# ------------------------------------------------------------------------- 05: held-out registers
def _register_runs(continued: dict | None, variants: dict[str, dict] | None, params: ExperimentParams | None) -> dict:
    """The main run, then the declared variants (leftover folders of removed variants are ignored)."""
    runs = {"main run": continued} if continued else {}
    for name, ev in (variants or {}).items():
        if ev and (params is None or name in params.variants):
            runs[name] = ev
    return runs


def register_table(base: dict, continued: dict | None, variants: dict[str, dict] | None = None,
                   params: ExperimentParams | None = None):
    """Per run and held-out register: documents, loss and bits-per-byte change vs base ± paired SE
    (clustered by document), p raw and adjusted within the run's registers (one family), and whether the
    loss change is significant (adjusted p < 0.05); a register with too few documents reads "cannot be
    tested (n documents)"."""
    import pandas as pd  # lazy: importing the report module must not import pandas

    rows = []
    for run, ev in _register_runs(continued, variants, params).items():
        for r in analysis.register_deltas(base, ev):
            rows.append({"run": run, "register": r["register"], "documents": r["n"],
                         "base loss": r["base_loss"], "loss change (nats/token)": r["loss_delta"], "SE": r["loss_se"],
                         "p": r["loss_p"] if r["testable"] else cannot_test_words(r["n"]),
                         "p (adjusted)": r["loss_p_adj"], "bits/byte change": r.get("bpb_delta", math.nan),
                         "SE (bits/byte)": r.get("bpb_se", math.nan), "p (bits/byte)": r.get("bpb_p", math.nan),
                         "significant": r["significant"]})
    return pd.DataFrame(rows).round(4)


def forgetting_table(base: dict, continued: dict | None, variants: dict[str, dict] | None = None,
                     params: ExperimentParams | None = None):
    """Per run, the two summaries of the registers side by side with the domain gain: the forgetting
    axis (mean change ± SE, p) and the worst register (its change ± SE, p), and the registers whose
    loss rose significantly (adjusted within the run's registers)."""
    import pandas as pd  # lazy: importing the report module must not import pandas

    rows = []
    for run, ev in _register_runs(continued, variants, params).items():
        f = analysis.forgetting_score(base, ev)
        dom = next((r for r in analysis.compare_evals(base, ev) if r["measure"] == "val_domain loss"), None)
        rows.append({"run": run, "tokens": ev.get("tokens"),
                     "domain gain (nats/token)": -dom["delta"] if dom else math.nan, "SE (domain)": dom["se"] if dom else math.nan,
                     "forgetting: mean register change": f["mean"], "SE (mean)": f["mean_se"], "p (mean)": f["mean_p"],
                     "registers": f["registers"], "worst register": f["worst_register"], "worst change": f["worst"],
                     "SE (worst)": f["worst_se"], "p (worst)": f["worst_p"],
                     "p (worst, adjusted)": f["worst_p_adj"],
                     "significantly forgotten": ", ".join(f["forgotten"]) or "none"})
    return pd.DataFrame(rows).round(4)


#: Colours of the variants (the main run's green and the control's sky blue are reserved).
_VARIANT_COLORS = [OKABE_ITO[c] for c in ("purple", "vermillion", "orange", "blue", "black", "yellow", "grey")]


def _run_color(run: str, j: int) -> str:
    return {"main run": PALETTE["continued"], CONTROL_RUN: PALETTE["control"]}.get(
        run, _VARIANT_COLORS[j % len(_VARIANT_COLORS)])


def fig_register_deltas(base: dict, continued: dict | None, variants: dict[str, dict] | None = None,
                        params: ExperimentParams | None = None):
    """Loss (nats/token) and bits-per-byte change vs base per held-out register, one bar per register
    and run, with 95% intervals (t on the row's df; paired, clustered by document): above zero =
    forgotten. ``None`` when there is no register to compare."""
    import matplotlib.pyplot as plt  # lazy: matplotlib loads only where a figure is drawn

    runs = _register_runs(continued, variants, params)
    table = {run: {r["register"]: r for r in analysis.register_deltas(base, ev)} for run, ev in runs.items()}
    registers = list(dict.fromkeys(reg for rows in table.values() for reg in rows))
    if not registers:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(min(11.0, max(8.0, 1.2 * len(registers) * max(1, len(runs)) ** 0.5 + 5)), 4.4))
    width = 0.8 / max(1, len(runs))
    for ax, (key, what, unit) in zip(axes, (("loss", "Loss", "loss change (nats/token)"),
                                            ("bpb", "Bits/byte", "bits per byte change"))):
        for j, run in enumerate(runs):
            x = [i + (j - (len(runs) - 1) / 2) * width for i in range(len(registers))]
            delta = [table[run].get(reg, {}).get(f"{key}_delta", math.nan) for reg in registers]
            half = [analysis.ci_half_width(r.get(f"{key}_se", math.nan), r.get(f"{key}_df", math.inf))
                    for r in (table[run].get(reg, {}) for reg in registers)]
            ax.bar(x, delta, width=width, yerr=half, capsize=2.5, color=_run_color(run, j), label=run,
                   error_kw={"elinewidth": 0.9})
        ax.axhline(0, color=PALETTE["base"], lw=0.8)
        ax.set_xticks(range(len(registers)), registers, rotation=30 if len(registers) > 4 else 0)
        ax.grid(axis="x", visible=False)
        label(ax, f"{what} change per register (95% interval)", "held-out register",
              f"{unit}, continued − base\n(up = forgotten)")
    if len(runs) > 1:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(5, len(labels)), fontsize=7.5)
    fig.set_layout_engine("constrained")
    return fig


def forgetting_axis_note(base: dict, continued: dict | None) -> str:
    """Which measure the forgetting axis uses and why, with the main run's numbers for both summaries."""
    f = analysis.forgetting_score(base, continued) if continued else None
    text = (f"**Forgetting axis: the {analysis.FORGETTING_AXIS}** — the mean over the held-out registers "
            "(every held-out split but the domain's) of the paired loss change in nats/token, each register "
            "weighted equally. Its SE is exact (registers are independent document samples: √ΣSE² / R), so "
            "it ranks runs by signal. The **worst register** is shown beside it, not used as the axis: the "
            "largest of several noisy changes is biased upward and has no simple SE, but forgetting "
            "concentrated in one register must not be averaged away.")
    if f and f["registers"]:
        verdict = ("significant" if f["mean_p"] < 0.05 else "within noise") if f["mean_testable"] else \
            f"cannot be tested: a register has fewer than {analysis.MIN_DOCUMENTS} documents"
        verdict += f", p = {f['mean_p']:.2g}" if f["mean_testable"] else ""
        text += (f"\n\nMain run: mean change {f['mean']:+.4f} ± {f['mean_se']:.4f} nats/token over {f['registers']} "
                 f"register{'s' if f['registers'] != 1 else ''} ({verdict}); worst register "
                 f"`{f['worst_register']}` {f['worst']:+.4f} ± {f['worst_se']:.4f} (p = {f['worst_p']:.2g}); "
                 + (f"significantly forgotten: {', '.join(f['forgotten'])}." if f["forgotten"]
                    else "no register's loss rose significantly."))
        if f["registers"] == 1:
            text += (" Only the general held-out set is declared: declare registers (`data.registers`) to "
                     "measure forgetting on text unlike the domain.")
    return text


def model_parameters(run_dir: Path) -> int:
    """Parameter count of the trained model, as recorded in its checkpoints."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise ValueError(f"{run_dir}: no checkpoints; run notebook 03 (training) first")
    if checkpoints[-1].get("n_params"):
        return int(checkpoints[-1]["n_params"])
    return sum(p.numel() for p in load_checkpoint_model(checkpoints[-1]["path"]).parameters())


def subject_summary(subjects):
    """Mean accuracy change of the domain and the general subjects, per task (item-weighted)."""
    if subjects.empty:
        return subjects
    grouped = subjects.groupby(["task", "group"])
    return grouped[["n"]].sum().join(grouped.apply(lambda g: (g.delta * g.n).sum() / g.n.sum(),
                                                   include_groups=False).rename("mean accuracy change"))


def reference_variant(params: ExperimentParams) -> str | None:
    """The unmitigated variant to compare mitigations against (named ``no_mitigation`` by convention)."""
    return "no_mitigation" if "no_mitigation" in params.variants else None


# ----------------------------------------------------------------------------- 05: control run
def control_table(rows: list[dict], checkpoint: str | None = None):
    """``headline.compare_to_control`` rows of one checkpoint (default: the last) as a table: base,
    continued, control, the three paired changes ± SE with p, and the reading."""
    import pandas as pd  # lazy: importing the report module must not import pandas

    if not rows:
        return pd.DataFrame()
    checkpoint = checkpoint or rows[-1]["checkpoint"]
    out = []
    for r in (r for r in rows if r["checkpoint"] == checkpoint):
        digits = 3 if "accuracy" in r["kind"] else 4
        pm = lambda key: f"{r[key]:+.{digits}f} ± {r[key + ' SE']:.{digits}f}"  # noqa: E731
        out.append({"measure": r["measure"], "n": r["n"], "base": round(r["base"], digits),
                    "continued": round(r["continued"], digits), "control": round(r["control"], digits),
                    "continued − base": pm("continued − base"), "p (vs base)": r["continued − base p"],
                    "p (vs base, adjusted)": r["continued − base p_adj"],
                    "control − base": pm("control − base"), "p (control vs base, adjusted)": r["control − base p_adj"],
                    "continued − control": pm("continued − control"),
                    "p (vs control)": r["continued − control p"], "p (vs control, adjusted)": r["continued − control p_adj"],
                    "MDE vs control (80% power)": r["MDE vs control (80% power)"], "reading": r["reading words"]})
    return pd.DataFrame(out)


def control_narrative(rows: list[dict], corpus: str = "other text") -> str:
    """One sentence per reading class at the last compared checkpoint, from the numbers (every test read
    at its p adjusted within its column's family): which changes are domain-specific (continued − control
    significant), which generic (continued − base significant and the control's own change significant
    the same way), which inconclusive (continued − base significant, the control's own change not: the
    interval of continued − control says how large a domain effect it allows), and which not detected,
    with the minimum detectable effects at 80% power."""
    if not rows:
        return ("No control run to compare with (declare `control:` in the parameter file): every change below is "
                "against the base model only, so generic effects of training cannot be told from domain effects.")
    last = rows[-1]["checkpoint"]
    final = [r for r in rows if r["checkpoint"] == last]
    by = {cls: [r for r in final if r["reading"] == cls] for cls in (analysis.DOMAIN_SPECIFIC, analysis.GENERIC,
                                                                     analysis.INCONCLUSIVE, analysis.NOT_DETECTED,
                                                                     analysis.CANNOT_TEST)}
    fmt = lambda r, key: f"{r[key]:+.4g} ± {r[key + ' SE']:.2g}"  # noqa: E731
    lines = [f"At {last} ({final[0]['tokens']:,} tokens), against the same recipe and budget on {corpus} (the control); "
             "p-values adjusted within each family of comparisons (Benjamini–Hochberg, Holm below 5 tests):"]
    spec = by[analysis.DOMAIN_SPECIFIC]
    detail = lambda r: (f"{r['measure']} continued − control {fmt(r, 'continued − control')} "  # noqa: E731
                        f"(p = {r['continued − control p']:.2g}, adjusted {r['continued − control p_adj']:.2g}; vs base "
                        f"{fmt(r, 'continued − base')}, control vs base {fmt(r, 'control − base')})")
    better = [r for r in spec if improves(r["continued − control"], r["better_when"])]
    worse = [r for r in spec if r not in better]
    if better:
        lines.append(f"- **Domain-specific gain** (continued − control significant), {len(better)} measure(s): "
                     + "; ".join(map(detail, better)) + ".")
    if worse:
        lines.append(f"- **Domain-specific loss** (the continued run significantly *worse* than the control), "
                     f"{len(worse)} measure(s): " + "; ".join(map(detail, worse)) + ".")
    if not spec:
        lines.append("- **Domain-specific**: none — no measure differs significantly between the continued run and the control.")
    gen = by[analysis.GENERIC]
    if gen:
        verb = "gains" if all(improves(r["continued − base"], r["better_when"]) for r in gen) else "changes"
        lines.append(f"- **Generic (the control {verb} as much)**, {len(gen)} measure(s) where the control's own change "
                     "is significant in the same direction and continued − control is not: " + "; ".join(
                         f"{r['measure']} vs base {fmt(r, 'continued − base')}, control vs base {fmt(r, 'control − base')}, "
                         f"continued − control {fmt(r, 'continued − control')} (MDE vs control ≈ "
                         f"{r['MDE vs control (80% power)']:.2g})"
                         for r in gen) + ". Crediting these to the domain would be wrong: any training of this recipe moves them.")
    else:
        lines.append("- **Generic**: none — no change against the base is matched by a significant change of the control.")
    inc = by[analysis.INCONCLUSIVE]
    if inc:
        lines.append(f"- **Inconclusive**, {len(inc)} measure(s) that moved against the base while neither the control's "
                     "own change nor the difference from the control is significant: "
                     + "; ".join(f"{r['measure']}: {r['reading words'].removeprefix('inconclusive: ')}" for r in inc)
                     + ". Neither generic nor domain-specific is shown.")
    nd = by[analysis.NOT_DETECTED]
    if nd:
        mdes = [r["MDE vs control (80% power)"] for r in nd if math.isfinite(r["MDE vs control (80% power)"])
                and r["MDE vs control (80% power)"] > 0]
        lines.append(f"- **Not detected**, {len(nd)} measure(s) moved neither against the base nor against the control: "
                     + ", ".join(r["measure"] for r in nd)
                     + (f" (minimum detectable effects vs control at 80% power ≈ {min(mdes):.3g}–{max(mdes):.3g})."
                        if mdes else "."))
    untested = by[analysis.CANNOT_TEST]
    if untested:
        lines.append("- **Not tested**: " + "; ".join(f"{r['measure']}: {r['reading words']}" for r in untested) + ".")
    return "\n".join(lines)


def fig_control(rows: list[dict]):
    """Held-out losses and task-group gold bits per byte at the last compared checkpoint: the continued
    run's and the control's change against the base side by side, with paired 95% intervals (t);
    ``None`` without a control run (``NO_CONTROL``)."""
    import matplotlib.pyplot as plt  # lazy: matplotlib loads only where a figure is drawn

    last = rows[-1]["checkpoint"] if rows else None
    shown = [r for r in rows if r["checkpoint"] == last and r["kind"] in ("held-out loss", "group gold bits/byte")]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 1.6 + 0.42 * len(shown)), layout="constrained")
    y = np.arange(len(shown))
    for offset, key, color in ((-0.19, "continued − base", PALETTE["continued"]), (0.19, "control − base", PALETTE["control"])):
        ax.barh(y + offset, [r[key] for r in shown], height=0.36, color=color, label=key, error_kw={"elinewidth": 0.9},
                xerr=[analysis.ci_half_width(r[key + " SE"], r.get(key + " df", math.inf)) for r in shown], capsize=2.5)
    ax.set_yticks(y, [r["measure"] + (" *" if r["reading"] == analysis.DOMAIN_SPECIFIC else "") for r in shown], fontsize=7.5)
    ax.axvline(0, color=PALETTE["base"], lw=0.8)
    ax.grid(axis="y", visible=False)
    ax.invert_yaxis()  # the file's order, top to bottom
    fig.legend(loc="outside lower center", ncol=2)
    label(ax, "Continued run and control: change against the base\n(paired 95% intervals; * continued − control significant)",
          "change vs base (nats/token or bits/byte; ← better)", "measure")
    return fig


def variant_table(rows: list[dict]):
    """The stability–plasticity rows (``variant_rows``) for reading: per run its tokens, domain gain,
    forgetting score and worst register, each change ± SE in nats/token."""
    import pandas as pd  # lazy: importing the report module must not import pandas

    return pd.DataFrame([{"run": r["run"], "tokens": r.get("tokens"),
                          "domain gain (nats/token)": r["domain_gain"], "SE (gain)": r["domain_gain_se"],
                          "forgetting: mean register change (nats/token)": r["forgetting"],
                          "SE (forgetting)": r["forgetting_se"], "worst register": r["worst_register"],
                          "worst change (nats/token)": r["worst_change"], "SE (worst)": r["worst_change_se"],
                          "general change (nats/token)": r["general_change"], "SE (general)": r["general_change_se"]}
                         for r in rows])


def _pm(value, se) -> str:
    """``value ± SE`` with the display's rounding; "—" where the value is missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = fmt_number(value, 4)
    return text + (f" ± {fmt_number(se, 2)}" if se is not None and math.isfinite(se) else "")


def checkpoint_scores(evals: dict[str, dict]):
    """One row per measure (held-out loss and bits per byte per split, accuracy and gold bits per byte per
    task), one column per evaluated checkpoint headed by its tokens, each cell ``value ± SE``."""
    import pandas as pd  # lazy: importing the report module must not import pandas

    ordered = sorted(evals.items(), key=lambda kv: kv[1]["tokens"])
    heads = {name: ("base" if name == "base" else f"{_fmt_tokens(ev['tokens'])} tokens") for name, ev in ordered}
    rows: dict[tuple[str, str], dict] = {}
    for name, ev in ordered:
        for split, p in ev.get("perplexity", {}).items():
            rows.setdefault((f"{split} loss", "nats/token"), {})[heads[name]] = _pm(p["loss"], p.get("loss_se"))
            if p.get("bits_per_byte") is not None:
                rows.setdefault((f"{split} bits/byte", "bits/byte"), {})[heads[name]] = _pm(p["bits_per_byte"], p.get("bits_per_byte_se"))
        for task, t in ev.get("tasks", {}).items():
            rows.setdefault((f"{task} ({t['metric']})", "fraction correct"), {})[heads[name]] = _pm(t["value"], t.get("stderr"))
            if "gold_bpb" in t:
                rows.setdefault((f"{task} gold answer", "bits/byte"), {})[heads[name]] = _pm(t["gold_bpb"], t.get("gold_bpb_se"))
    return pd.DataFrame([{"measure": m, "unit": u, **cells} for (m, u), cells in rows.items()],
                        columns=["measure", "unit", *heads.values()])
