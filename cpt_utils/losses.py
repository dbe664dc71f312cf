"""Causal-LM cross-entropy without the ``[batch, seq, vocab]`` logits.

HF's ``model(input_ids, labels=input_ids).loss`` projects every position onto the vocabulary at once:
16 × 2048 tokens × 49,152 entries in fp32 is 6.4 GB, and its gradient as much again — most of a GPU's
memory for a 135M model (issue 13). Here the output head is applied ``chunk`` tokens at a time and each
chunk's gradient is computed on the spot (the "fused linear cross-entropy" of Liger-Kernel), so at most
one chunk of logits exists at any moment and the backward needs no recomputation: the extra memory is
one fp32 copy of the head's gradient and of the hidden states' gradient instead of two full logit
tensors. Logits are fp32 whatever the body's autocast precision (``precision.fp32_logits``).

    loss = causal_lm_loss(model, input_ids, position_ids, chunk=params.train.loss_chunk_tokens)

equals ``model(input_ids, labels=input_ids, position_ids=position_ids).loss`` (same shift, same mean over
non-ignored targets) up to fp32 summation order; ``chunk=0`` *is* that call.
"""

from __future__ import annotations

import warnings

import torch
from accelerate.utils import extract_model_from_parallel
from torch.distributed.tensor import DTensor

from .attention import attention_kwargs
from .precision import cpu_multiplies_bf16, fp32_logits

IGNORE_INDEX = -100  # transformers' ForCausalLMLoss default


class _Head:
    """The ``get_output_embeddings()`` interface ``precision.fp32_logits`` reads, for a bare head."""

    def __init__(self, head: torch.nn.Module):
        self.head = head

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.head


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Σ cross-entropy(head(hidden), targets) / n over chunks of rows; gradients made in the forward.

    Computing the gradients while each chunk's logits are at hand costs the same three matmuls per chunk
    as autograd through full logits (logits, ∂hidden, ∂weight) and avoids recomputing them in backward.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, head, chunk, n_items, grad_enabled):  # noqa: D102
        wants_grad = grad_enabled and any(ctx.needs_input_grad[:3])  # needs_input_grad ignores no_grad()
        ctx.n_items = n_items
        device_type = hidden.device.type
        reduced = head_matmul_precision(device_type)  # read before autocast is switched off below
        with torch.autocast(device_type, enabled=False), _head_matmuls(device_type, reduced):  # gradients too
            grads = _forward_chunks(hidden, weight, bias, targets, head, chunk, wants_grad)
        total, grad_hidden, grad_weight, grad_bias = grads
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        return total / n_items

    @staticmethod
    def backward(ctx, grad_loss):  # noqa: D102 (autograd API)
        scale = grad_loss.float() / ctx.n_items
        grads = [None if g is None else (g * scale).to(dtype) for g, dtype in zip(ctx.saved_tensors, ctx.dtypes)]
        return (*grads, None, None, None, None, None)


def head_matmul_precision(device_type: str) -> str | None:
    """The reduced fp32 matmul precision the training loss head runs in, or None for IEEE fp32.

    Only under a 16-bit autocast, where the body computes in bf16/fp16 (7/10-bit mantissa) and a head
    whose matmuls round their *inputs* to TF32 (10 bits) or bf16 (8 bits) and accumulate in fp32 is
    still no less precise than the body that made its input:
    - CUDA: ``"tf32"`` (tensor cores): an eager SmolLM2-135M step on an H200 ran 1.39× faster, same
      losses (benchmarks/README.md);
    - CPU: ``"bf16"`` (oneDNN's implicit bf16) when the CPU multiplies bf16 natively (AMX / AVX-512
      BF16; the hardware, not ``CPT_CPU_BF16``, since an emulated bf16 matmul is slower than fp32): the
      head's three matmuls per 1,024 rows take 0.39 s instead of 0.65 s on a 2-core AMX Xeon.
    Evaluation (``precision.fp32_logits`` outside this loss) and fp32 training keep IEEE fp32, and so does
    a user's explicit ``torch.backends.{cuda,mkldnn}.matmul.fp32_precision = "ieee"``."""
    if not torch.is_autocast_enabled(device_type):
        return None
    dtype = torch.get_autocast_dtype(device_type)
    if device_type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        return "tf32"
    if device_type == "cpu" and dtype == torch.bfloat16 and cpu_multiplies_bf16():
        return "bf16"
    return None


