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


# ------------------------------------------------------------------------------------ --set overrides
def test_validate_applies_set_overrides_and_prints_them(tmp_path):
    proc = cpt("validate", str(TINY), "--set", "train.lr=3e-4", "--set", "eval.limit=100",
               "--set", "eval.offline_tasks=[mmlu_offline_domain]", "--set", "eval.task_groups={}", tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout.split("\nOK:")[0])
    assert resolved["train"]["lr"] == 3e-4 and resolved["eval"]["limit"] == 100
    assert resolved["eval"]["offline_tasks"] == ["mmlu_offline_domain"]
    assert resolved["recorded"]["overrides"] == ["train.lr=3e-4", "eval.limit=100",
                                                 "eval.offline_tasks=[mmlu_offline_domain]", "eval.task_groups={}"]
    assert f"OK: {TINY} with 4 --set overrides is valid (run name 'tiny')" in proc.stdout
    assert not (tmp_path / "runs").exists()  # validating writes nothing


def test_a_bad_set_is_one_error_line_for_every_command(tmp_path):
    for command in ("validate", "run", "prepare", "train", "eval"):
        (line,) = errors_of(cpt(command, str(TINY), "--set", "train.lr", tmp=tmp_path))
        assert line == "error: --set train.lr: no '=' (expected KEY=VALUE with a dotted key, e.g. --set train.lr=3e-4)"
    (line,) = errors_of(cpt("validate", str(TINY), "--set", "train.lr=3e-4", "--set", "eval.limt=5", tmp=tmp_path))
    assert line.startswith(f"error: {TINY}: eval.limt: unknown key; allowed here: ")
    assert line.endswith("(did you mean 'limit'?) (from --set eval.limt=5)")
    assert not (tmp_path / "runs").exists()


def test_prepare_with_set_runs_with_the_override_and_records_it(tmp_path):
    jsonl(tmp_path / "domain.jsonl", documents(30, 0))
    jsonl(tmp_path / "general.jsonl", documents(30, 1))
    proc = cpt("prepare", str(files_params(tmp_path)), "--set", "preprocess.seq_len=16", "--set", "run_name=short",
               tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "short"
    assert json.loads((run / "data" / "manifest.json").read_text())["seq_len"] == 16
    recorded = yaml.safe_load((run / "params.yaml").read_text())
    assert recorded["preprocess"]["seq_len"] == 16
    assert recorded["recorded"] == {"params_file": str(tmp_path / "p.yaml"),
                                    "overrides": ["preprocess.seq_len=16", "run_name=short"]}


@pytest.mark.slow  # two notebook kernels
def test_run_passes_the_overrides_to_every_notebook(tmp_path):
    """`cpt run` hands each notebook the run's resolved params.yaml: the overrides reach every one, and
    the report's provenance names them."""
    import nbformat

    books = tmp_path / "notebooks"
    books.mkdir()
    for name in ("01_first", "02_second"):
        parameters = nbformat.v4.new_code_cell('params_path = "../params/tiny.yaml"\nrun_name = None')
        parameters.metadata["tags"] = ["parameters"]
        body = nbformat.v4.new_code_cell(
            "import json\nfrom cpt_utils.notebook import setup\n"
            "params, run_dir = setup(params_path, run_name, show=False)\n"
            f"(run_dir / '{name}.json').write_text(json.dumps({{'lr': params.train.lr, 'limit': params.eval.limit, "
            "'source': params.source_path, 'overrides': params.recorded.overrides}))")
        book = nbformat.v4.new_notebook(cells=[parameters, body], metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
        nbformat.write(book, books / f"{name}.ipynb")
    sets = ["train.lr=3e-4", "eval.limit=5"]
    proc = cpt("run", str(TINY), "--set", sets[0], "--set", sets[1], tmp=tmp_path, env={"CPT_NOTEBOOKS": str(books)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "runs" / "tiny"
    for name in ("01_first", "02_second"):
        seen = json.loads((run / f"{name}.json").read_text())
        assert seen == {"lr": 3e-4, "limit": 5, "source": str(TINY), "overrides": sets}
    assert yaml.safe_load((run / "params.yaml").read_text())["recorded"]["overrides"] == sets
    index = (tmp_path / "reports" / "tiny" / "index.html").read_text()
    assert "with --set train.lr=3e-4 --set eval.limit=5" in index


def test_a_wrong_notebook_or_checkpoint_is_one_error_line_naming_what_exists(tmp_path):
    """``--only 3 6`` ran 03 alone without a word about 6; both mistakes were bare exits (status 1)."""
    proc = cpt("run", str(TINY), "--only", "3", "6", tmp=tmp_path)
    assert proc.returncode == 2
    assert errors_of(proc) == ["error: --only 6: no such notebook; available: 01_data_exploration, 02_preprocessing, "
                               "03_training, 04_token_efficiency, 05_forgetting (by number, e.g. --only 03, or by name)"]
    proc = cpt("eval", str(TINY), "--checkpoint", "tokens-1", tmp=tmp_path)
    assert proc.returncode == 2
    (line,) = errors_of(proc)
    assert line.startswith("error: --checkpoint tokens-1: not found in ") and line.endswith(
        "available: base, all (the run has no checkpoints yet: `cpt train` first)")


def test_only_takes_numbers_with_or_without_the_zero_and_names():
    from cpt_utils.pipeline import discover_notebooks

    assert [p.stem for p in discover_notebooks(["3", "04", "forgetting"])] == [
        "03_training", "04_token_efficiency", "05_forgetting"]
