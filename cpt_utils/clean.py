"""Cleaning: normalise text, then drop documents that heuristic quality filters reject.

Filters are small functions ``text -> reason | None`` so each can be tested alone and the pipeline can
say exactly what it removed (a count per filter and a few examples of each), in the spirit of the
Gopher / C4 / FineWeb rules. Every threshold comes from ``preprocess.quality``; ``None`` disables a rule.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterable, Iterator

from .config import QualityParams
from .documents import Document

MAX_EXAMPLES = 3
EXAMPLE_CHARS = 300
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")
BOILERPLATE = ("cookie", "javascript", "terms of use", "privacy policy", "all rights reserved",
               "lorem ipsum", "click here", "sign up for", "subscribe to our")


def normalize(text: str) -> str:
    """NFC normalisation and whitespace repair; keeps paragraph breaks, removes control characters."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


Filter = Callable[[str], "str | None"]


def build_filters(q: QualityParams) -> list[tuple[str, Filter]]:
    """The enabled filters, in order, as ``(name, function)``; a function returns a reason or None."""
    filters: list[tuple[str, Filter]] = [("empty", lambda t: "empty after normalisation" if not t.strip() else None),
                                         ("binary", _binary_garbage)]

    @lru_cache(maxsize=1)  # every filter of one document shares one split (str hashes are cached)
    def words_of(t: str) -> list[str]:
        return t.split()

    if q.min_words is not None or q.max_words is not None:
        lo, hi = q.min_words or 0, q.max_words or float("inf")
        filters.append(("word_count", lambda t: None if lo <= len(words_of(t)) <= hi
                        else f"{len(words_of(t))} words, outside [{lo}, {hi}]"))
    if q.min_mean_word_length is not None or q.max_mean_word_length is not None:
        lo_w, hi_w = q.min_mean_word_length or 0.0, q.max_mean_word_length or float("inf")

        def mean_word_length(t: str) -> str | None:
            w = words_of(t)
            mean = sum(map(len, w)) / max(1, len(w))
            return None if lo_w <= mean <= hi_w else f"mean word length {mean:.1f} outside [{lo_w}, {hi_w}]"

        filters.append(("mean_word_length", mean_word_length))
    if q.max_symbol_ratio is not None:
        def symbols(t: str) -> str | None:
            ratio = (t.count("#") + t.count("...") + t.count("…")) / max(1, len(words_of(t)))
            return None if ratio <= q.max_symbol_ratio else f"symbol/word ratio {ratio:.2f} > {q.max_symbol_ratio}"

        filters.append(("symbol_ratio", symbols))
    if q.min_alpha_word_ratio is not None:
        def alpha(t: str) -> str | None:
            w = words_of(t)
            # isalpha() first: most words are letters only, and the per-character scan is the slow part
            ratio = sum(1 for x in w if x.isalpha() or any(c.isalpha() for c in x)) / max(1, len(w))
            return None if ratio >= q.min_alpha_word_ratio else f"alphabetic words {ratio:.2f} < {q.min_alpha_word_ratio}"

        filters.append(("alpha_words", alpha))
    if q.max_duplicate_line_fraction is not None:
        def dup_lines(t: str) -> str | None:
            lines = [ln for ln in t.split("\n") if ln.strip()]
            frac = 1 - len(set(lines)) / len(lines) if len(lines) > 1 else 0.0
            return None if frac <= q.max_duplicate_line_fraction else f"duplicate lines {frac:.2f}"

        filters.append(("duplicate_lines", dup_lines))
    if q.max_top_ngram_fraction is not None:
        def top_ngram(t: str) -> str | None:
            w = [x.lower() for x in words_of(t)]
            if len(w) < 100:  # a short text naturally repeats its subject's name
                return None
            counts = Counter(zip(w, w[1:]))
            gram, n = counts.most_common(1)[0]
            frac = n * (len(gram[0]) + len(gram[1])) / max(1, sum(map(len, w)))
            return None if frac <= q.max_top_ngram_fraction else f"top 2-gram {' '.join(gram)!r} covers {frac:.2f}"

        filters.append(("repeated_ngrams", top_ngram))
    if q.max_boilerplate_line_fraction is not None:
        def boilerplate(t: str) -> str | None:
            lines = [ln.lower() for ln in t.split("\n") if ln.strip()]
            if len(lines) < 3:  # a one-paragraph text mentioning "cookie" is not a web page footer
                return None
            frac = sum(any(b in ln for b in BOILERPLATE) for ln in lines) / max(1, len(lines))
            return None if frac <= q.max_boilerplate_line_fraction else f"boilerplate lines {frac:.2f}"

        filters.append(("boilerplate", boilerplate))
    return filters


_UNPRINTABLE = re.compile("[\ufffd\ue000-\uf8ff\ud800-\udfff\x00-\x08\x0e-\x1f]")


def _binary_garbage(text: str) -> str | None:
    """Mis-decoded or binary input: replacement characters, private-use code points, raw control bytes."""
    bad = len(_UNPRINTABLE.findall(text))
    ratio = bad / max(1, len(text))
    return f"{ratio:.1%} undecodable/unprintable characters" if ratio > 0.01 else None


@dataclass
class FilterReport:
    """What each filter removed: counts, and the first few documents as evidence."""

    seen: int = 0
    kept: int = 0
    removed: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict]] = field(default_factory=dict)

    def record(self, name: str, reason: str, doc: Document) -> None:
        self.removed[name] += 1
        bucket = self.examples.setdefault(name, [])
        if len(bucket) < MAX_EXAMPLES:
            bucket.append({"id": doc.id, "reason": reason, "text": doc.text[:EXAMPLE_CHARS]})

    def as_dict(self) -> dict:
        return {"seen": self.seen, "kept": self.kept, "removed": dict(self.removed), "examples": self.examples}


def clean_stream(docs: Iterable[Document], quality: QualityParams, report: FilterReport,
                 normalise: bool = True) -> Iterator[Document]:
    """Normalise and filter a document stream lazily, counting every removal in ``report``."""
    filters = build_filters(quality)
    for name, _ in filters:
        report.removed[name] += 0  # every enabled filter is listed, even one that removed nothing
    for doc in docs:
        report.seen += 1
        text = normalize(doc.text) if normalise else doc.text
        candidate = Document(doc.id, text, doc.source, doc.meta)
        for name, check in filters:
            reason = check(text)
            if reason is not None:
                report.record(name, reason, candidate)
                break
        else:
            report.kept += 1
            yield candidate
