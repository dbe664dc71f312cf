"""Preprocessing end to end on the tiny parameters and on deliberately bad corpora."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cpt_utils.clean import normalize
from cpt_utils.corpora import open_corpus
from cpt_utils.modeling import load_tokenizer
from cpt_utils.packing import document_separator_id
from cpt_utils.packing import SPLITS, PackedSplit, open_split
from cpt_utils.corpus_processing import PreprocessError
from cpt_utils.preprocess import prepare_data
from cpt_utils.config import validate_params


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from cpt_utils.config import load_params
    from cpt_utils.paths import REPO_ROOT

    params = load_params(REPO_ROOT / "params" / "tiny.yaml")
    run = tmp_path_factory.mktemp("run")
    return params, run, prepare_data(params, run, progress=False)


def _documents_of(split, sep: int) -> list[list[int]]:
    """Reassemble the packed token stream into documents (split at the separator), padding left out."""
    stream = np.concatenate([split[i][0] for i in range(len(split))]) if len(split) else np.array([], int)
    stream = stream[: len(stream) - split.padding_tokens]
    cuts = np.flatnonzero(stream == sep)
    docs, start = [], 0
    for cut in cuts:
        docs.append(stream[start:cut].tolist())
        start = cut + 1
    return docs


def test_manifest_records_what_training_needs(prepared):
    params, run, manifest = prepared
    assert manifest["seq_len"] == params.preprocess.seq_len == 64
    # tiny.yaml declares a control run, holds out news (val_news) and its replay_25 variant replays the rest (replay_news)
    assert set(manifest["splits"]) == set(SPLITS) | {"control", "val_news", "replay_news"}
    for name, split in manifest["splits"].items():
        assert split["num_tokens"] == split["num_sequences"] * 64 > 0, name
        assert PackedSplit(run / "data" / name).num_tokens == split["num_tokens"]
    assert manifest["tokenizer"]["separator_token"] == "<|endoftext|>"
    assert manifest["corpora"]["domain"]["filters"]["seen"] == 150
    assert len(manifest["content_hash"]) == 32


def test_no_document_is_in_two_splits(prepared):
    _, run, manifest = prepared
    ids = {name: [d["id"] for d in open_split(run, name).documents()] for name in manifest["splits"]}
    for name, docs in ids.items():
        assert len(docs) == len(set(docs)), f"{name} packs a document twice"
    training = lambda name: name == "control" or name.startswith("replay")  # noqa: E731
    for a in ids:
        for b in ids:
            # the control trains on the same general text as replay (by design: one tokenization, _Tee);
            # every other pair, and every held-out split against anything, must be disjoint
            if a < b and not (training(a) and training(b)):
                assert not set(ids[a]) & set(ids[b]), f"{a} and {b} share documents"
    # and every token of every sequence maps to a document of its own split
    split = open_split(run, "val_domain")
    n_docs = len(split.documents())
    for i in range(len(split)):
        assert split.document_indices(i).max() < n_docs
    owners = np.concatenate([split.document_indices(i) for i in range(len(split))])
    assert (owners == -1).sum() == split.padding_tokens  # padding belongs to no document
    assert set(owners[owners >= 0]) == set(range(n_docs))  # and every kept document is in the split


def test_packed_stream_decodes_back_to_the_cleaned_documents(prepared):
    params, run, _ = prepared
    tok = load_tokenizer(params.model)
    sep = document_separator_id(tok)
    for corpus, splits in (("domain", ("train", "val_domain")), ("general", ("replay", "val_general"))):
        source = {d.id: normalize(d.text) for d in open_corpus(getattr(params.data, corpus), seed=params.seed)}
        for name in splits:
            split = open_split(run, name)
            packed_ids = [d["id"] for d in split.documents()]
            decoded = _documents_of(split, sep)
            if name.startswith("val_"):  # a held-out split pads its tail: every document is complete
                assert len(decoded) == len(packed_ids) == split.info["documents"], name
            else:  # every document is complete except those in the tail dropped at the end (< one sequence)
                assert len(packed_ids) - 3 <= len(decoded) <= len(packed_ids), name
            for doc_id, ids in zip(packed_ids, decoded):
                assert tok.decode(ids) == source[doc_id], (name, doc_id)


def test_positions_restart_at_every_document_and_every_sequence(prepared):
    params, run, _ = prepared
    sep = document_separator_id(load_tokenizer(params.model))
    split = open_split(run, "train")
    for i in range(min(20, len(split))):
        ids, pos = split[i]
        assert pos[0] == 0
        after_sep = np.flatnonzero(ids[:-1] == sep) + 1
        assert (pos[after_sep] == 0).all()
        others = np.setdiff1d(np.arange(1, len(ids)), after_sep)
        assert (pos[others] == pos[others - 1] + 1).all()


def test_second_run_reuses_the_data(prepared, capsys):
    params, run, manifest = prepared
    again = prepare_data(params, run, progress=False)
    assert again == manifest and "reusing prepared data" in capsys.readouterr().out


def _files_params(tmp_path, domain_lines, **pre):
    (tmp_path / "domain.jsonl").write_bytes(b"".join(domain_lines))
    good = " ".join(["General prose about history and art, written plainly."] * 12)
    (tmp_path / "general.jsonl").write_text("".join(json.dumps({"text": f"{good} Item {i}."}) + "\n" for i in range(40)))
    return validate_params({
        "model": {"source": "tiny"}, "seed": 0,
        "data": {"domain": {"kind": "files", "paths": [str(tmp_path / "domain.jsonl")]},
                 "general": {"kind": "files", "paths": [str(tmp_path / "general.jsonl")]}},
        "preprocess": {"seq_len": 32, "val_fraction": 0.2, "val_max_docs": 5, "dedup": {"near": False}, **pre},
    })


def test_bad_input_is_counted_and_enormous_documents_span_many_sequences(tmp_path):
    science = "Energy is conserved in every closed system, and physicists measure it in joules."
    lines = [json.dumps({"text": f"{science} Note {i}: " + science * 3}).encode() + b"\n" for i in range(30)]
    enormous = " ".join(f"Atoms of element {i} bond with neighbours." for i in range(3000))
    lines += [json.dumps({"text": ""}).encode() + b"\n",                       # empty document
              json.dumps({"text": "\x00\x01\ufffd\ufffd" * 200}).encode() + b"\n",  # binary garbage
              b'{"text": "caf\xe9 bytes that are not UTF-8"}\n',                 # non-UTF-8
              b"{broken json\n",
              b'{"text": "valid JSON that UTF-8 cannot encode: \\ud800"}\n',   # stopped preprocessing once
              json.dumps({"id": "huge", "text": enormous}).encode() + b"\n"]
    params = _files_params(tmp_path, lines, val_max_docs=50)  # every candidate kept: 'huge' is packed somewhere
    manifest = prepare_data(params, tmp_path / "run", progress=False)
    domain = manifest["corpora"]["domain"]
    assert domain["unreadable"]["by_reason"] == {"non-UTF-8 bytes": 1, "invalid JSON": 1,
                                                 "unpaired surrogate escape (not encodable as UTF-8)": 1}
    assert domain["filters"]["removed"]["empty"] == 1 and domain["filters"]["removed"]["binary"] == 1
    docs = {d["id"]: d for name in ("train", "val_domain") for d in open_split(tmp_path / "run", name).documents()}
    assert docs["huge"]["tokens"] > 20 * 32  # longer than twenty sequences, packed across them


def test_corpus_filtered_to_nothing_names_the_filter(tmp_path):
    lines = [json.dumps({"text": f"tiny doc {i}"}).encode() + b"\n" for i in range(20)]
    with pytest.raises(PreprocessError, match=r"data\.domain: all 20 documents were removed by filter 'word_count' "
                                              r"\(preprocess\.quality\.min_words/max_words\), e\.g\. 3 words"):
        prepare_data(_files_params(tmp_path, lines), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "data" / "manifest.json").exists()


def test_token_budget_stops_the_training_split(tmp_path, tiny_params):
    params = tiny_params.model_copy(update={"preprocess": tiny_params.preprocess.model_copy(update={"train_token_budget": 640})})
    manifest = prepare_data(params, tmp_path, progress=False)
    assert manifest["splits"]["train"]["num_tokens"] == 640
    assert manifest["splits"]["val_domain"]["num_sequences"] > 0  # the held-out set is still complete


def test_tokenize_batch_matches_the_tokenizer_and_reassembles_cut_documents(tiny_params):
    from cpt_utils.corpus_processing import MAX_CHARS_PER_PIECE, tokenize_batch

    tok = load_tokenizer(tiny_params.model)
    enormous = " ".join(f"word{i % 97}" for i in range(MAX_CHARS_PER_PIECE // 3))  # cut into several pieces
    texts = ["Energy is conserved.", "", "Ünïcode — “quotes” and emoji 🙂", enormous, "last one",
             "A page about GPT-2 that quotes its <|endoftext|> token"]
    ids = tokenize_batch(tok, texts)
    reference = tok(texts[:3] + texts[4:], add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert ids[:3] + ids[4:] == reference
    assert len(enormous) > 2 * MAX_CHARS_PER_PIECE and tok.decode(ids[3]) == enormous
    # a mentioned special token is text, not a document separator
    sep = document_separator_id(tok)
    assert sep not in ids[5] and tok.decode(ids[5]) == texts[5]
    assert tok("<|endoftext|>", add_special_tokens=False)["input_ids"] == [sep]  # what we avoid


def test_manifest_fingerprint_is_the_step_fingerprint_and_a_changed_parameter_redoes_the_work(prepared, tmp_path, capsys):
    from cpt_utils.config import step_fingerprint

    params, _, manifest = prepared
    assert manifest["fingerprint"] == step_fingerprint(params, "preprocess") and manifest["code_version"]
    assert manifest["corpora"]["domain"]["source"]["topics"] == ["Mathematics"]
    shorter = params.model_copy(update={"preprocess": params.preprocess.model_copy(update={"seq_len": 32})})
    first = prepare_data(params, tmp_path, progress=False)
    second = prepare_data(shorter, tmp_path, progress=False)
    assert "reusing" not in capsys.readouterr().out
    assert second["seq_len"] == 32 and second["fingerprint"] != first["fingerprint"]
    assert open_split(tmp_path, "train").seq_len == 32


def test_report_figures_and_tables_read_the_prepared_data(prepared):
    import matplotlib

    matplotlib.use("Agg")
    from cpt_utils import preprocess_report as report
    from cpt_utils.plots import unlabelled_axes

    params, run, manifest = prepared
    lengths = report.document_lengths(run)
    assert {s: len(v) for s, v in lengths.items()} == {s: manifest["splits"][s]["documents"] for s in SPLITS}
    for fig in (report.fig_document_lengths(lengths, params.preprocess.seq_len), report.fig_split_tokens(manifest)):
        assert unlabelled_axes(fig) == [] and any(ax.has_data() for ax in fig.axes)
    table = report.throughput_table(manifest)
    read = sum(c["filters"]["seen"] + c["unreadable"]["total"] for c in manifest["corpora"].values())
    assert table.loc["records read", "value"] == f"{read:,}" and read == 300  # tiny: 150 + 150 documents


def test_a_corpus_of_duplicates_or_of_nothing_is_a_clear_error(tmp_path):
    science = "Energy is conserved in every closed system, and physicists measure it in joules."
    lines = [json.dumps({"text": f"{science} Note {i}: " + science * 3}).encode() + b"\n" for i in range(30)]
    params = _files_params(tmp_path, lines)
    # the general corpus repeats the domain corpus: dedup (shared across corpora) leaves it empty
    params.data.general.paths = params.data.domain.paths
    with pytest.raises(PreprocessError, match=r"data\.general: all 30 documents were removed by exact-duplicate "
                                              r"removal \(preprocess\.dedup\.exact\) \(duplicates are found across both"):
        prepare_data(params, tmp_path / "run", progress=False)
    (tmp_path / "domain.jsonl").write_bytes(b"")
    with pytest.raises(PreprocessError, match=r"data\.domain: the corpus yielded no documents"):
        prepare_data(params, tmp_path / "run", progress=False)


def test_a_damaged_shard_is_detected_by_its_content_hash_and_never_reused_or_read(tmp_path, capsys):
    from cpt_utils.packing import PackedDataError, PackedSplit, verify_split

    science = "Energy is conserved in every closed system, and physicists measure it in joules."
    params = _files_params(tmp_path, [json.dumps({"text": f"{science} Note {i}: " + science * 3}).encode() + b"\n"
                                      for i in range(30)])
    run = tmp_path / "run"
    prepare_data(params, run, progress=False)
    train_dir = run / "data" / "train"
    ids = train_dir / "shard-00000.ids.npy"
    good = ids.read_bytes()
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF  # one token changed: same size, same header
    ids.write_bytes(bytes(flipped))
    assert len(verify_split(train_dir)) == 1 and "shard-00000.ids.npy: content hash differs" in verify_split(train_dir)[0]
    capsys.readouterr()
    prepare_data(params, run, progress=False)  # refuses to reuse it: prepares again
    assert "not reusing" in capsys.readouterr().out and verify_split(train_dir) == []
    assert ids.read_bytes() == good  # deterministic: the same bytes come back
    ids.write_bytes(good[:-10])  # a partly written shard
    with pytest.raises(PackedDataError, match=r"shard-00000\.ids\.npy: unreadable shard"):
        PackedSplit(train_dir)


def test_the_data_code_version_follows_what_preprocessing_imports(tmp_path, monkeypatch):
    """Prepared data are reused only while the code that decides their content is unchanged: a filter's
    code, a helper a filter comes to import and a packaged corpus's pin move the version; a docstring,
    a comment and a reflow do not."""
    import dataclasses
    import shutil

    from cpt_utils import assets, preprocess

    code = tmp_path / "cpt_utils"
    shutil.copytree(preprocess.PACKAGE, code, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(preprocess, "PACKAGE", code)
    before = preprocess._code_version()
    clean = code / "clean.py"
    text = clean.read_text()
    clean.write_text(text.replace('"""', '"""Reworded. ', 1) + "\n# a comment\n")
    assert preprocess._code_version() == before
    (code / "new_filter.py").write_text("THRESHOLD = 0.5\n")
    clean.write_text(text + "\nfrom .new_filter import THRESHOLD\n")
    with_helper = preprocess._code_version()
    assert with_helper != before
    (code / "new_filter.py").write_text("THRESHOLD = 0.75\n")
    assert preprocess._code_version() != with_helper
    wiki = assets.ASSETS["wiki-vital-summaries"]
    monkeypatch.setitem(assets.ASSETS, wiki.name, dataclasses.replace(wiki, version="9.9.9"))
    assert preprocess._code_version() not in (before, with_helper)


@pytest.mark.parametrize("which", ["domain", "notes"])
def test_an_edited_input_file_is_prepared_again_not_reused(tmp_path, capsys, which):
    """The parameters name the same files after an edit, so their fingerprint stayed the same and the old
    data were reused (only a snapshot or a growth looked at the files): a register's files count too."""
    science = "Energy is conserved in every closed system, and physicists measure it in joules."
    line = lambda i, topic: json.dumps({"text": f"{science} Note {i} on {topic}: " + science * 3}).encode() + b"\n"  # noqa: E731
    params = _files_params(tmp_path, [line(i, "heat") for i in range(30)])
    notes = tmp_path / "notes.jsonl"
    notes.write_bytes(b"".join(line(i, "light") for i in range(30)))
    params = params.model_copy(update={"data": params.data.model_copy(update={"registers": {
        "notes": validate_params({"data": {"registers": {"notes": {"kind": "files", "paths": [str(notes)]}}}}
                                 ).data.registers["notes"]}})})
    run = tmp_path / "run"
    first = prepare_data(params, run, progress=False)
    assert prepare_data(params, run, progress=False) == first and "reusing prepared data" in capsys.readouterr().out
    path = tmp_path / "domain.jsonl" if which == "domain" else notes
    path.write_bytes(path.read_bytes().replace(b" on ", b", edited, on "))  # every document, same file name
    again = prepare_data(params, run, progress=False)
    out = capsys.readouterr().out
    assert f"an input file of data.{'domain' if which == 'domain' else 'registers.notes'} changed" in out
    assert "reusing prepared data" not in out
    held_out = "val_notes" if which == "notes" else "val_domain"
    assert again["splits"][held_out]["content_hash"] != first["splits"][held_out]["content_hash"]
    assert prepare_data(params, run, progress=False) == again and "reusing prepared data" in capsys.readouterr().out
