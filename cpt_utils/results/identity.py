"""Run and checkpoint identity: what a checkpoint's trajectory, a finished run, the data a run trains on
and the scored weights are, as fingerprints the stored checkpoints and evaluations record.

The parameters are passed in (an ``ExperimentParams``); nothing here reads the config layer, so every
reader of a run's results (reports, trackers, variants, branches, training) can stand above this room.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..comparability import differences
from ..errors import DataError
from ..packing import GENERAL_REPLAY_SPLIT, replay_split_name

if TYPE_CHECKING:
    from ..config import ExperimentParams

LOOSE_TRAIN_KEYS = ("token_budget", "milestones", "eval_every_tokens", "checkpoint_every_tokens",
                    "eval_max_sequences", "in_loop_eval", "log_every_steps", "resume", "trackers", "num_threads",
                    "decay_branch_fraction", "decay_branch_tasks", "decay_branch_registers",
                    "continue_with")  # branches: cpt_utils.branches


def training_data_identity(manifest: dict, split: str, replay_sources: Iterable[str] = ()) -> str:
    """What identifies the data a run trains on, for its trajectory fingerprint: the prepared data's
    content hash, plus the control split's own hash for a control run and each register replay split's
    hash for a run whose ``train.replay_mixture`` names registers (``content_hash`` covers the standard
    splits only, so adding a control or a replay source to a parameter file never orphans the main run).
    The train data's identity is that of the data as first prepared (``growth.data_identity``): growing
    appends train shards and keeps it."""
    root = manifest.get("lineage", {}).get("root") or manifest["content_hash"]
    if split == "train":
        identity = root
    elif split not in manifest.get("splits", {}):
        raise DataError(f"the prepared data has no split '{split}': add a control: section to the parameter "
                        "file and prepare the data again (notebook 02 or `cpt prepare`)")
    else:
        identity = f"{root}:{split}:{manifest['splits'][split]['content_hash']}"
    for source in replay_sources:
        name = replay_split_name(source)
        if name == GENERAL_REPLAY_SPLIT:
            continue  # the general replay split is one of the standard splits
        if name not in manifest.get("splits", {}):
            raise DataError(f"the prepared data has no replay split '{name}' for train.replay_mixture source "
                            f"'{source}': prepare the data again with these parameters (notebook 02 or `cpt prepare`)")
        identity += f":{name}:{manifest['splits'][name]['content_hash']}"
    return identity


def model_identity(params: ExperimentParams) -> dict:
    """The model section as an identity sees it: ``attn_implementation: auto`` counts as ``sdpa``. ``auto``
    only picks the training step's kernel for the machine it runs on (as ``precision: auto`` picks the
    precision, which identities record as requested), evaluation runs sdpa under both, and a run trained
    under ``sdpa`` — the default before ``auto`` existed — must still resume and keep its results."""
    model = params.model.model_dump(mode="json")
    if model.get("attn_implementation") == "auto":
        model["attn_implementation"] = "sdpa"
    return model


def _trajectory_parts(params: ExperimentParams, data_dir: Path) -> tuple[dict, int, dict, str]:
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    train = {k: v for k, v in params.train.model_dump(mode="json").items() if k not in LOOSE_TRAIN_KEYS}
    # a control run: its split's hash too; a replay mixture: each register replay split's hash
    data = training_data_identity(manifest, train.pop("train_split"), params.train.replay_weights())
    return model_identity(params), params.seed, train, data


def trajectory_fingerprint(params: ExperimentParams, data_dir: Path) -> str:
    """What must not change between a checkpoint and its continuation: the base model, the seed, the
    training hyperparameters except the budget and logging cadence, and the *content* of the data (not
    the preprocessing parameters: re-preparing identical data must not orphan a run; growing it only
    appends, so it keeps its identity: ``growth.data_identity``)."""
    blob = json.dumps(list(_trajectory_parts(params, data_dir)), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def trajectory_record(params: ExperimentParams, data_dir: Path) -> dict:
    """The fingerprint's parts, readable, one key per parameter (``train.lr``, ``model.dtype``, ``seed``,
    ``training data``): a checkpoint keeps it so a refused resume can say *which* part moved."""
    model, seed, train, data = _trajectory_parts(params, data_dir)
    return {**{f"model.{k}": v for k, v in model.items()}, "seed": seed,
            **{f"train.{k}": v for k, v in train.items()}, "training data": data}


def trajectory_changes(checkpoint: dict, now: dict) -> list[str]:
    """The parts of the trajectory that moved since ``checkpoint`` was written, as 'part (then vs now)'
    against ``now`` (a ``trajectory_record``); empty for a checkpoint from before it recorded them."""
    recorded = checkpoint.get("trajectory")
    return differences(recorded, now, strict=True) if isinstance(recorded, dict) else []


def run_fingerprint(params: ExperimentParams, data_dir: Path) -> str:
    """Identity of a *finished* run: the same trajectory trained to the same token budget."""
    return f"{trajectory_fingerprint(params, data_dir)}-{params.train.token_budget}"


def weights_identity(checkpoint: dict | None, model_id: str) -> str:
    """What identifies the scored weights: the base model's id, or a checkpoint's trajectory, step and
    save time (a retrained checkpoint of the same name has another time)."""
    if checkpoint is None:
        return f"base:{model_id}"
    return f"{checkpoint.get('trajectory_fingerprint')}:{checkpoint.get('step')}:{checkpoint.get('time')}"
