"""The quickstart's task suite with lm-eval's Jinja templates compiled once (``task_suite.templates_compiled_once``,
what cpt runs) against lm-eval's own per-document compilation, side by side in one process.

The model (the packaged SmolLM2-135M, base weights) is loaded once; rounds alternate the two ways so the
machine's drift hits both alike. Each round runs the whole suite (``task_build.run_tasks``: every
``eval.offline_tasks`` item, the evaluation's precision) and the per-item results of the two ways are
compared for equality.

    .venv/bin/python benchmarks/task_templates.py runs/quickstart/data [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="prepared quickstart data (cpt prepare params/quickstart.yaml)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from cpt_utils import task_build
    from cpt_utils.config import load_params
    from cpt_utils.evaluate import eval_precision
    from cpt_utils.hardware import cpu_model
    from cpt_utils.modeling import load_model, load_tokenizer
    from cpt_utils.task_build import run_tasks

    params = load_params(ROOT / "params" / "quickstart.yaml")
    model = load_model(params.model).eval()
    tokenizer = load_tokenizer(params.model)
    precision = eval_precision(params, model)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; precision {precision}")
    cached = task_build.run_built_tasks  # decorated with templates_compiled_once; __wrapped__ is lm-eval's way

    def suite(compile_once: bool) -> tuple[float, dict]:
        task_build.run_built_tasks = cached if compile_once else cached.__wrapped__
        try:
            start = time.perf_counter()
            out = run_tasks(params, model, tokenizer, args.data_dir, precision)
            return time.perf_counter() - start, out
        finally:
            task_build.run_built_tasks = cached

    suite(True)  # untimed: lm-eval's imports, the task folder, the kernels' first calls
    seen: dict[bool, list[float]] = {False: [], True: []}
    results: dict[bool, dict] = {}
    for round_ in range(args.rounds):
        for compile_once in ((False, True) if round_ % 2 == 0 else (True, False)):
            seconds, results[compile_once] = suite(compile_once)
            seen[compile_once].append(seconds)
            print(f"round {round_ + 1} {'compiled once' if compile_once else 'lm-eval own  '}: {seconds:.2f} s", flush=True)
    same = results[True] == results[False]
    off, on = statistics.median(seen[False]), statistics.median(seen[True])
    print(f"task suite ({len(results[True])} tasks): lm-eval's per-document compilation {off:.2f} s, compiled once "
          f"{on:.2f} s: ratio {off / on:.2f}x; per-item results identical: {same}")


if __name__ == "__main__":
    main()
