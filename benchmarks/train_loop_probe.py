"""Probe: cpt's training step (``train._train_step``: Accelerate's wrapped model, the sampler's rows,
clipping, the NaN guard) against a bare eager step of the same shape, interleaved in one process, so
the gap between the notebooks' step times and ``train_step_probe.py``'s can be split into its causes.

    .venv/bin/python benchmarks/train_loop_probe.py params/quickstart.yaml runs/quickstart/data [--rounds 4]

Each round times, in turn: ``bare-fixed`` (the unwrapped model, bf16/fp32 autocast as cpt resolves it,
fused AdamW, the same 4 rows every step, the loss head in IEEE fp32: train_step_probe's eager recipe),
``bare-sampled`` (the same, on the rows cpt's sampler draws next), ``cpt-ieee-head`` (one ``_train_step``
of a real ``setup`` in a scratch run folder, with a user's explicit IEEE loss head) and ``cpt`` (the same
with cpt's default head: oneDNN's implicit bf16 where the CPU multiplies bf16 natively,
``losses.head_matmul_precision``). Medians per kind are printed with the ratio to ``bare-fixed``; rows
holding a single document let transformers skip the per-document mask, so their share is printed too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

sys.path.insert(0, os.getcwd())
from cpt_utils import train as cpt_train  # noqa: E402
from cpt_utils.config import load_params  # noqa: E402
from cpt_utils.losses import causal_lm_loss  # noqa: E402
from cpt_utils.precision import autocast  # noqa: E402


def _machine() -> str:
    flags = [f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in open("/proc/cpuinfo").read()]
    return f"{platform.processor() or 'cpu'} {torch.get_num_threads()} threads, flags {' '.join(flags)}, torch {torch.__version__}"


@contextlib.contextmanager
def ieee_head() -> Iterator[None]:
    """A user's explicit IEEE fp32 for oneDNN's fp32 matmuls, which ``losses`` keeps for the loss head."""
    matmul = torch.backends.mkldnn.matmul
    before, matmul.fp32_precision = matmul.fp32_precision, "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision = before


def _rows(state, picks) -> tuple[torch.Tensor, torch.Tensor]:
    ids, pos = zip(*(state.splits[split][index] for split, index in picks))
    return torch.from_numpy(np.stack(ids)), torch.from_numpy(np.stack(pos))


def _one_document(pos: torch.Tensor) -> bool:
    """Every row holds one document (positions never restart): transformers then skips the packed mask."""
    return bool((pos[:, 1:] != 0).all())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params")
    parser.add_argument("data")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    print(_machine(), flush=True)
    params = load_params(args.params).model_copy(deep=True)
    params.train.in_loop_eval = False
    params.train.resume = "never"
    with tempfile.TemporaryDirectory() as run_dir:
        state = cpt_train.setup(params, Path(run_dir), Path(args.data))
        state.model.train()
        bare = state.accelerator.unwrap_model(state.model)
        opt = torch.optim.AdamW(bare.parameters(), lr=1e-6, fused=True)
        fixed = _rows(state, [("train", i) for i in range(params.train.micro_batch_size)])
        sampler_rows = [_rows(state, state.sampler.next_batch()) for _ in range(args.rounds + 1)]

        def bare_step(ids, pos) -> float:
            with ieee_head():
                started = time.perf_counter()
                with autocast(state.precision, "cpu"):
                    loss = causal_lm_loss(bare, ids, pos, params.train.loss_chunk_tokens)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                loss.item()
                return time.perf_counter() - started

        def cpt_step() -> float:
            seconds = cpt_train._train_step(state).seconds
            state.step += 1
            return seconds

        def cpt_ieee_step() -> float:
            with ieee_head():
                return cpt_step()

        times: dict[str, list[float]] = {"bare-fixed": [], "bare-sampled": [], "cpt-ieee-head": [], "cpt": []}
        single: list[bool] = []
        for r in range(args.rounds + 1):  # round 0 warms every path up and is not counted
            now = {"bare-fixed": bare_step(*fixed), "bare-sampled": bare_step(*sampler_rows[r]),
                   "cpt-ieee-head": cpt_ieee_step(), "cpt": cpt_step()}
            single.append(_one_document(sampler_rows[r][1]))
            if r:
                for kind, seconds in now.items():
                    times[kind].append(seconds)
            print(f"round {r}: " + ", ".join(f"{kind} {seconds:.2f} s" for kind, seconds in now.items()), flush=True)
        base = statistics.median(times["bare-fixed"])
        tokens = params.train.micro_batch_size * params.preprocess.seq_len
        for kind, ts in times.items():
            median = statistics.median(ts)
            print(f"{kind:13s} median {median:5.2f} s = {tokens / median:5.0f} tokens/s, {median / base:4.2f}x bare-fixed")
        print(f"fixed rows one document each: {_one_document(fixed[1])}; sampled batches so: {sum(single)}/{len(single)}")


if __name__ == "__main__":
    main()
