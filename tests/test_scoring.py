"""FastMCLM gives lm-eval's HFLM log-likelihoods and is_greedy, request by request: on the real offline
tasks of a tiny model, on contexts past the model's window (left truncation), on continuations that
tokenize differently alone and after their context, and on the rolling (perplexity) path."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

from cpt_utils.modeling import load_model, load_tokenizer
from cpt_utils.scoring import FastMCLM

from .numerics import assert_within_bf16_rounding

FP32_TOL = 1e-4  # nats per request: float rounding only (measured ≤ 1e-5 on the tiny model)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from cpt_utils.config import load_params
    from cpt_utils.paths import REPO_ROOT
    from cpt_utils.preprocess import prepare_data

    params = load_params(REPO_ROOT / "params" / "tiny.yaml")
    run = tmp_path_factory.mktemp("run")
    prepare_data(params, run, progress=False)
    return params, run, load_model(params.model).eval(), load_tokenizer(params.model)


def _pair(model, tok, **kwargs) -> tuple[HFLM, FastMCLM]:
    precision = kwargs.pop("precision", "fp32")
    ref = HFLM(pretrained=model, tokenizer=tok, device="cpu", batch_size=kwargs.pop("batch_size", 4), **kwargs)
    return ref, FastMCLM(pretrained=model, tokenizer=tok, device="cpu", batch_size=ref.batch_size,
                         precision=precision, **kwargs)


def _instances(pairs: list[tuple[str, str]]) -> list[Instance]:
    return [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]


def _assert_same(ref: list[tuple[float, bool]], ours: list[tuple[float, bool]], tol: float = FP32_TOL) -> None:
    assert len(ref) == len(ours)
    worst = max(abs(a[0] - b[0]) for a, b in zip(ref, ours))
    assert worst < tol, f"max |Δ log-likelihood| {worst:.2e} nats"
    assert [a[1] for a in ref] == [b[1] for b in ours], "is_greedy differs"


def _evaluate(lm, tasks, task_dir):
    import lm_eval
    from lm_eval.tasks import TaskManager

    with contextlib.redirect_stderr(io.StringIO()):
        return lm_eval.simple_evaluate(model=lm, tasks=tasks, log_samples=True, bootstrap_iters=0, num_fewshot=0,
                                       task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
                                       random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)


def test_offline_suite_gives_hflm_log_likelihoods_and_metrics(tiny):
    from cpt_utils.task_build import build_task_dir

    params, run, model, tok = tiny
    task_dir, counts = build_task_dir(params, run / "data", tok)
    ref_lm, fast_lm = _pair(model, tok, batch_size=params.eval.batch_size)
    ref, ours = _evaluate(ref_lm, list(counts), task_dir), _evaluate(fast_lm, list(counts), task_dir)
    for task in counts:
        a = sorted(ref["samples"][task], key=lambda s: s["doc_id"])
        b = sorted(ours["samples"][task], key=lambda s: s["doc_id"])
        assert [s["arguments"] for s in a] == [s["arguments"] for s in b]
        _assert_same([tuple(r[0]) for s in a for r in s["resps"]], [tuple(r[0]) for s in b for r in s["resps"]])
        for metric in ("acc,none", "acc_norm,none"):
            if metric in ref["results"][task]:
                assert [s[metric.split(",")[0]] for s in a] == [s[metric.split(",")[0]] for s in b]
                assert ours["results"][task][metric] == ref["results"][task][metric]


# contexts with trailing spaces (moved to the continuation by _encode_pair), an empty context (BOS/EOS
# prefix), a repeated choice, one-token and multi-token choices
TRICKY = [("Question: what is 2 + 2?\nAnswer:", " four"), ("Question: what is 2 + 2?\nAnswer:", " 4"),
          ("Question: what is 2 + 2?\nAnswer:", " four"), ("Question: what is 2 + 2?\nAnswer:", " fourteen apples"),
          ("The river runs ", "north"), ("The river runs ", "southward into the sea"), ("The river runs ", " east"),
          ("", "An unconditional continuation"), ("", "Another"),
          ("Words that merge across the boundary: pre", "processing"), ("Words that merge across the boundary: pre", "fix"),
          ("Tabs and newlines\n\n", "\tindented"), ("Tabs and newlines\n\n", "plain")]


def test_tricky_tokenization_is_hflm_s(tiny):
    _, _, model, tok = tiny
    ref, fast = _pair(model, tok)
    pairs = [ref._encode_pair(c, x) for c, x in TRICKY if c]
    # the test needs a continuation whose tokens alone differ from its tokens after the context
    assert any(tok.encode(c + x)[len(tok.encode(c)):] != tok.encode(x) for c, x in TRICKY if c), "no merge case"
    assert [fast._encode_pair(c, x) for c, x in TRICKY if c] == pairs
    _assert_same(ref.loglikelihood(_instances(TRICKY), disable_tqdm=True),
                 fast.loglikelihood(_instances(TRICKY), disable_tqdm=True))


def test_contexts_longer_than_the_window_are_left_truncated_like_hflm(tiny):
    _, _, model, tok = tiny
    ref, fast = _pair(model, tok, max_length=24)
    long_ctx = " ".join(f"word{i} and more" for i in range(30))
    pairs = [(long_ctx, " yes"), (long_ctx, " no, not at all, never"), (long_ctx, " maybe"),
             ("Short context:", " fits"), ("Short context:", " a long continuation" * 3)]
    assert len(tok.encode(long_ctx)) > 3 * 24
    assert 24 >= len(tok.encode(" a long continuation" * 3)) > 24 + 1 - 8  # truncated too
    _assert_same(ref.loglikelihood(_instances(pairs), disable_tqdm=True),
                 fast.loglikelihood(_instances(pairs), disable_tqdm=True))


def test_is_greedy_is_true_exactly_where_hflm_says_so(tiny):
    """Token-level requests whose continuations are the model's own greedy tokens (fully or in part)."""
    _, _, model, tok = tiny
    ref, fast = _pair(model, tok, batch_size=3)
    requests = []
    for text in ["The history of", "Mathematics is the study of", "In 1905,"]:
        ctx = tok.encode(text)
        ids = ctx[:]
        with torch.no_grad():
            for _ in range(4):
                ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
        greedy = ids[len(ctx):]
        wrong_last = greedy[:-1] + [(greedy[-1] + 1) % len(tok)]
        for cont in (greedy, greedy[:1], wrong_last, [(greedy[0] + 1) % len(tok)] + greedy[1:]):
            requests.append((None, ctx, cont))
    expected = ref._loglikelihood_tokens(requests, disable_tqdm=True)
    assert [g for _, g in expected] == [True, True, False, False] * 3
    _assert_same(expected, fast._loglikelihood_tokens(requests, disable_tqdm=True))


