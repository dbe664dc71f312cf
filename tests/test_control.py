"""The control run: its parameters, its split (disjoint from every held-out split), its identity in the
training fingerprint, and the analysis that separates generic from domain-specific changes and reads a
mitigation recommendation from paired comparisons — on synthetic results whose answer is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from cpt_utils import analysis, analysis_report, headline, readings
from cpt_utils.packing import PackedSplit
from cpt_utils.config import ParamsError, derive, validate_params
from cpt_utils.preprocess import SNAPSHOT, prepare_data
from cpt_utils.results import training_data_identity, trajectory_fingerprint

from .test_preprocess_resume import Crash, _crash_after, _data_files, _params, _write_corpora, tokenized  # noqa: F401


# ---------------------------------------------------------------------------------------- parameters
def test_control_parameters_are_validated_with_the_allowed_names():
    assert validate_params({}).control is None
    ok = validate_params({"control": {"corpus": "general", "description": "wiki"}})
    assert ok.control.corpus == "general"
    with pytest.raises(ParamsError, match=r"control.corpus: 'chat' is not a corpus of this run; allowed: general \("):
        validate_params({"control": {"corpus": "chat"}})
    with pytest.raises(ParamsError, match="must be text outside the domain"):
        validate_params({"control": {"corpus": "domain"}})
    with pytest.raises(ParamsError, match="control.corpu: unknown key; allowed here: corpus, description"):
        validate_params({"control": {"corpu": "general"}})
    with pytest.raises(ParamsError, match="train.train_split: 'control' needs a control: section"):
        validate_params({"train": {"train_split": "control"}})
    registered = validate_params({"data": {"registers": {"chat": {"kind": "packaged_register", "register": "chat"}}},
                                  "control": {"corpus": "chat"}})
    assert registered.control.corpus == "chat"


def test_the_control_run_is_the_main_recipe_on_the_control_split(tiny_params):
    from cpt_utils.results import LOOSE_TRAIN_KEYS

    control = derive(tiny_params, "control")
    assert control.train.train_split == "control" and tiny_params.train.train_split == "train"
    # budget, LR, milestones: the same; no in-loop points of its own (a loose key: the trajectory is the same)
    same = {k: v for k, v in tiny_params.train.model_dump().items() if k not in ("train_split", "in_loop_eval")}
    assert {k: v for k, v in control.train.model_dump().items() if k not in ("train_split", "in_loop_eval")} == same
    assert control.train.in_loop_eval is False and "in_loop_eval" in LOOSE_TRAIN_KEYS
    assert control.eval == tiny_params.eval and control.variants == {} and control.run_name == "tiny.control"
    with pytest.raises(ParamsError, match="no control run"):
        derive(tiny_params.model_copy(update={"control": None}), "control")
    # final checkpoint only: the same trajectory (milestones are loose keys), no intermediate evaluations
    final_only = tiny_params.model_copy(update={"control": tiny_params.control.model_copy(update={"every_milestone": False})})
    short = derive(final_only, "control").train
    assert short.milestones == [] and short.eval_every_tokens is None and short.token_budget == tiny_params.train.token_budget
    assert {k: v for k, v in short.model_dump().items() if k not in LOOSE_TRAIN_KEYS} == \
        {k: v for k, v in control.train.model_dump().items() if k not in LOOSE_TRAIN_KEYS}


def test_final_tasks_reach_the_control_but_not_the_variants_or_the_decay_branches(tiny_params):
    """``eval.final_tasks`` are scored where the headline is read: the base model and the final checkpoints
    of the main and control runs; variants and decay branches drop them and their ``task_limits``."""
    from cpt_utils.results import scores_final_tasks

    main = tiny_params.model_copy(update={"eval": tiny_params.eval.model_copy(update={
        "task_limits": {**tiny_params.eval.task_limits, "continuation_domain": 5}})})
    (task,) = main.eval.final_tasks  # tiny.yaml: one final task, sized by task_limits
    assert task in main.eval.task_limits and task not in main.eval.offline_tasks
    budget = main.train.token_budget
    control = derive(main, "control")
    assert control.eval.final_tasks == [task] and control.eval.task_limits == main.eval.task_limits
    assert scores_final_tasks(control, {"tokens": budget}) and not scores_final_tasks(control, {"tokens": budget // 2})
    assert scores_final_tasks(main, None) and scores_final_tasks(main, {"tokens": budget})
    assert not any(scores_final_tasks(main, {"tokens": t}) for t in main.train.milestones if t != budget)
    children = [derive(main, "variant", name) for name in main.variants]
    children.append(derive(main, "branch", checkpoint={"tokens": 3072, "tokens_per_step": 256, "path": "x",
                                                       "name": "tokens-000000003072"}))
    for child in children:
        kept = {t: n for t, n in main.eval.task_limits.items() if t != task}  # the every-checkpoint tasks' sizes
        assert child.eval.final_tasks == [] and child.eval.task_limits == kept and "continuation_domain" in kept
        assert child.eval.offline_tasks == main.eval.offline_tasks  # everything else unchanged (decay_branch_tasks)
        assert not scores_final_tasks(child, None) and not scores_final_tasks(child, {"tokens": child.train.token_budget})


# ------------------------------------------------------------------------------------- preprocessing
@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from cpt_utils.config import load_params
    from cpt_utils.paths import REPO_ROOT

    params = load_params(REPO_ROOT / "params" / "tiny.yaml")
    assert params.control is not None and params.control.corpus == "general"
    run = tmp_path_factory.mktemp("run")
    return params, run, prepare_data(params, run, progress=False)


def _ids(run, split: str) -> set[str]:
    return {d["id"] for d in PackedSplit(run / "data" / split).documents()}


def test_the_control_split_is_general_text_that_no_held_out_split_holds(prepared):
    params, run, manifest = prepared
    control = _ids(run, "control")
    assert control and manifest["control"]["documents"] == len(control)
    held_out = sorted(p.name for p in (run / "data").glob("val_*"))
    assert manifest["control"]["disjoint_from"] == held_out and "val_general" in held_out
    for split in held_out:
        assert not control & _ids(run, split), split
    assert not control & _ids(run, "train")  # no domain text in the control
    # the general corpus's training documents, the same token ids as the replay split (one tokenization
    # feeds both): identical when neither is capped
    assert control == _ids(run, "replay")
    assert manifest["splits"]["control"]["content_hash"] == manifest["splits"]["replay"]["content_hash"]


def test_adding_a_control_leaves_the_main_runs_data_identity_alone(prepared, tmp_path):
    params, run, manifest = prepared
    without = params.model_copy(update={"control": None})
    plain = prepare_data(without, tmp_path, progress=False)
    assert "control" not in plain["splits"] and plain["control"] is None
    assert plain["content_hash"] == manifest["content_hash"]  # the main run is not retrained for a control
    assert trajectory_fingerprint(without, tmp_path / "data") == trajectory_fingerprint(params, run / "data")
    # the control run's identity carries its split's content: other control text, another trajectory
    control = derive(params, "control")
    assert trajectory_fingerprint(control, run / "data") != trajectory_fingerprint(params, run / "data")
    assert training_data_identity(manifest, "control").endswith(manifest["splits"]["control"]["content_hash"])
    edited = {**manifest, "splits": {**manifest["splits"], "control": {"content_hash": "other"}}}
    assert training_data_identity(edited, "control") != training_data_identity(manifest, "control")
    with pytest.raises(Exception, match="no split 'control'"):
        training_data_identity(plain, "control")


def test_a_register_control_packs_the_documents_its_held_out_set_does_not_hold(tiny_params, tmp_path):
    data = tiny_params.model_dump()
    # beside tiny.yaml's news register (its replay_25 variant replays news)
    data["data"]["registers"]["chat"] = {"kind": "packaged_register", "register": "chat", "max_docs": 300}
    data["control"] = {"corpus": "chat"}
    params = validate_params(data)
    params.source_path = tiny_params.source_path
    manifest = prepare_data(params, tmp_path, progress=False)
    control, held = _ids(tmp_path, "control"), _ids(tmp_path, "val_chat")
    assert control and all(i.startswith("chitchat:") for i in control)
    assert not control & held and len(held) == params.preprocess.val_max_docs
    assert manifest["control"]["corpus"] == "chat" and manifest["control"]["documents"] == len(control)
    kept = manifest["registers"]["chat"]["filters"]["kept"] - manifest["registers"]["chat"]["dedup"]["exact_removed"] \
        - manifest["registers"]["chat"]["dedup"]["near_removed"]
    assert len(control) + len(held) == kept  # every kept conversation is in exactly one of the two


def test_an_interrupted_preprocessing_resumes_the_control_split_too(tmp_path, monkeypatch, tokenized):  # noqa: F811
    paths = _write_corpora(tmp_path)
    params = _params(paths).model_copy(update={"control": validate_params({"control": {"corpus": "general"}}).control})
    reference = prepare_data(params, tmp_path / "whole", progress=False)
    assert reference["splits"]["control"]["num_sequences"] > 0
    places = _crash_after(monkeypatch, 10_000)
    prepare_data(params, tmp_path / "count", progress=False)
    inside_general = [p["which"] for p in places].index("general") + 1
    _crash_after(monkeypatch, inside_general)
    with pytest.raises(Crash):
        prepare_data(params, tmp_path / "crash", progress=False)
    assert (tmp_path / "crash" / "data" / SNAPSHOT).is_file()
    monkeypatch.undo()
    resumed = prepare_data(params, tmp_path / "crash", progress=False)
    assert resumed["splits"]["control"] == reference["splits"]["control"]
    assert _data_files(tmp_path / "crash") == _data_files(tmp_path / "whole")


# ------------------------------------------------------------------------------------------ analysis
def _heldout(per_doc_loss, tokens=100):
    return {"loss": float(np.mean(per_doc_loss)), "loss_se": 0.01,
            "per_document": {"nats": [x * tokens for x in per_doc_loss], "tokens": [tokens] * len(per_doc_loss)}}


def _task(items, gold_bpb):
    return {"metric": "acc", "value": float(np.mean(items)), "stderr": 0.05, "n": len(items),
            "per_item": [int(x) for x in items], "per_item_gold_bpb": [float(x) for x in gold_bpb],
            "gold_bpb": float(np.mean(gold_bpb)), "gold_bpb_se": 0.01}


def _noise(rng, n: int, sd: float = 0.01) -> np.ndarray:
    """Per-document (per-item) noise of mean exactly 0: a comparison with no true change then has a
    delta of exactly 0 (p = 1) instead of a p-value drawn uniformly, so the known answers are exact."""
    e = rng.normal(0, sd, n)
    return e - e.mean()


def _ev(splits: dict, tasks: dict, name: str = "x", tokens: int = 0) -> dict:
    return {"checkpoint": name, "tokens": tokens, "time_s": 1.0,
            "perplexity": {s: _heldout(v) for s, v in splits.items()}, "tasks": tasks}


@pytest.fixture()
def three_runs():
    """Base, continued and control where the answer is known: the domain held-out loss falls 0.30 after
    the domain run and 0.10 after the control (domain-specific); the science task's gold bits/byte fall
    0.10 after both (generic); the general task's do not move (not detected)."""
    rng = np.random.default_rng(0)
    dom, gen = 3 + rng.normal(0, 0.3, 60), 3 + rng.normal(0, 0.3, 60)
    sci, other = 1.5 + rng.normal(0, 0.3, 200), 1.5 + rng.normal(0, 0.3, 200)
    items = rng.integers(0, 2, 200)
    noise = lambda n: _noise(rng, n)  # noqa: E731

    def run(dom_shift, sci_shift, name, tokens):
        return _ev({"val_domain": dom + dom_shift + noise(60), "val_general": gen + noise(60)},
                   {"sci": _task(items, sci + sci_shift + noise(200)), "gen": _task(items, other + noise(200))}, name, tokens)

    return run(0, 0, "base", 0), run(-0.30, -0.10, "tokens-1000", 1000), run(-0.10, -0.10, "tokens-1000", 1000)


