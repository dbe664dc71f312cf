"""The chunked cross-entropy is transformers' own loss, gradients included, without the full logits."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from cpt_utils.losses import causal_lm_loss, chunked_cross_entropy
from cpt_utils.modeling import build_tiny_model
from cpt_utils.precision import cpu_multiplies_bf16
from cpt_utils.config import TinyModelParams, TrainParams
from cpt_utils.train import train

from .numerics import EXACT

VOCAB = 512
#: fp32 sums in another order: measured ≤ 1e-6 relative on the tiny model; a wrong shift, mask or mean
#: moves the loss by > 1e-2 and the gradients by far more.
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture()
def model():
    m = build_tiny_model(TinyModelParams(), VOCAB, seed=0).train()
    m.config.use_cache = False
    return m


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (2, 48), generator=g)
    packed = torch.cat([torch.arange(20), torch.arange(28)]).repeat(2, 1)  # two documents per row
    return ids, packed


def _loss_and_grads(model, loss):
    grads = torch.autograd.grad(loss, [p for p in model.parameters()])
    return loss.detach(), dict(zip([n for n, _ in model.named_parameters()], grads))


@pytest.mark.parametrize("packed", [False, True], ids=["whole-rows", "packed-documents"])
@pytest.mark.parametrize("chunk", [1, 7, 32, 4096])  # 94 targets: 7 and 32 do not divide it
def test_loss_and_every_gradient_equal_transformers_loss(model, packed, chunk):
    ids, positions = _batch()
    positions = positions if packed else None
    kwargs = {} if positions is None else {"position_ids": positions}
    ref_loss, ref_grads = _loss_and_grads(model, model(input_ids=ids, labels=ids, **kwargs).loss)
    loss, grads = _loss_and_grads(model, causal_lm_loss(model, ids, positions, chunk))
    assert loss.item() == pytest.approx(ref_loss.item(), rel=RTOL)
    assert grads.keys() == ref_grads.keys()
    for name, ref in ref_grads.items():
        torch.testing.assert_close(grads[name], ref, rtol=RTOL, atol=ATOL, msg=lambda m: f"{name}: {m}")


def test_packing_changes_the_loss(model):
    """Control for the test above: per-document positions matter, so 'equal in both cases' means something."""
    ids, positions = _batch()
    assert abs(causal_lm_loss(model, ids, positions, 16).item() - causal_lm_loss(model, ids, None, 16).item()) > 1e-3


def test_chunk_zero_is_transformers_loss_itself(model):
    ids, positions = _batch()
    assert causal_lm_loss(model, ids, positions, 0).item() == model(input_ids=ids, labels=ids,
                                                                    position_ids=positions).loss.item()


def test_ignored_labels_are_skipped_and_the_mean_is_over_the_rest(model):
    from transformers.loss.loss_utils import ForCausalLMLoss

    ids, _ = _batch(1)
    labels = ids.clone()
    labels[0, 10:30] = -100
    labels[1, :5] = -100
    hidden = model.model(input_ids=ids).last_hidden_state
    head = model.get_output_embeddings()
    ref = ForCausalLMLoss(head(hidden), labels, VOCAB)
    assert chunked_cross_entropy(hidden, head, labels, 9).item() == pytest.approx(ref.item(), rel=RTOL)
    unmasked = ForCausalLMLoss(head(hidden), ids, VOCAB)
    assert abs(unmasked.item() - ref.item()) > 1e-3  # control: the mask changed the loss


def test_without_grad_it_builds_no_graph_and_gives_the_same_loss(model):
    ids, positions = _batch()
    expected = causal_lm_loss(model, ids, positions, 16).item()
    with torch.no_grad():
        loss = causal_lm_loss(model, ids, positions, 16)
    assert loss.grad_fn is None and loss.item() == pytest.approx(expected, rel=RTOL)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operation produces (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("chunk", [0, 16])
def test_full_logits_are_never_materialised(model, chunk):
    ids = torch.randint(1, VOCAB, (4, 96), generator=torch.Generator().manual_seed(0))
    full_logits = ids.numel() * VOCAB  # 6× the head's weight: the two are told apart
    with _LargestTensor() as probe:
        causal_lm_loss(model, ids, None, chunk).backward()
    if chunk == 0:  # control: HF's loss does build [batch, seq, vocab]
        assert probe.largest >= full_logits
    else:  # the biggest are now the MLP's activations (tokens × 128), not logits
        assert probe.largest < full_logits / 2


def test_the_chunk_size_is_validated():
    with pytest.raises(ValueError, match="loss_chunk_tokens"):
        TrainParams(loss_chunk_tokens=-1)
    assert TrainParams(loss_chunk_tokens=0).loss_chunk_tokens == 0
    with pytest.raises(ValueError, match="loss_chunk_tokens"):
        chunked_cross_entropy(torch.zeros(1, 4, 8), torch.nn.Linear(8, 16), torch.zeros(1, 4, dtype=torch.long), 0)


def test_a_tiny_training_run_gives_the_same_losses_chunked_or_not(tiny_params, data_dir, tmp_path):
    def first_losses(chunk: int, name: str) -> list[float]:
        params = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={  # fp32: exact claim
            "token_budget": 4 * 256, "milestones": [], "eval_every_tokens": None, "loss_chunk_tokens": chunk,
            "precision": EXACT})})
        train(params, tmp_path / name, data_dir=data_dir, progress=False)
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r["kind"] == "train"]

    hf, chunked = first_losses(0, "hf"), first_losses(100, "chunked")  # 100 does not divide 4 × 63 targets
    assert len(hf) == 4 and chunked == pytest.approx(hf, rel=1e-5)


def test_a_reduced_precision_head_is_chosen_only_for_training_under_16_bit_autocast(monkeypatch):
    """TF32 on CUDA, oneDNN's implicit bf16 on a CPU that multiplies bf16 itself; never in fp32, never on a
    CPU that would emulate bf16 (``CPT_CPU_BF16`` does not make the hardware native)."""
    from cpt_utils import losses

    for native in (True, False):
        monkeypatch.setattr(losses, "cpu_multiplies_bf16", lambda native=native: native)
        assert losses.head_matmul_precision("cpu") is None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert losses.head_matmul_precision("cpu") == ("bf16" if native else None)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
            assert losses.head_matmul_precision("cpu") is None


@pytest.mark.parametrize("backend_name", ["cuda", "mkldnn"])
def test_the_head_switch_is_set_inside_the_loss_only_and_an_explicit_ieee_is_kept(backend_name):
    from cpt_utils.losses import _head_matmuls

    backend = getattr(torch.backends, backend_name)
    device, reduced = {"cuda": ("cuda", "tf32"), "mkldnn": ("cpu", "bf16")}[backend_name]
    parent = backend if backend_name == "mkldnn" else torch.backends  # where "none" inherits from
    before = backend.matmul.fp32_precision, parent.fp32_precision
    try:
        backend.matmul.fp32_precision = "ieee"  # a user's explicit choice for matmuls is kept
        with _head_matmuls(device, reduced):
            assert backend.matmul.fp32_precision == "ieee"
        backend.matmul.fp32_precision, parent.fp32_precision = "none", "ieee"  # so is one it inherits
        user = backend.matmul.fp32_precision  # (torch copies a parent's setting down to some children)
        with _head_matmuls(device, reduced):
            assert backend.matmul.fp32_precision == user
        parent.fp32_precision, backend.matmul.fp32_precision = "none", "none"
        with _head_matmuls(device, reduced):
            assert backend.matmul.fp32_precision == reduced
        assert backend.matmul.fp32_precision == "none"
        with _head_matmuls(device, None):
            assert backend.matmul.fp32_precision == "none"
    finally:
        backend.matmul.fp32_precision, parent.fp32_precision = before


def _bf16_loss_and_grads(model, ids, pos, head: str):
    """The chunked loss under bf16 autocast; ``head="ieee"`` is a user's explicit IEEE switch."""
    matmul = torch.backends.mkldnn.matmul
    before, matmul.fp32_precision = matmul.fp32_precision, head
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = causal_lm_loss(model, ids, pos, chunk=32)
        return _loss_and_grads(model, loss)
    finally:
        matmul.fp32_precision = before


