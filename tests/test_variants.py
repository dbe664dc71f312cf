"""Mitigation variants train into their own folders on the shared data and are reused once done."""

from __future__ import annotations

import json

from cpt_utils.config import VariantTrainParams, derive
from cpt_utils.preprocess import prepare_data
from cpt_utils.results import final_eval, finished_variant, load_variant_evals, variant_dir
from cpt_utils.variants import run_variants


def test_variants_share_the_data_and_are_reused(tiny_params, tmp_path, capsys):
    params = tiny_params.model_copy(update={"eval": tiny_params.eval.model_copy(update={"offline_tasks": ["mmlu_offline_domain"], "task_groups": {}, "limit": 6})})
    prepare_data(params, tmp_path, progress=False)
    table = run_variants(params, tmp_path, progress=False)
    assert list(table.variant) == ["no_mitigation", "replay_25"] and set(table.status) == {"computed"}
    evals = load_variant_evals(tmp_path)
    assert set(evals) == {"no_mitigation", "replay_25"}
    for name, ev in evals.items():
        vdir = variant_dir(tmp_path, name)
        assert not (vdir / "data").exists()  # the parent's prepared data is shared, not copied
        assert ev["tokens"] == 2048 and ev["checkpoint"] == "tokens-000000002048"
        rows = [json.loads(l) for l in (vdir / "metrics.jsonl").read_text().splitlines()]
        replay = sum(r.get("replay_rows", 0) for r in rows if r["kind"] == "train")
        assert replay == (8 if name == "replay_25" else 0)  # 25% of 8 steps × 4 rows
        by_source: dict[str, int] = {}
        for r in rows:
            for split, n in r.get("replay_by_source", {}).items():
                by_source[split] = by_source.get(split, 0) + n
        # the mixture's rows per source are logged: general (split "replay") and news, summing to the replay rows
        assert sum(by_source.values()) == replay and (set(by_source) == {"replay", "replay_news"} if replay else not by_source)
    # the two variants really differ (replay changes the trajectory), and the table reports their losses
    assert table.val_domain_loss.nunique() == 2
    again = run_variants(params, tmp_path, progress=False)
    assert set(again.status) == {"reused"} and list(again.val_domain_loss) == list(table.val_domain_loss)
    # a variant whose parameters changed in the file is not taken for finished
    changed = params.model_copy(update={"variants": {**params.variants, "replay_25": params.variants["replay_25"].model_copy(
        update={"train": VariantTrainParams.model_validate({**params.variants["replay_25"].train, "lr": 1e-5})})}})
    assert finished_variant(derive(changed, "variant", "replay_25"), variant_dir(tmp_path, "replay_25"), tmp_path / "data") is None
    assert finished_variant(derive(changed, "variant", "no_mitigation"), variant_dir(tmp_path, "no_mitigation"), tmp_path / "data")
    capsys.readouterr()


def test_a_variant_whose_parameters_changed_is_retrained_not_refused(tiny_params, tmp_path, capsys):
    params = tiny_params.model_copy(update={"eval": tiny_params.eval.model_copy(update={"offline_tasks": [], "task_groups": {}}),
                                            "variants": {"low": tiny_params.variants["no_mitigation"]}})
    prepare_data(params, tmp_path, progress=False)
    first = run_variants(params, tmp_path, progress=False)
    edited = params.model_copy(update={"variants": {"low": params.variants["low"].model_copy(
        update={"train": VariantTrainParams.model_validate({**params.variants["low"].train, "lr": 1e-5})})}})
    again = run_variants(edited, tmp_path, progress=True)
    out = capsys.readouterr().out
    assert "parameters changed" in out and " vs 1e-05)" in out and "train.lr (" in out  # it names what moved
    assert list(again.status) == ["computed"] and list(again.val_domain_loss) != list(first.val_domain_loss)


