"""Evaluation: held-out perplexity on packed sequences, and benchmark tasks through
lm-evaluation-harness on the in-memory model.

Perplexity is computed on the packed held-out splits written by preprocessing, with the same
per-document position ids the model is trained with, so the number measures exactly what training
optimises; bits per byte makes it comparable across tokenizers. Standard errors come from the spread of
per-sequence losses (perplexity) and per-item correctness (tasks). Results land in
``runs/<run>/evals/<checkpoint>.json``; the base model's are cached across runs that share it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .packing import PackedSplit

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def _autocast(model: "PreTrainedModel", precision: str):
    import contextlib

    import torch

    device = next(model.parameters()).device
    if precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def perplexity(model: "PreTrainedModel", split: PackedSplit, max_sequences: int | None = None,
               batch_size: int = 8, per_document: bool = True, precision: str = "auto",
               bytes_per_token: np.ndarray | None = None) -> dict:
    """Mean next-token loss (nats), its standard error, and perplexity on the first ``max_sequences``.

    The first ``max_sequences`` (not a random subset) keeps the evaluated set identical across
    checkpoints, so differences between checkpoints are paired, not sampling noise.
    """
    import torch

    n = len(split) if max_sequences is None else min(max_sequences, len(split))
    if n == 0:
        raise ValueError(f"{split.dir}: no sequences to evaluate")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    seq_losses: list[float] = []
    total_nats, total_bytes = 0.0, 0
    with torch.inference_mode(), _autocast(model, precision):
        for start in range(0, n, batch_size):
            batch = split.batch(list(range(start, min(n, start + batch_size))))
            ids = batch["input_ids"].to(device)
            kwargs = {"position_ids": batch["position_ids"].to(device)} if per_document else {}
            # use_cache=False: with a cache transformers skips the packed-sequence (per-document) mask
            logits = model(input_ids=ids, use_cache=False, **kwargs).logits.float()
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1), reduction="none"
            ).view(ids.size(0), -1)
            seq_losses.extend(loss.mean(dim=1).tolist())
            if bytes_per_token is not None:
                total_nats += float(loss.sum())
                total_bytes += int(bytes_per_token[ids[:, 1:].cpu().numpy()].sum())
    model.train(was_training)
    losses = np.asarray(seq_losses)
    mean = float(losses.mean())
    se = float(losses.std(ddof=1) / math.sqrt(len(losses))) if len(losses) > 1 else float("nan")
    out = {"loss": mean, "loss_se": se, "ppl": math.exp(mean), "sequences": int(n),
           "tokens": int(n * (split.seq_len - 1)), "per_sequence": [round(x, 5) for x in seq_losses]}
    if bytes_per_token is not None:
        out["bits_per_byte"] = total_nats / math.log(2) / max(1, total_bytes)
    return out


def token_byte_lengths(tokenizer) -> np.ndarray:
    """UTF-8 bytes each token stands for (for bits per byte); special tokens count as 0 bytes."""
    special = set(tokenizer.all_special_ids)
    lengths = np.zeros(len(tokenizer), dtype=np.int64)
    for token_id in range(len(tokenizer)):
        if token_id not in special:
            lengths[token_id] = len(tokenizer.decode([token_id]).encode("utf-8"))
    return lengths


# ------------------------------------------------------------------------------------------- tasks
def run_tasks(params, model, tokenizer, data_dir: Path) -> dict:
    """Offline (and, online, hub) tasks through lm-eval on the in-memory model; per-item results kept."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from .scoring import FastMCLM
    from .tasks import build_task_dir

    tasks, counts, include = [], {}, None
    if params.eval.offline_tasks:
        include, counts = build_task_dir(params, data_dir, tokenizer)
        tasks += list(params.eval.offline_tasks)
    if params.eval.hub_tasks and not params.offline:
        tasks += list(params.eval.hub_tasks)
    if not tasks:
        return {}
    device = str(next(model.parameters()).device)
    # HFLM's log-likelihoods with each item's context run once (cpt_utils.scoring)
    lm = FastMCLM(pretrained=model, tokenizer=tokenizer, batch_size=params.eval.batch_size, device=device,
                  precision="bf16" if _wants_bf16(params, device) else "fp32")
    seed = params.eval.seed
    # lm-eval draws a progress bar per stage; the per-checkpoint line we print is progress enough
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            results = lm_eval.simple_evaluate(
                model=lm, tasks=tasks,
                # indexing lm-eval's thousands of built-in tasks costs seconds per call: skip it when offline
                task_manager=TaskManager(include_path=str(include) if include else None,
                                         include_defaults=bool(params.eval.hub_tasks) and not params.offline),
                num_fewshot=params.eval.num_fewshot, limit=params.eval.limit,  # offline items are pre-sampled; hub: first N
                log_samples=True, bootstrap_iters=0, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                fewshot_random_seed=seed)
    except Exception:
        sys.stderr.write(captured.getvalue()[-5000:])
        raise
    out = {}
    for task, samples in results["samples"].items():
        samples = sorted(samples, key=lambda s: s["doc_id"])
        metrics = results["results"][task]
        metric = "acc_norm" if any(k.startswith("acc_norm") for k in metrics) else "acc"
        per_item = [int(round(float(s[metric]))) for s in samples]
        n = len(per_item)
        p = sum(per_item) / max(1, n)
        subjects = _item_subjects(include, task, n)
        out[task] = {"metric": metric, "value": p, "stderr": math.sqrt(p * (1 - p) / max(1, n - 1)), "n": n,
                     **({"item_subjects": subjects} if subjects else {}),
                     "per_item": per_item,
                     "chance": float(np.mean([1 / max(1, len(s.get("arguments", []) or [0])) for s in samples]))}
    return out


