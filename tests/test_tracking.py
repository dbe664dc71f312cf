"""Trackers get the whole run: a tiny run with ``train.trackers: [tensorboard]`` writes an event file, and
reading it back gives metrics.jsonl's training rows, the held-out curves and the final benchmark table."""

from __future__ import annotations

import json

import pytest

from cpt_utils.config import load_params
from cpt_utils.paths import REPO_ROOT
from cpt_utils.tracking import benchmark_scalars, log_benchmark, tensorboard_dir, train_scalars

TINY = REPO_ROOT / "params" / "tiny.yaml"


def test_train_rows_become_train_scalars_without_missing_values():
    row = {"kind": "train", "step": 3, "tokens": 768, "loss": 5.5, "lr": 1e-3, "grad_norm": 0.7, "tokens_per_s": 900.0,
           "mfu": None, "mem_mb": 512.0, "time_s": 0.28, "replay_rows": 0}
    assert train_scalars(row) == {"train/tokens": 768, "train/loss": 5.5, "train/lr": 1e-3, "train/grad_norm": 0.7,
                                  "train/tokens_per_s": 900.0, "train/mem_mb": 512.0, "train/time_s": 0.28}


def test_no_trackers_means_nothing_is_logged(tmp_path):
    assert log_benchmark(load_params(TINY), tmp_path) is None


def test_tensorboard_receives_the_training_curves_and_the_final_benchmark(data_dir, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is the optional [tracking] extra (pip install -e '.[tracking]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cpt_utils.analysis import group_deltas
    from cpt_utils.checkpointing import list_checkpoints
    from cpt_utils.evaluate import evaluate_run
    from cpt_utils.train import train

    # one checkpoint (the final one) and a lean suite: lm-eval's start-up dominates an evaluation's time
    params = load_params(TINY, sets=[
        "train.trackers=[tensorboard]", "train.milestones=[]", "train.eval_every_tokens=2048", "eval.limit=4",
        "eval.offline_tasks=[mmlu_offline_domain, mmlu_offline_general_cloze]", "eval.perplexity_max_sequences=8",
        "eval.task_groups={domain: [mmlu_offline_domain], general: [mmlu_offline_general_cloze]}"])
    train(params, tmp_path, data_dir=data_dir, progress=False)
    evaluate_run(params, tmp_path, data_dir=data_dir, progress=False)

    events = EventAccumulator(str(tensorboard_dir(tmp_path, params.run_name)), size_guidance={"scalars": 0}).Reload()
    tags = set(events.Tags()["scalars"])

    def series(tag: str) -> dict[int, float]:
        return {e.step: e.value for e in events.Scalars(tag)}

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert len(train_rows) == 16
    for field in ("loss", "lr", "tokens_per_s", "grad_norm", "mem_mb"):  # every log step, float32 in the file
        assert series(f"train/{field}") == pytest.approx({r["step"]: r[field] for r in train_rows}, rel=1e-6), field
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 8, 16]
    for split in ("val_domain", "val_general"):
        assert series(f"{split}_loss") == pytest.approx({r["step"]: r[f"{split}_loss"] for r in evals}, rel=1e-6)

    (checkpoint,) = list_checkpoints(tmp_path)
    assert checkpoint["final"] and checkpoint["step"] == 16
    final = json.loads((tmp_path / "evals" / f"{checkpoint['name']}.json").read_text())
    base = json.loads((tmp_path / "evals" / "base.json").read_text())
    assert set(final["tasks"]) == set(params.eval.offline_tasks) | set(params.eval.final_tasks)  # the final checkpoint
    for task, t in final["tasks"].items():
        assert series(f"bench/{task}/{t['metric']}") == pytest.approx({16: t["value"]}, rel=1e-6)
        assert f"bench/{task}/{t['metric']}_delta" in tags and f"bench/{task}/gold_bpb" in tags
    for g in group_deltas(base, final, params.eval.task_groups):
        kind = "accuracy" if g["kind"] == "accuracy" else "gold_bpb"
        assert series(f"bench_group/{g['group']}/{kind}_delta") == pytest.approx({16: g["delta"]}, rel=1e-5, abs=1e-7)
    assert {"bench_group/domain/accuracy_delta", "bench_group/general/accuracy_delta"} <= tags

    # evaluating again finds every result current: the benchmark is not logged a second time
    evaluate_run(params, tmp_path, data_dir=data_dir, progress=False)
    assert log_benchmark(params, tmp_path) is None
    again = EventAccumulator(str(tensorboard_dir(tmp_path, params.run_name)), size_guidance={"scalars": 0}).Reload()
    assert len(again.Scalars("bench/mmlu_offline_domain/acc")) == 1


def test_benchmark_scalars_without_a_base_are_the_final_scores_only():
    final = {"tasks": {"t": {"metric": "acc", "value": 0.5, "gold_bpb": 1.25}},
             "perplexity": {"val_domain": {"loss": 3.0}}}
    assert benchmark_scalars(final, None, {"g": ["t"]}) == {"bench/t/acc": 0.5, "bench/t/gold_bpb": 1.25,
                                                           "bench/heldout/val_domain/loss": 3.0}