def test_the_control_run_trains_on_its_split_at_the_main_budget_and_is_compared_at_every_milestone(tiny_params, tmp_path, capsys):
    from cpt_utils.headline import compare_to_control
    from cpt_utils.results import load_evals
    from cpt_utils.evaluate import evaluate_run
    from cpt_utils.train import train
    from cpt_utils.variants import run_control
    from cpt_utils.results import control_dir, finished_control

    params = tiny_params.model_copy(update={
        "eval": tiny_params.eval.model_copy(update={"offline_tasks": ["mmlu_offline_domain"], "task_groups": {}, "limit": 6}),
        "train": tiny_params.train.model_copy(update={"token_budget": 2048, "milestones": [1024, 2048],
                                                      "eval_every_tokens": None})})
    assert run_control(params.model_copy(update={"control": None}), tmp_path, progress=False).empty
    prepare_data(params, tmp_path, progress=False)
    train(params, tmp_path, progress=False)
    evaluate_run(params, tmp_path, progress=False)
    table = run_control(params, tmp_path, progress=False)
    assert list(table.status) == ["computed"] and list(table.checkpoints) == [2] and list(table.tokens) == [2048]
    cdir = control_dir(tmp_path)
    assert not (cdir / "data").exists() and not (cdir / "evals" / "base.json").exists()  # shares data and base
    main, control = load_evals(tmp_path), load_evals(cdir)
    assert [e["tokens"] for e in control.values()] == [1024, 2048] == [e["tokens"] for n, e in main.items() if n != "base"]
    # the base model is the main run's: the control never scores it again (no in-loop points of its own);
    # another training text: the trained models differ
    rows = [json.loads(line) for line in (cdir / "metrics.jsonl").read_text().splitlines()]
    assert rows and not [r for r in rows if r["kind"] == "eval"]
    assert control["tokens-000000002048"]["perplexity"]["val_domain"]["loss"] != main["tokens-000000002048"]["perplexity"]["val_domain"]["loss"]
    compared = compare_to_control(tmp_path)
    assert {r["checkpoint"] for r in compared} == {"tokens-000000001024", "tokens-000000002048"}
    assert {"val_domain", "val_general", "mmlu_offline_domain"} <= {r["subject"] for r in compared}
    # finished: reused without training; a changed recipe is not taken for finished
    again = run_control(params, tmp_path, progress=True)
    assert list(again.status) == ["reused"] and "control run (reused)" in capsys.readouterr().out
    edited = params.model_copy(update={"train": params.train.model_copy(update={"lr": 1e-5})})
    assert finished_control(derive(edited, "control"), cdir, tmp_path / "data") is None
    assert finished_control(derive(params, "control"), cdir, tmp_path / "data") is not None


def test_a_variant_that_is_the_main_recipe_at_the_main_budget_reuses_the_main_runs_final_checkpoint(tiny_params, tmp_path):
    """``no_mitigation`` with the main budget would retrain the main trajectory step for step: it takes
    the main run's final evaluation instead, and trains again once it differs from the main run."""
    from cpt_utils.evaluate import evaluate_run
    from cpt_utils.train import train

    ev_params = tiny_params.eval.model_copy(update={"offline_tasks": [], "task_groups": {}})
    train_params = tiny_params.train.model_copy(update={"token_budget": 2048, "milestones": [1024, 2048]})
    spec = tiny_params.variants["no_mitigation"]
    params = tiny_params.model_copy(update={"eval": ev_params, "train": train_params, "control": None,
                                            "variants": {"no_mitigation": spec.model_copy(update={"train": VariantTrainParams()})}})
    prepare_data(params, tmp_path, progress=False)
    train(params, tmp_path, data_dir=tmp_path / "data", progress=False)
    evaluate_run(params, tmp_path, data_dir=tmp_path / "data", progress=False)
    table = run_variants(params, tmp_path, progress=False)
    assert "main run" in table.status[0]
    vdir = variant_dir(tmp_path, "no_mitigation")
    assert not (vdir / "checkpoints").exists()  # nothing was trained
    main_final = final_eval(tmp_path)
    borrowed = load_variant_evals(tmp_path)["no_mitigation"]
    assert borrowed["same_as"] == "main run" and borrowed["perplexity"] == main_final["perplexity"]
    # the main run at another LR is no longer the same recipe: the variant trains and its result replaces the borrowed one
    edited = params.model_copy(update={"variants": {"no_mitigation": spec.model_copy(update={"train": VariantTrainParams(lr=1e-5)})}})
    again = run_variants(edited, tmp_path, progress=False)
    assert list(again.status) == ["computed"] and (vdir / "checkpoints").exists()
    own = load_variant_evals(tmp_path)["no_mitigation"]
    assert "same_as" not in own and own["perplexity"] != main_final["perplexity"]
