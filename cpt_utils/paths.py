"""Where things live: one cache directory for everything downloaded or converted, one run directory per
parameter file. Both are derived here so that no other module invents a path of its own."""

from __future__ import annotations

import glob
import os
from pathlib import Path

#: The repository root (the folder that holds notebooks/, params/, reports/).
REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The one cache folder (assets, converted models, HF and matplotlib caches).

    Override with ``CPT_CACHE``; the default follows XDG so a second clone reuses the same files.
    """
    root = os.environ.get("CPT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cpt"
    )
    path = Path(root).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_root() -> Path:
    """Folder holding one run directory per experiment (``CPT_RUNS`` overrides; default ``<repo>/runs``)."""
    return Path(os.environ.get("CPT_RUNS") or REPO_ROOT / "runs").resolve()


def reports_root() -> Path:
    """Folder holding one report folder per experiment (``CPT_REPORTS`` overrides)."""
    return Path(os.environ.get("CPT_REPORTS") or REPO_ROOT / "reports").resolve()


def notebooks_dir() -> Path:
    """The numbered notebooks the pipeline runs (``CPT_NOTEBOOKS`` overrides, e.g. in tests)."""
    return Path(os.environ.get("CPT_NOTEBOOKS") or REPO_ROOT / "notebooks").resolve()


def run_dir(run_name: str) -> Path:
    path = runs_root() / run_name
    path.mkdir(parents=True, exist_ok=True)
    return path


def switched_off(variable: str) -> bool:
    """Whether the opt-out environment variable ``variable`` (``CPT_ROW_BLOCKS``, ``CPT_MALLOC_TUNING``…) says
    off: ``off``, ``0``, ``false`` or ``no``, in any case and spacing."""
    return os.environ.get(variable, "").strip().lower() in ("off", "0", "false", "no")


def configure_environment(offline: bool = True) -> None:
    """Point every library cache at folders we own, and forbid the hub when offline.

    Called by the CLI, the notebooks and the tests before anything imports transformers, so that HF,
    datasets, lm-eval and matplotlib never write to (or read from) places the run does not control.
    """
    cache = cache_dir()
    os.environ.setdefault("HF_HOME", str(cache / "hf"))
    os.environ.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
    Path(os.environ["MPLCONFIGDIR"]).mkdir(parents=True, exist_ok=True)


def match_files(pattern: str, base_dir: Path) -> tuple[list[Path], str | None]:
    """The files a path or glob names (``~`` is the home folder, relative ones start at ``base_dir``), or why
    there are none."""
    expanded = os.path.expanduser(pattern)
    full = expanded if Path(expanded).is_absolute() else str(Path(base_dir) / expanded)
    matches = sorted(glob.glob(full, recursive=True))
    files = [Path(m) for m in matches if Path(m).is_file()]
    if files:
        return files, None
    if matches:
        return [], f"'{pattern}' matches only folders ({matches[0]}); name the files, e.g. '{pattern.rstrip('/')}/*.jsonl'"
    what = "no file matches" if glob.has_magic(pattern) else "file not found:"
    return [], f"{what} '{pattern}' (looked in {Path(base_dir).resolve()})"
