"""WSD decay branches: one annealed model per milestone, so the token-efficiency fit is not bent by
the schedule.

The in-loop points of a single cosine run mix two effects: more tokens *and* a falling learning rate;
the last points drop because the run anneals, and a power law fitted to them describes the schedule.
A warmup-stable-decay run holds the LR constant, and from each milestone checkpoint a short branch
continues the same data stream while the LR decays to ``min_lr`` (Hägele et al. 2024; Hu et al. 2024,
MiniCPM): each branch's end is an annealed model at ``milestone + branch`` tokens, like the final model
of a run with that budget, at a fraction of the cost of one run per budget.

A branch trains into ``runs/<run>/branches/<milestone>/`` with ``train.train`` itself, resuming the
milestone's weights, optimizer state, RNG and sampler (``train.resume`` = the milestone checkpoint,
``train.continue_with: decay``), for ``ceil(decay_branch_fraction × milestone tokens)`` tokens rounded
up to whole steps, then is evaluated with ``evaluate.evaluate_run`` (the domain and general held-out splits, the ones read
at a branch's end — every split with ``train.decay_branch_registers``; the task suite too with
``train.decay_branch_tasks``). A finished, current branch is reused like a variant. The
milestone keeps its optimizer state for this (``keep_state``) until its branch has trained; then the
state is dropped (≈ 12 bytes per parameter), so changing ``decay_branch_fraction`` afterwards needs the
main run trained again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .checkpointing import list_checkpoints
from .config import ExperimentParams, derive
from .evaluate import evaluate_run
from .results import branch_dir, branch_points, final_eval, finished_variant, run_fingerprint
from .train import train

COLUMNS = ["branch", "status", "from_tokens", "branch_tokens", "tokens", "val_domain_loss", "val_domain_loss_se",
           "val_general_loss", "path", "note"]


def branch_params(params: ExperimentParams, checkpoint: dict) -> ExperimentParams:
    """The branch's parameters: the main run's, resumed from ``checkpoint`` and decaying to ``min_lr``
    over ``decay_branch_fraction`` of its tokens (whole optimizer steps, at least one): ``config.derive``."""
    return derive(params, "branch", checkpoint=checkpoint)


def _trained(bparams: ExperimentParams, bdir: Path, data_dir: Path) -> dict | None:
    expected = run_fingerprint(bparams, data_dir)
    return next((c for c in reversed(list_checkpoints(bdir)) if c.get("final") and c.get("params_fingerprint") == expected), None)


def run_branches(params: ExperimentParams, run_dir: str | Path, progress: bool = True):
    """Train and evaluate the decay branch of every branch point (``branch_points``), reusing finished
    ones; return one row per branch: milestone, status (reused, computed, or why it could not run),
    tokens before and in the branch, the annealed held-out losses and its folder."""
    import pandas as pd  # lazy: a light command importing branches must not pay for pandas

    run_dir = Path(run_dir)
    data_dir = run_dir / "data"
    rows = []
    for checkpoint in branch_points(params, run_dir):
        bparams, bdir = branch_params(params, checkpoint), branch_dir(run_dir, checkpoint["name"])
        row = {"branch": checkpoint["name"], "from_tokens": checkpoint["tokens"],
               "branch_tokens": bparams.train.token_budget - checkpoint["tokens"], "tokens": bparams.train.token_budget,
               "path": str(bdir), "note": ""}
        ev = finished_variant(bparams, bdir, data_dir)  # a current final checkpoint and evaluation
        status = "reused" if ev else "computed"
        if ev is None:
            state = Path(checkpoint["path"]) / "state"
            if _trained(bparams, bdir, data_dir) is None and not state.is_dir():
                rows.append({**row, "status": "not run", "note": (
                    f"{checkpoint['name']} has no optimizer state to branch from (trained before "
                    "train.decay_branch_fraction was set, or its earlier branch used other settings); train the "
                    "main run again (resume: never) to branch from it")})
                continue
            if progress:
                print(f"decay branch from {checkpoint['name']}: {row['branch_tokens']:,} tokens, LR → "
                      f"{params.train.lr * params.train.min_lr_ratio:.3g} ({params.train.decay_shape})", flush=True)
            train(bparams, bdir, data_dir=data_dir, progress=progress)
            evaluate_run(bparams, bdir, data_dir=data_dir, progress=progress, include_base=False)
            ev = final_eval(bdir)
            final = _trained(bparams, bdir, data_dir)
            shutil.rmtree(Path(final["path"]) / "state", ignore_errors=True)  # a branch is never resumed
            shutil.rmtree(state, ignore_errors=True)  # the milestone's optimizer state has served its purpose
        p = ev["perplexity"]
        nan = {"loss": float("nan"), "loss_se": float("nan")}  # a split eval.heldout_splits leaves out
        domain, general = p.get("val_domain", nan), p.get("val_general", nan)
        rows.append({**row, "status": status, "val_domain_loss": domain["loss"], "val_domain_loss_se": domain["loss_se"],
                     "val_general_loss": general["loss"]})
    return pd.DataFrame(rows, columns=COLUMNS)
