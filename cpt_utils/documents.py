"""A document and the bad-record report: what every corpus yields and counts, in a leaf module.

Leaf on purpose: the corpus kinds, the cleaning and deduplication stages, the packaged-text readers and
the tokenizer-training text all speak ``Document``; none of them should have to import the others for it.
A malformed record never stops a run and is never silently dropped: it is counted by reason in a
``ProblemReport`` with a few examples.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 5
MAX_EXAMPLES_PER_REASON = 3


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
