"""The whole tiny pipeline — every notebook — runs headless, and each rendered report looks right in a
real browser: every figure present and non-empty, no error cells. Screenshots land in
``test-artifacts/`` (not committed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cpt_utils.paths import REPO_ROOT

from .browser import chromium, inspect_page

pytestmark = pytest.mark.slow
ARTIFACTS = REPO_ROOT / "test-artifacts" / "reports"


@pytest.fixture(scope="module")
def tiny_reports(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("pipeline")
    env = {**os.environ, "CPT_RUNS": str(root / "runs"), "CPT_REPORTS": str(root / "reports")}
    proc = subprocess.run([sys.executable, "-m", "cpt_utils.cli", "run", str(REPO_ROOT / "params" / "tiny.yaml")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "reports" / "tiny", root / "runs" / "tiny"


def test_every_notebook_ran_and_rendered(tiny_reports):
    reports, run = tiny_reports
    books = sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    index = json.loads((reports / "index.json").read_text())
    assert [r["name"] for r in index["records"]] == books
    assert all(r["status"] == "ok" for r in index["records"]), index["records"]
    for name in books:
        assert (reports / f"{name}.html").is_file()


@pytest.mark.skipif(chromium() is None, reason="chromium missing: `make test` installs it (Debian package chromium)")
def test_reports_look_right_in_a_browser(tiny_reports):
    reports, _ = tiny_reports
    pages = sorted(reports.glob("*.html"))
    assert any(p.name == "index.html" for p in pages)
    for page in pages:
        seen = inspect_page(page, screenshot=ARTIFACTS / f"{page.stem}.png")
        assert seen["tracebacks"] == 0, f"{page.name} shows an error cell"
        assert not seen["broken"], f"{page.name}: broken figures {seen['broken']}"
        if page.name != "index.html":
            assert seen["images"] >= 1, f"{page.name} has no figure"
        assert (ARTIFACTS / f"{page.stem}.png").stat().st_size > 10_000


@pytest.mark.skipif(chromium() is None, reason="chromium missing: `make test` installs it (Debian package chromium)")
def test_the_browser_check_catches_broken_figures_and_tracebacks(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<html><body><img src='data:image/png;base64,AAAA' alt='broken'>"
                    "<pre>RuntimeError      Traceback (most recent call last)</pre></body></html>")
    seen = inspect_page(page)
    assert seen["images"] == 1 and seen["broken"] == ["broken"] and seen["tracebacks"] == 1
