"""What the schema alone cannot see: a file's values against each other, and against the world.

``consistency_problems`` checks a file against itself (budgets, milestones, warmup, every variant's
resolved ``train``, replay sources, a tiny model's shapes, task groups, token budgets);
``environment_problems`` checks it against the machine: do the corpus files exist, is ``train.resume`` a
checkpoint, do the task names exist, does ``preprocess.seq_len`` fit the model's positions. Each world
check is cheap or cached — the model's limit comes from ``config.json`` or GGUF metadata, never from
loading weights, and lm-eval's task index (≈ 25 s to build) is read once per lm-eval version and kept
in the cache — and a check that would need the network or an asset not yet fetched is skipped rather
than guessed. Both return every problem, so ``load_params`` reports them all at once.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from importlib.metadata import version
from pathlib import Path

from pydantic import ValidationError

from ..assets import PACKAGED_MODELS, fetched
from ..atomic import atomic_write_json
from ..paths import cache_dir, match_files
from ..tasks import TaskError, mmlu_items, registry
from .schema import (GENERAL_SOURCE, SHORT_RUN_TRAIN, EvalParams, ExperimentParams, FilesCorpus, TrainParams,
                     VariantParams)


# ------------------------------------------------------------------------------- consistency checks
def _train_problems(tp: TrainParams, key: str, inherited: set[str] = frozenset()) -> list[str]:
    """Budget, milestones and warmup against each other (``inherited``: keys taken from ``train``)."""
    note = lambda name: " (inherited from train)" if name in inherited else ""  # noqa: E731
    problems = []
    beyond = sorted(m for m in tp.milestones if m > tp.token_budget)
    if beyond:
        problems.append(f"{key}.milestones: {beyond}{note('milestones')} beyond {key}.token_budget "
                        f"({tp.token_budget:,}): training stops before reaching them")
    if tp.decay_branch_fraction is not None and tp.schedule == "cosine":
        problems.append(f"{key}.decay_branch_fraction: decay branches need a schedule that holds the LR until it "
                        f"branches ({key}.schedule: wsd or constant); a cosine run's milestones are already "
                        "partly annealed")
    if tp.warmup_tokens >= tp.token_budget:
        problems.append(f"{key}.warmup_tokens: {tp.warmup_tokens:,}{note('warmup_tokens')} is not below "
                        f"{key}.token_budget ({tp.token_budget:,}): the learning rate would never reach its peak")
    return problems


def _model_shape_problems(params: ExperimentParams) -> list[str]:
    """A tiny Llama's attention shapes, and sequences that fit its positions (other models: model_problems)."""
    if params.model.source != "tiny":
        return []
    t, key, problems = params.model.tiny, "model.tiny", []
    if t.hidden_size % t.num_attention_heads:
        problems.append(f"{key}.hidden_size: {t.hidden_size} is not divisible by {key}.num_attention_heads "
                        f"({t.num_attention_heads})")
    elif (t.hidden_size // t.num_attention_heads) % 2:
        problems.append(f"{key}.hidden_size: {t.hidden_size} / {t.num_attention_heads} heads = an odd head size "
                        f"{t.hidden_size // t.num_attention_heads}; rotary position embeddings need an even one")
    if t.num_attention_heads % t.num_key_value_heads:
        problems.append(f"{key}.num_attention_heads: {t.num_attention_heads} is not divisible by "
                        f"{key}.num_key_value_heads ({t.num_key_value_heads})")
    if params.preprocess.seq_len > t.max_position_embeddings:
        problems.append(f"preprocess.seq_len: {params.preprocess.seq_len} exceeds the model's maximum positions "
                        f"({key}.max_position_embeddings = {t.max_position_embeddings})")
    return problems

def resolved_variant_train(params: ExperimentParams, variant: VariantParams) -> dict:
    """A variant's ``train`` as a mapping: the main run's, less the short-run keys, with its overrides."""
    return {**params.train.model_dump(), **SHORT_RUN_TRAIN, **dict(variant.train)}


def consistency_problems(params: ExperimentParams) -> list[str]:
    """What the schema alone cannot see but the file itself can: values that contradict each other."""
    problems = _train_problems(params.train, "train")
    for name, variant in params.variants.items():
        resolved = resolved_variant_train(params, variant)
        try:
            tp = TrainParams.model_validate(resolved)
        except ValidationError:
            continue  # already reported by the schema (VariantTrainParams)
        problems += _train_problems(tp, f"variants.{name}.train", set(resolved) - set(variant.train.keys()))
    return (problems + _replay_problems(params) + _model_shape_problems(params) + _task_group_problems(params.eval)
            + _final_task_problems(params.eval) + _heldout_split_problems(params))

def _replay_problems(params: ExperimentParams) -> list[str]:
    """Every replay source must be packed from a corpus the file declares: ``general`` or a register."""
    allowed = [GENERAL_SOURCE, *params.data.registers]
    sections = [("train", params.train.replay_mixture)] + [
        (f"variants.{name}.train", v.train.get("replay_mixture")) for name, v in params.variants.items()]
    problems = []
    for key, mixture in sections:
        unknown = [s for s in (mixture or {}) if s not in allowed]
        if unknown:
            problems.append(f"{key}.replay_mixture: unknown source(s) {unknown}; allowed: {', '.join(allowed)} "
                            "(general, or a corpus declared under data.registers)")
    return problems



def _heldout_split_problems(params: ExperimentParams) -> list[str]:
    """``eval.heldout_splits`` may only name splits this file prepares (val_domain, val_general,
    val_<register>): a misspelt name would otherwise surface only after preprocessing, minutes later."""
    prepared = ["val_domain", "val_general", *(f"val_{name}" for name in params.data.registers)]
    return [f"eval.heldout_splits: {split!r} is not a held-out split of this file{did_you_mean(split, prepared)}; "
            f"allowed: {', '.join(prepared)}" for split in params.eval.heldout_splits or [] if split not in prepared]


def _task_group_problems(ev: EvalParams) -> list[str]:
    """A group may only name evaluated tasks (a child file that narrows ``offline_tasks`` must narrow
    its parent's ``task_groups`` too)."""
    evaluated = set(ev.offline_tasks) | set(ev.hub_tasks)
    return [f"eval.task_groups.{group}: {[t for t in tasks if t not in evaluated]} not in eval.offline_tasks or "
            f"eval.hub_tasks (evaluated: {sorted(evaluated)})"
            for group, tasks in ev.task_groups.items() if any(t not in evaluated for t in tasks)]




def _final_task_problems(ev: EvalParams) -> list[str]:
    """``final_tasks`` are scored only where the headline is read, so they cannot also be scored everywhere
    (``offline_tasks``). (``task_limits`` names are checked against the catalogue in ``task_problems``: a
    size inherited for a task this file does not score is harmless.)"""
    return [f"eval.final_tasks: {t!r} is also in eval.offline_tasks (scored at every checkpoint already); "
            "list it in one of the two" for t in ev.final_tasks if t in ev.offline_tasks]


def _domain_tokens(tp: TrainParams, budget: int | None = None) -> int:
    """Domain tokens a run of ``budget`` tokens draws: the rest of each batch is replay (packing.py)."""
    return math.ceil((tp.token_budget if budget is None else budget) * (1 - tp.replay_fraction))


def _branch_end(params: ExperimentParams, milestone: int) -> int:
    """Where a decay branch from ``milestone`` ends (``config.derive``: whole steps, at least one)."""
    tp = params.train
    per_step = tp.micro_batch_size * tp.grad_accum_steps * params.preprocess.seq_len
    return milestone + max(1, math.ceil(tp.decay_branch_fraction * milestone / per_step)) * per_step


def token_budget_notes(params: ExperimentParams) -> list[str]:
    """``preprocess.train_token_budget`` caps the domain's train split; a run (the main run, a variant,
    a decay branch) that draws more domain tokens than it holds repeats data. Both keys are named.

    Notes, not problems: training past the prepared tokens is a supported multi-epoch run (train reports
    its epochs, and data-only files prepare small budgets on purpose), so ``load_params`` warns."""
    cap = params.preprocess.train_token_budget
    if cap is None:
        return []
    runs = [("train", params.train, _domain_tokens(params.train))]
    for name, variant in params.variants.items():
        try:
            tp = TrainParams.model_validate(resolved_variant_train(params, variant))
        except ValidationError:
            continue  # already reported by the schema
        runs.append((f"variants.{name}.train", tp, _domain_tokens(tp)))
    tp = params.train
    if tp.decay_branch_fraction is not None:
        points = [m for m in tp.milestones if m < tp.token_budget] + ([tp.token_budget] if tp.schedule == "constant" else [])
        if points:
            end = max(_branch_end(params, m) for m in points)
            runs.append(("train.decay_branch_fraction", tp, _domain_tokens(tp, end)))
    problems = []
    for key, tp, need in runs:
        if need <= cap:
            continue
        what = (f"the decay branches (train.decay_branch_fraction {tp.decay_branch_fraction:g}) train on"
                if key == "train.decay_branch_fraction" else f"{key}.token_budget ({tp.token_budget:,}) trains on")
        problems.append(f"preprocess.train_token_budget: {cap:,} is below the {need:,} domain tokens {what} "
                        f"(at replay_fraction {tp.replay_fraction:g}): training would repeat data")
    return problems


# ---------------------------------------------------------------------------------------- world checks
def did_you_mean(name, known) -> str:
    """`` (did you mean 'x'?)`` for the known name nearest ``name``: one that differs only in case first,
    then the closest spelling; nothing for a name that is not a string or has no near neighbour."""
    if not isinstance(name, str):
        return ""
    known = [k for k in known if k != name]
    match = next((k for k in known if k.lower() == name.lower()), None) or next(
        iter(difflib.get_close_matches(name, known, n=1)), None)
    return f" (did you mean '{match}'?)" if match else ""


# ------------------------------------------------------------------------------------------- corpora
def corpus_problems(params: ExperimentParams) -> list[str]:
    """``files`` corpora: every path or glob must match at least one file (relative to the file's folder)."""
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
def subject_problems(params: ExperimentParams) -> list[str]:
    """``eval.domain_subjects`` / ``general_subjects`` against the packaged MMLU's subjects, once that asset
    is fetched (validation never downloads): a misspelt subject would otherwise stop the task build later."""
    asked = {key: getattr(params.eval, key) for key in ("domain_subjects", "general_subjects")}
    if not any(asked.values()):
        return []
    path = fetched("mmlu")
    if path is None:
        return []  # not fetched yet: the task build checks it
    try:
        known = {item["subject"] for item in mmlu_items(path)}
    except TaskError as err:
        return [f"eval.domain_subjects: the packaged MMLU is unreadable: {err}"]
    return [f"eval.{key}: unknown MMLU subject {name!r}{did_you_mean(name, known)}; allowed: {', '.join(sorted(known))}"
            for key, names in asked.items() for name in names or [] if name not in known]


def _hub_task_names() -> set[str]:
    """lm-eval's task, group and tag names, indexed once per lm-eval version (the index is slow)."""
    path = cache_dir() / "lm_eval" / f"task-names-{version('lm-eval')}.json"
    if path.is_file():
        return set(json.loads(path.read_text()))
    from lm_eval.tasks import TaskManager  # lazy: lm-eval takes seconds to import; its index is cached

    names = sorted(TaskManager().all_tasks)
    atomic_write_json(path, names)
    return set(names)


def task_problems(params: ExperimentParams) -> list[str]:
    """Offline task names (``offline_tasks``, ``final_tasks``, ``task_limits``) against ``cpt_utils.tasks``;
    hub task names against lm-eval's index (only when the file is not offline: an offline file may not name hub tasks at all)."""
    problems = []
    if params.eval.offline_tasks or params.eval.final_tasks or params.eval.task_limits:
        try:
            table = registry()
        except TaskError as err:
            return [f"eval.offline_tasks: the task table is broken: {err}"]
        for key in ("offline_tasks", "final_tasks", "task_limits"):
            for name in getattr(params.eval, key):
                if name not in table:
                    problems.append(f"eval.{key}: unknown task '{name}'{did_you_mean(name, table)}; "
                                    f"allowed: {', '.join(sorted(table))}")
    if params.eval.hub_tasks and not params.offline:
        known = _hub_task_names()
        for name in params.eval.hub_tasks:
            if name not in known:
                problems.append(f"eval.hub_tasks: '{name}' is not an lm-eval task{did_you_mean(name, known)}")
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
    from gguf import GGUFReader  # lazy: only a packaged or gguf model needs it, once per file

    fields = GGUFReader(str(path)).fields

    def value(name: str):
        field = fields.get(name)
        if field is None or not field.data:
            return None
        part = field.parts[field.data[0]]
        return bytes(part).decode("utf-8") if field.types and field.types[0].name == "STRING" else int(part[0])

    arch = value("general.architecture")
    length = value(f"{arch}.context_length") if arch else None
    atomic_write_json(cached, {"architecture": arch, "context_length": length})
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
        if spec.name not in PACKAGED_MODELS:
            return None, "", [f"model.name: unknown packaged model '{spec.name}'; allowed: {sorted(PACKAGED_MODELS)}"]
        path = fetched(PACKAGED_MODELS[spec.name])
        if path is None:
            return None, "", []  # not fetched yet: `cpt assets` will; do not download to validate
        return gguf_context_length(path), f"{path.name} metadata", []
    if spec.source == "gguf":
        path = Path(spec.name)
        if not path.is_file():
            return None, "", [f"model.name: GGUF file not found: {spec.name}"]
        try:
            return gguf_context_length(path), f"{path.name} metadata", []
        except (ValueError, OSError, IndexError, KeyError) as err:  # what gguf's reader raises on a file it cannot read
            return None, "", [f"model.name: {spec.name} is not a readable GGUF file ({err})"]
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
            from huggingface_hub import hf_hub_download  # lazy: only a hub model, online

            config = Path(hf_hub_download(spec.name, "config.json", revision=spec.revision))
            return _config_positions(json.loads(config.read_text())), f"{spec.name} config.json", []
        except Exception:  # noqa: BLE001 - unreachable hub: nothing is known, nothing is claimed
            return None, "", []
    return None, "", []  # tiny: checked by consistency_problems


def model_problems(params: ExperimentParams) -> list[str]:
    limit, where, problems = model_positions(params)
    if limit is not None and params.preprocess.seq_len > limit:
        problems.append(f"preprocess.seq_len: {params.preprocess.seq_len} exceeds the model's maximum positions "
                        f"({limit}, from {where})")
    return problems


def environment_problems(params: ExperimentParams) -> list[str]:
    """Every problem the checks above find, in the order of the file's sections."""
    return (model_problems(params) + corpus_problems(params) + resume_problems(params) + task_problems(params)
            + subject_problems(params))