def test_many_choices_split_into_rows_within_the_window_and_eager_attention_agrees(tiny):
    _, _, model, tok = tiny
    ref, fast = _pair(model, tok, max_length=20)
    pairs = [("A context of a few words:", f" choice number {i} with several tokens") for i in range(12)]
    expected = ref.loglikelihood(_instances(pairs), disable_tqdm=True)
    requests = [(p, *fast._encode_pair(*p)) for p in pairs]
    rows = fast._plan(requests)
    assert len(rows) > 1 and all(len(r) <= fast.max_length for r in rows)
    _assert_same(expected, fast.loglikelihood(_instances(pairs), disable_tqdm=True))
    eager = load_model(tiny[0].model).eval()
    eager.config._attn_implementation = "eager"
    eager_lm = FastMCLM(pretrained=eager, tokenizer=tok, device="cpu", batch_size=4, max_length=20)
    _assert_same(expected, eager_lm.loglikelihood(_instances(pairs), disable_tqdm=True))


def test_token_budget_batches_and_full_logits_fallback_agree(tiny):
    _, _, model, tok = tiny
    ref, fast = _pair(model, tok)
    expected = ref.loglikelihood(_instances(TRICKY), disable_tqdm=True)
    small = FastMCLM(pretrained=model, tokenizer=tok, device="cpu", batch_size=64, batch_tokens=8)
    _assert_same(expected, small.loglikelihood(_instances(TRICKY), disable_tqdm=True))
    fast._force_full_logits = True  # the path for models whose logits are not a plain output head
    _assert_same(expected, fast.loglikelihood(_instances(TRICKY), disable_tqdm=True))


