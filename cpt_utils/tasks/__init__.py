"""The offline task catalogue: the task table (tasks.yaml; lm-eval templates in this folder, tasks as
data), the packaged MMLU items, the paper's benchmarks (benchmarks.py, from the OLMES items), seeded
sampling (sampling.py), and reading a built task folder (items' texts, per-task metadata).

Building a run's task folder from its parameters is ``cpt_utils.task_build``; nothing here imports the
parameters or the model, so the parameter checks can ask this catalogue which task names exist.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..errors import CptError
from .benchmarks import BENCHMARKS

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


def item_texts(task_dir: Path, task: str) -> list[str]:
    """Each item's text (question and answers), in item order, for the contamination check: benchmark
    records by their benchmark (from meta.json), MMLU-style rows as question + choices, continuation rows
    as context + " " + true continuation (the text lm-eval scores, with its target delimiter)."""
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
