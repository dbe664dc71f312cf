"""Per-document attention inputs for packed rows: what the model's forward is given besides the tokens.

A packed row holds documents back to back and ``position_ids`` restart at 0 at each document start (and
at each row start). Each attention implementation of transformers does something different with that:

- ``sdpa`` / ``eager``: ``masking_utils.find_packed_sequence_indices`` sees the restarting positions and
  builds a block-diagonal causal *boolean* mask, batch × 1 × T × T. Documents are isolated, but a dense
  mask keeps SDPA off its flash kernels on GPU (≈ 1.10× the cost of plain causal on an H200) and costs
  T² memory per row.
- ``flash_attention_2``: varlen kernels from ``position_ids``, but only for a batch of one row
  (``train.setup`` refuses more).
- ``flex_attention``: given only ``position_ids`` it would not isolate documents, so we hand it a
  FlexAttention ``BlockMask`` ("same document and causal") built here. The kernel then skips the blocks
  that the mask empties and runs flash-style (no T × T tensor) on the rest, with documents isolated at
  any micro-batch size. transformers compiles the kernel (``torch.compile(flex_attention)``) even in an
  eager model. On CPU FlexAttention has a forward only (torch ≤ 2.13 raises "FlexAttention does not
  support backward on CPU"; pytorch/pytorch#148752, #169646): it can evaluate there but not train, and
  ``check_supported`` says so before a run starts.

``attention_kwargs`` is the one call the training loss and held-out evaluation make; for every
implementation but ``flex_attention`` it returns exactly what they passed before (``position_ids``).

``auto`` (the default of ``model.attn_implementation``) is ``sdpa``, except in the training step on a CPU
that multiplies bf16 natively, under bf16 autocast, which runs ``eager`` (``training_attention``): there
torch's CPU flash kernel spends 7.5 ms per layer in its backward at 4 × 256 (17% of a compiled step), while
eager attention's matmuls and softmax cost less — measured 1.03–1.07× per step eager and 1.17× with the layers compiled on a 2-core AMX Xeon,
with the loss and gradients as far from fp32 as sdpa's (benchmarks/README.md). It keeps the T × T
probabilities for the backward, so only while they fit ``EAGER_PROBABILITIES_BUDGET``. Evaluation always
runs ``sdpa``: its results are compared and reused across processes, and its forward is flash's strength.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Iterator

import torch
from accelerate.utils import extract_model_from_parallel

from .precision import cpu_has_native_bf16

if TYPE_CHECKING:
    from torch.nn.attention.flex_attention import BlockMask

FLEX = "flex_attention"
AUTO = "auto"
#: the attention probabilities an eager training step may keep for its backward (fp32 scores and
#: probabilities plus their bf16 copy: 8 bytes per entry, every layer); beyond it ``auto`` stays sdpa.
#: At the quickstart's 4 × 256 with SmolLM2-135M's 9 heads × 30 layers: 0.57 GB (peak RSS +0.48 GB measured).
EAGER_PROBABILITIES_BUDGET = 2 * 2**30


def document_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """The document index of each token within its row, ``[batch, seq]`` int32: a new document starts
    wherever ``position_ids`` is 0 (each row's first token counts as a start even if it is not 0)."""
    if position_ids.dim() != 2:
        raise ValueError(f"position_ids must be [batch, seq], got shape {tuple(position_ids.shape)}")
    starts = position_ids == 0
    starts[:, 0] = True
    return starts.cumsum(dim=1, dtype=torch.int32)


def document_block_mask(position_ids: torch.Tensor, compile: bool | None = None) -> "BlockMask":
    """A FlexAttention ``BlockMask`` on ``position_ids``' device: query ``q`` of row ``b`` sees key ``k``
    when both are in the same document of that row and ``k ≤ q``; one mask per row, shared by all heads.

    ``compile`` (default: on CUDA) builds the block structure with ``torch.compile(create_block_mask)``
    (compiled once per process; the document ids are a graph input, so new batches do not recompile),
    which never materialises the batch × T × T boolean tensor; the eager build does, which is cheap on CPU
    at these lengths. It is called outside the model's forward (``causal_lm_loss``, ``token_nats``), so a
    compiled training model receives the mask as an input."""
    from torch.nn.attention.flex_attention import create_block_mask

    docs = document_ids(position_ids)
    batch, seq = docs.shape

    def same_document_causal(b, h, q_idx, kv_idx):
        return (docs[b, q_idx] == docs[b, kv_idx]) & (q_idx >= kv_idx)

    if compile is None:
        compile = position_ids.device.type == "cuda"
    build = _compiled_create_block_mask() if compile else create_block_mask
    return build(same_document_causal, batch, None, seq, seq, device=position_ids.device)


@functools.cache
def _compiled_create_block_mask():
    """``torch.compile(create_block_mask)``, made once (``create_block_mask(_compile=True)`` is deprecated)."""
    from torch.nn.attention.flex_attention import create_block_mask

    return torch.compile(create_block_mask)


def check_supported(attn_implementation: str, device_type: str, training: bool = True) -> None:
    """Refuse, before any work, a FlexAttention run that torch cannot do: training on CPU (no backward)."""
    if attn_implementation == FLEX and training and device_type == "cpu":
        raise ValueError("model.attn_implementation: flex_attention has no backward on CPU in torch "
                         f"{torch.__version__} (inference only: pytorch/pytorch#148752); train on CPU with sdpa, "
                         "or use flex_attention on CUDA")


def loading_attention(requested: str) -> str:
    """The implementation a model is loaded with: ``auto`` loads ``sdpa`` (what evaluation runs)."""
    return "sdpa" if requested == AUTO else requested


def training_attention(requested: str, device_type: str, precision: str, rows: int, seq_len: int, config) -> str:
    """The implementation the training step runs: ``requested``, but ``auto`` is ``eager`` on a CPU that
    multiplies bf16 natively, under bf16 autocast, when the step's attention probabilities fit
    ``EAGER_PROBABILITIES_BUDGET``; else ``sdpa``. (In fp32 eager measured no faster: 2.81 vs 2.76 s per step;
    bf16 forced on a CPU that emulates it was not measured; on GPUs sdpa has flash kernels.)"""
    if requested != AUTO:
        return requested
    heads, layers = getattr(config, "num_attention_heads", None), getattr(config, "num_hidden_layers", None)
    if device_type != "cpu" or precision != "bf16" or not cpu_has_native_bf16() or not heads or not layers:
        return "sdpa"
    return "eager" if rows * heads * seq_len ** 2 * layers * 8 <= EAGER_PROBABILITIES_BUDGET else "sdpa"


@contextlib.contextmanager
def attention_as(model, implementation: str) -> Iterator[None]:
    """Within the block ``model`` (through DDP / compile wrappers) runs ``implementation``; transformers reads
    ``config._attn_implementation`` at every forward (masks included), so the switch costs nothing."""
    config = extract_model_from_parallel(model, keep_torch_compile=False).config
    before = getattr(config, "_attn_implementation", None)
    if before == implementation:
        yield
        return
    config._attn_implementation = implementation
    try:
        yield
    finally:
        config._attn_implementation = before


def attn_implementation(model) -> str:
    """The attention implementation of ``model``, through DDP / ``torch.compile`` wrappers."""
    inner = extract_model_from_parallel(model, keep_torch_compile=False)
    return getattr(inner.config, "_attn_implementation", None) or "sdpa"


def attention_kwargs(model, position_ids: torch.Tensor | None) -> dict:
    """The forward's keyword arguments that carry per-document attention for ``position_ids``.

    None → ``{}`` (plain causal attention over the whole row); otherwise ``{"position_ids": …}``, plus
    ``{"attention_mask": document_block_mask(…)}`` when the model runs ``flex_attention``."""
    if position_ids is None:
        return {}
    if attn_implementation(model) == FLEX:
        return {"position_ids": position_ids, "attention_mask": document_block_mask(position_ids)}
    return {"position_ids": position_ids}


@contextlib.contextmanager
def dense_mask_attention(model) -> Iterator[None]:
    """Within the block a ``flex_attention`` model runs ``sdpa``: for callers that pass their own 4-D tensor
    mask (``scoring.FastMCLM``). transformers' flex path adds such a mask to the scores (``score_mod``),
    which does not mask a boolean one, and its compiled CPU kernel crashed on it here (torch 2.13)."""
    if getattr(model.config, "_attn_implementation", None) != FLEX:
        yield
        return
    with attention_as(model, "sdpa"):
        yield
