"""Tables, figures and computed sentences for notebooks 04 (token efficiency) and 05 (forgetting).

Every sentence a notebook prints about the results is built here from the numbers, so the words in a
report cannot drift from the data it shows.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import analysis
from .params import ExperimentParams
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


def fits(points, params: ExperimentParams) -> dict[str, analysis.Fit]:
    d, y = points.tokens.to_numpy(), points.val_domain_loss.to_numpy()
    return {m: analysis.fit_loss_curve(d, y, model=m, bootstrap=params.analysis.bootstrap_samples, seed=params.seed)
            for m in ("power law", "log-linear")}


def fit_table(fitted: dict[str, analysis.Fit], points=None):
    """Both fits side by side: parameters with 95% bootstrap intervals, R², AICc (lower is better), and
    — given the points — the RMSE of predicting the last two evaluations from a fit to the earlier ones."""
    import pandas as pd

    rows = []
    for name, f in fitted.items():
        holdout = (analysis.holdout_error(points.tokens, points.val_domain_loss, model=name)
                   if points is not None else {"ok": False})
        row = {"model": name, "R²": None, "AICc": None,
               "hold-out RMSE, last 2 points (nats)": round(holdout["rmse"], 4) if holdout["ok"] else None}
        if not f.ok:
            rows.append({**row, "parameters (95% interval)": f"fit failed: {f.reason}"})
            continue
        text = ", ".join(f"{k} = {v:.4g} [{f.intervals.get(k, (math.nan,))[0]:.3g}, {f.intervals.get(k, (0, math.nan))[1]:.3g}]"
                         for k, v in f.params.items())
        rows.append({**row, "parameters (95% interval)": text, "R²": round(f.r2, 4),
                     "AICc": round(f.aicc, 2) if math.isfinite(f.aicc) else None})
    return pd.DataFrame(rows).set_index("model")[["parameters (95% interval)", "R²", "AICc",
                                                  "hold-out RMSE, last 2 points (nats)"]]


def fig_loss_curves(points, fitted: dict[str, analysis.Fit], milestones: list[int]):
    import matplotlib.pyplot as plt

    from .plots import PALETTE, label

    fig, ax = plt.subplots()
    for which in ("domain", "general"):
        ax.errorbar(points.tokens, points[f"val_{which}_loss"], yerr=points[f"val_{which}_loss_se"], fmt="o",
                    capsize=3, color=PALETTE[which], label=f"{which} held-out")
    pl = fitted["power law"]
    if pl.ok:
        grid = np.linspace(max(1, points.tokens[points.tokens > 0].min()), points.tokens.max() * 1.5, 200)
        lo, hi = analysis.prediction_band(pl, grid)
        ax.plot(grid, pl.predict(grid), color=PALETTE["fit"],
                label=f"domain fit E + A·D^−α (α = {pl.params['alpha']:.2f}, R² = {pl.r2:.3f})")
        ax.fill_between(grid, lo, hi, color=PALETTE["fit"], alpha=0.2, label="95% bootstrap band")
    for i, m in enumerate(milestones):
        ax.axvline(m, color="grey", ls=":", lw=1, label="checkpoint milestones" if i == 0 else None)
    ax.legend(fontsize=8)
    label(ax, "Held-out loss against tokens seen (±1 SE)", "tokens seen", "cross-entropy (nats/token)")
    return fig


def fig_task_curves(curve, milestones: list[int] = ()):
    import matplotlib.pyplot as plt

    from .plots import label

    tasks = [c for c in curve.columns if c.endswith("_se") is False and c not in ("checkpoint", "tokens")
             and not c.startswith("val_")]
    fig, ax = plt.subplots()
    for task in tasks:
        ax.errorbar(curve.tokens, curve[task], yerr=curve[f"{task}_se"], marker="o", capsize=3, label=task)
    ax.axhline(0.25, color="grey", ls="--", lw=1, label="chance (4 choices)")
    for i, m in enumerate(milestones):
        ax.axvline(m, color="grey", ls=":", lw=1, label="checkpoint milestones" if i == 0 else None)
    ax.legend(fontsize=7, ncol=2)
    label(ax, "Task scores at each checkpoint (±1 SE)", "tokens seen", "accuracy (fraction correct)")
    return fig


def fig_fit_residuals(points, fitted: dict[str, analysis.Fit]):
    import matplotlib.pyplot as plt

    from .plots import label

    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    if not any(f.ok for f in fitted.values()):
        ax.text(0.5, 0.5, "no fit to show: " + next(iter(fitted.values())).reason, ha="center", va="center",
                transform=ax.transAxes, wrap=True, fontsize=9)
        label(ax, "Goodness of fit: residuals of the domain-loss fits", "tokens seen", "observed − fitted (nats/token)")
        return fig
    d = points.tokens[points.tokens > 0].to_numpy()
    y = points.val_domain_loss[points.tokens > 0].to_numpy()
    for name, f in fitted.items():
        if f.ok:
            ax.plot(d, y - f.predict(d), marker="o", label=f"{name} (R² {f.r2:.3f})")
    ax.axhline(0, color="grey", lw=1)
    ax.legend()
    label(ax, "Goodness of fit: residuals of the domain-loss fits", "tokens seen", "observed − fitted (nats/token)")
    return fig


def efficiency_table(points, params: ExperimentParams, n_params: int):
    """Loss drop per 10% of the budget, tokens per parameter, at each evaluation."""
    import pandas as pd

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
        lines.append(f"- Loss drop per token in the second half of the budget is {dr['ratio_second_to_first']:.2f}× "
                     f"that of the first half: returns are {'diminishing' if dr['diminishing'] else 'not diminishing'}.")
    pl, ll = fitted["power law"], fitted["log-linear"]
    if pl.ok:
        alpha_ci = pl.intervals.get("alpha", (math.nan, math.nan))
        if ll.ok and math.isfinite(pl.aicc) and math.isfinite(ll.aicc):
            better = "power law" if pl.aicc < ll.aicc else "log-linear"
            verdict = f"by AICc (ΔAICc = {abs(pl.aicc - ll.aicc):.1f}) the {better} describes the points better"
        else:
            verdict = (f"with {pl.n_points} points AICc cannot compare it with the log-linear alternative "
                       "(the power law's 3 parameters need at least 5)")
        lines.append(f"- Power-law fit: E = {pl.params['E']:.3f} (the loss this data would approach), α = "
                     f"{pl.params['alpha']:.3f} [{alpha_ci[0]:.3f}, {alpha_ci[1]:.3f}], R² = {pl.r2:.3f}; {verdict}.")
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
                         f"≈ {_fmt_tokens(reach['tokens'])} tokens (95% interval {_fmt_tokens(lo)}–{_fmt_tokens(hi)}); "
                         "extrapolating a few points far beyond the data is fragile.")
        else:
            lines.append(f"- No extrapolation to a loss of {target:.3f} {how}: {reach['reason']}.")
    else:
        lines.append(f"- The power-law fit is not available: {pl.reason}.")
    return "\n".join(lines)


def paper_comparison(evals: dict[str, dict]):
    """The paper's finding (400M → 1B: positive but diminishing returns) tested on this run's
    checkpoints with ``analysis.paper_finding``: one row with the verdict and the numbers behind it."""
    import pandas as pd

    f = analysis.paper_finding(evals)
    span = (f"{_fmt_tokens(f['mid_tokens'])} → {_fmt_tokens(f['final_tokens'])} tokens "
            f"({f['final_tokens'] / f['mid_tokens']:.2g}× the tokens; the paper: 2.5×)" if "mid_tokens" in f else "—")
    return pd.DataFrame([{"finding (paper)": "400M → 1B tokens: positive but diminishing returns",
                          "this run": span, "verdict": f["verdict"], "evidence": f["reason"],
                          "caveat": "a far smaller token budget than the paper's; domain held-out loss only"}])


def score_trend_table(evals: dict[str, dict], params: ExperimentParams):
    """Task scores base → final: moved beyond noise or not, and the extrapolation where it is allowed."""
    import pandas as pd

    rows = analysis.score_trends(evals, min_r2=params.analysis.min_fit_r2)
    cols = ["task", "metric", "first", "last", "delta", "se", "p", "moved", "extrapolation"]
    return pd.DataFrame(rows, columns=cols).round({"first": 3, "last": 3, "delta": 3, "se": 3, "p": 3})


# ------------------------------------------------------------------------------- 05: forgetting
def comparison_table(base: dict, other: dict):
    import pandas as pd

    rows = analysis.compare_evals(base, other)
    frame = pd.DataFrame(rows)
    if "ppl_change_pct" not in frame:
        frame["ppl_change_pct"] = frame["ppl_change_pct_se"] = math.nan
    frame = frame[["measure", "base", "other", "delta", "se", "ppl_change_pct", "ppl_change_pct_se", "p", "test",
                   "significant", "better_when"]]
    return frame.rename(columns={"other": "continued", "delta": "continued − base", "se": "SE",
                                 "ppl_change_pct": "perplexity change %", "ppl_change_pct_se": "SE (%)"}).round(4)


def forgetting_narrative(base: dict, other: dict) -> str:
    """What changed base → continued, in words built from ``compare_evals``."""
    rows = {r["measure"]: r for r in analysis.compare_evals(base, other)}
    lines = []
    for split, what in (("val_domain", "domain"), ("val_general", "general")):
        r = rows.get(f"{split} loss")
        if r:
            verdict = ("significant" if r["significant"] else "within noise") + f", p = {r['p']:.2g}"
            lines.append(f"- {what.capitalize()} held-out perplexity changed by {r['ppl_change_pct']:+.1f}% ± "
                         f"{r['ppl_change_pct_se']:.1f}% (loss {r['delta']:+.3f} ± {r['se']:.3f} nats; {verdict}).")
    tasks = [r for m, r in rows.items() if not m.endswith(" loss")]
    moved = [r for r in tasks if r["significant"]]
    detectable = [2 * r["se"] for r in tasks if r["se"] > 0]
    lines.append(f"- {len(moved)} of {len(tasks)} task scores moved beyond noise (p < 0.05)"
                 + (": " + ", ".join(f"{r['measure']} {r['delta']:+.3f}" for r in moved) if moved else "")
                 + (f"; with these item counts only changes of about {min(detectable):.2f}–{max(detectable):.2f} "
                    "(two paired SEs) are detectable." if detectable else "."))
    return "\n".join(lines)


def subject_table(base: dict, other: dict):
    import pandas as pd

    from .tasks import DOMAIN_SUBJECTS

    rows = []
    for task in base.get("tasks", {}):
        for r in analysis.per_subject_deltas(base, other, task):
            rows.append({"task": task, "group": "domain" if r["subject"] in DOMAIN_SUBJECTS else "general", **r})
    return pd.DataFrame(rows)


def fig_subjects(table):
    import matplotlib.pyplot as plt

    from .plots import PALETTE, label

    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.18 * len(table) + 1)))
    if table.empty:
        ax.text(0.5, 0.5, "no per-subject results", ha="center", transform=ax.transAxes)
        label(ax, "Per-subject MMLU change", "accuracy change (continued − base)", "subject")
        return fig
    agg = table.groupby(["subject", "group"]).apply(
        lambda g: np.average(g["delta"], weights=g["n"]), include_groups=False).reset_index(name="delta")
    agg = agg.sort_values(["group", "delta"])
    ax.barh(agg.subject, agg.delta, color=[PALETTE[g] for g in agg.group])
    ax.axvline(0, color="grey", lw=1)
    label(ax, "Per-subject MMLU change (blue: domain subjects, orange: general)", "accuracy change (continued − base, fraction)",
          "subject")
    return fig


def variant_rows(base: dict, main_final: dict | None, variants, params: ExperimentParams) -> list[dict]:
    """Stability–plasticity rows for the variants declared in ``params`` (leftover folders of variants
    no longer in the file are ignored), plus the main run for reference. ``variants``: name → final
    evaluation, or the table ``run_variants`` returns."""
    if hasattr(variants, "to_dict"):  # the run_variants table: read each variant's final evaluation
        variants = {r["variant"]: analysis.final_eval(r["path"]) for r in variants.to_dict("records")}
    runs = {name: ev for name, ev in variants.items() if ev and name in params.variants}
    rows = analysis.stability_plasticity(base, runs)
    for r in rows:
        r["tokens"] = runs[r["run"]]["tokens"]
    if main_final:
        (main,) = analysis.stability_plasticity(base, {"main run": main_final})
        main["tokens"] = main_final["tokens"]
        rows.append(main)
    return rows


def fig_stability_plasticity(rows: list[dict]):
    import matplotlib.pyplot as plt

    from .plots import PALETTE, label

    fig, ax = plt.subplots(figsize=(7.5, 5))
    comparable = [r for r in rows if r["run"] != "main run"]
    front = set(analysis.pareto_front(comparable)) if comparable else set()
    # runs often land within each other's error bars: stagger the labels (with leader lines) by rank
    offsets = [(12, 14), (12, -16), (-12, 14), (-12, -16), (24, 0), (-24, 0)]
    for i, r in enumerate(sorted(rows, key=lambda r: (r["domain_gain"], r["general_change"]))):
        color = PALETTE["continued"] if r["run"] == "main run" else (PALETTE["fit"] if r["run"] in front else PALETTE["variant"])
        ax.errorbar(r["general_change"], r["domain_gain"], xerr=r["general_change_se"], yerr=r["domain_gain_se"],
                    fmt="o", color=color, capsize=3)
        dx, dy = offsets[i % len(offsets)]
        ax.annotate(r["run"], (r["general_change"], r["domain_gain"]), xytext=(dx, dy), textcoords="offset points",
                    fontsize=8, ha="left" if dx > 0 else "right", va="center",
                    arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5})
    pts = sorted((r["general_change"], r["domain_gain"]) for r in comparable if r["run"] in front)
    if len(pts) > 1:
        ax.plot(*zip(*pts), color=PALETTE["fit"], ls="--", lw=1, label="Pareto front (variants)")
    if comparable:
        ax.plot([], [], "o", color=PALETTE["fit"], label="variant on the Pareto front")
        ax.plot([], [], "o", color=PALETTE["variant"], label="dominated variant")
    if len(comparable) < len(rows):
        ax.plot([], [], "o", color=PALETTE["continued"], label="main run (full budget, for reference)")
    ax.legend(fontsize=8, loc="best")
    ax.margins(0.15)
    ax.axvline(0, color="grey", lw=1)
    label(ax, "Stability–plasticity: what each run gained and what it lost",
          "general held-out loss change vs base (nats/token; right = forgetting)",
          "domain held-out loss gain vs base (nats/token; up = learning)")
    return fig


def model_parameters(run_dir: Path) -> int:
    """Parameter count of the trained model, as recorded in its checkpoints."""
    from .checkpointing import list_checkpoints, load_checkpoint_model

    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise ValueError(f"{run_dir}: no checkpoints; run notebook 03 (training) first")
    if checkpoints[-1].get("n_params"):
        return int(checkpoints[-1]["n_params"])
    return sum(p.numel() for p in load_checkpoint_model(checkpoints[-1]["path"]).parameters())


def subject_summary(subjects):
    """Mean accuracy change of the domain and the general subject groups (item-weighted)."""
    if subjects.empty:
        return subjects
    grouped = subjects.groupby("group")
    return grouped[["n"]].sum().join(grouped.apply(lambda g: (g.delta * g.n).sum() / g.n.sum(),
                                                   include_groups=False).rename("mean accuracy change"))


def reference_variant(params: ExperimentParams) -> str | None:
    """The unmitigated variant to compare mitigations against (named ``no_mitigation`` by convention)."""
    return "no_mitigation" if "no_mitigation" in params.variants else None
