"""Evaluation of a run: every held-out split and the task suite, for the base model and each checkpoint.

This module only orchestrates; the work is done by one module per job:
``perplexity`` (held-out loss and bits per byte, clustered by document), ``task_suite`` (lm-eval tasks
with per-item continuous metrics), ``results`` (stored results and what they are keyed on), and
``precision`` (the policy shared with training). Results land in ``runs/<run>/evals/<checkpoint>.json``;
the base model's are cached across runs that share model, data and settings.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import atomic_write, atomic_write_json
from .checkpointing import list_checkpoints, load_checkpoint_model
from .config import load_params
from .contamination import contamination, contamination_key
from .errors import CptError
from .heldout_eval import base_heldout_path, checkpoint_heldout_path, score_heldout, stored_heldout
from .modeling import load_model, load_tokenizer, model_id
from .packing import heldout_splits
from .paths import cache_dir, configure_environment, run_dir as make_run_dir
from .perplexity import perplexity
from .precision import resolve_precision
from .results import (eval_fingerprint, eval_precision_for, evaluation_settings, heldout_fingerprint, read_current,
                      results_table, final_tasks, scores_final_tasks, weights_identity, write_result)
from .task_build import build_task_dir, run_tasks
from .tracking import log_benchmark

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["evaluate_model", "evaluate_run", "heldout_splits", "perplexity", "results_table", "run_tasks",
           "eval_fingerprint", "main"]


def eval_precision(params, model: "PreTrainedModel") -> str:
    return resolve_precision(params.train.precision, next(model.parameters()).device.type)


def evaluate_model(params, model: "PreTrainedModel", tokenizer, run_dir: Path, name: str, tokens: int,
                   data_dir: Path | None = None, weights: str = "", final: bool = False,
                   heldout: dict | None = None) -> dict:
    """Held-out measures and task scores of one model; written to ``evals/<name>.json`` atomically. With
    ``final`` (``results.scores_final_tasks``: the base model, a main or control run's final checkpoint)
    ``eval.final_tasks`` are scored too, and recorded in ``evaluated_with["final_tasks"]``. ``heldout``:
    these weights' held-out results already made with this evaluation's settings (``heldout_eval``)."""
    run_dir = Path(run_dir)
    data_dir = Path(data_dir or run_dir / "data")
    precision = eval_precision(params, model)
    weights = weights or weights_identity(None, model_id(params.model))
    started = time.perf_counter()
    reused = heldout is not None
    if heldout is None:
        heldout = score_heldout(params, model, tokenizer, data_dir, precision)
    heldout_s = time.perf_counter() - started
    tasks = run_tasks(params, model, tokenizer, data_dir, precision, final=final)
    # what the numbers describe (weights, run) and were made with (``results.stale_reason``/``check_comparable``)
    result = {"checkpoint": name, "tokens": tokens, "model": model_id(params.model), "precision": precision,
              "weights": weights, "run": run_dir.name, "evaluated_with": evaluation_settings(params, data_dir, precision, final),
              "perplexity": heldout, "tasks": tasks,
              "eval_fingerprint": eval_fingerprint(params, data_dir, weights, precision, final),
              "time_s": time.perf_counter() - started, "heldout_time_s": heldout_s,
              "heldout_from": "the in-loop evaluation during training" if reused else "this evaluation",
              "tasks_time_s": time.perf_counter() - started - heldout_s}
    write_result(run_dir, name, result)
    return result


def _base_cache(params, data_dir: Path, fingerprint: str) -> Path:
    """The base model's cached evaluation, shared across runs: keyed by the fingerprint (which holds the
    *resolved* precision, so another machine's bf16 scores are never paired with this one's fp32, and
    the final tasks the base model is scored on) and named with that precision."""
    name = model_id(params.model).replace('/', '_').replace(':', '_')
    return cache_dir() / "evals" / f"{name}-{eval_precision_for(params)}-{fingerprint}.json"


def _reusable_base(cached: Path, fingerprint: str, precision: str) -> bool:
    """A cached base evaluation is reused only when it records this fingerprint and precision."""
    if not cached.is_file():
        return False
    try:
        r = json.loads(cached.read_text())
    except ValueError:
        return False
    return r.get("eval_fingerprint") == fingerprint and r.get("precision") == precision


def evaluate_run(params, run_dir: Path, data_dir: Path | None = None, progress: bool = True,
                 include_base: bool = True):
    """Evaluate the base model and every checkpoint that lacks a current result; return the tidy table
    (one row per checkpoint × measure). The base model and the final checkpoint (tokens ==
    ``train.token_budget``) are scored on ``eval.final_tasks`` too; a milestone's result never needs them."""
    run_dir = Path(run_dir)
    data_dir = Path(data_dir or run_dir / "data")
    tokenizer = load_tokenizer(params.model)
    todo = ([("base", 0, None)] if include_base else []) + [(c["name"], c["tokens"], c) for c in list_checkpoints(run_dir)]
    for name, tokens, checkpoint in todo:
        weights = weights_identity(checkpoint, model_id(params.model))
        final = scores_final_tasks(params, checkpoint)
        fingerprint = eval_fingerprint(params, data_dir, weights, final=final)
        if read_current(run_dir, name, fingerprint) is not None:
            continue
        cached = _base_cache(params, data_dir, fingerprint)
        if checkpoint is None and _reusable_base(cached, fingerprint, eval_precision_for(params)):
            write_result(run_dir, name, {**json.loads(cached.read_text()), "run": run_dir.name})
            print(f"base model: reusing cached evaluation {cached.name}")
            continue
        stored = stored_heldout(base_heldout_path(run_dir) if checkpoint is None else checkpoint_heldout_path(checkpoint["path"]),
                                heldout_fingerprint(params, data_dir))
        if progress:
            print(f"evaluating {name}{' (held-out text scored during training)' if stored else ''} …", flush=True)
        model = load_model(params.model, seed=params.seed) if checkpoint is None else load_checkpoint_model(checkpoint["path"])
        evaluate_model(params, model, tokenizer, run_dir, name, tokens, data_dir, weights, final, heldout=stored)
        if checkpoint is None:
            atomic_write(cached, (run_dir / "evals" / f"{name}.json").read_bytes())
        del model
    if include_base:  # variants share the parent's training data: checked once, for the parent
        _check_contamination(params, run_dir, data_dir, tokenizer)
    log_benchmark(params, run_dir)  # the final checkpoint's table to train.trackers (cpt_utils.tracking)
    return results_table(run_dir)


