"""Benchmark tasks through lm-evaluation-harness on the in-memory model, kept per item.

lm-eval's own task, filter and metric code decides prompts, choices and accuracy; we keep, per item,
what a small model's small changes show up in (OLMES / DataDecide): the gold answer's log-likelihood,
its **bits per byte** (−log₂ p(gold) ÷ the gold continuation's UTF-8 bytes) and its **margin** over the
best wrong choice, beside acc/acc_norm. Paired tests on these continuous values see effects that
40-item accuracies cannot. We also keep each item's predicted choice, so position bias (a letter
format answered with one letter) is reported rather than read as knowledge.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from .perplexity import finite_mean_se
from .tasks import task_meta

#: A task whose most frequent predicted choice exceeds this share is answering by position, not content.
POSITION_BIAS_LIMIT = 0.5


def make_lm(params, model, tokenizer, precision: str):
    """The lm-eval model wrapper for an in-memory model: HFLM's log-likelihoods with each item's shared
    context run once, the output head and log-softmax in fp32 (``scoring.FastMCLM``)."""
    from .scoring import FastMCLM  # lazy: scoring imports lm-eval (seconds); only an evaluation pays it

    device = str(next(model.parameters()).device)
    return FastMCLM(pretrained=model, tokenizer=tokenizer, batch_size=params.eval.batch_size, device=device,
                    precision=precision)


@contextlib.contextmanager
def templates_compiled_once():
    """lm-eval's ``utils.apply_template`` compiled with each call a Jinja template it had compiled before
    (once per document and field: 4,114 compilations, 2.6 s of a 19 s quickstart task suite); inside this
    block each distinct template is compiled once and rendered as lm-eval renders it (its own ``env``), so
    prompts, choices and targets are the same strings. lm-eval's function is restored on exit."""
    from lm_eval import utils as lm_utils  # lazy: as in run_built_tasks

    original = lm_utils.apply_template
    compiled = functools.lru_cache(maxsize=None)(lm_utils.env.from_string)

    def apply_template(template: str, doc: dict) -> str:
        return compiled(template).render(**doc)

    lm_utils.apply_template = apply_template
    try:
        yield compiled
    finally:
        lm_utils.apply_template = original


@templates_compiled_once()  # the summaries at the end render templates too (gold, choices)
def run_built_tasks(params, model, tokenizer, task_dir: Path | None, precision: str = "fp32",
                    offline: list[str] | None = None) -> dict:
    """Offline tasks from a built folder (``task_build.build_task_dir``; None: none) — ``offline`` of them
    (None: ``eval.offline_tasks``) — and, online, hub tasks on the in-memory model; per-item results kept,
    with each item's MMLU subject (``item_subjects``) and the catalogue's ``group`` where it has one."""
    import lm_eval  # lazy: importing lm-eval costs seconds; only an evaluation pays it
    from lm_eval.tasks import TaskManager, get_task_dict  # lazy: as above

    include = task_dir
    offline = list(params.eval.offline_tasks if offline is None else offline) if include else []
    names = list(offline)
    if params.eval.hub_tasks and not params.offline:
        names += list(params.eval.hub_tasks)
    if not names:
        return {}
    seed = params.eval.seed
    # indexing lm-eval's thousands of built-in tasks costs seconds per call: skip it when offline
    manager = TaskManager(include_path=str(include) if include else None,
                          include_defaults=bool(params.eval.hub_tasks) and not params.offline)
    captured = io.StringIO()  # lm-eval draws a progress bar per stage; our per-checkpoint line is enough
    try:
        with contextlib.redirect_stderr(captured):
            task_objects = get_task_dict(names, manager)
            results = lm_eval.simple_evaluate(
                model=make_lm(params, model, tokenizer, precision), tasks=list(task_objects.values()),
                task_manager=manager,  # without it lm-eval indexes all its built-in tasks again (≈ 12 CPU-s per call)
                num_fewshot=params.eval.num_fewshot,
                limit=None if include and not params.eval.hub_tasks else params.eval.limit,  # offline items are pre-sampled
                log_samples=True, bootstrap_iters=0, random_seed=seed, numpy_random_seed=seed,
                torch_random_seed=seed, fewshot_random_seed=seed)
    except Exception:
        sys.stderr.write(captured.getvalue()[-5000:])
        raise
    out = {}
    for task, samples in results["samples"].items():
        meta = task_meta(include, task) if include and task in offline else {}
        out[task] = summarise_task(task_objects[task], sorted(samples, key=lambda s: s["doc_id"]),
                                   results["results"][task], meta)
        if meta.get("group"):  # MMLU's domain/general split: the headline places a final task by it
            out[task]["group"] = meta["group"]
        subjects = [s["doc"].get("subject") for s in sorted(samples, key=lambda s: s["doc_id"])]
        if all(subjects):
            out[task]["item_subjects"] = subjects
    return out


