"""Training throughput: cpt's loop vs the Hugging Face `run_clm_no_trainer.py` way vs a bare PyTorch loop.

Same model (the packaged SmolLM2-135M), same data (the quickstart's corpus packed at --seq-len), same
sequence length, micro-batch and precision
(bf16 autocast). Each runs in its own process (peak memory is per process) for a few warm-up steps and
then N timed optimizer steps; the figure is the median step time.

- bare:      model(input_ids, labels) under autocast, AdamW, backward, step — the floor any loop pays.
- reference: `run_clm_no_trainer.py`'s structure: `group_texts` blocks in a DataLoader with
             `default_data_collator`, `accelerator.prepare(model, optimizer, dataloader, scheduler)`,
             `accelerator.accumulate`, `accelerator.backward`, a transformers LR scheduler.
- cpt:       `cpt_utils.train.train` (per-document attention on), per-step times from metrics.jsonl.

    .venv/bin/python benchmarks/train_throughput.py [--steps 8] [--device cpu|cuda] [--seq-len 256] [--batch 4]
    .venv/bin/python benchmarks/train_throughput.py --gpu      # = --device cuda --seq-len 2048 --batch 8, MFU
    add --compile to torch.compile the bare loop and cpt's (the reference script does not compile)

MFU counts 6N + 12·L·d·T FLOPs per token (``cpt_utils.train.flops_per_token``) against the GPU's dense
bf16 peak (989 TFLOP/s for H100 SXM/H200; see ``cpt_utils.train.GPU_PEAK_BF16_FLOPS``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))



def _data_dir(seq_len: int) -> Path:
    return ROOT / "runs" / f"bench-train-{seq_len}" / "data"


def _model(device: str):
    """The packaged SmolLM2-135M (fp32 weights, SDPA) — the same model cpt's loop loads."""
    from cpt_utils.modeling import load_model
    from cpt_utils.params import load_params

    return load_model(load_params(ROOT / "params/quickstart.yaml").model).to(device)


def _blocks(seq_len: int, n: int):
    """Token blocks from the quickstart training split (prepared once by the parent process)."""
    from cpt_utils.packing import PackedSplit

    split = PackedSplit(_data_dir(seq_len) / "train")
    import numpy as np

    stream = np.concatenate([split[i][0] for i in range(len(split))])
    if len(stream) < n * seq_len:
        raise SystemExit(f"the quickstart corpus holds {len(stream):,} tokens, fewer than {n} blocks of {seq_len}: "
                         "use fewer --steps or a smaller --batch")
    blocks = [stream[i:i + seq_len] for i in range(0, len(stream) - seq_len, seq_len)][:n]
    return blocks


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def run_bare(args) -> list[float]:
    import torch

    model = _model(args.device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=args.device == "cuda")
    step_model = torch.compile(model) if args.compile else model
    blocks = _blocks(args.seq_len, (args.steps + 2) * args.batch)
    times = []
    for step in range(args.steps + 2):
        batch = torch.tensor(blocks[step * args.batch:(step + 1) * args.batch], device=args.device)
        start = time.perf_counter()
        with torch.autocast(args.device, dtype=torch.bfloat16):
            loss = step_model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(args.device)
        times.append(time.perf_counter() - start)
    return times[2:]


