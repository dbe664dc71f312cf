"""Per-document attention through a FlexAttention block mask scores packed documents as if each were
alone, exactly as today's sdpa path (a 4-D mask transformers builds from restarting position ids) does.

transformers' ``flex_attention`` runs ``torch.compile(flex_attention)`` even in an eager model (its
``WrappedFlexAttention``), so the first flex forward here compiles the CPU kernel (≈ 35 s on one core,
seconds once inductor's cache holds it); the packed-row tests share one shape so that nothing else
recompiles. On CPU FlexAttention has no backward (torch ≤ 2.13): gradients are compared on CUDA only.
"""

from __future__ import annotations

import pytest
import torch

from cpt_utils.attention import attention_kwargs, document_block_mask, document_ids
from cpt_utils.config import TinyModelParams
from cpt_utils.losses import causal_lm_loss
from cpt_utils.modeling import build_tiny_model
from cpt_utils.perplexity import token_nats

from .numerics import BF16_UNIT_ROUNDOFF

VOCAB = 512
SEQ = 64
#: two packed rows of different documents (lengths sum to SEQ)
DOCS = [[13, 30, 21], [40, 24]]
#: fp32, per token: flex vs sdpa measured 0.0 and either vs the documents alone 4.8e-7 nats (values ≈ 6.2)
#: on the tiny model — another order of fp32 sums in attention; 1e-5 leaves 20× margin, and a token that
#: sees another document moves by > 1e-2.
FP32_ATOL = 1e-5
#: bf16 autocast, per token (values ≤ 6.7 nats): bf16 vs fp32 of the same path measured ≤ 1.07e-3 nats
#: (flex, sdpa and alone alike), and flex vs sdpa vs alone under bf16 ≤ 7.4e-4 (two paths rounding
#: differently). 5e-3 is ≈ 5× the bf16-vs-fp32 difference and still 5× inside bf16's own resolution of
#: such a value (2⁻⁸ × 6.7 ≈ 2.6e-2, tests/numerics.py), so a real bf16 rounding change passes and a
#: mask that lets documents mix (> 1e-2, and caught exactly by the fp32 tests) does not.
BF16_ATOL = 5e-3
assert BF16_ATOL < BF16_UNIT_ROUNDOFF * 6.7


def _positions(docs=DOCS) -> torch.Tensor:
    return torch.stack([torch.cat([torch.arange(n) for n in row]) for row in docs])


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(1, VOCAB, (len(DOCS), SEQ), generator=torch.Generator().manual_seed(seed))


def _within_documents() -> torch.Tensor:
    """[rows, SEQ − 1] True where a target lies in the same document as its input token (the target at a
    document's first token is predicted across the boundary: no path agrees with 'alone' there)."""
    keep = torch.ones(len(DOCS), SEQ - 1, dtype=torch.bool)
    for r, row in enumerate(DOCS):
        start = 0
        for n in row[:-1]:
            start += n
            keep[r, start - 1] = False
    return keep


@pytest.fixture(scope="module")
def models():
    sdpa = build_tiny_model(TinyModelParams(), VOCAB, seed=0, attn_implementation="sdpa").eval()
    flex = build_tiny_model(TinyModelParams(), VOCAB, seed=0, attn_implementation="flex_attention").eval()
    return sdpa, flex


def _alone(model, ids, precision) -> torch.Tensor:
    """Each document scored in its own row, laid back where it sits in the packed row."""
    out = torch.full((len(DOCS), SEQ - 1), float("nan"))
    for r, row in enumerate(DOCS):
        start = 0
        for n in row:
            out[r, start:start + n - 1] = token_nats(model, ids[r:r + 1, start:start + n], None, precision)[0]
            start += n
    return out


def test_document_ids_restart_at_each_zero_position():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0], [3, 4, 0, 1, 2, 3]])  # a row may begin mid-document
    assert document_ids(pos).tolist() == [[1, 1, 1, 2, 2, 3], [1, 1, 2, 2, 2, 2]]


