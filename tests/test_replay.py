"""Replay from a mixture of sources: the parameter, the packed replay splits (disjoint from the held-out
documents), and the sampler's shares and exact resumption."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from cpt_utils.packing import MixedSampler, PackedDataError, PackedSplit, replay_split_name, training_stream
from cpt_utils.config import ParamsError, TrainParams, derive, load_params, replay_sources, validate_params

NEWS = {"news": {"kind": "packaged_register", "register": "news", "max_docs": 60}}
WEIGHTS = {"replay": 0.5, "replay_chat": 0.3, "replay_fiction": 0.2}
SIZES = {"replay": 40, "replay_chat": 25, "replay_fiction": 7}


def _sampler(**kw) -> MixedSampler:
    args = {"n_train": 50, "n_replay": SIZES, "micro_batch_size": 4, "replay_fraction": 0.4, "seed": 3,
            "world_size": 2, "replay_weights": WEIGHTS} | kw
    return MixedSampler(**args)


# ------------------------------------------------------------------------------------------ sampler
def test_mixture_shares_match_the_weights_within_binomial_error():
    sampler = _sampler()
    rows = [row for _ in range(2000) for row in sampler.next_global_batch()]
    replay = [split for split, _ in rows if split != "train"]
    assert len(replay) == round(0.4 * len(rows))  # the replay share itself is exact (error diffusion)
    n = len(replay)
    for split, weight in WEIGHTS.items():
        count = replay.count(split)
        assert abs(count - n * weight) < 4 * math.sqrt(n * weight * (1 - weight)), (split, count, n * weight)
    # every source cycles through its own split, a permutation per epoch: counts differ by at most one
    for split, size in SIZES.items():
        counts = np.bincount([i for s, i in rows if s == split], minlength=size)
        assert counts.max() - counts.min() <= 1 and len(counts) == size


def test_mixture_order_is_identical_across_a_resume():
    reference = _sampler()
    stream = [reference.next_global_batch() for _ in range(60)]
    first = _sampler()
    for _ in range(23):
        first.next_global_batch()
    saved = pickle.loads(pickle.dumps(first.state_dict()))  # as a checkpoint stores it
    first.next_global_batch()  # the live sampler moving on must not change what was saved
    resumed = _sampler()
    resumed.load_state_dict(saved)
    assert [resumed.next_global_batch() for _ in range(37)] == stream[23:]
    # each rank of the resumed run takes its own slice of the same global batches
    ranks = [_sampler(rank=r) for r in (0, 1)]
    for r in ranks:
        r.load_state_dict(saved)
    assert ranks[0].next_batch() + ranks[1].next_batch() == stream[23]


def test_replay_fraction_alone_is_the_general_stream_it_always_was():
    """No mixture = one general replay split: no draw, the same picks as an explicit {'replay': 1}, and a
    checkpoint saved before mixtures (a single ``replay_cursor``) resumes."""
    plain = MixedSampler(50, 20, 3, 0.25, seed=1, world_size=2)
    explicit = MixedSampler(50, {"replay": 20}, 3, 0.25, seed=1, world_size=2, replay_weights={"replay": 1.0})
    a, b = [plain.next_global_batch() for _ in range(30)], [explicit.next_global_batch() for _ in range(30)]
    assert a == b and {s for batch in a for s, _ in batch} == {"train", "replay"}
    old = {k: v for k, v in plain.state_dict().items() if k != "replay_cursors"} | {
        "replay_cursor": plain.state.replay_cursors["replay"]}
    resumed = MixedSampler(50, 20, 3, 0.25, seed=1, world_size=2)
    resumed.load_state_dict(old)
    assert resumed.next_global_batch() == plain.next_global_batch()


def test_sampler_refuses_an_empty_or_unsized_source():
    with pytest.raises(PackedDataError, match=r"no sequences \(replay_chat\)"):
        _sampler(n_replay=SIZES | {"replay_chat": 0})
    with pytest.raises(PackedDataError, match="without a size"):
        _sampler(n_replay={"replay": 4})
    with pytest.raises(PackedDataError, match="sum to 1"):
        _sampler(replay_weights={"replay": 0.5, "replay_chat": 0.3})


# ---------------------------------------------------------------------------------------- parameters
def test_mixture_weights_are_normalised_and_default_to_general():
    assert TrainParams().replay_weights() == {"general": 1.0}
    assert TrainParams(replay_mixture={"general": 2, "chat": 1, "news": 1, "code": 0}).replay_weights() == {
        "general": 0.5, "chat": 0.25, "news": 0.25}


def test_mixture_validation_names_the_allowed_sources():
    registers = {"chat": {"kind": "packaged_register", "register": "chat"}}
    with pytest.raises(ParamsError, match=r"train.replay_mixture: unknown source\(s\) \['poetry'\]; allowed: general, chat"):
        validate_params({"data": {"registers": registers}, "train": {"replay_mixture": {"poetry": 1}}})
    with pytest.raises(ParamsError, match=r"variants.v.train.replay_mixture: unknown source\(s\) \['chat'\]; allowed: general \("):
        validate_params({"variants": {"v": {"train": {"replay_mixture": {"chat": 1}}}}})
    with pytest.raises(ParamsError, match=r"train.replay_mixture.*finite and ≥ 0"):
        validate_params({"train": {"replay_mixture": {"general": -1}}})
    with pytest.raises(ParamsError, match=r"variant 'v'.*replay_mixture.*no source has a positive weight"):
        validate_params({"variants": {"v": {"train": {"replay_mixture": {"general": 0}}}}})


def test_every_source_of_the_main_run_and_the_variants_is_packed(tmp_path):
    registers = {n: {"kind": "packaged_register", "register": n} for n in ("chat", "fiction", "code")}
    params = validate_params({"data": {"registers": registers}, "train": {"replay_mixture": {"chat": 1}},
                              "variants": {"a": {"train": {"replay_mixture": {"general": 1, "fiction": 1}}},
                                           "b": {"train": {"replay_fraction": 0.1}}}})
    assert replay_sources(params) == ["general", "chat", "fiction"]  # code is held out only
    # a child file's mixture replaces its parent's (never a union of both)
    (tmp_path / "parent.yaml").write_text("data: {registers: {chat: {kind: packaged_register, register: chat}}}\n"
                                          "train: {replay_mixture: {general: 1, chat: 1}}\n")
    (tmp_path / "child.yaml").write_text("extends: parent.yaml\ntrain: {replay_mixture: {chat: 1}}\n")
    assert load_params(tmp_path / "child.yaml", check=False).train.replay_mixture == {"chat": 1}


# ------------------------------------------------------------------------------------- preprocessing
def test_register_replay_split_is_disjoint_from_its_held_out_documents(tiny_params, data_dir):
    """tiny.yaml's replay_25 variant replays its news register: the news articles are split into the
    held-out val_news and the replayed replay_news, no document in both, and the manifest says so."""
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert manifest["replay_sources"] == {"general": "replay", "news": "replay_news"}
    held = {d["id"] for d in PackedSplit(data_dir / "val_news").documents()}
    replayed = {d["id"] for d in PackedSplit(data_dir / "replay_news").documents()}
    info = manifest["registers"]["news"]["replay"]
    assert held and replayed and not held & replayed
    assert set(info["disjoint_from"]) == {"val_domain", "val_general", "val_news"}  # checked on the written files
    assert len(held) == tiny_params.preprocess.val_max_docs and len(replayed) == info["documents_packed"]
    # no replay budget in tiny: every article that survived cleaning and was not held out is replayed
    assert info["token_budget"] is None and len(replayed) == info["documents_eligible"]
    assert manifest["splits"]["replay_news"]["num_sequences"] == len(PackedSplit(data_dir / "replay_news")) > 0


def test_replaying_a_register_leaves_its_held_out_selection_unchanged(tiny_params, data_dir, tmp_path):
    from cpt_utils.preprocess import prepare_data

    data = tiny_params.model_dump()
    data["variants"] = {}
    params = validate_params(data)
    params.source_path = tiny_params.source_path
    manifest = prepare_data(params, tmp_path, progress=False)
    assert "replay_news" not in manifest["splits"] and manifest["replay_sources"] == {"general": "replay"}
    assert not (tmp_path / "data" / "replay_news").exists()
    assert (PackedSplit(tmp_path / "data" / "val_news").documents()
            == PackedSplit(data_dir / "val_news").documents())
    # the data's content hash covers the standard splits alone, so adding a replay source to a variant
    # never orphans the main run; a run that replays news has the news replay split in its identity
    from cpt_utils.results import training_data_identity

    with_news = json.loads((data_dir / "manifest.json").read_text())
    assert manifest["splits"]["val_news"]["content_hash"] == with_news["splits"]["val_news"]["content_hash"]
    assert manifest["content_hash"] == with_news["content_hash"]
    plain = training_data_identity(with_news, "train", ["general"])
    assert plain == training_data_identity(manifest, "train", ["general"]) == with_news["content_hash"]
    mixed = training_data_identity(with_news, "train", ["general", "news"])
    assert mixed == f"{plain}:replay_news:{with_news['splits']['replay_news']['content_hash']}"
    with pytest.raises(Exception, match="no replay split 'replay_news'"):
        training_data_identity(manifest, "train", ["news"])


def test_training_stream_opens_the_mixture_splits_or_says_to_prepare_again(tiny_params, data_dir):
    variant = derive(tiny_params, "variant", "replay_25").train
    splits, sampler = training_stream(data_dir, variant, seed=0)
    assert set(splits) == {"train", "replay", "replay_news"}
    assert sampler.replay_weights == {"replay": 0.5, "replay_news": 0.5}
    picks = [row for _ in range(200) for row in sampler.next_global_batch()]
    assert {s for s, _ in picks} == {"train", "replay", "replay_news"}
    assert all(0 <= i < len(splits[s]) for s, i in picks)
    assert replay_split_name("general") == "replay" and replay_split_name("chat") == "replay_chat"
    missing = variant.model_copy(update={"replay_mixture": {"chat": 1}})
    with pytest.raises(PackedDataError, match=r"replay_chat: no replay split for train.replay_mixture source 'chat'"):
        training_stream(data_dir, missing, seed=0)


def test_a_register_can_be_the_control_and_a_replay_source_at_once(tiny_params, tmp_path):
    from cpt_utils.preprocess import prepare_data

    data = tiny_params.model_dump()
    data["data"]["registers"] = {"chat": {"kind": "packaged_register", "register": "chat", "max_docs": 120}}
    data["control"] = {"corpus": "chat"}
    data["variants"] = {"replay_chat": {"train": {"token_budget": 2048, "replay_fraction": 0.25, "replay_mixture": {"chat": 1}}}}
    params = validate_params(data)
    params.source_path = tiny_params.source_path
    manifest = prepare_data(params, tmp_path, progress=False)
    ids = {name: {d["id"] for d in PackedSplit(tmp_path / "data" / name).documents()}
           for name in ("val_chat", "control", "replay_chat")}
    assert all(ids.values()) and not ids["val_chat"] & (ids["control"] | ids["replay_chat"])
    assert ids["replay_chat"] == ids["control"]  # no budget in tiny: both hold every chat not held out
    assert manifest["registers"]["chat"]["replay"]["documents_packed"] == len(ids["replay_chat"])