def test_control_deltas_separate_domain_specific_from_generic_changes(three_runs):
    base, continued, control = three_runs
    groups = {"domain": ["sci"], "general": ["gen"]}
    rows = {(r["kind"], r["subject"]): r for r in readings.control_readings(base, continued, control, groups)}
    dom = rows[("held-out loss", "val_domain")]
    assert dom["continued − base"] == pytest.approx(-0.30, abs=0.01) and dom["control − base"] == pytest.approx(-0.10, abs=0.01)
    assert dom["continued − control"] == pytest.approx(-0.20, abs=0.01) and dom["reading"] == analysis.DOMAIN_SPECIFIC
    assert "domain-specific gain" in dom["reading words"] and dom["paired"]
    sci = rows[("gold bits/byte", "sci")]
    assert sci["continued − base p"] < 1e-6 and sci["continued − control p"] > 0.05 and sci["reading"] == analysis.GENERIC
    assert sci["reading words"].startswith("generic: the control gains as much")
    assert rows[("group gold bits/byte", "domain")]["reading"] == analysis.GENERIC
    gen = rows[("gold bits/byte", "gen")]
    assert gen["reading"] == analysis.NOT_DETECTED and "MDE ≈" in gen["reading words"]
    # the same answers on every item: the paired SE is 0, so the minimum detectable effect uses the
    # unpaired SE of two proportions, √(2·p(1 − p)/200) (compare_evals' fallback), at 80% power
    acc = rows[("accuracy", "sci")]
    mde = readings.mde_words(analysis.min_detectable_effect(math.sqrt(2 * acc["base"] * (1 - acc["base"]) / 200), 199))
    assert acc["reading"] == analysis.NOT_DETECTED and f"MDE ≈ {mde} vs base, {mde} vs control" in acc["reading words"]
    # paired per document: the documents' spread (SD 0.3, unpaired SE ≈ 0.055) cancels, the 0.01 noise remains
    assert dom["continued − control SE"] < 0.005


