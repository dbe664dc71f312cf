"""Every child run's parameters from the main run's: a mitigation variant, the control, a decay branch.

One function, so what a child inherits and what a short comparison run drops (``SHORT_RUN_TRAIN``: no
intermediate milestones, in-loop evaluations or extra checkpoints) is written once.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from .load import ParamsError
from .schema import GENERAL_SOURCE, SHORT_RUN_TRAIN, ExperimentParams

ChildKind = Literal["variant", "control", "branch"]

#: The held-out splits a decay branch's end is scored on unless ``train.decay_branch_registers``: the ones
#: the reports read there (the token-efficiency fit, the branch table, the annealed loss curves).
BRANCH_HELDOUT_SPLITS = ("val_domain", "val_general")


def _child(params: ExperimentParams, suffix: str, train: dict[str, Any], short: bool,
           eval_update: dict[str, Any] | None = None) -> ExperimentParams:
    """The main run's parameters, ``short`` of intermediate points if asked, with ``train`` over them,
    no variants of its own, and named ``<run>.<suffix>``."""
    data = params.model_dump()
    if short:
        data["train"].update(SHORT_RUN_TRAIN)
    data["train"].update(train)
    if eval_update:
        data["eval"].update(eval_update)
    data["variants"] = {}
    data["run_name"] = f"{params.run_name}.{suffix}"
    return ExperimentParams.model_validate(data)


def _without_final_tasks(params: ExperimentParams) -> dict[str, Any]:
    """A child's ``eval`` without ``final_tasks`` (and their ``task_limits``): they are scored only where the
    headline is read (the base model, the main and control runs' final checkpoints), not in variants or branches."""
    final = set(params.eval.final_tasks) - set(params.eval.offline_tasks)
    return {"final_tasks": [], "task_limits": {t: n for t, n in params.eval.task_limits.items() if t not in final}}


def derive(params: ExperimentParams, kind: ChildKind, name: str | None = None,
           checkpoint: dict | None = None) -> ExperimentParams:
    """The full parameters of a child run of ``params``.

    ``variant`` (``name``): a short comparison run with the variant's ``train`` overrides.
    Variants and branches drop ``eval.final_tasks``; the control keeps them (its final checkpoint is read
    beside the main run's).
    ``control``: the main run's recipe, budget, milestones and evaluation, trained on the split
    ``control`` instead of the domain's ``train`` (short only when ``control.every_milestone`` is off:
    loose keys, the control's trajectory is the same either way).
    ``branch`` (``checkpoint``): the main run resumed from a milestone checkpoint and decaying to
    ``min_lr`` over ``decay_branch_fraction`` of its tokens (whole optimizer steps, at least one).
    """
    if kind == "variant":
        if name not in params.variants:
            raise ParamsError(f"variants.{name}: no such variant; defined: {sorted(params.variants)}")
        return _child(params, str(name), dict(params.variants[name].train), short=True,
                      eval_update=_without_final_tasks(params))
    if kind == "control":
        if params.control is None:
            raise ParamsError("control: not set in the parameter file; there is no control run")
        # never its own in-loop points, even when compared at every milestone: nothing reads them, and
        # its step-0 point would score the base model again
        return _child(params, "control", {"train_split": "control", "in_loop_eval": False},
                      short=not params.control.every_milestone)
    if kind == "branch" and checkpoint is not None:
        tp, per_step = params.train, checkpoint["tokens_per_step"]
        steps = max(1, math.ceil(tp.decay_branch_fraction * checkpoint["tokens"] / per_step))
        train = {"token_budget": checkpoint["tokens"] + steps * per_step, "resume": checkpoint["path"],
                 "continue_with": "decay"}
        evaluation = _without_final_tasks(params) if tp.decay_branch_tasks else {
            "offline_tasks": [], "hub_tasks": [], "final_tasks": [], "task_limits": {}, "task_groups": {}}
        if not tp.decay_branch_registers:  # a branch's end is read for its domain and general losses only
            asked = params.eval.heldout_splits
            evaluation["heldout_splits"] = [s for s in BRANCH_HELDOUT_SPLITS if asked is None or s in asked]
        branch = _child(params, f"branch-{checkpoint['name']}", train, short=True, eval_update=evaluation)
        branch.source_path = params.source_path
        return branch
    raise ParamsError(f"derive: unknown child kind {kind!r} (or a branch without its checkpoint)")


def replay_sources(params: ExperimentParams) -> list[str]:
    """Every replay source the main run or any variant draws from (``general`` always first): what
    preprocessing packs, so a variant can change the mixture without preparing the data again."""
    found = dict.fromkeys([GENERAL_SOURCE, *params.train.replay_weights()])
    for variant in params.variants.values():
        mixture = variant.train.get("replay_mixture")
        if isinstance(mixture, dict):
            found.update(dict.fromkeys(s for s, w in mixture.items() if isinstance(w, (int, float)) and w > 0))
    return list(found)
