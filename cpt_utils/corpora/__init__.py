"""Document sources behind one interface: iterate ``Document``s, count what could not be read.

One module per corpus kind, each a ``CorpusKind`` (``base.py``): its documents, its one-line
description, what identifies its content for the preprocessing snapshot, its provenance and licence
(the model card), and the packaged assets it reads. ``registry.KINDS`` maps the schema's ``kind``
literal to the class; ``open_corpus`` wraps any of them in a ``CorpusStream`` (re-iterable, resumable,
``max_docs``). Order: local files and hub streams are read in their own order; the packaged Wikipedia,
given a seed, in a seeded random permutation (``wiki.py``).

Adding a kind:
1. its parameter section in the schema (a ``Section`` with ``kind: Literal["<name>"]`` and ``max_docs``,
   added to the ``Corpus`` union);
2. a module here with a ``CorpusKind`` subclass (``documents``, ``describe`` and ``provenance``; override
   ``content_identity``, ``permuted``, ``own_place``, ``assets`` where they apply);
3. one line in ``registry.KINDS``;
4. its test (``tests/test_corpora.py`` shows a kind defined in a test and served by ``open_corpus``).
"""

from .base import CorpusError, CorpusKind, Reading
from .registry import KINDS, corpus_provenance, kind_of
from .stream import CorpusStream, open_corpus

__all__ = ["KINDS", "CorpusError", "CorpusKind", "CorpusStream", "Reading", "corpus_provenance", "kind_of",
           "open_corpus"]
