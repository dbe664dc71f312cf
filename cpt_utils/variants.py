"""Mitigation variants: short training runs that share the prepared data and differ in one knob
(replay ratio, peak LR, L2 pull toward the initial weights…), each evaluated like the main run.

Each variant trains into ``runs/<run>/variants/<name>/`` with its own metrics, checkpoints and evals, so
a finished variant is reused (training and evaluation skip work whose parameters are unchanged) and a
new variant added to the parameter file is the only one that runs.
"""

from __future__ import annotations

from pathlib import Path

from .params import ExperimentParams


def variant_dir(run_dir: str | Path, name: str) -> Path:
    return Path(run_dir) / "variants" / name


def run_variants(params: ExperimentParams, run_dir: str | Path, progress: bool = True) -> dict[str, dict]:
    """Train and evaluate every variant in ``params.variants``; return their final evaluations."""
    from .analysis import final_eval
    from .evaluate import evaluate_run
    from .train import train

    run_dir = Path(run_dir)
    data_dir = run_dir / "data"
    results = {}
    for name, spec in params.variants.items():
        vparams = params.variant(name)
        vdir = variant_dir(run_dir, name)
        if progress:
            print(f"variant {name}: {spec.description or spec.train}", flush=True)
        train(vparams, vdir, data_dir=data_dir, progress=progress)
        evaluate_run(vparams, vdir, data_dir=data_dir, progress=progress, include_base=False)
        results[name] = final_eval(vdir)
    return results
