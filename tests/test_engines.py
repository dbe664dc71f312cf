"""Distributed engines on CPU: DDP and FSDP2 with two gloo processes train the tiny model like one process
with the same global batch; FSDP2 and DeepSpeed checkpoints resume exactly; another world size is
refused; the DeepSpeed config comes from the params.

The equivalence claims are exact arithmetic, so they are made in fp32 on every CPU (``tests/numerics.py``);
the bf16 path (what ``precision: auto`` runs on a bf16-native CPU) has its own test, to bf16's rounding.

Processes are started with torchrun, which is what ``accelerate launch`` runs on GPUs: on CPU accelerate's
launcher starts one process whatever ``--num_processes`` says and drops FSDP/DeepSpeed with ``--cpu``.
The engine is chosen by the variables ``accelerate launch --config_file configs/accelerate/*.yaml`` sets.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cpt_utils.checkpointing import list_checkpoints, load_checkpoint_model
from cpt_utils.engines import DEEPSPEED_CPU_REASON, EngineError, configure_deepspeed
from cpt_utils.paths import REPO_ROOT
from cpt_utils.train import DataMismatch, train

from .numerics import EXACT, assert_within_bf16_rounding

DRIVER = """
import json, sys
from cpt_utils.config import load_params
from cpt_utils.train import train
params = load_params(sys.argv[1])
params = params.model_copy(update={"train": params.train.model_copy(update=json.loads(sys.argv[2]))})
stop = int(sys.argv[5]) if len(sys.argv) > 5 else None
print("SUMMARY " + json.dumps(train(params, sys.argv[3], sys.argv[4], progress=False, stop_after_steps=stop), default=str))
"""

FSDP_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
            "FSDP_TRANSFORMER_CLS_TO_WRAP": "LlamaDecoderLayer", "FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT",
            "FSDP_CPU_RAM_EFFICIENT_LOADING": "true", "FSDP_RESHARD_AFTER_FORWARD": "true"}
DEEPSPEED_ENV = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}
# the L2 pull is on so that its sharded form is exercised too; fp32 on every CPU: the claims are exact
TRAIN = {"micro_batch_size": 4, "token_budget": 3072, "milestones": [3072], "checkpoint_every_tokens": 1024,
         "eval_every_tokens": 1536, "l2_init_weight": 0.01, "precision": EXACT}


def _launch(tmp_path: Path, processes: int, run: Path, data_dir: Path, train_updates: dict,
            env: dict | None = None, stop: int | None = None) -> dict:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    args = [str(REPO_ROOT / "params" / "tiny.yaml"), json.dumps(train_updates), str(run), str(data_dir)]
    args += [str(stop)] if stop is not None else []
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(processes), str(driver), *args],
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), **(env or {})}, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # the processes share one stdout pipe: two "SUMMARY {...}" lines can arrive glued together, so each
    # summary is decoded where its marker starts, not line by line
    decoder = json.JSONDecoder()
    summaries = [decoder.raw_decode(proc.stdout, m.end())[0] for m in re.finditer(r"SUMMARY ", proc.stdout)]
    assert len(summaries) == processes, proc.stdout[-2000:]
    return summaries[0]


def _rows(run: Path, kind: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def _final_weights(run: Path) -> dict:
    (final,) = [c for c in list_checkpoints(run) if c["final"]]
    return load_checkpoint_model(final["path"]).state_dict()


def _reference(tiny_params, data_dir: Path, run: Path, **updates) -> None:
    """One process with the whole global batch of the two-process runs (micro-batch 8 = 2 × 4)."""
    params = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={**TRAIN, **updates})})
    train(params, run, data_dir=data_dir, progress=False)


def _assert_same_training(one: Path, two: Path, rel: float = 1e-5, atol: float = 1e-5) -> None:
    """Same global batches, gradients averaged over processes, fp32: the losses agree up to float summation
    order (each process averages its own rows, then the processes average; one process averages all).
    Measured in fp32: at most 1.2e-7 relative on the train losses, 3.5e-9 on the held-out loss. (Under
    bf16 autocast the same runs differ by 1e-5 relative and the weights by more than 1e-5: rounding, not a
    fault; see the bf16 test.)"""
    a, b = _rows(one), _rows(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 7))
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], rel=rel)
    assert [r["val_domain_loss"] for r in _rows(two, "eval")] == pytest.approx(
        [r["val_domain_loss"] for r in _rows(one, "eval")], rel=rel)
    wa, wb = _final_weights(one), _final_weights(two)
    assert wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=atol) for k in wa)


# ------------------------------------------------------------------------------------------- DDP, FSDP2
@pytest.mark.slow
def test_two_process_ddp_trains_like_one_process_with_the_same_global_batch(tiny_params, data_dir, tmp_path):
    _reference(tiny_params, data_dir, tmp_path / "one", micro_batch_size=8)
    summary = _launch(tmp_path, 2, tmp_path / "ddp", data_dir, TRAIN)
    assert summary["engine"] == "ddp" and summary["processes"] == 2 and summary["ranks_consistent"] is True
    assert summary["tokens_per_step"] == 2 * 4 * 64  # step arithmetic from the world size
    _assert_same_training(tmp_path / "one", tmp_path / "ddp")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:precision bf16 on a CPU without AMX")
def test_two_process_ddp_under_bf16_trains_like_one_process_to_bf16_rounding(tiny_params, data_dir, tmp_path):
    """The bf16 path, which ``precision: auto`` takes on a bf16-native CPU (explicit here, so every CPU runs
    it): the two processes' gradients are summed in another order and rounded to 8 significant bits, so
    the claim is agreement to bf16's resolution of each loss; the weights are compared in fp32 above."""
    bf16 = {**TRAIN, "precision": "bf16"}
    _reference(tiny_params, data_dir, tmp_path / "one", micro_batch_size=8, precision="bf16")
    summary = _launch(tmp_path, 2, tmp_path / "ddp", data_dir, bf16)
    assert summary["engine"] == "ddp" and summary["precision"] == "bf16" and summary["ranks_consistent"] is True
    one, two = _rows(tmp_path / "one"), _rows(tmp_path / "ddp")
    assert [r["step"] for r in one] == [r["step"] for r in two] == list(range(1, 7))
    assert_within_bf16_rounding([r["loss"] for r in two], [r["loss"] for r in one], "train loss")
    assert_within_bf16_rounding([r["val_domain_loss"] for r in _rows(tmp_path / "ddp", "eval")],
                                [r["val_domain_loss"] for r in _rows(tmp_path / "one", "eval")], "held-out loss")


