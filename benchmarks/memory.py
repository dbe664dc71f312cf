"""Peak memory and step time of one training step: transformers' loss vs the chunked cross-entropy.

The packaged SmolLM2-135M *config* (random init: memory and time do not depend on the weights), fp32,
SDPA, batch × seq tokens of random ids as their own labels, forward + backward (no optimizer: its state
is the same in every variant). Each variant runs in its own process so ``ru_maxrss`` (the process's peak
resident memory) is its own; ``model_mb`` is the RSS after the model is built, ``step_mb`` the growth the
step adds on top. Variants: loss ``hf`` (``model(ids, labels=ids).loss``, full logits) or ``chunked``
(``cpt_utils.losses``, ``--chunk`` tokens of logits at a time) × gradient checkpointing off/on × batch.

    .venv/bin/python benchmarks/memory.py [--batches 1 2] [--seq-len 2048] [--steps 2] [--warmup 1]
    .venv/bin/python benchmarks/memory.py --sweep 256 1024 4096 [--sweep-tokens 2048]   # chunk size: head only

``--sweep`` times only the loss (forward + backward of the output head and cross-entropy on random
hidden states of the model's width, ``--sweep-tokens`` of them) for HF's way and each chunk size, in one
process, alternating, so the ratios share the machine's load; logits memory per chunk is chunk × vocab × 4 B.

Times are medians of ``--steps`` steps after ``--warmup``; on a shared machine compare only the ratios
of one invocation, and read cpu/wall beside them (< threads: the process waited for the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(args) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from cpt_utils.losses import causal_lm_loss
    from cpt_utils.modeling import resolve_model_dir
    from cpt_utils.config import load_params

    config = AutoConfig.from_pretrained(resolve_model_dir(load_params(ROOT / "params/quickstart.yaml").model))
    config.use_cache = False
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa").train()
    if args.checkpointing:
        model.activation_checkpointing_enable()
    ids = torch.randint(0, config.vocab_size, (args.batch, args.seq_len))
    model_mb = _rss_peak_mb()
    walls, cpus, losses = [], [], []
    for _ in range(args.warmup + args.steps):
        wall, cpu = time.perf_counter(), time.process_time()
        loss = causal_lm_loss(model, ids, None, args.chunk)
        loss.backward()
        model.zero_grad(set_to_none=True)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        losses.append(loss.item())
    walls, cpus = walls[args.warmup:], cpus[args.warmup:]
    peak = _rss_peak_mb()
    print("RESULT " + json.dumps({
        "peak_mb": peak, "model_mb": model_mb, "step_mb": peak - model_mb, "step_s": statistics.median(walls),
        "cpu_over_wall": sum(cpus) / sum(walls), "threads": torch.get_num_threads(), "loss": losses[0],
        "vocab": config.vocab_size}))


def sweep(args) -> None:
    """Time HF's head + loss against the fused chunked loss at each chunk size, alternating in one process."""
    import torch
    from transformers import AutoConfig
    from transformers.loss.loss_utils import ForCausalLMLoss

    from cpt_utils.losses import chunked_cross_entropy
    from cpt_utils.modeling import resolve_model_dir
    from cpt_utils.config import load_params

    config = AutoConfig.from_pretrained(resolve_model_dir(load_params(ROOT / "params/quickstart.yaml").model))
    torch.manual_seed(0)
    head = torch.nn.Linear(config.hidden_size, config.vocab_size, bias=False)
    hidden = torch.randn(1, args.sweep_tokens, config.hidden_size, requires_grad=True)
    labels = torch.randint(0, config.vocab_size, (1, args.sweep_tokens))
    variants = {"hf": lambda: ForCausalLMLoss(head(hidden), labels, config.vocab_size)}
    variants.update({f"chunked {c}": (lambda c=c: chunked_cross_entropy(hidden, head, labels, c)) for c in args.sweep})
    times = {name: [] for name in variants}
    for _ in range(args.warmup + args.steps):
        for name, loss_fn in variants.items():
            wall, cpu = time.perf_counter(), time.process_time()
            loss_fn().backward()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
            hidden.grad = head.weight.grad = None
    print(f"head + loss only: {args.sweep_tokens} tokens × vocab {config.vocab_size} × d {config.hidden_size}; "
          f"median of {args.steps} after {args.warmup} warm-up; load average {os.getloadavg()[0]:.1f}")
    print("| loss | logits per chunk MB | step s | vs hf | cpu/wall |\n|---|---:|---:|---:|---:|")
    hf = statistics.median(w for w, _ in times["hf"][args.warmup:])
    for name, samples in times.items():
        samples = samples[args.warmup:]
        wall = statistics.median(w for w, _ in samples)
        tokens = args.sweep_tokens if name == "hf" else min(int(name.split()[1]), args.sweep_tokens)
        print(f"| {name} | {tokens * config.vocab_size * 4 / 2**20:,.0f} | {wall:.2f} | {wall / hf:.2f}× | "
              f"{sum(c for _, c in samples) / sum(w for w, _ in samples):.2f} |")


def _run(args, loss: str, chunk: int, checkpointing: bool, batch: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--chunk", str(chunk if loss == "chunked" else 0),
           "--batch", str(batch), "--seq-len", str(args.seq_len), "--steps", str(args.steps),
           "--warmup", str(args.warmup)] + (["--checkpointing"] if checkpointing else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{loss} batch {batch} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=None, help="default: train.loss_chunk_tokens' default")
    parser.add_argument("--checkpointing", action="store_true", help="(worker) gradient checkpointing on")
    parser.add_argument("--variants", nargs="+", default=["hf:off", "chunked:off", "hf:on", "chunked:on"],
                        help="LOSS:CHECKPOINTING pairs to run at each batch, in this order")
    parser.add_argument("--sweep", type=int, nargs="+", help="instead: time the head + loss alone at these "
                        "chunk sizes against hf (one process)")
    parser.add_argument("--sweep-tokens", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1, help="(worker)")
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    from cpt_utils.paths import configure_environment

    configure_environment(offline=True)
    if args.worker:
        return worker(args)
    from cpt_utils.config import TrainParams

    chunk = args.chunk or TrainParams().loss_chunk_tokens
    if args.sweep:
        return sweep(args)
    variants = [(v.split(":")[0], chunk, v.split(":")[1] == "on", batch) for batch in args.batches for v in args.variants]
    print(f"seq {args.seq_len}; {args.warmup} warm-up + {args.steps} timed forward+backward steps per variant; "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    print("| batch × seq | grad. checkpointing | loss | peak RSS MB | step adds MB | step s | vs hf | cpu/wall |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    hf_time = {}
    for loss, c, ckpt, batch in variants:
        r = _run(args, loss, c, ckpt, batch)
        if loss == "hf":
            hf_time[(batch, ckpt)] = r["step_s"]
        ratio = r["step_s"] / hf_time[(batch, ckpt)] if (batch, ckpt) in hf_time else float("nan")
        name = "hf (full logits)" if loss == "hf" else f"chunked {c}"
        print(f"| {batch} × {args.seq_len} | {'on' if ckpt else 'off'} | {name} | {r['peak_mb']:,.0f} | "
              f"{r['step_mb']:,.0f} | {r['step_s']:.1f} | {ratio:.2f}× | {r['cpu_over_wall']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