def test_block_mask_is_causal_within_documents_per_row():
    pos = _positions()
    dense = document_block_mask(pos).to_dense()  # [rows, 1, blocks, blocks] at 128-token blocks: one block here
    assert dense.shape[0] == len(DOCS) and dense.shape[1] == 1
    docs = document_ids(pos)
    block = document_block_mask(pos)
    q = torch.arange(SEQ)
    for r in range(len(DOCS)):
        expected = (docs[r][:, None] == docs[r][None, :]) & (q[:, None] >= q[None, :])
        got = block.mask_mod(torch.tensor(r), torch.tensor(0), q[:, None], q[None, :])
        assert torch.equal(got, expected)


def test_the_compiled_block_mask_build_cuda_uses_equals_the_eager_one_without_recompiling():
    """On CUDA the block mask is built by ``torch.compile(create_block_mask)`` (no batch × T × T tensor).
    Run here on CPU at 256 tokens (two 128-token blocks per side, so blocks are really skipped): each new
    document layout gives the eager build's mask, block by block, on the graph compiled for the first."""
    def positions(rows):
        return torch.stack([torch.cat([torch.arange(n) for n in row]) for row in rows])

    layouts = [[[100, 156], [256]], [[10, 246], [128, 128]], [[1, 255], [50, 50, 156]]]
    try:
        for index, rows in enumerate(layouts):
            pos = positions(rows)
            compiled = document_block_mask(pos, compile=True)
            assert torch.equal(compiled.to_dense(), document_block_mask(pos, compile=False).to_dense())
            if index == 0:
                torch.compiler.set_stance("fail_on_recompile")  # raises if a new layout recompiles
            if index == 1:  # the second half's queries: [10, 246] reads the first key block, [128, 128] skips it
                assert compiled.to_dense()[:, 0, 1, 0].tolist() == [1, 0]
    finally:
        torch.compiler.set_stance("default")


def test_attention_kwargs_add_the_block_mask_for_flex_only(models):
    sdpa, flex = models
    pos = _positions()
    assert attention_kwargs(sdpa, None) == {} and attention_kwargs(flex, None) == {}
    plain = attention_kwargs(sdpa, pos)
    assert list(plain) == ["position_ids"] and plain["position_ids"] is pos
    from torch.nn.attention.flex_attention import BlockMask

    kw = attention_kwargs(flex, pos)
    assert kw["position_ids"] is pos and isinstance(kw["attention_mask"], BlockMask)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_flex_scores_packed_documents_as_sdpa_and_as_alone(models, precision):
    sdpa, flex = models
    ids, pos, keep = _ids(), _positions(), _within_documents()
    with torch.inference_mode():
        by_flex = token_nats(flex, ids, pos, precision)
        by_sdpa = token_nats(sdpa, ids, pos, precision)
        alone = _alone(sdpa, ids, precision)
    atol = FP32_ATOL if precision == "fp32" else BF16_ATOL
    torch.testing.assert_close(by_flex, by_sdpa, rtol=0, atol=atol)
    torch.testing.assert_close(by_flex[keep], alone[keep], rtol=0, atol=atol)
    torch.testing.assert_close(by_sdpa[keep], alone[keep], rtol=0, atol=atol)


def test_flex_mask_isolates_documents(models):
    """New tokens in row 0's first document and row 1's second leave every other document's losses as
    they were, to the bit-level noise of fp32; without the mask they would move."""
    _, flex = models
    ids, pos, keep = _ids(), _positions(), _within_documents()
    changed = ids.clone()
    changed[0, :DOCS[0][0]] = torch.randint(1, VOCAB, (DOCS[0][0],), generator=torch.Generator().manual_seed(7))
    changed[1, DOCS[1][0]:] = torch.randint(1, VOCAB, (DOCS[1][1],), generator=torch.Generator().manual_seed(8))
    with torch.inference_mode():
        before = token_nats(flex, ids, pos, "fp32")
        after = token_nats(flex, changed, pos, "fp32")
        unmasked = token_nats(flex, changed, None, "fp32")  # plain causal over the row
    untouched = keep.clone()
    untouched[0, :DOCS[0][0]] = False    # row 0, document 1 changed
    untouched[1, DOCS[1][0] - 1:] = False  # row 1, document 2 changed
    torch.testing.assert_close(after[untouched], before[untouched], rtol=0, atol=FP32_ATOL)
    assert (unmasked[untouched] - before[untouched]).abs().max() > 1e-3  # the check can fail


