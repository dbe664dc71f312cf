"""The real ``cpt`` command on broken parameter files and corpora: a non-zero exit, no traceback, and one
``error:`` line naming the key, file or cause — or, for recoverable input, a finished run that says on
the terminal what it dropped."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cpt_utils.errors import CptError, error_lines
from cpt_utils.paths import REPO_ROOT

TINY = REPO_ROOT / "params" / "tiny.yaml"
QUICKSTART = REPO_ROOT / "params" / "quickstart.yaml"
WORDS = ["energy", "atom", "planet", "orbit", "cell", "protein", "signal", "matrix", "vector", "theorem",
         "circuit", "voltage", "enzyme", "genome", "species", "climate", "mineral", "crystal", "photon",
         "galaxy", "neuron", "tissue", "bridge", "engine", "number", "prime", "field", "force", "mass", "wave"]


def cpt(*args: str, tmp: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m cpt_utils.cli`` (the ``cpt`` entry point) from the repository root."""
    base = {k: v for k, v in os.environ.items() if k != "CPT_DEBUG"}
    full_env = {**base, "CPT_RUNS": str(tmp / "runs"), "CPT_REPORTS": str(tmp / "reports"),
                "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "cpt_utils.cli", *args], cwd=REPO_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=600)


def errors_of(proc: subprocess.CompletedProcess) -> list[str]:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert lines, proc.stderr
    return lines


def documents(n: int, seed: int, words: int = 60) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) + "." for _ in range(n)]


def jsonl(path: Path, texts: list[str]) -> None:
    path.write_text("".join(json.dumps({"id": f"{path.stem}-{i}", "text": t}) + "\n" for i, t in enumerate(texts)))


def files_params(tmp: Path, extra: dict | None = None) -> Path:
    """A tiny-model parameter file that extends tiny.yaml and switches both corpora to local files."""
    data = {"extends": str(TINY),
            "data": {"domain": {"kind": "files", "paths": ["domain.jsonl"]},
                     "general": {"kind": "files", "paths": ["general.jsonl"]}},
            "preprocess": {"seq_len": 32, "val_fraction": 0.2, "val_max_docs": 5}}
    for key, value in (extra or {}).items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ------------------------------------------------------------------------------------------- validate
def test_validate_reports_every_problem_the_file_implies_one_line_each(tmp_path):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({
        "extends": str(TINY),
        "model": {"tiny": {"hidden_size": 66, "num_key_value_heads": 3, "max_position_embeddings": 32}},
        "train": {"token_budget": 1000, "milestones": [500, 2048], "warmup_tokens": 1000, "resume": str(tmp_path / "nope")},
        "eval": {"offline_tasks": ["mmlu_offline_domian"], "task_groups": {"domain": ["mmlu_offline_domain"]}},
        "data": {"domain": {"kind": "files", "paths": ["corpus/*.jsonl"]}},
        "variants": {"short": {"train": {"token_budget": 256}}},
    }))
    lines = errors_of(cpt("validate", str(tmp_path / "p.yaml"), tmp=tmp_path))
    text = "\n".join(lines)
    expected = ["train.milestones: [2048] beyond train.token_budget",
                "train.warmup_tokens: 1,000 is not below train.token_budget",
                "variants.short.train.warmup_tokens: 1,000 (inherited from train) is not below",
                "model.tiny.hidden_size: 66 is not divisible by model.tiny.num_attention_heads (4)",
                "model.tiny.num_attention_heads: 4 is not divisible by model.tiny.num_key_value_heads (3)",
                "preprocess.seq_len: 64 exceeds the model's maximum positions",
                "data.domain.paths[0]: no file matches 'corpus/*.jsonl'",
                f"train.resume: {tmp_path / 'nope'} does not exist",
                "eval.offline_tasks: unknown task 'mmlu_offline_domian' (did you mean 'mmlu_offline_domain'?)",
                "eval.task_groups.domain: ['mmlu_offline_domain'] not in eval.offline_tasks"]
    for fragment in expected:
        assert sum(fragment in ln for ln in lines) == 1, f"{fragment!r} not on exactly one line of:\n{text}"
    assert all(ln.startswith("error: ") and "p.yaml: " in ln for ln in lines) and len(lines) == len(expected)


