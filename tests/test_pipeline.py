"""The batch path end to end: papermill executes notebook 01 on the tiny parameters, nbconvert renders
it, the index records provenance; a failing notebook is still rendered and the command fails."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import nbformat
import pytest

from cpt_utils.paths import REPO_ROOT

pytestmark = pytest.mark.slow


def _cpt(*args, env_extra=None, run_dirs=None):
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "cpt_utils.cli", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_notebook_01_runs_headless_and_renders(run_dirs, tiny_params_path):
    proc = _cpt("run", str(tiny_params_path), "--only", "01")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = run_dirs / "reports" / "tiny"
    page = (report / "01_data_exploration.html").read_text()
    assert page.count("<img") >= 4 or page.count("data:image/png") >= 4  # every figure rendered
    assert "Traceback" not in page
    executed = nbformat.read(run_dirs / "runs" / "tiny" / "notebooks" / "01_data_exploration.ipynb", as_version=4)
    assert not [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert "Provenance" in page and "git" in page
    index = (report / "index.html").read_text()
    assert "01_data_exploration.html" in index and "Hardware" in index and "transformers" in index

    explore = json.loads((run_dirs / "runs" / "tiny" / "data" / "explore.json").read_text())
    for which in ("domain", "general"):
        stats = explore["corpora"][which]
        assert stats["documents"] == 150 and stats["tokens"] > stats["words"] > 0
        assert 1.0 < stats["fertility_tokens_per_word"] < 6.0
        assert len(stats["token_lengths"]) == 150
    assert explore["top_domain_terms"] and 0 < explore["vocabulary_overlap"]["jaccard"] < 1
    assert (run_dirs / "runs" / "tiny" / "params.yaml").is_file()

    # a second run with nothing changed reuses the executed notebook instead of running it again
    again = _cpt("run", str(tiny_params_path), "--only", "01")
    assert again.returncode == 0 and "reusing" in again.stdout
    # `cpt report RUN` re-renders from the executed notebooks without running anything
    (report / "01_data_exploration.html").unlink()
    rendered = _cpt("report", "tiny")
    assert rendered.returncode == 0 and (report / "01_data_exploration.html").is_file()


def test_failing_notebook_is_rendered_and_named(run_dirs, tiny_params_path, tmp_path):
    books = tmp_path / "notebooks"
    books.mkdir()
    source = nbformat.read(REPO_ROOT / "notebooks" / "01_data_exploration.ipynb", as_version=4)
    source.cells.insert(3, nbformat.v4.new_code_cell("raise RuntimeError('deliberate failure for the test')"))
    nbformat.write(source, books / "01_broken.ipynb")
    shutil.copy(REPO_ROOT / "notebooks" / "01_data_exploration.ipynb", books / "02_never_reached.ipynb")
    proc = _cpt("run", str(tiny_params_path), env_extra={"CPT_NOTEBOOKS": str(books)})
    assert proc.returncode == 1
    assert "notebook 01_broken failed" in proc.stderr and "deliberate failure" in proc.stderr
    page = (run_dirs / "reports" / "tiny" / "01_broken.html").read_text()
    assert "deliberate failure for the test" in page
    index = (run_dirs / "reports" / "tiny" / "index.html").read_text()
    assert "failed" in index and "not run (01_broken failed)" in index


def test_bad_parameter_file_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: 0.001\n  lerning_rate: 3\n")
    proc = _cpt("run", str(bad))
    assert proc.returncode == 2
    assert "train.lerning_rate: unknown key" in proc.stderr


def test_a_notebook_shows_an_expected_error_as_the_cli_does(tmp_path):
    """A CptError in a notebook cell shows the CLI's ``error:`` lines, not a traceback, and the cell
    still fails (so papermill and the pipeline see it)."""
    import papermill

    book = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                              "language": "python"},
                                              "language_info": {"name": "python"}})
    book.cells = [nbformat.v4.new_code_cell(
        "from cpt_utils.notebook import setup\n"
        f"setup({str(tmp_path / 'missing.yaml')!r})")]
    nbformat.write(book, tmp_path / "in.ipynb")
    with pytest.raises(papermill.PapermillExecutionError):
        papermill.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), cwd=str(REPO_ROOT),
                                   progress_bar=False)
    cells = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells
    errors = [o for c in cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert len(errors) == 1, [c.get("outputs") for c in cells]
    (error,) = errors
    shown = "\n".join(error.traceback)
    assert "error: parameter file not found" in shown and "Traceback" not in shown
