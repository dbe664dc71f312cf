"""Checks of what a parameter file says about the world, run by ``load_params`` before any work.

The schema (``params``) checks a file against itself; this module checks it against the machine:
do the corpus files exist, is ``train.resume`` a checkpoint, do the task names exist, does
``preprocess.seq_len`` fit the model's positions. Each check is cheap or cached — the model's limit
comes from ``config.json`` or GGUF metadata, never from loading weights, and lm-eval's task index (≈ 25 s
to build) is read once per lm-eval version and kept in the cache — and a check that would need the
network or an asset not yet fetched is skipped rather than guessed.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path

from .params import ExperimentParams, FilesCorpus
from .paths import cache_dir


def _close(name: str, known) -> str:
    match = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


# ------------------------------------------------------------------------------------------- corpora
def corpus_problems(params: ExperimentParams) -> list[str]:
    """``files`` corpora: every path or glob must match at least one file (relative to the file's folder)."""
    from .corpora import match_files

    base = Path(params.source_path).parent if params.source_path else Path.cwd()
    problems = []
    for which in ("domain", "general"):
        spec = getattr(params.data, which)
        if not isinstance(spec, FilesCorpus):
            continue
        for i, pattern in enumerate(spec.paths):
            _, problem = match_files(pattern, base)
            if problem:
                problems.append(f"data.{which}.paths[{i}]: {problem}")
    return problems


# ---------------------------------------------------------------------------------------- checkpoint
def resume_problems(params: ExperimentParams) -> list[str]:
    """``train.resume`` as a path must be a complete checkpoint folder."""
    resume = params.train.resume
    if resume in ("auto", "never"):
        return []
    folder = Path(resume)
    hint = "use 'auto', 'never' or a runs/<run>/checkpoints/tokens-… folder"
    if not folder.is_dir():
        return [f"train.resume: {resume} does not exist ({hint}; relative paths start from {Path.cwd()})"]
    if not (folder / "checkpoint.json").is_file():
        return [f"train.resume: {resume} is not a checkpoint folder (no checkpoint.json; {hint})"]
    # state/ is not required: once training has finished from it, it is pruned, and the file stays valid
    return []


# --------------------------------------------------------------------------------------------- tasks
def _hub_task_names() -> set[str]:
    """lm-eval's task, group and tag names, indexed once per lm-eval version (the index is slow)."""
    from importlib.metadata import version

    path = cache_dir() / "lm_eval" / f"task-names-{version('lm-eval')}.json"
    if path.is_file():
        return set(json.loads(path.read_text()))
    from lm_eval.tasks import TaskManager

    names = sorted(TaskManager().all_tasks)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(names))
    tmp.replace(path)
    return set(names)


def task_problems(params: ExperimentParams) -> list[str]:
    """Offline task names against ``cpt_utils.tasks``; hub task names against lm-eval's index
    (only when the file is not offline: an offline file may not name hub tasks at all)."""
    problems = []
    if params.eval.offline_tasks:
        from .tasks import TaskError, registry

        try:
            table = registry()
        except TaskError as err:
            return [f"eval.offline_tasks: the task table is broken: {err}"]
        for name in params.eval.offline_tasks:
            if name not in table:
                problems.append(f"eval.offline_tasks: unknown task '{name}'{_close(name, table)}; "
                                f"allowed: {', '.join(sorted(table))}")
    if params.eval.hub_tasks and not params.offline:
        known = _hub_task_names()
        for name in params.eval.hub_tasks:
            if name not in known:
                problems.append(f"eval.hub_tasks: '{name}' is not an lm-eval task{_close(name, known)}")
    return problems


# --------------------------------------------------------------------------------------------- model
def gguf_context_length(path: Path) -> int | None:
    """``<arch>.context_length`` from a GGUF file's metadata (cached by path, size and mtime: reading
    the header of a 100 MB file takes seconds, because GGUFReader also maps every tensor)."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = cache_dir() / "gguf-meta" / f"{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text()).get("context_length")
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields

    def value(name: str):
        field = fields.get(name)
        if field is None or not field.data:
            return None
        part = field.parts[field.data[0]]
        return bytes(part).decode("utf-8") if field.types and field.types[0].name == "STRING" else int(part[0])

    arch = value("general.architecture")
    length = value(f"{arch}.context_length") if arch else None
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({"architecture": arch, "context_length": length}))
    return length


def _config_positions(config: dict) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


def model_positions(params: ExperimentParams) -> tuple[int | None, str, list[str]]:
    """(maximum positions or None if unknown here, where it was read, problems finding the model)."""
    spec = params.model
    if spec.source == "packaged":
        from .assets import ASSETS
        from .modeling import PACKAGED_MODELS

        if spec.name not in PACKAGED_MODELS:
            return None, "", [f"model.name: unknown packaged model '{spec.name}'; allowed: {sorted(PACKAGED_MODELS)}"]
        asset = ASSETS[PACKAGED_MODELS[spec.name]]
        path = cache_dir() / "assets" / f"{asset.package}-{asset.version}" / asset.member
        verified = path.with_name(path.name + ".verified")
        if not (path.is_file() and verified.is_file()):
            return None, "", []  # not fetched yet: `cpt assets` will; do not download to validate
        return gguf_context_length(path), f"{path.name} metadata", []
    if spec.source == "gguf":
        path = Path(spec.name)
        if not path.is_file():
            return None, "", [f"model.name: GGUF file not found: {spec.name}"]
        return gguf_context_length(path), f"{path.name} metadata", []
    if spec.source == "local":
        config = Path(spec.name) / "config.json"
        if not config.is_file():
            return None, "", [f"model.name: {spec.name} is not a model folder (no config.json)"]
        try:
            return _config_positions(json.loads(config.read_text())), str(config), []
        except (OSError, ValueError) as err:
            return None, "", [f"model.name: {config} is not readable JSON ({err})"]
    if spec.source == "hub" and not params.offline:
        try:  # a 1 KB download, or the local copy; any failure (no network) skips the check
            from huggingface_hub import hf_hub_download

            config = Path(hf_hub_download(spec.name, "config.json", revision=spec.revision))
            return _config_positions(json.loads(config.read_text())), f"{spec.name} config.json", []
        except Exception:  # noqa: BLE001 - unreachable hub: nothing is known, nothing is claimed
            return None, "", []
    return None, "", []  # tiny: checked by the schema (params.consistency_problems)


def model_problems(params: ExperimentParams) -> list[str]:
    limit, where, problems = model_positions(params)
    if limit is not None and params.preprocess.seq_len > limit:
        problems.append(f"preprocess.seq_len: {params.preprocess.seq_len} exceeds the model's maximum positions "
                        f"({limit}, from {where})")
    return problems


def environment_problems(params: ExperimentParams) -> list[str]:
    """Every problem the checks above find, in the order of the file's sections."""
    return model_problems(params) + corpus_problems(params) + resume_problems(params) + task_problems(params)
