"""The packed on-disk format, the packer's positions and budget, and the resumable replay sampler."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cpt_utils.packing import (
    MixedSampler, PackedDataError, PackedSplit, SequencePacker, ShardWriter, heldout_splits, open_split, token_dtype,
)

SEP = 0


def _pack(tmp_path, docs: list[list[int]], seq_len: int = 8, shard_sequences: int = 3, budget=None):
    packer = SequencePacker(ShardWriter(tmp_path / "data" / "train", seq_len, 100, shard_sequences), SEP, budget)
    for i, ids in enumerate(docs):
        packer.add(ids, f"doc{i}", "test")
    return packer.close(), open_split(tmp_path, "train")


def test_positions_and_document_indices_follow_every_boundary(tmp_path):
    # documents of 3, 12 (longer than a sequence) and 5 tokens, each + separator: 4 + 13 + 6 = 23 tokens
    docs = [[11, 12, 13], list(range(21, 33)), [41, 42, 43, 44, 45]]
    info, split = _pack(tmp_path, docs)
    assert len(split) == 2 and info["dropped_tail_tokens"] == 23 - 16 and info["documents"] == 3
    ids0, pos0 = split[0]
    ids1, pos1 = split[1]
    assert ids0.tolist() == [11, 12, 13, SEP, 21, 22, 23, 24]
    assert pos0.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    # the long document continues into sequence 1: a new fragment, so its positions restart at 0
    assert ids1.tolist() == [25, 26, 27, 28, 29, 30, 31, 32]
    assert pos1.tolist() == list(range(8))
    assert split.document_indices(0).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert split.document_indices(1).tolist() == [1] * 8
    assert [d["id"] for d in split.documents()] == ["doc0", "doc1", "doc2"]
    assert [d["tokens"] for d in split.documents()] == [4, 13, 6]


def test_shards_hold_exactly_the_configured_sequences_and_read_back_in_order(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(1, 100, rng.integers(1, 30)).tolist() for _ in range(40)]
    info, split = _pack(tmp_path, docs, seq_len=8, shard_sequences=3)
    stream = np.concatenate([np.append(d, SEP) for d in docs])
    n = len(stream) // 8
    assert len(split) == n == info["num_sequences"] and split.num_tokens == n * 8
    assert [s["num_sequences"] for s in info["shards"]] == [3] * (n // 3) + ([n % 3] if n % 3 else [])
    assert np.array_equal(np.concatenate([split[i][0] for i in range(n)]), stream[:n * 8])
    assert split[0][0].dtype == np.int64 and token_dtype(100) == np.uint16 and token_dtype(70_000) == np.uint32
    assert not list((tmp_path / "data" / "train").glob("*.tmp*"))  # every temporary name was renamed
    with pytest.raises(IndexError, match="out of range"):
        split[n]
    batch = split.batch([0, 1])
    assert batch["input_ids"].shape == (2, 8) and (batch["labels"] == batch["input_ids"]).all()


def test_token_budget_stops_writing_and_stops_recording_documents(tmp_path):
    docs = [[5] * 6 for _ in range(20)]  # 7 tokens each with the separator
    info, split = _pack(tmp_path, docs, seq_len=8, budget=20)
    assert info["num_tokens"] == 24  # the sequence that crosses the budget is finished, then nothing
    assert info["documents"] == len(split.documents()) <= 4


def test_unfinished_or_unknown_splits_are_refused(tmp_path):
    writer = ShardWriter(tmp_path / "data" / "val_domain", 8, 100, 10)
    writer.add(np.arange(8), np.arange(8))
    with pytest.raises(PackedDataError, match="no split.json"):
        open_split(tmp_path, "val_domain")  # no close(): not published
    writer.close()
    assert len(open_split(tmp_path, "val_domain")) == 1
    with pytest.raises(PackedDataError, match="allowed"):
        open_split(tmp_path, "validation")
    with pytest.raises(PackedDataError, match="shape"):
        writer.add(np.arange(7), np.arange(7))


def test_heldout_splits_come_domain_general_registers_and_a_wrong_name_lists_the_prepared(tmp_path):
    for name in ("val_news", "val_general", "val_domain", "val_chat"):
        writer = ShardWriter(tmp_path / "data" / name, 8, 100, 10)
        writer.add(np.arange(8), np.arange(8))
        writer.close()
    ShardWriter(tmp_path / "data" / "val_code", 8, 100, 10)  # never closed: not prepared
    data = tmp_path / "data"
    assert heldout_splits(data) == ["val_domain", "val_general", "val_chat", "val_news"]
    assert heldout_splits(data, ["val_news", "val_domain"]) == ["val_domain", "val_news"]  # prepared order
    with pytest.raises(PackedDataError, match=r"eval.heldout_splits: 'domain', 'val_code' not prepared.*"
                                              r"val_domain, val_general, val_chat, val_news"):
        heldout_splits(data, ["domain", "val_code", "val_general"])


def test_a_restarted_writer_replaces_the_old_split(tmp_path):
    _pack(tmp_path, [[1, 2, 3]] * 10)
    info, split = _pack(tmp_path, [[4, 5, 6]] * 4)
    assert len(split) == 2 and set(split[0][0].tolist()) == {4, 5, 6, SEP}
    assert json.loads((tmp_path / "data" / "train" / "split.json").read_text())["num_sequences"] == 2
    assert len(PackedSplit(tmp_path / "data" / "train").documents()) == 4


def test_mixed_sampler_replay_share_resume_and_ranks():
    sampler = MixedSampler(n_train=50, n_replay=20, micro_batch_size=3, replay_fraction=0.25, seed=1, world_size=2)
    stream = [sampler.next_global_batch() for _ in range(40)]
    rows = [row for batch in stream for row in batch]
    assert len(rows) == 240 and sum(s == "replay" for s, _ in rows) == 60  # exactly 25% over the run
    # 180 train rows = 3 full epochs (each a permutation of all 50 sequences) + 30 of the fourth
    counts = np.bincount([i for s, i in rows if s == "train"], minlength=50)
    assert sorted(counts.tolist()) == [3] * 20 + [4] * 30
    # resuming from a saved state continues the identical stream
    again = MixedSampler(50, 20, 3, 0.25, seed=1, world_size=2)
    for _ in range(17):
        again.next_global_batch()
    resumed = MixedSampler(50, 20, 3, 0.25, seed=1, world_size=2)
    resumed.load_state_dict(again.state_dict())
    assert [resumed.next_global_batch() for _ in range(23)] == stream[17:]
    # two ranks take disjoint halves of the same global batch
    r0, r1 = (MixedSampler(50, 20, 3, 0.25, seed=1, rank=r, world_size=2) for r in (0, 1))
    assert r0.next_batch() + r1.next_batch() == stream[0]
    with pytest.raises(PackedDataError, match="replay split has no sequences"):
        MixedSampler(10, 0, 2, replay_fraction=0.1)
