"""The packaged Wikipedia (Vital Articles lead sections), read raw: fetch the asset, read it, seeded order.

Below the corpus kinds and the config on purpose: the tiny tokenizer (``modeling``) trains on this text
and must not pull in the parameter schema or the corpus machinery to get it. ``corpora.wiki`` wraps it
as the ``packaged_wiki`` corpus kind.
"""

from __future__ import annotations

import json
from typing import Iterator

import numpy as np

from .assets import fetch
from .documents import Document

#: The asset the packaged Wikipedia corpus reads (its package, version and licence are in ``assets.ASSETS``).
WIKI_ASSET = "wiki-vital-summaries"
WIKI_ORDER_STREAM = 0x77696B69  # "wiki": the permutation's own random stream, apart from other seeded draws


def wiki_order(keys: list[str], seed: int | None) -> list[str]:
    """``keys`` in the order they are read: file order for ``seed`` None, else a permutation of the whole
    file seeded by ``seed``. The file is sorted by topic, then title, so a stream read only in part (the
    training budget fills first) would otherwise be one topic, titles A–E; a permutation makes any prefix
    a uniform random sample. It permutes the whole file (before the topic filter), so the order of an
    article does not depend on which topics are chosen."""
    if seed is None:
        return list(keys)
    return [keys[i] for i in np.random.default_rng([seed, WIKI_ORDER_STREAM]).permutation(len(keys))]


def iter_packaged_wiki(topics: list[str] | None, seed: int | None = None) -> Iterator[Document]:
    """The packaged Vital Articles lead sections, restricted to ``topics``, in file order or (``seed``)
    in a seeded random permutation (``wiki_order``)."""
    with open(fetch(WIKI_ASSET), encoding="utf-8") as fh:
        articles = json.load(fh)  # 6.5 MB: the one source small enough to read whole
    wanted = set(topics) if topics is not None else None
    for key in wiki_order(list(articles), seed):
        article = articles[key]
        topic = article.get("topic")
        if wanted is not None and topic not in wanted:
            continue
        text = (article.get("extract") or "").strip()
        yield Document(id=key, text=text, source="wiki-vital", meta={"topic": topic, "title": article.get("title")})
