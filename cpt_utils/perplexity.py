"""Held-out loss, perplexity and bits per byte on packed sequences, with standard errors that respect
documents.

Why this shape:
- Same input as training (packed sequences, per-document position ids), so the number measures exactly
  what training optimises; the first ``max_sequences`` (not a random subset) keep the set identical
  across checkpoints, so differences are paired.
- A long document is cut into several sequences whose losses are correlated: treating them as
  independent understates the SE. Every statistic here is a ratio over **documents** (clusters): the
  loss is Σ nats / Σ tokens and its SE the cluster-robust (linearised) SE of that ratio.
- Bits per byte counts bytes from the decoded *text* of each document's predicted tokens (a token holding
  part of a UTF-8 character is not 3 bytes) and leaves out the separator targets (they add nats but no
  text). The loss keeps them: it is the training objective.
- The body runs in the resolved precision, the output head and log-softmax in fp32 (``precision``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from .attention import attention_kwargs
from .packing import document_separator_id
from .packing import PackedSplit
from .precision import autocast, fp32_logits

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def cluster_ratio(sums, counts) -> tuple[float, float]:
    """Σ sums / Σ counts and its cluster-robust standard error (one cluster per entry).

    The linearised (delta-method) variance of a ratio estimator: residuals ``s_d − r·c_d`` per cluster,
    scaled by D/(D−1). With one token per cluster it reduces to the usual SE of a mean."""
    s, c = np.asarray(sums, dtype=float), np.asarray(counts, dtype=float)
    total = c.sum()
    if total <= 0:
        return float("nan"), float("nan")
    ratio = float(s.sum() / total)
    d = len(s)
    if d < 2:
        return ratio, float("nan")
    resid = s - ratio * c
    return ratio, float(math.sqrt(d / (d - 1) * float((resid**2).sum())) / total)


def finite_mean_se(values) -> tuple[float, float]:
    """Mean and SE of the finite entries only: an item that could not be scored (NaN) is not an item,
    so it must not count in n (which would shrink the SE)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if not len(x):
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")


def paired_cluster_delta(base_sums, other_sums, counts) -> tuple[float, float]:
    """(Σ other − Σ base) / Σ counts over the same clusters, with its paired cluster-robust SE."""
    diff = np.asarray(other_sums, dtype=float) - np.asarray(base_sums, dtype=float)
    return cluster_ratio(diff, counts)


def token_nats(model: "PreTrainedModel", input_ids, position_ids=None, precision: str = "fp32"):
    """Per-target next-token loss (nats, fp32) of a batch: shape (batch, seq_len − 1)."""
    body = model.base_model  # the decoder without its head: the head runs in fp32 below
    with autocast(precision, input_ids.device.type):
        kwargs = attention_kwargs(model, position_ids)  # position_ids, and flex_attention's block mask
        # use_cache=False: with a cache transformers skips the packed-sequence (per-document) mask
        hidden = body(input_ids=input_ids, use_cache=False, **kwargs).last_hidden_state
    logits = fp32_logits(model, hidden[:, :-1])
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), input_ids[:, 1:].reshape(-1), reduction="none"
    ).view(input_ids.size(0), -1)


def perplexity(model: "PreTrainedModel", split: PackedSplit, max_sequences: int | None = None,
               batch_size: int = 8, per_document: bool = True, precision: str = "fp32",
               tokenizer: "PreTrainedTokenizerBase | None" = None) -> dict:
    """Loss (nats/token), its document-clustered SE, perplexity and — with ``tokenizer`` — bits per
    byte with its SE, on the first ``max_sequences`` sequences of ``split``.

    ``per_document`` holds the per-document sums (nats, tokens, text nats, bytes) so that two
    checkpoints can be compared paired, document by document."""
    n = len(split) if max_sequences is None else min(max_sequences, len(split))
    if n == 0:
        raise ValueError(f"{split.dir}: no sequences to evaluate")
    device = next(model.parameters()).device
    sep = document_separator_id(tokenizer) if tokenizer is not None else None
    docs: dict[int, dict] = {}
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            rows = list(range(start, min(n, start + batch_size)))
            batch = split.batch(rows)
            ids = batch["input_ids"].to(device)
            pos = batch["position_ids"].to(device) if per_document else None
            nats = token_nats(model, ids, pos, precision).cpu().numpy().astype(np.float64)
            targets = batch["input_ids"][:, 1:].numpy()
            for r, row in enumerate(rows):
                owner = split.document_indices(row)[1:]  # the document of each target token
                for d in np.unique(owner[owner >= 0]):  # owner −1: padding, in no document's loss
                    mask = owner == d
                    entry = docs.setdefault(int(d), {"nats": 0.0, "tokens": 0, "text_nats": 0.0, "ids": []})
                    entry["nats"] += float(nats[r][mask].sum())
                    entry["tokens"] += int(mask.sum())
                    if sep is not None:
                        text = mask & (targets[r] != sep)
                        entry["text_nats"] += float(nats[r][text].sum())
                        entry["ids"].extend(targets[r][text].tolist())
    model.train(was_training)
    order = sorted(docs)
    doc_nats = [docs[d]["nats"] for d in order]
    doc_tokens = [docs[d]["tokens"] for d in order]
    loss, loss_se = cluster_ratio(doc_nats, doc_tokens)
    out = {"loss": loss, "loss_se": loss_se, "ppl": math.exp(loss), "sequences": int(n),
           "tokens": int(sum(doc_tokens)), "documents": len(order),
           "per_document": {"nats": [round(x, 4) for x in doc_nats], "tokens": doc_tokens}}
    if tokenizer is not None:
        doc_bytes = [len(tokenizer.decode(docs[d]["ids"]).encode("utf-8")) for d in order]
        text_bits = [docs[d]["text_nats"] / math.log(2) for d in order]
        bpb, bpb_se = cluster_ratio(text_bits, doc_bytes)
        out.update(bits_per_byte=bpb, bits_per_byte_se=bpb_se)
        out["per_document"].update(bits=[round(x, 4) for x in text_bits], bytes=doc_bytes)
    return out
