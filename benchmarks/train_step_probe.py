"""Probe: one SmolLM2-135M training step at the quickstart's shape (4 × 256, bf16 autocast, fused AdamW,
cpt's chunked loss with per-document positions), eager vs the loss head's fp32 matmuls on bf16 inputs
(oneDNN implicit bf16) vs torch.compile; the median of N steps after one untimed step, whose time (the
compile, when compiling) is printed as "first". Add "prof" to the mode for torch.profiler's op table.

    .venv/bin/python benchmarks/train_step_probe.py runs/quickstart/data/train eager|implicit|compile[-prof] [N]

Set TORCHINDUCTOR_CACHE_DIR to an empty folder to time a cold compile.
"""
import contextlib
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.getcwd())
from cpt_utils.config import load_params
from cpt_utils.modeling import load_model
from cpt_utils.losses import causal_lm_loss
from cpt_utils.packing import PackedSplit
params = load_params("params/quickstart.yaml")
model = load_model(params.model, seed=0); model.config.use_cache=False; model.train()
split = PackedSplit(sys.argv[1])
import numpy as np
ids = torch.from_numpy(np.stack([split[i][0] for i in range(4)])); pos = torch.from_numpy(np.stack([split[i][1] for i in range(4)]))
opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
mode = sys.argv[2]
stepm = model
if "compile" in mode:
    stepm = torch.compile(model)
@contextlib.contextmanager
def headmode():
    if "implicit" in mode:
        torch.backends.mkldnn.matmul.fp32_precision='bf16'
    try: yield
    finally: torch.backends.mkldnn.matmul.fp32_precision='ieee'
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16), headmode():
        loss = causal_lm_loss(stepm, ids, None if "nopos" in mode else pos, 1024)
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    return loss.item()
t=time.perf_counter(); l=step(); print("first", time.perf_counter()-t, l, flush=True)
ts=[]
for _ in range(int(sys.argv[3]) if len(sys.argv)>3 else 4):
    t=time.perf_counter(); l=step(); ts.append(time.perf_counter()-t)
print(mode, "median step %.3f s  %.0f tok/s" % (statistics.median(ts), 1024/statistics.median(ts)), "loss", l)
if "prof" in mode:
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU]) as p: step()
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