def test_causal_lm_loss_flex_equals_sdpa_forward(models):
    """The training loss (chunked head), flex block mask vs sdpa's 4-D mask, fp32, in train mode. Without
    gradients: FlexAttention has no backward on CPU (see test_flex_training_refused_on_cpu)."""
    sdpa, flex = models
    ids, pos = _ids(1), _positions()
    losses = []
    for model in (sdpa, flex):
        model.train()
        try:
            with torch.no_grad():
                losses.append(causal_lm_loss(model, ids, pos, chunk=32))
                losses.append(causal_lm_loss(model, ids, pos, chunk=0))  # transformers' own loss
        finally:
            model.eval()
    chunked_s, hf_s, chunked_f, hf_f = losses
    torch.testing.assert_close(chunked_f, chunked_s, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(hf_f, hf_s, rtol=1e-6, atol=1e-6)


def test_a_compiled_flex_model_takes_each_batchs_block_mask_as_an_input_without_recompiling(models):
    """``train.compile: true`` with ``flex_attention`` (the GPU benchmark's cpt-compiled loop): every batch
    brings a new block mask (a new ``mask_mod`` closure over new document ids), built outside the model.
    After the first batch, batches of other document layouts must run the same compiled graphs — no
    recompilation (a guard on the closure would recompile every step, then fall back to eager after
    ``cache_size_limit``) — and give the eager model's loss. Forward only: on CPU FlexAttention has no
    backward, so this is what can be checked here of the CUDA training loop (its backward is compiled
    with the same forward graph and guards)."""
    from cpt_utils.train import compiled_for_training

    _, flex = models
    compiled = compiled_for_training(flex, "model")
    layouts = [DOCS, [[20, 44], [64]], [[5, 5, 54], [10, 30, 24]], [[64], [1, 63]]]
    flex.train()
    try:
        with torch.no_grad():
            for index, docs in enumerate(layouts):
                ids, pos = _ids(index), _positions(docs)
                if index == 1:
                    torch.compiler.set_stance("fail_on_recompile")  # raises if a new mask recompiles
                got = causal_lm_loss(compiled, ids, pos, chunk=32)
                torch.testing.assert_close(got, causal_lm_loss(flex, ids, pos, chunk=32), rtol=1e-6, atol=1e-6)
    finally:
        torch.compiler.set_stance("default")
        flex.eval()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention has a backward on CUDA only")
def test_causal_lm_loss_flex_gradients_equal_sdpa_on_cuda():
    """Loss and gradients of a few parameters, flex vs sdpa, fp32 on CUDA (TF32 off for both)."""
    names = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
             "model.layers.1.self_attn.k_proj.weight", "model.layers.1.mlp.down_proj.weight"]
    ids, pos = _ids(1).cuda(), _positions().cuda()
    results = []
    for attn in ("sdpa", "flex_attention"):
        model = build_tiny_model(TinyModelParams(), VOCAB, seed=0, attn_implementation=attn).cuda().train()
        loss = causal_lm_loss(model, ids, pos, chunk=32)
        params = dict(model.named_parameters())
        results.append((loss.detach(), torch.autograd.grad(loss, [params[n] for n in names])))
    (loss_s, grads_s), (loss_f, grads_f) = results
    torch.testing.assert_close(loss_f, loss_s, rtol=1e-5, atol=1e-5)
    for name, gs, gf in zip(names, grads_s, grads_f):
        torch.testing.assert_close(gf, gs, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_flex_training_refused_on_cpu(models):
    """torch has no FlexAttention backward on CPU: train.setup refuses it up front with a message that
    names the fix, and the model itself raises torch's error rather than training silently."""
    from cpt_utils.attention import check_supported

    with pytest.raises(ValueError, match="flex_attention has no backward on CPU"):
        check_supported("flex_attention", "cpu")
    check_supported("flex_attention", "cpu", training=False)
    check_supported("flex_attention", "cuda")
    check_supported("sdpa", "cpu")
    _, flex = models
    flex.train()
    try:
        with pytest.raises(NotImplementedError, match="backward on CPU"):
            causal_lm_loss(flex, _ids(1), _positions(), chunk=32)
    finally:
        flex.eval()


def test_multiple_choice_scoring_with_a_flex_model_agrees_with_sdpa():
    """``scoring.FastMCLM`` hands the model its own 4-D boolean mask; flex_attention adds a tensor mask to
    the scores (``score_mod``), so it must get the additive form, as eager does, or nothing is masked."""
    from lm_eval.api.instance import Instance

    from cpt_utils.modeling import train_tiny_tokenizer
    from cpt_utils.scoring import FastMCLM

    tok = train_tiny_tokenizer(VOCAB)
    pairs = [("A context of a few words:", f" choice number {i} with several tokens") for i in range(6)]
    scores = []
    for attn in ("sdpa", "flex_attention"):
        model = build_tiny_model(TinyModelParams(), len(tok), seed=0, attn_implementation=attn).eval()
        lm = FastMCLM(pretrained=model, tokenizer=tok, device="cpu", batch_size=4, max_length=20)
        scores.append(lm.loglikelihood([Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)],
                                       disable_tqdm=True))
    (sdpa, flex) = scores
    assert [g for _, g in flex] == [g for _, g in sdpa]
    torch.testing.assert_close(torch.tensor([ll for ll, _ in flex]), torch.tensor([ll for ll, _ in sdpa]),
                               rtol=0, atol=1e-4)