class _head_matmuls:
    """``fp32_precision`` of the device's matmul backend set to ``precision`` inside the block only (the
    non-legacy switch: CUDA's for TF32, oneDNN's for the CPU's implicit bf16); None leaves it alone."""

    def __init__(self, device_type: str, precision: str | None):
        backends = {"cuda": torch.backends.cuda, "cpu": torch.backends.mkldnn}
        self.backend = backends.get(device_type) if precision else None
        self.precision, self.before = precision, None

    def __enter__(self):
        if self.backend is None:
            return self
        before = self.backend.matmul.fp32_precision
        # "none" inherits: matmuls from their backend (oneDNN's), that from torch.backends.fp32_precision
        chain = (before, getattr(self.backend, "fp32_precision", "none"), getattr(torch.backends, "fp32_precision", "none"))
        if next((value for value in chain if value != "none"), "none") != "ieee":  # a user's explicit IEEE is kept
            self.before, self.backend.matmul.fp32_precision = before, self.precision
        return self

    def __exit__(self, *exc):
        if self.before is not None:
            self.backend.matmul.fp32_precision, self.before = self.before, None
        return False


def _forward_chunks(hidden, weight, bias, targets, head, chunk, wants_grad):
    """Summed CE over chunks of rows, and the gradients of that sum (None when no gradient is wanted)."""
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grad_hidden = torch.empty_like(hidden, dtype=torch.float32) if wants_grad else None
    # the first chunk's product is written straight into ∂weight (no zero-fill, one pass fewer over a 113 MB
    # tensor for SmolLM2: −10 ms per step on a 2-core AMX Xeon); equal bit for bit to adding it to zeros there
    fill = torch.empty_like if hidden.shape[0] else torch.zeros_like  # no rows: no chunk writes it
    grad_weight = fill(weight, dtype=torch.float32) if wants_grad else None
    grad_bias = torch.zeros_like(bias, dtype=torch.float32) if wants_grad and bias is not None else None
    weight32 = weight.float()
    for start in range(0, hidden.shape[0], chunk):
        rows = hidden[start:start + chunk]
        target = targets[start:start + chunk]
        logits = fp32_logits(head, rows)  # [chunk, vocab] fp32: the only vocab-sized tensor, all in place
        picked = logits.gather(1, target[:, None]).squeeze(1)
        maxes = logits.amax(dim=-1, keepdim=True)
        sums = logits.sub_(maxes).exp_().sum(dim=-1)  # torch.logsumexp would allocate a second [chunk, vocab]
        total += (sums.log() + maxes.squeeze(1) - picked).sum()
        if wants_grad:  # ∂/∂logits of the summed CE = softmax − one-hot
            dlogits = logits.div_(sums[:, None])
            dlogits[torch.arange(len(target), device=target.device), target] -= 1.0
            grad_hidden[start:start + chunk] = dlogits @ weight32
            if start == 0:
                torch.mm(dlogits.T, rows.float(), out=grad_weight)
            else:
                grad_weight.addmm_(dlogits.T, rows.float())
            if grad_bias is not None:
                grad_bias += dlogits.sum(0)
        del logits
    return total, grad_hidden, grad_weight, grad_bias


