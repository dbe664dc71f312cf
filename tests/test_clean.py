"""Cleaning: normalisation and each quality filter, on constructed documents with a known verdict."""

from __future__ import annotations

from cpt_utils.clean import FilterReport, build_filters, clean_stream, normalize
from cpt_utils.documents import Document
from cpt_utils.config import QualityParams

PROSE = ("The cell is the basic structural and functional unit of all forms of life. Every cell consists of "
         "cytoplasm enclosed within a membrane, and many cells contain organelles, each with a specific function. ")


def _verdict(text: str, **quality) -> str | None:
    for name, check in build_filters(QualityParams(**quality)):
        if check(text) is not None:
            return name
    return None


def test_normalize_repairs_whitespace_and_removes_control_characters():
    assert normalize("  Cafe\u0301\u00a0au\tlait\x07 \r\n\r\n\r\n\nnext  ") == "Café au lait\n\nnext"


def test_each_filter_fires_on_its_case_and_spares_prose():
    assert _verdict(PROSE * 2) is None
    assert _verdict("   ") == "empty"
    assert _verdict("\ufffd\ufffd garbage " * 30) == "binary"
    assert _verdict("too short to keep") == "word_count"
    assert _verdict("a b c d e f g h i j k l m n o p q r s t u v w x y z " * 2) == "mean_word_length"
    assert _verdict("#tag #tag #tag word word " * 10) == "symbol_ratio"
    assert _verdict("12 34 56 78 90 " * 10 + PROSE) == "alpha_words"
    assert _verdict("\n".join(["the same line again"] * 8 + [PROSE])) == "duplicate_lines"
    assert _verdict("buy cheap " * 60 + PROSE) == "repeated_ngrams"
    footer = "\n".join(["Accept all cookies to continue", "Privacy policy and terms of use", "All rights reserved", PROSE])
    assert _verdict(footer) == "boilerplate"
    # a disabled rule does not fire
    assert _verdict("too short to keep", min_words=None) is None


def test_clean_stream_counts_and_keeps_examples():
    docs = [Document(str(i), t, "t") for i, t in enumerate([PROSE, "short", "", PROSE + "again"])]
    report = FilterReport()
    kept = list(clean_stream(docs, QualityParams(), report))
    assert [d.id for d in kept] == ["0", "3"]
    assert report.seen == 4 and report.kept == 2
    assert +report.removed == {"word_count": 1, "empty": 1}  # the other filters are listed with 0
    assert report.removed["boilerplate"] == 0 and "boilerplate" in report.as_dict()["removed"]
    assert report.examples["word_count"][0]["id"] == "1"
