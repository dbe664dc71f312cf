"""The experiment's parameters: schema (``schema``), loading (``load``), checks (``checks``) and the
parameters of child runs (``derive``). Callers import from here; this face defines nothing."""

from .checks import (consistency_problems, environment_problems, gguf_context_length, model_positions,
                     token_budget_notes)
from .derive import derive, replay_sources
from .load import (RECORD_KEY, STEP_DEPENDENCIES, ParamsError, ParamsWarning, apply_sets, dump_params_yaml, load_params,
                   parse_set, save_resolved, step_fingerprint, validate_params)
from .schema import (DOMAIN_WIKI_TOPICS, GENERAL_SOURCE, GENERAL_WIKI_TOPICS, SHORT_RUN_TRAIN, WIKI_TOPICS,
                     AnalysisParams, ControlParams, Corpus, DataParams, DedupParams, EvalParams, ExperimentParams,
                     FilesCorpus, HubCorpus, ModelParams, PackagedRegisterCorpus, PackagedWikiCorpus,
                     PreprocessParams, QualityParams, RecordParams, Section, TinyModelParams, TrainParams,
                     VariantParams, VariantTrainParams)

__all__ = [
    "consistency_problems", "environment_problems", "token_budget_notes", "ParamsWarning", "gguf_context_length", "model_positions", "derive",
    "replay_sources", "RECORD_KEY", "STEP_DEPENDENCIES", "ParamsError", "apply_sets", "dump_params_yaml", "load_params",
    "parse_set",
    "save_resolved", "step_fingerprint", "validate_params", "DOMAIN_WIKI_TOPICS", "GENERAL_SOURCE",
    "GENERAL_WIKI_TOPICS", "SHORT_RUN_TRAIN", "WIKI_TOPICS", "AnalysisParams", "ControlParams", "Corpus",
    "DataParams", "DedupParams", "EvalParams", "ExperimentParams", "FilesCorpus", "HubCorpus", "ModelParams",
    "PackagedRegisterCorpus", "PackagedWikiCorpus", "PreprocessParams", "QualityParams", "RecordParams", "Section",
    "TinyModelParams", "TrainParams", "VariantParams", "VariantTrainParams",
]
