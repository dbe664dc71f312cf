"""Shared test set-up: offline for the whole suite, one cache for assets, a fresh run folder per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports transformers/datasets: the hub is forbidden in tests.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from cpt_utils.paths import REPO_ROOT, configure_environment  # noqa: E402

configure_environment(offline=True)


@pytest.fixture()
def tiny_params_path() -> Path:
    return REPO_ROOT / "params" / "tiny.yaml"


@pytest.fixture()
def tiny_params(tiny_params_path):
    from cpt_utils.params import load_params

    return load_params(tiny_params_path)


@pytest.fixture()
def run_dirs(tmp_path, monkeypatch) -> Path:
    """Point runs/ and reports/ at a temporary folder so tests never touch the user's runs."""
    monkeypatch.setenv("CPT_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CPT_REPORTS", str(tmp_path / "reports"))
    return tmp_path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """The tiny parameters' prepared data, once per test session (training tests only read it)."""
    from cpt_utils.params import load_params
    from cpt_utils.preprocess import prepare_data

    root = tmp_path_factory.mktemp("prepared")
    prepare_data(load_params(REPO_ROOT / "params" / "tiny.yaml"), root, progress=False)
    return root / "data"
