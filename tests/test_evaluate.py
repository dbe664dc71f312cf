"""Evaluation: perplexity and bits per byte on packed held-out data, the offline lm-eval suite on a real
tiny model, clear errors for corrupted tasks and assets."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from cpt_utils import tasks as task_module
from cpt_utils.evaluate import evaluate_model, evaluate_run, perplexity
from cpt_utils.modeling import load_model, load_tokenizer
from cpt_utils.packing import open_split
from cpt_utils.preprocess import prepare_data
from cpt_utils.tasks import TaskError, mmlu_items, registry
from cpt_utils.task_build import build_task_dir

from .numerics import assert_within_bf16_rounding


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from cpt_utils.config import load_params
    from cpt_utils.paths import REPO_ROOT

    params = load_params(REPO_ROOT / "params" / "tiny.yaml")
    run = tmp_path_factory.mktemp("run")
    prepare_data(params, run, progress=False)
    return params, run


def test_perplexity_and_bits_per_byte_match_a_direct_computation(prepared):
    """Loss, document-clustered SE and bits per byte against a direct computation: plain forward
    passes in fp32, tokens grouped by their document, bytes counted from each document's decoded text
    with the separator targets left out of bits per byte (but kept in the loss)."""
    from cpt_utils.packing import document_separator_id

    params, run = prepared
    model, tok = load_model(params.model), load_tokenizer(params.model)
    split = open_split(run, "val_domain")
    sep = document_separator_id(tok)
    result = perplexity(model, split, max_sequences=5, batch_size=2, precision="fp32", tokenizer=tok)
    docs: dict[int, dict] = {}
    with torch.no_grad():
        for i in range(5):
            ids, pos = (torch.from_numpy(a).unsqueeze(0) for a in split[i])
            logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0, :-1]
            loss = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none").numpy()
            owner = split.document_indices(i)[1:]
            for t, d in enumerate(owner):
                e = docs.setdefault(int(d), {"nats": 0.0, "n": 0, "text": 0.0, "ids": []})
                e["nats"] += loss[t]
                e["n"] += 1
                if int(ids[0, t + 1]) != sep:
                    e["text"] += loss[t]
                    e["ids"].append(int(ids[0, t + 1]))
    nats = np.array([e["nats"] for e in docs.values()])
    n = np.array([e["n"] for e in docs.values()], dtype=float)
    mean = nats.sum() / n.sum()
    d = len(nats)
    se = math.sqrt(d / (d - 1) * ((nats - mean * n) ** 2).sum()) / n.sum()
    nbytes = sum(len(tok.decode(e["ids"]).encode("utf-8")) for e in docs.values())
    bits = sum(e["text"] for e in docs.values()) / math.log(2)
    assert result["documents"] == d > 1
    assert result["loss"] == pytest.approx(mean, rel=1e-5)
    assert result["loss_se"] == pytest.approx(se, rel=2e-3)  # residuals of a near-uniform tiny model amplify fp32 noise
    assert result["bits_per_byte"] == pytest.approx(bits / nbytes, rel=1e-5)
    assert result["ppl"] == pytest.approx(math.exp(result["loss"]))
    # a document cut across sequences is one cluster: the SE is not that of independent sequences
    assert sum(result["per_document"]["tokens"]) == 5 * (split.seq_len - 1)


@pytest.mark.filterwarnings("ignore:precision bf16 on a CPU without AMX")
def test_bf16_body_keeps_log_probabilities_close_to_fp32(prepared):
    """The bf16 path against fp32: each document's mean loss and the pooled loss agree to bf16's
    resolution of the value (2⁻⁸ of it, ``tests/numerics.py``); bits per byte likewise."""
    params, run = prepared
    model, tok = load_model(params.model), load_tokenizer(params.model)
    split = open_split(run, "val_domain")
    exact = perplexity(model, split, max_sequences=4, precision="fp32", tokenizer=tok)
    fast = perplexity(model, split, max_sequences=4, precision="bf16", tokenizer=tok)
    assert fast["per_document"]["tokens"] == exact["per_document"]["tokens"]
    per_doc = lambda r: [n / t for n, t in zip(r["per_document"]["nats"], r["per_document"]["tokens"])]  # noqa: E731
    assert_within_bf16_rounding(per_doc(fast), per_doc(exact), "document loss")
    assert_within_bf16_rounding([fast["loss"], fast["bits_per_byte"]], [exact["loss"], exact["bits_per_byte"]])


def test_offline_suite_scores_a_tiny_model_and_writes_the_eval_file(prepared):
    params, run = prepared
    model, tok = load_model(params.model), load_tokenizer(params.model)
    result = evaluate_model(params, model, tok, run, "base", 0)
    assert set(result["tasks"]) == set(params.eval.offline_tasks)
    for name, t in result["tasks"].items():
        assert t["n"] == len(t["per_item"]) > 0 and set(t["per_item"]) <= {0, 1}
        assert t["value"] == pytest.approx(sum(t["per_item"]) / t["n"])
        assert t["stderr"] == pytest.approx(math.sqrt(t["value"] * (1 - t["value"]) / (t["n"] - 1)))
        assert t["chance"] == pytest.approx(0.25)
    assert result["tasks"]["mmlu_offline_domain"]["n"] == params.eval.limit
    saved = json.loads((run / "evals" / "base.json").read_text())
    assert saved["perplexity"]["val_domain"]["bits_per_byte"] > 0 and saved["eval_fingerprint"]


def test_per_item_continuous_metrics_agree_with_lm_evals_accuracy(prepared, tmp_path):
    """Our gold index and log-likelihoods must be lm-eval's: an item is correct by lm-eval's ``acc``
    exactly when the gold answer's margin over the best wrong choice is positive; bits per byte is
    −log₂ p(gold) over the gold continuation's bytes, so it falls as the gold log-likelihood rises."""
    params, run = prepared
    model, tok = load_model(params.model), load_tokenizer(params.model)
    result = evaluate_model(params, model, tok, tmp_path, "items", 0, data_dir=run / "data")
    for name, t in result["tasks"].items():
        acc, margin = np.array(t["per_item_acc"]), np.array(t["per_item_margin"])
        assert len(acc) == t["n"], name
        # a tie (margin 0, e.g. two identical choices) goes to the first choice, as in lm-eval's argmax
        assert ((margin > 0) <= (acc == 1)).all() and ((acc == 1) <= (margin >= 0)).all(), name
        ll, bpb = np.array(t["per_item_gold_ll"]), np.array(t["per_item_gold_bpb"])
        assert (bpb > 0).all() and (ll < 0).all()
        if t["letter_format"]:  # every gold continuation is " A".." D": 2 bytes
            assert bpb == pytest.approx(-ll / math.log(2) / 2, abs=1e-4)
        assert t["gold_bpb"] == pytest.approx(bpb.mean(), abs=1e-4)
        assert 0 < t["majority_baseline"] <= 1 and 0 < t["most_frequent_pred_share"] <= 1
        assert t["letter_format"] == (name.startswith("mmlu_offline_") and not name.endswith("_cloze"))


