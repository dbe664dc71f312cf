"""Training on the tiny model: it learns, resumes exactly, masks per document, mixes replay, stops on
NaN, and continues a finished run to a larger budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cpt_utils.checkpointing import list_checkpoints, load_checkpoint_model
from cpt_utils.modeling import build_tiny_model
from cpt_utils.config import TinyModelParams
from cpt_utils.train import DataMismatch, TrainingDiverged, train

from .numerics import exact


def _with(params, **train):
    return params.model_copy(update={"train": params.train.model_copy(update=train)})


def _rows(run: Path, kind: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def _weights(run: Path) -> dict:
    return load_checkpoint_model(list_checkpoints(run)[-1]["path"]).state_dict()


def test_loss_goes_down_and_checkpoints_land_on_milestones(tiny_params, data_dir, tmp_path):
    params = _with(tiny_params, token_budget=8192, milestones=[2048, 8192], eval_every_tokens=4096)
    summary = train(params, tmp_path, data_dir=data_dir, progress=False)
    losses = [r["loss"] for r in _rows(tmp_path)]
    assert len(losses) == 32 and np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.3
    evals = _rows(tmp_path, "eval")
    assert [r["tokens"] for r in evals] == [0, 4096, 8192]
    assert evals[-1]["val_domain_loss"] < evals[0]["val_domain_loss"]
    assert [c["tokens"] for c in list_checkpoints(tmp_path)] == [2048, 8192]
    assert summary["tokens"] == 8192
    # a second call with the same parameters does nothing
    assert train(params, tmp_path, data_dir=data_dir, progress=False)["reused"] is True


def test_kill_and_resume_is_exact(tiny_params, data_dir, tmp_path):
    params = _with(exact(tiny_params), checkpoint_every_tokens=1024, replay_fraction=0.25)  # fp32: an exact claim
    train(params, tmp_path / "straight", data_dir=data_dir, progress=False)
    # "kill" after step 6: the newest checkpoint is at step 4 (1,024 tokens / 256 per step)
    train(params, tmp_path / "killed", data_dir=data_dir, progress=False, stop_after_steps=6)
    assert [c["step"] for c in list_checkpoints(tmp_path / "killed")] == [4]
    train(params, tmp_path / "killed", data_dir=data_dir, progress=False)
    a, b = _rows(tmp_path / "straight"), _rows(tmp_path / "killed")
    assert [r["step"] for r in b] == list(range(1, 17))  # the lost steps 5–6 were re-done once
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)
    wa, wb = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("compile", [False, "regions"], ids=["eager", "regions"])
def test_a_resumed_run_equals_the_unbroken_one_bit_for_bit_eager_or_compiled(tiny_params, data_dir, tmp_path,
                                                                             compile, precision):
    """Not merely close: every loss and every weight equal, eager and with the layers compiled, in fp32 and
    bf16. (Compiled, this failed while inductor computed the embedding's backward with atomics:
    ``train._embeddings_eager``.)"""
    params = _with(tiny_params, checkpoint_every_tokens=1024, replay_fraction=0.25, compile=compile,
                   precision=precision)
    train(params, tmp_path / "straight", data_dir=data_dir, progress=False)
    train(params, tmp_path / "killed", data_dir=data_dir, progress=False, stop_after_steps=6)
    train(params, tmp_path / "killed", data_dir=data_dir, progress=False)
    straight, resumed = _rows(tmp_path / "straight"), _rows(tmp_path / "killed")
    assert [r["loss"] for r in straight] == [r["loss"] for r in resumed]
    wa, wb = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_growing_the_budget_continues_with_a_new_rewarmed_segment(tiny_params, data_dir, tmp_path):
    first = _with(tiny_params, token_budget=2048, milestones=[2048], warmup_tokens=512)
    train(first, tmp_path, data_dir=data_dir, progress=False)
    longer = _with(first, token_budget=4096, milestones=[2048, 4096])
    train(longer, tmp_path, data_dir=data_dir, progress=False)
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, 17))
    lrs = [r["lr"] for r in rows]
    assert lrs[7] == pytest.approx(1e-4)            # the first run decayed to its floor
    assert lrs[8] < lrs[9] == pytest.approx(1e-3)   # then re-warmed over 2 steps
    assert [c["tokens"] for c in list_checkpoints(tmp_path)] == [2048, 4096]


@pytest.mark.filterwarnings("ignore:precision bf16 on a CPU without AMX")
def test_one_process_trains_in_one_precision_then_another(tiny_params, data_dir, tmp_path):
    """A notebook session (or this suite) that trains in fp32 and then under bf16 autocast: Accelerate's
    per-process state would refuse the second ("restart your runtime"); each run gets its own precision."""
    short = _with(tiny_params, token_budget=512, milestones=[], eval_every_tokens=None)
    assert train(_with(short, precision="fp32"), tmp_path / "fp32", data_dir=data_dir, progress=False)["precision"] == "fp32"
    assert train(_with(short, precision="bf16"), tmp_path / "bf16", data_dir=data_dir, progress=False)["precision"] == "bf16"
    assert train(_with(short, precision="fp32"), tmp_path / "again", data_dir=data_dir, progress=False)["precision"] == "fp32"
    assert [r["loss"] for r in _rows(tmp_path / "again")] == [r["loss"] for r in _rows(tmp_path / "fp32")]


def test_resuming_with_other_hyperparameters_is_refused_naming_what_moved(tiny_params, data_dir, tmp_path):
    train(_with(tiny_params, token_budget=1024), tmp_path, data_dir=data_dir, progress=False)
    lr = tiny_params.train.lr
    with pytest.raises(DataMismatch, match="trained with other parameters or data") as refused:
        other = _with(tiny_params, token_budget=2048, lr=lr / 2).model_copy(update={"seed": tiny_params.seed + 1})
        train(other, tmp_path, data_dir=data_dir, progress=False)
    message = str(refused.value)
    assert f"seed ({tiny_params.seed} vs {tiny_params.seed + 1}); train.lr ({lr} vs {lr / 2}) (checkpoint vs now)" in message
    assert "token_budget (" not in message  # a budget may change: it is not named as a difference
    checkpoint = list_checkpoints(tmp_path)[-1]
    old = {k: v for k, v in checkpoint.items() if k != "trajectory"}  # a checkpoint from before the record
    from cpt_utils.train import _other_trajectory
    assert "trained with other parameters or data. Only train.token_budget" in _other_trajectory(old, checkpoint["trajectory"])


def test_replay_fraction_is_honoured(tiny_params, data_dir, tmp_path):
    train(_with(tiny_params, replay_fraction=0.25), tmp_path, data_dir=data_dir, progress=False)
    rows = _rows(tmp_path)
    assert sum(r["replay_rows"] for r in rows) == 0.25 * 4 * len(rows)


def test_per_document_attention_isolates_documents(tiny_params):
    model = build_tiny_model(TinyModelParams(), 512, seed=0).eval()
    doc_a, doc_b = torch.arange(10, 30), torch.arange(100, 120)
    changed_a = torch.arange(200, 220)

    def logits_of_b(a: torch.Tensor, per_document: bool) -> torch.Tensor:
        ids = torch.cat([a, torch.tensor([0]), doc_b]).unsqueeze(0)
        pos = torch.cat([torch.arange(21), torch.arange(20)]).unsqueeze(0)
        kwargs = {"position_ids": pos} if per_document else {}
        with torch.no_grad():
            return model(input_ids=ids, use_cache=False, **kwargs).logits[0, 21:]

    assert torch.allclose(logits_of_b(doc_a, True), logits_of_b(changed_a, True), atol=1e-5)
    # control: without per-document positions the second document does see the first
    assert not torch.allclose(logits_of_b(doc_a, False), logits_of_b(changed_a, False), atol=1e-3)


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(tiny_params, data_dir, tmp_path, monkeypatch):
    from transformers import LlamaForCausalLM

    real_forward, calls = LlamaForCausalLM.forward, {"n": 0}

    def poisoned(self, *args, **kwargs):  # the real model, whose loss turns NaN at the 7th training step
        out = real_forward(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 7:
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(LlamaForCausalLM, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match=r"at step 7 .*last good checkpoint: tokens-000000001024"):
        train(_with(tiny_params, checkpoint_every_tokens=1024, loss_chunk_tokens=0),  # the poison is in HF's loss
              tmp_path, data_dir=data_dir, progress=False)
    assert [c["step"] for c in list_checkpoints(tmp_path)] == [4]


def test_nan_gradients_with_a_finite_loss_never_step_and_never_reach_a_checkpoint(tiny_params, data_dir, tmp_path,
                                                                                  monkeypatch):
    """A finite loss can still carry NaN gradients (e.g. an overflow in backward): the guard checks the
    gradient norm too, so the step is not taken and the saved weights stay finite."""
    from transformers import LlamaForCausalLM

    real_forward, calls = LlamaForCausalLM.forward, {"n": 0}

    def poisoned(self, *args, **kwargs):  # at the 7th training step the loss is finite, its gradient NaN
        out = real_forward(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 7:
                out.loss.register_hook(lambda g: g * float("nan"))  # the value stays finite
        return out

    monkeypatch.setattr(LlamaForCausalLM, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match=r"gradient norm nan at step 7 .*the step was not taken"):
        train(_with(tiny_params, checkpoint_every_tokens=1024, loss_chunk_tokens=0),  # the poison is in HF's loss
              tmp_path, data_dir=data_dir, progress=False)
    (checkpoint,) = list_checkpoints(tmp_path)
    model = load_checkpoint_model(checkpoint["path"])
    assert checkpoint["step"] == 4 and all(torch.isfinite(p).all() for p in model.parameters())


def test_data_from_another_tokenizer_is_refused(tiny_params, data_dir, tmp_path):
    other = tiny_params.model_copy(update={"model": tiny_params.model.model_copy(
        update={"tiny": tiny_params.model.tiny.model_copy(update={"vocab_size": 256})})})
    with pytest.raises(DataMismatch, match="tokenized with"):
        train(other, tmp_path, data_dir=data_dir, progress=False)


@pytest.mark.slow
def test_two_process_ddp_on_cpu_ends_with_identical_weights(tiny_params_path, data_dir, tmp_path):
    import os
    import shutil

    run = tmp_path / "runs" / "tiny"
    shutil.copytree(data_dir, run / "data")
    env = {**os.environ, "CPT_RUNS": str(tmp_path / "runs")}
    proc = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
                           "-m", "cpt_utils.train", str(tiny_params_path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # each rank prints its summary (lines may interleave); a weight mismatch would have raised
    assert proc.stdout.count('"ranks_consistent": true') == 2 and proc.stdout.count('"processes": 2') == 2
    (final,) = [c for c in list_checkpoints(run) if c["final"]]
    assert final["tokens_per_step"] == 2 * 4 * 64 and final["tokens"] == 4096


def test_gradient_checkpointing_changes_memory_not_the_result(tiny_params, data_dir, tmp_path):
    plain = _with(exact(tiny_params), token_budget=1024)  # fp32: recomputation must give the same numbers
    train(plain, tmp_path / "plain", data_dir=data_dir, progress=False)
    train(_with(plain, gradient_checkpointing=True), tmp_path / "ckpt", data_dir=data_dir, progress=False)
    a, b = _rows(tmp_path / "plain"), _rows(tmp_path / "ckpt")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-4)
