"""Tables for reading: no index, no NaN, no True/False, p-values and counts formatted, wide and long
tables folded."""

from __future__ import annotations

import html
import math
import re

import pandas as pd
import pytest

from cpt_utils import display
from cpt_utils.display import MAX_COLUMNS, fmt_number, fmt_p, report_table


def _cells(html_text: str) -> list[str]:
    return [html.unescape(c) for c in re.findall(r"<t[dh](?:\s[^>]*)?>(.*?)</t[dh]>", html_text)]


def test_p_values_counts_and_numbers_read_as_words():
    assert fmt_p(0.0004) == "< 0.001" and fmt_p(0.01234) == "0.012" and fmt_p(0.5) == "0.50"
    assert fmt_p("cannot be tested (3 documents)") == "cannot be tested (3 documents)"
    assert fmt_number(-0.012345) == "−0.0123" and fmt_number(3.14159) == "3.14" and fmt_number(12345.6) == "12,346"


def test_no_index_no_nan_no_true_false():
    df = pd.DataFrame({"measure": ["val_domain loss", "arc bits/byte"], "n": [1200, 40],
                       "change": [-0.1234, 0.0021], "p (adjusted)": [0.0001, 0.2346],
                       "significant": [True, False], "perplexity change %": [-5.5, math.nan]})
    text = report_table(df, units={"change": "nats/token"})._repr_html_()
    cells = _cells(text)
    assert "<th></th>" not in text and "NaN" not in text and "nan" not in text
    assert "True" not in cells and "False" not in cells and {"yes", "no"} <= set(cells)
    assert "1,200" in cells and "< 0.001" in cells and "0.23" in cells and "—" in cells
    assert "change (nats/token)" in cells
    assert cells[:6] == ["measure", "n", "change (nats/token)", "p (adjusted)", "significant", "perplexity change %"]
    assert "<details" not in text  # nothing folded


def test_a_column_that_never_applies_is_dropped():
    df = pd.DataFrame({"measure": ["a", "b"], "perplexity change %": [math.nan, None]})
    assert "perplexity change" not in report_table(df)._repr_html_()
    assert "perplexity change" in report_table(df, drop_empty=False)._repr_html_()


def test_a_meaningful_index_becomes_a_column():
    df = pd.DataFrame({"R²": [0.91]}, index=pd.Index(["power law"], name="model"))
    cells = _cells(report_table(df)._repr_html_())
    assert cells == ["model", "R²", "power law", "0.910"]


def test_a_wide_table_keeps_its_key_columns_and_folds_the_rest():
    df = pd.DataFrame({f"c{i}": [float(i)] for i in range(14)} | {"measure": ["x"]})
    table = report_table(df, columns=["measure", "c13"])
    assert len(table.visible_columns) == MAX_COLUMNS
    assert "measure" in table.visible_columns and "c13" in table.visible_columns
    text = table._repr_html_()
    visible, _, folded = text.partition("<details")
    assert ">c12</th>" not in visible and ">c12</th>" in folded
    assert "full table (1 row × 15 columns" in folded
    # every slice of the folded table repeats the key column and stays within the column limit
    for part in folded.split('<table class="cpt-table">')[1:]:
        heads = re.findall(r"<th(?:\s[^>]*)?>(.*?)</th>", part)
        assert len(heads) <= MAX_COLUMNS and heads[0] == "measure"


def test_a_long_table_shows_its_key_rows():
    df = pd.DataFrame({"subject": [f"s{i}" for i in range(50)], "change": [i / 100 for i in range(50)]})
    table = report_table(df, key=df.change > 0.45)
    assert table.visible_rows == [46, 47, 48, 49]
    visible, _, folded = table._repr_html_().partition("<details")
    assert "s10" not in _cells(visible) and "s10" in _cells(folded) and "50 rows × 2 columns" in folded
    assert len(report_table(df).visible_rows) == display.MAX_ROWS
    assert report_table(df, key=5).visible_rows == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        report_table(df, key=[True, False])


def test_the_table_fits_the_page():
    text = report_table(pd.DataFrame({"a": ["a long header cell " * 5], "b": [1.0]}))._repr_html_()
    assert "max-width:100%" in text and "overflow-wrap:anywhere" in text and "font-size:12px" in text


def test_a_pivot_table_reads_as_one_header_row():
    df = pd.DataFrame({"step": ["a", "a", "b"], "corpus": ["d", "g", "d"], "removed": [1, 2, 3000]})
    pivot = df.pivot_table(index="step", columns="corpus", values=["removed"], aggfunc="sum")
    cells = _cells(report_table(pivot)._repr_html_())
    assert cells[:3] == ["step", "removed · d", "removed · g"] and cells[3:6] == ["a", "1", "2"] and "—" in cells
    unnamed = pd.DataFrame({"value": [1.5]}, index=["tokens per word"])
    assert _cells(report_table(unnamed, index_name="measure")._repr_html_())[:2] == ["measure", "value"]


def test_a_grouped_index_becomes_columns():
    df = pd.DataFrame({"task": ["mmlu", "mmlu"], "group": ["domain", "general"], "n": [10, 20]}).set_index(["task", "group"])
    assert _cells(report_table(df)._repr_html_())[:3] == ["task", "group", "n"]


def test_checkpoint_scores_pair_each_value_with_its_se():
    from cpt_utils.analysis_report import checkpoint_scores

    def ev(tokens, loss):
        return {"tokens": tokens, "perplexity": {"val_domain": {"loss": loss, "loss_se": 0.01, "bits_per_byte": None}},
                "tasks": {"sciq": {"metric": "acc", "value": 0.5, "stderr": 0.05}}}

    table = checkpoint_scores({"tokens-2": ev(2_000_000, 2.5), "base": ev(0, 3.0)})
    assert list(table.columns) == ["measure", "unit", "base", "2M tokens"]
    assert table.iloc[0].tolist() == ["val_domain loss", "nats/token", "3.000 ± 0.010", "2.500 ± 0.010"]
    assert table.iloc[1, 0] == "sciq (acc)" and len(table) == 2  # no bits/byte row where none was measured
