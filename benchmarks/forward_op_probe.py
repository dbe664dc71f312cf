"""Probe: where one bf16 forward of SmolLM2-135M's decoder goes on this CPU (torch.profiler op table), on
the first 11 rows of a held-out split with per-document positions (sdpa's 4-D mask).

    .venv/bin/python benchmarks/forward_op_probe.py runs/quickstart/data/val_domain
"""
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.getcwd())
from cpt_utils.config import load_params
from cpt_utils.modeling import load_model
from cpt_utils.packing import PackedSplit
params = load_params("params/quickstart.yaml")
sp = PackedSplit(sys.argv[1])
n = min(11, len(sp))
ids = torch.from_numpy(np.stack([sp[i][0] for i in range(n)])); pos = torch.from_numpy(np.stack([sp[i][1] for i in range(n)]))
m = load_model(params.model); body=m.base_model
print(torch.get_num_threads(), torch.backends.mkldnn.is_available(), torch.cpu._is_amx_tile_supported())
with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
    for _ in range(2): body(input_ids=ids, position_ids=pos, use_cache=False)
    t=time.perf_counter(); body(input_ids=ids, position_ids=pos, use_cache=False); print("fwd s", time.perf_counter()-t)
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU]) as p: body(input_ids=ids, position_ids=pos, use_cache=False)
print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