def chunked_cross_entropy(hidden: torch.Tensor, head: torch.nn.Module, labels: torch.Tensor, chunk: int,
                          ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """transformers' ``ForCausalLMLoss`` of ``head(hidden)`` against ``labels`` without full logits.

    ``hidden`` is the decoder's final hidden state ``[batch, seq, d]``, ``head`` the output projection
    (tied to the input embeddings in SmolLM2), ``labels`` ``[batch, seq]`` *unshifted*: as in HF, position
    t predicts ``labels[:, t + 1]``, the last position predicts nothing, ``ignore_index`` targets are
    skipped and the loss is the mean over the rest (NaN when there are none, as HF's).
    """
    if chunk < 1:
        raise ValueError(f"train.loss_chunk_tokens: chunk must be ≥ 1 here, got {chunk}")
    if hidden.shape[:2] != labels.shape:
        raise ValueError(f"hidden states {tuple(hidden.shape)} and labels {tuple(labels.shape)} disagree")
    targets = labels[:, 1:].reshape(-1)
    rows = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    keep = targets != ignore_index
    if not bool(keep.all()):
        rows, targets = rows[keep], targets[keep]
    n_items = targets.numel()
    bias = getattr(head, "bias", None)
    return _FusedLinearCrossEntropy.apply(rows, head.weight, bias, targets, _Head(head), chunk,
                                          float(n_items) if n_items else float("nan"), torch.is_grad_enabled())


def causal_lm_loss(model, input_ids: torch.Tensor, position_ids: torch.Tensor | None, chunk: int) -> torch.Tensor:
    """The training loss of ``model`` (a causal LM, possibly wrapped by DDP or ``torch.compile``) on
    ``input_ids`` as their own labels; ``chunk`` tokens of logits at a time, or HF's own loss for 0.

    The model still runs through its wrappers' ``forward`` (DDP's gradient sync and ``no_sync`` live
    there) with ``logits_to_keep=1``, so its head projects one position; a forward hook on the decoder
    hands over the final hidden state (``output_hidden_states`` would break the compiled graph in two).
    A head sharded by FSDP/ZeRO-3 is not whole outside the forward: HF's loss is used, with a warning.
    """
    kwargs = attention_kwargs(model, position_ids)  # position_ids, and flex_attention's block mask
    if not chunk:
        return model(input_ids=input_ids, labels=input_ids, use_cache=False, **kwargs).loss
    inner = extract_model_from_parallel(model)
    head = inner.get_output_embeddings()
    if head is None or _sharded(head.weight):
        warnings.warn("train.loss_chunk_tokens: the output head is sharded (FSDP/ZeRO-3) or missing; "
                      "using transformers' full-logits loss instead", stacklevel=2)
        return model(input_ids=input_ids, labels=input_ids, use_cache=False, **kwargs).loss
    capture = _hidden_capture(inner.get_decoder())
    capture["on"] = True
    try:
        model(input_ids=input_ids, use_cache=False, logits_to_keep=1, **kwargs)
    finally:
        hidden, capture["hidden"], capture["on"] = capture["hidden"], None, False
    if hidden is None:
        raise RuntimeError(f"{type(inner).__name__}.get_decoder() did not run in the forward; set "
                           "train.loss_chunk_tokens: 0 for this model")
    return chunked_cross_entropy(hidden, head, input_ids, chunk)


def _hidden_capture(decoder: torch.nn.Module) -> dict:
    """A ``{"on", "hidden"}`` slot the decoder fills with its last hidden state while ``on`` (installed
    once per decoder; the keys never change, so a compiled graph's guards on it hold every step)."""
    capture = getattr(decoder, "_cpt_hidden_capture", None)
    if capture is None:
        capture = {"on": False, "hidden": None}

        def hook(module, args, output):
            if capture["on"]:
                capture["hidden"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

        decoder.register_forward_hook(hook)
        decoder._cpt_hidden_capture = capture
    return capture


def _sharded(weight: torch.Tensor) -> bool:
    return isinstance(weight, DTensor) or weight.dim() != 2 or weight.numel() == 0
