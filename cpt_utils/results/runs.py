"""A run's folders, whether a run is finished, its annealed points and the loaders every report reads.

The main run lives in ``runs/<run>/``; a variant in ``variants/<name>/``, the control in ``control/``
and a decay branch in ``branches/<milestone>/`` under it. "Finished" means a final checkpoint of the
current recipe and budget (``run_fingerprint``) whose evaluation is current (``eval_fingerprint``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..checkpointing import list_checkpoints
from .identity import run_fingerprint, trajectory_fingerprint, weights_identity
from .store import current_results, eval_fingerprint, final_tasks, read_current, scores_final_tasks

if TYPE_CHECKING:
    from ..config import ExperimentParams


# ------------------------------------------------------------------------------------------ folders
def variant_dir(run_dir: str | Path, name: str) -> Path:
    return Path(run_dir) / "variants" / name


def control_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "control"


def branch_dir(run_dir: str | Path, milestone: str) -> Path:
    return Path(run_dir) / "branches" / milestone


# ------------------------------------------------------------------------------------------ loaders
def load_evals(run_dir: str | Path) -> dict[str, dict]:
    """The *current* ``evals/*.json`` of a run by checkpoint name, sorted by tokens: a result whose
    checkpoint was retrained or removed is left out (``results.stale_reason``)."""
    return current_results(Path(run_dir))


def final_eval(run_dir: str | Path) -> dict | None:
    """The current evaluation with the most tokens (None without one)."""
    evals = load_evals(run_dir)
    return list(evals.values())[-1] if evals else None


def curve_table(run_dir: str | Path):
    """Tokens seen vs held-out losses and task scores, one row per evaluated checkpoint."""
    import pandas as pd  # lazy: reading a result must not import pandas

    rows = []
    for name, r in load_evals(run_dir).items():
        row = {"checkpoint": name, "tokens": r["tokens"]}
        for split, p in r["perplexity"].items():
            row[f"{split}_loss"], row[f"{split}_loss_se"] = p["loss"], p["loss_se"]
            row[f"{split}_bpb"] = p.get("bits_per_byte")
        for task, t in r["tasks"].items():
            row[task], row[f"{task}_se"] = t["value"], t["stderr"]
            if "gold_bpb" in t:
                row[f"{task}_gold_bpb"], row[f"{task}_gold_bpb_se"] = t["gold_bpb"], t["gold_bpb_se"]
        rows.append(row)
    return pd.DataFrame(rows)


def load_variant_evals(run_dir: str | Path) -> dict[str, dict]:
    """Final evaluation of every variant found under ``run_dir/variants`` (those with one), by name."""
    found = {p.name: final_eval(p) for p in sorted((Path(run_dir) / "variants").glob("*")) if p.is_dir()}
    return {name: ev for name, ev in found.items() if ev}


def matched_control_evals(run_dir: str | Path) -> list[tuple[dict, dict]]:
    """(continued, control) evaluation pairs at the checkpoints both runs evaluated (same token count),
    in token order; empty without a control run."""
    main, control = load_evals(run_dir), load_evals(Path(run_dir) / "control")
    by_tokens = {ev["tokens"]: ev for name, ev in control.items() if name != "base"}
    return [(ev, by_tokens[ev["tokens"]]) for name, ev in main.items() if name != "base" and ev["tokens"] in by_tokens]


# ------------------------------------------------------------------------------------ is it finished
def finished_variant(vparams: ExperimentParams, vdir: Path, data_dir: Path) -> dict | None:
    """The variant's final evaluation when its final checkpoint *and* its evaluation are current (same
    training trajectory and budget, same evaluation settings and data); ``None`` otherwise.

    Checked here so a finished variant costs neither a model load nor a tokenizer load; a stale result
    (the variant's parameters changed in the file) is not reused.
    """
    final = [c for c in list_checkpoints(vdir) if c.get("final")]
    if not final or not (data_dir / "manifest.json").is_file():
        return None
    expected = run_fingerprint(vparams, data_dir)
    if final[-1].get("params_fingerprint") != expected:
        return None
    result = vdir / "evals" / f"{final[-1]['name']}.json"
    if not result.is_file():
        return None
    ev = json.loads(result.read_text())
    weights = weights_identity(final[-1], "")  # a checkpoint's identity: the base model's id is not used
    key = eval_fingerprint(vparams, data_dir, weights, final=scores_final_tasks(vparams, final[-1]))
    return ev if ev.get("eval_fingerprint") == key else None


def same_as_main(params: ExperimentParams, vparams: ExperimentParams, run_dir: Path, data_dir: Path) -> dict | None:
    """The main run's final evaluation when a variant *is* the main recipe at the main budget (typically
    ``no_mitigation`` when the variants train as long as the main run); ``None`` otherwise.

    Such a variant would retrain the main run's trajectory step for step (milestones, in-loop evaluation
    and decay branches do not change it: ``LOOSE_TRAIN_KEYS``), so its result is the main run's
    final checkpoint, evaluated with the same settings. Reusing it saves a whole training run."""
    if not (data_dir / "manifest.json").is_file():
        return None
    if run_fingerprint(vparams, data_dir) != run_fingerprint(params, data_dir):
        return None
    # the main run's folder and settings (a variant overrides train only; config.derive drops final_tasks)
    ev = finished_variant(params, Path(run_dir), data_dir)
    drop = set(final_tasks(params))
    if ev is None or not drop:
        return ev
    # the variant's record has no final tasks: they are scored only where the headline is read
    return {**ev, "tasks": {t: v for t, v in ev["tasks"].items() if t not in drop},
            "evaluated_with": {k: v for k, v in (ev.get("evaluated_with") or {}).items() if k != "final_tasks"}}


def finished_control(cparams: ExperimentParams, cdir: Path, data_dir: Path) -> dict[str, dict] | None:
    """The control's evaluations by checkpoint when its training is finished and *every* checkpoint's
    evaluation is current (the control is compared with the main run at each milestone); else ``None``."""
    if finished_variant(cparams, cdir, data_dir) is None:
        return None
    found = {}
    for checkpoint in list_checkpoints(cdir):
        weights = weights_identity(checkpoint, "")  # a checkpoint's identity: the base model's id is not used
        key = eval_fingerprint(cparams, data_dir, weights, final=scores_final_tasks(cparams, checkpoint))
        ev = read_current(cdir, checkpoint["name"], key)
        if ev is None:
            return None
        found[checkpoint["name"]] = ev
    return found


def main_final(params: ExperimentParams, run_dir: str | Path) -> dict | None:
    """The main run's final checkpoint at its current budget, if trained."""
    run_dir = Path(run_dir)
    if not (run_dir / "data" / "manifest.json").is_file():
        return None
    expected = run_fingerprint(params, run_dir / "data")
    return next((c for c in list_checkpoints(run_dir) if c.get("final") and c.get("params_fingerprint") == expected), None)


# ---------------------------------------------------------------------------------- annealed points
def branch_points(params: ExperimentParams, run_dir: str | Path) -> list[dict]:
    """The checkpoints of this run's trajectory a branch starts from: every milestone before the final
    one (the final checkpoint is annealed by the run's own decay), and the final one too when the
    schedule never decays (``constant``)."""
    run_dir = Path(run_dir)
    if not params.train.decay_branch_fraction or not (run_dir / "data" / "manifest.json").is_file():
        return []
    trajectory = trajectory_fingerprint(params, run_dir / "data")
    current = [c for c in list_checkpoints(run_dir) if c.get("trajectory_fingerprint") == trajectory]
    last = max((c["tokens"] for c in current if c.get("final")), default=None)
    return [c for c in current if (c.get("milestone") and not c.get("final"))
            or (c.get("final") and c["tokens"] == last and params.train.schedule == "constant")]


def _annealed_row(ev: dict, source: str) -> dict:
    out = {"tokens": ev["tokens"], "source": source, "checkpoint": ev["checkpoint"]}
    for split, p in ev["perplexity"].items():
        out[f"{split}_loss"], out[f"{split}_loss_se"] = p["loss"], p["loss_se"]
    return out


def annealed_points(params: ExperimentParams, run_dir: str | Path):
    """Held-out losses of the annealed models against tokens: the base model (tokens 0), each finished
    branch's end (tokens = milestone + branch tokens), and the main run's final checkpoint when its
    schedule decays (wsd or cosine: annealed by its own decay). One row each with its ``source``."""
    import pandas as pd  # lazy: reading a result must not import pandas

    run_dir = Path(run_dir)
    rows = []
    main = load_evals(run_dir)
    if "base" in main:
        rows.append(_annealed_row(main["base"], "base model"))
    for checkpoint in branch_points(params, run_dir):
        ev = final_eval(branch_dir(run_dir, checkpoint["name"]))
        if ev is not None:
            rows.append(_annealed_row(ev, f"decay branch from {checkpoint['name']} ({checkpoint['tokens']:,} + "
                                          f"{ev['tokens'] - checkpoint['tokens']:,} tokens)"))
    final = main_final(params, run_dir)
    if final is not None and final["name"] in main and params.train.schedule != "constant":
        rows.append(_annealed_row(main[final["name"]],
                                  f"main run's final checkpoint (annealed by its own {params.train.schedule} decay)"))
    frame = pd.DataFrame(rows)
    return frame.sort_values("tokens").reset_index(drop=True) if len(frame) else frame