def test_effect_reading_needs_the_controls_own_change_to_call_a_change_generic():
    sig = lambda d: {"delta": d, "se": 0.01, "df": 50, "p": 1e-5, "significant": True}  # noqa: E731
    flat = {"delta": 0.001, "se": 0.01, "df": 50, "p": 0.9, "significant": False}
    assert readings.effect_reading(sig(0.2), sig(0.1), "lower")[1].startswith("domain-specific loss")
    assert readings.effect_reading(sig(0.2), flat, "lower", sig(0.2))[1].startswith("generic: the control loses as much")
    assert readings.effect_reading(sig(0.2), flat, "higher", sig(0.2))[1].startswith("generic: the control gains as much")
    # no difference from the control is not evidence that the control changed too: inconclusive, with the interval
    reading, words = readings.effect_reading(sig(0.2), flat, "lower", flat)
    half = student_t.ppf(0.975, 50) * 0.01
    assert reading == analysis.INCONCLUSIVE and f"95% interval {0.001 - half:+.3g} to {0.001 + half:+.3g}" in words
    assert readings.effect_reading(sig(0.2), flat, "lower", sig(-0.2))[0] == analysis.INCONCLUSIVE  # the other way
    assert readings.effect_reading(flat, flat, "lower")[0] == analysis.NOT_DETECTED
    few = {**flat, "testable": False, "n": 8}
    assert readings.effect_reading(sig(0.2), few, "lower") == (analysis.CANNOT_TEST, "cannot be tested (8 documents)")


