"""The corpus kinds by the schema's ``kind`` literal: the one place that lists them."""

from __future__ import annotations

from typing import Any

from .base import CorpusKind
from .files import LocalFiles
from .hub import HubDataset
from .register import PackagedRegister
from .wiki import PackagedWiki

KINDS: dict[str, type[CorpusKind]] = {
    "packaged_wiki": PackagedWiki,
    "files": LocalFiles,
    "hub": HubDataset,
    "packaged_register": PackagedRegister,
}


def kind_of(spec: Any) -> CorpusKind:
    """The kind that reads ``spec`` (a corpus section of the parameters)."""
    try:
        return KINDS[spec.kind](spec)
    except KeyError:  # the schema admits no other kind; a kind defined elsewhere must be registered
        raise TypeError(f"unknown corpus kind {type(spec).__name__} ({spec.kind!r})") from None


def corpus_provenance(source: dict) -> dict:
    """Where a corpus came from and under which licence, from its ``kind`` (the model card's datasets)."""
    kind = KINDS.get(source.get("kind"))
    if kind is None:
        return {"dataset": str(source.get("kind")), "licence": "unknown"}
    return kind.provenance(source)