@pytest.mark.skipif(not cpu_multiplies_bf16(), reason="the implicit-bf16 head is used only where the CPU "
                    "multiplies bf16 natively (AMX / AVX-512 BF16); this CPU keeps the IEEE head")
def test_the_implicit_bf16_head_stays_within_the_bf16_bodys_own_rounding(model):
    """On a bf16-native CPU the training loss head rounds its inputs to bf16 (fp32 accumulation). Against
    fp32, the loss and every gradient then deviate at most twice as much as with the IEEE head, i.e. the
    deviation stays of the order bf16's body already makes (measured on this model, three batches: ≤ 1.7×;
    a wrong shift, mask or gradient is off by orders of magnitude). It must also act (differ from IEEE)."""
    acted = False
    for seed in range(3):
        ids, pos = _batch(seed)
        exact_loss, exact_grads = _loss_and_grads(model, causal_lm_loss(model, ids, pos, chunk=32))
        ieee_loss, ieee_grads = _bf16_loss_and_grads(model, ids, pos, "ieee")
        fast_loss, fast_grads = _bf16_loss_and_grads(model, ids, pos, "none")  # cpt's default: implicit bf16
        assert torch.backends.mkldnn.matmul.fp32_precision == "none"  # restored after the loss
        acted |= any(not torch.equal(fast_grads[n], ieee_grads[n]) for n in ieee_grads)
        assert abs(fast_loss - exact_loss) <= 2 * abs(ieee_loss - exact_loss) + 1e-5
        for name, exact in exact_grads.items():
            assert (fast_grads[name] - exact).norm() <= 2 * (ieee_grads[name] - exact).norm(), (seed, name)
    assert acted