def test_rolling_log_likelihood_matches_hflm(tiny):
    _, _, model, tok = tiny
    ref, fast = _pair(model, tok, max_length=16)
    text = "A document long enough to need several rolling windows of sixteen tokens each, " * 3
    requests = [Instance("loglikelihood_rolling", {}, (text,), 0)]
    a, b = ref.loglikelihood_rolling(requests, disable_tqdm=True), fast.loglikelihood_rolling(requests, disable_tqdm=True)
    assert a[0] == pytest.approx(b[0], abs=FP32_TOL)


@pytest.mark.filterwarnings("ignore:precision bf16 on a CPU without AMX")
def test_bf16_stays_close_to_fp32_hflm(tiny):
    """The bf16 path: each request's log-likelihood within bf16's resolution of it (2⁻⁸ of the value,
    ``tests/numerics.py``; measured ≤ 0.003 nats on the tiny model, whose requests are ≥ 6 nats)."""
    _, _, model, tok = tiny
    ref, _ = _pair(model, tok)
    fast = FastMCLM(pretrained=model, tokenizer=tok, device="cpu", batch_size=4, precision="bf16")
    expected = ref.loglikelihood(_instances(TRICKY), disable_tqdm=True)
    got = fast.loglikelihood(_instances(TRICKY), disable_tqdm=True)
    assert_within_bf16_rounding([b[0] for b in got], [a[0] for a in expected], "log-likelihood")
    assert next(model.parameters()).dtype == torch.float32  # autocast only: the weights are untouched


def test_bad_arguments_are_named(tiny):
    _, _, model, tok = tiny
    with pytest.raises(ValueError, match="precision='fp16'"):
        FastMCLM(pretrained=model, tokenizer=tok, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="batch_tokens=0"):
        FastMCLM(pretrained=model, tokenizer=tok, device="cpu", batch_tokens=0)


@pytest.mark.slow
def test_packaged_smollm2_matches_hflm_on_real_items(tmp_path):
    """~40 MMLU cloze and letter items of the packaged model, fp32: the same log-likelihood per request."""
    from cpt_utils.config import load_params
    from cpt_utils.paths import REPO_ROOT
    from cpt_utils.task_build import build_task_dir

    quick = load_params(REPO_ROOT / "params" / "quickstart.yaml")
    params = quick.model_copy(update={"eval": quick.eval.model_copy(update={
        "offline_tasks": ["mmlu_offline_domain_cloze", "mmlu_offline_general"], "limit": 20,
        "final_tasks": [], "task_limits": {}})})
    model, tok = load_model(params.model).eval(), load_tokenizer(params.model)
    task_dir, counts = build_task_dir(params, tmp_path, tok)  # MMLU items do not depend on the run's data
    ref_lm, fast_lm = _pair(model, tok, batch_size=16)
    ref, ours = _evaluate(ref_lm, list(counts), task_dir), _evaluate(fast_lm, list(counts), task_dir)
    for task in counts:
        a = sorted(ref["samples"][task], key=lambda s: s["doc_id"])
        b = sorted(ours["samples"][task], key=lambda s: s["doc_id"])
        _assert_same([tuple(r[0]) for s in a for r in s["resps"]], [tuple(r[0]) for s in b for r in s["resps"]])
