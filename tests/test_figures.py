"""Every figure the notebooks draw has a title and labelled axes, on a real (tiny) run."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from cpt_utils import analysis, analysis_report, explore, preprocess_report, training_report  # noqa: E402
from cpt_utils.results import final_eval, load_evals
from cpt_utils.evaluate import evaluate_run  # noqa: E402
from cpt_utils.plots import unlabelled_axes  # noqa: E402
from cpt_utils.preprocess import prepare_data  # noqa: E402
from cpt_utils.train import train  # noqa: E402
from cpt_utils.variants import run_variants  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from cpt_utils.config import load_params
    from cpt_utils.paths import REPO_ROOT

    params = load_params(REPO_ROOT / "params" / "tiny.yaml")
    params = params.model_copy(update={"eval": params.eval.model_copy(update={"limit": 6})})
    run = tmp_path_factory.mktemp("run")
    stats = explore.explore(params, run)
    manifest = prepare_data(params, run, progress=False)
    train(params, run, progress=False)
    evaluate_run(params, run, progress=False)
    variants = run_variants(params, run, progress=False)
    return params, run, stats, manifest, variants


def test_every_figure_is_labelled(tiny_run):
    params, run, stats, manifest, variants = tiny_run
    train_rows, eval_rows = training_report.load_metrics(run)
    points = analysis_report.loss_points(run)
    fitted = analysis_report.fits(points, params)
    evals = load_evals(run)
    base, final = evals["base"], final_eval(run)
    figures = {
        "lengths": explore.fig_lengths(stats), "quality": explore.fig_quality(stats),
        "top terms": explore.fig_top_terms(stats), "topics": explore.fig_topics(stats),
        "filters": preprocess_report.fig_filters(manifest),
        "composition": preprocess_report.fig_composition(preprocess_report.sequence_composition(run)),
        "loss/lr": training_report.fig_loss_lr(train_rows, params.train.milestones),
        "validation": training_report.fig_validation(eval_rows), "throughput": training_report.fig_throughput(train_rows),
        "loss curves": analysis_report.fig_loss_curves(points, fitted, params.train.milestones),
        "residuals": analysis_report.fig_fit_residuals(points, fitted),
        "tasks": analysis_report.fig_task_curves(evals, params.train.milestones),
        "subjects": analysis_report.fig_subjects(analysis_report.subject_table(base, final)),
        "stability": analysis_report.fig_stability_plasticity(analysis_report.variant_rows(base, final, variants, params)),
    }
    problems = {name: unlabelled_axes(fig) for name, fig in figures.items() if unlabelled_axes(fig)}
    assert problems == {}
    assert all(any(ax.has_data() for ax in fig.axes) or name in ("subjects", "residuals") for name, fig in figures.items())


def test_the_label_check_catches_an_unlabelled_figure():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert unlabelled_axes(fig) == ["axes 0: no title", "axes 0: no x label", "axes 0: no y label"]


def test_register_error_bars_are_the_t_intervals_of_the_rows(tiny_run):
    """Error bars drawn as ±2 SE would promise more than the t test on few documents reads: each bar's
    half-length is t(0.975, df)·SE of its row, wider than 2 SE when the set has few documents."""
    params, run, *_ = tiny_run
    base, final = load_evals(run)["base"], final_eval(run)
    rows = analysis.register_deltas(base, final)
    fig = analysis_report.fig_register_deltas(base, final, None, params)
    from matplotlib.container import ErrorbarContainer

    bars = next(c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer))
    segments = bars.lines[2][0].get_segments()
    drawn = [abs(seg[1][1] - seg[0][1]) / 2 for seg in segments]
    expected = [analysis.ci_half_width(r["loss_se"], r["loss_df"]) for r in rows]
    assert drawn == pytest.approx(expected, rel=1e-6)
    assert all(h > 2 * r["loss_se"] for h, r in zip(drawn, rows) if r["loss_df"] < 30)
