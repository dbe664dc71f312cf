"""Results belong to weights: a stored evaluation is read only while the weights, data, code and resolved
precision it was made from still exist unchanged (DESIGN §9). On the tiny model: a retrained run never
shows the old model's scores; the evaluation fingerprint moves with what changes the numbers; a base
evaluated in another precision is neither reused nor paired; the contamination report rescans a split
added to training; the model card says what was trained on and where the control lives."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from cpt_utils import analysis, results
from cpt_utils.results import store
from cpt_utils.checkpointing import list_checkpoints
from cpt_utils.code_identity import module_file
from cpt_utils.evaluate import _base_cache, evaluate_run

MILESTONES = [256, 512, 768, 1024]  # 4 steps of 4 × 64 tokens, a checkpoint at each


def _fast(params, **train):
    """The tiny recipe, held-out loss only (no tasks), no in-loop evaluation or decay branches."""
    return params.model_copy(update={
        "eval": params.eval.model_copy(update={"offline_tasks": [], "task_groups": {}, "perplexity_max_sequences": 4}),
        "train": params.train.model_copy(update={"token_budget": 1024, "milestones": MILESTONES, "eval_every_tokens": None,
                                                 "decay_branch_fraction": 0.0, **train})})


@pytest.fixture()
def retrained(tiny_params, data_dir, tmp_path):
    """The hand check of issue 21: a run evaluated at 4 milestones, then retrained with
    ``resume: never`` and half the budget, *not* evaluated again. Returns the run, the parameters of
    the retrained run, and the old results (by name) as they were stored."""
    from cpt_utils.train import train

    params, run = _fast(tiny_params), tmp_path / "run"
    train(params, run, data_dir=data_dir, progress=False)
    evaluate_run(params, run, data_dir=data_dir, progress=False)
    old = {p.stem: json.loads(p.read_text()) for p in (run / "evals").glob("*.json")}
    (run / "branches" / "tokens-000000000512").mkdir(parents=True)  # a decay branch of the old model
    again = _fast(tiny_params, resume="never", token_budget=512)
    train(again, run, data_dir=data_dir, progress=False)
    return run, again, old


def test_a_retrained_run_never_shows_the_old_models_results(retrained, data_dir):
    run, again, old = retrained
    assert set(old) == {"base", *(f"tokens-{t:012d}" for t in MILESTONES)}
    # resume: never removed the old model's results and branches, and kept the base model's
    assert [p.name for p in (run / "evals").glob("*.json")] == ["base.json"]
    assert not (run / "branches").exists()
    assert list(results.load_evals(run)) == ["base"]
    assert results.final_eval(run)["checkpoint"] == "base"
    # a result of the old model put back (copied from elsewhere, or written before the fix) is stale:
    # same checkpoint name, other weights; a milestone that no longer exists is stale too
    for name in ("tokens-000000000512", "tokens-000000001024"):
        results.write_result(run, name, old[name])
    reasons = {n: results.stale_reason(old[n], run) for n in ("tokens-000000000512", "tokens-000000001024")}
    assert "retrained" in reasons["tokens-000000000512"] and "no longer exists" in reasons["tokens-000000001024"]
    assert list(results.load_evals(run)) == ["base"]
    assert set(results.results_table(run).checkpoint) == {"base"}
    evaluate_run(again, run, data_dir=data_dir, progress=False)
    evals = results.load_evals(run)
    assert list(evals) == ["base", "tokens-000000000256", "tokens-000000000512"]
    final = results.final_eval(run)
    assert final["checkpoint"] == "tokens-000000000512" and final["tokens"] == 512
    assert final["weights"] == results.weights_identity(list_checkpoints(run)[-1], "")
    assert final["weights"] != old["tokens-000000000512"]["weights"]  # the same name, a new model
    assert set(results.results_table(run).tokens) == {0, 256, 512}


def test_a_variant_keeps_a_borrowed_result_only_while_the_main_checkpoint_exists(retrained, data_dir):
    """A variant that is the main recipe records the main run's result (``same_as``): it is judged
    against the main run's checkpoints, not the variant's (which has none)."""
    run, again, _ = retrained
    evaluate_run(again, run, data_dir=data_dir, progress=False)
    final = results.final_eval(run)
    vdir = run / "variants" / "no_mitigation"
    results.write_result(vdir, final["checkpoint"], final | {"same_as": "main run"})
    assert results.final_eval(vdir)["checkpoint"] == final["checkpoint"]
    shutil.rmtree(run / "checkpoints" / final["checkpoint"])
    assert results.final_eval(vdir) is None
    assert results.load_variant_evals(run) == {}


# ------------------------------------------------------------------------------------ the fingerprint
def test_the_fingerprint_keys_on_the_resolved_precision(tiny_params, data_dir, monkeypatch):
    """``auto`` scores in bf16 on a bf16-native CPU and in fp32 elsewhere: the key is what it resolves
    to, not the word ``auto``."""
    auto = results.eval_fingerprint(tiny_params, data_dir)  # tiny.yaml: precision auto
    as_ = {p: results.eval_fingerprint(tiny_params.model_copy(update={
        "train": tiny_params.train.model_copy(update={"precision": p})}), data_dir) for p in ("fp32", "bf16")}
    assert as_["fp32"] != as_["bf16"]
    monkeypatch.setenv("CPT_CPU_BF16", "native")
    assert results.eval_fingerprint(tiny_params, data_dir) == as_["bf16"]
    monkeypatch.setenv("CPT_CPU_BF16", "emulated")
    assert results.eval_fingerprint(tiny_params, data_dir) == as_["fp32"]
    assert auto in as_.values()


def test_the_fingerprint_keys_on_per_document_attention_and_the_architecture(tiny_params, data_dir):
    key = results.eval_fingerprint(tiny_params, data_dir)
    joined = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={"per_document_attention": False})})
    assert results.eval_fingerprint(joined, data_dir) != key
    eager = tiny_params.model_copy(update={"model": tiny_params.model.model_copy(update={"attn_implementation": "eager"})})
    assert results.eval_fingerprint(eager, data_dir) != key


def test_the_fingerprint_keys_on_a_local_model_files_content(tiny_params, data_dir, tmp_path, monkeypatch):
    """The same GGUF path with other bytes is another base model; the hash is cached by path, mtime and
    size, so an unchanged file is not read again."""
    monkeypatch.setenv("CPT_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(200)))
    params = tiny_params.model_copy(update={"model": tiny_params.model.model_copy(update={"source": "gguf", "name": str(gguf)})})
    first = results.eval_fingerprint(params, data_dir)
    assert results.eval_fingerprint(params, data_dir) == first
    assert len(json.loads((tmp_path / "cache" / "file-hashes.json").read_text())) == 1
    gguf.write_bytes(b"GGUF" + bytes(range(1, 201)))  # same name, same size, other weights
    assert results.eval_fingerprint(params, data_dir) != first


@pytest.fixture()
def code_copy(tmp_path, monkeypatch):
    """A copy of the package that ``store`` hashes instead of the real one."""
    code = tmp_path / "cpt_utils"
    shutil.copytree(results.HERE, code, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(store, "HERE", code)
    return code


# the modules an evaluation names, and helpers it reaches only through their imports (attention: the
# scorer's mask context; task_build and tasks/sampling: which items; checkpointing: which weights load)
@pytest.mark.parametrize("module", ["modeling.py", "packing.py", "attention.py", "task_build.py",
                                    "tasks/sampling.py", "checkpointing.py"])
def test_the_fingerprint_keys_on_the_code_that_computes_the_numbers(tiny_params, data_dir, code_copy, module):
    before = results.eval_fingerprint(tiny_params, data_dir)
    with open(code_copy / module, "a") as fh:
        fh.write("\n_CHANGED_HOW_NUMBERS_ARE_COMPUTED = True\n")
    assert results.eval_fingerprint(tiny_params, data_dir) != before


def test_a_docstring_a_comment_or_a_reflow_keeps_the_fingerprint(tiny_params, data_dir, code_copy):
    """Rewording what code says of itself must not stale hours of stored evaluations."""
    before = results.eval_fingerprint(tiny_params, data_dir)
    scoring = code_copy / "scoring.py"
    text = scoring.read_text()
    assert text.startswith('"""Fast multiple-choice scoring')
    text = text.replace('"""Fast multiple-choice scoring', '"""Reworded: fast multiple-choice scoring', 1)
    text = text.replace('        """Run one padded batch;',
                        '        # a new comment\n        """Run one   padded batch;', 1)
    text = text.replace("width = len(batch[0])\n", "width = len(\n            batch[0])\n", 1)
    scoring.write_text(text)
    assert results.eval_fingerprint(tiny_params, data_dir) == before
    scoring.write_text(text.replace("width = len(\n            batch[0])\n", "width = len(batch[-1])\n", 1))
    assert results.eval_fingerprint(tiny_params, data_dir) != before


