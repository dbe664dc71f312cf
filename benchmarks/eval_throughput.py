"""Evaluation throughput: the quickstart's multiple-choice suite scored by lm-eval's ``HFLM`` (what
``run_tasks`` used) vs cpt's ``FastMCLM`` (``cpt_utils.scoring``), side by side in one process, on the
packaged model, the same generated offline tasks (same items), batch size and precision; then held-out
perplexity (``evaluate.perplexity``) at a few batch sizes.

Both task runs go through ``lm_eval.simple_evaluate`` with the same task folder; the model is loaded once,
outside the timed windows. The per-request log-likelihoods of the two are compared (max |Δ| in nats) and
so are the per-item scores. ``--cli`` adds the ``lm_eval`` command line on a saved copy of the model.

    .venv/bin/python benchmarks/eval_throughput.py [--limit 40] [--precision bf16|fp32] [--ppl-batches 4 8 16 32]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _timed(fn):
    """(result, wall seconds, CPU seconds ÷ wall seconds) of ``fn()`` in this process."""
    cpu0, start = time.process_time(), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - start
    return out, wall, (time.process_time() - cpu0) / wall


def _evaluate(lm, tasks: list[str], task_dir: Path, seed: int) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    with contextlib.redirect_stderr(io.StringIO()):
        return lm_eval.simple_evaluate(
            model=lm, tasks=tasks, task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
            num_fewshot=0, log_samples=True, bootstrap_iters=0, random_seed=seed, numpy_random_seed=seed,
            torch_random_seed=seed, fewshot_random_seed=seed)


def _per_request(results: dict) -> dict:
    """(task, doc_id, choice) → log-likelihood, from the logged samples."""
    return {(task, s["doc_id"], j): float(r[0][0])
            for task, samples in results["samples"].items() for s in samples for j, r in enumerate(s["resps"])}


def _data_dir(params, tmp: Path, given: str | None) -> Path:
    """``--data``, else the quickstart run's prepared data if it exists, else prepared now into ``tmp``."""
    from cpt_utils.paths import run_dir
    from cpt_utils.preprocess import prepare_data

    data = Path(given) if given else run_dir(params.run_name) / "data"
    if (data / "manifest.json").is_file():
        return data
    print("no prepared quickstart data: preparing it in a temporary folder (not timed) …", flush=True)
    with contextlib.redirect_stdout(io.StringIO()):
        prepare_data(params, tmp, progress=False)
    return tmp / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(ROOT / "params" / "quickstart.yaml"))
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default=None,
                        help="default: what cpt's policy picks for this machine (bf16 only with native bf16 matmuls)")
    parser.add_argument("--hflm-precision", choices=["bf16", "fp32"], default=None,
                        help="HFLM's precision (default: --precision). `--hflm-precision bf16` is what cpt ran on every "
                             "CPU before issue 11 (HFLM under bf16 autocast): the old default, side by side with the new")
    parser.add_argument("--batch-tokens", type=int, default=4096, help="FastMCLM token budget per forward pass")
    parser.add_argument("--ppl-batches", type=int, nargs="*", default=[4, 8, 16, 32])
    parser.add_argument("--ppl-sequences", type=int, default=64)
    parser.add_argument("--data", help="a prepared data folder (default: the run's, else prepared in a temp folder)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--cli", action="store_true", help="also time the lm_eval command line (HFLM, saved model)")
    args = parser.parse_args()
    if args.precision is None:
        from cpt_utils.precision import resolve_precision

        args.precision = resolve_precision("auto", "cpu")
    args.hflm_precision = args.hflm_precision or args.precision

    import torch

    from cpt_utils.config import load_params
    from cpt_utils.paths import configure_environment

    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(args.params)
    params = params.model_copy(update={"eval": params.eval.model_copy(update={"limit": args.limit})})
    configure_environment(offline=True)
    with tempfile.TemporaryDirectory(prefix="cpt-eval-bench-") as tmp:
        _run(args, params, _data_dir(params, Path(tmp), args.data))


