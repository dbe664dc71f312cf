"""Stored evaluation results: ``runs/<run>/evals/<checkpoint>.json``, what they are keyed on, and the
tidy table the notebooks read.

A stored result is reused only while it still describes the same thing: the evaluation settings, the
held-out data's content, the evaluation code, and the **identity of the weights** it scored (the
checkpoint's trajectory, step and save time; the base model's id). A retrained run (``resume: never``)
therefore never shows the previous model's scores.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

HERE = Path(__file__).parent
#: The modules whose code changes what an evaluation computes.
EVAL_CODE = ("evaluate.py", "perplexity.py", "task_suite.py", "scoring.py", "precision.py")


def weights_identity(checkpoint: dict | None, model_id: str) -> str:
    """What identifies the scored weights: the base model's id, or a checkpoint's trajectory, step and
    save time (a retrained checkpoint of the same name has another time)."""
    if checkpoint is None:
        return f"base:{model_id}"
    return f"{checkpoint.get('trajectory_fingerprint')}:{checkpoint.get('step')}:{checkpoint.get('time')}"


def eval_fingerprint(params, data_dir: Path, weights: str = "") -> str:
    """What an evaluation result depends on: eval settings, held-out data, code and weights."""
    manifest = Path(data_dir) / "manifest.json"
    prepared = json.loads(manifest.read_text()) if manifest.is_file() else {}
    content = prepared.get("content_hash")
    # content_hash covers the standard splits only: each register's held-out split (val_<name>) counts too,
    # or a result measured before a register was declared would be reused without it
    heldout = {name: s.get("content_hash") for name, s in prepared.get("splits", {}).items() if name.startswith("val_")}
    files = [HERE / f for f in EVAL_CODE if (HERE / f).is_file()] + sorted((HERE / "tasks").glob("*.*"))
    code = hashlib.sha256(b"".join(p.read_bytes() for p in files if p.suffix in (".py", ".yaml"))).hexdigest()[:12]
    blob = json.dumps([params.eval.model_dump(mode="json"), params.train.precision, content, params.offline, code,
                       weights, heldout], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_result(run_dir: Path, name: str, result: dict) -> Path:
    """Write ``evals/<name>.json`` atomically (a half-written file is never read as a result)."""
    out = Path(run_dir) / "evals" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)
    return out


def read_current(run_dir: Path, name: str, fingerprint: str) -> dict | None:
    """The stored result of ``name`` if it matches ``fingerprint``, else None."""
    path = Path(run_dir) / "evals" / f"{name}.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if result.get("eval_fingerprint") == fingerprint else None


def results_table(run_dir: Path):
    """All ``evals/*.json`` of a run as a tidy DataFrame: checkpoint, tokens, measure, value, stderr, n."""
    import pandas as pd

    rows = []
    for path in sorted((Path(run_dir) / "evals").glob("*.json")):
        r = json.loads(path.read_text())
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
