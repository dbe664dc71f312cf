"""Take a checkpoint out of the run: a self-contained Hugging Face folder or one GGUF file, each with a
model card (``model_card``) written from the run's own numbers.

    cpt export RUN [--checkpoint NAME] [--format hf|gguf] [--dtype f32|f16|bf16] [--out DIR]

Why GGUF by hand: the base model arrived as a GGUF (``modeling.convert_gguf``), so users run it in
llama.cpp / Ollama; llama.cpp's ``convert_hf_to_gguf.py`` is not a package. We write the same layout with
the pinned ``gguf`` library: llama.cpp's Llama tensor names, the rotary q/k row permutation it applies to
Llama attention weights (``LlamaTensorProcessor._reverse_permute_weights`` in transformers undoes it on
load), 1-D norms in F32, and the gpt2/BPE tokenizer metadata (tokens, token types, merges, special ids,
chat template). The round trip through transformers' GGUF loader is tested (``tests/test_export.py``).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .atomic import publish
from .checkpointing import list_checkpoints
from .errors import CptError
from .model_card import write_card
from .paths import configure_environment, runs_root
from .results import weights_identity

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase  # lazy: transformers loads only when weights are converted

FORMATS = ("hf", "gguf")
DTYPES = ("f32", "f16", "bf16")
DEFAULT_DTYPE = {"hf": "f32", "gguf": "f16"}
#: Written into every export: what it is, and the sign that a folder may be replaced by a new export.
MARKER = "cpt_export.json"


class ExportError(CptError, ValueError):
    """A run, checkpoint, format or model that cannot be exported; the message names the allowed values."""


# ------------------------------------------------------------------------------------------ resolve
def resolve_run(run: str | Path) -> Path:
    """``run`` as a run directory: a path holding ``checkpoints/``, or a name under ``runs/``."""
    as_path = Path(run).expanduser()
    for candidate in (as_path, runs_root() / str(run)):
        if (candidate / "checkpoints").is_dir() or (candidate / "params.yaml").is_file():
            return candidate.resolve()
    root = runs_root()
    known = sorted(p.name for p in root.iterdir() if (p / "checkpoints").is_dir()) if root.is_dir() else []
    raise ExportError(f"run '{run}': not a run directory nor a run under {root}; "
                      f"runs with checkpoints: {', '.join(known) or '(none)'}")


def resolve_checkpoint(run_dir: Path, name: str | None = None) -> dict:
    """The checkpoint to export: ``name``, or by default the final one (else the newest)."""
    found = [{**c, "name": c.get("name") or Path(c["path"]).name} for c in list_checkpoints(run_dir)]
    if not found:
        raise ExportError(f"run {run_dir.name}: no checkpoint in {run_dir / 'checkpoints'}; train it first "
                          "(`cpt train PARAMS` or `cpt run PARAMS`)")
    if name is None:
        final = [c for c in found if c.get("final")]
        return (final or found)[-1]
    by_name = {c["name"]: c for c in found}
    if name not in by_name:
        raise ExportError(f"--checkpoint {name}: not a checkpoint of run {run_dir.name}; "
                          f"allowed: {', '.join(by_name)}")
    return by_name[name]


def check_choice(option: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ExportError(f"{option} {value}: unknown; allowed: {', '.join(allowed)}")
    return value


def _torch_dtype(dtype: str):
    import torch  # lazy: an export loads torch only when it converts weights

    return {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]


# -------------------------------------------------------------------------------------------- HF
def load_checkpoint(model_dir: Path) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase"]:
    """The checkpoint's model in fp32 (as trained) and its tokenizer."""
    import torch  # lazy: an export loads torch only when it converts weights
    from transformers import AutoModelForCausalLM, AutoTokenizer  # lazy: transformers loads only when weights are converted

    return (AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
            AutoTokenizer.from_pretrained(model_dir))


def write_hf(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", out: Path, dtype: str = "f32") -> None:
    """safetensors weights, config.json, tokenizer files and generation_config.json into ``out``.

    The generation config's special ids come from the tokenizer (the one the model was trained with),
    so ``generate`` stops at its end-of-sequence token without further arguments."""
    from transformers import GenerationConfig  # lazy: transformers loads only when weights are converted

    model = model.to(_torch_dtype(dtype))
    model.config.use_cache = True  # training switched the cache off; generation wants it
    gen = GenerationConfig.from_model_config(model.config)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, key, None)
        if value is not None:
            setattr(gen, key, value)
    model.generation_config = gen
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


