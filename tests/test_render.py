"""A rendered notebook page is for reading: stderr (progress bars, warnings) is dropped from the page but
kept in the executed notebook, errors stay visible, and the reading style sheet is in every page — and
in a browser a notebook with a wide-ish table, a long line of code and a figure fits at 1280 px and does not scroll sideways
at 390 px."""

from __future__ import annotations

import base64
import io

import nbformat
import pytest

from cpt_utils.paths import REPO_ROOT
from cpt_utils.render import READING_CSS, render_html

from .browser import chromium, describe, inspect_page

ARTIFACTS = REPO_ROOT / "test-artifacts" / "render"


def _notebook(extra_outputs=()):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(
        "# A page\n\n| task group | measure | base | continued | change ± SE | p (adjusted) | reading |\n"
        "|---|---|---|---|---|---|---|\n| domain_knowledge_long_name | accuracy_normalised | 0.2500 | 0.3125 | "
        "+0.0625 ± 0.0312 | 0.0450 | domain-specific gain (MDE vs control ≈ 0.0371) |\n"))
    code = nbformat.v4.new_code_cell("train(" + ", ".join(f"argument_{i}={i}" for i in range(12)) + ")",
                                     execution_count=1)
    code.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="progress  10%|#   |\rprogress 100%|####|\n"),
        nbformat.v4.new_output("stream", name="stdout", text="trained 3 steps\n"),
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: something deprecated\n"),
        *extra_outputs,
    ]
    nb.cells.append(code)
    failing = nbformat.v4.new_code_cell("1/0", execution_count=2)
    failing.outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                              traceback=["ZeroDivisionError: division by zero"])]
    nb.cells.append(failing)
    return nb


def test_stderr_is_dropped_from_the_page_but_kept_in_the_executed_notebook(tmp_path):
    executed = tmp_path / "01_demo.ipynb"
    nbformat.write(_notebook(), executed)
    page = render_html(executed, tmp_path / "01_demo.html").read_text()
    blocks = page.split('data-mime-type="application/vnd.jupyter.stderr"')
    assert len(blocks) == 2 and blocks[0].endswith("cpt-error\" "), "the one stderr-styled block is the error"
    assert "100%|####|" not in page and "UserWarning" not in page
    assert "trained 3 steps" in page                        # stdout stays
    assert "ZeroDivisionError" in page and "division by zero" in page  # errors stay
    kept = nbformat.read(executed, as_version=4)            # the executed notebook is untouched
    assert [o["name"] for o in kept.cells[1].outputs if o["output_type"] == "stream"] == ["stderr", "stdout", "stderr"]


def test_the_reading_style_sheet_is_in_the_head(tmp_path):
    executed = tmp_path / "01_demo.ipynb"
    nbformat.write(_notebook(), executed)
    page = render_html(executed, tmp_path / "01_demo.html").read_text()
    head = page[: page.index("</head>")]
    assert READING_CSS.strip() in head
    assert head.rindex("<style") == head.index('<style id="cpt-reading">')  # last: it wins over the template
    for rule in ("max-width: 1100px", "white-space: pre-wrap", "overflow-x: auto", "details"):
        assert rule in READING_CSS


def _wide_table_and_figure():
    """A 10-column table with long headers (as notebook 05 shows) and a matplotlib figure wider than a phone."""
    import matplotlib  # lazy: only for the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    columns = [f"continued − base ± SE (task group {i})" for i in range(10)]
    frame = pd.DataFrame([[f"{0.1234 * (r + 1) * (c + 1):.4f} ± 0.0123" for c in range(10)] for r in range(4)],
                         columns=columns)
    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    ax.plot([0, 1, 2], [1, 0, 2])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return [nbformat.v4.new_output("execute_result", data={"text/html": frame.to_html(), "text/plain": "frame"},
                                   execution_count=1),
            nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(buf.getvalue()).decode()})]


@pytest.mark.skipif(chromium() is None, reason="chromium missing: `make browser` installs it (Debian package chromium)")
def test_a_rendered_page_fits_at_1280_and_does_not_scroll_sideways_at_390(tmp_path):
    executed = tmp_path / "05_demo.ipynb"
    nbformat.write(_notebook(_wide_table_and_figure()), executed)
    page = render_html(executed, tmp_path / "05_demo.html")
    wide = inspect_page(page, screenshot=ARTIFACTS / "demo-1280.png", width=1280)
    assert wide["viewport"] == 1280
    assert not wide["wide"], "at 1280 px:\n" + describe(wide["wide"])
    assert not wide["page_overflow"] and not wide["stderr"] and not wide["broken"]
    assert wide["figures"] == 1
    assert 900 <= wide["column"] <= 1100, f"content column {wide['column']} px"
    narrow = inspect_page(page, screenshot=ARTIFACTS / "demo-390.png", width=390)
    assert narrow["viewport"] == 390
    assert not narrow["page_overflow"], f"at 390 px the page is {narrow['scroll_width']} px wide:\n" + describe(narrow["wide"])
