"""Probe: the held-out scoring of a prepared run (every val_* split, eval's batch of 16) in fp32, in bf16
(body under autocast, head and log-softmax in IEEE fp32: cpt's policy) and in bf16 with the head's fp32
matmul on bf16-rounded inputs (oneDNN implicit bf16); tokens/s of each and the largest per-document
|Δ nats/token| against fp32.

    .venv/bin/python benchmarks/heldout_precision_probe.py runs/quickstart/data fp32 bf16 implicit
"""
import contextlib
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.getcwd())
from cpt_utils.config import load_params
from cpt_utils.modeling import load_model, load_tokenizer
from cpt_utils.packing import PackedSplit
from cpt_utils.perplexity import perplexity
params = load_params("params/quickstart.yaml")
model = load_model(params.model, seed=0); tok = load_tokenizer(params.model)
data = sys.argv[1]
splits = [s for s in sorted(os.listdir(data)) if s.startswith("val_")]
@contextlib.contextmanager
def impl(on):
    if on: torch.backends.mkldnn.matmul.fp32_precision='bf16'
    try: yield
    finally: torch.backends.mkldnn.matmul.fp32_precision='ieee'
out={}
for mode in sys.argv[2:]:
    prec = "fp32" if mode=="fp32" else "bf16"
    t=time.perf_counter(); ntok=0; res={}
    with impl(mode=="implicit"):
        for s in splits:
            sp=PackedSplit(os.path.join(data,s)); r=perplexity(model, sp, None, 16, True, prec, tok); res[s]=r; ntok+=len(sp)*sp.seq_len
    dt=time.perf_counter()-t
    out[mode]=res
    print(f"{mode:10s} {dt:6.1f} s {ntok/dt:7.0f} tok/s ({ntok} tokens)", flush=True)
ref = out.get("fp32")
if ref:
    for mode,res in out.items():
        d=[]; 
        for s in splits:
            a=np.array(res[s]["per_document"]["nats"])/np.array(res[s]["per_document"]["tokens"]); b=np.array(ref[s]["per_document"]["nats"])/np.array(ref[s]["per_document"]["tokens"])
            d.append(np.abs(a-b).max())
        print(mode, "max per-doc |Δ nats/token| vs fp32: %.2e" % max(d), " loss(val_domain) %.5f" % res["val_domain"]["loss"])
