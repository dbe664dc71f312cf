"""The GGUF that ``cpt export`` writes, loaded by llama.cpp itself (llama-cpp-python, the optional extra
``llama``): llama.cpp splits text into the torch tokenizer's ids, and its next-token log-probabilities
at every position are the torch checkpoint's within a stated tolerance. ``tests/test_export.py`` reads
the file back through transformers' GGUF loader, which shares our reading of the layout; here the
consumer is the program users run.

Tolerance, from the GGUF tensor type (an error model, not a fit to the observed values):

    |log_softmax_llama.cpp − log_softmax_torch| ≤ FACTOR · u(type) · max |logit|

at every position and vocabulary entry, with u the unit roundoff of the 2-D weights' type
(``tests/numerics.py``: F16 2⁻¹¹; F32 2⁻²⁴) and FACTOR = 64. Where the two computations differ:
(a) rounding to the file's type: for F16 the weights in the file, the activations ggml converts to F16
before every F16 matrix product, and the K/V cache (kept in the file's type here, so the file's type is
the only storage precision); for F32 none; (b) the order of fp32 sums and ggml's own fp32 exp, SiLU and
rotary angles, a few units each, accumulating like a random walk over dot products of up to ~1,500
terms (√1536 ≈ 40) and over the layers. 64 units of the coarsest of these roundings, relative to the
largest logit (a log-softmax error is bounded by twice the largest logit error), covers them with a
margin. Measured on this machine (AVX2 CPU): the tiny model (weights ×WEIGHT_SCALE) ≤ 8.5 u (F32) and
≤ 2.4 u (F16); SmolLM2-135M ≤ 28 u (F32) and ≤ 3.3 u (F16). A layout error is far outside: without
llama.cpp's rotary q/k row order the tiny model's log-probabilities move by 0.33 (4.6·10⁴ × the F32
tolerance), and with one weight matrix scaled by 1 + 2⁻⁷ by 7.6·10⁻³ (10³ ×), both shown below; the
token check fails when the file names another pre-tokenizer split (digits one by one).
"""

from __future__ import annotations

import copy
import json
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch

from cpt_utils import export as export_module
from cpt_utils.export import export

from .numerics import UNIT_ROUNDOFF

INSTALL = ('CMAKE_ARGS="-DGGML_NATIVE=OFF" .venv/bin/pip install --no-deps llama-cpp-python==0.3.36 '
           "diskcache==5.6.3 (it compiles llama.cpp, ~10 min on 2 cores)")
llama_cpp = pytest.importorskip(
    "llama_cpp", reason=f"llama.cpp's Python binding is missing: the optional extra `llama` is not installed: {INSTALL}")

#: One of each kind of text a tokenizer can split differently: ASCII prose, accented letters, digit runs,
#: code (indentation, operators), and a special token that must stay whole.
TEXTS = {
    "ascii": "The derivative of x squared is two x, isn't it?",
    "accents": "Café crème à Zürich: naïve façade, señor, Ærøskøbing.",
    "digits": "12345 + 678 = 13023; π ≈ 3.14159 and 2026-12-05.",
    "code": "def f(x):\n    return x ** 2  # square\n\tif a != b: print({'k': [1, 2]})\n",
    "special": "First document.<|endoftext|>Second one",
}
FACTOR = 64
U = {**UNIT_ROUNDOFF, "f32": float(np.finfo(np.float32).eps) / 2}  # round-to-nearest: half an ulp at 1
GGML_TYPE = {"f32": llama_cpp.GGML_TYPE_F32, "f16": llama_cpp.GGML_TYPE_F16}
#: The tiny model's random initialisation (std 0.02) leaves attention nearly uniform and logits near 0, where
#: a wrong q/k row order or a changed weight hardly shows; scaled weights make every part of it matter.
WEIGHT_SCALE = 3.0


# -------------------------------------------------------------------------------------------- helpers
def as_run(model, tokenizer, root: Path) -> Path:
    """A run folder whose final checkpoint is ``model`` (what ``cpt export`` reads)."""
    checkpoint = root / "checkpoints" / "tokens-000000000000"
    model.save_pretrained(checkpoint / "model")
    tokenizer.save_pretrained(checkpoint / "model")
    (checkpoint / "checkpoint.json").write_text(json.dumps({"step": 0, "tokens": 0, "final": True}))
    return root


def export_gguf(run: Path, dtype: str, out: Path) -> Path:
    folder = export(run, fmt="gguf", dtype=dtype, out=out)
    return next(folder.glob("*.gguf"))


def vocab_only(path: Path):
    """llama.cpp's tokenizer from the file's vocabulary alone (no weights loaded)."""
    return closing(llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False))


def llama_ids(vocab, text: str) -> list[int]:
    return vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def open_llama(path: Path, dtype: str, n_ctx: int = 256):
    """llama.cpp on ``path`` with logits at every position and its K/V cache in the file's type."""
    return closing(llama_cpp.Llama(model_path=str(path), logits_all=True, n_ctx=n_ctx, verbose=False,
                                   type_k=GGML_TYPE[dtype], type_v=GGML_TYPE[dtype]))


