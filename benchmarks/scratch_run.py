"""A probe's throwaway training run: the parameter file's recipe with no in-loop evaluation, no
checkpoints and a fresh start, trained in a temporary folder that is gone afterwards."""

from __future__ import annotations

import tempfile
from pathlib import Path

SCRATCH = {"eval_every_tokens": None, "in_loop_eval": False, "checkpoint_every_tokens": None, "resume": "never"}


def scratch_params(params, **train):
    """``params`` with ``train`` overrides and nothing written beyond the training itself."""
    return params.model_copy(update={"train": params.train.model_copy(update={**train, **SCRATCH})})


def scratch_fit(params, data: Path, steps: int | None = None):
    """Set up and fit ``params`` (from ``scratch_params``) on ``data`` for ``steps`` (None: the whole
    budget) in a temporary run folder; the trained ``TrainState`` and its metrics rows."""
    import json

    from cpt_utils.train import fit, setup

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        state = setup(params, run, Path(data))
        fit(state, progress=False, stop_after_steps=steps)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return state, rows