def test_a_module_the_scorer_comes_to_import_is_hashed_with_it(tiny_params, data_dir, code_copy):
    """No list to keep up to date: a new helper imported on the evaluation's path is followed."""
    (code_copy / "new_helper.py").write_text("SCALE = 1.0\n")
    scoring = code_copy / "scoring.py"
    imports = "from .precision import fp32_logits\n"
    scoring.write_text(scoring.read_text().replace(imports, imports + "from .new_helper import SCALE\n", 1))
    assert "new_helper" in store.evaluation_modules()
    before = results.eval_fingerprint(tiny_params, data_dir)
    (code_copy / "new_helper.py").write_text("SCALE = 2.0\n")
    assert results.eval_fingerprint(tiny_params, data_dir) != before


def test_bookkeeping_modules_exist_and_are_not_hashed():
    """A renamed module must not slip out of the bookkeeping list into the hash or the other way round."""
    assert all(module_file(store.HERE, name) for name in store.BOOKKEEPING)
    hashed = store.evaluation_modules()
    assert not {name.split(".")[0] for name in hashed} & store.BOOKKEEPING
    assert {"evaluate", "scoring", "perplexity", "attention", "task_build", "tasks.sampling"} <= set(hashed)


def test_a_new_asset_pin_stales_results_and_rebuilds_the_task_items(tiny_params, data_dir, monkeypatch):
    """The packaged model and the items come from pinned distributions: another pin under the same name
    is other weights or other items."""
    from cpt_utils import assets, task_build

    manifest = json.loads((data_dir / "manifest.json").read_text())
    before = results.eval_fingerprint(tiny_params, data_dir), task_build._build_key(tiny_params, manifest)
    model = assets.ASSETS["smollm2-135m-instruct"]
    monkeypatch.setitem(assets.ASSETS, model.name, dataclasses.replace(model, version="9.9.9"))
    after = results.eval_fingerprint(tiny_params, data_dir), task_build._build_key(tiny_params, manifest)
    assert after[0] != before[0] and after[1] != before[1]
    assert "assets" in results.evaluation_settings(tiny_params, data_dir)


