"""``cpt export`` on a tiny trained run: the Hugging Face folder gives the checkpoint's logits exactly; the
GGUF, read back through transformers' GGUF loader, gives the logits of the checkpoint with its weights
rounded to the file's precision (and within a stated tolerance of the fp32 ones); the tokenizer survives
the trip; bad input is one ``error:`` line naming the allowed values.

Tolerance of a 16-bit GGUF against the fp32 checkpoint: each 2-D weight is rounded once, with relative
error ≤ 2⁻¹¹ (F16) or 2⁻⁸ (BF16); norms stay F32. We allow 4× that bound on the largest logit: an error
model, not a fit to the observed values (F16: observed ≈ 1.7e-4 of the largest logit, bound 2.0e-3).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cpt_utils import export as export_module
from cpt_utils.checkpointing import list_checkpoints
from cpt_utils.cli import main as cli_main
from cpt_utils.export import ExportError, MARKER, export
from cpt_utils.model_card import read_front_matter

from .numerics import UNIT_ROUNDOFF

TEXT = "The derivative of x^2 is 2x, and 12345 + 678 = 13023.<|endoftext|>Euler's number"
TORCH_DTYPE = {"f16": torch.float16, "bf16": torch.bfloat16}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_dir):
    """The tiny model trained 16 steps (checkpoints at 2,048 and 4,096 tokens), no evaluations."""
    from cpt_utils.config import load_params, save_resolved
    from cpt_utils.paths import REPO_ROOT
    from cpt_utils.train import train

    params = load_params(REPO_ROOT / "params" / "tiny.yaml")
    run = tmp_path_factory.mktemp("runs") / "tiny"
    save_resolved(params, run / "params.yaml")
    train(params, run, data_dir=data_dir, progress=False)
    return run


def _final(run: Path) -> dict:
    return [c for c in list_checkpoints(run) if c["final"]][-1]


def _checkpoint(run: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(_final(run)["path"]) / "model"
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(folder)


def _logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def _rounded(model, dtype: str):
    """The checkpoint as a GGUF of ``dtype`` stores it: every 2-D weight rounded once, norms exact."""
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(p.to(TORCH_DTYPE[dtype]).float())
    return model


def _load_gguf(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = next(p.name for p in folder.glob("*.gguf"))
    return (AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(folder, gguf_file=name), folder / name)


def test_hf_export_is_self_contained_and_gives_the_checkpoints_logits(tiny_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    out = export(tiny_run, fmt="hf", out=tmp_path / "hf")
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", "README.md", MARKER} <= names
    reference, tokenizer = _checkpoint(tiny_run)
    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert loaded.dtype == torch.float32
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    torch.testing.assert_close(_logits(loaded, ids), _logits(reference, ids), rtol=0, atol=1e-5)
    assert AutoTokenizer.from_pretrained(out)(TEXT).input_ids == tokenizer(TEXT).input_ids
    assert GenerationConfig.from_pretrained(out).eos_token_id == tokenizer.eos_token_id
    meta = read_front_matter((out / "README.md").read_text())
    assert meta["library_name"] == "transformers" and "model-index" not in meta  # the run has no evaluations
    assert "Not evaluated" in (out / "README.md").read_text()


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_gguf_round_trip_through_the_transformers_loader(tiny_run, tmp_path, dtype):
    import gguf

    out = export(tiny_run, fmt="gguf", dtype=dtype, out=tmp_path / "gguf")
    assert sorted(p.suffix for p in out.iterdir()) == [".gguf", ".json", ".md"]  # one weights file
    loaded, gguf_tokenizer, path = _load_gguf(out)
    reference, tokenizer = _checkpoint(tiny_run)
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    expected = _logits(reference, ids)
    got = _logits(loaded, ids)
    # exactly the checkpoint with its weights rounded to the file's type: layout and permutation are right
    torch.testing.assert_close(got, _logits(_rounded(_checkpoint(tiny_run)[0], dtype), ids), rtol=0, atol=1e-5)
    bound = 4 * UNIT_ROUNDOFF[dtype] * expected.abs().max().item()
    assert (got - expected).abs().max().item() <= bound
    # the tokenizer survives: same ids (digits, punctuation, the special token kept whole)
    assert gguf_tokenizer(TEXT).input_ids == tokenizer(TEXT).input_ids
    reader = gguf.GGUFReader(path)
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    assert field("general.architecture") == "llama" and field("tokenizer.ggml.model") == "gpt2"
    assert field("general.file_type") == int(getattr(gguf.LlamaFileType, {"f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16"}[dtype]))
    tokens = field("tokenizer.ggml.tokens")
    assert len(tokens) == reference.config.vocab_size
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert field("tokenizer.ggml.token_type")[eot] == int(gguf.TokenType.CONTROL)
    assert field("tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["blk.0.attn_norm.weight"] == "F32" and kinds["blk.0.attn_q.weight"] == dtype.upper()
    assert "output.weight" not in kinds  # tied embeddings: llama.cpp reuses token_embd


def test_without_the_q_k_permutation_the_round_trip_fails(tiny_run, tmp_path, monkeypatch):
    """The test above can fail: leave llama.cpp's rotary row order out and the loader's inverse scrambles
    the attention (F32 file, so rounding plays no part)."""
    out = export(tiny_run, fmt="gguf", dtype="f32", out=tmp_path / "right")
    reference, tokenizer = _checkpoint(tiny_run)
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    torch.testing.assert_close(_logits(_load_gguf(out)[0], ids), _logits(reference, ids), rtol=0, atol=1e-5)
    monkeypatch.setattr(export_module, "llama_permute", lambda weights, n_head: weights)
    wrong = export(tiny_run, fmt="gguf", dtype="f32", out=tmp_path / "wrong")
    assert (_logits(_load_gguf(wrong)[0], ids) - _logits(reference, ids)).abs().max().item() > 1e-3


def test_defaults_final_checkpoint_and_the_run_folder(tiny_run, monkeypatch):
    monkeypatch.setenv("CPT_RUNS", str(tiny_run.parent))
    final = _final(tiny_run)["name"]
    out = export("tiny")  # by name, under runs/
    assert out == tiny_run / "export" / f"{final}-hf"
    assert json.loads((out / MARKER).read_text())["checkpoint"] == final
    earlier = list_checkpoints(tiny_run)[0]["name"]
    assert export(tiny_run, checkpoint=earlier).name == f"{earlier}-hf"
    assert export("tiny").exists()  # an earlier export is replaced


def test_bad_input_is_one_error_line_naming_the_allowed_values(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CPT_RUNS", str(tiny_run.parent))
    names = ", ".join(c["name"] for c in list_checkpoints(tiny_run))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    cases = {
        ("export", "nope"): "error: run 'nope': not a run directory nor a run under",
        ("export", "tiny", "--checkpoint", "tokens-1"): f"error: --checkpoint tokens-1: not a checkpoint of run tiny; allowed: {names}",
        ("export", "tiny", "--format", "onnx"): "error: --format onnx: unknown; allowed: hf, gguf",
        ("export", "tiny", "--dtype", "q4_0"): "error: --dtype q4_0: unknown; allowed: f32, f16, bf16",
        ("export", "tiny", "--out", str(foreign)): f"error: --out {foreign}: exists and is not an earlier `cpt export`",
    }
    for argv, expected in cases.items():
        assert cli_main(list(argv)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(expected), (argv, err)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert "runs with checkpoints: tiny" in (cli_main(["export", "nope"]), capsys.readouterr().err)[1]


def test_gguf_refuses_what_the_llama_layout_cannot_hold():
    from transformers import GPT2Config, LlamaConfig

    with pytest.raises(ExportError, match="model_type 'gpt2'.*allowed: llama"):
        export_module._check_gguf_model(GPT2Config())
    scaled = LlamaConfig(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})
    with pytest.raises(ExportError, match="rope_type 'linear'"):
        export_module._check_gguf_model(scaled)


@pytest.mark.slow
def test_the_packaged_smollm2_exports_to_the_layout_of_the_gguf_it_came_from(tmp_path):
    """The base model arrived as a GGUF written by llama.cpp: exporting it (as a checkpoint that saw no
    training) gives the same tensors and the same tokenizer metadata. Only ``tokenizer.ggml.pre`` differs
    on purpose (gpt-2: the split transformers rebuilt and the run trained with; see ``tokenizer_pre``)."""
    import gguf

    from cpt_utils.assets import fetch
    from cpt_utils.modeling import convert_gguf

    source = fetch("smollm2-135m-instruct")
    checkpoint = tmp_path / "smol" / "checkpoints" / "tokens-000000000000"
    shutil.copytree(convert_gguf(source), checkpoint / "model")
    (checkpoint / "checkpoint.json").write_text(json.dumps({"step": 0, "tokens": 0, "final": True}))
    out = export(tmp_path / "smol", fmt="gguf", out=tmp_path / "out")
    base, ours = gguf.GGUFReader(source), gguf.GGUFReader(next(out.glob("*.gguf")))
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
                "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.chat_template",
                "llama.context_length", "llama.embedding_length", "llama.feed_forward_length", "llama.block_count",
                "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.freq_base",
                "llama.rope.dimension_count", "llama.attention.layer_norm_rms_epsilon", "llama.vocab_size"):
        assert ours.fields[key].contents() == base.fields[key].contents(), key
    assert {t.name: list(t.shape) for t in ours.tensors} == {t.name: list(t.shape) for t in base.tensors}
    # the weights are the dequantised Q4_1 ones, permuted back into llama.cpp's row order
    q_base = gguf.dequantize(next(t for t in base.tensors if t.name == "blk.3.attn_q.weight").data,
                             gguf.GGMLQuantizationType.Q4_1)
    q_ours = next(t for t in ours.tensors if t.name == "blk.3.attn_q.weight").data.astype(np.float32)
    np.testing.assert_allclose(q_ours, q_base, rtol=2.0 ** -10, atol=1e-6)