def llama_log_softmax(llm, ids: list[int]) -> np.ndarray:
    """llama.cpp's next-token log-probabilities at every position of ``ids`` (a fresh context)."""
    llm.reset()
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)], dtype=np.float64)
    return logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)


def torch_logits(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double().numpy()


def deviation(llm, dtype: str, model, ids: list[int]) -> tuple[float, float]:
    """(largest |log-prob difference| llama.cpp vs torch, the tolerance for ``dtype``) on ``ids``."""
    logits = torch_logits(model, ids)
    expected = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    got = llama_log_softmax(llm, ids)
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max()), FACTOR * U[dtype] * float(np.abs(logits).max())


def file_deviation(path: Path, dtype: str, model, ids: list[int]) -> tuple[float, float]:
    with open_llama(path, dtype) as llm:
        return deviation(llm, dtype, model, ids)


def assert_llama_cpp_agrees_with_torch(path: Path, dtype: str, model, tokenizer) -> None:
    """Same ids from llama.cpp's tokenizer (the vocabulary alone, as a client loads it) and from torch's;
    log-probabilities within the tolerance at every position."""
    with vocab_only(path) as vocab:
        for kind, text in TEXTS.items():
            assert llama_ids(vocab, text) == tokenizer(text, add_special_tokens=False).input_ids, kind
    with open_llama(path, dtype) as llm:
        for kind, text in TEXTS.items():
            dev, tol = deviation(llm, dtype, model, tokenizer(text, add_special_tokens=False).input_ids)
            assert dev <= tol, f"{kind}: llama.cpp log-probs differ by {dev:.3g} > {FACTOR} u({dtype}) max|logit| = {tol:.3g}"


# ----------------------------------------------------------------------------------------- tiny model
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tests' tiny Llama (``params/tiny.yaml``) with scaled weights, as the final checkpoint of a run."""
    from cpt_utils.modeling import load_model, load_tokenizer
    from cpt_utils.config import load_params
    from cpt_utils.paths import REPO_ROOT

    spec = load_params(REPO_ROOT / "params" / "tiny.yaml").model
    model, tokenizer = load_model(spec).eval(), load_tokenizer(spec)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.mul_(WEIGHT_SCALE)
    return model, tokenizer, as_run(model, tokenizer, tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_llama_cpp_tokenizes_and_scores_the_tiny_export_like_torch(tiny, tmp_path, dtype):
    model, tokenizer, run = tiny
    path = export_gguf(run, dtype, tmp_path / dtype)
    assert_llama_cpp_agrees_with_torch(path, dtype, model, tokenizer)


def test_a_wrong_layout_or_weight_is_out_of_tolerance(tiny, tmp_path, monkeypatch):
    """The check above can fail: an F32 file without llama.cpp's rotary q/k row order, and one written
    from a checkpoint whose first MLP down-projection is scaled by 1 + 2⁻⁷, are both outside it."""
    model, tokenizer, run = tiny
    ids = tokenizer(TEXTS["ascii"], add_special_tokens=False).input_ids
    right = export_gguf(run, "f32", tmp_path / "right")
    dev, tol = file_deviation(right, "f32", model, ids)
    assert dev <= tol
    with monkeypatch.context() as patch:
        patch.setattr(export_module, "llama_permute", lambda weights, n_head: weights)
        unpermuted = export_gguf(run, "f32", tmp_path / "unpermuted")
    assert file_deviation(unpermuted, "f32", model, ids)[0] > tol
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.model.layers[0].mlp.down_proj.weight.mul_(1 + 2.0 ** -7)
    perturbed = export_gguf(as_run(changed, tokenizer, tmp_path / "changed-run"), "f32", tmp_path / "changed")
    assert file_deviation(perturbed, "f32", model, ids)[0] > tol


def test_a_wrong_pre_tokenizer_name_splits_digits_differently(tiny, tmp_path, monkeypatch):
    """The token check can fail: the tiny tokenizer splits like GPT-2; a GGUF that names SmolLM's split
    (each digit alone) makes llama.cpp tokenize the digit and code texts differently."""
    _, tokenizer, run = tiny
    monkeypatch.setattr(export_module, "tokenizer_pre", lambda tok: "smollm")
    path = export_gguf(run, "f32", tmp_path / "smollm-split")
    with vocab_only(path) as vocab:
        assert llama_ids(vocab, TEXTS["digits"]) != tokenizer(TEXTS["digits"], add_special_tokens=False).input_ids


# ------------------------------------------------------------------------------------ packaged model
@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["f16", "f32"])
def test_llama_cpp_tokenizes_and_scores_the_packaged_smollm2_export_like_torch(tmp_path, dtype):
    """SmolLM2-135M as a checkpoint that saw no training (the dequantised packaged weights), exported in
    the default F16 and in F32: llama.cpp gives the torch tokenizer's ids and log-probabilities."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cpt_utils.assets import fetch
    from cpt_utils.modeling import convert_gguf

    folder = convert_gguf(fetch("smollm2-135m-instruct"))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    path = export_gguf(as_run(model, tokenizer, tmp_path / "smol"), dtype, tmp_path / "out")
    assert_llama_cpp_agrees_with_torch(path, dtype, model, tokenizer)