def _check_contamination(params, run_dir: Path, data_dir: Path, tokenizer) -> dict | None:
    """Write ``contamination.json``: offline task items whose text occurs in the training shards."""
    if not params.eval.offline_tasks and not params.eval.final_tasks:
        return None
    fingerprint = contamination_key(params, data_dir)
    if final_tasks(params):  # the task folder holds the final tasks too: a change to them rescans
        fingerprint = hashlib.sha256(json.dumps([fingerprint, final_tasks(params)]).encode()).hexdigest()[:16]
    out = run_dir / "contamination.json"
    if out.is_file() and json.loads(out.read_text()).get("contamination_key") == fingerprint:
        return json.loads(out.read_text())
    task_dir, _ = build_task_dir(params, data_dir, tokenizer)
    report = {"contamination_key": fingerprint, "window_tokens": 13, "tasks": contamination(task_dir, data_dir, tokenizer)}
    atomic_write_json(out, report, indent=1)
    return report


def main(params_path: str, checkpoint: str = "base") -> None:
    """``cpt eval PARAMS [--checkpoint base|all|NAME]``."""
    params = load_params(params_path)
    configure_environment(offline=params.offline)
    run = make_run_dir(params.run_name)
    if checkpoint == "all":
        print(evaluate_run(params, run).to_string())
        return
    tokenizer = load_tokenizer(params.model)
    if checkpoint == "base":
        model, tokens, info = load_model(params.model, seed=params.seed), 0, None
    else:
        found = {c["name"]: c for c in list_checkpoints(run)}
        if checkpoint not in found:
            raise CptError(f"--checkpoint {checkpoint}: not found in {run}; available: base, all"
                           + (f", {', '.join(found)}" if found else " (the run has no checkpoints yet: `cpt train` first)"))
        info = found[checkpoint]
        model, tokens = load_checkpoint_model(info["path"]), info["tokens"]
    result = evaluate_model(params, model, tokenizer, run, checkpoint, tokens,
                            weights=weights_identity(info, model_id(params.model)),
                            final=scores_final_tasks(params, info))
    for split, p in result["perplexity"].items():
        print(f"{split:12s} loss {p['loss']:.4f} ± {p['loss_se']:.4f}  ppl {p['ppl']:.2f}  "
              f"bits/byte {p.get('bits_per_byte', float('nan')):.4f} ± {p.get('bits_per_byte_se', float('nan')):.4f}"
              f"  ({p['documents']} documents)")
    for task, t in result["tasks"].items():
        print(f"{task:28s} {t['metric']:8s} {t['value']:.4f} ± {t['stderr']:.4f}  gold bits/byte "
              f"{t['gold_bpb']:.4f} ± {t['gold_bpb_se']:.4f}  (n={t['n']})")