def test_items_are_a_fixed_seeded_sample_in_the_right_subject_group(prepared):
    params, run = prepared
    tok = load_tokenizer(params.model)
    folder, counts = build_task_dir(params, run / "data", tok)
    items = [json.loads(l) for l in (folder / "mmlu_offline_domain.jsonl").read_text().splitlines()]
    assert len(items) == counts["mmlu_offline_domain"] == params.eval.limit
    assert all(i["subject"] in task_module.DOMAIN_SUBJECTS for i in items)
    general = [json.loads(l) for l in (folder / "mmlu_offline_general_cloze.jsonl").read_text().splitlines()]
    assert not {i["subject"] for i in general} & set(task_module.DOMAIN_SUBJECTS)
    again, _ = build_task_dir(params, run / "data", tok)
    assert again == folder  # same settings, same items (cached)
    cont = [json.loads(l) for l in (folder / "continuation_domain.jsonl").read_text().splitlines()]
    assert all(len(c["choices"]) == 4 and 0 <= c["answer"] < 4 for c in cont)


def test_mmlu_asset_is_complete_and_a_corrupted_copy_is_refused(tmp_path):
    from cpt_utils.assets import fetch

    items = mmlu_items(fetch("mmlu"))
    assert len(items) == 14_042 and len({i["subject"] for i in items}) == 57
    bad = tmp_path / "mmlu.jsonl"
    lines = fetch("mmlu").read_text().splitlines()[:5]
    lines[3] = lines[3].replace('"correct_answer": "', '"correct_answer": "Z')
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskError, match=r"mmlu\.jsonl:4: malformed MMLU row"):
        mmlu_items(bad)