def test_resume_path_that_is_not_a_checkpoint_stops_training_before_any_work(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    path = files_params(tmp_path, {"train": {"resume": str(folder)}})
    jsonl(tmp_path / "domain.jsonl", documents(5, 0))
    jsonl(tmp_path / "general.jsonl", documents(5, 1))
    lines = errors_of(cpt("train", str(path), tmp=tmp_path))
    assert len(lines) == 1 and "train.resume" in lines[0] and "not a checkpoint folder (no checkpoint.json" in lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.npy"))


def test_a_child_of_the_quickstart_may_switch_a_corpus_to_files(tmp_path):
    jsonl(tmp_path / "notes.jsonl", documents(3, 0))
    (tmp_path / "child.yaml").write_text(yaml.safe_dump(
        {"extends": str(QUICKSTART), "data": {"domain": {"kind": "files", "paths": ["*.jsonl"]}}}))
    proc = cpt("validate", str(tmp_path / "child.yaml"), tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout.split("\nOK:")[0])
    assert resolved["data"]["domain"] == {"kind": "files", "paths": ["*.jsonl"], "text_field": "text",
                                          "txt_mode": "file", "max_docs": None}
    assert resolved["data"]["general"]["kind"] == "packaged_wiki"  # the sibling still inherits


def test_debug_flag_and_environment_variable_show_the_traceback(tmp_path):
    (tmp_path / "p.yaml").write_text("train: {lr: -1}\n")
    plain = cpt("validate", str(tmp_path / "p.yaml"), tmp=tmp_path)
    assert errors_of(plain) == [f"error: {tmp_path / 'p.yaml'}: train.lr: Input should be greater than 0 (got -1)"]
    for proc in (cpt("--debug", "validate", str(tmp_path / "p.yaml"), tmp=tmp_path),
                 cpt("validate", str(tmp_path / "p.yaml"), "--debug", tmp=tmp_path),
                 cpt("validate", str(tmp_path / "p.yaml"), tmp=tmp_path, env={"CPT_DEBUG": "1"})):
        assert proc.returncode == 2 and "Traceback" in proc.stderr and "error: " in proc.stderr


def test_unexpected_errors_are_one_line_too():
    assert error_lines(KeyError("x")) == ["unexpected KeyError: 'x' (rerun with --debug or CPT_DEBUG=1 for the traceback)"]
    assert error_lines(CptError("a:\n  - b\n  - c")) == ["a:", "b", "c"]


# -------------------------------------------------------------------------------------------- prepare
def test_prepare_prints_what_each_stage_dropped(tmp_path):
    texts = documents(30, 0)
    raw = "".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    raw += "{broken json\n" + json.dumps({"body": "no text field"}) + "\n"
    raw += json.dumps({"id": "short", "text": "too short"}) + "\n" + json.dumps({"id": "copy", "text": texts[0]}) + "\n"
    (tmp_path / "domain.jsonl").write_bytes(raw.encode() + b'{"text": "caf\xe9"}\n')
    jsonl(tmp_path / "general.jsonl", documents(30, 1))
    proc = cpt("prepare", str(files_params(tmp_path)), tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "data.domain: 32 documents read, 30 kept; 3 unreadable records skipped" in out
    assert "unreadable: 1 × invalid JSON (e.g. domain.jsonl:31)" in out
    assert "unreadable: 1 × missing text field 'text' (e.g. domain.jsonl:32)" in out
    assert "unreadable: 1 × non-UTF-8 bytes (e.g. domain.jsonl:35)" in out
    assert "removed        1 by filter 'word_count' (preprocess.quality.min_words/max_words) (e.g. short: 2 words" in out
    assert "removed        1 by exact-duplicate removal (preprocess.dedup.exact)" in out
    assert "removed        0 by near-duplicate removal (preprocess.dedup.near)" in out
    assert "data.general: 30 documents read, 30 kept" in out


@pytest.mark.parametrize("case", ["empty", "filtered", "duplicated", "near-duplicated", "binary", "no-match",
                                  "dedup-empties-val"])
def test_prepare_failures_are_one_line_naming_the_cause(tmp_path, case):
    jsonl(tmp_path / "domain.jsonl", documents(30, 0))
    jsonl(tmp_path / "general.jsonl", documents(30, 1))
    extra: dict = {}
    if case == "empty":
        (tmp_path / "domain.jsonl").write_text("")
        expected = "data.domain: the corpus yielded no documents (local files domain.jsonl"
    elif case == "filtered":
        jsonl(tmp_path / "domain.jsonl", [f"tiny doc {i}" for i in range(20)])
        expected = "data.domain: all 20 documents were removed by filter 'word_count' (preprocess.quality.min_words/max_words)"
    elif case == "duplicated":
        jsonl(tmp_path / "general.jsonl", documents(30, 0))
        expected = "data.general: all 30 documents were removed by exact-duplicate removal (preprocess.dedup.exact)"
    elif case == "near-duplicated":
        jsonl(tmp_path / "general.jsonl", [t + " appendix" for t in documents(30, 0)])
        expected = "data.general: all 30 documents were removed by near-duplicate removal (preprocess.dedup.near)"
    elif case == "binary":
        (tmp_path / "blob.txt").write_bytes(bytes(range(256)) * 40)
        extra = {"data": {"domain": {"kind": "files", "paths": ["blob.txt"]}}}
        expected = "data.domain: no readable document in local files blob.txt (field 'text'): 1 unreadable record(s): 1 × non-UTF-8 bytes (e.g. blob.txt)"
    elif case == "no-match":
        extra = {"data": {"domain": {"kind": "files", "paths": ["corpus/**/*.jsonl"]}}}
        expected = "data.domain.paths[0]: no file matches 'corpus/**/*.jsonl'"
    else:  # 40 near-copies of one text: one document survives, too few for a held-out sequence
        base = documents(1, 0, words=80)[0]
        jsonl(tmp_path / "domain.jsonl", [f"{base} note {i}" for i in range(40)])
        expected = "data.domain kept 1 of 40 documents (39 by near-duplicate removal (preprocess.dedup.near) removed)"
    if extra:
        extra["data"]["general"] = {"kind": "files", "paths": ["general.jsonl"]}
    lines = errors_of(cpt("prepare", str(files_params(tmp_path, extra)), tmp=tmp_path))
    assert len(lines) == 1 and expected in lines[0], lines


def test_broken_yaml_is_one_line_with_its_position(tmp_path):
    (tmp_path / "p.yaml").write_text("train: [unclosed\n")
    lines = errors_of(cpt("validate", str(tmp_path / "p.yaml"), tmp=tmp_path))
    assert len(lines) == 1 and "not valid YAML" in lines[0] and "line 2, column 1" in lines[0]
