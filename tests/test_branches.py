"""WSD decay branches: each starts from its milestone's weights, optimizer state and data position,
decays the LR to its minimum, is evaluated and reused, and the token-efficiency fit uses their ends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpt_utils import analysis, analysis_report, branches
from cpt_utils.checkpointing import list_checkpoints
from cpt_utils.evaluate import evaluate_run
from cpt_utils.train import train

from .numerics import exact

STEP = 256  # tokens per step of the tiny parameters (4 × 64)


def _params(tiny_params, **train_updates):
    """The tiny recipe (WSD, milestones at 1k/2k/3k/4k tokens, branches of 1/4), evaluated on held-out
    text only (the task suite's set-up costs more than everything else here; which suite a branch gets is
    tested on its parameters)."""
    ev = tiny_params.eval.model_copy(update={"offline_tasks": [], "task_groups": {}, "perplexity_max_sequences": 8})
    return tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update=train_updates), "eval": ev})


def _run(tmp_path: Path, data_dir: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "data").symlink_to(data_dir)  # the session's prepared tiny data, read only
    return run


def _rows(path: Path) -> list[dict]:
    return [r for r in map(json.loads, (path / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]


def test_a_branch_continues_the_milestone_exactly_when_nothing_decays(tiny_params, data_dir, tmp_path):
    """With min_lr_ratio 1 a branch is the main run's own continuation: equal losses step for step prove
    it resumed the milestone's weights, data position *and* optimizer state (a fresh AdamW would take a
    different second step)."""
    params = _params(exact(tiny_params), min_lr_ratio=1.0, decay_branch_tasks=False, milestones=[3072, 4096])
    run = _run(tmp_path, data_dir)
    train(params, run, progress=False)
    table = branches.run_branches(params, run, progress=False)
    main = _rows(run)
    (third,) = table.itertuples()
    assert (third.from_tokens, third.branch_tokens) == (3072, 768)
    rows = _rows(Path(third.path))
    assert [r["step"] for r in rows] == [13, 14, 15]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in main[12:15]], rel=1e-6)


def test_branches_decay_to_the_minimum_are_reused_and_feed_the_fit(tiny_params, data_dir, tmp_path, capsys):
    params = _params(tiny_params)
    run = _run(tmp_path, data_dir)
    train(params, run, progress=False)
    kept = [c["tokens"] for c in list_checkpoints(run) if (Path(c["path"]) / "state").is_dir()]
    assert kept == [1024, 2048, 3072, 4096]  # milestones keep their optimizer state for their branches
    main_lrs = [r["lr"] for r in _rows(run)]
    assert main_lrs[4:14] == pytest.approx([1e-3] * 10)  # WSD: stable after warmup until its own decay

    table = branches.run_branches(params, run, progress=False)
    assert list(table.status) == ["computed"] * 3
    assert list(table.tokens) == [1024 + 256, 2048 + 512, 3072 + 768]
    for branch in table.itertuples():
        lrs = [r["lr"] for r in _rows(Path(branch.path))]
        assert lrs[-1] == pytest.approx(1e-3 * params.train.min_lr_ratio)  # ends at the floor
        assert all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[0] < 1e-3
        ev = json.loads(next((Path(branch.path) / "evals").glob("*.json")).read_text())
        assert ev["tokens"] == branch.tokens and ev["perplexity"]["val_general"]["loss"] == branch.val_general_loss
        assert ev["perplexity"]["val_domain"]["loss"] == branch.val_domain_loss
        # only the splits the reports read at a branch's end: the registers (here news) are not scored there
        assert list(ev["perplexity"]) == ["val_domain", "val_general"]
    assert [c["tokens"] for c in list_checkpoints(run) if (Path(c["path"]) / "state").is_dir()] == [4096]

    capsys.readouterr()
    again = branches.run_branches(params, run, progress=True)
    assert list(again.status) == ["reused"] * 3 and "decay branch from" not in capsys.readouterr().out
    assert list(again.val_domain_loss) == list(table.val_domain_loss)

    # the fit uses the annealed points: base, three branch ends (milestone + branch tokens), the final
    evaluate_run(params, run, progress=False)
    points, design = analysis_report.fit_points(run, params)
    assert list(points.tokens) == [0, 1280, 2560, 3840, 4096]
    assert list(points.val_domain_loss[1:4]) == list(table.val_domain_loss)
    assert points.source[4].startswith("main run's final checkpoint") and "decay branch from tokens-000000001024" in points.source[1]
    assert "Fitted: 4 annealed points" in design and "Too few" not in design
    fitted = analysis_report.fits(points, params)
    assert fitted["power law"].n_points == 4 and fitted["log-linear"].ok
    # the same annealed models as evaluations: their covariance is measured from the shared documents
    # (the tiny run has too few of them, so it is assumed from the SEs, and said so), and 4 points for 3
    # parameters leave too few residual degrees of freedom for an interval
    annealed = analysis_report.annealed_evals(params, run)
    assert [e["tokens"] for e in annealed.values()] == list(points.tokens)
    documents = annealed["base"]["perplexity"]["val_domain"]["documents"]
    measured = analysis_report.fits(points, params, annealed)["power law"]
    assert measured.ok and not measured.intervals and "residual degree" in measured.interval_note
    assert measured.covariance == ("measured from per-document sums" if documents >= analysis.MIN_DOCUMENTS
                                   else f"assumed correlation {analysis.ASSUMED_POINT_CORRELATION} (unmeasured)")
    # the paper's test compares annealed points only: its midpoint is a branch end, never a milestone
    assert analysis.paper_finding(annealed)["mid_tokens"] in (1280, 2560, 3840)

    # a branch whose milestone lost its optimizer state cannot run, and says why
    longer = params.model_copy(update={"train": params.train.model_copy(update={"decay_branch_fraction": 0.5})})
    stale = branches.run_branches(longer, run, progress=False)
    assert list(stale.status) == ["not run"] * 3 and "no optimizer state" in stale.note[0]


def test_too_few_annealed_points_or_no_branches_are_said(tiny_params, data_dir, tmp_path):
    params = _params(tiny_params, milestones=[2048, 4096], decay_branch_tasks=False)
    run = _run(tmp_path, data_dir)
    train(params, run, progress=False)
    branches.run_branches(params, run, progress=False)
    evaluate_run(params, run, progress=False, include_base=True)
    points, design = analysis_report.fit_points(run, params)
    assert list(points.tokens) == [0, 2560, 4096] and "Too few points" in design
    assert not analysis_report.fits(points, params)["power law"].ok
    plain = _params(tiny_params, schedule="cosine", decay_branch_fraction=None)
    points, design = analysis_report.fit_points(run, plain)
    assert "in-loop evaluations of one cosine run" in design and len(points) == len(analysis_report.loss_points(run))


def test_branch_parameters_resume_the_milestone_and_choose_the_suite(tiny_params):
    milestone = {"name": "tokens-000000002048", "tokens": 2048, "tokens_per_step": 256, "path": "/runs/x/checkpoints/m"}
    branch = branches.branch_params(tiny_params, milestone)
    tp = branch.train
    assert (tp.token_budget, tp.resume, tp.continue_with, tp.milestones) == (2048 + 512, milestone["path"], "decay", [])
    assert branch.eval.offline_tasks == tiny_params.eval.offline_tasks  # decay_branch_tasks: true in tiny.yaml
    no_tasks = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={"decay_branch_tasks": False})})
    assert branches.branch_params(no_tasks, milestone).eval.offline_tasks == []
    assert branch.eval.heldout_splits == ["val_domain", "val_general"] and tiny_params.eval.heldout_splits is None
    registers = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={"decay_branch_registers": True})})
    assert branches.branch_params(registers, milestone).eval.heldout_splits is None  # every prepared split
    chosen = tiny_params.model_copy(update={"eval": tiny_params.eval.model_copy(update={"heldout_splits": ["val_domain"]})})
    assert branches.branch_params(chosen, milestone).eval.heldout_splits == ["val_domain"]  # never more than asked
    tiny_step = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={"decay_branch_fraction": 0.01})})
    assert branches.branch_params(tiny_step, milestone).train.token_budget == 2048 + 256  # at least one step
