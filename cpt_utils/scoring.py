"""Fast multiple-choice scoring for lm-eval: the same log-likelihoods as ``HFLM``, each item's context run once.

lm-eval's ``HFLM`` scores every (context, continuation) request as its own row, so a 4-choice item runs
its context four times and computes a full-vocabulary log-softmax at every position of every row. Here
the requests that share their context tokens become ONE packed row — ``context + choice₁[:-1] +
choice₂[:-1] + …`` — with a block attention mask and position ids that let each choice see only the
context and its own earlier tokens, which is exactly the sequence HFLM runs for that choice. Rows are
sorted by length and batched by a token budget; the output head and the fp32 log-softmax run only at
the positions that predict a continuation token (the last context position and each choice's tokens).

Everything else — tokenization (``TemplateLM._encode_pair`` with its whitespace rule, BOS handling), the
request ordering and caching hooks, tasks, filters and metrics — is lm-eval's own: ``FastMCLM`` subclasses
``HFLM`` and overrides only ``_loglikelihood_tokens``. A request whose context + continuation exceeds the
model's window is left-truncated exactly as HFLM does and scored in a row of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

from .attention import dense_mask_attention
from .precision import fp32_logits

Request = tuple[tuple[str, str] | None, list[int], list[int]]

_PRECISIONS = {"fp32": None, "bf16": "bfloat16"}


@dataclass
class _Row:
    """One packed model input: a shared prefix and the continuations scored after it.

    ``prefix`` is the context (or, for a truncated request, the whole left-truncated input); each
    continuation j occupies ``len(cont_j) - 1`` positions after the prefix, all at positions
    ``len(prefix) + k``, attending to the prefix and to its own earlier tokens only."""

    prefix: list[int]
    conts: list[list[int]] = field(default_factory=list)
    owners: list[list[int]] = field(default_factory=list)  # request indices scored by each continuation
    truncated: bool = False  # a left-truncated request: prefix already holds the continuation's inputs

    def __len__(self) -> int:
        if self.truncated:
            return len(self.prefix)
        return len(self.prefix) + sum(len(c) - 1 for c in self.conts)


class FastMCLM(HFLM):
    """``HFLM`` whose log-likelihood path scores each shared context once.

    ``batch_size`` bounds the rows per forward pass (as in HFLM); ``batch_tokens`` bounds rows × padded
    length, so short items batch widely and long ones do not run out of memory. ``precision="bf16"``
    runs the transformer under bf16 autocast and the output head and log-softmax in fp32; ``"fp32"``
    runs everything in fp32 and reproduces HFLM's fp32 log-likelihoods to float rounding.
    """

    def __init__(self, pretrained, tokenizer=None, batch_size: int = 16, precision: str = "fp32",
                 batch_tokens: int = 4096, **kwargs) -> None:
        if precision not in _PRECISIONS:
            raise ValueError(f"FastMCLM precision={precision!r}: expected one of {sorted(_PRECISIONS)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"FastMCLM batch_size={batch_size!r}: expected a positive integer")
        if batch_tokens < 1:
            raise ValueError(f"FastMCLM batch_tokens={batch_tokens!r}: expected a positive integer")
        kwargs.setdefault("mixed_precision_dtype", _PRECISIONS[precision])
        super().__init__(pretrained=pretrained, tokenizer=tokenizer, batch_size=batch_size, **kwargs)
        if self.backend != "causal":
            raise ValueError("FastMCLM scores causal (decoder-only) models only")
        self.precision = precision
        self.batch_tokens = int(batch_tokens)

    # ------------------------------------------------------------------------------- planning
    def _plan(self, requests: list[Request]) -> list[_Row]:
        """Group requests by context tokens into packed rows of at most ``max(max_length, ...)`` tokens."""
        limit = self.max_length
        rows: list[_Row] = []
        by_context: dict[tuple[int, ...], list[int]] = {}
        for i, (_, ctx, cont) in enumerate(requests):
            if not ctx or not cont:
                raise ValueError(f"request {i}: empty context or continuation tokens")
            if len(cont) > limit:
                raise ValueError(f"request {i}: continuation of {len(cont)} tokens exceeds max_length {limit}")
            if len(ctx) + len(cont) > limit + 1:  # HFLM: (ctx + cont)[-(max_length + 1):][:-1]
                rows.append(_Row(prefix=(ctx + cont)[-(limit + 1):][:-1], conts=[cont], owners=[[i]], truncated=True))
            else:
                by_context.setdefault(tuple(ctx), []).append(i)
        for ctx, members in by_context.items():
            row = _Row(prefix=list(ctx))
            seen: dict[tuple[int, ...], int] = {}
            for i in members:
                cont = requests[i][2]
                key = tuple(cont)
                if key in seen:  # the same choice twice: score once
                    row.owners[seen[key]].append(i)
                    continue
                if row.conts and len(row) + len(cont) - 1 > limit:  # keep packed rows within the window
                    rows.append(row)
                    row, seen = _Row(prefix=list(ctx)), {}
                seen[key] = len(row.conts)
                row.conts.append(cont)
                row.owners.append([i])
            rows.append(row)
        return rows

    def _batches(self, rows: list[_Row], batch_size: int) -> list[list[_Row]]:
        """Longest rows first (padding stays small, memory peaks early), cut by rows and by tokens."""
        order = sorted(rows, key=len, reverse=True)
        batches: list[list[_Row]] = []
        for row in order:
            if batches:
                current = batches[-1]
                width = len(current[0])  # sorted: the first row is the widest
                if len(current) < batch_size and (len(current) + 1) * width <= self.batch_tokens:
                    current.append(row)
                    continue
            batches.append([row])
        return batches

    # ------------------------------------------------------------------------------- scoring
    def _loglikelihood_tokens(self, requests: list[Request], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[tuple[float, bool]]:
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        batch_size = override_bs or (self.batch_size if isinstance(self.batch_size, int) else 64)
        batches = self._batches(self._plan(requests), batch_size)
        pbar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc="Running loglikelihood requests")
        for batch in batches:
            for row, scored in zip(batch, self._score_batch(batch), strict=True):
                for owners, answer in zip(row.owners, scored, strict=True):
                    for i in owners:
                        results[i] = answer
                        request_str = requests[i][0]
                        if request_str is not None:
                            self.cache_hook.add_partial("loglikelihood", request_str, answer)
                        pbar.update(1)
        pbar.close()
        return results  # type: ignore[return-value]

    def _score_batch(self, batch: list[_Row]) -> list[list[tuple[float, bool]]]:
        """Run one padded batch; return, per row, (log-likelihood, is_greedy) for each continuation."""
        width = len(batch[0])
        n = len(batch)
        ids = torch.full((n, width), self.eot_token_id if self.eot_token_id is not None else 0, dtype=torch.long)
        pos = torch.zeros((n, width), dtype=torch.long)
        mask = torch.zeros((n, 1, width, width), dtype=torch.bool)
        # per row: for each continuation, the positions whose logits predict its tokens, and those tokens
        gather_rows, gather_cols, targets, spans = [], [], [], []
        for r, row in enumerate(batch):
            p = len(row.prefix)
            ids[r, :p] = torch.tensor(row.prefix)
            pos[r, :p] = torch.arange(p)
            mask[r, 0, :p, :p] = torch.ones(p, p, dtype=torch.bool).tril()
            row_spans = []
            if row.truncated:
                cont = row.conts[0]
                cols = list(range(p - len(cont), p))
                row_spans.append((len(targets), len(cont)))
                gather_rows += [r] * len(cont)
                gather_cols += cols
                targets += cont
            else:
                start = p
                for cont in row.conts:
                    k = len(cont) - 1
                    if k:
                        ids[r, start:start + k] = torch.tensor(cont[:-1])
                        pos[r, start:start + k] = torch.arange(p, p + k)
                        mask[r, 0, start:start + k, :p] = True
                        mask[r, 0, start:start + k, start:start + k] = torch.ones(k, k, dtype=torch.bool).tril()
                    row_spans.append((len(targets), len(cont)))
                    gather_rows += [r] * len(cont)
                    gather_cols += [p - 1] + list(range(start, start + k))
                    targets += cont
                    start += k
            # padding attends to itself only, so no attention row is empty (an all-masked row gives NaN)
            pad = torch.arange(len(row), width)
            mask[r, 0, pad, pad] = True
            spans.append(row_spans)

        device = self.device
        hidden = self._hidden_states(ids.to(device), pos.to(device), mask.to(device))
        rows_t = torch.tensor(gather_rows, device=device)
        cols_t = torch.tensor(gather_cols, device=device)
        logprobs = self._head_logprobs(hidden, rows_t, cols_t)  # [n_targets, vocab], fp32
        tgt = torch.tensor(targets, device=device)
        token_ll = logprobs.gather(1, tgt.unsqueeze(1)).squeeze(1)
        greedy = logprobs.argmax(dim=-1) == tgt
        token_ll, greedy = token_ll.tolist(), greedy.tolist()
        return [[(float(sum(token_ll[s:s + k])), all(greedy[s:s + k])) for s, k in row_spans] for row_spans in spans]

    def _hidden_states(self, ids: "torch.Tensor", pos: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
        """Final hidden states of the decoder (before the output head), under the chosen precision."""
        model = self.model
        attention = mask if model.config._attn_implementation != "eager" else _additive(mask)
        base = model.base_model
        with torch.no_grad(), torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                             enabled=self.mixed_precision_dtype is not None), \
                dense_mask_attention(model):  # flex_attention: sdpa with this dense mask
            if base is not model and self._plain_head:
                return base(input_ids=ids, position_ids=pos, attention_mask=attention, use_cache=False).last_hidden_state
            return model(input_ids=ids, position_ids=pos, attention_mask=attention, use_cache=False).logits

    @property
    def _plain_head(self) -> bool:
        """Whether logits = output_embeddings(hidden): true for Llama-like models, not for soft-capped ones."""
        config = self.model.config
        return (self.model.get_output_embeddings() is not None
                and getattr(config, "final_logit_softcapping", None) is None
                and getattr(config, "logit_scale", None) is None
                and not getattr(self, "_force_full_logits", False))

    def _head_logprobs(self, hidden: "torch.Tensor", rows: "torch.Tensor", cols: "torch.Tensor") -> "torch.Tensor":
        """fp32 log-probabilities at the selected positions (the head runs in fp32 on those rows only)."""
        selected = hidden[rows, cols]
        if self.model.base_model is not self.model and self._plain_head:
            with torch.no_grad():
                logits = fp32_logits(self.model, selected)
        else:  # the model's own logits (already full-vocabulary)
            logits = selected.float()
        return torch.log_softmax(logits, dim=-1)


def _additive(mask: "torch.Tensor") -> "torch.Tensor":
    """A boolean keep-mask as the additive float mask eager attention expects."""
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    return out.masked_fill_(~mask, torch.finfo(torch.float32).min)