@pytest.mark.slow
def test_two_process_fsdp2_trains_like_one_process_and_resumes_exactly(tiny_params, data_dir, tmp_path):
    _reference(tiny_params, data_dir, tmp_path / "one", micro_batch_size=8)
    summary = _launch(tmp_path, 2, tmp_path / "fsdp", data_dir, TRAIN, env=FSDP_ENV)
    assert summary["engine"] == "fsdp" and summary["ranks_consistent"] is True
    _assert_same_training(tmp_path / "one", tmp_path / "fsdp")
    # "killed" after step 3: the newest checkpoint (every 1,024 tokens = 2 steps of 512) is at step 2
    _launch(tmp_path, 2, tmp_path / "killed", data_dir, TRAIN, env=FSDP_ENV, stop=3)
    assert [c["step"] for c in list_checkpoints(tmp_path / "killed")] == [2]
    assert list_checkpoints(tmp_path / "killed")[0]["num_processes"] == 2
    _launch(tmp_path, 2, tmp_path / "killed", data_dir, TRAIN, env=FSDP_ENV)
    a, b = _rows(tmp_path / "fsdp"), _rows(tmp_path / "killed")
    assert [r["step"] for r in b] == list(range(1, 7))
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], rel=1e-6)


@pytest.mark.slow
def test_a_two_process_checkpoint_refuses_to_resume_in_one_process(tiny_params, data_dir, tmp_path):
    _launch(tmp_path, 2, tmp_path / "ddp", data_dir, TRAIN, stop=3)
    params = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update=TRAIN)})
    with pytest.raises(DataMismatch, match=r"written by 2 process\(es\) \(ddp\), this run has 1 \(single\)"):
        train(params, tmp_path / "ddp", data_dir=data_dir, progress=False)


def test_resuming_with_another_world_size_is_refused_in_one_line(tiny_params, data_dir, tmp_path):
    """The checkpoint records its world size; a different one is refused before anything is loaded."""
    params = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={
        "token_budget": 2048, "milestones": [2048], "checkpoint_every_tokens": 512})})
    train(params, tmp_path, data_dir=data_dir, progress=False, stop_after_steps=3)
    (checkpoint,) = list_checkpoints(tmp_path)
    assert (checkpoint["num_processes"], checkpoint["engine"]) == (1, "single")
    meta = Path(checkpoint["path"]) / "checkpoint.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "num_processes": 4, "engine": "fsdp"}))
    with pytest.raises(DataMismatch) as refused:
        train(params, tmp_path, data_dir=data_dir, progress=False)
    message = str(refused.value)
    assert "\n" not in message and "written by 4 process(es) (fsdp), this run has 1 (single)" in message
    assert "--num_processes 4" in message