# ------------------------------------------------------------------- auto: the training step's kernel
def test_auto_trains_with_eager_attention_only_on_a_bf16_cpu_and_only_within_the_memory_budget(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setenv("CPT_CPU_BF16", "native")

    from cpt_utils.attention import EAGER_PROBABILITIES_BUDGET, loading_attention, training_attention

    smol = SimpleNamespace(num_attention_heads=9, num_hidden_layers=30)
    assert training_attention("auto", "cpu", "bf16", 4, 256, smol) == "eager"  # the quickstart's step
    assert training_attention("auto", "cpu", "fp32", 4, 256, smol) == "sdpa"   # fp32 CPUs: eager no faster
    assert training_attention("auto", "cuda", "bf16", 4, 256, smol) == "sdpa"  # GPUs: flash kernels
    assert training_attention("auto", "cpu", "bf16", 8, 2048, smol) == "sdpa"  # 9.3 GB of probabilities
    rows = EAGER_PROBABILITIES_BUDGET // (9 * 256 ** 2 * 30 * 8)
    assert training_attention("auto", "cpu", "bf16", rows, 256, smol) == "eager"
    assert training_attention("auto", "cpu", "bf16", rows + 1, 256, smol) == "sdpa"
    for explicit in ("sdpa", "eager", "flex_attention"):  # a user's choice is kept
        assert training_attention(explicit, "cpu", "bf16", 4, 256, smol) == explicit
    assert loading_attention("auto") == "sdpa" and loading_attention("eager") == "eager"
    monkeypatch.setenv("CPT_CPU_BF16", "emulated")  # bf16 forced on the AVX2 kind: not measured, so sdpa
    assert training_attention("auto", "cpu", "bf16", 4, 256, smol) == "sdpa"


def _eager_and_sdpa_bf16(model, ids, pos):
    """(fp32 loss and gradients, then the same under bf16 autocast with sdpa and with eager attention)."""
    from cpt_utils.attention import attention_as

    out = []
    for implementation, bf16 in (("sdpa", False), ("sdpa", True), ("eager", True)):
        with attention_as(model, implementation), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = causal_lm_loss(model, ids, pos, 32)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        out.append((loss.item(), grads))
    return out


def test_eager_attention_under_bf16_is_as_close_to_fp32_as_sdpa_and_the_same_in_fp32():
    """What ``auto`` changes in a bf16 CPU training step: eager attention rounds the T × T scores to bf16
    where the flash kernel keeps them fp32. Against fp32 over eight batches, its loss deviates (RMS) at most
    twice as much as sdpa's under bf16, and its gradient at most 1.5× as much in every batch (measured here:
    loss RMS 5.5e-5 vs 4.1e-5, gradients 0.45–0.49% vs 0.46–0.50% relative; on SmolLM2-135M and the
    quickstart's rows: loss 3.6e-4–7.2e-4 vs 3.8e-4–1.2e-3, gradients 2.1–4.0% vs 2.0–4.9%). In fp32 the
    two kernels agree to summation order, so a mask that let documents mix (> 1e-2) would fail there."""
    from cpt_utils.attention import attention_as

    model = build_tiny_model(TinyModelParams(), VOCAB, seed=0).train()
    model.config.use_cache = False
    loss_dev = {"sdpa": [], "eager": []}
    for seed in range(8):
        ids, pos = _ids(seed), _positions()
        (exact, exact_grads), (sdpa, sdpa_grads), (eager, eager_grads) = _eager_and_sdpa_bf16(model, ids, pos)
        loss_dev["sdpa"].append(sdpa - exact)
        loss_dev["eager"].append(eager - exact)
        off = {name: torch.cat([(g - x).flatten() for g, x in zip(grads, exact_grads)]).norm()
               for name, grads in (("sdpa", sdpa_grads), ("eager", eager_grads))}
        assert 0 < off["eager"] <= 1.5 * off["sdpa"], (seed, off)
        with attention_as(model, "eager"):
            fp32_eager = causal_lm_loss(model, ids, pos, 32).item()
        assert fp32_eager == pytest.approx(exact, rel=1e-5)
    rms = {name: (sum(d * d for d in devs) / len(devs)) ** 0.5 for name, devs in loss_dev.items()}
    assert rms["eager"] <= 2 * rms["sdpa"], rms
    assert model.config._attn_implementation == "sdpa"  # restored


def test_a_bf16_cpu_training_run_steps_with_eager_attention_and_evaluates_with_sdpa(tiny_params, data_dir, tmp_path,
                                                                                  monkeypatch):
    """The switch is made around the training step's forward only: the in-loop held-out evaluation and
    every saved result keep sdpa (they are compared with, and reused by, separate evaluations). Run as the
    bf16-native kind whatever this CPU is (``CPT_CPU_BF16``: bf16 is then emulated, slowly, on a tiny model)."""
    from cpt_utils import train as cpt_train

    monkeypatch.setenv("CPT_CPU_BF16", "native")

    params = tiny_params.model_copy(deep=True)
    params.train.precision = "bf16"
    params.train.token_budget, params.train.milestones = 512, [512]
    seen: list[tuple[bool, str]] = []
    (tmp_path / "run").mkdir()
    state = cpt_train.setup(params, tmp_path / "run", data_dir)
    cpt_train.resume(state)
    layer = state.accelerator.unwrap_model(state.model).model.layers[0].self_attn
    layer.register_forward_pre_hook(lambda m, args: seen.append((torch.is_grad_enabled(), m.config._attn_implementation)))
    assert state.attention == "eager"
    summary = cpt_train.fit(state, progress=False)
    assert summary["attention"] == "eager"
    assert {impl for grad, impl in seen if grad} == {"eager"}      # every training forward
    assert {impl for grad, impl in seen if not grad} == {"sdpa"}   # the in-loop held-out points
    assert state.accelerator.unwrap_model(state.model).config._attn_implementation == "sdpa"


def test_auto_is_sdpa_to_a_runs_identity_so_runs_from_before_it_resume(tiny_params, data_dir):
    """A checkpoint trained under ``sdpa`` (the default before ``auto``) keeps its trajectory and its results
    under ``auto``, which only picks the training kernel per machine; an explicit ``eager`` is another run."""
    from cpt_utils.results import trajectory_fingerprint
    from cpt_utils.results.store import evaluation_settings

    def with_attention(value):
        return tiny_params.model_copy(update={"model": tiny_params.model.model_copy(update={"attn_implementation": value})})

    auto, sdpa, eager = (with_attention(v) for v in ("auto", "sdpa", "eager"))
    assert tiny_params.model.attn_implementation == "auto"
    assert trajectory_fingerprint(auto, data_dir) == trajectory_fingerprint(sdpa, data_dir)
    assert trajectory_fingerprint(eager, data_dir) != trajectory_fingerprint(sdpa, data_dir)
    assert evaluation_settings(auto, data_dir) == evaluation_settings(sdpa, data_dir)