def test_the_fingerprint_keys_on_library_versions(tiny_params, data_dir, monkeypatch):
    before = results.eval_fingerprint(tiny_params, data_dir)
    versions = results.library_versions()
    assert versions["torch"] and versions["transformers"]
    monkeypatch.setattr(store, "library_versions", lambda: {**versions, "transformers": "0.0.0"})
    assert results.eval_fingerprint(tiny_params, data_dir) != before


# ---------------------------------------------------------------------------------- precision: base
def test_a_base_cached_in_another_precision_is_not_reused(tiny_params, data_dir, tmp_path, monkeypatch):
    """A run whose ``auto`` resolves to bf16 gets a base evaluated in bf16: neither the fp32 base of an
    AVX2 machine, nor a cache entry that claims this key but holds fp32 scores, is reused."""
    params = _fast(tiny_params)
    monkeypatch.setenv("CPT_CPU_BF16", "emulated")  # auto -> fp32
    evaluate_run(params, tmp_path / "avx2", data_dir=data_dir, progress=False)
    fp32 = json.loads((tmp_path / "avx2" / "evals" / "base.json").read_text())
    assert fp32["precision"] == "fp32" and fp32["evaluated_with"]["precision"] == "fp32"
    monkeypatch.setenv("CPT_CPU_BF16", "native")  # auto -> bf16
    key = results.eval_fingerprint(params, data_dir, fp32["weights"], final=results.scores_final_tasks(params, None))
    assert key != fp32["eval_fingerprint"]
    cached = _base_cache(params, data_dir, key)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({**fp32, "eval_fingerprint": key}))  # mislabelled: fp32 scores under the bf16 key
    evaluate_run(params, tmp_path / "amx", data_dir=data_dir, progress=False)
    bf16 = json.loads((tmp_path / "amx" / "evals" / "base.json").read_text())
    assert bf16["precision"] == "bf16" and bf16["eval_fingerprint"] == key
    assert bf16["perplexity"]["val_domain"]["loss"] != fp32["perplexity"]["val_domain"]["loss"]
    with pytest.raises(results.IncomparableResults):
        analysis.compare_evals(fp32, bf16)


