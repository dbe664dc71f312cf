"""The committed notebooks are stripped and papermill-ready, and they stay thin."""

from __future__ import annotations

import json

import pytest

from cpt_utils.notebook_hygiene import problems
from cpt_utils.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_numbered_notebooks():
    assert [p.stem[:2] for p in NOTEBOOKS][:1] == ["01"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean_and_parameterised(path):
    assert problems(path) == []
    cells = json.loads(path.read_text())["cells"]
    params_cell = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
    source = "".join(params_cell["source"])
    assert "params_path" in source and "run_name" in source
    # thin: the set-up goes through cpt_utils.notebook.setup, and no function or class is defined inline
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "setup(params_path, run_name)" in code
    assert "\ndef " not in "\n" + code and "\nclass " not in "\n" + code
