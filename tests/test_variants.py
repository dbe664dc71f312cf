"""Mitigation variants train into their own folders on the shared data and are reused once done."""

from __future__ import annotations

import json

from cpt_utils.analysis import load_variant_evals
from cpt_utils.preprocess import prepare_data
from cpt_utils.variants import finished_variant, run_variants, variant_dir


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
    # the two variants really differ (replay changes the trajectory), and the table reports their losses
    assert table.val_domain_loss.nunique() == 2
    again = run_variants(params, tmp_path, progress=False)
    assert set(again.status) == {"reused"} and list(again.val_domain_loss) == list(table.val_domain_loss)
    # a variant whose parameters changed in the file is not taken for finished
    changed = params.model_copy(update={"variants": {**params.variants, "replay_25": params.variants["replay_25"].model_copy(
        update={"train": {**params.variants["replay_25"].train, "lr": 1e-5}})}})
    assert finished_variant(changed.variant("replay_25"), variant_dir(tmp_path, "replay_25"), tmp_path / "data") is None
    assert finished_variant(changed.variant("no_mitigation"), variant_dir(tmp_path, "no_mitigation"), tmp_path / "data")
    capsys.readouterr()


def test_a_variant_whose_parameters_changed_is_retrained_not_refused(tiny_params, tmp_path, capsys):
    params = tiny_params.model_copy(update={"eval": tiny_params.eval.model_copy(update={"offline_tasks": [], "task_groups": {}}),
                                            "variants": {"low": tiny_params.variants["no_mitigation"]}})
    prepare_data(params, tmp_path, progress=False)
    first = run_variants(params, tmp_path, progress=False)
    edited = params.model_copy(update={"variants": {"low": params.variants["low"].model_copy(
        update={"train": {**params.variants["low"].train, "lr": 1e-5}})}})
    again = run_variants(edited, tmp_path, progress=True)
    assert "parameters changed" in capsys.readouterr().out
    assert list(again.status) == ["computed"] and list(again.val_domain_loss) != list(first.val_domain_loss)