def _result(precision: str, name: str = "base") -> dict:
    return {"checkpoint": name, "tokens": 0, "precision": precision, "perplexity": {}, "tasks": {},
            "evaluated_with": {"precision": precision, "code": "abc"}}


def test_pairing_fp32_with_bf16_is_refused_with_one_line():
    results.check_comparable(_result("fp32"), _result("fp32", "tokens-1"))
    with pytest.raises(results.IncomparableResults) as refused:
        analysis.compare_evals(_result("fp32"), _result("bf16", "tokens-1"))
    message = str(refused.value)
    assert "\n" not in message and "precision" in message and "fp32" in message and "bf16" in message
    assert "code" not in message  # names only what differs
    # results without the record (older files) still differ in their top-level precision
    with pytest.raises(results.IncomparableResults):
        results.check_comparable({"checkpoint": "base", "precision": "fp32"}, {"checkpoint": "x", "precision": "bf16"})


# ------------------------------------------------------------------------------------ contamination
def _split(data: Path, name: str, manifest: dict, content: str) -> None:
    (data / name).mkdir(parents=True, exist_ok=True)
    (data / name / "split.json").write_text("{}")
    manifest.setdefault("splits", {})[name] = {"content_hash": content}
    (data / "manifest.json").write_text(json.dumps(manifest))


def test_the_contamination_key_covers_every_split_trained_on(tiny_params, tmp_path):
    from cpt_utils.contamination import contamination_key, training_splits

    data, manifest = tmp_path / "data", {"content_hash": "c0"}
    for name in ("train", "replay", "val_domain"):
        _split(data, name, manifest, f"h-{name}")
    keys = [contamination_key(tiny_params, data)]
    _split(data, "control", manifest, "h-control")
    keys.append(contamination_key(tiny_params, data))
    _split(data, "replay_news", manifest, "h-news")
    keys.append(contamination_key(tiny_params, data))
    _split(data, "replay_news", manifest, "h-news-2")  # the register's replay text changed
    keys.append(contamination_key(tiny_params, data))
    assert len(set(keys)) == 4
    assert training_splits(data) == ["train", "replay", "control", "replay_news"]


# --------------------------------------------------------------------------------------- model card
def test_the_card_lists_replayed_registers_as_trained_on(data_dir, tmp_path):
    from cpt_utils.model_card import data_rows, trained_splits

    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert "replay_news" in manifest["splits"]
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "manifest.json").write_text(json.dumps(manifest))
    mixture = {"train": {"replay_fraction": 0.25, "replay_mixture": {"general": 0.5, "news": 0.5}}}
    assert trained_splits(mixture, manifest) == pytest.approx({"train": 0.75, "replay": 0.125, "replay_news": 0.125})
    rows = {r["corpus"]: r for r in data_rows(run, mixture)}
    assert rows["register news"]["trained_on"] and rows["register news"]["trained_splits"] == ["replay_news"]
    assert "replayed at" in rows["register news"]["role"] and "held-out only" not in rows["register news"]["role"]
    assert rows["register news"]["train_tokens"] == manifest["splits"]["replay_news"]["num_tokens"]
    # replay_fraction alone does not claim a general replay the mixture does not hold
    news_only = {"train": {"replay_fraction": 0.25, "replay_mixture": {"news": 1.0}}}
    rows = {r["corpus"]: r for r in data_rows(run, news_only)}
    assert not rows["general"]["trained_on"] and rows["register news"]["trained_on"]
    rows = {r["corpus"]: r for r in data_rows(run, {"train": {}})}
    assert rows["register news"]["role"] == "held-out (forgetting) only" and not rows["general"]["trained_on"]
    control = {"train": {"train_split": "control"}, "control": {"corpus": "general"}}
    rows = {r["corpus"]: r for r in data_rows(run, control)}
    assert rows["general"]["trained_on"] and not rows["domain"]["trained_on"]


