"""Never score the same weights twice: the held-out points training makes at its milestones are the
checkpoints' held-out results, and child runs do not score the base model or their final weights in the
loop (their evaluation after training does it once)."""

from __future__ import annotations

import json

import numpy as np

from cpt_utils.config import derive
from cpt_utils.evaluate import evaluate_model, evaluate_run
from cpt_utils.heldout_eval import base_heldout_path, checkpoint_heldout_path
from cpt_utils.checkpointing import list_checkpoints, load_checkpoint_model
from cpt_utils.modeling import load_model, load_tokenizer
from cpt_utils.preprocess import prepare_data
from cpt_utils.train import train

from .numerics import exact


def _params(tiny_params, **train):
    return exact(tiny_params).model_copy(update={
        "eval": tiny_params.eval.model_copy(update={"offline_tasks": [], "final_tasks": [], "task_groups": {},
                                                    "task_limits": {}}),
        "train": exact(tiny_params).train.model_copy(update={
            "token_budget": 2048, "milestones": [1024, 2048], "eval_every_tokens": 1024, "decay_branch_fraction": None,
            **train})})


def _per_document(result: dict) -> dict:
    return {split: np.array(r["per_document"]["nats"]) for split, r in result["perplexity"].items()}


def test_milestone_points_scored_in_training_are_reused_and_equal_a_fresh_evaluation(tiny_params, tmp_path):
    params = _params(tiny_params, eval_max_sequences=None)
    prepare_data(params, tmp_path, progress=False)
    train(params, tmp_path, progress=False)
    checkpoints = list_checkpoints(tmp_path)
    assert [c["tokens"] for c in checkpoints] == [1024, 2048]
    assert base_heldout_path(tmp_path).is_file()
    assert all(checkpoint_heldout_path(c["path"]).is_file() for c in checkpoints)
    evaluate_run(params, tmp_path, progress=False)
    evals = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "evals").glob("*.json")}
    assert {e["heldout_from"] for e in evals.values()} == {"the in-loop evaluation during training"}
    # the stored points are what a fresh evaluation of the saved weights computes (fp32: to rounding)
    tok = load_tokenizer(params.model)
    for name, model in (("base", load_model(params.model, seed=params.seed)),
                        (checkpoints[-1]["name"], load_checkpoint_model(checkpoints[-1]["path"]))):
        fresh = evaluate_model(params, model, tok, tmp_path / "fresh", name, 0, tmp_path / "data")
        assert fresh["heldout_from"] == "this evaluation"
        for split, nats in _per_document(fresh).items():
            np.testing.assert_allclose(_per_document(evals[name])[split], nats, rtol=0, atol=1e-4)
    # the in-loop curve is the same numbers
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if r["kind"] == "eval"][-1]
    assert last["val_domain_loss"] == evals[checkpoints[-1]["name"]]["perplexity"]["val_domain"]["loss"]


def test_a_point_made_with_other_settings_is_not_reused(tiny_params, tmp_path):
    params = _params(tiny_params, eval_max_sequences=None)
    prepare_data(params, tmp_path, progress=False)
    train(params, tmp_path, progress=False)
    other = params.model_copy(update={"eval": params.eval.model_copy(update={"perplexity_max_sequences": 3})})
    evaluate_run(other, tmp_path, progress=False)
    evals = [json.loads(p.read_text()) for p in (tmp_path / "evals").glob("*.json")]
    assert {e["heldout_from"] for e in evals} == {"this evaluation"}
    assert all(e["perplexity"]["val_domain"]["sequences"] == 3 for e in evals)
    # a tiny model's seed picks the base weights: another seed never reuses runs/<run>/heldout/base.json
    from cpt_utils.results import heldout_fingerprint

    data = tmp_path / "data"
    assert heldout_fingerprint(params.model_copy(update={"seed": params.seed + 1}), data) != heldout_fingerprint(params, data)
    assert heldout_fingerprint(params, data, device="cuda") != heldout_fingerprint(params, data)


def test_a_subset_curve_point_is_not_stored_and_child_runs_do_not_score_in_the_loop(tiny_params, tmp_path):
    params = _params(tiny_params, eval_max_sequences=2)
    prepare_data(params, tmp_path, progress=False)
    train(params, tmp_path, progress=False)
    assert not base_heldout_path(tmp_path).exists()
    assert not any(checkpoint_heldout_path(c["path"]).exists() for c in list_checkpoints(tmp_path))
    with_variant = type(params).model_validate({**params.model_dump(), "variants": {"v": {"train": {"lr": 1e-4}}}})
    child = derive(with_variant, "variant", "v")
    assert child.train.in_loop_eval is False
    vdir = tmp_path / "variants" / "v"
    train(child, vdir, data_dir=tmp_path / "data", progress=False)
    rows = [json.loads(line) for line in (vdir / "metrics.jsonl").read_text().splitlines()]
    assert rows and not [r for r in rows if r["kind"] == "eval"]
