"""A run's results in one low room: run and checkpoint identity (``identity``), the stored evaluations
and their staleness (``store``), and the run's folders, "is it finished", annealed points and the
loaders every report reads (``runs``).

It imports only the leaves (errors, paths, precision, checkpointing, comparability, packing's split
names, assets' hash), so analysis reports, the model card, trackers, variants, branches and training
all read results from below. Parameters are passed in, never loaded here.
"""

from ..comparability import IncomparableResults, check_comparable
from .identity import (LOOSE_TRAIN_KEYS, run_fingerprint, training_data_identity, trajectory_fingerprint,
                       trajectory_changes, trajectory_record, weights_identity)
from .runs import (annealed_points, branch_dir, branch_points, control_dir, curve_table, final_eval,
                   finished_control, finished_variant, load_evals, load_variant_evals, main_final,
                   matched_control_evals, same_as_main, variant_dir)
from .store import (EVAL_CODE, EVAL_LIBRARIES, HERE, code_hash, current_results, eval_fingerprint,
                    eval_precision_for, evaluation_settings, file_content_hash, final_tasks, heldout_fingerprint,
                    library_versions,
                    model_content, read_current, results_table, scores_final_tasks, stale_reason, write_result)

__all__ = [
    "EVAL_CODE", "EVAL_LIBRARIES", "HERE", "IncomparableResults", "LOOSE_TRAIN_KEYS", "annealed_points", "branch_dir",
    "branch_points", "check_comparable", "code_hash", "control_dir", "current_results", "curve_table",
    "eval_fingerprint", "eval_precision_for", "evaluation_settings", "file_content_hash", "final_eval", "final_tasks",
    "finished_control", "finished_variant", "heldout_fingerprint", "library_versions", "load_evals", "load_variant_evals", "main_final",
    "matched_control_evals", "model_content", "read_current", "results_table", "run_fingerprint", "same_as_main",
    "scores_final_tasks",
    "stale_reason", "training_data_identity", "trajectory_changes", "trajectory_fingerprint", "trajectory_record", "variant_dir", "weights_identity",
    "write_result",
]