def test_the_card_names_the_controls_real_folder_and_skips_a_stale_control(tmp_path):
    from cpt_utils.model_card import _control
    from cpt_utils.results import control_dir

    run = tmp_path / "run"
    folder = control_dir(run) / "checkpoints" / "tokens-000000001024"
    folder.mkdir(parents=True)
    info = {"name": folder.name, "tokens": 1024, "step": 4, "trajectory_fingerprint": "t", "time": 1.0}
    (folder / "checkpoint.json").write_text(json.dumps(info))
    ev = {"checkpoint": folder.name, "tokens": 1024, "perplexity": {}, "tasks": {},
          "weights": results.weights_identity(info, "")}
    results.write_result(control_dir(run), folder.name, ev)
    assert _control(run, 1024) == ("control", ev)
    (folder / "checkpoint.json").write_text(json.dumps({**info, "time": 2.0}))  # the control was retrained
    assert _control(run, 1024) is None


def test_trackers_never_receive_the_old_models_benchmark(retrained, tmp_path):
    """The final checkpoint of the retrained run has the old final's name; the old result put back in
    its place is stale, so nothing is sent to the trackers."""
    pytest.importorskip("tensorboard", reason="tensorboard is the optional [tracking] extra")
    from cpt_utils.tracking import log_benchmark

    run, again, old = retrained
    final = list_checkpoints(run)[-1]
    assert final["final"] and final["name"] == "tokens-000000000512"
    results.write_result(run, final["name"], old[final["name"]])
    tracked = again.model_copy(update={"run_name": "stale", "train": again.train.model_copy(update={"trackers": ["tensorboard"]})})
    assert log_benchmark(tracked, run) is None


# ------------------------------------------------------------------------------------- final tasks
FINAL = "mmlu_offline_domain_cloze"


def _with_final(params, n: int):
    """``_fast`` with one MMLU task scored only at the base model and the final checkpoint, ``n`` items."""
    return params.model_copy(update={"eval": params.eval.model_copy(update={
        "final_tasks": [FINAL], "task_limits": {FINAL: n}, "limit": 3})})


def _stored(run) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((run / "evals").glob("*.json"))}


@pytest.fixture()
def final_run(tiny_params, data_dir, tmp_path):
    """A run evaluated at 4 milestones with a final task (4 items)."""
    from cpt_utils.train import train

    params, run = _with_final(_fast(tiny_params), 4), tmp_path / "run"
    train(params, run, data_dir=data_dir, progress=False)
    evaluate_run(params, run, data_dir=data_dir, progress=False)
    return params, run


def test_final_tasks_are_scored_at_the_base_model_and_the_final_checkpoint_only(final_run, data_dir):
    from cpt_utils.config import derive

    params, run = final_run
    final = f"tokens-{params.train.token_budget:012d}"
    stored = _stored(run)
    assert set(stored) == {"base", *(f"tokens-{t:012d}" for t in MILESTONES)}
    for name, r in stored.items():
        headline_point = name in ("base", final)
        assert set(r["tasks"]) == ({FINAL} if headline_point else set()), name
        assert ("final_tasks" in r["evaluated_with"]) == headline_point, name
    for name in ("base", final):
        t = stored[name]["tasks"][FINAL]
        assert t["n"] == 4 and stored[name]["evaluated_with"]["final_tasks"] == {FINAL: 4}
        assert t["group"] == "domain" and len(t["item_subjects"]) == 4 and all(t["item_subjects"])
    assert stored["base"]["tasks"][FINAL]["item_subjects"] == stored[final]["tasks"][FINAL]["item_subjects"]  # paired
    # nothing is stale, a milestone pairs with the base model, and the final checkpoint is compared on the task
    now = results.evaluation_settings(params, data_dir, final=True)
    assert all(results.stale_reason(r, run, settings=now) is None for r in stored.values())
    assert list(results.load_evals(run)) == list(stored)
    assert not {row["measure"] for row in analysis.compare_evals(stored["base"], stored["tokens-000000000256"])
                if FINAL in row["measure"]}
    assert any(FINAL in row["measure"] for row in analysis.compare_evals(stored["base"], stored[final]))
    assert len(analysis.per_subject_deltas(stored["base"], stored[final], FINAL)) >= 1
    # a variant that is the main recipe borrows the main run's final result, without the final tasks
    from cpt_utils.config.schema import VariantParams

    with_variant = params.model_copy(update={
        "variants": {"same": VariantParams(description="the main recipe")},
        "train": params.train.model_copy(update={"decay_branch_fraction": None})})  # loose: same run
    borrowed = results.same_as_main(with_variant, derive(with_variant, "variant", "same"), run, data_dir)
    assert borrowed["checkpoint"] == final and FINAL not in borrowed["tasks"]
    assert "final_tasks" not in borrowed["evaluated_with"]


