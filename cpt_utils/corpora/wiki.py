"""The ``packaged_wiki`` kind: Wikipedia's Vital Articles lead sections, shipped in a pinned package.

The reading itself (fetch, read, seeded order) is ``cpt_utils.packaged_text``: the tiny tokenizer
trains on the same text without the corpus machinery. Given a seed (preprocessing passes
``params.seed``) the file is read in a seeded random permutation, so the part read before the training
budget fills is a random sample of the whole file, not its first topic.
"""

from __future__ import annotations

from typing import Iterator

from ..assets import ASSETS
from ..documents import Document
from ..packaged_text import WIKI_ASSET, iter_packaged_wiki
from .base import CorpusKind, Reading


class PackagedWiki(CorpusKind):
    """``kind: packaged_wiki``: the articles of ``topics``."""

    kind = "packaged_wiki"

    def documents(self, reading: Reading) -> Iterator[Document]:
        yield from iter_packaged_wiki(self.spec.topics, reading.seed)

    def describe(self, seed: int | None) -> str:
        order = "file order" if seed is None else f"a random permutation seeded by {seed}"
        return f"packaged Wikipedia Vital Articles, topics: {', '.join(self.spec.topics)} (read in {order})"

    def permuted(self, seed: int | None) -> bool:
        return seed is not None

    @classmethod
    def provenance(cls, source: dict) -> dict:
        a = ASSETS[WIKI_ASSET]
        return {"dataset": f"{a.package}=={a.version} ({a.name})", "licence": a.license}

    @classmethod
    def assets(cls, source: dict) -> tuple[str, ...]:
        return (WIKI_ASSET,)
