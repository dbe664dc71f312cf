"""Document sources behind one interface: iterate ``Document``s, count what could not be read.

Every source streams (nothing is held in memory beyond one parquet batch), so the same code serves the
10k-document packaged corpus and a streamed FineWeb-Edu. A malformed line never stops a run and is
never silently dropped: it is counted by reason in ``CorpusStream.problems`` with a few examples.

Order: local files and hub streams are read in their own order; the packaged Wikipedia, given a seed
(preprocessing passes ``params.seed``), in a seeded random permutation, so that the part of it read
before the training budget fills is a random sample of the whole file, not its first topic.
"""

from __future__ import annotations

import copy
import glob
import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

from .errors import DataError
from .params import Corpus, FilesCorpus, HubCorpus, PackagedWikiCorpus

MAX_EXAMPLES = 5
MAX_EXAMPLES_PER_REASON = 3


class CorpusError(DataError):
    """A corpus cannot be read at all (a path or glob matching nothing); the message names it."""


@dataclass
class Document:
    id: str
    text: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProblemReport:
    """Unreadable input, counted by reason, with the first few locations as evidence."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    where_by_reason: dict[str, list[str]] = field(default_factory=dict)  # reason -> first few file:line

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}")
        bucket = self.where_by_reason.setdefault(reason, [])
        if len(bucket) < MAX_EXAMPLES_PER_REASON:
            bucket.append(where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.total:
            return "no unreadable input"
        parts = ", ".join(f"{n} {reason}" for reason, n in self.counts.most_common())
        return f"{self.total} unreadable record(s) skipped ({parts}); e.g. " + "; ".join(self.examples[:3])

    def as_dict(self) -> dict:
        return {"total": self.total, "by_reason": dict(self.counts), "examples": list(self.examples),
                "where_by_reason": {k: list(v) for k, v in self.where_by_reason.items()}}


class CorpusStream:
    """An iterable of ``Document``s from one corpus spec; re-iterable, counting problems per pass."""

    def __init__(self, spec: Corpus, base_dir: str | Path | None = None, name: str = "corpus", tokenizer=None,
                 seed: int | None = None):
        self.spec = spec
        self.seed = seed  # the packaged Wikipedia is read in the permutation this seeds (None: file order)
        self.tokenizer = tokenizer  # only registers use it: instruction pairs in the model's chat template
        self.name = name
        self.base_dir = Path(base_dir) if base_dir else Path.cwd()
        self.problems = ProblemReport()
        self.documents_read = 0
        self._resume: dict | None = None  # where the next pass starts (``resume_from``)
        self._hub: dict = {}  # the open hub dataset and its record count: what ``state_dict`` saves

    def resume_from(self, state: dict | None) -> None:
        """Make the next pass start after the documents counted in ``state`` (from ``state_dict``)."""
        self._resume = state

    def state_dict(self) -> dict:
        """The stream's position after the last document yielded, and the problems counted so far.

        A hub stream saves ``datasets``' own iterable state (no record is read twice on resume); other
        sources save the document count and skip that many documents (parsing, not processing, them).
        """
        state = {"documents_read": self.documents_read, "problems": self.problems}
        if self._hub.get("dataset") is not None and hasattr(self._hub["dataset"], "state_dict"):
            state["hub"] = {"dataset": self._hub["dataset"].state_dict(), "records": self._hub["records"]}
        return copy.deepcopy(state)

    def __iter__(self) -> Iterator[Document]:
        self.problems = ProblemReport()
        self.documents_read = 0
        resume, self._resume = self._resume, None
        docs = self._documents(resume.get("hub") if resume else None)
        if resume:
            if "hub" not in resume:
                for _ in islice(docs, resume["documents_read"]):
                    pass  # files and packaged corpora: skip what the saved run already processed
            vars(self.problems).update(copy.deepcopy(vars(resume["problems"])))  # in place: the source holds it
            self.documents_read = resume["documents_read"]
        limit = self.spec.max_docs
        for doc in docs:
            if limit is not None and self.documents_read >= limit:
                break
            self.documents_read += 1
            yield doc

    def _documents(self, hub_state: dict | None = None) -> Iterator[Document]:
        if isinstance(self.spec, PackagedWikiCorpus):
            yield from iter_packaged_wiki(self.spec.topics, self.seed)
        elif isinstance(self.spec, FilesCorpus):
            try:
                files = _expand(self.spec.paths, self.base_dir)
            except CorpusError as err:
                raise CorpusError(f"data.{self.name}.{err}") from None
            yield from iter_files(self.spec, self.base_dir, self.problems, files)
        elif isinstance(self.spec, HubCorpus):
            yield from iter_hub(self.spec, self.problems, hub_state, self._hub)
        elif self.spec.kind == "packaged_register":
            from .registers import iter_register

            yield from iter_register(self.spec.register, self.problems, self.tokenizer)
        else:  # pragma: no cover - the schema admits no other kind
            raise TypeError(f"unknown corpus kind {type(self.spec).__name__}")

    def source_identity(self) -> list | None:
        """What says the input is unchanged since a snapshot: each local file's path, size and
        modification time (hub and packaged sources are named by the parameters already)."""
        if not isinstance(self.spec, FilesCorpus):
            return None
        try:
            files = _expand(self.spec.paths, self.base_dir)
        except CorpusError:
            return None
        return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]

    def describe(self) -> str:
        spec = self.spec
        if isinstance(spec, PackagedWikiCorpus):
            order = "file order" if self.seed is None else f"a random permutation seeded by {self.seed}"
            return f"packaged Wikipedia Vital Articles, topics: {', '.join(spec.topics)} (read in {order})"
        if isinstance(spec, FilesCorpus):
            return f"local files {', '.join(spec.paths)} (field '{spec.text_field}')"
        if spec.kind == "packaged_register":
            from .registers import REGISTERS

            return f"packaged register '{spec.register}': {REGISTERS[spec.register].what}"
        score = f", int_score ≥ {spec.min_int_score}" if spec.min_int_score is not None else ""
        return f"hub dataset {spec.dataset}{'/' + spec.config if spec.config else ''} [{spec.split}]{score}"


    @property
    def permuted(self) -> bool:
        """Whether the stream is a seeded random permutation of its source (else: the source's order)."""
        return isinstance(self.spec, PackagedWikiCorpus) and self.seed is not None


def open_corpus(spec: Corpus, base_dir: str | Path | None = None, name: str = "corpus", tokenizer=None,
                seed: int | None = None) -> CorpusStream:
    return CorpusStream(spec, base_dir, name, tokenizer, seed)


# ------------------------------------------------------------------------------------------ sources
def wiki_order(keys: list[str], seed: int | None) -> list[str]:
    """``keys`` in the order they are read: file order for ``seed`` None, else a permutation of the whole
    file seeded by ``seed``. The file is sorted by topic, then title, so a stream read only in part (the
    training budget fills first) would otherwise be one topic, titles A–E; a permutation makes any prefix
    a uniform random sample. It permutes the whole file (before the topic filter), so the order of an
    article does not depend on which topics are chosen."""
    if seed is None:
        return list(keys)
    import numpy as np

    return [keys[i] for i in np.random.default_rng([seed, WIKI_ORDER_STREAM]).permutation(len(keys))]


WIKI_ORDER_STREAM = 0x77696B69  # "wiki": the permutation's own random stream, apart from other seeded draws


def iter_packaged_wiki(topics: list[str] | None, seed: int | None = None) -> Iterator[Document]:
    """The packaged Vital Articles lead sections, restricted to ``topics``, in file order or (``seed``)
    in a seeded random permutation (``wiki_order``)."""
    from .assets import fetch

    with open(fetch("wiki-vital-summaries"), encoding="utf-8") as fh:
        articles = json.load(fh)  # 6.5 MB: the one source small enough to read whole
    wanted = set(topics) if topics is not None else None
    for key in wiki_order(list(articles), seed):
        article = articles[key]
        topic = article.get("topic")
        if wanted is not None and topic not in wanted:
            continue
        text = (article.get("extract") or "").strip()
        yield Document(id=key, text=text, source="wiki-vital", meta={"topic": topic, "title": article.get("title")})


def match_files(pattern: str, base_dir: Path) -> tuple[list[Path], str | None]:
    """The files a path or glob names (relative ones start at ``base_dir``), or why there are none."""
    full = pattern if Path(pattern).is_absolute() else str(Path(base_dir) / pattern)
    matches = sorted(glob.glob(full, recursive=True))
    files = [Path(m) for m in matches if Path(m).is_file()]
    if files:
        return files, None
    if matches:
        return [], f"'{pattern}' matches only folders ({matches[0]}); name the files, e.g. '{pattern.rstrip('/')}/*.jsonl'"
    what = "no file matches" if glob.has_magic(pattern) else "file not found:"
    return [], f"{what} '{pattern}' (looked in {Path(base_dir).resolve()})"


def _expand(paths: list[str], base_dir: Path) -> list[Path]:
    files: list[Path] = []
    for i, pattern in enumerate(paths):
        matched, problem = match_files(pattern, base_dir)
        if problem:
            raise CorpusError(f"paths[{i}]: {problem}")
        files.extend(matched)
    return files


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _kind_of(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    return suffixes[-1].lstrip(".") if suffixes else "txt"


def iter_files(spec: FilesCorpus, base_dir: Path, problems: ProblemReport,
               files: list[Path] | None = None) -> Iterator[Document]:
    for path in files if files is not None else _expand(spec.paths, base_dir):
        kind = _kind_of(path)
        if kind in ("jsonl", "json", "ndjson"):
            yield from _iter_jsonl(path, spec.text_field, problems)
        elif kind == "parquet":
            yield from _iter_parquet(path, spec.text_field, problems)
        elif kind in ("txt", "md", "text"):
            yield from _iter_txt(path, spec.txt_mode, problems)
        else:
            problems.add(f"unsupported file type '.{kind}' (use .txt, .jsonl or .parquet)", str(path))


def _iter_jsonl(path: Path, text_field: str, problems: ProblemReport) -> Iterator[Document]:
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            where = f"{path.name}:{lineno}"
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                problems.add("non-UTF-8 bytes", where)
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                problems.add("invalid JSON", where)
                continue
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                problems.add(f"missing text field '{text_field}'", where)
                continue
            meta = {k: v for k, v in record.items() if k != text_field and isinstance(v, (str, int, float, bool))}
            yield Document(id=str(record.get("id", where)), text=record[text_field], source=path.name, meta=meta)


def _iter_parquet(path: Path, text_field: str, problems: ProblemReport) -> Iterator[Document]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if text_field not in pf.schema_arrow.names:
        problems.add(f"missing text column '{text_field}' (columns: {pf.schema_arrow.names})", path.name)
        return
    row = 0
    for batch in pf.iter_batches(batch_size=1024, columns=[text_field]):
        for value in batch.column(0).to_pylist():
            row += 1
            if not isinstance(value, str):
                problems.add(f"missing text field '{text_field}'", f"{path.name}:row {row}")
                continue
            yield Document(id=f"{path.name}:{row}", text=value, source=path.name)


def _iter_txt(path: Path, mode: str, problems: ProblemReport) -> Iterator[Document]:
    with _open_binary(path) as fh:
        data = fh.read() if mode != "lines" else None
        if mode == "lines":
            for lineno, raw in enumerate(fh, 1):
                try:
                    text = raw.decode("utf-8").strip()
                except UnicodeDecodeError:
                    problems.add("non-UTF-8 bytes", f"{path.name}:{lineno}")
                    continue
                if text:
                    yield Document(id=f"{path.name}:{lineno}", text=text, source=path.name)
            return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        problems.add("non-UTF-8 bytes", path.name)
        return
    if mode == "file":
        yield Document(id=path.name, text=text, source=path.name)
    else:
        for i, para in enumerate(p.strip() for p in text.split("\n\n")):
            if para:
                yield Document(id=f"{path.name}#{i}", text=para, source=path.name)


def iter_hub(spec: HubCorpus, problems: ProblemReport, state: dict | None = None,
             position: dict | None = None) -> Iterator[Document]:
    """A Hugging Face dataset, streamed; FineWeb-Edu's ``int_score`` filter applied on the fly.

    ``state`` (a saved ``position``) restarts the stream after the records already read; ``position``
    is kept current: the dataset (whose ``state_dict()`` is the stream's place) and the records read.
    """
    from datasets import load_dataset

    ds = load_dataset(spec.dataset, spec.config, split=spec.split, streaming=spec.streaming)
    start = 0
    if state is not None:
        ds.load_state_dict(state["dataset"])
        start = state["records"]
    position = position if position is not None else {}
    position.update(dataset=ds, records=start)
    for i, record in enumerate(ds, start):
        position["records"] = i + 1
        text = record.get(spec.text_field)
        if not isinstance(text, str):
            problems.add(f"missing text field '{spec.text_field}'", f"{spec.dataset}:{i}")
            continue
        if spec.min_int_score is not None and (record.get("int_score") or 0) < spec.min_int_score:
            continue
        meta = {k: record[k] for k in ("url", "int_score", "score", "language") if k in record}
        yield Document(id=str(record.get("id", i)), text=text, source=spec.dataset, meta=meta)
