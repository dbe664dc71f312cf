"""Model loading: tiny models for tests, and the packaged SmolLM2 GGUF converted once to safetensors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from cpt_utils.modeling import ModelLoadError, build_tiny_model, load_model, load_tokenizer, model_id, resolve_model_dir, tokenizer_fingerprint, train_tiny_tokenizer
from cpt_utils.packing import document_separator_id
from cpt_utils.config import ModelParams, TinyModelParams

KNOWN_PARAGRAPH = (
    "Photosynthesis is the process by which green plants and some other organisms use sunlight to "
    "synthesize foods from carbon dioxide and water. It generally involves the green pigment chlorophyll "
    "and generates oxygen as a by-product. The energy captured from light is stored in chemical bonds."
)


def test_tiny_model_is_deterministic_and_trainable(tiny_params):
    tok = load_tokenizer(tiny_params.model)
    assert len(tok) == tiny_params.model.tiny.vocab_size
    ids = tok("The theorem of Pythagoras relates the sides of a right triangle.", return_tensors="pt").input_ids
    assert tok.decode(ids[0]) == "The theorem of Pythagoras relates the sides of a right triangle."
    a, b = load_model(tiny_params.model, seed=3), load_model(tiny_params.model, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    out = a(ids, labels=ids)
    assert math.isfinite(out.loss.item())
    out.loss.backward()
    assert a.model.embed_tokens.weight.grad is not None
    assert document_separator_id(tok) == tok.convert_tokens_to_ids("<|endoftext|>")
    assert model_id(tiny_params.model).startswith("tiny-llama-h64-l2")


def test_tokenizer_fingerprint_tells_tokenizers_apart(tiny_params):
    a = train_tiny_tokenizer(128, texts=["alpha beta gamma"] * 50)
    assert tokenizer_fingerprint(a) != tokenizer_fingerprint(load_tokenizer(tiny_params.model))


def test_tiny_tokenizer_cache_keys_on_its_training_text(monkeypatch):
    """Keyed by size alone, whichever caller trained first decided what every later one got."""
    from cpt_utils import modeling

    small = ["alpha beta gamma"] * 50  # 300 > 256 bytes + the separator: room for merges
    a = train_tiny_tokenizer(300, texts=small)
    b = train_tiny_tokenizer(300, texts=["delta epsilon zeta eta"] * 50)
    assert tokenizer_fingerprint(a) != tokenizer_fingerprint(b)
    assert tokenizer_fingerprint(a) == tokenizer_fingerprint(train_tiny_tokenizer(300, texts=iter(small)))
    default = modeling.tiny_tokenizer_key(300, None)
    assert default != modeling.tiny_tokenizer_key(300, small)
    assert default != modeling.tiny_tokenizer_key(400, None)
    pins = modeling.asset_pins()
    moved = {**pins, modeling.WIKI_ASSET: pins[modeling.WIKI_ASSET] + "-repinned"}
    monkeypatch.setattr(modeling, "asset_pins", lambda: moved)
    assert modeling.tiny_tokenizer_key(300, None) != default  # a new pin of the corpus is other text


def test_local_folder_round_trip(tmp_path, tiny_params):
    tok = load_tokenizer(tiny_params.model)
    model = build_tiny_model(TinyModelParams(), len(tok))
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    spec = ModelParams(source="local", name=str(tmp_path / "m"))
    again = load_model(spec)
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)
    with pytest.raises(ModelLoadError, match="not a model folder"):
        resolve_model_dir(ModelParams(source="local", name=str(tmp_path)))


def test_unknown_packaged_model_is_named():
    with pytest.raises(ModelLoadError, match="unknown packaged model 'gpt2'; allowed: .*smollm2"):
        resolve_model_dir(ModelParams(source="packaged", name="gpt2"))


@pytest.mark.slow
def test_packaged_smollm2_converts_once_and_has_sane_perplexity():
    spec = ModelParams(source="packaged", name="smollm2-135m-instruct")
    folder = resolve_model_dir(spec)
    config = json.load(open(f"{folder}/config.json"))
    assert "quantization_config" not in config  # a plain model: save_pretrained and Trainer accept it
    model, tok = load_model(spec), load_tokenizer(spec)
    assert not getattr(model, "is_quantized", False) and getattr(model, "hf_quantizer", None) is None
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576 and len(tok) == 49_152
    ids = tok(KNOWN_PARAGRAPH, return_tensors="pt").input_ids
    with torch.inference_mode():
        ppl = math.exp(model(ids, labels=ids).loss.item())
    # DESIGN §6: ordinary English prose gives 14–40 with this model; a broken dequantisation gives
    # hundreds or thousands, an untrained model ~50,000.
    assert 5 < ppl < 60, ppl
    assert tok.convert_ids_to_tokens(document_separator_id(tok)) == "<|endoftext|>"
    assert resolve_model_dir(spec) == folder  # converted once, then reused


def test_a_converted_gguf_is_keyed_on_its_whole_content_and_the_converting_libraries(tmp_path, monkeypatch):
    """The conversion's folder used to be keyed on the size and the first and last MiB only: a GGUF changed
    in between (a fine-tune of some layers: same size, same header, same last tensor) loaded the old weights."""
    import importlib.metadata

    from cpt_utils.modeling import conversion_key

    monkeypatch.setenv("CPT_CACHE", str(tmp_path / "cache"))
    body = bytearray(torch.randint(0, 256, (3 << 20,), generator=torch.Generator().manual_seed(0),
                                   dtype=torch.uint8).numpy().tobytes())
    original, tuned = tmp_path / "original.gguf", tmp_path / "tuned.gguf"
    original.write_bytes(bytes(body))
    body[len(body) // 2] ^= 1  # one bit in the middle MiB
    tuned.write_bytes(bytes(body))
    before = conversion_key(original)
    assert conversion_key(tuned) != before
    assert conversion_key(original) == before
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.0.0" if name == "gguf" else real(name))
    assert conversion_key(original) != before  # another gguf: dequantised again
