"""Duplicate removal over a document stream: exact (content hash) and near (MinHash LSH, datasketch).

The first occurrence wins, so the result does not depend on anything but stream order. Memory grows
with the number of *documents* kept (a 16-byte hash for exact dedup; the LSH band keys for near dedup,
about 1–2 KB per document), never with their length: the text itself is not held.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from .corpora import Document
from .params import DedupParams

_WORDS = re.compile(r"\w+")
MAX_CLUSTERS = 10


def exact_key(text: str) -> bytes:
    """Hash of the text up to case and whitespace (trivial reformatting is still a duplicate)."""
    return hashlib.blake2b(" ".join(text.lower().split()).encode(), digest_size=16).digest()


def shingles(text: str, size: int) -> set[bytes]:
    words = _WORDS.findall(text.lower())
    if len(words) <= size:
        return {" ".join(words).encode()}
    return {" ".join(words[i:i + size]).encode() for i in range(len(words) - size + 1)}


@dataclass
class DedupReport:
    exact_removed: int = 0
    near_removed: int = 0
    clusters: dict[str, list[dict]] = field(default_factory=dict)  # kept id -> near-duplicates dropped

    def as_dict(self) -> dict:
        return {"exact_removed": self.exact_removed, "near_removed": self.near_removed,
                "clusters": [{"kept": k, "removed": v} for k, v in list(self.clusters.items())[:MAX_CLUSTERS]],
                "clusters_total": len(self.clusters)}


class Deduplicator:
    """Stateful filter: call ``stream(docs)``; ``seen`` persists, so the domain corpus and then the
    general corpus can pass through one instance (a general document that duplicates a domain one is
    dropped, which keeps duplicates out of the held-out sets too)."""

    def __init__(self, params: DedupParams):
        self.params = params
        self._exact: set[bytes] = set()
        self._lsh = None
        if params.near:
            from datasketch import MinHashLSH

            self._lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
        self._count = 0

    def _minhash(self, text: str):
        from datasketch import MinHash

        mh = MinHash(num_perm=self.params.num_perm, seed=1)
        mh.update_batch(list(shingles(text, self.params.shingle_size)))
        return mh

    def stream(self, docs: Iterable[Document], report: DedupReport) -> Iterator[Document]:
        for doc in docs:
            if self.params.exact:
                key = exact_key(doc.text)
                if key in self._exact:
                    report.exact_removed += 1
                    continue
                self._exact.add(key)
            if self._lsh is not None:
                mh = self._minhash(doc.text)
                matches = self._lsh.query(mh)
                if matches:
                    report.near_removed += 1
                    kept = matches[0]
                    if len(report.clusters) < MAX_CLUSTERS or kept in report.clusters:
                        report.clusters.setdefault(kept, []).append({"id": doc.id, "text": doc.text[:200]})
                    continue
                self._count += 1
                self._lsh.insert(doc.id if doc.id not in self._lsh else f"{doc.id}#{self._count}", mh)
            yield doc
