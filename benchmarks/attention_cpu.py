"""Per-document attention on CPU: sdpa with transformers' 4-D mask vs flex_attention with a block mask.

The packaged SmolLM2-135M (its converted folder, or --model-dir), micro-batch --batch × --seq-len rows
of packed documents (seeded lengths 32–200 tokens, position ids restarting at each), in the precision
``resolve_precision("auto", "cpu")`` picks. Per implementation: the held-out evaluation forward
(``perplexity.token_nats``) and, where torch can, the training forward+backward (``losses.causal_lm_loss``);
FlexAttention has no backward on CPU, so its training row says so. The first call of each is untimed
(transformers compiles the flex kernel there; its time is printed as ``first``).

    taskset -c 1 .venv/bin/python benchmarks/attention_cpu.py [--steps 3] [--batch 4] [--seq-len 256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _positions(batch: int, seq_len: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(batch):
        parts, left = [], seq_len
        while left:
            n = min(left, int(torch.randint(32, 201, (1,), generator=g)))
            parts.append(torch.arange(n))
            left -= n
        rows.append(torch.cat(parts))
    return torch.stack(rows)


def _time(fn, steps: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    from cpt_utils.paths import configure_environment

    configure_environment(offline=True)
    import torch
    from transformers import AutoModelForCausalLM

    from cpt_utils.config import load_params
    from cpt_utils.hardware import cpu_model
    from cpt_utils.losses import causal_lm_loss
    from cpt_utils.modeling import resolve_model_dir
    from cpt_utils.perplexity import token_nats
    from cpt_utils.precision import autocast, resolve_precision

    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(ROOT / "params/quickstart.yaml")
    folder = args.model_dir or resolve_model_dir(params.model)
    precision = resolve_precision("auto", "cpu")
    chunk = params.train.loss_chunk_tokens
    tokens = args.batch * args.seq_len
    pos = _positions(args.batch, args.seq_len)
    ids = torch.randint(1, 49152, pos.shape, generator=torch.Generator().manual_seed(1))
    print(f"torch {torch.__version__}; CPU {cpu_model()}, {torch.get_num_threads()} threads; {precision}; "
          f"batch {args.batch} × {args.seq_len}, {int((pos == 0).sum())} documents; {folder}", flush=True)
    for attn in ("sdpa", "flex_attention"):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation=attn)
        model.eval()

        def evaluate():
            with torch.inference_mode():
                token_nats(model, ids, pos, precision)

        first, median = _time(evaluate, args.steps)
        print(f"{attn:>15} eval forward:   {tokens / median:8.0f} tokens/s (median {median:.3f} s, "
              f"first {first:.1f} s)", flush=True)
        model.train()

        def step():
            with autocast(precision, "cpu"):
                loss = causal_lm_loss(model, ids, pos, chunk)
            loss.backward()
            model.zero_grad(set_to_none=True)

        try:
            first, median = _time(step, args.steps)
        except NotImplementedError as exc:
            print(f"{attn:>15} train fwd+bwd:  not possible: {str(exc).splitlines()[0]}", flush=True)
            continue
        print(f"{attn:>15} train fwd+bwd:  {tokens / median:8.0f} tokens/s (median {median:.3f} s, "
              f"first {first:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
