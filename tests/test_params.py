"""The schema: every shipped parameter file validates; wrong input names the key and what is allowed."""

from __future__ import annotations

import pytest
import yaml

from cpt_utils.params import (
    ExperimentParams, ParamsError, load_params, save_resolved, step_fingerprint, validate_params,
)
from cpt_utils.paths import REPO_ROOT

PARAM_FILES = sorted((REPO_ROOT / "params").glob("*.yaml"))


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_shipped_parameter_files_validate(path):
    params = load_params(path)
    assert params.run_name == path.stem
    assert params.source_path == str(path.resolve())


def test_paper_settings_are_the_gpu_hub_setting():
    p400, p1b = load_params(REPO_ROOT / "params/paper-400M.yaml"), load_params(REPO_ROOT / "params/paper-1B.yaml")
    for p in (p400, p1b):
        assert p.offline is False and p.model.source == "hub" and p.preprocess.seq_len == 2048
        assert p.data.domain.kind == "hub" and "fineweb-edu" in p.data.domain.dataset
    assert p400.train.token_budget == 400_000_000 and p1b.train.token_budget == 1_000_000_000
    # extends: the 1B file only overrides; everything else comes from the 400M file
    assert p1b.train.lr == p400.train.lr and p1b.eval.hub_tasks == p400.eval.hub_tasks


def test_unknown_key_names_path_and_allowed_keys():
    with pytest.raises(ParamsError) as err:
        validate_params({"train": {"lr": 1e-4, "learning_rate": 1e-4}})
    msg = str(err.value)
    assert "train.learning_rate: unknown key" in msg
    assert "lr" in msg and "warmup_tokens" in msg  # the allowed keys are listed


def test_all_problems_reported_at_once():
    with pytest.raises(ParamsError) as err:
        validate_params({"model": {"source": "huggingface"}, "train": {"lr": -1, "schedule": "linear"},
                         "preprocess": {"seq_len": "long"}})
    msg = str(err.value)
    assert "4 problems" in msg
    assert "model.source" in msg and "'packaged', 'hub', 'local', 'gguf' or 'tiny'" in msg
    assert "train.lr" in msg and "greater than 0" in msg
    assert "train.schedule" in msg and "'cosine', 'wsd' or 'constant'" in msg
    assert "preprocess.seq_len" in msg


def test_corpus_topics_are_checked_against_the_packaged_corpus():
    with pytest.raises(ParamsError, match=r"data\.general.*unknown topic\(s\) \['Sport'\]; allowed: .*Mathematics"):
        validate_params({"data": {"general": {"topics": ["Sport"]}}})


def test_files_corpus_keys_are_checked():
    with pytest.raises(ParamsError, match=r"data\.domain\.files\.path: unknown key; allowed here: .*paths"):
        validate_params({"data": {"domain": {"kind": "files", "paths": ["x.jsonl"], "path": "x"}}})


def test_offline_forbids_hub_sources():
    with pytest.raises(ParamsError, match="needs the internet"):
        validate_params({"offline": True, "model": {"source": "hub", "name": "HuggingFaceTB/SmolLM2-135M"}})


def test_variant_overrides_are_validated_and_resolved():
    with pytest.raises(ParamsError, match="variant 'bad'.*replay_fraction"):
        validate_params({"variants": {"bad": {"train": {"replay_fraction": 1.5}}}})
    params = validate_params({"run_name": "r", "train": {"lr": 3e-4}, "variants": {"low_lr": {"train": {"lr": 1e-5}}}})
    variant = params.variant("low_lr")
    assert variant.train.lr == 1e-5 and variant.model == params.model and variant.run_name == "r.low_lr"
    with pytest.raises(ParamsError, match="no such variant"):
        params.variant("nope")


def test_extends_merges_and_detects_cycles(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"train": {"lr": 1e-3, "micro_batch_size": 2}}))
    (tmp_path / "child.yaml").write_text(yaml.safe_dump({"extends": "base.yaml", "train": {"lr": 5e-4}}))
    child = load_params(tmp_path / "child.yaml")
    assert child.train.lr == 5e-4 and child.train.micro_batch_size == 2 and child.run_name == "child"
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ParamsError, match="cycle"):
        load_params(tmp_path / "a.yaml")


def test_bad_yaml_and_missing_file_are_clear(tmp_path):
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ParamsError, match="top level must be a mapping"):
        load_params(tmp_path / "list.yaml")
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_step_fingerprint_depends_only_on_the_steps_inputs():
    base = ExperimentParams()
    more_training = validate_params({"train": {"token_budget": 123_456}})
    other_seq = validate_params({"preprocess": {"seq_len": 512}})
    assert step_fingerprint(base, "explore") == step_fingerprint(more_training, "explore")
    assert step_fingerprint(base, "preprocess") == step_fingerprint(more_training, "preprocess")
    assert step_fingerprint(base, "explore") == step_fingerprint(other_seq, "explore")
    assert step_fingerprint(base, "preprocess") != step_fingerprint(other_seq, "preprocess")
    with pytest.raises(ParamsError, match="unknown step"):
        step_fingerprint(base, "deploy")


def test_resolved_parameters_round_trip(tmp_path):
    params = load_params(REPO_ROOT / "params" / "quickstart.yaml")
    save_resolved(params, tmp_path / "params.yaml")
    again = load_params(tmp_path / "params.yaml", overrides={"run_name": params.run_name})
    assert again.model_dump() == params.model_dump()


def test_unknown_key_inside_a_variant_lists_the_variant_keys():
    with pytest.raises(ParamsError, match=r"variants\.v\.trian: unknown key; allowed here: description, train"):
        validate_params({"variants": {"v": {"trian": {}}}})


def test_a_child_file_replaces_the_variants_of_its_parent():
    tiny = load_params(REPO_ROOT / "params" / "tiny.yaml")
    quick = load_params(REPO_ROOT / "params" / "quickstart.yaml")
    assert set(tiny.variants) == {"no_mitigation", "replay_25"} and len(quick.variants) == 5
