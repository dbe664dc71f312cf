"""The document-level held-out split: which documents are held out, and the bottom-k sample kept of them.

Decided per *document* (a hash of seed and id), before packing, so no sequence can mix training and
validation text and a document is a held-out candidate on every run. Its own module because the
preprocessing, its growth and the reports all ask the same questions of it.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from dataclasses import dataclass, field

from .documents import Document


def is_held_out(doc_id: str, seed: int, fraction: float) -> bool:
    """Deterministic document-level split: the same document is a held-out candidate on every run."""
    return held_out_rank(doc_id, seed) / 2**64 < fraction


def held_out_rank(doc_id: str, seed: int) -> int:
    """The document's 64-bit hash of (seed, id): below ``fraction · 2^64`` it is a held-out candidate, and
    the smallest ones are kept (``HeldOutSample``). The same hash as ``is_held_out``."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest(), "big")


MIN_HELD_OUT_DOCUMENTS = 20  # below this a document-clustered SE is unreliable: the manifest says so


def document_group(doc: Document) -> str:
    """What a held-out set's composition counts: the topic (packaged Wikipedia), the work (fiction), else
    the source (file, dataset or register)."""
    return str(doc.meta.get("topic") or doc.meta.get("work") or doc.source)


@dataclass(order=True)
class HeldItem:
    """One kept candidate; ``payload`` is its token ids (domain, general) or the document (registers)."""

    rank: int
    order: int
    doc_id: str = field(compare=False)
    source: str = field(compare=False)
    group: str = field(compare=False)
    payload: object = field(compare=False, repr=False)


@dataclass
class HeldOutSample:
    """A bottom-k sample: of every candidate offered (a document whose hash of (seed, id) fell in the
    held-out fraction), the ``cap`` with the smallest hash are kept. The hash is independent of the
    document's place in the stream, so the set is a uniform random sample of the candidates read, the
    same whatever their order (the first ``cap`` in stream order would be the stream's first topic).
    Candidates not kept are never trained on either. Picklable: the preprocessing snapshot holds it."""

    cap: int | None
    candidates: int = 0
    heap: list[tuple[int, int, HeldItem]] = field(default_factory=list)  # max-heap by rank (negated)

    def would_keep(self, rank: int) -> bool:
        """Whether a candidate of this rank would be kept now (a rejected one never is later: the
        threshold only falls), so a candidate can be rejected before it is tokenized."""
        return self.cap is None or len(self.heap) < self.cap or rank < -self.heap[0][0]

    def count(self) -> None:
        """A candidate was read (kept or not)."""
        self.candidates += 1

    def offer(self, item: HeldItem) -> None:
        """Keep ``item`` if it is among the ``cap`` smallest ranks so far (it was counted already)."""
        entry = (-item.rank, -item.order, item)
        if self.cap is None or len(self.heap) < self.cap:
            heapq.heappush(self.heap, entry)
        elif item.rank < -self.heap[0][0]:
            heapq.heapreplace(self.heap, entry)

    def kept(self) -> list[HeldItem]:
        """The kept candidates by rank: the packing order, so the split does not depend on stream order."""
        return sorted(item for _, _, item in self.heap)

    def report(self, documents_read: int, whole_stream_read: bool, ordered_by: str) -> dict:
        """The manifest's ``held_out`` entry (without the split's padding, added when it is packed)."""
        kept = self.kept()
        by = Counter(item.group for item in kept)
        return {"documents": len(kept), "composition": dict(by.most_common()),
                "candidates_seen": self.candidates, "cap": self.cap, "documents_read": documents_read,
                "whole_stream_read": whole_stream_read, "stream_order": ordered_by,
                "corpus_had_fewer": self.cap is not None and self.candidates < self.cap,
                "too_few_for_se": len(kept) < MIN_HELD_OUT_DOCUMENTS,
                "how": (f"the {len(kept)} of {self.candidates} held-out candidates with the smallest hash of "
                        f"(seed, id) among the {documents_read} documents read"
                        + ("" if whole_stream_read else " (the stream was not read to its end)"))}
