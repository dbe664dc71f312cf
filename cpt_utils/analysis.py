"""The research questions as pure functions over tables: how much did each token buy (a fitted power
law with its uncertainty), what was forgotten (paired deltas with standard errors), and which
mitigation gives the best trade-off (a stability–plasticity table and its Pareto front).

Statistics only: nothing here trains, evaluates or reads a file (a run's results are read by
``cpt_utils.results``), and no sentence of a report is built here (their words: ``cpt_utils.readings``).
Every function that can fail on the data (too few points, a poor fit, an unreachable target) says so
in its result instead of returning a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .comparability import check_comparable

# ------------------------------------------------------------------------------------ token efficiency


@dataclass
class Fit:
    """A fitted loss curve: parameters with 95% intervals (where the fit has the residual degrees of freedom
    to support them), quality, and why it may be unusable."""

    model: str                       # "power law" or "log-linear"
    params: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    r2: float = float("nan")
    aic: float = float("nan")
    aicc: float = float("nan")       # small-sample AIC: what the comparison uses (a handful of points)
    n_points: int = 0
    ok: bool = False
    reason: str = ""
    samples: np.ndarray | None = None  # parameter draws (rows) for prediction bands; None: no interval
    token_range: tuple[float, float] = (math.nan, math.nan)  # the fitted data's tokens: a band stays inside
    covariance: str = ""             # where the points' covariance came from (measured, assumed, none)
    interval_note: str = ""          # why there are no intervals, when there are none
    chi2_p: float = float("nan")     # goodness of fit against the points' covariance

    def predict(self, tokens) -> np.ndarray:
        return _curve(self.model, np.asarray(tokens, dtype=float), *self.params.values())


def _curve(model: str, d: np.ndarray, *p: float) -> np.ndarray:
    if model == "power law":
        e, a, alpha = p
        return e + a * np.power(d, -alpha)
    a, b = p
    return a + b * np.log(d)


def _r2_aic(y: np.ndarray, yhat: np.ndarray, k: int) -> tuple[float, float]:
    rss = float(np.sum((y - yhat) ** 2))
    tss = float(np.sum((y - y.mean()) ** 2)) or 1e-30
    n = len(y)
    return 1 - rss / tss, n * math.log(max(rss, 1e-30) / n) + 2 * k


#: Correlation assumed between two points' held-out losses when their per-document sums are not stored.
#: UNMEASURED: every point is scored on the same documents, so their errors are strongly and positively
#: correlated (a hard document is hard at every checkpoint); ``point_covariance`` measures it instead
#: whenever the evaluations carry per-document sums.
ASSUMED_POINT_CORRELATION = 0.9


def point_covariance(evals: list[dict], split: str = "val_domain") -> np.ndarray | None:
    """Covariance of the points' held-out losses, measured: the points are scored on the same documents,
    so the cluster-robust (linearised) covariance of their ratios over the per-document sums. None when
    any point lacks the sums, the documents differ, or there are too few documents to measure it (fewer
    than ``MIN_DOCUMENTS``, or a covariance that is not positive definite: fewer documents than points)."""
    docs = [(ev.get("perplexity", {}).get(split) or {}).get("per_document") or {} for ev in evals]
    if not evals or any(not d.get("nats") for d in docs) or any(d.get("tokens") != docs[0].get("tokens") for d in docs):
        return None
    counts = np.asarray(docs[0]["tokens"], dtype=float)
    sums = np.asarray([d["nats"] for d in docs], dtype=float)
    n_docs, total = len(counts), counts.sum()
    if n_docs < MIN_DOCUMENTS:
        return None
    resid = sums - np.outer(sums.sum(axis=1) / total, counts)
    cov = resid @ resid.T * n_docs / (n_docs - 1) / total ** 2
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return None
    return cov


def assumed_covariance(se, rho: float = ASSUMED_POINT_CORRELATION) -> np.ndarray:
    """The points' covariance from their SEs and an assumed correlation ``rho`` (see
    ``ASSUMED_POINT_CORRELATION``: unmeasured)."""
    s = np.asarray(se, dtype=float)
    return (rho + (1 - rho) * np.eye(len(s))) * np.outer(s, s)


def fit_loss_curve(tokens, losses, model: str = "power law", cov=None, se=None, draws: int = 1000, seed: int = 0,
                   min_points: int = 4) -> Fit:
    """Fit L(D) = E + A·D^(−α) (or L = a + b·ln D) to losses at D > 0 tokens seen, by generalised least
    squares with the points' covariance ``cov`` (``point_covariance``; or, from ``se`` and
    ``ASSUMED_POINT_CORRELATION``, ``assumed_covariance``).

    The base model's point (D = 0) is left out: the power law is a statement about training tokens and
    diverges at 0. Intervals: the GLS estimate's covariance (JᵀΣ⁻¹J)⁻¹ and parametric draws from it
    (normal: Σ is known, not estimated from the residuals) — calibrated in tests/test_calibration.py.
    A residual bootstrap over 4 points and 3 parameters covers far less than 95%, so with fewer than
    ``MIN_RESIDUAL_DOF`` residual degrees of freedom, or no covariance, no interval is given."""
    from scipy.optimize import curve_fit  # lazy: scipy loads only where a test or fit runs (the trackers import analysis)
    from scipy.stats import chi2, norm  # lazy: scipy loads only where a test or fit runs (the trackers import analysis)

    d = np.asarray(tokens, dtype=float)
    y = np.asarray(losses, dtype=float)
    keep = d > 0
    usable_se = se is not None and bool(np.all(np.isfinite(np.asarray(se, dtype=float)[keep]))
                                        and np.all(np.asarray(se, dtype=float)[keep] > 0))
    if cov is None and usable_se:
        cov, source = assumed_covariance(np.asarray(se, dtype=float)), f"assumed correlation {ASSUMED_POINT_CORRELATION} (unmeasured)"
    else:
        source = "measured from per-document sums" if cov is not None else "none (no standard errors)"
    cov = None if cov is None else np.asarray(cov, dtype=float)[np.ix_(keep, keep)]
    d, y = d[keep], y[keep]
    k = 3 if model == "power law" else 2
    fit = Fit(model=model, params={}, n_points=len(d), covariance=source)
    if len(d) < max(min_points, k + 1):
        fit.reason = f"{len(d)} points with tokens > 0; at least {max(min_points, k + 1)} are needed for a {model} fit"
        return fit

    def f(x, *p):
        return _curve(model, x, *p)

    if model == "power law":
        p0 = [max(0.0, y.min() - 0.1), (y.max() - y.min() + 1e-3) * d.min() ** 0.3, 0.3]
        bounds = ([0.0, 0.0, 1e-3], [y.min(), np.inf, 3.0])
    else:
        p0, bounds = [y.mean(), -0.1], ([-np.inf, -np.inf], [np.inf, np.inf])
    try:
        popt, pcov = curve_fit(f, d, y, p0=p0, bounds=bounds, maxfev=20000, sigma=cov, absolute_sigma=True)
    except (RuntimeError, ValueError, np.linalg.LinAlgError) as err:
        fit.reason = f"the {model} fit did not converge ({err})"
        return fit
    names = ["E", "A", "alpha"] if model == "power law" else ["a", "b"]
    fit.params = dict(zip(names, map(float, popt)))
    fit.token_range = (float(d.min()), float(d.max()))
    yhat = f(d, *popt)
    fit.r2, fit.aic = _r2_aic(y, yhat, k)
    fit.aicc = fit.aic + (2 * k * (k + 1) / (len(d) - k - 1) if len(d) > k + 1 else math.inf)
    fit.ok = True
    dof = len(d) - k
    if cov is None:
        fit.interval_note = "no intervals: the points have no standard errors"
    elif dof < MIN_RESIDUAL_DOF:
        fit.interval_note = (f"no intervals: {len(d)} points for {k} parameters leave {dof} residual degree"
                             f"{'s' if dof != 1 else ''} of freedom (at least {MIN_RESIDUAL_DOF} needed)")
    elif not np.all(np.isfinite(pcov)):
        fit.interval_note = "no intervals: the parameters are not identified by these points"
    else:
        resid = y - yhat
        fit.chi2_p = float(chi2.sf(float(resid @ np.linalg.solve(cov, resid)), dof))
        half = norm.ppf(0.975) * np.sqrt(np.diag(pcov))
        fit.intervals = {n: (float(popt[i] - half[i]), float(popt[i] + half[i])) for i, n in enumerate(names)}
        if model == "power law" and popt[1] > 0:  # A is a positive scale: its interval is symmetric in log A
            fit.intervals["A"] = (float(popt[1] * math.exp(-half[1] / popt[1])), float(popt[1] * math.exp(half[1] / popt[1])))
        fit.samples = np.random.default_rng(seed).multivariate_normal(popt, pcov, size=draws, method="eigh")
    return fit


def prediction_band(fit: Fit, tokens, allow_extrapolation: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """2.5–97.5% band of the fitted curve at ``tokens`` from the parameter draws; NaN (nothing drawn)
    where the fit has no intervals and, unless ``allow_extrapolation``, beyond the fitted tokens."""
    d = np.asarray(tokens, dtype=float)
    if fit.samples is None or not len(fit.samples):
        return np.full(d.shape, np.nan), np.full(d.shape, np.nan)
    curves = np.stack([_curve(fit.model, d, *p) for p in fit.samples])
    lo, hi = np.nanpercentile(curves, 2.5, axis=0), np.nanpercentile(curves, 97.5, axis=0)
    if not allow_extrapolation:
        outside = (d < fit.token_range[0]) | (d > fit.token_range[1])
        lo, hi = np.where(outside, np.nan, lo), np.where(outside, np.nan, hi)
    return lo, hi


def holdout_error(tokens, losses, model: str = "power law", holdout: int = 2) -> dict:
    """Fit on all but the last ``holdout`` points (tokens > 0) and report the RMSE of predicting them:
    the test that matters for extrapolation, which in-sample R² and AIC do not measure."""
    d, y = np.asarray(tokens, dtype=float), np.asarray(losses, dtype=float)
    order = np.argsort(d)
    d, y = d[order][d[order] > 0], y[order][d[order] > 0]
    fit = fit_loss_curve(d[:-holdout], y[:-holdout], model=model, min_points=3)
    if not fit.ok:
        return {"ok": False, "model": model, "reason": f"fit on the first {len(d) - holdout} points failed: {fit.reason}"}
    err = y[-holdout:] - fit.predict(d[-holdout:])
    return {"ok": True, "model": model, "rmse": float(np.sqrt(np.mean(err ** 2))), "held_out_tokens": d[-holdout:].tolist()}


#: Points beyond the parameter count before a fit has intervals or may be extrapolated: with fewer, any
#: smooth curve fits and the interval has nothing to stand on.
MIN_RESIDUAL_DOF = 2


def tokens_to_reach(fit: Fit, target: float, min_r2: float = 0.9, increasing: bool = False) -> dict:
    """Tokens needed to reach ``target`` (a loss; a score when ``increasing``), with a 95% interval — or
    the reason it is refused (poor fit, target beyond the asymptote or against the fitted trend)."""
    if not fit.ok:
        return {"ok": False, "reason": fit.reason}
    if fit.r2 < min_r2:
        return {"ok": False, "reason": f"fit R² {fit.r2:.3f} < {min_r2}: too poor to extrapolate"}
    if fit.n_points - len(fit.params) < MIN_RESIDUAL_DOF:
        return {"ok": False, "reason": f"{fit.n_points} points for {len(fit.params)} parameters: a near-perfect R² "
                                        f"is guaranteed, not evidence (extrapolation needs ≥ {len(fit.params) + MIN_RESIDUAL_DOF} points)"}

    def solve(p) -> float:
        if fit.model == "power law":
            e, a, alpha = p
            return math.inf if target <= e or a <= 0 else (a / (target - e)) ** (1 / alpha)
        a, b = p
        return math.inf if (b <= 0 if increasing else b >= 0) else math.exp((target - a) / b)

    point = solve(list(fit.params.values()))
    if not math.isfinite(point):
        if fit.model == "power law":
            why = f"at or below the fitted asymptote E = {fit.params['E']:.3f}"
        else:
            why = f"against the fitted trend (slope {fit.params['b']:+.3g} per ln token)"
        return {"ok": False, "reason": f"target {target:.3f} is {why}: not reachable on this curve"}
    if fit.samples is None:
        return {"ok": True, "tokens": point, "interval": (math.nan, math.nan), "share_of_draws_unreachable": math.nan,
                "note": fit.interval_note}
    draws = np.array([solve(p) for p in fit.samples])
    finite = draws[np.isfinite(draws)]
    lo, hi = (np.percentile(finite, 2.5), np.percentile(finite, 97.5)) if len(finite) else (point, point)
    unreachable = 1 - len(finite) / max(1, len(draws))
    return {"ok": True, "tokens": point, "interval": (float(lo), float(hi) if unreachable < 0.025 else math.inf),
            "share_of_draws_unreachable": unreachable}


def marginal_gains(tokens, losses, step: float) -> list[dict]:
    """Observed loss reduction per ``step`` tokens between consecutive evaluations (e.g. per 10% of the
    budget on small runs, per 100M tokens on the paper's)."""
    d, y = np.asarray(tokens, dtype=float), np.asarray(losses, dtype=float)
    order = np.argsort(d)
    d, y = d[order], y[order]
    return [{"from_tokens": float(d[i]), "to_tokens": float(d[i + 1]),
             "loss_drop_per_step": float((y[i] - y[i + 1]) / (d[i + 1] - d[i]) * step)}
            for i in range(len(d) - 1) if d[i + 1] > d[i]]


def diminishing_returns(tokens, losses) -> dict:
    """Compare the loss drop per token in the first and the second half of the token range."""
    d, y = np.asarray(tokens, dtype=float), np.asarray(losses, dtype=float)
    if len(d) < 3:
        return {"ok": False, "reason": "fewer than 3 evaluation points"}
    mid = d.min() + (d.max() - d.min()) / 2
    y_mid = float(np.interp(mid, d, y))
    first = (y[0] - y_mid) / (mid - d.min())
    second = (y_mid - y[-1]) / (d.max() - mid)
    return {"ok": True, "first_half_drop_per_token": float(first), "second_half_drop_per_token": float(second),
            "ratio_second_to_first": float(second / first) if first else float("nan"),
            "diminishing": bool(second < first)}


def score_trends(evals: dict[str, dict], min_r2: float = 0.9, alpha: float = 0.05) -> list[dict]:
    """Per task: did the score move beyond its standard error (base → final, paired over items)? Only
    then fit score = a + b·ln D over the trained checkpoints and extrapolate the tokens to gain one more
    standard error in the same direction; otherwise say why not (a score moving within noise has no
    trend to extrapolate). The tasks are one family (``FAMILIES["score trends"]``): *moved* reads the
    adjusted p. Pass annealed evaluations (``analysis_report.annealed_evals``): a peak-LR checkpoint
    against the annealed final credits the decay to the tokens."""
    ordered = sorted(evals.values(), key=lambda e: e["tokens"])
    if len(ordered) < 2:
        return []
    first, last = ordered[0], ordered[-1]
    rows = []
    for task, b in first.get("tasks", {}).items():
        o = last.get("tasks", {}).get(task)
        if o:
            d = _task_delta(b, o)
            rows.append({"task": task, "metric": b["metric"], "from_tokens": first["tokens"], "to_tokens": last["tokens"],
                         "first": b["value"], "last": o["value"], "delta": d["delta"], "se": d["se"], "p": d["p"]})
    mark_family(rows, "score trends", alpha)
    for row in rows:
        task, o, d = row["task"], last["tasks"][row["task"]], row
        row["moved"] = row.pop("significant")
        if not row["moved"]:
            row["extrapolation"] = (f"not attempted: the change {d['delta']:+.3f} is within noise (p = {d['p']:.2f}, "
                                    f"adjusted {d['p_adj']:.2f})")
            continue
        trained = [e for e in ordered if e["tokens"] > 0 and task in e.get("tasks", {})]
        fit = fit_loss_curve([e["tokens"] for e in trained], [e["tasks"][task]["value"] for e in trained],
                             model="log-linear", draws=200, min_points=3,
                             se=[e["tasks"][task]["stderr"] for e in trained])
        target = o["value"] + math.copysign(o["stderr"], d["delta"])
        reach = tokens_to_reach(fit, target, min_r2, increasing=d["delta"] > 0)
        row["fit_r2"] = fit.r2
        if reach["ok"]:
            lo, hi = reach["interval"]
            row["extrapolation"] = (f"{target:.3f} (one more SE) at ≈ {reach['tokens']:.3g} tokens "
                                    + (f"(95% interval {lo:.3g}–{hi:.3g})" if math.isfinite(lo) else f"({reach['note']})"))
            row["tokens_to_target"] = reach["tokens"]
        else:
            row["extrapolation"] = f"refused: {reach['reason']}"
    return rows


#: The paper's budgets: 400M and 1B tokens, so its "more tokens" step starts at 40% of the final budget.
PAPER_MID_FRACTION = 0.4


def paper_finding(evals: dict[str, dict], alpha: float = 0.05) -> dict:
    """Test the paper's finding (400M → 1B tokens: positive but diminishing returns) on this run: take
    the annealed point nearest 40% of the final budget (pass annealed evaluations only,
    ``analysis_report.annealed_evals``: a peak-LR checkpoint against the annealed final would credit the
    decay's drop to the tokens); *positive* = the domain loss falls significantly
    from it to the final checkpoint (paired over sequences); *diminishing* = that later drop per token is
    smaller than the drop per token from the base to the checkpoint. A later change within noise makes
    the finding not testable at this scale (the run cannot tell whether the extra tokens helped)."""
    ordered = sorted(evals.values(), key=lambda e: e["tokens"])
    trained = [e for e in ordered if e["tokens"] > 0]
    if not ordered or ordered[0]["tokens"] != 0 or len(trained) < 2:
        return {"verdict": "not testable at this scale",
                "reason": "needs the base evaluation and at least two evaluated checkpoints "
                          f"(have {'a' if ordered and ordered[0]['tokens'] == 0 else 'no'} base and {len(trained)})"}
    base, final = ordered[0], trained[-1]
    mid = min(trained[:-1], key=lambda e: abs(e["tokens"] - PAPER_MID_FRACTION * final["tokens"]))
    if "val_domain" not in mid["perplexity"] or "val_domain" not in final["perplexity"]:
        return {"verdict": "not testable at this scale", "reason": "no domain held-out loss in the evaluations"}
    # one pre-specified test (a family of one): its raw p is the one to read
    later = heldout_delta(mid["perplexity"]["val_domain"], final["perplexity"]["val_domain"])
    later["significant"] = bool(math.isfinite(later["p"]) and later["p"] < alpha)
    early_drop = base["perplexity"]["val_domain"]["loss"] - mid["perplexity"]["val_domain"]["loss"]
    early_rate, late_rate = early_drop / mid["tokens"], -later["delta"] / (final["tokens"] - mid["tokens"])
    out = {"mid_tokens": mid["tokens"], "final_tokens": final["tokens"], "later_gain": -later["delta"],
           "later_gain_se": later["se"], "later_p": later["p"], "early_drop_per_token": early_rate,
           "late_drop_per_token": late_rate, "rate_ratio": late_rate / early_rate if early_rate else math.nan}
    if not later["testable"]:
        out.update(verdict="not testable at this scale", reason=f"the domain held-out set {later['reason']}")
    elif not later["significant"]:
        out.update(verdict="not testable at this scale",
                   reason=f"the domain loss change from {mid['tokens']:,} to {final['tokens']:,} tokens "
                          f"({-later['delta']:+.4f} ± {later['se']:.4f} nats) is within noise (p = {later['p']:.2f})")
    elif later["delta"] > 0:
        out.update(verdict="not reproduced", reason="the domain loss rose significantly with the extra tokens")
    elif late_rate < early_rate:
        out.update(verdict="reproduced",
                   reason=f"the extra tokens still lowered the domain loss by {-later['delta']:.4f} ± {later['se']:.4f} "
                          f"nats (p = {later['p']:.2g}), at {out['rate_ratio']:.2f}× the earlier rate per token")
    else:
        out.update(verdict="not reproduced",
                   reason=f"returns did not diminish: the later drop per token is {out['rate_ratio']:.2f}× the earlier one")
    return out


# -------------------------------------------------------------------------------------- forgetting
# Every test below is calibrated by simulation in tests/test_calibration.py (coverage, false positives,
# power, false discovery rate): change a formula here and that file says whether it still holds.

#: Fewest documents a held-out comparison is tested on: with fewer, the cluster-robust SE is itself too
#: noisy for any reference distribution, so the set is reported as "cannot be tested (n documents)".
MIN_DOCUMENTS = 10
#: The power at which "detectable" is stated (the minimum detectable effect, ``min_detectable_effect``).
POWER = 0.8
#: Families with fewer tests than this are adjusted by Holm (family-wise) instead of Benjamini–Hochberg.
HOLM_BELOW = 5
#: The families of tests whose false discovery rate is controlled together (``adjust_pvalues``): every
#: reading ("significant", "forgotten", "domain-specific", "generic", "reduces forgetting") reads the
#: adjusted p of its family.
FAMILIES = {
    "vs base": "one checkpoint against the base: every held-out split (loss, bits/byte) and task (accuracy, "
               "gold bits/byte) of compare_evals",
    "task groups vs base": "the task-group aggregates of one checkpoint against the base (group_deltas)",
    "continued − base": "every measure of the control comparison, continued − base (control_deltas)",
    "control − base": "every measure of the control comparison, control − base (control_deltas)",
    "continued − control": "every measure of the control comparison, continued − control (control_deltas)",
    "registers": "the held-out registers' loss changes of one run (register_deltas)",
    "score trends": "each task's base → final change (score_trends)",
    "mitigation": "every variant against the unmitigated reference: forgetting, domain loss, domain accuracy "
                  "and gold bits/byte (mitigation_table)",
}


def t_test(delta: float, se: float, df: float) -> tuple[float, float]:
    """Two-sided Student's t test of ``delta / se`` on ``df`` degrees of freedom (inf: the normal)."""
    from scipy.stats import t as student_t  # lazy: scipy loads only where a test or fit runs (the trackers import analysis)

    if not se or not math.isfinite(se) or not df > 0:
        return float("nan"), float("nan")
    t = delta / se
    return t, float(2 * student_t.sf(abs(t), df))


def min_detectable_effect(se: float, df: float, alpha: float = 0.05, power: float = POWER) -> float:
    """The change a two-sided level-``alpha`` t test detects with probability ``power``:
    (t₁₋α/₂ + t_power)·SE. Two SEs is only the significance threshold, found half the time."""
    from scipy.stats import t as student_t  # lazy: scipy loads only where a test or fit runs (the trackers import analysis)

    if not math.isfinite(se) or not df > 0:
        return float("nan")
    return float((student_t.ppf(1 - alpha / 2, df) + student_t.ppf(power, df)) * se)


def ci_half_width(se: float, df: float = math.inf, level: float = 0.95) -> float:
    """Half the width of the ``level`` interval, t·SE on ``df`` degrees of freedom: error bars drawn as
    ±2 SE would claim more than the t test behind the same row (few documents, few df)."""
    from scipy.stats import t as student_t  # lazy: scipy loads only where a test or fit runs (the trackers import analysis)

    return float(student_t.ppf(0.5 + level / 2, df) * se)


def confidence_interval(d: dict, level: float = 0.95) -> tuple[float, float]:
    """``delta ± t·SE`` on the row's degrees of freedom."""
    half = ci_half_width(d["se"], d.get("df", math.inf), level)
    return d["delta"] - half, d["delta"] + half


def effective_clusters(sizes) -> float:
    """Kish's effective number of clusters, (Σn)²/Σn²: unequal documents weigh unequally in a ratio
    over tokens, so a few long ones carry the SE and the t reference must have fewer df."""
    w = np.asarray(sizes, dtype=float)
    return float(w.sum() ** 2 / (w ** 2).sum()) if (w ** 2).sum() > 0 else 0.0


def satterthwaite_df(ses, dfs) -> float:
    """Welch–Satterthwaite df of a sum of independent estimates with these SEs and df."""
    v = np.asarray(ses, dtype=float) ** 2
    dfs = np.asarray(dfs, dtype=float)
    den = float(np.sum(v ** 2 / dfs))
    return float(v.sum() ** 2 / den) if den > 0 else math.inf


def adjust_pvalues(pvalues, method: str | None = None) -> np.ndarray:
    """p-values adjusted within one family (``FAMILIES``): Benjamini–Hochberg (false discovery rate), or
    Holm (family-wise) when the family has fewer than ``HOLM_BELOW`` tests, where BH gains little and
    Holm is exact. NaN (untestable) entries stay NaN and do not count."""
    from scipy.stats import false_discovery_control  # lazy: scipy loads only where a test or fit runs (the trackers import analysis)

    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    m = int(finite.sum())
    if not m:
        return out
    method = method or ("holm" if m < HOLM_BELOW else "bh")
    if method == "bh":
        out[finite] = false_discovery_control(p[finite], method="bh")
        return out
    order = np.argsort(p[finite])
    held = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[finite][order]))
    adjusted = np.empty(m)
    adjusted[order] = held
    out[finite] = adjusted
    return out


