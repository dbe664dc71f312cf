"""The interface every corpus kind implements, and what one pass over a corpus hands it.

A kind is one class per ``kind`` literal of the schema (``packaged_wiki``, ``files``, ``hub``,
``packaged_register``). Everything the rest of the package asks of a corpus goes through it: its
documents, the sentence notebooks 01/02 and the model card show, what identifies its input for the
preprocessing snapshot, its provenance and licence, and the packaged assets it reads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

from ..documents import Document, ProblemReport
from ..errors import DataError


class CorpusError(DataError):
    """A corpus cannot be read at all (a path or glob matching nothing); the message names it."""


#: JSON's own names for the Python values a parsed record can hold, for the reasons below
_JSON_KINDS = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def json_kind(value: Any) -> str:
    """The JSON name of a parsed value's type (``array``, ``number`` …), as a user sees it in the file."""
    return _JSON_KINDS.get(type(value), type(value).__name__)


def text_problem(record: Any, text_field: str) -> str | None:
    """Why ``record`` holds no text in ``text_field``, or ``None`` when it does.

    Each case gets its own reason, because each has its own fix: a line that is not an object (an array,
    a bare string), a record without the field (the wrong ``text_field``), a field left null, a field
    holding a number or a list (an export that wrote the wrong column)."""
    if not isinstance(record, dict):
        return f"not a JSON object (a JSON {json_kind(record)})"
    if text_field not in record:
        return f"missing text field '{text_field}'"
    value = record[text_field]
    if value is None:
        return f"text field '{text_field}' is null"
    if not isinstance(value, str):
        return f"text field '{text_field}' is not a string (a JSON {json_kind(value)})"
    return None


@dataclass
class Reading:
    """What one pass over a corpus is handed (``CorpusStream`` makes one per pass)."""

    base_dir: Path  # relative paths of local files start here (the parameter file's folder)
    name: str  # the corpus's name in the parameters (``domain``, ``registers.chat`` …), for messages
    problems: ProblemReport  # unreadable records are counted here, never fatal, never silent
    seed: int | None = None  # the packaged Wikipedia is read in the permutation this seeds (None: file order)
    tokenizer: Any = None  # only registers use it: instruction pairs in the model's chat template
    saved: dict | None = None  # a source's own saved place (``CorpusKind.own_place``) to restart after
    position: dict = field(default_factory=dict)  # where a source keeps its own place current, for ``own_place``


class CorpusKind(ABC):
    """One corpus kind, built from its parameter section (``spec``). See ``cpt_utils.corpora`` for how to add one."""

    kind: ClassVar[str]  # the schema's ``kind`` literal: the registry's key

    def __init__(self, spec: Any):
        self.spec = spec

    @abstractmethod
    def documents(self, reading: Reading) -> Iterator[Document]:
        """The corpus's documents in its reading order, unreadable records counted in ``reading.problems``."""

    @abstractmethod
    def describe(self, seed: int | None) -> str:
        """One line naming the source, as notebook 01, notebook 02 and the manifest show it."""

    def content_identity(self, base_dir: Path) -> list | None:
        """What says the input is unchanged since a snapshot (local files: path, size, modification time);
        None where the parameters name the content already (packaged and hub sources)."""
        return None

    def permuted(self, seed: int | None) -> bool:
        """Whether the stream is a seeded random permutation of its source (else: the source's order)."""
        return False

    def own_place(self, position: dict) -> dict | None:
        """A source that saves its own place (a hub stream: ``datasets``' iterable state) returns it from
        ``reading.position``; None: a resumed pass skips the documents already read instead."""
        return None

    @classmethod
    @abstractmethod
    def provenance(cls, source: dict) -> dict:
        """``{"dataset": …, "licence": …}`` for the model card, from the spec as the manifest records it
        (``spec.model_dump``): the card is written from a finished run's files."""

    @classmethod
    def assets(cls, source: dict) -> tuple[str, ...]:
        """The packaged assets (``cpt_utils.assets`` names) the corpus reads; none for local or hub data."""
        return ()
