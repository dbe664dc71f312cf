"""The whole tiny pipeline — every notebook — runs headless, and each rendered report reads right in a
real browser at a desktop width (1280 px) and a phone width (390 px): every figure present and
non-empty, no error cells, no leftover stderr, no NaN/None cell, nothing that scrolls sideways at 1280
and no page that scrolls sideways at 390. Screenshots land in ``test-artifacts/reports/`` (not
committed). Set ``CPT_REPORTS_TO_CHECK=<reports/run folder>`` to run the page checks on an existing
report (say a quickstart) instead of the tiny pipeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cpt_utils.paths import REPO_ROOT

from .browser import chromium, describe, inspect_page

pytestmark = pytest.mark.slow
ARTIFACTS = REPO_ROOT / "test-artifacts" / "reports"
DESKTOP, PHONE = 1280, 390
needs_chromium = pytest.mark.skipif(chromium() is None,
                                    reason="chromium missing: `make browser` installs it (Debian package chromium)")


@pytest.fixture(scope="module")
def tiny_reports(tmp_path_factory):
    if os.environ.get("CPT_REPORTS_TO_CHECK"):
        return Path(os.environ["CPT_REPORTS_TO_CHECK"]), None
    root = tmp_path_factory.mktemp("pipeline")
    env = {**os.environ, "CPT_RUNS": str(root / "runs"), "CPT_REPORTS": str(root / "reports")}
    proc = subprocess.run([sys.executable, "-m", "cpt_utils.cli", "run", str(REPO_ROOT / "params" / "tiny.yaml")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "reports" / "tiny", root / "runs" / "tiny"


@pytest.fixture(scope="module")
def seen(tiny_reports):
    """page name → {width: what the browser saw}, screenshots kept at both widths."""
    reports, _ = tiny_reports
    if chromium() is None:
        pytest.skip("chromium missing: `make browser` installs it (Debian package chromium)")
    out = {}
    for page in sorted(reports.glob("*.html")):
        out[page.name] = {width: inspect_page(page, width=width,
                                              screenshot=ARTIFACTS / f"{page.stem}{'' if width == DESKTOP else '-' + str(width)}.png")
                          for width in (DESKTOP, PHONE)}
    return out


def test_every_notebook_ran_and_rendered(tiny_reports):
    reports, run = tiny_reports
    books = sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    index = json.loads((reports / "index.json").read_text())
    assert [r["name"] for r in index["records"]] == books
    assert all(r["status"] == "ok" for r in index["records"]), index["records"]
    for name in books:
        assert (reports / f"{name}.html").is_file()


def _problems(seen: dict, check) -> str:
    """Every page's failures of one check, each line naming page, width and element."""
    lines = []
    for page, by_width in seen.items():
        for width, result in by_width.items():
            for problem in check(page, width, result):
                lines.append(f"{page} at {width} px: {problem}")
    return "\n".join(lines)


@needs_chromium
def test_every_page_loaded_at_the_width_asked(seen):
    assert seen and any(name == "index.html" for name in seen)
    assert _problems(seen, lambda p, w, r: [f"laid out at {r['viewport']} px"] if r["viewport"] != w else []) == ""


@needs_chromium
def test_nothing_scrolls_sideways(seen):
    """At 1280 px every table and scroll box fits; at 390 px the page itself does not scroll sideways
    (a wide table may scroll inside its own box there)."""
    def check(page, width, result):
        if width == DESKTOP:
            out = [f"needs sideways scrolling:\n{describe(result['wide'])}"] if result["wide"] else []
            return out + ([f"the page is {result['scroll_width']} px wide"] if result["page_overflow"] else [])
        return [f"the page is {result['scroll_width']} px wide; wide elements:\n{describe(result['wide'])}"] \
            if result["page_overflow"] else []
    problems = _problems(seen, check)
    assert not problems, "\n" + problems


@needs_chromium
def test_no_error_stderr_or_missing_value_shows(seen):
    def check(page, width, result):
        if width != DESKTOP:
            return []
        out = [f"{result['tracebacks']} traceback(s)"] if result["tracebacks"] else []
        out += [f"error output:\n{describe(result['errors'])}"] if result.get("errors") else []
        out += [f"stderr output:\n{describe(result['stderr'])}"] if result["stderr"] else []
        return out + ([f"missing values shown:\n{describe(result['missing'])}"] if result["missing"] else [])
    problems = _problems(seen, check)
    assert not problems, "\n" + problems


@needs_chromium
def test_every_figure_is_there(seen):
    """No broken image; at least one figure on every notebook page and on the index (the forest plot)."""
    def check(page, width, result):
        if width != DESKTOP:
            return []
        out = [f"broken figures: {result['broken']}"] if result["broken"] else []
        return out + (["no figure"] if result["figures"] < 1 else [])
    problems = _problems(seen, check)
    for page in ("index", "05_forgetting"):
        if any(name.startswith(page) for name in seen):
            assert (ARTIFACTS / f"{page}.png").stat().st_size > 10_000, f"{page}.png: no screenshot"
    assert not problems, "\n" + problems


@needs_chromium
def test_the_browser_check_catches_broken_figures_and_tracebacks(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<html><body><img src='data:image/png;base64,AAAA' alt='broken'>"
                    "<pre>RuntimeError      Traceback (most recent call last)</pre></body></html>")
    seen = inspect_page(page)
    assert seen["images"] == 1 and seen["broken"] == ["broken"] and seen["tracebacks"] == 1
    assert seen["figures"] == 0


