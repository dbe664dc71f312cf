"""Contamination check: does any evaluation item's text appear in what the model is trained on?

The test is the GPT-3 one: an item is flagged when any of its 13-token windows also occurs in the
training shards: every split a run of the experiment trains on (domain train, general replay, the control's
text and each register's replay split; ``training_splits``). Windows are hashed, and the shards are scanned with
vectorised rolling hashes, so the check streams through hundreds of millions of tokens shard by shard.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .packing import PackedSplit
from .results import eval_fingerprint
from .tasks import item_texts as task_item_texts

WINDOW = 13
_BASE = np.uint64(1_000_003)


def _window_hashes(ids: np.ndarray) -> np.ndarray:
    """Polynomial hashes (mod 2^64) of every length-13 window of a 1-D token array."""
    ids = ids.astype(np.uint64)
    if len(ids) < WINDOW:
        return np.empty(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = np.zeros(len(ids) - WINDOW + 1, dtype=np.uint64)
        for j in range(WINDOW):
            h = h * _BASE + ids[j:len(ids) - WINDOW + 1 + j]
    return h


def item_texts(task_file: Path) -> list[str]:
    """The text an item contributes (question and answers; the task folder knows each task's row shape)."""
    return task_item_texts(task_file.parent, task_file.stem)


def training_splits(data_dir: Path) -> list[str]:
    """The prepared splits some run of this experiment trains on: ``train`` (the main run and the
    variants), ``replay`` (general replay), ``control`` (the control run) and each ``replay_<register>``
    (a replay mixture); an item found in any of them was seen by a run the reports compare."""
    names = ["train", "replay", "control"] + sorted(p.name for p in Path(data_dir).glob("replay_*"))
    return [n for n in names if (Path(data_dir) / n / "split.json").is_file()]


def contamination_key(params, data_dir: Path) -> str:
    """What a contamination report depends on: the evaluation settings and held-out data
    (``results.eval_fingerprint``) and the content of *every* split scanned (``training_splits``), so
    adding a control or a register's replay split rescans instead of reusing a report that never saw it."""
    manifest_path = Path(data_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    splits = manifest.get("splits", {})
    scanned = {name: (splits.get(name) or {}).get("content_hash") for name in training_splits(data_dir)}
    blob = json.dumps([eval_fingerprint(params, data_dir), manifest.get("content_hash"), scanned, WINDOW], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def contamination(task_dir: Path, data_dir: Path, tokenizer, splits: list[str] | None = None) -> dict:
    """Per task: items whose 13-token windows occur in the training shards (count, share, examples, and
    the splits scanned: ``splits``, default ``training_splits(data_dir)``)."""
    splits = training_splits(data_dir) if splits is None else list(splits)
    task_items: dict[str, list[np.ndarray]] = {}
    for task_file in sorted(Path(task_dir).glob("*.jsonl")):
        encoded = tokenizer(item_texts(task_file), add_special_tokens=False)["input_ids"]
        task_items[task_file.stem] = [_window_hashes(np.asarray(ids)) for ids in encoded]
    wanted = np.unique(np.concatenate([h for hs in task_items.values() for h in hs] or [np.empty(0, np.uint64)]))
    seen = np.empty(0, dtype=np.uint64)
    for split in splits:
        path = Path(data_dir) / split
        if not (path / "split.json").is_file():
            continue  # a split this experiment does not have (e.g. no control)
        data = PackedSplit(path)
        for start in range(0, len(data), 4096):  # a block of sequences at a time: bounded memory
            block = np.concatenate([data[i][0] for i in range(start, min(len(data), start + 4096))])
            hits = _window_hashes(block)
            seen = np.union1d(seen, hits[np.isin(hits, wanted)])
    report = {}
    for task, hashes in task_items.items():
        flagged = [i for i, h in enumerate(hashes) if len(h) and np.isin(h, seen).any()]
        report[task] = {"items": len(hashes), "contaminated": len(flagged),
                        "share": len(flagged) / max(1, len(hashes)), "examples": flagged[:5], "splits": splits}
    return report
