"""Experiment trackers (``train.trackers``: TensorBoard, W&B) receive the whole run, not only its evaluations.

``metrics.jsonl`` and ``evals/*.json`` stay the record every report reads; this module mirrors them into the
trackers a user watches: each logged training step (loss, learning rate, gradient norm, tokens/s, MFU,
memory), the in-loop held-out curves (``train.py`` logs those rows as they are), and, once the final
checkpoint is evaluated, the benchmark table — each task's score of the final checkpoint, its change from
the base model, and the task groups' paired changes (``analysis.group_deltas``).

Accelerate's tracker classes do the writing, so a benchmark lands where training logged: for TensorBoard
the same folder (``runs/<run>/<run_name>``), for W&B the same project (as a run of its own: the training
run has finished by then).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .analysis import compare_evals, group_deltas
from .atomic import atomic_write_json
from .checkpointing import list_checkpoints
from .results import stale_reason

#: The ``kind: train`` fields of metrics.jsonl a tracker receives, as ``train/<field>``.
TRAIN_FIELDS = ("loss", "lr", "grad_norm", "tokens_per_s", "mfu", "mem_mb", "time_s", "tokens", "compile_s")
#: Written once the final benchmark of a run is logged, so re-running an evaluation does not log it twice.
LOGGED_MARK = "trackers-benchmark.json"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def train_scalars(row: dict) -> dict[str, float]:
    """A metrics.jsonl training row as tracker scalars (``mfu`` is absent where the peak is unknown)."""
    out = {f"train/{key}": row[key] for key in TRAIN_FIELDS if _number(row.get(key))}
    for split, rows in (row.get("replay_by_source") or {}).items():  # a replay mixture's rows per source
        out[f"train/replay_rows/{split}"] = rows
    return out


def log_train(accelerator, row: dict) -> None:
    """Log one training row at its optimizer step (a no-op without ``train.trackers``)."""
    if accelerator.trackers:
        accelerator.log(train_scalars(row), step=row["step"])


# ---------------------------------------------------------------------------------------- benchmark
def tensorboard_dir(run_dir: Path, run_name: str) -> Path:
    """Where Accelerate's TensorBoard tracker writes for ``Accelerator(project_dir=run_dir)``."""
    return Path(run_dir) / run_name


def benchmark_scalars(final: dict, base: dict | None, groups: dict[str, list[str]]) -> dict[str, float]:
    """The final checkpoint's benchmark table as scalars: ``bench/<task>/<metric>`` (and ``gold_bpb``),
    with the change from the base model (``…_delta``, ``…_delta_se``) and per task group the paired
    change of the mean (``bench_group/<group>/accuracy_delta`` …) when the base model was evaluated."""
    out: dict[str, float] = {}
    for task, t in final.get("tasks", {}).items():
        out[f"bench/{task}/{t['metric']}"] = t["value"]
        if "gold_bpb" in t:
            out[f"bench/{task}/gold_bpb"] = t["gold_bpb"]
    for split, p in final.get("perplexity", {}).items():
        out[f"bench/heldout/{split}/loss"] = p["loss"]
    if base is not None:
        for r in compare_evals(base, final):
            measure = {"accuracy": f"bench/{r['subject']}/{final['tasks'].get(r['subject'], {}).get('metric', 'acc')}",
                       "gold bits/byte": f"bench/{r['subject']}/gold_bpb",
                       "held-out loss": f"bench/heldout/{r['subject']}/loss"}.get(r["kind"])
            if measure:
                out[f"{measure}_delta"], out[f"{measure}_delta_se"] = r["delta"], r["se"]
        for g in group_deltas(base, final, groups):
            kind = "accuracy" if g["kind"] == "accuracy" else "gold_bpb"
            out[f"bench_group/{g['group']}/{kind}"] = g["other"]
            out[f"bench_group/{g['group']}/{kind}_delta"] = g["delta"]
            out[f"bench_group/{g['group']}/{kind}_delta_se"] = g["se"]
    return {k: float(v) for k, v in out.items() if _number(v)}


def log_benchmark(params, run_dir: Path) -> dict[str, float] | None:
    """After evaluation: send the final checkpoint's benchmark table to ``train.trackers``, at the final
    training step. Returns what was logged; None when there is nothing to log (no trackers, no final
    checkpoint evaluated yet, or this very result logged before)."""
    if not params.train.trackers:
        return None
    run_dir = Path(run_dir)
    final = next((c for c in reversed(list_checkpoints(run_dir)) if c.get("final")), None)
    path = run_dir / "evals" / f"{final['name']}.json" if final else None
    if path is None or not path.is_file():
        return None
    result = json.loads(path.read_text())
    if stale_reason(result, run_dir) is not None:  # scores of weights that are gone are never sent
        return None
    mark = run_dir / LOGGED_MARK
    identity = {"checkpoint": final["name"], "eval_fingerprint": result.get("eval_fingerprint")}
    if mark.is_file() and json.loads(mark.read_text()) == identity:
        return None
    base_path = run_dir / "evals" / "base.json"
    base = json.loads(base_path.read_text()) if base_path.is_file() else None
    base = base if base is not None and stale_reason(base, run_dir) is None else None
    scalars = benchmark_scalars(result, base, params.eval.task_groups)
    for tracker in _start_trackers(params, run_dir):
        tracker.log(scalars, step=final["step"])
        tracker.finish()
    atomic_write_json(mark, identity)
    return scalars


def _start_trackers(params, run_dir: Path) -> list:
    """Accelerate's trackers, opened as training opened them (same project name and folder)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS  # lazy: accelerate imports torch; trainers-off runs skip it

    trackers = []
    for name in params.train.trackers:
        cls = LOGGER_TYPE_TO_CLASS[name]
        if cls.requires_logging_directory:
            tracker = cls(params.run_name, str(run_dir))
        else:  # W&B: the same project as training, a run of its own
            tracker = cls(params.run_name, name=f"{params.run_name} benchmark", job_type="benchmark")
        tracker.start()
        trackers.append(tracker)
    return trackers
