"""Held-out sets are uniform random samples of what was read, never the first documents in stream order;
their candidates never reach training, and their last sequence is padded, not dropped."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cpt_utils.packaged_text import iter_packaged_wiki
from cpt_utils.packing import open_split
from cpt_utils.config import validate_params
from cpt_utils.held_out import MIN_HELD_OUT_DOCUMENTS, is_held_out
from cpt_utils.preprocess import prepare_data

WORDS = ("energy mass force field charge atom wave light heat motion orbit planet cell gene acid protein "
         "river mountain ocean climate market trade law court poem novel music painting").split()


def _write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _records(which: str, n: int) -> list[dict]:
    rng = random.Random(which)
    return [{"id": f"{which}-{i}", "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 80))) + "."}
            for i in range(n)]


def _params(folder: Path, domain: list[dict], **pre):
    _write(folder / "domain.jsonl", domain)
    _write(folder / "general.jsonl", _records("general", 60))
    return validate_params({
        "model": {"source": "tiny"}, "seed": 0,
        "data": {w: {"kind": "files", "paths": [str(folder / f"{w}.jsonl")]} for w in ("domain", "general")},
        "preprocess": {"seq_len": 32, "val_fraction": 0.3, "val_max_docs": 6, "dedup": {"near": False},
                       "train_token_budget": None, "replay_token_budget": None, "tokenize_batch_size": 8, **pre},
    })


def _ids(run: Path, split: str) -> list[str]:
    return [d["id"] for d in open_split(run, split).documents()]


def test_the_held_out_set_does_not_depend_on_stream_order(tmp_path):
    docs = _records("domain", 120)
    shuffled = random.Random(1).sample(docs, len(docs))
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = prepare_data(_params(tmp_path / "a", docs), tmp_path / "a" / "run", progress=False)
    second = prepare_data(_params(tmp_path / "b", shuffled), tmp_path / "b" / "run", progress=False)
    held = _ids(tmp_path / "a" / "run", "val_domain")
    assert len(held) == 6 and first["held_out"]["val_domain"]["candidates_seen"] > 6  # the cap bit
    assert held == _ids(tmp_path / "b" / "run", "val_domain")  # same documents, packed in the same order
    assert first["splits"]["val_domain"]["content_hash"] == second["splits"]["val_domain"]["content_hash"]
    # and they are the candidates with the smallest hash, not the first ones read
    candidates = [d["id"] for d in docs if is_held_out(d["id"], 0, 0.3)]
    assert held != candidates[:6]


def test_no_candidate_is_trained_on_even_when_the_sample_is_full(tmp_path):
    docs = _records("domain", 200)
    params = _params(tmp_path, docs, train_token_budget=32 * 40)
    manifest = prepare_data(params, tmp_path / "run", progress=False)
    entry = manifest["held_out"]["val_domain"]
    read = manifest["corpora"]["domain"]["documents_read"]
    assert not entry["whole_stream_read"] and read < len(docs)  # the budget filled before the end
    candidates = {d["id"] for d in docs[:read] if is_held_out(d["id"], 0, 0.3)}
    assert len(candidates) == entry["candidates_seen"] > entry["documents"] == 6
    assert not candidates & set(_ids(tmp_path / "run", "train"))


def test_the_padded_tail_keeps_every_document_and_no_padding_is_scored(tmp_path):
    params = _params(tmp_path, _records("domain", 120), val_max_docs=7)
    manifest = prepare_data(params, tmp_path / "run", progress=False)
    split = open_split(tmp_path / "run", "val_domain")
    assert split.info["documents"] == len(split.documents()) == manifest["held_out"]["val_domain"]["documents"] == 7
    padding = split.info["padding_tokens"]
    assert padding == manifest["held_out"]["val_domain"]["padding_tokens"] == manifest["splits"]["val_domain"][
        "padding_tokens"]
    total = sum(d["tokens"] for d in split.documents())
    assert split.num_tokens == total + padding and 0 < padding < split.seq_len  # nothing dropped
    owner = split.document_indices(len(split) - 1)
    assert (owner[-padding:] == -1).all() and (owner[:-padding] >= 0).all()
    labels = split.batch([len(split) - 1])["labels"][0].numpy()
    assert (labels[-padding:] == -100).all() and (labels[:-padding] >= 0).all()
    assert manifest["held_out"]["val_domain"]["too_few_for_se"] == (7 < MIN_HELD_OUT_DOCUMENTS)


def test_perplexity_leaves_padding_out_of_every_document(tmp_path):
    from cpt_utils.modeling import load_model
    from cpt_utils.perplexity import perplexity

    params = _params(tmp_path, _records("domain", 120), val_max_docs=7)
    prepare_data(params, tmp_path / "run", progress=False)
    split = open_split(tmp_path / "run", "val_domain")
    result = perplexity(load_model(params.model), split, batch_size=4)
    assert result["documents"] == 7
    # targets are positions 1.. of each sequence; the padding (all at the end of the last) is none of them
    assert result["tokens"] == len(split) * (split.seq_len - 1) - split.padding_tokens


@pytest.fixture(scope="module")
def several_topics(tmp_path_factory):
    from cpt_utils.config import load_params
    from cpt_utils.paths import REPO_ROOT

    data = load_params(REPO_ROOT / "params" / "tiny.yaml").model_dump()
    data["data"]["general"] = {"kind": "packaged_wiki", "topics": ["Arts", "People", "History", "Geography"],
                               "max_docs": 150}
    data["data"]["registers"], data["variants"], data["control"] = {}, {}, None
    params = validate_params(data)
    run = tmp_path_factory.mktemp("topics")
    return params, run, prepare_data(params, run, progress=False)


def test_packaged_wikipedia_held_out_and_training_span_several_topics(several_topics):
    params, run, manifest = several_topics
    entry = manifest["held_out"]["val_general"]
    assert len(entry["composition"]) >= 3 and sum(entry["composition"].values()) == entry["documents"]
    assert entry["stream_order"] == "a seeded random permutation of the file"
    topic = {d.id: d.meta["topic"] for d in iter_packaged_wiki(params.data.general.topics)}
    assert Counter(topic[i] for i in _ids(run, "val_general")) == Counter(entry["composition"])
    assert len(manifest["corpora"]["general"]["trained_composition"]) >= 3  # replay too: not one topic


def test_packaged_wikipedia_permutation_is_seeded():
    topics = ["Mathematics"]
    file_order = [d.id for d in iter_packaged_wiki(topics)]
    one, again, other = ([d.id for d in iter_packaged_wiki(topics, seed)] for seed in (1, 1, 2))
    assert one == again and one != other and one != file_order
    assert sorted(one) == sorted(other) == sorted(file_order)  # a permutation: nothing added or lost
    assert np.mean([a == b for a, b in zip(one, other)]) < 0.05


def test_held_out_sets_are_shown_in_the_terminal_the_notebook_and_the_index(several_topics):
    import matplotlib

    matplotlib.use("Agg")
    from cpt_utils import preprocess_report as report
    from cpt_utils.pipeline import _held_out_html

    _, run, manifest = several_topics
    lines = report.held_out_lines(manifest)
    assert [line.split()[0] for line in lines] == ["val_domain", "val_general"]
    assert "too few documents for a reliable SE" in lines[0]  # tiny holds out 10 < 20
    table = report.held_out_table(manifest)
    assert list(table.index) == ["val_domain", "val_general"]
    for split, entry in manifest["held_out"].items():  # the cap, or every candidate where there were fewer
        assert table.loc[split, "documents"] == min(10, entry["candidates_seen"])
        assert entry["corpus_had_fewer"] == (entry["candidates_seen"] < 10)
    fig = report.fig_held_out_composition(manifest)
    assert all(ax.get_title() and ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    page = _held_out_html(run)
    assert "<h2>Held-out sets</h2>" in page and page.count("<tr>") == 3