# ------------------------------------------------------------------------------------------ GGUF
GGUF_FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16"}
GGML_TYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16"}


def llama_permute(weights, n_head: int):
    """llama.cpp's row order for a Llama q/k projection (``convert_hf_to_gguf.LlamaModel.permute``):
    within each head, the two rotary halves are interleaved, as its RoPE kernel expects."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def tokenizer_pre(tokenizer: "PreTrainedTokenizerBase") -> str:
    """llama.cpp's name for the way this tokenizer splits text before BPE (``tokenizer.ggml.pre``).

    Read from the tokenizer's own pre-tokenizer, not copied from the base GGUF: transformers rebuilds
    the packaged SmolLM2 tokenizer from its GGUF with the plain GPT-2 split (its ``smollm`` digit split
    is not in transformers' table), and that is the tokenizer the run trained and evaluated with."""
    pre = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    byte_level = steps[-1] if kinds and kinds[-1] == "ByteLevel" else None
    if byte_level and byte_level.get("use_regex", True) and not byte_level.get("add_prefix_space", False):
        if kinds == ["ByteLevel"]:
            return "gpt-2"
        if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
            return "smollm"  # llama.cpp: each digit alone, then the GPT-2 split
    raise ExportError(f"GGUF export: this tokenizer's pre-tokenizer {kinds} has no llama.cpp name known here "
                      "(supported: plain GPT-2 byte-level, or digits + GPT-2 as in SmolLM); export --format hf "
                      "and convert with llama.cpp's convert_hf_to_gguf.py")


def gguf_vocab(tokenizer: "PreTrainedTokenizerBase", vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens and token types as llama.cpp's ``convert_hf_to_gguf`` writes a BPE vocabulary: added
    special tokens CONTROL, other added tokens USER_DEFINED, the rest NORMAL, unused ids ``[PADn]``."""
    import gguf  # lazy: gguf is needed only for a GGUF export

    reverse = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.get_added_vocab()
    decoder = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = reverse[i]
        if token in added:
            if decoder[i].special:
                types.append(gguf.TokenType.CONTROL)
            else:
                types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    return tokens, [int(t) for t in types]


def _check_gguf_model(config) -> None:
    problems = []
    if config.model_type != "llama":
        problems.append(f"model_type '{config.model_type}' (GGUF export writes the Llama layout only; allowed: llama)")
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        problems.append(f"rope_type '{rope.get('rope_type')}' (allowed: default)")
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(config, flag, False):
            problems.append(f"{flag}: true (the Llama GGUF layout has no biases)")
    if problems:
        lines = [f"GGUF export: unsupported {p}; export --format hf instead" for p in problems]
        raise ExportError(lines[0], problems=lines)


def write_gguf(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", hf_dir: Path, out_file: Path,
               dtype: str = "f16", name: str = "") -> Path:
    """One GGUF file in llama.cpp's Llama layout. ``hf_dir`` is the exported HF folder (merges, special
    tokens and chat template are read from it by ``gguf.SpecialVocab``, as llama.cpp does)."""
    import gguf  # lazy: gguf is needed only for a GGUF export

    config = model.config
    _check_gguf_model(config)
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    writer = gguf.GGUFWriter(str(out_file), arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_type(gguf.GGUFType.MODEL)
    if name:
        writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(getattr(gguf.LlamaFileType, GGUF_FILE_TYPES[dtype]))

    tokens, types = gguf_vocab(tokenizer, config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(tokenizer_pre(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(hf_dir, load_merges=True, n_vocab=config.vocab_size)
    # what the tokenizer really does with special tokens, rather than SpecialVocab's guess from the files
    with_special = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    special.add_special_token = {
        "bos": len(with_special) > len(plain) and with_special[0] == tokenizer.bos_token_id,
        "eos": len(with_special) > len(plain) and with_special[-1] == tokenizer.eos_token_id,
    }
    special.add_to_gguf(writer, quiet=True)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    qtype = getattr(gguf.GGMLQuantizationType, GGML_TYPES[dtype])
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # tied: llama.cpp reuses token_embd (no output.weight tensor)
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ExportError(f"GGUF export: no llama.cpp name for tensor {hf_name}")
        data = tensor.detach().to("cpu").float().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = llama_permute(data, n_head)
        elif hf_name.endswith("k_proj.weight"):
            data = llama_permute(data, n_kv)
        if data.ndim <= 1 or dtype == "f32":  # norms stay F32, as llama.cpp writes them
            writer.add_tensor(gguf_name, np.ascontiguousarray(data, dtype=np.float32))
        elif dtype == "f16":
            writer.add_tensor(gguf_name, data.astype(np.float16))
        else:
            writer.add_tensor(gguf_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_file


# ------------------------------------------------------------------------------------------- export
def default_out(run_dir: Path, checkpoint: str, fmt: str) -> Path:
    return run_dir / "export" / f"{checkpoint}-{fmt}"


def gguf_name(run_dir: Path, checkpoint: str, dtype: str) -> str:
    return f"{run_dir.name}-{checkpoint}.{GGML_TYPES[dtype]}.gguf"


def _claim(out: Path) -> None:
    """Refuse to replace a non-empty folder that is not an earlier export (``--out ~`` must not wipe it)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise ExportError(f"--out {out}: exists and is not an earlier `cpt export` (no {MARKER}); "
                          "name an empty or new folder")


def export(run: str | Path, checkpoint: str | None = None, fmt: str = "hf", out: str | Path | None = None,
           dtype: str | None = None, card: bool = True) -> Path:
    """Export one checkpoint of ``run``; return the folder written (it holds README.md, the model card).

    ``hf``: a folder ``AutoModelForCausalLM.from_pretrained`` loads offline. ``gguf``: one ``.gguf`` file
    (plus the card). The folder is assembled as ``<out>.tmp`` and renamed, so it is complete or absent."""
    check_choice("--format", fmt, FORMATS)
    dtype = check_choice("--dtype", dtype or DEFAULT_DTYPE[fmt], DTYPES)
    run_dir = resolve_run(run)
    info = resolve_checkpoint(run_dir, checkpoint)
    out = Path(out).expanduser().resolve() if out else default_out(run_dir, info["name"], fmt)
    _claim(out)
    model_dir = Path(info["path"]) / "model"
    model, tokenizer = load_checkpoint(model_dir)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files: list[str]
    if fmt == "hf":
        write_hf(model, tokenizer, tmp, dtype)
        files = sorted(p.name for p in tmp.iterdir())
    else:
        staging = tmp / ".hf"
        write_hf(model, tokenizer, staging, "f32")  # SpecialVocab reads merges and special tokens from files
        name = gguf_name(run_dir, info["name"], dtype)
        write_gguf(model, tokenizer, staging, tmp / name, dtype, name=f"{run_dir.name} {info['name']}")
        shutil.rmtree(staging)
        files = [name]
    record = {"run": run_dir.name, "run_dir": str(run_dir), "checkpoint": info["name"], "tokens": info["tokens"],
              "weights": weights_identity(info, ""),  # the card's results are those of these weights only
              "format": fmt, "dtype": dtype, "files": files, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    if card:
        write_card(tmp, run_dir, info, record)
    (tmp / MARKER).write_text(json.dumps(record, indent=1))
    publish(tmp, out)
    return out


def main(run: str, checkpoint: str | None = None, fmt: str = "hf", out: str | None = None,
         dtype: str | None = None) -> int:
    """``cpt export RUN``: export, then say what was written."""
    configure_environment(offline=True)  # an export never needs the hub
    folder = export(run, checkpoint, fmt, out, dtype)
    for path in sorted(folder.iterdir()):
        size = path.stat().st_size
        print(f"{path}  ({size / 2**20:.1f} MiB)" if size >= 2**20 else f"{path}  ({size:,} bytes)")
    record = json.loads((folder / MARKER).read_text())
    print(f"exported {record['run']}/{record['checkpoint']} ({record['tokens']:,} tokens) as {fmt} {record['dtype']} → {folder}")
    return 0