def _item_subjects(task_dir, task: str, n: int) -> list[str] | None:
    """Subjects of an offline MMLU task's items, in item order (per-subject deltas need them)."""
    import json

    path = Path(task_dir) / f"{task}.jsonl" if task_dir else None
    if path is None or not path.is_file():
        return None
    subjects = [json.loads(line).get("subject") for line in path.read_text(encoding="utf-8").splitlines()]
    return subjects if len(subjects) == n and all(subjects) else None


def _wants_bf16(params, device: str) -> bool:
    import torch

    if params.train.precision in ("fp32", "fp16"):
        return False
    return device == "cpu" or (device.startswith("cuda") and torch.cuda.is_bf16_supported())


# ------------------------------------------------------------------------------------ checkpoints
def eval_fingerprint(params, data_dir: Path) -> str:
    """What an evaluation result depends on: eval settings and the held-out data."""
    import hashlib
    import json

    manifest = Path(data_dir) / "manifest.json"
    content = json.loads(manifest.read_text()).get("content_hash") if manifest.is_file() else None
    here = Path(__file__).parent
    code = hashlib.sha256(b"".join(p.read_bytes() for p in [here / "evaluate.py", *sorted((here / "tasks").glob("*.*"))]
                                   if p.suffix in (".py", ".yaml"))).hexdigest()[:12]
    blob = json.dumps([params.eval.model_dump(mode="json"), content, params.offline, code], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def evaluate_model(params, model, tokenizer, run_dir: Path, name: str, tokens: int,
                   data_dir: Path | None = None) -> dict:
    """Perplexities and task scores of one model; written to ``evals/<name>.json`` atomically."""
    import json
    import time

    from .modeling import model_id

    run_dir = Path(run_dir)
    data_dir = Path(data_dir or run_dir / "data")
    started = time.perf_counter()
    byte_lengths = token_byte_lengths(tokenizer)
    ppl = {}
    for split in ("val_domain", "val_general"):
        ppl[split] = perplexity(model, PackedSplit(data_dir / split), params.eval.perplexity_max_sequences,
                                params.eval.batch_size, params.train.per_document_attention,
                                "bf16" if _wants_bf16(params, str(next(model.parameters()).device)) else "fp32",
                                byte_lengths)
    result = {"checkpoint": name, "tokens": tokens, "model": model_id(params.model), "perplexity": ppl,
              "tasks": run_tasks(params, model, tokenizer, data_dir), "eval_fingerprint": eval_fingerprint(params, data_dir)}
    result["time_s"] = time.perf_counter() - started
    out = run_dir / "evals" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)
    return result


def _base_cache_key(params, data_dir: Path) -> str:
    from .modeling import model_id

    return f"{model_id(params.model).replace('/', '_').replace(':', '_')}-{eval_fingerprint(params, data_dir)}"


