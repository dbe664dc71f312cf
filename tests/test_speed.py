"""Speed levers that must not change the result: torch.compile (same losses as eager on packed batches,
one graph for the whole run), the precision policy and the measured hardware peak behind MFU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cpt_utils.hardware import GPU_PEAK_BF16_FLOPS, cpu_peak_flops, gpu_peak_flops, mfu
from cpt_utils.modeling import build_tiny_model
from cpt_utils.params import TinyModelParams
from cpt_utils.precision import autocast, resolve_precision
from cpt_utils.train import compiled_for_training, train

#: Compiled and eager kernels sum in other orders; over 6 steps of the tiny model at lr 1e-3 the
#: losses agree to ~1e-6 relative (measured); 1e-4 leaves room without hiding a wrong mask (≥ 1e-2).
COMPILE_RTOL = 1e-4



def _with(params, **train_overrides):
    return params.model_copy(update={"train": params.train.model_copy(update=train_overrides)})


def _train_rows(run: Path) -> list[dict]:
    rows = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [r for r in rows if r["kind"] == "train"]


def test_compiled_loop_matches_eager_losses_without_recompiling(tiny_params, data_dir, tmp_path):
    import torch._dynamo

    from cpt_utils.paths import cache_dir
    from cpt_utils.train import compile_cache_dir

    params = _with(tiny_params, token_budget=6 * 256, milestones=[], eval_every_tokens=None,
                   checkpoint_every_tokens=None)
    train(_with(params, compile=False), tmp_path / "eager", data_dir=data_dir, progress=False)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    with torch._dynamo.config.patch(error_on_recompile=True):  # a second graph would raise here
        summary = train(_with(params, compile=True), tmp_path / "compiled", data_dir=data_dir, progress=False)
    eager, compiled = _train_rows(tmp_path / "eager"), _train_rows(tmp_path / "compiled")
    assert [r["loss"] for r in compiled] == pytest.approx([r["loss"] for r in eager], rel=COMPILE_RTOL)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it really compiled
    assert summary["compile_s"] is not None and "compile_s" in compiled[1]
    # the inductor cache lives in the project cache (warm on reruns: this test takes seconds the 2nd time)
    assert compile_cache_dir().is_relative_to(cache_dir()) and any(compile_cache_dir().iterdir())


def test_per_document_mask_survives_compilation():
    model = build_tiny_model(TinyModelParams(), 512, seed=0).train()
    ids = torch.randint(1, 512, (2, 48))
    packed = torch.cat([torch.arange(20), torch.arange(28)]).repeat(2, 1)  # two documents per row
    eager = model(input_ids=ids, labels=ids, position_ids=packed, use_cache=False).loss
    whole = model(input_ids=ids, labels=ids, position_ids=torch.arange(48).repeat(2, 1), use_cache=False).loss
    compiled = compiled_for_training(model)(input_ids=ids, labels=ids, position_ids=packed, use_cache=False).loss
    assert compiled.item() == pytest.approx(eager.item(), rel=1e-5)
    assert abs(compiled.item() - whole.item()) > 1e-3  # control: the mask matters for this batch


def test_precision_policy():
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("auto", "cpu") in ("bf16", "fp32")
    with pytest.raises(ValueError, match="precision: 'half'"):
        resolve_precision("half", "cpu")
    with pytest.raises(ValueError, match="fp16 autocast is for GPUs"):
        resolve_precision("fp16", "cpu")
    lin = torch.nn.Linear(8, 8)
    with autocast("fp32", "cpu"):
        assert lin(torch.randn(2, 8)).dtype == torch.float32
    with autocast("bf16", "cpu"):
        assert lin(torch.randn(2, 8)).dtype == torch.bfloat16


def test_cpu_peak_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("CPT_CACHE", str(tmp_path))
    first = cpu_peak_flops()
    assert first["bf16"] > 0 and first["fp32"] > 0
    (cached,) = (tmp_path / "hardware").glob("*.json")
    assert json.loads(cached.read_text()) == first
    assert cpu_peak_flops() == first  # read back, not re-measured


def test_gpu_peak_matches_exact_names_only():
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_peak_flops("NVIDIA L4") == 121e12 and gpu_peak_flops("NVIDIA L40S") == 362e12
    assert gpu_peak_flops("NVIDIA Some Future GPU") is None
    assert mfu(1000.0, 1e9, None) is None and mfu(1000.0, 1e9, 1e13) == pytest.approx(0.1)
    assert all(v > 1e13 for v in GPU_PEAK_BF16_FLOPS.values())
