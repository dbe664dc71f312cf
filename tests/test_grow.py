"""Growing a finished run in place (400M → 1B in the paper; 2,048 → 4,096 tokens here).

A larger ``preprocess.train_token_budget`` on the same stream appends train shards (the old ones stay
byte-identical, nothing else changes), the sampler keeps the order of the sequences it already had,
and a finished run resumes on the grown data: its first tokens' rows are exactly the original run's.
Tested on local JSONL files and on the same files read through ``datasets``' streaming path (the hub
kind, served locally).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from cpt_utils import growth
from cpt_utils.checkpointing import list_checkpoints
from cpt_utils.packing import DataRepeatWarning, MixedSampler, PackedSplit
from cpt_utils.config import validate_params
from cpt_utils.preprocess import prepare_data
from cpt_utils.train import DataMismatch, train

from .numerics import EXACT
from .test_preprocess_resume import _local_hub  # the same local stand-in for a hub stream

WORDS = ("energy mass force field charge atom wave light heat motion orbit planet cell gene acid protein "
         "river mountain ocean climate market trade law court poem novel music painting").split()
A, SEQ = 2048, 64  # the first budget in tokens, and the sequence length (32 sequences = one budget)


def _write_corpora(folder: Path) -> dict[str, Path]:
    """A domain stream far longer than the first budget, and a small general corpus."""
    rng = random.Random(0)
    paths = {}
    for which, n in (("domain", 260), ("general", 60)):
        lines = [json.dumps({"id": f"{which}-{i}", "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 90))) + ".",
                             "int_score": 3}) for i in range(n)]
        paths[which] = folder / f"{which}.jsonl"
        paths[which].write_text("\n".join(lines) + "\n")
    return paths


def _params(paths: dict[str, Path], budget: int, kind: str = "files", **train):
    if kind == "files":
        data = {w: {"kind": "files", "paths": [str(p)]} for w, p in paths.items()}
    else:
        data = {w: {"kind": "hub", "dataset": f"local/{w}"} for w in paths}
    return validate_params({
        "model": {"source": "tiny"}, "seed": 0, "data": data, "offline": kind == "files",
        "preprocess": {"seq_len": SEQ, "val_fraction": 0.1, "val_max_docs": 6, "shard_tokens": 1024,
                       "tokenize_batch_size": 16, "train_token_budget": budget},
        "train": {"token_budget": budget, "micro_batch_size": 4, "lr": 1e-3, "warmup_tokens": 512,
                  "eval_max_sequences": 4, "compile": False, "precision": EXACT, **train},
    })


def _files(split_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(split_dir.iterdir()) if p.is_file()}


@pytest.mark.parametrize("kind", ["files", "hub"])
def test_a_larger_train_budget_appends_shards_and_changes_nothing_else(tmp_path, monkeypatch, capsys, kind):
    paths = _write_corpora(tmp_path)
    if kind == "hub":
        _local_hub(monkeypatch, paths)
    run = tmp_path / "run"
    first = prepare_data(_params(paths, A, kind), run, progress=False)
    data = run / "data"
    before = {split: _files(data / split) for split in ("train", "replay", "val_domain", "val_general")}
    old_docs = (data / "train" / "documents.jsonl").read_text().splitlines()
    assert first["splits"]["train"]["num_sequences"] == A // SEQ

    capsys.readouterr()
    grown = prepare_data(_params(paths, 2 * A, kind), run, progress=False)
    assert "growing" in capsys.readouterr().out
    train_files = _files(data / "train")
    for name, content in before["train"].items():
        if name.startswith("shard-"):
            assert train_files[name] == content, name  # old shards byte-identical
    assert len([n for n in train_files if n.endswith(".ids.npy")]) > len([n for n in before["train"] if n.endswith(".ids.npy")])
    for split in ("replay", "val_domain", "val_general"):
        assert _files(data / split) == before[split], split  # untouched
    new_docs = (data / "train" / "documents.jsonl").read_text().splitlines()
    assert new_docs[:len(old_docs)] == old_docs and len(new_docs) > len(old_docs)

    split = PackedSplit(data / "train")
    assert split.blocks == [A // SEQ, A // SEQ] and len(split) == 2 * A // SEQ
    assert grown["lineage"]["root"] == first["content_hash"] != grown["content_hash"]
    assert growth.data_identity(grown) == growth.data_identity(first)
    record = grown["lineage"]["growth"][0]
    assert (record["from_budget"], record["to_budget"]) == (A, 2 * A)
    assert record["train_sequences_before"] == A // SEQ and record["train_sequences_after"] == 2 * A // SEQ
    assert record["documents_read_after"] > record["documents_read_before"] == first["corpora"]["domain"]["documents_read"]
    assert record["stream_position"]["documents_read"] == grown["corpora"]["domain"]["documents_read"]
    # no document is in two splits: the continuation never packs a held-out one
    held = {d["id"] for d in PackedSplit(data / "val_domain").documents()}
    assert not held & {d["id"] for d in split.documents()}
    # the same larger budget again: reused, not grown twice
    capsys.readouterr()
    assert prepare_data(_params(paths, 2 * A, kind), run, progress=False)["content_hash"] == grown["content_hash"]
    assert "reusing prepared data" in capsys.readouterr().out


def test_a_changed_parameter_or_input_prepares_from_scratch(tmp_path, capsys):
    paths = _write_corpora(tmp_path)
    prepare_data(_params(paths, A), tmp_path / "run", progress=False)
    other = _params(paths, 2 * A)
    other = other.model_copy(update={"preprocess": other.preprocess.model_copy(update={"val_max_docs": 5})})
    capsys.readouterr()
    manifest = prepare_data(other, tmp_path / "run", progress=False)
    assert "cannot grow in place (parameters other than preprocess.train_token_budget changed)" in capsys.readouterr().out
    assert "lineage" not in manifest and PackedSplit(tmp_path / "run" / "data" / "train").blocks == [2 * A // SEQ]


def test_the_sampler_keeps_its_order_when_blocks_are_appended():
    one = MixedSampler([40], [20], micro_batch_size=3, replay_fraction=0.25, seed=1, world_size=2)
    two = MixedSampler([40, 30], [20], micro_batch_size=3, replay_fraction=0.25, seed=1, world_size=2)
    first = [one.next_global_batch() for _ in range(7)]  # 42 rows, 31 from train: inside block 0
    assert [two.next_global_batch() for _ in range(7)] == first
    train = [i for batch in first for s, i in batch if s == "train"]
    assert all(i < 40 for i in train)
    # by stream position: block 0 in its old order, then the new block, each sequence once per epoch
    order = [two._index("train", cursor) for cursor in range(140)]
    assert order[:40] == [one._index("train", cursor) for cursor in range(40)]
    assert sorted(order[40:70]) == list(range(40, 70)) and sorted(order[70:]) == list(range(70))
    # resuming mid-block continues exactly
    state = two.state_dict()
    ahead = [two.next_global_batch() for _ in range(3)]
    again = MixedSampler([40, 30], [20], 3, 0.25, seed=1, world_size=2)
    again.load_state_dict(state)
    assert [again.next_global_batch() for _ in range(3)] == ahead
    # one block: the order a split had before blocks existed (epoch-seeded permutation)
    plain = MixedSampler(40, 0, 4)
    assert [plain._index("train", c) for c in range(40)] == np.random.default_rng([0, 0, 0]).permutation(40).tolist()


def test_a_budget_beyond_one_epoch_warns():
    sampler = MixedSampler([32], [0], micro_batch_size=4)
    assert sampler.repeat_warning(8) is None
    message = sampler.repeat_warning(9)
    assert "train: 36 sequences from 32 (1.12 epochs)" in message and "preprocess.train_token_budget" in message


def _rows(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]


def test_a_finished_run_grows_in_place_and_keeps_its_first_tokens(tmp_path):
    paths = _write_corpora(tmp_path)
    root = tmp_path / "prepared"
    prepare_data(_params(paths, A), root, progress=False)
    data = root / "data"
    run = tmp_path / "run"
    train(_params(paths, A, milestones=[A]), run, data_dir=data, progress=False)
    original = _rows(run)
    assert len(original) == A // 256
    with pytest.warns(DataRepeatWarning, match="exceeds one epoch"):  # 2A on the A data would repeat it
        train(_params(paths, 2 * A), tmp_path / "repeat", data_dir=data, progress=False, stop_after_steps=1)

    prepare_data(_params(paths, 2 * A), root, progress=False)  # grown: appended shards
    # the same budget on the grown data: exactly the original rows (the order of block 0 is unchanged)
    train(_params(paths, A, milestones=[A]), tmp_path / "same", data_dir=data, progress=False)
    assert [r["loss"] for r in _rows(tmp_path / "same")] == [r["loss"] for r in original]
    # the finished run continues to 2A: accepted (same data identity), first rows kept, then a re-warm
    summary = train(_params(paths, 2 * A, milestones=[A, 2 * A]), run, data_dir=data, progress=False)
    assert summary["tokens"] == 2 * A
    rows = _rows(run)
    assert rows[:len(original)] == original and [r["step"] for r in rows] == list(range(1, 2 * A // 256 + 1))
    assert rows[len(original)]["lr"] < rows[len(original) + 1]["lr"]  # re-warm segment, as for any grown budget
    assert list_checkpoints(run)[-1]["train_blocks"] == [A // SEQ, A // SEQ]
    # a constant-LR run of 2A on the grown data equals a constant-LR run of A on the original data
    # for the first A tokens: the schedules agree there, and so does the data order
    const = dict(schedule="constant", warmup_tokens=0)
    train(_params(paths, 2 * A, **const), tmp_path / "long", data_dir=data, progress=False)
    fresh = tmp_path / "fresh"
    prepare_data(_params(paths, A), fresh, progress=False)
    train(_params(paths, A, **const), tmp_path / "short", data_dir=fresh / "data", progress=False)
    assert [r["loss"] for r in _rows(tmp_path / "long")][:A // 256] == [r["loss"] for r in _rows(tmp_path / "short")]


def test_a_checkpoint_refuses_data_grown_in_other_steps(tmp_path):
    checkpoint = {"name": "tokens-000000004096", "train_blocks": [32, 32]}
    assert growth.resume_problem(checkpoint, [32, 32, 10]) is None
    assert growth.resume_problem({"name": "old"}, [64]) is None  # written before blocks were recorded
    problem = growth.resume_problem(checkpoint, [32, 48])
    assert "blocks [32, 32]" in problem and "[32, 48]" in problem and "order differs after block 1" in problem
    with pytest.raises(DataMismatch):
        raise DataMismatch(problem)
