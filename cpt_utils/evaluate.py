"""Evaluation: held-out perplexity on packed sequences (and, see below, benchmark tasks).

Perplexity is computed on the packed held-out splits written by preprocessing, with the same
per-document position ids the model is trained with, so the number measures exactly what training
optimises. Standard errors come from the spread of per-sequence mean losses.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .packing import PackedSplit

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def _autocast(model: "PreTrainedModel", precision: str):
    import contextlib

    import torch

    device = next(model.parameters()).device
    if precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def perplexity(model: "PreTrainedModel", split: PackedSplit, max_sequences: int | None = None,
               batch_size: int = 8, per_document: bool = True, precision: str = "auto") -> dict:
    """Mean next-token loss (nats), its standard error, and perplexity on the first ``max_sequences``.

    The first ``max_sequences`` (not a random subset) keeps the evaluated set identical across
    checkpoints, so differences between checkpoints are paired, not sampling noise.
    """
    import torch

    n = len(split) if max_sequences is None else min(max_sequences, len(split))
    if n == 0:
        raise ValueError(f"{split.dir}: no sequences to evaluate")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    seq_losses: list[float] = []
    with torch.inference_mode(), _autocast(model, precision):
        for start in range(0, n, batch_size):
            batch = split.batch(list(range(start, min(n, start + batch_size))))
            ids = batch["input_ids"].to(device)
            kwargs = {"position_ids": batch["position_ids"].to(device)} if per_document else {}
            logits = model(input_ids=ids, **kwargs).logits.float()
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1), reduction="none"
            ).view(ids.size(0), -1)
            seq_losses.extend(loss.mean(dim=1).tolist())
    model.train(was_training)
    losses = np.asarray(seq_losses)
    mean = float(losses.mean())
    se = float(losses.std(ddof=1) / math.sqrt(len(losses))) if len(losses) > 1 else float("nan")
    return {"loss": mean, "loss_se": se, "ppl": math.exp(mean), "sequences": int(n),
            "tokens": int(n * (split.seq_len - 1))}
