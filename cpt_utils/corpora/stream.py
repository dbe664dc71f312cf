"""``CorpusStream``: any corpus kind as a re-iterable, resumable stream of ``Document``s.

Every kind streams (nothing is held in memory beyond one parquet batch), so the same code serves the
10k-document packaged corpus and a streamed FineWeb-Edu. A malformed line never stops a run and is
never silently dropped: it is counted by reason in ``CorpusStream.problems`` with a few examples.
"""

from __future__ import annotations

import copy
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..documents import Document, ProblemReport
from .base import Reading
from .registry import kind_of

if TYPE_CHECKING:
    from ..config import Corpus


class CorpusStream:
    """An iterable of ``Document``s from one corpus spec; re-iterable, counting problems per pass."""

    def __init__(self, spec: Corpus, base_dir: str | Path | None = None, name: str = "corpus", tokenizer=None,
                 seed: int | None = None):
        self.spec = spec
        self.kind = kind_of(spec)
        self.seed = seed  # the packaged Wikipedia is read in the permutation this seeds (None: file order)
        self.tokenizer = tokenizer  # only registers use it: instruction pairs in the model's chat template
        self.name = name
        self.base_dir = Path(base_dir) if base_dir else Path.cwd()
        self.problems = ProblemReport()
        self.documents_read = 0
        self._resume: dict | None = None  # where the next pass starts (``resume_from``)
        self._position: dict = {}  # a source's own place (the open hub dataset, its record count): ``state_dict``

    def resume_from(self, state: dict | None) -> None:
        """Make the next pass start after the documents counted in ``state`` (from ``state_dict``)."""
        self._resume = state

    def state_dict(self) -> dict:
        """The stream's position after the last document yielded, and the problems counted so far.

        A hub stream saves ``datasets``' own iterable state (no record is read twice on resume); other
        sources save the document count and skip that many documents (parsing, not processing, them).
        """
        state = {"documents_read": self.documents_read, "problems": self.problems}
        own = self.kind.own_place(self._position)
        if own is not None:
            state["hub"] = own
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

    def _documents(self, saved: dict | None = None) -> Iterator[Document]:
        reading = Reading(base_dir=self.base_dir, name=self.name, problems=self.problems, seed=self.seed,
                          tokenizer=self.tokenizer, saved=saved, position=self._position)
        yield from self.kind.documents(reading)

    def source_identity(self) -> list | None:
        """What says the input is unchanged since a snapshot: each local file's path, size and
        modification time (hub and packaged sources are named by the parameters already)."""
        return self.kind.content_identity(self.base_dir)

    def describe(self) -> str:
        return self.kind.describe(self.seed)

    @property
    def permuted(self) -> bool:
        """Whether the stream is a seeded random permutation of its source (else: the source's order)."""
        return self.kind.permuted(self.seed)


def open_corpus(spec: Corpus, base_dir: str | Path | None = None, name: str = "corpus", tokenizer=None,
                seed: int | None = None) -> CorpusStream:
    return CorpusStream(spec, base_dir, name, tokenizer, seed)
