"""The ``files`` kind: local ``.txt``, ``.jsonl`` / ``.json`` (JSON lines or one array of records),
``.csv`` / ``.tsv`` (a header row naming the text column) or ``.parquet`` files (gzip too), globs allowed.

Read in path order, streamed (nothing held beyond one parquet batch). Relative paths start at the
parameter file's folder. A malformed line is counted by reason (``ProblemReport``), never fatal; so is a
file that cannot be read on (a truncated ``.gz``, a damaged ``.parquet``): what was read before the damage is kept.
Editors' habits are not errors: a UTF-8 byte-order mark is dropped, Windows line ends split paragraphs.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..documents import Document, ProblemReport
from ..paths import match_files
from .base import CorpusError, CorpusKind, Reading, text_problem

if TYPE_CHECKING:
    from ..config import FilesCorpus


class LocalFiles(CorpusKind):
    """``kind: files``: the files the paths and globs of ``data.<name>.paths`` match."""

    kind = "files"

    def documents(self, reading: Reading) -> Iterator[Document]:
        try:
            files = _expand(self.spec.paths, reading.base_dir)
        except CorpusError as err:
            raise CorpusError(f"data.{reading.name}.{err}") from None
        yield from iter_files(self.spec, reading.base_dir, reading.problems, files)

    def describe(self, seed: int | None) -> str:
        return f"local files {', '.join(self.spec.paths)} (field '{self.spec.text_field}')"

    def content_identity(self, base_dir: Path) -> list | None:
        """Each local file's path, size and modification time (None: a pattern matches nothing)."""
        try:
            files = _expand(self.spec.paths, base_dir)
        except CorpusError:
            return None
        return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]

    @classmethod
    def provenance(cls, source: dict) -> dict:
        return {"dataset": "local files: " + ", ".join(source.get("paths", [])),
                "licence": "not recorded: the files' owner states it (check before publishing)"}


def _expand(paths: list[str], base_dir: Path) -> list[Path]:
    files: list[Path] = []
    for i, pattern in enumerate(paths):
        matched, problem = match_files(pattern, base_dir)
        if problem:
            raise CorpusError(f"paths[{i}]: {problem}")
        files.extend(matched)
    return files


#: what a damaged gzip stream raises part-way (truncated: EOFError; not gzip: BadGzipFile, an OSError; bad data: zlib.error)
_GZIP_DAMAGE = (EOFError, OSError, zlib.error)
#: a blank line between paragraphs: may hold spaces or tabs, and may end in \r\n (Windows) or \r (old Mac)
_NEWLINE = r"(?:\r\n|\n|\r(?!\n))"  # one line end, never half of a \r\n
_PARAGRAPH_BREAK = re.compile(_NEWLINE + r"[ \t]*" + _NEWLINE + r"\s*")


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _lines(path: Path, problems: ProblemReport) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) of a file; a gzip stream that breaks off is counted where it broke, and the
    lines before it are kept (a download cut short still gives what arrived)."""
    lineno = 0
    with _open_binary(path) as fh:
        try:
            for lineno, raw in enumerate(fh, 1):
                yield lineno, raw
        except (_GZIP_DAMAGE if path.suffix == ".gz" else ()) as err:
            problems.add(f"damaged gzip file, read up to here ({type(err).__name__})", f"{path.name}:{lineno + 1}")


def _unencodable(value) -> bool:
    """A string JSON can hold but UTF-8 cannot: an unpaired surrogate escape such as "\\ud800"."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _kind_of(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    return suffixes[-1].lstrip(".") if suffixes else "txt"


def iter_files(spec: FilesCorpus, base_dir: Path, problems: ProblemReport,
               files: list[Path] | None = None) -> Iterator[Document]:
    for path in files if files is not None else _expand(spec.paths, base_dir):
        kind = _kind_of(path)
        if kind == "json" and _opens_an_array(path):
            yield from _iter_json_array(path, spec.text_field, problems)
        elif kind in ("jsonl", "json", "ndjson"):
            yield from _iter_jsonl(path, spec.text_field, problems)
        elif kind in ("csv", "tsv"):
            yield from _iter_csv(path, spec.text_field, problems, "\t" if kind == "tsv" else ",")
        elif kind == "parquet":
            yield from _iter_parquet(path, spec.text_field, problems)
        elif kind in ("txt", "md", "text"):
            yield from _iter_txt(path, spec.txt_mode, problems)
        else:
            problems.add(f"unsupported file type '.{kind}' (use .txt, .jsonl, .json, .csv, .tsv or .parquet)", str(path))


def _iter_jsonl(path: Path, text_field: str, problems: ProblemReport) -> Iterator[Document]:
    for lineno, raw in _lines(path, problems):
        where = f"{path.name}:{lineno}"
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a byte-order mark opens some files
        except UnicodeDecodeError:
            problems.add("non-UTF-8 bytes", where)
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            problems.add("invalid JSON", where)
            continue
        document = _record_document(record, text_field, where, path.name, problems)
        if document is not None:
            yield document


def _record_document(record, text_field: str, where: str, source: str, problems: ProblemReport) -> Document | None:
    """The Document of one JSON record, or None with its problem counted."""
    problem = text_problem(record, text_field)
    if problem is not None:
        problems.add(problem, where)
        return None
    doc_id = str(record.get("id", where))
    if _unencodable(record[text_field]) or _unencodable(doc_id):
        problems.add("unpaired surrogate escape (not encodable as UTF-8)", where)
        return None
    meta = {k: v for k, v in record.items() if k != text_field and isinstance(v, (str, int, float, bool))
            and not (isinstance(v, str) and _unencodable(v))}
    return Document(id=doc_id, text=record[text_field], source=source, meta=meta)


