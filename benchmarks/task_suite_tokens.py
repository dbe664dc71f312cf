"""Probe: how much work one task-suite evaluation is — the rows, padded positions and head positions
``scoring.FastMCLM`` runs for a parameter file's tasks — so its measured time can be read as a fraction
of the CPU's matmul peak like training and held-out scoring (benchmarks/README.md).

    .venv/bin/python benchmarks/task_suite_tokens.py runs/quickstart/data [params/quickstart.yaml] [--final]

The decoder is replaced by zeros (no forward runs: seconds, not minutes); lm-eval builds the requests and
FastMCLM plans and batches them exactly as in an evaluation. Forward FLOPs are counted as
2N_body + 4·L·d·width per padded position (weights and attention) plus 2·d·V per head position.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.getcwd())
from cpt_utils.config import load_params  # noqa: E402
from cpt_utils.modeling import load_model, load_tokenizer  # noqa: E402
from cpt_utils.scoring import FastMCLM  # noqa: E402
from cpt_utils.task_build import run_tasks  # noqa: E402


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    data_dir = Path(args[0])
    params = load_params(args[1] if len(args) > 1 else "params/quickstart.yaml")
    model = load_model(params.model, seed=0)
    config = model.config
    counted = {"batches": 0, "rows": 0, "positions": 0, "attention": 0, "head": 0}

    def hidden_states(self, ids, pos, mask):  # what the forward would see, no forward
        n, width = ids.shape
        counted["batches"] += 1
        counted["rows"] += n
        counted["positions"] += n * width
        counted["attention"] += n * width * width
        return torch.zeros(n, width, config.hidden_size)

    def head_logprobs(self, hidden, rows, cols):
        counted["head"] += len(rows)
        return torch.log_softmax(torch.zeros(len(rows), config.vocab_size), dim=-1)

    FastMCLM._hidden_states, FastMCLM._head_logprobs = hidden_states, head_logprobs
    run_tasks(params, model, load_tokenizer(params.model), data_dir, "fp32", final="--final" in sys.argv)
    head = config.vocab_size * config.hidden_size
    body = sum(p.numel() for p in model.parameters()) - head  # tied embeddings: the head is the embedding
    layers, d = config.num_hidden_layers, config.hidden_size
    flops = 2 * body * counted["positions"] + 4 * layers * d * counted["attention"] + 2 * head * counted["head"]
    print(f"{counted['batches']} batches, {counted['rows']} rows, {counted['positions']:,} padded positions, "
          f"{counted['head']:,} head positions: {flops / 1e12:.2f} TFLOP per evaluation")


if __name__ == "__main__":
    main()