def gold_index(task, doc: dict) -> int:
    """The gold choice of one document, resolved as lm-eval's ``process_results`` does (index, choice
    text, or — for partial evaluation like Winogrande — the context index)."""
    gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
    if isinstance(gold, list):
        gold = gold[0]
    if isinstance(gold, str):
        choices = task.doc_to_choice(doc)
        gold = choices.index(gold) if gold in choices else int(gold) if gold.isdigit() else -1
    return int(gold)


def item_metrics(lls: list[float], gold: int, continuations: list[str]) -> dict:
    """Continuous per-item measures: gold log-likelihood (nats), bits per byte of the gold
    continuation as scored (its target delimiter included: its nats are counted too), margin over the
    best wrong choice (nats; > 0 means correct by acc)."""
    gold_ll = float(lls[gold])
    nbytes = max(1, len(continuations[gold].encode("utf-8")))
    wrong = [ll for i, ll in enumerate(lls) if i != gold]
    return {"gold_ll": gold_ll, "gold_bpb": -gold_ll / math.log(2) / nbytes,
            "margin": gold_ll - max(wrong) if wrong else float("nan")}


def summarise_task(task, samples: list[dict], metrics: dict, meta: dict | None = None) -> dict:
    """One task's result: headline metric with its SE, and per-item arrays (all in doc order)."""
    metric = "acc_norm" if any(k.startswith("acc_norm") for k in metrics) else "acc"
    per = {k: [] for k in ("acc", "acc_norm", "gold_ll", "gold_bpb", "margin", "pred", "gold", "n_choices")}
    for s in samples:
        lls = [float(r[0]) for r in s["filtered_resps"]]
        continuations = [a[1] for a in s["arguments"]]
        gold = gold_index(task, s["doc"])
        m = item_metrics(lls, gold, continuations) if 0 <= gold < len(lls) else \
            {"gold_ll": float("nan"), "gold_bpb": float("nan"), "margin": float("nan")}
        lengths = np.array([float(len(c)) for c in task.doc_to_choice(s["doc"])]) \
            if not task.multiple_input else np.ones(len(lls))
        per["acc"].append(int(round(float(s.get("acc", int(np.argmax(lls)) == gold)))))
        per["acc_norm"].append(int(round(float(s.get("acc_norm", int(np.argmax(np.array(lls) / lengths)) == gold)))))
        per["pred"].append(int(np.argmax(np.array(lls) / lengths)) if metric == "acc_norm" else int(np.argmax(lls)))
        per["gold"].append(gold)
        per["n_choices"].append(len(lls))
        for k in ("gold_ll", "gold_bpb", "margin"):
            per[k].append(round(m[k], 5))
    n = len(samples)
    items = per[metric]
    p = sum(items) / max(1, n)
    pred_share = Counter(per["pred"]).most_common(1)[0][1] / n if n else float("nan")
    gold_share = Counter(per["gold"]).most_common(1)[0][1] / n if n else float("nan")
    bpb_mean, bpb_se = finite_mean_se(per["gold_bpb"])
    letter_format = _letter_format(task, samples)
    return {
        "metric": metric, "value": p, "stderr": math.sqrt(p * (1 - p) / max(1, n - 1)), "n": n,
        "per_item": items, **{f"per_item_{k}": v for k, v in per.items()},
        "gold_bpb": bpb_mean, "gold_bpb_se": bpb_se,
        "chance": float(np.mean([1 / c for c in per["n_choices"]])) if n else float("nan"),
        # the most common gold answer is a baseline only where every item offers the same choices (BoolQ's
        # "yes", a letter); the task builder knows that, the sample alone does not (SciQ's gold is always last)
        "majority_baseline": (meta or {}).get("majority_baseline", gold_share),
        "most_frequent_pred_share": pred_share,
        "letter_format": letter_format,
        "at_chance_by_position": bool(letter_format and pred_share > POSITION_BIAS_LIMIT),
        **({"meta": meta} if meta else {}),
    }


def _letter_format(task, samples: list[dict]) -> bool:
    """Letter formats score single letters (" A", " B", …) after the listed options."""
    if not samples or task.multiple_input:
        return False
    return all(len(a[1].strip()) == 1 and a[1].strip().isalpha() for s in samples[:5] for a in s["arguments"])