def mark_family(rows: list[dict], family: str, alpha: float = 0.05, p: str = "p", prefix: str = "") -> list[dict]:
    """Adjust the ``p`` of ``rows`` as one family and set ``{prefix}p_adj`` and ``{prefix}significant``."""
    if family not in FAMILIES:
        raise ValueError(f"{family!r} is not a declared family of tests (analysis.FAMILIES)")
    adjusted = adjust_pvalues([r[p] for r in rows]) if rows else []
    for r, q in zip(rows, adjusted):
        r[f"{prefix}p_adj"], r[f"{prefix}family"] = float(q), family
        r[f"{prefix}significant"] = bool(math.isfinite(q) and q < alpha)
    return rows


def paired_delta(base: list[float], other: list[float]) -> dict:
    """Mean of ``other − base`` over the same items/sequences with its paired standard error.

    The p-value is McNemar's exact test when both lists are 0/1 item outcomes (only the items that
    changed carry information, and a t test is wrong when few did, e.g. p = NaN when none did), and a
    paired t test on the differences (n − 1 df) otherwise."""
    b, o = np.asarray(base, dtype=float), np.asarray(other, dtype=float)
    if len(b) != len(o) or len(b) < 2:
        raise ValueError(f"paired comparison needs equal lengths ≥ 2, got {len(b)} and {len(o)}")
    diff = o - b
    n = len(diff)
    se = float(diff.std(ddof=1) / math.sqrt(n))
    t, p = t_test(float(diff.mean()), se, n - 1)
    test = "paired t"
    if np.isin(b, (0, 1)).all() and np.isin(o, (0, 1)).all():
        p, test = mcnemar_exact(int((diff > 0).sum()), int((diff < 0).sum())), "McNemar exact"
    return {"delta": float(diff.mean()), "se": se, "t": t, "df": n - 1, "p": p, "n": n, "paired": True,
            "testable": True, "test": test, "mde_80": min_detectable_effect(se, n - 1)}


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (items that flipped either way): the
    binomial(n, ½) tail, doubled (symmetric, so this equals scipy's binomtest at a fraction of its cost)."""
    from scipy.stats import binom  # lazy: scipy loads only where a test or fit runs (the trackers import analysis)

    n = gained + lost
    return 1.0 if n == 0 else float(min(1.0, 2 * binom.cdf(min(gained, lost), n, 0.5)))


def unpaired_delta(base: float, base_se: float, other: float, other_se: float) -> dict:
    """Two independent estimates (no shared items): a normal reference, df unknown and taken as large."""
    se = math.hypot(base_se, other_se)
    t, p = t_test(other - base, se, math.inf)
    return {"delta": other - base, "se": se, "t": t, "df": math.inf, "p": p, "paired": False, "testable": True,
            "test": "unpaired z", "mde_80": min_detectable_effect(se, math.inf)}


def _task_delta(b: dict, o: dict) -> dict:
    """Score change of one task: paired over items when both carry the same item list, else unpaired."""
    if b.get("per_item") and len(b["per_item"]) == len(o.get("per_item", [])) == b["n"]:
        return paired_delta(b["per_item"], o["per_item"])
    return unpaired_delta(b["value"], b["stderr"], o["value"], o["stderr"])


def jackknife_cluster_delta(base_sums, other_sums, counts) -> tuple[float, float]:
    """(Σ other − Σ base) / Σ counts over the same documents, with the jackknife (CR3) cluster-robust SE:
    each document's residual ``s_d − Δ·c_d`` scaled by 1 / (1 − c_d/Σc), its leverage. The plain
    linearised SE (``perplexity.paired_cluster_delta``) is biased low when a few long documents carry
    the ratio; the simulations in tests/test_calibration.py show its t test rejecting 7–10% at no effect."""
    diff = np.asarray(other_sums, dtype=float) - np.asarray(base_sums, dtype=float)
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    if total <= 0 or len(c) < 2:
        return float("nan"), float("nan")
    delta = float(diff.sum() / total)
    resid = (diff - delta * c) / (1 - c / total)
    return delta, float(math.sqrt(float((resid ** 2).sum())) / total)


def clustered_delta(base_sums, other_sums, counts) -> dict:
    """(Σ other − Σ base) / Σ counts over the same documents: jackknife cluster-robust SE
    (``jackknife_cluster_delta``) and Student's t on (effective documents − 1) df (``effective_clusters``);
    fewer than ``MIN_DOCUMENTS`` documents are not tested."""
    delta, se = jackknife_cluster_delta(base_sums, other_sums, counts)
    n = len(counts)
    df = effective_clusters(counts) - 1
    out = {"delta": delta, "se": se, "df": df, "n": n, "paired": True, "test": "paired t, clustered by document"}
    if n < MIN_DOCUMENTS:
        return out | {"t": math.nan, "p": math.nan, "testable": False, "mde_80": math.nan,
                      "reason": f"cannot be tested ({n} documents)"}
    t, p = t_test(delta, se, df)
    return out | {"t": t, "p": p, "testable": True, "mde_80": min_detectable_effect(se, df)}


def heldout_delta(b: dict, o: dict, measure: str = "loss") -> dict:
    """Change of a held-out measure (``loss`` in nats/token or ``bits_per_byte``): paired document by
    document and clustered by document when both results carry the same documents, else unpaired."""
    num, den = ("nats", "tokens") if measure == "loss" else ("bits", "bytes")
    pb, po = b.get("per_document") or {}, o.get("per_document") or {}
    if pb.get(num) and po.get(num) and pb.get(den) == po.get(den) and len(pb[den]) >= 2:
        return clustered_delta(pb[num], po[num], pb[den])
    key = "loss" if measure == "loss" else "bits_per_byte"
    return unpaired_delta(b[key], b.get(f"{key}_se", float("nan")), o[key], o.get(f"{key}_se", float("nan")))


def detectable_change(d: dict, b: dict | None = None, o: dict | None = None) -> float:
    """The minimum detectable effect at 80% power (``min_detectable_effect``). When no item changed, the
    observed paired SE is 0; then the conservative unpaired SE of the two proportions stands in."""
    se, df = d.get("se", float("nan")), d.get("df", math.inf)
    if (not se or not math.isfinite(se)) and b is not None and o is not None and "value" in b:
        n = max(1, b.get("n", 1))
        se = math.sqrt((b["value"] * (1 - b["value"]) + o["value"] * (1 - o["value"])) / n)
    return min_detectable_effect(se, df)


def _gold_bpb_delta(b: dict, o: dict) -> dict | None:
    bb, ob = b.get("per_item_gold_bpb"), o.get("per_item_gold_bpb")
    if not bb or not ob or len(bb) != len(ob) or len(bb) < 2:
        return None
    keep = [i for i, (x, y) in enumerate(zip(bb, ob)) if math.isfinite(x) and math.isfinite(y)]
    return paired_delta([bb[i] for i in keep], [ob[i] for i in keep])


def compare_evals(base: dict, other: dict, alpha: float = 0.05) -> list[dict]:
    """Per held-out split and per task: other − base with SE, p, n and the minimum detectable effect at
    80% power (``mde_80``). Held-out splits: loss and bits per byte, clustered by document (t on effective
    documents − 1 df). Tasks: the headline accuracy (McNemar) and the gold answer's bits per byte (paired
    t), each its own row. The rows are one family (``FAMILIES["vs base"]``): ``significant`` reads the
    adjusted ``p_adj``.
    Refuses (``IncomparableResults``) two evaluations made in another precision, model, data or code."""
    check_comparable(base, other)
    rows = []
    for split, b in base["perplexity"].items():
        o = other["perplexity"].get(split)
        if not o:
            continue
        d = heldout_delta(b, o, "loss")
        # perplexity is exp(loss): its relative change is exp(Δloss) − 1, SE by the delta method
        d["ppl_change_pct"] = 100 * math.expm1(d["delta"])
        d["ppl_change_pct_se"] = 100 * math.exp(d["delta"]) * d["se"]
        rows.append({"measure": f"{split} loss", "kind": "held-out loss", "subject": split, "base": b["loss"],
                     "other": o["loss"], **d, "better_when": "lower"})
        if "bits_per_byte" in b and "bits_per_byte" in o:
            d = heldout_delta(b, o, "bits_per_byte")
            rows.append({"measure": f"{split} bits/byte", "kind": "held-out bits/byte", "subject": split,
                         "base": b["bits_per_byte"], "other": o["bits_per_byte"], **d, "better_when": "lower"})
    for task, b in base.get("tasks", {}).items():
        o = other.get("tasks", {}).get(task)
        if not o:
            continue
        d = _task_delta(b, o)
        rows.append({"measure": f"{task} ({b['metric']})", "kind": "accuracy", "subject": task, "base": b["value"],
                     "other": o["value"], **d, "mde_80": detectable_change(d, b, o), "better_when": "higher"})
        g = _gold_bpb_delta(b, o)
        if g:
            rows.append({"measure": f"{task} (gold bits/byte)", "kind": "gold bits/byte", "subject": task,
                         "base": b["gold_bpb"], "other": o["gold_bpb"], **g, "better_when": "lower"})
    return mark_family(rows, "vs base", alpha)


def group_deltas(base: dict, other: dict, groups: dict[str, list[str]], alpha: float = 0.05) -> list[dict]:
    """Per task group (e.g. domain / general, declared in ``eval.task_groups``): the macro-average over
    its tasks of the base value, the other value and the paired change, for accuracy and for the gold
    answer's bits per byte. Tasks are independent item sets, so SE = √(Σ SE²) / T, on Welch–Satterthwaite
    df; the groups of one comparison are one family (``FAMILIES["task groups vs base"]``)."""
    by_task: dict[tuple[str, str], dict] = {(r["kind"], r["subject"]): r for r in compare_evals(base, other, alpha)}
    rows = []
    for group, tasks in groups.items():
        for kind in ("accuracy", "gold bits/byte"):
            found = [by_task[(kind, t)] for t in tasks if (kind, t) in by_task]
            if not found:
                continue
            delta = float(np.mean([r["delta"] for r in found]))
            se = math.sqrt(sum(r["se"] ** 2 for r in found)) / len(found)
            df = satterthwaite_df([r["se"] for r in found], [r.get("df", math.inf) for r in found])
            t, p = t_test(delta, se, df)
            rows.append({"group": group, "kind": kind, "tasks": len(found), "missing": [t for t in tasks if (kind, t) not in by_task],
                         "n": int(sum(r["n"] for r in found)), "base": float(np.mean([r["base"] for r in found])),
                         "other": float(np.mean([r["other"] for r in found])), "delta": delta, "se": se, "t": t, "df": df,
                         "p": p, "testable": True, "mde_80": min_detectable_effect(se, df),
                         "better_when": "higher" if kind == "accuracy" else "lower"})
    return mark_family(rows, "task groups vs base", alpha)


def per_subject_deltas(base: dict, other: dict, task: str) -> list[dict]:
    """Accuracy change per MMLU subject for one task (items must carry ``item_subjects``)."""
    b, o = base["tasks"].get(task), other["tasks"].get(task)
    if not b or not o or "item_subjects" not in b or b.get("item_subjects") != o.get("item_subjects"):
        return []
    subjects = np.asarray(b["item_subjects"])
    rows = []
    for s in sorted(set(subjects)):
        idx = subjects == s
        rows.append({"subject": s, "n": int(idx.sum()), "base": float(np.mean(np.asarray(b["per_item"])[idx])),
                     "other": float(np.mean(np.asarray(o["per_item"])[idx])),
                     "delta": float(np.mean(np.asarray(o["per_item"])[idx] - np.asarray(b["per_item"])[idx]))})
    return rows


# ---------------------------------------------------------------------------------------- registers
#: How the forgetting axis summarises the registers (``forgetting_score``): see its docstring for why.
FORGETTING_AXIS = "mean register change"


def register_deltas(base: dict, other: dict, alpha: float = 0.05) -> list[dict]:
    """Per held-out register (``forgetting_splits``: the general corpus and each ``data.registers`` set),
    ``other − base``: loss (nats/token) and bits per byte, each paired document by document with its
    clustered SE, t and p (``heldout_delta``). Positive = forgotten. The registers' loss tests are one
    family (``FAMILIES["registers"]``): ``significant`` reads ``loss_p_adj``; a register with fewer than
    ``MIN_DOCUMENTS`` documents is ``testable: False``."""
    rows = []
    for split in forgetting_splits(base):
        b, o = base["perplexity"][split], other.get("perplexity", {}).get(split)
        if not o:
            continue
        loss = heldout_delta(b, o, "loss")
        row = {"register": split.removeprefix("val_"), "split": split, "n": loss.get("n"), "paired": loss["paired"],
               "base_loss": b["loss"], "loss": o["loss"], "loss_delta": loss["delta"], "loss_se": loss["se"],
               "loss_t": loss["t"], "loss_df": loss["df"], "loss_p": loss["p"], "loss_mde_80": loss["mde_80"],
               "testable": loss["testable"]}
        if "bits_per_byte" in b and "bits_per_byte" in o:
            bpb = heldout_delta(b, o, "bits_per_byte")
            row.update(base_bpb=b["bits_per_byte"], bpb=o["bits_per_byte"], bpb_delta=bpb["delta"], bpb_se=bpb["se"],
                       bpb_t=bpb["t"], bpb_df=bpb["df"], bpb_p=bpb["p"])
        rows.append(row)
    mark_family(rows, "registers", alpha, p="loss_p")
    for r in rows:
        r["loss_p_adj"] = r.pop("p_adj")
    return rows


def forgetting_score(base: dict, other: dict, alpha: float = 0.05) -> dict:
    """The forgetting axis of the stability–plasticity plot: the **mean over registers** of the paired
    loss change (nats/token; each register weighs one, however many documents it has), beside the
    **worst register** (the largest change).

    Why the mean is the axis: registers are independent document samples, so its SE is exact,
    √(Σ SE²) / R, and a run cannot look better by trading one register against another unnoticed
    (the worst register shows that). Why not the worst register: the largest of R noisy changes is
    biased upward (it picks whichever register's noise went up) and has no simple SE, so runs ranked by
    it are ranked partly by noise; it is reported with its own paired SE so forgetting concentrated in
    one register (e.g. chat, which an Instruct model's users feel first) is never averaged away.
    With only the general held-out set the mean *is* the general change (the axis before registers).
    The mean and the worst register are ``mean_heldout_change`` over ``forgetting_splits``: the same
    numbers the mitigation recommendation reads.
    """
    rows = {r["split"]: r for r in register_deltas(base, other, alpha)}
    summary = mean_heldout_change(base, other, list(rows), alpha)
    if not rows:
        return {"axis": FORGETTING_AXIS, "registers": 0, "mean": math.nan, "mean_se": math.nan, "mean_p": math.nan,
                "worst_register": None, "worst": math.nan, "worst_se": math.nan, "worst_p": math.nan, "forgotten": []}
    worst = rows[summary["worst"]]
    return {"axis": FORGETTING_AXIS, "registers": summary["splits"], "mean": summary["delta"],
            "mean_se": summary["se"], "mean_p": summary["p"], "worst_register": worst["register"],
            "mean_mde_80": summary["mde_80"], "mean_testable": summary["testable"],
            "worst": summary["worst_delta"], "worst_se": summary["worst_se"], "worst_p": worst["loss_p"],
            "worst_p_adj": worst["loss_p_adj"],
            "forgotten": [r["register"] for r in rows.values() if r["significant"] and r["loss_delta"] > 0]}


def stability_plasticity(base: dict, runs: dict[str, dict]) -> list[dict]:
    """For each run: domain gain (base − run domain loss; higher is better), general change
    (run − base general loss; lower is better) and the forgetting score over every held-out register
    (``forgetting_score``: the mean change, and the worst register), with paired SEs."""
    rows = []
    for name, ev in runs.items():
        cmp = {r["measure"]: r for r in compare_evals(base, ev)}
        dom, gen = cmp.get("val_domain loss"), cmp.get("val_general loss")
        if not dom or not gen:
            continue
        forgetting = forgetting_score(base, ev)
        rows.append({"run": name, "domain_gain": -dom["delta"], "domain_gain_se": dom["se"],
                     "general_change": gen["delta"], "general_change_se": gen["se"],
                     "domain_loss": dom["other"], "general_loss": gen["other"],
                     "forgetting": forgetting["mean"], "forgetting_se": forgetting["mean_se"],
                     "forgetting_registers": forgetting["registers"], "worst_register": forgetting["worst_register"],
                     "worst_change": forgetting["worst"], "worst_change_se": forgetting["worst_se"]})
    return rows


def pareto_front(rows: list[dict], gain: str = "domain_gain", cost: str = "general_change") -> list[str]:
    """Runs no other run beats on both axes (more gain and less cost, at least one strictly)."""
    front = []
    for r in rows:
        dominated = any(o[gain] >= r[gain] and o[cost] <= r[cost] and (o[gain] > r[gain] or o[cost] < r[cost])
                        for o in rows if o is not r)
        if not dominated:
            front.append(r["run"])
    return front


# ------------------------------------------------------------------------- control: generic vs domain
#: How a change reads once the control run is beside it (``effect_reading``).
DOMAIN_SPECIFIC, GENERIC, INCONCLUSIVE, NOT_DETECTED, CANNOT_TEST = (
    "domain-specific", "generic", "inconclusive", "not detected", "cannot be tested")


def effect_class(vs_base: dict, vs_control: dict, better_when: str, control_vs_base: dict | None = None) -> str:
    """The class of one measure given ``continued − base``, ``continued − control`` and the control's own
    change ``control − base`` (each with its family-adjusted ``significant``): *domain-specific* only
    where continued − control is significant; *generic* only where continued − base is significant and
    the control's own change is significant in the same direction (evidence that any training does it,
    not merely no evidence of a difference); *inconclusive* where continued − base is significant but
    the control's change is not; *not detected* otherwise; *cannot be tested* where either comparison is
    not testable. Its words: ``readings.effect_words``."""
    if not (vs_base.get("testable", True) and vs_control.get("testable", True)):
        return CANNOT_TEST
    if vs_control["significant"]:
        return DOMAIN_SPECIFIC
    if vs_base["significant"]:
        own = control_vs_base
        if own is not None and own["significant"] and np.sign(own["delta"]) == np.sign(vs_base["delta"]):
            return GENERIC
        return INCONCLUSIVE
    return NOT_DETECTED


def _keyed_task_rows(a: dict, b: dict, groups: dict[str, list[str]], alpha: float) -> dict[tuple, dict]:
    """``compare_evals`` and ``group_deltas`` rows of b − a by (kind, subject) / ("group", group, kind)."""
    rows = {(r["kind"], r["subject"]): r for r in compare_evals(a, b, alpha)}
    rows.update({("group", g["group"], g["kind"]): g for g in group_deltas(a, b, groups, alpha)})
    return rows


def control_deltas(base: dict, continued: dict, control: dict, groups: dict[str, list[str]] | None = None,
                   alpha: float = 0.05) -> list[dict]:
    """Every measure three ways, each paired (per item for tasks — the items are identical across
    checkpoints —, per document for held-out text, macro-averaged for task groups): ``continued − base``,
    ``control − base`` and ``continued − control``, each with SE, p and the p adjusted within its column
    (each column is one family, ``FAMILIES``), and its reading (``effect_class``). Keys: kind, subject
    (a task, a split or a group), measure, better_when; last, ``reading inputs`` (the three comparisons the
    reading's words are built from: ``readings.with_reading_words``)."""
    groups = groups or {}
    vs_base = _keyed_task_rows(base, continued, groups, alpha)
    ctl_base = _keyed_task_rows(base, control, groups, alpha)
    vs_ctl = _keyed_task_rows(control, continued, groups, alpha)
    keys = [k for k in vs_base if k in ctl_base and k in vs_ctl]
    for family, found in (("continued − base", vs_base), ("control − base", ctl_base), ("continued − control", vs_ctl)):
        mark_family([found[k] for k in keys], family, alpha)
    rows = []
    for key in keys:
        cb, kb, cc = vs_base[key], ctl_base[key], vs_ctl[key]
        is_group = key[0] == "group"
        kind, subject = (key[2], key[1]) if is_group else key
        measure = (f"{subject} group: mean {kind} over {cb['tasks']} tasks" if is_group else cb["measure"])
        reading = effect_class(cb, cc, cb["better_when"], kb)
        rows.append({"kind": f"group {kind}" if is_group else kind, "subject": subject, "measure": measure,
                     "better_when": cb["better_when"], "n": cb["n"],
                     "base": cb["base"], "continued": cb["other"], "control": kb["other"],
                     "continued − base": cb["delta"], "continued − base SE": cb["se"], "continued − base df": cb.get("df", math.inf),
                     "continued − base p": cb["p"],
                     "continued − base p_adj": cb["p_adj"],
                     "control − base": kb["delta"], "control − base SE": kb["se"], "control − base df": kb.get("df", math.inf),
                     "control − base p": kb["p"],
                     "control − base p_adj": kb["p_adj"],
                     "continued − control": cc["delta"], "continued − control SE": cc["se"],
                     "continued − control p": cc["p"], "continued − control p_adj": cc["p_adj"],
                     "MDE vs control (80% power)": cc.get("mde_80", math.nan),
                     "testable": bool(cb.get("testable", True) and cc.get("testable", True)),
                     "paired": bool(cb.get("paired", True) and cc.get("paired", True)),
                     "reading": reading, "reading inputs": (cb, cc, kb)})
    return rows


# ---------------------------------------------------------------------- mitigation: which, at what cost
def forgetting_splits(ev: dict) -> list[str]:
    """The held-out splits where forgetting is measured: every one but the domain's (general text and
    each register)."""
    return [s for s in ev.get("perplexity", {}) if s != "val_domain"]


def mean_heldout_change(a: dict, b: dict, splits: list[str], alpha: float = 0.05) -> dict:
    """``b − a`` held-out loss averaged over ``splits`` (macro mean: each register counts once, whatever
    its size), paired per document within each split; splits hold different documents, so their errors
    add: SE = √(Σ SE²) / S, on Welch–Satterthwaite df. Also the worst split (largest increase) and its own
    change. Not testable when any split is not (too few documents)."""
    parts = {s: heldout_delta(a["perplexity"][s], b["perplexity"][s]) for s in splits
             if s in a.get("perplexity", {}) and s in b.get("perplexity", {})}
    if not parts:
        return {"delta": math.nan, "se": math.nan, "t": math.nan, "df": math.nan, "p": math.nan, "significant": False,
                "testable": False, "mde_80": math.nan, "splits": 0, "worst": None, "worst_delta": math.nan,
                "worst_se": math.nan}
    delta = float(np.mean([d["delta"] for d in parts.values()]))
    se = math.sqrt(sum(d["se"] ** 2 for d in parts.values())) / len(parts)
    df = satterthwaite_df([d["se"] for d in parts.values()], [d["df"] for d in parts.values()])
    testable = all(d["testable"] for d in parts.values())
    t, p = t_test(delta, se, df) if testable else (math.nan, math.nan)
    worst = max(parts, key=lambda s: parts[s]["delta"])
    return {"delta": delta, "se": se, "t": t, "df": df, "p": p, "significant": bool(math.isfinite(p) and p < alpha),
            "testable": testable, "mde_80": min_detectable_effect(se, df) if testable else math.nan,
            "splits": len(parts), "worst": worst, "worst_delta": parts[worst]["delta"], "worst_se": parts[worst]["se"]}


def _significant(d: dict | None, alpha: float) -> bool:
    """Significant on the family-adjusted p where the row has one (``mark_family``), else the raw p."""
    p = d.get("p_adj", d.get("p", math.nan)) if d else math.nan
    return bool(math.isfinite(p) and p < alpha)


def mitigation_table(base: dict, variants: dict[str, dict], reference: str, groups: dict[str, list[str]] | None = None,
                     domain_group: str = "domain", alpha: float = 0.05) -> list[dict]:
    """Per variant, against the base and against ``reference`` (the unmitigated variant at the same
    budget), paired over the shared held-out documents and task items: forgetting (mean held-out loss
    change over ``forgetting_splits``), held-out domain loss, and the domain task group's accuracy and
    gold bits per byte. Each comparison: delta, SE, p; every comparison against the reference is in one
    family (``FAMILIES["mitigation"]``), so ``significant`` reads its adjusted p."""
    ref = variants[reference]
    splits = forgetting_splits(base)
    group = {domain_group: (groups or {}).get(domain_group, [])} if (groups or {}).get(domain_group) else {}
    rows = []
    for name, ev in variants.items():
        dom_vs_ref = heldout_delta(ref["perplexity"]["val_domain"], ev["perplexity"]["val_domain"])
        g = {r["kind"]: r for r in group_deltas(ref, ev, group, alpha)} if group else {}
        row = {"variant": name, "tokens": ev.get("tokens"), "reference": name == reference,
               "forgetting vs base": mean_heldout_change(base, ev, splits, alpha),
               "forgetting vs reference": mean_heldout_change(ref, ev, splits, alpha),
               "domain loss vs base": heldout_delta(base["perplexity"]["val_domain"], ev["perplexity"]["val_domain"]),
               "domain loss vs reference": dom_vs_ref,
               "domain accuracy vs reference": g.get("accuracy"), "domain gold bpb vs reference": g.get("gold bits/byte")}
        rows.append(row)
    vs_reference = [r[k] for r in rows if not r["reference"] for k in MITIGATION_TESTS if r[k] is not None]
    mark_family(vs_reference, "mitigation", alpha)
    return rows


#: The comparisons with the reference that make up the mitigation family.
MITIGATION_TESTS = ("forgetting vs reference", "domain loss vs reference", "domain accuracy vs reference",
                    "domain gold bpb vs reference")


def domain_costs(row: dict, alpha: float) -> list[tuple[str, dict]]:
    """The significant domain costs of a variant against the reference, as (measure, comparison): the
    held-out domain loss up, the domain group's accuracy down, its gold bits/byte up (empty: none
    detected). Their words: ``readings.domain_cost_words``."""
    costs = []
    d = row["domain loss vs reference"]
    if _significant(d, alpha) and d["delta"] > 0:
        costs.append(("held-out domain loss", d))
    a = row["domain accuracy vs reference"]
    if _significant(a, alpha) and a["delta"] < 0:
        costs.append(("domain-group accuracy", a))
    b = row["domain gold bpb vs reference"]
    if _significant(b, alpha) and b["delta"] > 0:
        costs.append(("domain-group gold bits/byte", b))
    return costs


def _forgetting_reading(row: dict, reducers: list[dict], worse: list[dict]) -> str:
    return ("reference" if row["reference"] else "reduces forgetting" if row in reducers
            else "more forgetting" if row in worse else "not separable from the reference")


def mitigation_decision(base: dict, variants: dict[str, dict], reference: str | None,
                        groups: dict[str, list[str]] | None = None, domain_group: str = "domain",
                        alpha: float = 0.05) -> dict:
    """Which mitigation reduces forgetting, at what cost in domain gain — decided from paired comparisons
    with the unmitigated ``reference`` variant (same budget, same held-out documents and items).

    Forgetting is the mean held-out loss change over every non-domain split (``mean_heldout_change``);
    a variant *reduces* it when its forgetting minus the reference's is significantly negative (adjusted
    within the mitigation family, ``FAMILIES``). Among
    those, the one with no detected domain cost and the largest reduction is recommended (or, when all
    cost something, the largest reduction, with its cost named). Every variant not separable from it
    (paired difference not significant) is named, and when no variant differs from the reference the
    data cannot separate them.

    Returns the decision as data: ``status`` ("no variants", "no reference" or "compared"); when
    compared, the ``rows`` of ``mitigation_table`` (each with its ``reading`` and ``domain costs``), the
    reference's ``forgetting`` against the base over ``splits``, the ``others``, the variants that reduce
    forgetting (``reducers``) and that forget more (``worse``), the recommended row (``best``, None when
    no variant reduces forgetting), its ``costs``, the reducers it cannot be separated from with their
    paired difference (``tied``) and those that reduce it only at a domain cost (``paid``). The words:
    ``readings.recommend_mitigation``."""
    if not variants:
        return {"status": "no variants", "reference": reference}
    if reference is None or reference not in variants:
        return {"status": "no reference", "reference": reference}
    rows = mitigation_table(base, variants, reference, groups, domain_group, alpha)
    by = {r["variant"]: r for r in rows}
    others = [r for r in rows if not r["reference"]]
    reducers = [r for r in others if _significant(r["forgetting vs reference"], alpha)
                and r["forgetting vs reference"]["delta"] < 0]
    worse = [r for r in others if _significant(r["forgetting vs reference"], alpha)
             and r["forgetting vs reference"]["delta"] > 0]
    for r in rows:
        r["reading"] = _forgetting_reading(r, reducers, worse)
        r["domain costs"] = [] if r["reference"] else domain_costs(r, alpha)
    f_ref = by[reference]["forgetting vs base"]
    out = {"status": "compared", "reference": reference, "rows": rows, "splits": forgetting_splits(base),
           "forgetting": f_ref, "reference forgets": _significant(f_ref, alpha) and f_ref["delta"] > 0,
           "others": others, "reducers": reducers,
           "worse": worse, "best": None, "costs": [], "tied": [], "paid": []}
    if reducers:
        free = [r for r in reducers if not domain_costs(r, alpha)]
        best = max(free or reducers, key=lambda r: -r["forgetting vs reference"]["delta"])
        tied = []
        for r in reducers:
            if r is best:
                continue
            diff = mean_heldout_change(variants[best["variant"]], variants[r["variant"]], forgetting_splits(base), alpha)
            if not diff["significant"]:
                tied.append((r, diff))
        paid = [r["variant"] for r in reducers if r not in free] if free and len(free) < len(reducers) else []
        out.update(best=best, costs=domain_costs(best, alpha), tied=tied, paid=paid)
    return out