def evaluate_run(params, run_dir: Path, data_dir: Path | None = None, progress: bool = True,
                 include_base: bool = True):
    """Evaluate the base model and every checkpoint that lacks a current result; return a tidy table
    (one row per checkpoint × measure). The base result is cached across runs sharing model and data."""
    import json
    import shutil

    from .checkpointing import list_checkpoints, load_checkpoint_model
    from .modeling import load_model, load_tokenizer
    from .paths import cache_dir

    run_dir = Path(run_dir)
    data_dir = Path(data_dir or run_dir / "data")
    fingerprint = eval_fingerprint(params, data_dir)
    tokenizer = load_tokenizer(params.model)
    todo = ([("base", 0, None)] if include_base else []) + [(c["name"], c["tokens"], c["path"]) for c in list_checkpoints(run_dir)]
    for name, tokens, path in todo:
        target = run_dir / "evals" / f"{name}.json"
        if target.is_file() and json.loads(target.read_text()).get("eval_fingerprint") == fingerprint:
            continue
        cached = cache_dir() / "evals" / f"{_base_cache_key(params, data_dir)}.json"
        if name == "base" and cached.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(cached, target)
            print(f"base model: reusing cached evaluation {cached.name}")
            continue
        if progress:
            print(f"evaluating {name} …", flush=True)
        model = load_model(params.model, seed=params.seed) if path is None else load_checkpoint_model(path)
        evaluate_model(params, model, tokenizer, run_dir, name, tokens, data_dir)
        if name == "base":
            cached.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(target, cached)
        del model
    if include_base:  # variants share the parent's training data: checked once, for the parent
        _check_contamination(params, run_dir, data_dir, tokenizer, fingerprint)
    return results_table(run_dir)


def _check_contamination(params, run_dir: Path, data_dir: Path, tokenizer, fingerprint: str) -> dict | None:
    """Write ``contamination.json``: offline task items whose text occurs in the training shards."""
    import json

    from .contamination import contamination
    from .tasks import build_task_dir

    if not params.eval.offline_tasks:
        return None
    out = run_dir / "contamination.json"
    if out.is_file() and json.loads(out.read_text()).get("eval_fingerprint") == fingerprint:
        return json.loads(out.read_text())
    task_dir, _ = build_task_dir(params, data_dir, tokenizer)
    report = {"eval_fingerprint": fingerprint, "window_tokens": 13, "tasks": contamination(task_dir, data_dir, tokenizer)}
    out.write_text(json.dumps(report, indent=1))
    return report


def results_table(run_dir: Path):
    """All ``evals/*.json`` of a run as a tidy DataFrame: checkpoint, tokens, measure, value, stderr, n."""
    import json

    import pandas as pd

    rows = []
    for path in sorted((Path(run_dir) / "evals").glob("*.json")):
        r = json.loads(path.read_text())
        for split, p in r["perplexity"].items():
            rows.append({"checkpoint": r["checkpoint"], "tokens": r["tokens"], "measure": f"{split} loss",
                         "value": p["loss"], "stderr": p["loss_se"], "n": p["sequences"]})
            if "bits_per_byte" in p:
                rows.append({"checkpoint": r["checkpoint"], "tokens": r["tokens"], "measure": f"{split} bits/byte",
                             "value": p["bits_per_byte"], "stderr": float("nan"), "n": p["sequences"]})
        for task, t in r["tasks"].items():
            rows.append({"checkpoint": r["checkpoint"], "tokens": r["tokens"], "measure": f"{task} ({t['metric']})",
                         "value": t["value"], "stderr": t["stderr"], "n": t["n"]})
    return pd.DataFrame(rows, columns=["checkpoint", "tokens", "measure", "value", "stderr", "n"]).sort_values(
        ["tokens", "measure"]).reset_index(drop=True)


def main(params_path: str, checkpoint: str = "base") -> None:
    """``cpt eval PARAMS [--checkpoint base|all|NAME]``."""
    from .checkpointing import list_checkpoints, load_checkpoint_model
    from .modeling import load_model, load_tokenizer
    from .params import load_params
    from .paths import configure_environment, run_dir as make_run_dir

    params = load_params(params_path)
    configure_environment(offline=params.offline)
    run = make_run_dir(params.run_name)
    if checkpoint == "all":
        print(evaluate_run(params, run).to_string())
        return
    tokenizer = load_tokenizer(params.model)
    if checkpoint == "base":
        model, tokens = load_model(params.model, seed=params.seed), 0
    else:
        found = {c["name"]: c for c in list_checkpoints(run)}
        if checkpoint not in found:
            raise SystemExit(f"--checkpoint {checkpoint}: not found; available: base, all, {', '.join(found) or '(none)'}")
        model, tokens = load_checkpoint_model(found[checkpoint]["path"]), found[checkpoint]["tokens"]
    result = evaluate_model(params, model, tokenizer, run, checkpoint, tokens)
    for split, p in result["perplexity"].items():
        print(f"{split:12s} loss {p['loss']:.4f} ± {p['loss_se']:.4f}  ppl {p['ppl']:.2f}  bits/byte {p.get('bits_per_byte', float('nan')):.4f}")
    for task, t in result["tasks"].items():
        print(f"{task:28s} {t['metric']:8s} {t['value']:.4f} ± {t['stderr']:.4f}  (n={t['n']})")
