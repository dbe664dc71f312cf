"""Stored evaluation results: ``runs/<run>/evals/<checkpoint>.json``, what they are keyed on, and the
tidy table the notebooks read.

A stored result is reused or read only while it still describes the same thing: the evaluation settings,
the *resolved* precision, per-document attention, the base model's architecture and file content, the
held-out data's content, the packaged assets' pins, the code that computes the numbers and the library
versions, and the **identity of the weights** it scored (the checkpoint's trajectory, step and save time;
the base model). Each result records those parts (``evaluated_with``) and its ``weights``, so a reader can
say why a result is stale (``stale_reason``) and refuse to pair results made differently
(``check_comparable``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from ..assets import asset_pins, file_content_hash
from ..atomic import atomic_write_json
from ..checkpointing import list_checkpoints
from ..code_identity import code_identity, reached_modules
from ..comparability import differences
from ..precision import resolve_precision
from .identity import model_identity, weights_identity

if TYPE_CHECKING:
    from ..config import ExperimentParams, ModelParams

#: The package's folder: the evaluation code hashed below is named relative to it.
HERE = Path(__file__).parent.parent
#: Where an evaluation's numbers are computed: these modules are hashed together with every package module
#: they import, directly or not (``evaluation_modules``), so a helper they come to rely on — the attention
#: context of the scorer, the items ``task_build`` picks — can never change a number behind a stored result.
EVAL_CODE = ("evaluate.py", "heldout_eval.py", "perplexity.py", "task_suite.py", "task_build.py", "scoring.py",
             "precision.py", "modeling.py", "packing.py")
#: Package modules the evaluation imports whose code cannot move a stored number, so they are neither hashed
#: nor followed: files and paths, errors, the allocator setting, the parameters (an evaluation's settings
#: are keyed by value, ``evaluation_settings``), this results room, trackers, the contamination report,
#: statistics for reports, and the assets' fetching (their pins are keyed by value: ``asset_pins``).
BOOKKEEPING = frozenset({"atomic", "paths", "errors", "allocator", "config", "results", "tracking", "contamination",
                         "comparability", "analysis", "assets"})
#: The libraries whose versions change the numbers.
EVAL_LIBRARIES = ("torch", "transformers", "lm_eval")
def model_content(spec: ModelParams) -> str | None:
    """The content of a local base model (a ``.gguf`` file, or a folder's weights and config): editing
    the file under the same name must not reuse the old model's scores. None for other sources."""
    if spec.source not in ("local", "gguf"):
        return None
    root = Path(spec.name).expanduser()
    if root.is_file():
        files = [root]
    else:
        patterns = ("*.safetensors", "*.bin", "*.gguf", "config.json")
        files = sorted({p for pattern in patterns for p in root.glob(pattern)}) if root.is_dir() else []
    if not files:
        return "missing"
    return hashlib.sha256("".join(f"{p.name}:{file_content_hash(p)}" for p in files).encode()).hexdigest()[:16]


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that compute the numbers."""
    out: dict[str, str | None] = {}
    for name in EVAL_LIBRARIES:
        try:
            out[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            out[name] = None
    return out


def _eval_roots() -> list[str]:
    """``EVAL_CODE`` as module names, where following the imports starts."""
    return [f.removesuffix(".py") for f in EVAL_CODE]


def evaluation_modules() -> dict[str, str]:
    """The package modules an evaluation's numbers depend on, with their code as it runs: ``EVAL_CODE``
    and, transitively, every package module they import, except ``BOOKKEEPING`` ones."""
    return reached_modules(HERE, _eval_roots(), BOOKKEEPING)


def code_hash() -> str:
    """Hash of the code an evaluation's numbers come from (``evaluation_modules``) and the task templates.
    Python code is hashed as its syntax tree without docstrings, so rewording a docstring or a comment or
    reflowing a line keeps every stored result, while any change to what runs stales them."""
    digest = hashlib.sha256(code_identity(HERE, _eval_roots(), BOOKKEEPING).encode())
    for template in sorted((HERE / "tasks").glob("*.yaml")):
        digest.update(f"{template.name}\n".encode() + template.read_bytes())
    return digest.hexdigest()[:12]


def eval_precision_for(params: ExperimentParams, device_type: str = "cpu") -> str:
    """The precision an evaluation on ``device_type`` runs in (``auto`` resolved for this machine);
    evaluation loads models on the CPU (``evaluate.evaluate_run``)."""
    with warnings.catch_warnings():  # the slow-bf16 warning belongs to the run, not to a key
        warnings.simplefilter("ignore")
        return resolve_precision(params.train.precision, device_type)


def scores_final_tasks(params: ExperimentParams, checkpoint: dict | None) -> bool:
    """Whether an evaluation scores ``eval.final_tasks`` too: the base model (``checkpoint`` None) and the
    run's final checkpoint (tokens == ``train.token_budget``). ``config.derive`` drops them from variants
    and decay branches, so among child runs only the control's final checkpoint has them."""
    return bool(final_tasks(params)) and (checkpoint is None or checkpoint.get("tokens") == params.train.token_budget)


def final_tasks(params: ExperimentParams) -> dict[str, int | None]:
    """The tasks scored only at the headline's points (``eval.final_tasks`` not also in ``offline_tasks``)
    with their item counts (``eval.task_limits`` over ``eval.limit``)."""
    ev = params.eval
    return {t: ev.task_limits.get(t, ev.limit) for t in ev.final_tasks if t not in ev.offline_tasks}


def _every_checkpoint_settings(params: ExperimentParams) -> dict:
    """The evaluation settings every checkpoint shares: ``eval`` without the final tasks and their item
    counts, so adding or resizing a final task leaves the milestones' results current."""
    ev = params.eval.model_dump(mode="json")
    final = final_tasks(params)
    ev.pop("final_tasks", None)
    limits = {t: n for t, n in ev.pop("task_limits", {}).items() if t not in final}
    if limits:
        ev["task_limits"] = limits
    return ev


def evaluation_settings(params: ExperimentParams, data_dir: Path, precision: str | None = None,
                        final: bool = False) -> dict:
    """Everything but the weights that an evaluation's numbers depend on, part by part (so a refusal
    can name what differs). With ``final`` (``scores_final_tasks``) the final tasks and their item
    counts are a part of their own, ``final_tasks``: only results that score them record it, so a
    milestone's result is never paired with, nor judged stale against, tasks it was not meant to have."""
    manifest = Path(data_dir) / "manifest.json"
    prepared = json.loads(manifest.read_text()) if manifest.is_file() else {}
    # content_hash covers the standard splits only: each register's held-out split (val_<name>) counts too,
    # or a result measured before a register was declared would be reused without it
    heldout = {name: s.get("content_hash") for name, s in prepared.get("splits", {}).items() if name.startswith("val_")}
    data = hashlib.sha256(json.dumps([prepared.get("content_hash"), heldout], sort_keys=True).encode()).hexdigest()[:12]
    settings = hashlib.sha256(json.dumps([_every_checkpoint_settings(params), params.offline],
                                         sort_keys=True).encode()).hexdigest()[:12]
    out = {"precision": precision or eval_precision_for(params),
           "per_document_attention": bool(params.train.per_document_attention),
           "model": model_identity(params), "model_content": model_content(params.model),
           "eval_settings": settings, "heldout_data": data, "code": code_hash(), "versions": library_versions(),
           "assets": asset_pins()}
    if final and final_tasks(params):
        out["final_tasks"] = final_tasks(params)
    return out


def eval_fingerprint(params: ExperimentParams, data_dir: Path, weights: str = "", precision: str | None = None,
                     final: bool = False) -> str:
    """What an evaluation result depends on: ``evaluation_settings`` (with ``final``: the final tasks too)
    and the weights."""
    blob = json.dumps([evaluation_settings(params, data_dir, precision, final), weights], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def heldout_fingerprint(params: ExperimentParams, data_dir: Path, precision: str | None = None,
                        device: str = "cpu") -> str:
    """What the held-out part of an evaluation depends on besides the weights: ``evaluation_settings``
    without the task settings, plus the held-out splits, sequences and batch (``eval.heldout_splits``,
    ``eval.perplexity_max_sequences``, ``eval.batch_size``). A held-out result computed during training
    with these settings is the one the checkpoint's evaluation would compute, so it is stored with the checkpoint and reused
    (``cpt_utils.heldout_eval``). ``device``: where it was computed (evaluation runs on the CPU; a GPU's
    kernels round differently, so a point scored on a GPU during training is not reused)."""
    settings = evaluation_settings(params, data_dir, precision)
    settings.pop("eval_settings")
    # the seed too: it picks a tiny model's initial weights, the "base" of runs/<run>/heldout/base.json
    settings["heldout"] = [params.eval.perplexity_max_sequences, params.eval.batch_size, device, params.seed,
                           params.eval.heldout_splits]
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def write_result(run_dir: Path, name: str, result: dict) -> Path:
    """Write ``evals/<name>.json`` atomically (a half-written file is never read as a result)."""
    out = Path(run_dir) / "evals" / f"{name}.json"
    atomic_write_json(out, result)
    return out


def read_current(run_dir: Path, name: str, fingerprint: str) -> dict | None:
    """The stored result of ``name`` if it matches ``fingerprint``, else None."""
    path = Path(run_dir) / "evals" / f"{name}.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if result.get("eval_fingerprint") == fingerprint else None


def results_table(run_dir: Path):
    """The current ``evals/*.json`` of a run as a tidy DataFrame: checkpoint, tokens, measure, value, stderr, n."""
    import pandas as pd  # lazy: reading a result must not import pandas

    rows = []
    for r in current_results(run_dir).values():  # a stale result (retrained, removed) is not shown
        for split, p in r["perplexity"].items():
            n = p.get("documents", p["sequences"])
            rows.append({"checkpoint": r["checkpoint"], "tokens": r["tokens"], "measure": f"{split} loss",
                         "value": p["loss"], "stderr": p["loss_se"], "n": n})
            if "bits_per_byte" in p:
                rows.append({"checkpoint": r["checkpoint"], "tokens": r["tokens"], "measure": f"{split} bits/byte",
                             "value": p["bits_per_byte"], "stderr": p.get("bits_per_byte_se", float("nan")), "n": n})
        for task, t in r["tasks"].items():
            rows.append({"checkpoint": r["checkpoint"], "tokens": r["tokens"], "measure": f"{task} ({t['metric']})",
                         "value": t["value"], "stderr": t["stderr"], "n": t["n"]})
            if "gold_bpb" in t:
                rows.append({"checkpoint": r["checkpoint"], "tokens": r["tokens"], "measure": f"{task} (gold bits/byte)",
                             "value": t["gold_bpb"], "stderr": t["gold_bpb_se"], "n": t["n"]})
    return pd.DataFrame(rows, columns=["checkpoint", "tokens", "measure", "value", "stderr", "n"]).sort_values(
        ["tokens", "measure"]).reset_index(drop=True)


def stale_reason(result: dict, run_dir: Path, checkpoints: list[dict] | None = None,
                 settings: dict | None = None) -> str | None:
    """Why a stored result no longer describes the weights that exist now (None when it still does).

    A checkpoint's result is current while a checkpoint of that name exists with the weights the result
    recorded (``weights``); a borrowed result (``same_as``, a variant that is the main recipe) is judged
    against the main run it came from. With ``settings`` (``evaluation_settings`` of the parameters now)
    the evaluation settings must match too (``final_tasks`` only where the result scored them: pass the
    settings with ``final=True``). A result without a ``weights`` record is accepted only
    where the run has no checkpoints to check it against (a hand-made record)."""
    run_dir = Path(run_dir)
    name = result.get("checkpoint")
    if settings is not None:
        recorded = result.get("evaluated_with") or {}
        if "final_tasks" not in recorded:  # a milestone's result: the final tasks are not its to have
            settings = {k: v for k, v in settings.items() if k != "final_tasks"}
        differ = differences(recorded, settings, strict=True)
        if differ:
            return f"{name}: evaluated with other {', '.join(differ)}"
    if name == "base":
        weights = result.get("weights")
        return None if weights is None or weights.startswith("base:") else f"base: scored other weights ({weights})"
    owner = run_dir.parent.parent if result.get("same_as") else run_dir
    if checkpoints is None or result.get("same_as"):
        checkpoints = list_checkpoints(owner)
    if "weights" not in result and not (owner / "checkpoints").is_dir():
        return None
    found = next((c for c in checkpoints if c.get("name") == name), None)
    if found is None:
        return f"{name}: its checkpoint no longer exists (retrained or removed)"
    if result.get("weights") != weights_identity(found, ""):
        return f"{name}: the checkpoint was retrained after this evaluation"
    return None


def current_results(run_dir: Path, settings: dict | None = None) -> dict[str, dict]:
    """The run's stored results that still describe its weights (``stale_reason``), by checkpoint name,
    sorted by tokens."""
    run_dir = Path(run_dir)
    checkpoints = list_checkpoints(run_dir)
    found = {}
    for path in sorted((run_dir / "evals").glob("*.json")):
        try:
            r = json.loads(path.read_text())
        except ValueError:
            continue
        if "perplexity" in r and stale_reason(r, run_dir, checkpoints, settings) is None:
            found[r["checkpoint"]] = r
    return dict(sorted(found.items(), key=lambda kv: kv[1]["tokens"]))
