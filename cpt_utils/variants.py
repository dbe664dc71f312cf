"""Mitigation variants and the control run: training runs that share the prepared data, each evaluated
like the main run.

A variant differs from the main recipe in one knob (replay ratio, peak LR, L2 pull toward the initial
weights…) and trains into ``runs/<run>/variants/<name>/`` with its own metrics, checkpoints and evals, so
a finished variant is reused and a new variant added to the parameter file is the only one that runs.
The control run (``control:``) is the main recipe and budget on text outside the domain, in
``runs/<run>/control/``: what it changes too is generic, not domain-specific (``headline.compare_to_control``).
"""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import atomic_write_json
from .checkpointing import latest_resumable, list_checkpoints
from .config import ExperimentParams, derive
from .evaluate import evaluate_run
from .results import (control_dir, final_eval, finished_control, finished_variant, same_as_main,
                      trajectory_changes, trajectory_fingerprint, trajectory_record, variant_dir)
from .train import train

COLUMNS = ["variant", "description", "status", "checkpoint", "tokens", "val_domain_loss", "val_general_loss", "path"]


def _fresh_if_changed(vparams: ExperimentParams, vdir: Path, data_dir: Path, name: str, progress: bool) -> ExperimentParams:
    """A variant whose hyperparameters were edited in the file is retrained from the base model: its old
    checkpoints belong to another trajectory (resuming them would be refused as a data mismatch)."""
    old = latest_resumable(vdir) or (list_checkpoints(vdir) or [None])[-1]
    if old is None or old.get("trajectory_fingerprint") == trajectory_fingerprint(vparams, data_dir):
        return vparams
    if progress:
        moved = trajectory_changes(old, trajectory_record(vparams, data_dir))
        print(f"variant {name}: its parameters changed since {old['name']} was trained"
              f"{' (' + '; '.join(moved) + ')' if moved else ''}; retraining from the base model")
    return vparams.model_copy(update={"train": vparams.train.model_copy(update={"resume": "never"})})


def _drop_borrowed_evals(vdir: Path) -> None:
    """Remove evaluations a variant borrowed from the main run (``same_as_main``)."""
    for path in (vdir / "evals").glob("*.json") if (vdir / "evals").is_dir() else []:
        try:
            borrowed = "same_as" in json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if borrowed:
            path.unlink()


def run_variants(params: ExperimentParams, run_dir: str | Path, progress: bool = True):
    """Train and evaluate every variant in ``params.variants`` (skipping finished ones); return one row
    per variant: name, description, status ("reused", "computed" when training or evaluation ran, or the
    main run's final checkpoint for a variant that is the main recipe at the main budget),
    final checkpoint, tokens, held-out losses and its folder. Full evaluations:
    ``results.load_variant_evals(run_dir)``."""
    import pandas as pd  # lazy: a light command importing variants must not pay for pandas

    run_dir = Path(run_dir)
    data_dir = run_dir / "data"
    rows = []
    for name, spec in params.variants.items():
        vparams = derive(params, "variant", name)
        vdir = variant_dir(run_dir, name)
        ev = finished_variant(vparams, vdir, data_dir)
        status = "reused" if ev else "computed"
        main = None if ev else same_as_main(params, vparams, run_dir, data_dir)
        _drop_borrowed_evals(vdir)  # a main-run result recorded earlier is rewritten or no longer applies
        if main is not None:  # the main recipe at the main budget: its evaluation, recorded as the variant's
            atomic_write_json(vdir / "evals" / f"{main['checkpoint']}.json", main | {"same_as": "main run"})
            ev, status = main, "the main run's final checkpoint (same recipe and budget)"
        if progress:
            print(f"variant {name} ({status if ev else 'training'}): {spec.description or spec.train}", flush=True)
        if ev is None:
            vparams = _fresh_if_changed(vparams, vdir, data_dir, name, progress)
            train(vparams, vdir, data_dir=data_dir, progress=progress)
            evaluate_run(vparams, vdir, data_dir=data_dir, progress=progress, include_base=False)
            ev = final_eval(vdir)
        rows.append({"variant": name, "description": spec.description, "status": status,
                     "checkpoint": ev["checkpoint"], "tokens": ev["tokens"],
                     "val_domain_loss": ev["perplexity"]["val_domain"]["loss"],
                     "val_general_loss": ev["perplexity"]["val_general"]["loss"], "path": str(vdir)})
    return pd.DataFrame(rows, columns=COLUMNS)


# ------------------------------------------------------------------------------------------ control
CONTROL_COLUMNS = ["run", "description", "corpus", "status", "checkpoints", "tokens", "val_domain_loss",
                   "val_general_loss", "path"]


def run_control(params: ExperimentParams, run_dir: str | Path, progress: bool = True):
    """Train and evaluate the control run (``params.control``) into ``runs/<run>/control/``: the main
    recipe and budget on the split ``control``, evaluated at the same milestones on the same tasks and
    held-out sets. Reused when finished and current; retrained from the base model when the recipe or
    the control's text changed. Returns a one-row table (empty without ``control:``)."""
    import pandas as pd  # lazy: a light command importing variants must not pay for pandas

    if params.control is None:
        return pd.DataFrame(columns=CONTROL_COLUMNS)
    run_dir = Path(run_dir)
    data_dir, cdir = run_dir / "data", control_dir(run_dir)
    cparams = derive(params, "control")
    evals = finished_control(cparams, cdir, data_dir)
    status = "reused" if evals else "computed"
    if progress:
        print(f"control run ({status if evals else 'training'}): the main recipe on {params.control.corpus!r} text",
              flush=True)
    if evals is None:
        cparams = _fresh_if_changed(cparams, cdir, data_dir, "control", progress)
        train(cparams, cdir, data_dir=data_dir, progress=progress)
        evaluate_run(cparams, cdir, data_dir=data_dir, progress=progress, include_base=False)
    ev = final_eval(cdir)
    row = {"run": "control", "description": params.control.description, "corpus": params.control.corpus,
           "status": status, "checkpoints": len(list_checkpoints(cdir)), "tokens": ev["tokens"],
           "val_domain_loss": ev["perplexity"]["val_domain"]["loss"],
           "val_general_loss": ev["perplexity"]["val_general"]["loss"], "path": str(cdir)}
    return pd.DataFrame([row], columns=CONTROL_COLUMNS)
