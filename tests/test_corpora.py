"""Corpora: every source yields Documents, and unreadable records are counted, never fatal or silent."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cpt_utils.corpora import CorpusError, open_corpus
from cpt_utils.errors import CptError
from cpt_utils.config import WIKI_TOPICS, FilesCorpus, PackagedWikiCorpus


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
    assert stream.problems.counts == {"invalid JSON": 1, "missing text field 'text'": 2, "non-UTF-8 bytes": 1}
    assert stream.problems.total == 4
    assert "docs.jsonl:2: invalid JSON" in stream.problems.examples
    assert "4 unreadable record(s) skipped" in stream.problems.summary()


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
    assert stream.problems.counts == {"missing text field 'text'": 1, "non-UTF-8 bytes": 1}
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
