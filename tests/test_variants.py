"""Mitigation variants train into their own folders on the shared data and are reused once done."""

from __future__ import annotations

import json

from cpt_utils.preprocess import prepare_data
from cpt_utils.variants import run_variants, variant_dir


def test_variants_share_the_data_and_are_reused(tiny_params, tmp_path, capsys):
    params = tiny_params.model_copy(update={"eval": tiny_params.eval.model_copy(update={"offline_tasks": ["mmlu_offline_domain"], "limit": 6})})
    prepare_data(params, tmp_path, progress=False)
    results = run_variants(params, tmp_path, progress=False)
    assert set(results) == {"no_mitigation", "replay_25"}
    for name, ev in results.items():
        vdir = variant_dir(tmp_path, name)
        assert not (vdir / "data").exists()  # the parent's prepared data is shared, not copied
        assert ev["tokens"] == 2048 and ev["checkpoint"] == "tokens-000000002048"
        rows = [json.loads(l) for l in (vdir / "metrics.jsonl").read_text().splitlines()]
        replay = sum(r.get("replay_rows", 0) for r in rows if r["kind"] == "train")
        assert replay == (8 if name == "replay_25" else 0)  # 25% of 8 steps × 4 rows
    capsys.readouterr()
    run_variants(params, tmp_path, progress=False)
    assert capsys.readouterr().out.count("reusing finished training") == 2
