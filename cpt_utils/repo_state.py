"""The repository's state now (HEAD commit, uncommitted changes): the provenance the index records for
a run and the model card falls back to when the run recorded none."""

from __future__ import annotations

import subprocess

from .paths import REPO_ROOT


def git_state() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"commit": commit or "unknown (not a git checkout)", "dirty": dirty}
