"""Duplicate removal: exact and MinHash-LSH near duplicates, first occurrence wins, across batches and corpora."""

from __future__ import annotations

import random

from cpt_utils.documents import Document
from cpt_utils.dedup import BandIndex, DedupReport, Deduplicator
from cpt_utils.config import DedupParams

PROSE = ("The cell is the basic structural and functional unit of all forms of life. Every cell consists of "
         "cytoplasm enclosed within a membrane, and many cells contain organelles, each with a specific function. ")


def _random_text(seed: int, n: int = 300) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(["alpha", "beta", "gamma", "delta", "omega", "sigma", "theta", "kappa"]) + str(rng.randint(0, 99))
            for _ in range(n)]


def test_exact_and_near_duplicates_are_removed_first_occurrence_wins():
    words = _random_text(0)
    original = " ".join(words)
    near = " ".join(words[:150] + ["changed"] + words[151:])
    docs = [Document("a", original, "t"), Document("b", original.upper().replace(" ", "  "), "t"),
            Document("c", near, "t"), Document("d", PROSE * 3, "t")]
    report = DedupReport()
    kept = [d.id for d in Deduplicator(DedupParams()).stream(docs, report)]
    assert kept == ["a", "d"]
    assert report.exact_removed == 1 and report.near_removed == 1
    assert report.as_dict()["clusters"][0] == {"kept": "a", "removed": [{"id": "c", "text": near[:200]}]}
    only_exact = [d.id for d in Deduplicator(DedupParams(near=False)).stream(docs, DedupReport())]
    assert only_exact == ["a", "c", "d"]


def test_near_duplicates_are_found_near_and_far_and_across_corpora():
    originals = [" ".join(_random_text(seed, 120)) for seed in range(300)]
    docs = [Document(f"o{i}", t, "t") for i, t in enumerate(originals)]
    docs.insert(5, Document("copy-same-batch", originals[2] + " extra", "t"))
    docs.append(Document("copy-next-batch", originals[0] + " extra", "t"))
    dedup = Deduplicator(DedupParams())
    report = DedupReport()
    kept = [d.id for d in dedup.stream(docs, report)]
    assert kept == [f"o{i}" for i in range(len(originals))] and report.near_removed == 2
    # the index persists: a second corpus through the same instance loses its copy of a first-corpus text
    general = [Document("g0", originals[7], "g"), Document("g1", PROSE * 3, "g")]
    second = DedupReport()
    assert [d.id for d in dedup.stream(general, second)] == ["g1"] and second.exact_removed == 1


def test_documents_that_share_only_a_tenth_of_their_words_differently_are_kept():
    words = _random_text(1)
    rng = random.Random(2)
    variant = [w if rng.random() > 0.1 else "replaced" for w in words]
    kept = list(Deduplicator(DedupParams()).stream(
        [Document("a", " ".join(words), "t"), Document("b", " ".join(variant), "t")], DedupReport()))
    assert [d.id for d in kept] == ["a", "b"]  # estimated Jaccard ≈ 0.4, below the 0.8 threshold


def test_band_index_finds_the_same_candidates_as_datasketch_minhashlsh():
    """The lean index stores less than datasketch's MinHashLSH, but must answer the same question."""
    from datasketch import MinHash, MinHashLSH

    rng = random.Random(3)
    base = [_random_text(seed, 200) for seed in range(40)]
    texts = []
    for i in range(400):  # variants around the threshold (0–10 of 200 words changed): some match, some don't
        words = list(base[i % 40])
        for j in rng.sample(range(200), rng.randint(0, 10)):
            words[j] = f"changed{i}"
        texts.append(" ".join(words))
    dedup = Deduplicator(DedupParams())
    ours = BandIndex(0.8, 128)
    reference = MinHashLSH(threshold=0.8, num_perm=128)
    agree = found = 0
    for i, text in enumerate(texts):
        sig = dedup.signature(text)
        theirs = reference.query(MinHash(num_perm=128, hashvalues=sig, scheme="affine32"))
        match = ours.first_match_or_insert(str(i), sig)
        if match is None:
            reference.insert(str(i), MinHash(num_perm=128, hashvalues=sig, scheme="affine32"))
        agree += (match is None) == (not theirs) and (match is None or match in theirs)
        found += match is not None
    assert agree == len(texts) and 50 < found < 350