def _opens_an_array(path: Path) -> bool:
    """Whether a ``.json`` file holds one JSON array (``[{...}, {...}]``, as many exports write) rather than
    JSON lines: its first character after whitespace and a byte-order mark is ``[``."""
    try:
        with _open_binary(path) as fh:
            head = fh.read(4096)
    except _GZIP_DAMAGE:
        return False  # read as lines, where the damage is counted
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def _iter_json_array(path: Path, text_field: str, problems: ProblemReport) -> Iterator[Document]:
    """The records of a ``.json`` file holding one array, each counted like a JSON line where it fails (its
    index in the array names it). A JSON array cannot be read in pieces: the file is parsed whole."""
    try:
        with _open_binary(path) as fh:
            records = json.loads(fh.read().decode("utf-8-sig"))
    except UnicodeDecodeError:
        problems.add("non-UTF-8 bytes", path.name)
        return
    except json.JSONDecodeError as err:
        problems.add("invalid JSON (a .json file holding one array: nothing of it read)", f"{path.name}:{err.lineno}")
        return
    except _GZIP_DAMAGE as err:
        problems.add(f"damaged gzip file ({type(err).__name__})", path.name)
        return
    for index, record in enumerate(records):
        document = _record_document(record, text_field, f"{path.name}[{index}]", path.name, problems)
        if document is not None:
            yield document


#: csv's default field limit is 128 KiB: a long document in one cell is a document, not a broken row
_CSV_FIELD_LIMIT = 1 << 30


def _iter_csv(path: Path, text_field: str, problems: ProblemReport, delimiter: str) -> Iterator[Document]:
    """Rows of a ``.csv`` / ``.tsv`` with a header; ``text_field`` names the text column, the other columns
    become metadata (``id`` names the document). A row with more or fewer cells than the header, or with
    bytes that are not UTF-8, is counted and the reading goes on; a file the csv reader cannot go on in (a
    quote never closed, a damaged ``.gz``) is counted where it stopped, the rows before kept."""
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    row, label = 0, "CSV" if delimiter == "," else "TSV"
    # undecodable bytes become lone surrogates, so that row alone is counted and the reading goes on
    with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape",
                                                     newline="") as text:
        reader = csv.DictReader(text, delimiter=delimiter, strict=True)
        try:
            if reader.fieldnames is None:
                return  # an empty file
            if text_field not in reader.fieldnames:
                problems.add(f"missing text column '{text_field}' (columns: {reader.fieldnames})", path.name)
                return
            for record in reader:
                row += 1
                where = f"{path.name}:{reader.line_num}"
                if None in record or None in record.values():  # cells beyond the header's, or too few
                    problems.add(f"malformed {label} row (cells do not match the header)", where)
                    continue
                if any(_unencodable(value) for value in record.values()):
                    problems.add("non-UTF-8 bytes", where)
                    continue
                document = _record_document(record, text_field, where, path.name, problems)
                if document is not None:
                    yield document
        except (csv.Error, *(_GZIP_DAMAGE if path.suffix == ".gz" else ())) as err:
            why = str(err) if isinstance(err, csv.Error) else type(err).__name__
            problems.add(f"unreadable {label}, read up to here ({why})",
                         f"{path.name}:row {row + 1}")


def _iter_parquet(path: Path, text_field: str, problems: ProblemReport) -> Iterator[Document]:
    import pyarrow as pa  # lazy: only parquet corpora pay for pyarrow
    import pyarrow.parquet as pq

    row = 0
    try:
        pf = pq.ParquetFile(path)
        if text_field not in pf.schema_arrow.names:
            problems.add(f"missing text column '{text_field}' (columns: {pf.schema_arrow.names})", path.name)
            return
        for batch in pf.iter_batches(batch_size=1024, columns=[text_field]):
            for value in batch.column(0).to_pylist():
                row += 1
                problem = text_problem({text_field: value}, text_field)  # a null cell, or a column of numbers
                if problem is not None:
                    problems.add(problem, f"{path.name}:row {row}")
                    continue
                yield Document(id=f"{path.name}:{row}", text=value, source=path.name)
    except (pa.ArrowException, OSError) as err:  # not parquet, or damaged part-way: keep the rows read
        problems.add(f"damaged parquet file, read up to here ({type(err).__name__})", f"{path.name}:row {row + 1}")


def _iter_txt(path: Path, mode: str, problems: ProblemReport) -> Iterator[Document]:
    if mode == "lines":
        for lineno, raw in _lines(path, problems):
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()
            except UnicodeDecodeError:
                problems.add("non-UTF-8 bytes", f"{path.name}:{lineno}")
                continue
            if text:
                yield Document(id=f"{path.name}:{lineno}", text=text, source=path.name)
        return
    with _open_binary(path) as fh:
        try:
            data = fh.read()
        except (_GZIP_DAMAGE if path.suffix == ".gz" else ()) as err:  # a whole-file document cut short is not kept
            problems.add(f"damaged gzip file ({type(err).__name__})", path.name)
            return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        problems.add("non-UTF-8 bytes", path.name)
        return
    if mode == "file":
        yield Document(id=path.name, text=text, source=path.name)
    else:
        for i, para in enumerate(p.strip() for p in _PARAGRAPH_BREAK.split(text)):
            if para:
                yield Document(id=f"{path.name}#{i}", text=para, source=path.name)
