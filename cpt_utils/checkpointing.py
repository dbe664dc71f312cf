"""Checkpoints that are either complete or invisible, and enough state to resume exactly.

Layout of ``runs/<run>/checkpoints/tokens-<12 digits>/``::

    model/             save_pretrained (safetensors + config + tokenizer): what evaluation loads
    state/             accelerator.save_state: optimizer, RNG of every process, the sampler position
    checkpoint.json    written last; its presence is what makes the folder a checkpoint

The folder is assembled as ``<name>.tmp`` and renamed, so a crash mid-save leaves only a ``.tmp`` that
is ignored (and cleaned up next time). Only the newest checkpoint keeps ``state/`` (the optimizer is
2× the model); older milestone checkpoints keep ``model/`` for evaluation.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import publish

if TYPE_CHECKING:
    from accelerate import Accelerator


def checkpoint_name(tokens: int) -> str:
    return f"tokens-{tokens:012d}"


def list_checkpoints(run_dir: str | Path) -> list[dict]:
    """Complete checkpoints of a run, sorted by tokens seen (each dict has ``path`` added)."""
    root = Path(run_dir) / "checkpoints"
    found = []
    for folder in sorted(root.glob("tokens-*")) if root.is_dir() else []:
        meta = folder / "checkpoint.json"
        if folder.suffix == ".tmp" or not meta.is_file():
            continue
        info = json.loads(meta.read_text())
        info["path"] = str(folder)
        found.append(info)
    return sorted(found, key=lambda c: c["tokens"])


def latest_resumable(run_dir: str | Path) -> dict | None:
    """The newest checkpoint that still holds the training state."""
    for info in reversed(list_checkpoints(run_dir)):
        if (Path(info["path"]) / "state").is_dir():
            return info
    return None


def save_checkpoint(accelerator: "Accelerator", model, tokenizer, run_dir: Path, info: dict) -> Path:
    """Save model + training state atomically; every process must call it (save_state syncs)."""
    root = Path(run_dir) / "checkpoints"
    final = root / checkpoint_name(info["tokens"])
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "state"), safe_serialization=True)
    state_dict = accelerator.get_state_dict(model)  # a collective under FSDP/ZeRO-3: every rank calls it
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(tmp / "model", state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(tmp / "model")
        (tmp / "checkpoint.json").write_text(json.dumps({**info, "name": final.name, "time": time.time()}, indent=1))
        publish(tmp, final)
        _prune(root, keep=final)
    accelerator.wait_for_everyone()
    return final


def _prune(root: Path, keep: Path) -> None:
    """Drop the training state of older checkpoints, and older non-milestone checkpoints entirely."""
    for folder in root.glob("tokens-*"):
        if folder == keep:
            continue
        if folder.suffix == ".tmp":
            shutil.rmtree(folder, ignore_errors=True)
            continue
        meta = folder / "checkpoint.json"
        info = json.loads(meta.read_text()) if meta.is_file() else {}
        if not info.get("milestone") and not info.get("final"):
            shutil.rmtree(folder, ignore_errors=True)
        elif not info.get("keep_state"):  # a decay branch's starting point keeps it (cpt_utils.branches)
            shutil.rmtree(folder / "state", ignore_errors=True)


def load_checkpoint_model(checkpoint_dir: str | Path, dtype: str = "float32"):
    """The model of a checkpoint, for evaluation (a plain transformers folder)."""
    import torch  # lazy: listing checkpoints (results, reports) must not import torch
    from transformers import AutoModelForCausalLM  # lazy: listing checkpoints (results, reports) must not import torch

    return AutoModelForCausalLM.from_pretrained(Path(checkpoint_dir) / "model", dtype=getattr(torch, dtype))
