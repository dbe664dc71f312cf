"""Preprocessing survives interruption: a crash after N shards resumes at shard N + 1.

The crash is an exception injected right after the N-th snapshot is saved (the moment a real kill can
hit hardest: the shard and its snapshot are on disk, nothing after them). The resumed run must produce
byte-identical data and manifest figures, and must tokenize only what the crashed run had not.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from cpt_utils import corpus_processing, preprocess
from cpt_utils.config import validate_params
from cpt_utils.corpus_processing import DEDUP_LOG
from cpt_utils.preprocess import SNAPSHOT, prepare_data

_real_save = preprocess._save_snapshot
WORDS = ("energy mass force field charge atom wave light heat motion orbit planet cell gene acid protein "
         "river mountain ocean climate market trade law court poem novel music painting").split()


class Crash(RuntimeError):
    """Stands for the process dying (power cut, OOM kill, preemption)."""


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + "."


def _write_corpora(folder: Path, broken: str = "{broken json") -> dict[str, Path]:
    """A domain and a general JSONL with exact and near duplicates, unreadable lines (``broken``), and
    an ``int_score`` (for the hub stream's filter), each large enough for several 1,024-token shards."""
    rng = random.Random(0)
    paths = {}
    for which, n in (("domain", 120), ("general", 90)):
        lines, texts = [], []
        for i in range(n):
            text = _text(rng, rng.randint(40, 120))
            if i % 17 == 5:
                text = texts[-1]  # exact duplicate
            elif i % 23 == 7:
                text = texts[-1][:-1] + " extra."  # near duplicate
            texts.append(text)
            lines.append(json.dumps({"id": f"{which}-{i}", "text": text, "int_score": 2 + i % 3}))
            if i % 31 == 3:
                lines.append(broken)
        paths[which] = folder / f"{which}.jsonl"
        paths[which].write_text("\n".join(lines) + "\n")
    return paths


def _params(paths: dict[str, Path], kind: str = "files", **pre):
    if kind == "files":
        data = {w: {"kind": "files", "paths": [str(p)]} for w, p in paths.items()}
    else:  # a hub stream (datasets' streaming IterableDataset), served from the local files by _local_hub
        data = {"domain": {"kind": "hub", "dataset": "local/domain", "min_int_score": 3},
                "general": {"kind": "hub", "dataset": "local/general"}}
    return validate_params({
        "model": {"source": "tiny"}, "seed": 0, "data": data, "offline": kind == "files",  # HF_*_OFFLINE stay set
        "preprocess": {"seq_len": 32, "val_fraction": 0.1, "val_max_docs": 6, "shard_tokens": 1024,
                       "tokenize_batch_size": 8, **pre},
    })


@pytest.fixture()
def tokenized(monkeypatch) -> list[str]:
    """Every text the preprocessing tokenizes, in order (the work a resumed run must not redo)."""
    seen: list[str] = []
    real = corpus_processing.tokenize_batch

    def counting(tokenizer, texts):
        seen.extend(texts)
        return real(tokenizer, texts)

    monkeypatch.setattr(corpus_processing, "tokenize_batch", counting)
    return seen


def _crash_after(monkeypatch, n: int) -> list[dict]:
    """Make the n-th snapshot save raise after it is written; returns the snapshots' places."""
    real, places = preprocess._save_snapshot, []

    def save_then_crash(data_dir, state):
        real(data_dir, state)
        places.append(state["current"] or {"which": "end of " + list(state["corpora"])[-1]})
        if len(places) == n:
            raise Crash(f"killed after snapshot {n}")

    monkeypatch.setattr(preprocess, "_save_snapshot", save_then_crash)
    return places


def _local_hub(monkeypatch, paths: dict[str, Path]) -> None:
    """``datasets.load_dataset('local/<which>')`` streams the local JSONL (never the hub)."""
    import datasets

    real = datasets.load_dataset

    def load(name, config=None, split="train", streaming=False, **kw):
        assert name.startswith("local/") and streaming
        return real("json", data_files=str(paths[name.split("/")[1]]), split=split, streaming=True)

    monkeypatch.setattr(datasets, "load_dataset", load)


def _data_files(run: Path) -> dict[str, bytes]:
    """Every data file's bytes; grow.pkl (a pickle, whose bytes depend on object sharing) by meaning."""
    data = run / "data"
    files = {str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*"))
             if p.is_file() and p.name not in ("manifest.json", "grow.pkl")}
    return files | {"grow.pkl": _grow_meaning(data / "grow.pkl")}


def _grow_meaning(path: Path) -> str:
    """Where a grown train split would continue: stream position, held-out count, reports, packer tail."""
    import pickle

    state = pickle.loads(path.read_bytes())
    place, train = state["domain"], state["train"]
    return repr([place["stream"]["documents_read"], place["held_out"], place["tokens"], vars(place["filters"]),
                 vars(place["dedup"]), train["buffered"], train["documents"], train["documents_offset"],
                 [(d, t.tolist()) for d, t in train["fragments"]], train["writer"]["shards"], state["dedup_log"],
                 state["train_content_hash"], state["stream_fingerprint"]])


def _comparable(manifest: dict) -> dict:
    """The manifest without timings and dates."""
    return {k: v for k, v in manifest.items() if k not in ("created", "seconds", "tokenizer_load_seconds",
                                                           "tokens_per_second", "stream_tokens_per_second")}


@pytest.mark.parametrize("kind", ["files", "hub"])
def test_a_crash_after_n_shards_resumes_at_the_next_shard_without_redoing_work(tmp_path, monkeypatch, tokenized,
                                                                               capsys, kind):
    # datasets' JSON reader refuses a broken line; a record without text is what a hub stream can yield
    paths = _write_corpora(tmp_path, '{"id": "x", "text": null, "int_score": 3}' if kind == "hub" else "{broken json")
    if kind == "hub":
        _local_hub(monkeypatch, paths)
    params = _params(paths, kind)
    reference = prepare_data(params, tmp_path / "whole", progress=False)
    whole_texts = list(tokenized)
    assert reference["splits"]["train"]["num_sequences"] >= 4 * 32  # several shards of 32 sequences
    assert not (tmp_path / "whole" / "data" / SNAPSHOT).exists()  # a finished run leaves no snapshot
    assert (tmp_path / "whole" / "data" / DEDUP_LOG).exists()  # kept: a larger train budget appends (growth)
    if kind == "hub":  # the filter ran inside the stream: some records never became documents
        assert reference["corpora"]["domain"]["documents_read"] < 120

    # crash points: after the first train shard, later in the domain corpus, and inside the general one
    places = _crash_after(monkeypatch, 10_000)
    prepare_data(params, tmp_path / "count", progress=False)
    whichs = [p["which"] for p in places]
    assert whichs.count("domain") >= 3 and "general" in whichs, whichs
    crash_points = [1, whichs.count("domain") - 1, whichs.index("general") + 1]

    for n in crash_points:
        run = tmp_path / f"crash{n}"
        tokenized.clear()
        _crash_after(monkeypatch, n)
        with pytest.raises(Crash):
            prepare_data(params, run, progress=False)
        before = list(tokenized)
        assert (run / "data" / SNAPSHOT).is_file() and not (run / "data" / "manifest.json").exists()

        tokenized.clear()
        monkeypatch.setattr(preprocess, "_save_snapshot", _real_save)
        capsys.readouterr()
        resumed = prepare_data(params, run, progress=False)
        assert "resuming the preprocessing" in capsys.readouterr().out
        after = list(tokenized)
        # nothing tokenized twice, nothing skipped: the two halves are exactly the uninterrupted run's work
        assert before + after == whole_texts, n
        assert len(after) < len(whole_texts)
        for key in reference["corpora"]["domain"]:
            assert resumed["corpora"]["domain"][key] == reference["corpora"]["domain"][key], (n, key)
        assert _comparable(resumed) == _comparable(reference), n
        assert resumed["content_hash"] == reference["content_hash"]
        assert _data_files(run) == _data_files(tmp_path / "whole"), n  # shards, documents.jsonl, split.json


def test_changed_parameters_or_input_or_a_damaged_shard_start_over(tmp_path, monkeypatch, tokenized, capsys):
    paths = _write_corpora(tmp_path)
    params = _params(paths)
    reference = prepare_data(params, tmp_path / "whole", progress=False)
    whole = len(tokenized)

    def crash_then_rerun(run: Path, rerun_params, damage=None) -> tuple[dict, str]:
        _crash_after(monkeypatch, 3)
        with pytest.raises(Crash):
            prepare_data(params, run, progress=False)
        monkeypatch.setattr(preprocess, "_save_snapshot", _real_save)
        if damage:
            damage(run)
        tokenized.clear()
        capsys.readouterr()
        manifest = prepare_data(rerun_params, run, progress=False)
        return manifest, capsys.readouterr().out

    # a parameter change (step fingerprint) starts over
    other = params.model_copy(update={"preprocess": params.preprocess.model_copy(update={"val_max_docs": 5})})
    manifest, out = crash_then_rerun(tmp_path / "params", other)
    assert "parameters or preprocessing code changed; starting over" in out
    assert "\nresuming the preprocessing" not in "\n" + out
    assert manifest["fingerprint"] != reference["fingerprint"]

    # an input file edited in between starts over
    def edit(run):
        with open(paths["general"], "a") as fh:
            fh.write(json.dumps({"text": _text(random.Random(9), 60)}) + "\n")

    manifest, out = crash_then_rerun(tmp_path / "input", params, edit)
    assert "an input file changed" in out and len(tokenized) > whole * 0.9
    paths = _write_corpora(tmp_path)  # the original input again (same bytes, new times)

    # a shard damaged after it was written is detected by its content hash and never packed on
    def flip(run):
        shard = run / "data" / "train" / "shard-00000.ids.npy"
        raw = bytearray(shard.read_bytes())
        raw[-1] ^= 0xFF
        shard.write_bytes(bytes(raw))

    manifest, out = crash_then_rerun(tmp_path / "damaged", params, flip)
    assert "shard-00000.ids.npy: missing or its content hash differs" in out and "starting over" in out
    assert len(tokenized) == whole and manifest["content_hash"] == reference["content_hash"]
