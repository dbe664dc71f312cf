"""The threaded gradient clipping gives torch's ``clip_grad_norm_`` numbers bit for bit, and only where it is
plain CPU work."""

from __future__ import annotations

import math

import pytest
import torch
from accelerate import Accelerator

from cpt_utils import grad_norm
from cpt_utils.config import TinyModelParams
from cpt_utils.grad_norm import clip_grad_norm
from cpt_utils.modeling import build_tiny_model

VOCAB = 512


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


def _model_with_gradients(seed: int = 0, scale: float = 1.0):
    """A tiny model after one backward, plus one SmolLM2-sized tensor (49,152 × 576, the tied embedding's
    gradient): if a norm kernel split a large tensor among threads, the sizes where that starts are met."""
    model = build_tiny_model(TinyModelParams(), VOCAB, seed=seed).train()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (2, 32), generator=g)
    (model(input_ids=ids, labels=ids).loss * scale).backward()
    big = torch.nn.Parameter(torch.zeros(49_152, 576))
    big.grad = torch.randn(49_152, 576, generator=g) * 1e-3
    return [*model.parameters(), big]


def _copy(params):
    """Independent parameters with copies of the gradients (a Parameter's deepcopy drops ``.grad``)."""
    copies = []
    for p in params:
        q = torch.nn.Parameter(p.detach().clone())
        q.grad = None if p.grad is None else p.grad.clone()
        copies.append(q)
    return copies


@pytest.mark.parametrize("max_norm", [1.0, 1e-3, 1e6, math.inf])
def test_the_norm_and_the_clipped_gradients_equal_torchs_bit_for_bit(two_threads, accelerator, max_norm):
    params = _model_with_gradients()
    theirs = _copy(params)
    assert grad_norm._threadable(accelerator, [p.grad for p in params])
    ours_norm = clip_grad_norm(accelerator, params, max_norm)
    their_norm = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert ours_norm == float(their_norm)
    for mine, other in zip(params, theirs):
        assert torch.equal(mine.grad, other.grad)
    if max_norm < ours_norm:  # the clipping acted: the clipped gradients have the limit's norm
        assert float(torch.nn.utils.get_total_norm([p.grad for p in params])) == pytest.approx(max_norm, rel=1e-4)  # fp32 sums over 28M


def test_parameters_without_a_gradient_are_left_out_and_a_generator_is_fine(two_threads, accelerator):
    params = _model_with_gradients()
    params[1].grad = None
    theirs = _copy(params)
    assert clip_grad_norm(accelerator, iter(params), 0.5) == float(torch.nn.utils.clip_grad_norm_(theirs, 0.5))
    assert params[1].grad is None
    for mine, other in zip(params, theirs):
        assert (mine.grad is None and other.grad is None) or torch.equal(mine.grad, other.grad)


def test_a_non_finite_gradient_gives_a_non_finite_norm_as_torchs(two_threads, accelerator):
    """The training step refuses a step on a non-finite norm: it must come out non-finite, as torch's does."""
    params = _model_with_gradients()
    params[3].grad[0, 0] = float("nan")
    assert math.isnan(clip_grad_norm(accelerator, params, 1.0))
    params = _model_with_gradients()
    params[3].grad[0, 0] = float("inf")
    assert math.isinf(clip_grad_norm(accelerator, params, math.inf))


def test_one_thread_or_the_opt_out_hands_over_to_accelerate(accelerator, monkeypatch):
    """With one thread there is nothing to share, and ``CPT_THREADED_GRAD_NORM=off`` turns it off: both go
    through ``accelerator.clip_grad_norm_`` (which also serves FSDP, DeepSpeed and GPUs)."""
    calls = []
    original = accelerator.clip_grad_norm_
    monkeypatch.setattr(accelerator, "clip_grad_norm_", lambda *a, **k: calls.append(a) or original(*a, **k))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        params = _model_with_gradients()
        theirs = _copy(params)
        assert clip_grad_norm(accelerator, params, 1.0) == float(torch.nn.utils.clip_grad_norm_(theirs, 1.0))
        assert len(calls) == 1
        torch.set_num_threads(2)
        monkeypatch.setenv("CPT_THREADED_GRAD_NORM", "off")
        clip_grad_norm(accelerator, _model_with_gradients(), 1.0)
        assert len(calls) == 2
        monkeypatch.delenv("CPT_THREADED_GRAD_NORM")
        clip_grad_norm(accelerator, _model_with_gradients(), 1.0)
        assert len(calls) == 2  # threaded again
    finally:
        torch.set_num_threads(before)


def test_the_norms_are_shared_among_the_threads_by_size(two_threads, monkeypatch):
    """The calling thread and one pool thread each get work, balanced by size (largest first to the lighter share), and every tensor's
    norm comes back in its place."""
    seen = []
    original = torch.linalg.vector_norm

    def recording(tensor, *args, **kwargs):
        seen.append((tensor.numel(), __import__("threading").current_thread().name))
        return original(tensor, *args, **kwargs)

    grads = [torch.full((n,), 2.0) for n in (10, 1_000, 7, 3_000, 2_500)]
    monkeypatch.setattr(torch.linalg, "vector_norm", recording)
    norms = grad_norm._norms(grads)
    assert [float(n) for n in norms] == [float(original(g, 2.0)) for g in grads]  # each in its place
    threads = {name for _, name in seen}
    assert len(threads) == 2 and sum(name.startswith("cpt-grad-norm") for name in threads) == 1  # + the caller
    load = {name: sum(n for n, t in seen if t == name) for name in threads}
    assert sorted(load.values()) == [3_017, 3_500]