def test_a_held_out_set_too_small_to_test_shows_no_p_value(tmp_path):
    """Eight documents (< MIN_DOCUMENTS): the change is shown, its p is replaced by the reason."""
    rng = np.random.default_rng(3)
    docs = 3 + rng.normal(0, 0.3, 8)
    base = _ev({"val_domain": docs}, {}, "base", 0)
    final = _ev({"val_domain": docs - 0.5 + _noise(rng, 8)}, {}, "tokens-1000", 1000)
    _write_run(tmp_path, {"base": base, "tokens-1000": final})
    table = headline.headline_table(tmp_path).set_index("measure")
    assert table.loc["val_domain loss (nats/token)", "p"] == "cannot be tested (8 documents)"
    assert table.loc["val_domain loss (nats/token)", "change ± SE"].startswith("-0.5")


def _write_run(run, evals: dict[str, dict]) -> None:
    (run / "evals").mkdir(parents=True, exist_ok=True)
    for name, ev in evals.items():
        (run / "evals" / f"{name}.json").write_text(json.dumps({**ev, "checkpoint": name}, default=list))


def test_compare_to_control_and_the_headline_read_the_run_folders(three_runs, tmp_path):
    base, continued, control = three_runs
    groups = {"domain": ["sci"], "general": ["gen"]}
    _write_run(tmp_path, {"base": base, "tokens-1000": continued})
    assert headline.compare_to_control(tmp_path, groups) == []  # no control run yet
    plain = headline.headline_table(tmp_path, groups)
    assert "vs control ± SE" not in plain.columns
    _write_run(tmp_path / "control", {"tokens-1000": control})
    rows = headline.compare_to_control(tmp_path, groups)
    assert {r["checkpoint"] for r in rows} == {"tokens-1000"} and {r["tokens"] for r in rows} == {1000}
    table = headline.headline_table(tmp_path, groups)
    assert {"control − base ± SE", "vs control ± SE", "p vs control", "reading"} <= set(table.columns)
    by = dict(zip(table.measure, table.reading))
    assert by["val_domain loss (nats/token)"].startswith("domain-specific gain")
    assert by["sci (gold bits/byte)"].startswith("generic")
    assert by["domain group: mean gold bits/byte over 1 tasks"].startswith("generic")
    assert headline.headline_table(tmp_path, groups, control=False).columns.tolist() == plain.columns.tolist()
    # the notebook's sentences read from the same rows
    text = analysis_report.control_narrative(rows, "general")
    assert "**Domain-specific gain**" in text and "val_domain loss continued − control -0.2" in text
    assert "**Generic (the control gains as much)**" in text and "sci (gold bits/byte)" in text
    assert "**Not detected**" in text and "gen (gold bits/byte)" in text
    assert "No control run" in analysis_report.control_narrative([], "general")
    assert list(analysis_report.control_table(rows).columns)[-1] == "reading"


