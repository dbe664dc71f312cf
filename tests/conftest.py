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


def pytest_addoption(parser):
    parser.addoption(
        "--cpu-bf16", choices=("native", "emulated", "other"), default=None,
        help="resolve precision: auto as a CPU of this kind would (native: bf16, emulated: fp32); 'other' "
             "is the kind this machine is not. Sets CPT_CPU_BF16 for the tests and every process they start.")


def pytest_configure(config):
    from cpt_utils.precision import CPU_BF16_OVERRIDE, cpu_multiplies_bf16

    kind = config.getoption("--cpu-bf16")
    if kind == "other":
        kind = "emulated" if cpu_multiplies_bf16() else "native"
    if kind:
        os.environ[CPU_BF16_OVERRIDE] = kind


def pytest_report_header(config):
    """Which machine the suite ran on and what ``precision: auto`` resolved to: a failure that only one
    CPU kind shows is read against this line."""
    from cpt_utils.hardware import cpu_model
    from cpt_utils.precision import CPU_BF16_OVERRIDE, cpu_multiplies_bf16, resolve_precision

    native = "bf16 native (AMX/AVX-512 BF16)" if cpu_multiplies_bf16() else "bf16 emulated (no AMX/AVX-512 BF16)"
    forced = os.environ.get(CPU_BF16_OVERRIDE)
    note = f"; {CPU_BF16_OVERRIDE}={forced}" if forced else ""
    return f"cpt: CPU {cpu_model()}, {native}{note}; precision auto -> {resolve_precision('auto', 'cpu')}"


@pytest.fixture()
def tiny_params_path() -> Path:
    return REPO_ROOT / "params" / "tiny.yaml"


@pytest.fixture()
def tiny_params(tiny_params_path):
    from cpt_utils.config import load_params

    return load_params(tiny_params_path)


@pytest.fixture()
def two_threads():
    """torch on two threads within the test (a CPU step's kernels split or share work among threads)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def run_dirs(tmp_path, monkeypatch) -> Path:
    """Point runs/ and reports/ at a temporary folder so tests never touch the user's runs."""
    monkeypatch.setenv("CPT_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CPT_REPORTS", str(tmp_path / "reports"))
    return tmp_path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """The tiny parameters' prepared data, once per test session (training tests only read it)."""
    from cpt_utils.config import load_params
    from cpt_utils.preprocess import prepare_data

    root = tmp_path_factory.mktemp("prepared")
    prepare_data(load_params(REPO_ROOT / "params" / "tiny.yaml"), root, progress=False)
    return root / "data"
