"""Where a finished run's time went, from its own records — no profiler, no second run.

    .venv/bin/python benchmarks/quickstart_budget.py runs/quickstart [--reports reports/quickstart]

Reads what every run already stores: the step times of ``metrics.jsonl`` (the main run, its decay
branches, the control and the variants), the held-out scoring times (``heldout.json`` beside each
checkpoint and ``heldout/base.json`` for the in-loop points, ``evals/*.json`` for the others) and the
task-suite times of ``evals/*.json``; with ``--reports``, the notebooks' seconds from ``index.json``, so
the rest (imports, loads, statistics, figures) is the difference. Training and held-out scoring are
also given as tokens/s and as a fraction of this machine's matmul peak (``cpt_utils.hardware``: the
measured CPU peak, or the GPU's data sheet): training at 6N + 12·L·d·T FLOPs per token, a held-out
forward at 2N + 4·L·d·T per position scored (padding included, as the hardware computes it).
This is the table of ``benchmarks/README.md``'s "where the time goes" sections, for any machine;
run it on the machine that made the run (the peak is this machine's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _runs(run_dir: Path) -> list[Path]:
    """The main run and every child run below it that trained (a ``metrics.jsonl`` of its own)."""
    return sorted({p.parent for p in run_dir.rglob("metrics.jsonl") if "data" not in p.parts})


def _model_shape(run_dir: Path) -> tuple[int, int, int]:
    """(parameters, layers, hidden size) from the first checkpoint the run saved."""
    checkpoint = next(iter(sorted(run_dir.glob("checkpoints/*/checkpoint.json"))), None)
    if checkpoint is None:
        raise SystemExit(f"{run_dir}: no checkpoints/*/checkpoint.json — is this a finished run folder?")
    config = json.loads((checkpoint.parent / "model" / "config.json").read_text())
    return json.loads(checkpoint.read_text())["n_params"], config["num_hidden_layers"], config["hidden_size"]


def _seq_len(run_dir: Path) -> int:
    import yaml  # lazy: only for the run's parameters

    return int(yaml.safe_load((run_dir / "params.yaml").read_text())["preprocess"]["seq_len"])


def _positions(perplexity: dict, seq_len: int) -> int:
    """Positions the held-out forward computed: every packed sequence of every split, full length."""
    return sum(split["sequences"] for split in perplexity.values()) * seq_len


def training(run_dir: Path) -> dict:
    rows = [(run, row) for run in _runs(run_dir) for row in _jsonl(run / "metrics.jsonl") if row.get("kind") == "train"]
    times = [row["time_s"] for _, row in rows]
    mfus = [row["mfu"] for _, row in rows if row.get("mfu") is not None]
    per_run = {str(run.relative_to(run_dir)): sum(1 for r, _ in rows if r == run) for run in sorted({r for r, _ in rows})}
    return {"steps": len(rows), "seconds": sum(times), "median_step_s": statistics.median(times) if times else None,
            "median_tokens_per_s": statistics.median(row["tokens_per_s"] for _, row in rows) if rows else None,
            "median_mfu": statistics.median(mfus) if mfus else None, "steps_per_run": per_run}


def heldout(run_dir: Path, seq_len: int) -> list[dict]:
    """Every held-out scoring the run did, once each: in-loop points (stored beside the weights) and the
    evaluations that scored held-out text themselves (``heldout_from`` = this evaluation)."""
    found = []
    for path in sorted(run_dir.rglob("heldout.json")) + sorted(run_dir.rglob("heldout/base.json")):
        stored = json.loads(path.read_text())
        found.append({"where": str(path.relative_to(run_dir)), "seconds": stored["seconds"],
                      "positions": _positions(stored["perplexity"], seq_len)})
    for path in sorted(run_dir.rglob("evals/*.json")):
        result = json.loads(path.read_text())
        if result.get("heldout_from") == "this evaluation" and result.get("perplexity") and "same_as" not in result:
            found.append({"where": str(path.relative_to(run_dir)), "seconds": result["heldout_time_s"],
                          "positions": _positions(result["perplexity"], seq_len)})
    return found


def task_suite(run_dir: Path) -> list[dict]:
    """Every task-suite scoring: one per ``evals/*.json`` that scored tasks; a result a variant borrowed
    from the main run (``"same_as"``, ``results.same_as_main``) carries the main run's times and is left out."""
    found = []
    for path in sorted(run_dir.rglob("evals/*.json")):
        result = json.loads(path.read_text())
        if result.get("tasks") and result.get("tasks_time_s", 0) > 0 and "same_as" not in result:
            found.append({"where": str(path.relative_to(run_dir)), "seconds": result["tasks_time_s"],
                          "tasks": len(result["tasks"])})
    return found


def notebooks(reports_dir: Path | None) -> dict[str, float]:
    if reports_dir is None or not (reports_dir / "index.json").is_file():
        return {}
    return {r["name"]: r["seconds"] for r in json.loads((reports_dir / "index.json").read_text())["records"]}


def budget(run_dir: Path, reports_dir: Path | None, peak: float | None) -> dict:
    n_params, layers, hidden = _model_shape(run_dir)
    seq_len = _seq_len(run_dir)
    eval_flops = 2 * n_params + 4 * layers * hidden * seq_len
    held = heldout(run_dir, seq_len)
    held_s, held_positions = sum(h["seconds"] for h in held), sum(h["positions"] for h in held)
    rate = held_positions / held_s if held_s else None
    tasks = task_suite(run_dir)
    train = training(run_dir)
    books = notebooks(reports_dir)
    measured = train["seconds"] + held_s + sum(t["seconds"] for t in tasks)
    return {"training": train,
            "heldout": {"scorings": len(held), "seconds": held_s, "positions": held_positions,
                        "positions_per_s": rate, "flops_per_position": eval_flops,
                        "fraction_of_peak": rate * eval_flops / peak if rate and peak else None,
                        "each": held},
            "task_suite": {"scorings": len(tasks), "seconds": sum(t["seconds"] for t in tasks), "each": tasks},
            "notebooks": books, "notebooks_s": sum(books.values()) if books else None,
            "rest_s": sum(books.values()) - measured if books else None, "peak_flops": peak}


def _print(b: dict) -> None:
    def pct(x):
        return "unknown" if x is None else f"{100 * x:.0f}%"

    t, h, s = b["training"], b["heldout"], b["task_suite"]
    print(f"matmul peak: {b['peak_flops'] / 1e9:,.0f} GFLOP/s" if b["peak_flops"] else "matmul peak: unknown")
    print(f"{'work':<16}{'count':>7}{'seconds':>10}  rate")
    print(f"{'training':<16}{t['steps']:>7}{t['seconds']:>10.0f}  median {t['median_step_s']:.2f} s/step, "
          f"{t['median_tokens_per_s']:.0f} tokens/s, median MFU {pct(t['median_mfu'])}   steps per run: {t['steps_per_run']}")
    if h["scorings"]:
        print(f"{'held-out':<16}{h['scorings']:>7}{h['seconds']:>10.0f}  {h['positions_per_s']:,.0f} positions/s "
              f"x {h['flops_per_position'] / 1e6:.0f} MFLOP = {pct(h['fraction_of_peak'])} of the peak")
    print(f"{'task suite':<16}{s['scorings']:>7}{s['seconds']:>10.0f}  "
          + ", ".join(f"{e['seconds']:.0f}" for e in s["each"]) + " s each")
    if b["notebooks"]:
        print(f"{'the rest':<16}{'':>7}{b['rest_s']:>10.0f}  imports, loads, statistics, figures, rendering")
        print(f"{'notebooks':<16}{len(b['notebooks']):>7}{b['notebooks_s']:>10.0f}  "
              + ", ".join(f"{name.split('_')[0]} {sec:.0f}" for name, sec in b["notebooks"].items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--reports", type=Path, default=None, help="reports/<run>: adds the notebooks' seconds")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="whose peak the fractions use")
    parser.add_argument("--json", action="store_true", help="print the budget as JSON")
    args = parser.parse_args(argv)
    from cpt_utils.hardware import peak_flops

    b = budget(args.run_dir, args.reports, peak_flops(args.device))
    if args.json:
        print(json.dumps(b, indent=1))
    else:
        _print(b)


if __name__ == "__main__":
    main()