def test_a_control_at_other_checkpoints_is_not_compared(three_runs, tmp_path):
    base, continued, control = three_runs
    _write_run(tmp_path, {"base": base, "tokens-1000": continued})
    _write_run(tmp_path / "control", {"tokens-2000": {**control, "tokens": 2000}})
    assert headline.compare_to_control(tmp_path) == []
    assert "reading" not in headline.headline_table(tmp_path).columns


# ------------------------------------------------------------------------------ the recommendation
@pytest.fixture()
def sweep():
    """A base and four variants at the same budget, sharing documents and items, with known effects:
    ``no_mitigation`` forgets 0.20 nats on general text and 0.30 on chat and gains 0.40 on the domain;
    ``replay`` forgets 0.05/0.10 at the same domain gain; ``replay_more`` forgets 0.05/0.102 (not
    separable from replay); ``low_lr`` forgets 0.10/0.15 but gains only 0.20 on the domain."""
    rng = np.random.default_rng(1)
    docs = {s: 3 + rng.normal(0, 0.4, 80) for s in ("val_domain", "val_general", "val_chat")}
    sci = 1.5 + rng.normal(0, 0.3, 300)
    items = rng.integers(0, 2, 300)

    def run(dom, gen, chat, sci_shift=0.0, flips=0):
        it = items.copy()
        it[:flips] = 0
        shifts = {"val_domain": dom, "val_general": gen, "val_chat": chat}
        return _ev({s: docs[s] + shifts[s] + _noise(rng, 80) for s in docs},
                   {"sci": _task(it, sci + sci_shift + _noise(rng, 300))})

    base = run(0, 0, 0)
    return base, {"no_mitigation": run(-0.40, 0.20, 0.30, -0.10), "replay": run(-0.40, 0.05, 0.10, -0.10),
                  "replay_more": run(-0.40, 0.05, 0.102, -0.10), "low_lr": run(-0.20, 0.10, 0.15, -0.02, flips=40)}


