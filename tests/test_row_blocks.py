"""The training step's Linear products in row blocks (``cpt_utils.row_blocks``) change the time, never a number:
a plan only keeps blocks whose product equals the whole one bit for bit, the layer computes exactly what
autocast's ``nn.Linear`` does, and only the training step's forward runs it."""

from __future__ import annotations

import json
import time

import pytest
import torch

from cpt_utils import row_blocks
from cpt_utils.config import TinyModelParams
from cpt_utils.modeling import build_tiny_model

ROWS = 128  # two rows of 64 tokens


def _operands(rows: int, k: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, k, generator=generator).bfloat16(), torch.randn(n, k, generator=generator).bfloat16().t())


def test_blocked_products_cover_every_row_once():
    a, b = _operands(ROWS, 96, 40)
    whole = a.float() @ b.float()
    for blocks in (1, 2, 4):
        assert torch.allclose(row_blocks.blocked_mm(a, b, blocks).float(), whole, rtol=2e-2, atol=0.5)


def _slow_whole(monkeypatch, perturb: bool = False):
    """``blocked_mm`` with the whole product 3 ms slower (and, if ``perturb``, blocks one ulp off)."""
    real = row_blocks.blocked_mm

    def fake(a, b, blocks):
        out = real(a, b, blocks)
        if blocks == 1:
            time.sleep(0.003)
        elif perturb:
            out = out.clone()
            out[0, 0] += 1
        return out

    monkeypatch.setattr(row_blocks, "blocked_mm", fake)


def _identical_blocks(a, b) -> list[int]:
    whole = a @ b
    return [n for n in row_blocks.BLOCKS if torch.equal(row_blocks.blocked_mm(a, b, n), whole)]


def test_the_plan_takes_a_faster_split_only_when_it_is_bit_identical(monkeypatch):
    a, b = _operands(ROWS, 96, 40)
    identical = _identical_blocks(a, b)
    _slow_whole(monkeypatch)
    chosen = row_blocks._fastest_identical(a, b)
    assert chosen in identical if identical else chosen == 1   # faster and equal: taken
    _slow_whole(monkeypatch, perturb=True)
    assert row_blocks._fastest_identical(a, b) == 1           # faster but not equal: never


def test_no_gain_no_split(monkeypatch):
    monkeypatch.setattr(row_blocks, "MIN_GAIN", 1e9)
    assert row_blocks._fastest_identical(*_operands(ROWS, 96, 40)) == 1


def _tiny(seed: int = 0):
    return build_tiny_model(TinyModelParams(hidden_size=64, intermediate_size=160), vocab_size=256, seed=seed)


def _loss_and_grads(model, ids):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def _forced_plan(model, blocks_of) -> row_blocks.Plan:
    shapes = {(m.out_features, m.in_features) for m in model.modules()
              if row_blocks._splittable(m, model.get_output_embeddings())}
    return {shape: blocks_of(shape) for shape in shapes}


def test_the_layer_is_autocasts_linear_bit_for_bit_whole_and_in_identical_blocks():
    """Blocks of 1: the custom layer alone must reproduce autocast's nn.Linear exactly (forward, input and
    weight gradients) on any CPU. Blocks of 2: wherever this CPU's split products are identical."""
    ids = torch.randint(1, 256, (2, 64), generator=torch.Generator().manual_seed(1))
    reference = _tiny()
    expected_loss, expected = _loss_and_grads(reference, ids)

    def identical(shape):
        out_f, in_f = shape
        return tuple(2 if 2 in _identical_blocks(*_operands(ROWS, k, n)) else 1
                     for k, n in ((in_f, out_f), (out_f, in_f)))

    for blocks_of in (lambda shape: (1, 1), identical):
        model = _tiny()
        plan = _forced_plan(model, blocks_of)
        assert row_blocks.use_row_blocks(model, plan, ROWS) == 14  # q, k, v, o, gate, up, down × 2 layers
        loss, grads = _loss_and_grads(model, ids)
        assert torch.equal(loss, expected_loss)
        assert all(torch.equal(grads[name], expected[name]) for name in expected)
        assert model.state_dict().keys() == reference.state_dict().keys()