def run_reference(args) -> list[float]:
    import torch
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from transformers import default_data_collator, get_scheduler

    accelerator = Accelerator(mixed_precision="bf16", cpu=args.device == "cpu")
    model = _model(args.device)
    blocks = _blocks(args.seq_len, (args.steps + 2) * args.batch)
    dataset = [{"input_ids": b.tolist(), "attention_mask": [1] * len(b), "labels": b.tolist()} for b in blocks]
    loader = DataLoader(dataset, shuffle=False, collate_fn=default_data_collator, batch_size=args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    sched = get_scheduler("linear", optimizer=opt, num_warmup_steps=0, num_training_steps=args.steps + 2)
    model, opt, loader, sched = accelerator.prepare(model, opt, loader, sched)
    model.train()
    times = []
    start = time.perf_counter()
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
        _sync(args.device)
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return times[2:]


def run_cpt(args) -> list[float]:
    from cpt_utils.params import load_params
    from cpt_utils.train import train

    params = load_params(ROOT / "params/quickstart.yaml")
    params = params.model_copy(update={"train": params.train.model_copy(update={
        "token_budget": (args.steps + 2) * args.batch * args.seq_len, "milestones": [], "eval_every_tokens": None,
        "eval_max_sequences": 1, "micro_batch_size": args.batch, "resume": "never", "precision": "bf16",
        "compile": args.compile})})
    params = params.model_copy(update={"preprocess": params.preprocess.model_copy(update={"seq_len": args.seq_len})})
    with tempfile.TemporaryDirectory() as tmp:
        train(params, tmp, data_dir=_data_dir(args.seq_len), progress=False)
        rows = [json.loads(l) for l in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    return [r["time_s"] for r in rows if r["kind"] == "train"][2:]


def worker(args) -> None:
    import torch

    if args.device == "cpu":
        torch.set_num_threads(os.cpu_count())
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    times = {"bare": run_bare, "reference": run_reference, "cpt": run_cpt}[args.worker](args)
    result = {"median_step_s": statistics.median(times), "steps": len(times),
              "cpu_over_wall": (time.process_time() - cpu0) / (time.perf_counter() - wall0)}
    if args.device == "cuda":
        from cpt_utils.train import _peak_flops, flops_per_token

        model = _model("cpu")  # for the FLOP count only
        n_params = sum(p.numel() for p in model.parameters())
        tokens_per_s = args.batch * args.seq_len / result["median_step_s"]
        result["mfu"] = flops_per_token(model.config, n_params, args.seq_len) * tokens_per_s / _peak_flops("cuda", "bf16")
        result["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def prepare_data(seq_len: int) -> None:
    from cpt_utils.params import load_params
    from cpt_utils.preprocess import prepare_data as prepare

    params = load_params(ROOT / "params/quickstart.yaml")
    params = params.model_copy(update={"preprocess": params.preprocess.model_copy(update={"seq_len": seq_len})})
    prepare(params, _data_dir(seq_len).parent, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--gpu", action="store_true", help="--device cuda, --seq-len 2048, --batch 8 unless given")
    parser.add_argument("--seq-len", type=int, default=None, help="default 256 (2048 with --gpu)")
    parser.add_argument("--batch", type=int, default=None, help="default 4 (8 with --gpu; the quickstart corpus holds ≈ 320k tokens)")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--worker", choices=["bare", "reference", "cpt"])
    args = parser.parse_args()
    if args.gpu:
        args.device = "cuda"
    args.seq_len = args.seq_len or (2048 if args.gpu else 256)
    args.batch = args.batch or (8 if args.gpu else 4)
    from cpt_utils.paths import configure_environment

    configure_environment(offline=True)
    if args.worker:
        return worker(args)
    prepare_data(args.seq_len)
    tokens = args.batch * args.seq_len
    print(f"device {args.device}, seq {args.seq_len} × batch {args.batch} = {tokens} tokens/step, bf16 autocast, "
          f"{args.steps} timed steps{', torch.compile' if args.compile else ''}")
    results = {}
    for kind in ("bare", "reference", "cpt"):
        cmd = [sys.executable, __file__, "--worker", kind, "--steps", str(args.steps), "--device", args.device,
               "--seq-len", str(args.seq_len), "--batch", str(args.batch)] + (["--compile"] if args.compile else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(line[7:])
        r["tokens_per_s"] = tokens / r["median_step_s"]
        results[kind] = r
        extra = f"  MFU {100 * r['mfu']:.1f}%" if "mfu" in r else ""
        print(f"{kind:>10}: {r['tokens_per_s']:8.1f} tokens/s  (median step {r['median_step_s']:.3f} s, cpu/wall "
              f"{r['cpu_over_wall']:.2f}, peak memory {r['peak_mem_mb']:,.0f} MB){extra}")
    ours = results["cpt"]
    print(f"ratios: cpt/bare tokens/s {ours['tokens_per_s'] / results['bare']['tokens_per_s']:.3f}×, "
          f"cpt/reference tokens/s {ours['tokens_per_s'] / results['reference']['tokens_per_s']:.3f}×; "
          f"peak memory cpt/reference {ours['peak_mem_mb'] / results['reference']['peak_mem_mb']:.2f}×")


if __name__ == "__main__":
    main()