def test_changing_the_final_tasks_evaluates_only_the_base_model_and_the_final_checkpoint(final_run, data_dir, capsys):
    params, run = final_run
    final = f"tokens-{params.train.token_budget:012d}"
    before = _stored(run)
    capsys.readouterr()
    evaluate_run(params, run, data_dir=data_dir, progress=True)
    assert "evaluating" not in capsys.readouterr().out  # unchanged: nothing to do
    resized = _with_final(params, 6)
    evaluate_run(resized, run, data_dir=data_dir, progress=True)
    out = capsys.readouterr().out
    assert f"evaluating {final}" in out and out.count("evaluating tokens-") == 1, out
    after = _stored(run)
    assert after["base"]["tasks"][FINAL]["n"] == after[final]["tasks"][FINAL]["n"] == 6
    for t in MILESTONES[:-1]:  # the milestones' results are untouched: they never had the final tasks
        assert after[f"tokens-{t:012d}"] == before[f"tokens-{t:012d}"]
    # back to 4 items: the base model's cached evaluation is keyed on its final tasks, so the 4-item one is reused
    evaluate_run(params, run, data_dir=data_dir, progress=True)
    out = capsys.readouterr().out
    assert "base model: reusing cached evaluation" in out and out.count("evaluating tokens-") == 1, out
    assert _stored(run)["base"]["tasks"][FINAL]["n"] == 4
    cached = _base_cache(params, data_dir, results.eval_fingerprint(params, data_dir, before["base"]["weights"], final=True))
    assert json.loads(cached.read_text())["tasks"][FINAL]["n"] == 4
    # dropping the final tasks: the final checkpoint is evaluated again without them, the milestones are not
    dropped = params.model_copy(update={"eval": params.eval.model_copy(update={"final_tasks": [], "task_limits": {}})})
    evaluate_run(dropped, run, data_dir=data_dir, progress=True)
    out = capsys.readouterr().out
    assert out.count("evaluating tokens-") == 1 and _stored(run)[final]["tasks"] == {}, out


@pytest.mark.parametrize("module", ["task_build.py", "packing.py", "tasks/sampling.py", "tasks/_mmlu_cloze.yaml"])
def test_the_task_items_are_rebuilt_when_the_code_that_builds_them_changes(tiny_params, data_dir, tmp_path,
                                                                          monkeypatch, module):
    """The held-out rows the continuation items come from are read by ``packing``, outside the tasks folder:
    a key over that folder's text alone kept the old items after a change there."""
    from cpt_utils import task_build

    code = tmp_path / "cpt_utils"
    shutil.copytree(task_build.PACKAGE, code, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(task_build, "PACKAGE", code)
    monkeypatch.setattr(task_build, "HERE", code / "tasks")
    manifest = json.loads((data_dir / "manifest.json").read_text())
    before = task_build._build_key(tiny_params, manifest)
    target = code / module
    if module.endswith(".py"):  # rewording the docstring keeps the items; code that runs rebuilds them
        assert target.read_text().startswith('"""')
        target.write_text(target.read_text().replace('"""', '"""Reworded. ', 1))
        assert task_build._build_key(tiny_params, manifest) == before
    with open(target, "a") as fh:
        fh.write("\n_CHANGED_HOW_ITEMS_ARE_BUILT = True\n" if module.endswith(".py") else "\n# changed\n")
    assert task_build._build_key(tiny_params, manifest) != before