def test_only_the_training_step_runs_the_blocks(monkeypatch):
    model = _tiny()
    row_blocks.use_row_blocks(model, _forced_plan(model, lambda shape: (2, 2)), ROWS)
    calls = []
    real = row_blocks._RowBlockLinear.apply
    monkeypatch.setattr(row_blocks._RowBlockLinear, "apply", lambda *a: calls.append(1) or real(*a))
    ids = torch.randint(1, 256, (2, 64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=ids)
    assert len(calls) == 14
    calls.clear()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=ids)                      # evaluation
    model(input_ids=ids)                          # fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=ids[:1])                  # another shape than planned
    assert calls == []


def test_wanted_only_for_bf16_on_a_cpu_that_multiplies_it_on_threads_and_not_when_turned_off(monkeypatch, two_threads):
    monkeypatch.setattr(row_blocks, "cpu_multiplies_bf16", lambda: True)
    assert row_blocks.wanted("cpu", "bf16")
    assert not row_blocks.wanted("cpu", "fp32") and not row_blocks.wanted("cuda", "bf16")
    monkeypatch.setenv(row_blocks.OPT_OUT, "off")
    assert not row_blocks.wanted("cpu", "bf16")
    monkeypatch.delenv(row_blocks.OPT_OUT)
    torch.set_num_threads(1)
    assert not row_blocks.wanted("cpu", "bf16")
    torch.set_num_threads(2)
    monkeypatch.setattr(row_blocks, "cpu_multiplies_bf16", lambda: False)
    assert not row_blocks.wanted("cpu", "bf16")


@pytest.mark.slow
def test_a_bf16_training_run_records_its_blocks_and_logs_the_losses_of_a_run_without(tiny_params, data_dir, tmp_path,
                                                                                    monkeypatch, two_threads):
    """End to end through ``train``: blocks planned (forced here to every bit-identical split, since a tiny
    model's products gain nothing from splitting) and recorded in the summary; every logged loss and
    gradient norm equals a run with ``CPT_ROW_BLOCKS=off``."""
    from cpt_utils.train import train

    monkeypatch.setenv("CPT_CPU_BF16", "native")
    monkeypatch.setattr(row_blocks, "cpu_multiplies_bf16", lambda: True)
    planned = []

    def plan_identical(model, rows, seed=0):
        def blocks(shape):
            out_f, in_f = shape
            return tuple(2 if 2 in _identical_blocks(*_operands(rows, k, n)) else 1
                         for k, n in ((in_f, out_f), (out_f, in_f)))
        planned.append({s: b for s, b in _forced_plan(model, blocks).items() if b != (1, 1)})
        return planned[-1]

    monkeypatch.setattr(row_blocks, "plan_row_blocks", plan_identical)
    params = tiny_params.model_copy(deep=True)
    params.train.precision = "bf16"
    params.train.token_budget, params.train.milestones = 1024, [1024]
    runs = {}
    for name, setting in (("blocks", ""), ("whole", "off")):
        monkeypatch.setenv(row_blocks.OPT_OUT, setting)
        summary = train(params, tmp_path / name, data_dir=data_dir, progress=False)
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        runs[name] = (summary, [(r["loss"], r["grad_norm"]) for r in rows if r["kind"] == "train"])
    blocks_summary, with_blocks = runs["blocks"]
    assert runs["whole"][0]["row_blocks"] == {}
    assert len(planned) == 1 and blocks_summary["row_blocks"] == {f"{o}x{i}": list(b) for (o, i), b in planned[0].items()}
    assert len(with_blocks) >= 4 and with_blocks == runs["whole"][1]