def test_recommend_mitigation_names_the_variant_its_cost_and_what_it_cannot_separate(sweep):
    base, variants = sweep
    text, table = readings.recommend_mitigation(base, variants, "no_mitigation", {"domain": ["sci"]})
    assert "rises by +0.2500" in text and "worst: val_chat" in text
    assert "**Recommended: `replay`**" in text and "reduces forgetting by 0.1" in text
    assert "no detected cost in domain gain" in text
    assert "cannot separate it from `replay_more`" in text
    assert "`low_lr` also reduces forgetting but at a detected domain cost" in text
    rows = table.set_index("variant")
    assert rows.loc["no_mitigation", "reading"] == "reference"
    assert set(rows.loc[["replay", "replay_more", "low_lr"], "reading"]) == {"reduces forgetting"}
    assert rows.loc["low_lr", "domain cost"].startswith("held-out domain loss +0.2")
    assert "domain-group gold bits/byte" in rows.loc["low_lr", "domain cost"]
    assert rows.loc["replay", "domain cost"] == "none detected"
    assert rows.loc["no_mitigation", "forgetting vs base (nats/token)"].startswith("+0.25")
    # the forgetting difference is paired over documents: far tighter than the spread of the documents
    change = analysis.mean_heldout_change(variants["no_mitigation"], variants["replay"], ["val_general", "val_chat"])
    assert change["delta"] == pytest.approx(-0.175, abs=0.01) and change["se"] < 0.005 and change["worst"] == "val_general"


def test_recommend_mitigation_says_when_the_data_cannot_separate_the_variants(sweep):
    base, variants = sweep
    alike = {"no_mitigation": variants["no_mitigation"], "twin": variants["no_mitigation"]}
    text, table = readings.recommend_mitigation(base, alike, "no_mitigation", {"domain": ["sci"]})
    assert "No variant reduces forgetting detectably" in text and "the data cannot separate the variants" in text
    assert "none is recommended" in text and list(table.reading) == ["reference", "not separable from the reference"]
    # no forgetting at all: said so, with the detectable change
    calm = {"no_mitigation": variants["replay"], "other": variants["replay_more"]}
    flat_base = {**base, "perplexity": {**base["perplexity"], **{s: variants["replay"]["perplexity"][s]
                                                                  for s in ("val_general", "val_chat")}}}
    text, _ = readings.recommend_mitigation(flat_base, calm, "no_mitigation")
    assert "no forgetting is detected" in text and "MDE at 80% power ≈" in text
    # more forgetting than the reference is named
    text, _ = readings.recommend_mitigation(base, {"replay": variants["replay"], "worse": variants["no_mitigation"]}, "replay")
    assert "`worse` forgets *more* than the reference" in text


def test_recommend_mitigation_needs_variants_and_a_reference(sweep):
    base, variants = sweep
    assert "No variants are declared" in readings.recommend_mitigation(base, {}, None)[0]
    text, table = readings.recommend_mitigation(base, {"replay": variants["replay"]}, None)
    assert "declare `no_mitigation`" in text and table.empty
    assert "'no_mitigation' has no evaluation" in readings.recommend_mitigation(base, {"replay": variants["replay"]},
                                                                                "no_mitigation")[0]