def test_corrupted_task_table_and_unknown_tasks_are_clear(tmp_path, monkeypatch, prepared):
    params, run = prepared
    broken = tmp_path / "tasks"
    shutil.copytree(task_module.HERE, broken, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (broken / "_mmlu_cloze.yaml").unlink()
    monkeypatch.setattr(task_module, "HERE", broken)
    with pytest.raises(TaskError, match="names a missing template"):
        registry()
    (broken / "tasks.yaml").write_text("mmlu_offline_domain: [unclosed\n")
    with pytest.raises(TaskError, match="not valid YAML"):
        registry()
    monkeypatch.undo()
    wrong = params.model_copy(update={"eval": params.eval.model_copy(update={"offline_tasks": ["no_such_task"]})})
    with pytest.raises(TaskError, match=r"unknown task\(s\) \['no_such_task'\]; allowed: .*mmlu_offline_domain"):
        build_task_dir(wrong, run / "data", load_tokenizer(params.model))


def test_evaluate_run_skips_current_results(prepared, capsys):
    params, run = prepared
    first = evaluate_run(params, run, progress=True)
    assert set(first.checkpoint) == {"base"}
    capsys.readouterr()
    again = evaluate_run(params, run, progress=True)
    assert "evaluating" not in capsys.readouterr().out
    assert again.equals(first)


def test_contamination_check_flags_an_item_that_is_in_the_training_data(tmp_path, prepared):
    from cpt_utils.contamination import contamination
    from cpt_utils.packing import SequencePacker, ShardWriter

    params, _ = prepared
    tok = load_tokenizer(params.model)
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    items = [{"question": "Which organelle produces most of the chemical energy of the eukaryotic cell?",
              "choices": ["mitochondrion", "ribosome", "nucleus", "vacuole"], "answer": 0},
             {"question": "In what year did the first crewed landing on the Moon take place?",
              "choices": ["1965", "1969", "1972", "1959"], "answer": 1}]
    (task_dir / "quiz.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    packer = SequencePacker(ShardWriter(tmp_path / "data" / "train", 32, len(tok), 100), separator_id=0)
    leaked = "Some unrelated prose comes first. " + items[0]["question"] + " It is the mitochondrion. " * 3
    for text in [leaked, "A clean document about rivers, hills and old towns in the north."] * 4:
        packer.add(tok(text)["input_ids"], "d")
    packer.close()
    report = contamination(task_dir, tmp_path / "data", tok)
    assert report["quiz"] == {"items": 2, "contaminated": 1, "share": 0.5, "examples": [0], "splits": ["train"]}
    # a register's replay split is training data too (a replay mixture trains on it): scanned, and found
    (tmp_path / "data" / "train").rename(tmp_path / "data" / "replay_news")
    report = contamination(task_dir, tmp_path / "data", tok)
    assert report["quiz"]["contaminated"] == 1 and report["quiz"]["splits"] == ["replay_news"]


# Measured once (2026-11-24, this repo's pinned environment, 2-core x86 CPU, bf16 autocast): the packaged
# SmolLM2-135M-Instruct (Q4_1, dequantised) on 100 + 100 seeded MMLU cloze items. Which items it gets
# right is deterministic up to floating-point differences between CPUs and kernels, so the test asks for
# (a) the pooled accuracy within 3 standard errors of the recorded one — the statistical allowance —
# and (b) ≥ 90% item-level agreement, which a broken model (e.g. a bad dequantisation, near chance but on
# different items) would not reach even when its accuracy happens to land close.
RECORDED_CORRECT = {
    "mmlu_offline_domain_cloze": [1, 2, 4, 6, 11, 13, 19, 20, 21, 24, 25, 27, 29, 30, 38, 45, 46, 47, 50, 59, 62,
                                  74, 91, 93, 97],
    "mmlu_offline_general_cloze": [7, 8, 9, 12, 13, 15, 23, 30, 31, 36, 38, 39, 40, 43, 46, 49, 55, 57, 60, 61, 70,
                                   75, 84, 86, 89, 92, 93, 95, 96],
}
RECORDED_ACCURACY, RECORDED_SE = 54 / 200, math.sqrt(0.27 * 0.73 / 199)  # 0.270 ± 0.031


@pytest.mark.slow
def test_real_smollm2_mmlu_cloze_matches_the_recorded_measurement(tmp_path):
    from cpt_utils.evaluate import run_tasks
    from cpt_utils.config import load_params
    from cpt_utils.paths import REPO_ROOT

    quick = load_params(REPO_ROOT / "params" / "quickstart.yaml")
    params = quick.model_copy(update={"eval": quick.eval.model_copy(update={
        "offline_tasks": list(RECORDED_CORRECT), "limit": 100, "seed": 1234, "final_tasks": [], "task_limits": {}})})
    model, tok = load_model(params.model), load_tokenizer(params.model)
    results = run_tasks(params, model, tok, tmp_path)  # MMLU items do not depend on the run's data
    correct = sum(sum(r["per_item"]) for r in results.values())
    assert abs(correct / 200 - RECORDED_ACCURACY) <= 3 * RECORDED_SE, correct
    agree = sum(
        (i in RECORDED_CORRECT[task]) == bool(x) for task, r in results.items() for i, x in enumerate(r["per_item"]))
    assert agree >= 180, f"only {agree}/200 items agree with the recorded run"


def test_a_retrained_checkpoint_is_evaluated_again(prepared, tmp_path, capsys):
    """Stored results are keyed on the scored weights' identity: retraining (resume: never) writes a
    checkpoint of the same name, and its old scores must not be shown for it."""
    from cpt_utils.train import train

    params, run = prepared
    p = params.model_copy(update={
        "eval": params.eval.model_copy(update={"offline_tasks": [], "task_groups": {}}),
        "train": params.train.model_copy(update={"token_budget": 512, "milestones": [], "eval_every_tokens": None})})
    train(p, tmp_path, data_dir=run / "data", progress=False)
    evaluate_run(p, tmp_path, data_dir=run / "data", include_base=False)
    capsys.readouterr()
    evaluate_run(p, tmp_path, data_dir=run / "data", include_base=False)
    assert "evaluating" not in capsys.readouterr().out  # unchanged: reused
    again = p.model_copy(update={"train": p.train.model_copy(update={"resume": "never"})})
    train(again, tmp_path, data_dir=run / "data", progress=False)
    evaluate_run(again, tmp_path, data_dir=run / "data", include_base=False)
    assert "evaluating tokens-" in capsys.readouterr().out
