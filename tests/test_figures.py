"""Every figure the notebooks draw has a title and labelled axes, on a real (tiny) run."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from cpt_utils import analysis, analysis_report, explore, headline, preprocess_report, training_report  # noqa: E402
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
        "stability": analysis_report.fig_stability_plasticity(
            analysis_report.variant_rows(base, final, variants, params, control=final_eval(run / "control"))),
        "control": analysis_report.fig_control(headline.compare_to_control(run, params.eval.task_groups)),
        "registers": analysis_report.fig_register_deltas(base, final),
    }
    drawn = {name: fig for name, fig in figures.items() if fig is not None}
    problems = {name: unlabelled_axes(fig) for name, fig in drawn.items() if unlabelled_axes(fig)}
    assert problems == {}
    assert all(any(ax.has_data() for ax in fig.axes) for fig in drawn.values())
    # the figures this run has data for are drawn (a figure without data is None, never an empty frame)
    assert {"lengths", "loss/lr", "loss curves", "tasks", "stability", "registers"} <= set(drawn)


def test_a_figure_without_data_is_not_drawn():
    import pandas as pd

    assert analysis_report.fig_subjects(pd.DataFrame()) is None
    assert analysis_report.fig_control([]) is None
    assert analysis_report.fig_stability_plasticity([]) is None
    assert analysis_report.fig_task_curves({}) is None
    reason = analysis_report.subjects_reason({"tasks": {"arc_easy_offline": {}}})
    assert "no MMLU task" in reason and reason.endswith(".") and "\n" not in reason


def test_the_stability_plot_shows_the_control_and_the_front(tiny_run):
    params, run, *_, variants = tiny_run
    base, final = load_evals(run)["base"], final_eval(run)
    rows = analysis_report.variant_rows(base, final, variants, params, control=final)  # any evaluation stands in
    assert [r["run"] for r in rows][-2:] == ["main run", analysis_report.CONTROL_RUN]
    fig = analysis_report.fig_stability_plasticity(rows)
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("control" in t for t in legend) and any("main run" in t for t in legend)
    labels = [t for t in ax.texts if t.get_text() in {r["run"] for r in rows}]
    assert len(labels) == len(rows)
    assert any("better" in t.get_text() for t in ax.texts)


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


# ----------------------------------------------------------------------------- the headline forest plot
def _estimate(delta, half, significant):
    return {"delta": delta, "low": delta - half, "high": delta + half, "significant": significant}


FOREST_ROWS = [
    {"group": "domain tasks", "measure": "arc_easy_offline (gold bits/byte)", "unit": "bits/byte", "better": "lower",
     "vs base": _estimate(-0.05, 0.02, True), "vs control": _estimate(-0.01, 0.02, False)},
    {"group": "general tasks", "measure": "hellaswag (gold bits/byte)", "unit": "bits/byte", "better": "lower",
     "vs base": _estimate(0.01, 0.01, False), "vs control": _estimate(0.02, 0.01, True)},
    {"group": "held-out text: domain", "measure": "val_domain (bits/byte)", "unit": "bits/byte", "better": "lower",
     "vs base": _estimate(-0.1, 0.01, True), "vs control": None},
    {"group": "domain tasks", "measure": "arc_easy_offline (accuracy)", "unit": "accuracy (points)", "better": "higher",
     "vs base": _estimate(2.0, 3.0, False), "vs control": _estimate(1.0, 3.0, False)},
]


def _markers(ax):
    from cpt_utils.forest import MARKER_GID

    return [line for line in ax.lines if line.get_gid() == MARKER_GID]


def test_the_forest_plot_draws_one_estimate_per_row_and_panel():
    from cpt_utils.forest import fig_forest

    fig = fig_forest(FOREST_ROWS, title="Headline")
    assert unlabelled_axes(fig) == []
    assert fig._suptitle.get_text() == "Headline"
    axes = fig.axes
    assert len(axes) == 4  # 2 units × 2 panels: never two units on one axis
    titles = [ax.get_title(loc="left") for ax in axes]
    assert titles == ["continued − base: bits/byte", "continued − control: bits/byte",
                      "continued − base: accuracy (points)", "continued − control: accuracy (points)"]
    assert "← better" in axes[0].get_xlabel() and "better →" in axes[2].get_xlabel()
    counts = [len(_markers(ax)) for ax in axes]
    assert counts == [3, 2, 1, 1]  # the row without a control estimate draws nothing in that panel
    filled = [sum(m.get_markerfacecolor() != "white" for m in _markers(ax)) for ax in axes]
    assert filled == [2, 1, 0, 0]
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert "arc_easy_offline (gold bits/byte)" in labels and "DOMAIN TASKS" in labels
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("significant" in t for t in legend) and any("not significant" in t for t in legend)
    assert axes[0].get_shared_x_axes().joined(axes[0], axes[1])
    assert not axes[0].get_shared_x_axes().joined(axes[0], axes[2])


def test_the_forest_plot_without_control_or_rows():
    from cpt_utils.forest import fig_forest

    rows = [{**r, "vs control": None} for r in FOREST_ROWS]
    fig = fig_forest(rows)
    assert len(fig.axes) == 2 and [len(_markers(ax)) for ax in fig.axes] == [3, 1]
    assert fig_forest([]) is None
    small, big = fig_forest(rows[:1]).get_figheight(), fig.get_figheight()
    assert big > small  # height grows with the rows


def test_figure_svg_scales_to_the_page():
    import matplotlib.pyplot as plt

    from cpt_utils.plots import figure_svg

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    svg = figure_svg(fig)
    assert svg.startswith("<svg") and "<?xml" not in svg and "DOCTYPE" not in svg
    head = svg[:svg.index(">")]
    assert 'style="max-width:100%;height:auto"' in head and "height=" not in head.replace("height:auto", "")