def _run(args, params, data_dir: Path) -> None:
    import torch
    from lm_eval.models.huggingface import HFLM

    from cpt_utils.perplexity import perplexity
    from cpt_utils.modeling import load_model, load_tokenizer
    from cpt_utils.packing import PackedSplit
    from cpt_utils.scoring import FastMCLM
    from cpt_utils.task_build import build_task_dir

    tokenizer = load_tokenizer(params.model)
    model = load_model(params.model).eval()
    task_dir, counts = build_task_dir(params, data_dir, tokenizer)
    tasks, items, bs, seed = list(counts), sum(counts.values()), params.eval.batch_size, params.eval.seed
    print(f"model {params.model.name}; tasks {', '.join(tasks)}; {items} items; batch {bs}; HFLM {args.hflm_precision}, "
          f"FastMCLM {args.precision}; "
          f"torch threads {torch.get_num_threads()}; CPU")

    hflm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=bs, device="cpu",
                mixed_precision_dtype="bfloat16" if args.hflm_precision == "bf16" else None)
    fast = FastMCLM(pretrained=model, tokenizer=tokenizer, batch_size=bs, device="cpu", precision=args.precision,
                    batch_tokens=args.batch_tokens)
    _evaluate(fast, tasks[:1], task_dir, seed)  # warm-up: first-call allocations and lazy imports, not timed
    # task by task, alternating which goes first, so both see the same machine load (it is shared)
    ref, ours = {"results": {}, "samples": {}}, {"results": {}, "samples": {}}
    ref_s = ref_cpu = ours_s = ours_cpu = 0.0
    per_task: dict[str, dict[str, float]] = {}
    for k, task in enumerate(tasks):
        for lm, out in ([(hflm, ref), (fast, ours)] if k % 2 == 0 else [(fast, ours), (hflm, ref)]):
            result, s, cpu = _timed(lambda: _evaluate(lm, [task], task_dir, seed))
            for key in ("results", "samples"):
                out[key].update(result[key])
            per_task.setdefault(task, {})["HFLM" if lm is hflm else "FastMCLM"] = s
            if lm is hflm:
                ref_s, ref_cpu = ref_s + s, ref_cpu + cpu * s
            else:
                ours_s, ours_cpu = ours_s + s, ours_cpu + cpu * s
    ref_cpu, ours_cpu = ref_cpu / ref_s, ours_cpu / ours_s
    a, b = _per_request(ref), _per_request(ours)
    delta = max(abs(a[k] - b[k]) for k in a)
    requests = len(a)

    print(f"\n{'multiple choice':>16} {'seconds':>8} {'items/s':>8} {'cpu/wall':>8}")
    print(f"{'HFLM ' + args.hflm_precision:>16} {ref_s:8.1f} {items / ref_s:8.2f} {ref_cpu:8.2f}")
    print(f"{'FastMCLM ' + args.precision:>16} {ours_s:8.1f} {items / ours_s:8.2f} {ours_cpu:8.2f}")
    print(f"ratio FastMCLM/HFLM items/s: {ref_s / ours_s:.2f}×  ({requests} requests; max |Δ log-likelihood| "
          f"{delta:.2e} nats, HFLM {args.hflm_precision} logits vs FastMCLM {args.precision} body + fp32 head)")
    for task in tasks:
        metrics = ref["results"][task]
        metric = "acc_norm,none" if "acc_norm,none" in metrics else "acc,none"
        key = metric.split(",")[0]
        same = sum(x[key] == y[key] for x, y in zip(sorted(ref["samples"][task], key=lambda s: s["doc_id"]),
                                                          sorted(ours["samples"][task], key=lambda s: s["doc_id"])))
        print(f"  {task:28s} {metric[:-5]:8s} HFLM {metrics[metric]:.3f}  FastMCLM {ours['results'][task][metric]:.3f}"
              f"  same item scores {same}/{counts[task]}  seconds {per_task[task]['HFLM']:.1f} vs "
              f"{per_task[task]['FastMCLM']:.1f}")

    if args.cli:
        _cli(model, tokenizer, tasks, task_dir, bs, seed, items, args.precision, ours_s)

    if args.ppl_batches:
        split = PackedSplit(data_dir / "val_domain")
        n = min(args.ppl_sequences, len(split))
        perplexity(model, split, 2, 2, params.train.per_document_attention, args.precision, tokenizer)  # warm-up
        print(f"\n{'perplexity':>16} {'seconds':>8} {'tokens/s':>9} {'cpu/wall':>8}   ({n} sequences × {split.seq_len})")
        for batch in args.ppl_batches:
            _, s, cpu = _timed(lambda: perplexity(model, split, n, batch, params.train.per_document_attention,
                                                  args.precision, tokenizer))
            print(f"{'batch ' + str(batch):>16} {s:8.1f} {n * (split.seq_len - 1) / s:9.0f} {cpu:8.2f}")


def _cli(model, tokenizer, tasks, task_dir, bs, seed, items, precision, ours_s) -> None:
    """The ``lm_eval`` CLI on a saved copy of the same model (includes starting Python and loading)."""
    with tempfile.TemporaryDirectory() as out:
        model.save_pretrained(Path(out) / "model")
        tokenizer.save_pretrained(Path(out) / "model")
        mixed = ",mixed_precision_dtype=bfloat16" if precision == "bf16" else ""
        cmd = [str(Path(sys.executable).parent / "lm_eval"), "--model", "hf",
               "--model_args", f"pretrained={Path(out) / 'model'},dtype=float32{mixed}",
               "--tasks", ",".join(tasks), "--include_path", str(task_dir), "--batch_size", str(bs),
               "--device", "cpu", "--num_fewshot", "0", "--output_path", str(Path(out) / "results"), "--seed", str(seed)]
        usage0, start = os.times(), time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        cli_s, usage1 = time.perf_counter() - start, os.times()
        if proc.returncode != 0:
            raise SystemExit(f"lm_eval CLI failed:\n{proc.stderr[-3000:]}")
        cpu = ((usage1.children_user - usage0.children_user) + (usage1.children_system - usage0.children_system)) / cli_s
        print(f"{'lm_eval CLI':>16} {cli_s:8.1f} {items / cli_s:8.2f} {cpu:8.2f}   (FastMCLM/CLI {cli_s / ours_s:.2f}×)")
        result_files = list((Path(out) / "results").rglob("results_*.json"))
        if result_files:
            print("  CLI results:", json.dumps({t: r.get("acc,none") for t, r in
                                                json.loads(result_files[0].read_text())["results"].items()}))


if __name__ == "__main__":
    main()