@needs_chromium
def test_the_browser_check_sees_the_width_and_what_a_reader_would_see(tmp_path):
    """A 2000 px table: wide at 1280, page overflow at 390 (so ``--window-size``'s layout is the one
    measured); a scroll box that must scroll, NaN/None cells, a stderr block, an empty SVG; and a good
    figure, which counts."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<html><body><h2>Results</h2><table style='width:2000px'><tr><td>NaN</td><td>x</td></tr></table>"
        "<div style='overflow-x:auto'><table style='width:1500px'><tr><td>None</td><td>&lt;NA&gt;</td></tr></table></div>"
        "<svg width='0' height='0'><rect/></svg><svg width='200' height='100'><rect width='10' height='10'/></svg>"
        "<div class='jp-OutputArea-output' data-mime-type='application/vnd.jupyter.stderr'><pre>100%|###|</pre></div>"
        "<div class='jp-OutputArea-output cpt-error' data-mime-type='application/vnd.jupyter.stderr'><pre>"
        "ValueError: shown on purpose</pre></div></body></html>")
    desktop = inspect_page(page, width=DESKTOP)
    assert desktop["viewport"] == DESKTOP and desktop["page_overflow"]
    assert {w["why"].split(":")[0].split(" ")[0] for w in desktop["wide"]} == {"table", "scroll"}
    assert all(w["where"] == 'under "Results"' for w in desktop["wide"])
    assert sorted(m["text"] for m in desktop["missing"]) == ["<NA>", "NaN", "None"]
    assert 'cell shows NaN in column "column 1", row "x"' in [m["why"] for m in desktop["missing"]]
    assert [s["text"] for s in desktop["stderr"]] == ["100%|###|"]
    assert [e["text"] for e in desktop["errors"]] == ["ValueError: shown on purpose"]
    assert len(desktop["broken"]) == 1 and desktop["broken"][0].startswith("svg")
    assert desktop["figures"] == 1
    phone = inspect_page(page, width=PHONE)
    assert phone["viewport"] == PHONE and phone["page_overflow"] and phone["scroll_width"] > 2000

    good = tmp_path / "good.html"
    good.write_text("<html><body><table><tr><td>1.0</td><td>2.0</td></tr></table>"
                    "<div style='overflow-x:auto'><table style='width:1500px'><tr><td>wide</td></tr></table></div>"
                    "</body></html>")
    assert not inspect_page(good, width=PHONE)["page_overflow"]  # a wide table scrolling in its own box is fine
    assert [w["why"] for w in inspect_page(good, width=DESKTOP)["wide"]] == ["scroll box: content 1500px in 1264px"]


def test_the_time_budget_counts_every_step_and_scoring_once(tiny_reports, tmp_path):
    """``benchmarks/quickstart_budget.py`` on the tiny pipeline's records: every training step of every
    run (main, branches, control, variants), every held-out and task scoring once — a variant's
    borrowed result (``same_as``) not again —, and parts that fit inside the notebooks' own time."""
    reports, run = tiny_reports
    if run is None:
        pytest.skip("CPT_REPORTS_TO_CHECK: an existing report, no run folder to read")
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import quickstart_budget

    budget = quickstart_budget.budget(run, reports, peak=1e12)
    steps = [json.loads(line) for path in run.rglob("metrics.jsonl") if "data" not in path.relative_to(run).parts
             for line in path.read_text().splitlines() if json.loads(line).get("kind") == "train"]
    assert budget["training"]["steps"] == len(steps) > 0
    assert budget["training"]["seconds"] == pytest.approx(sum(row["time_s"] for row in steps))
    assert len(budget["training"]["steps_per_run"]) >= 2  # the main run and its children
    evals = [json.loads(path.read_text()) for path in run.rglob("evals/*.json")]
    assert budget["task_suite"]["scorings"] == sum(1 for e in evals if e["tasks"]) > 0
    scored_here = sum(1 for e in evals if e["heldout_from"] == "this evaluation")
    stored = len(list(run.rglob("heldout.json"))) + len(list(run.rglob("heldout/base.json")))
    assert budget["heldout"]["scorings"] == scored_here + stored > 0
    assert 0 < budget["heldout"]["fraction_of_peak"] < 1
    parts = budget["training"]["seconds"] + budget["heldout"]["seconds"] + budget["task_suite"]["seconds"]
    assert 0 < parts < budget["notebooks_s"] and budget["rest_s"] == pytest.approx(budget["notebooks_s"] - parts)

    # a variant that borrowed the main run's final evaluation (``variants.same_as_main``) adds nothing
    copy = tmp_path / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("*.safetensors", "state", "data"))
    final = max((copy / "evals").glob("*.json"))
    borrowed = copy / "variants" / "borrowing" / "evals" / final.name
    borrowed.parent.mkdir(parents=True)
    borrowed.write_text(json.dumps(json.loads(final.read_text()) | {"same_as": "main run"}))
    again = quickstart_budget.budget(copy, reports, peak=1e12)
    assert (again["task_suite"]["scorings"], again["heldout"]["scorings"]) == (
        budget["task_suite"]["scorings"], budget["heldout"]["scorings"])