# ------------------------------------------------------------------------------------------- DeepSpeed
def test_the_deepspeed_config_is_filled_from_the_params(tiny_params):
    tp = tiny_params.train.model_copy(update={"micro_batch_size": 2, "grad_accum_steps": 3, "grad_clip": 0.5})
    config = {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
              "zero_optimization": {"stage": 2}}
    configure_deepspeed(config, tp, num_processes=4)
    assert (config["train_micro_batch_size_per_gpu"], config["gradient_accumulation_steps"],
            config["train_batch_size"], config["gradient_clipping"]) == (2, 3, 2 * 3 * 4, 0.5)
    with pytest.raises(EngineError, match="gradient_accumulation_steps: 1 disagrees with the params"):
        configure_deepspeed({"gradient_accumulation_steps": 1}, tp, num_processes=1)


def test_the_shipped_accelerate_configs_leave_processes_and_batch_to_the_command_line():
    for path in sorted((REPO_ROOT / "configs" / "accelerate").glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        assert "num_processes" not in config, path.name
        for key in ("gradient_accumulation_steps", "gradient_clipping"):
            assert config.get("deepspeed_config", {}).get(key, "auto") == "auto", (path.name, key)
    fsdp = yaml.safe_load((REPO_ROOT / "configs" / "accelerate" / "fsdp.yaml").read_text())["fsdp_config"]
    assert fsdp["fsdp_version"] == int(FSDP_ENV["FSDP_VERSION"])  # the CPU test runs the shipped FSDP


def test_deepspeed_with_several_cpu_processes_is_refused_with_the_reason(tiny_params, data_dir, tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("on a GPU machine DeepSpeed runs")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(EngineError, match="DeepSpeed with 2 processes on CPU: accelerate 1.15 sets up DeepSpeed"):
        train(tiny_params, tmp_path, data_dir=data_dir, progress=False)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                    reason="deepspeed is an optional extra (pip install -e .[deepspeed]), not installed here; "
                           "on CPU it runs one process only: " + DEEPSPEED_CPU_REASON)
def test_deepspeed_zero2_steps_once_per_accumulation_and_resumes_exactly(tiny_params, data_dir, tmp_path):
    """One process (see DEEPSPEED_CPU_REASON) with two micro-steps per optimizer step: ZeRO-2 trains
    like the plain loop (so it steps once per global batch, not per micro-step) and resumes exactly."""
    updates = {**TRAIN, "micro_batch_size": 4, "grad_accum_steps": 2}
    plain = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update=updates)})
    train(plain, tmp_path / "one", data_dir=data_dir, progress=False)
    summary = _launch(tmp_path, 1, tmp_path / "ds", data_dir, updates, env=DEEPSPEED_ENV)
    assert summary["engine"] == "deepspeed" and summary["steps"] == 6
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "ds")
    assert [r["step"] for r in b] == list(range(1, 7))
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], rel=1e-5)  # measured 3.9e-8
    _launch(tmp_path, 1, tmp_path / "killed", data_dir, updates, env=DEEPSPEED_ENV, stop=3)
    _launch(tmp_path, 1, tmp_path / "killed", data_dir, updates, env=DEEPSPEED_ENV)
    assert [r["loss"] for r in _rows(tmp_path / "killed")] == pytest.approx([r["loss"] for r in b], rel=1e-6)


def test_the_l2_pull_adds_the_gradient_of_its_loss_term():
    """The pull's gradient added once per step (the path FSDP uses) equals autograd's gradient of
    w·Σ‖θ − θ₀‖² (the path DeepSpeed uses), and it pulls toward θ₀."""
    from accelerate import Accelerator

    from cpt_utils.engines import L2Pull
    from cpt_utils.modeling import build_tiny_model
    from cpt_utils.config import TinyModelParams

    model = build_tiny_model(TinyModelParams(), 512, seed=0)
    pull = L2Pull(Accelerator(cpu=True), model, weight=0.3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    pull.in_loss = True
    pull.loss_term(model).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad.zero_()
    pull.in_loss = False
    assert pull.loss_term(model) == 0.0
    pull.add_to_gradients(model)
    assert all(torch.allclose(p.grad, e, atol=1e-7) for p, e in zip(model.parameters(), expected))
    assert all(torch.equal(torch.sign(p.grad), torch.sign(p.detach() - p0))
               for p, p0 in zip(model.parameters(), pull.initial) if p.grad.abs().min() > 0)
