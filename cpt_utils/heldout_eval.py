"""The held-out part of an evaluation, computed once per weights: during training where the weights are
at hand, stored beside them, and reused by the checkpoint's evaluation.

Training already evaluates held-out text at its milestones and at the end (notebook 03's curves), on
exactly the weights that notebook 04 evaluates again from the saved checkpoints. When the in-loop
evaluation scores the whole held-out sets with the evaluation's own settings (``train.eval_max_sequences:
null``), its result *is* the checkpoint's held-out result: it is written into the checkpoint folder
(``heldout.json``; the step-0 point, the base model, into ``runs/<run>/heldout/base.json``) under
``results.heldout_fingerprint`` and ``evaluate.evaluate_run`` reuses it instead of scoring the same
weights twice. A result whose settings differ (precision, data, code, batch) is ignored, never reused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import atomic_write_json
from .packing import PackedSplit, heldout_splits
from .perplexity import perplexity

if TYPE_CHECKING:
    from transformers import PreTrainedModel

HELDOUT_FILE = "heldout.json"


def score_heldout(params, model: "PreTrainedModel", tokenizer, data_dir: Path, precision: str) -> dict:
    """Every held-out split (``eval.heldout_splits``; None: all) scored as the evaluation scores it
    (``eval.perplexity_max_sequences``, ``eval.batch_size``): loss, bits per byte, their
    document-clustered SEs and the per-document sums."""
    return {split: perplexity(model, PackedSplit(Path(data_dir) / split), params.eval.perplexity_max_sequences,
                              params.eval.batch_size, params.train.per_document_attention, precision, tokenizer)
            for split in heldout_splits(Path(data_dir), params.eval.heldout_splits)}


def base_heldout_path(run_dir: Path) -> Path:
    """Where a run's step-0 (base model) held-out result is kept."""
    return Path(run_dir) / "heldout" / "base.json"


def checkpoint_heldout_path(checkpoint_path: str | Path) -> Path:
    return Path(checkpoint_path) / HELDOUT_FILE


def store_heldout(path: Path, key: str, results: dict, seconds: float) -> None:
    atomic_write_json(path, {"heldout_fingerprint": key, "seconds": seconds, "perplexity": results})


def stored_heldout(path: Path, key: str) -> dict | None:
    """The stored held-out results at ``path`` when they were made with settings ``key``; else None."""
    if not Path(path).is_file():
        return None
    try:
        stored = json.loads(Path(path).read_text())
    except ValueError:
        return None
    return stored["perplexity"] if stored.get("heldout_fingerprint") == key else None


def metrics_row(results: dict) -> dict:
    """The in-loop row of ``metrics.jsonl`` from held-out results: loss, SE, perplexity and bits per byte
    of each split (``<split>_loss`` …)."""
    row = {}
    for name, r in results.items():
        row.update({f"{name}_loss": r["loss"], f"{name}_loss_se": r["loss_se"], f"{name}_ppl": r["ppl"]})
        if "bits_per_byte" in r:
            row.update({f"{name}_bpb": r["bits_per_byte"], f"{name}_bpb_se": r["bits_per_byte_se"]})
    return row