@pytest.mark.parametrize("fp32_precision", ["ieee", "bf16"])
@pytest.mark.parametrize("chunk", [7, 94])
def test_the_weight_gradient_written_by_the_first_chunk_equals_adding_every_chunk_to_zeros(model, fp32_precision, chunk):
    """∂weight is written by the first chunk's product (no zero-fill of a vocabulary-sized tensor) and the
    later chunks are added to it: equal bit for bit to adding every chunk's product to zeros (the way it
    was), in IEEE fp32 and in the implicit bf16 a bf16-native CPU's training head runs."""
    from cpt_utils.losses import _forward_chunks, _head_matmuls
    from cpt_utils.precision import fp32_logits

    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(94, model.config.hidden_size, generator=g)
    targets = torch.randint(0, VOCAB, (94,), generator=g)
    weight = model.get_output_embeddings().weight
    with _head_matmuls("cpu", fp32_precision), torch.no_grad():
        _, _, grad_weight, _ = _forward_chunks(hidden, weight, None, targets, model, chunk, True)
        added_to_zeros = torch.zeros_like(weight)
        for start in range(0, len(hidden), chunk):  # the loss's own ∂logits, step by step
            logits = fp32_logits(model, hidden[start:start + chunk])
            maxes = logits.amax(dim=-1, keepdim=True)
            sums = logits.sub_(maxes).exp_().sum(dim=-1)
            dlogits = logits.div_(sums[:, None])
            dlogits[torch.arange(len(dlogits)), targets[start:start + chunk]] -= 1.0
            added_to_zeros.addmm_(dlogits.T, hidden[start:start + chunk])
    assert torch.equal(grad_weight, added_to_zeros)
    assert grad_weight.abs().sum() > 0


def test_no_rows_give_a_zero_weight_gradient(model):
    """With no row to score (every label ignored) no chunk writes ∂weight: it is zeros, never stale memory."""
    from cpt_utils.losses import _forward_chunks

    weight = model.get_output_embeddings().weight
    hidden, targets = torch.zeros(0, model.config.hidden_size), torch.zeros(0, dtype=torch.long)
    with torch.no_grad():
        _, _, grad_weight, _ = _forward_chunks(hidden, weight, None, targets, model, 8, True)
    assert torch.equal(grad_weight, torch.zeros_like(weight))
