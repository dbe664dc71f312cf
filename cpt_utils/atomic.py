"""Atomic writes: a file or folder appears whole under its final name, or not at all.

Every writer of the project (results, manifests, checkpoints, caches, exports) goes through here, so a
run killed mid-write never leaves a half-written JSON that a later run would trust, and two processes
writing the same cache entry never read each other's partial file. The temporary sits beside the
target (same filesystem, so the final ``replace``/``rename`` is atomic) under a name unique to the
process and moment, and is removed if the write fails.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{time.time_ns()}.tmp")


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary beside ``path`` for writing; on success it replaces ``path``, on error it is removed.

    For writers that stream (``pickle.dump``, ``np.save``, ``shutil.copyfileobj``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        with open(tmp, mode, encoding=encoding) as handle:
            yield handle
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically; returns ``path``."""
    path = Path(path)
    if isinstance(data, bytes):
        with atomic_file(path, "wb") as handle:
            handle.write(data)
    else:
        with atomic_file(path, "w", encoding=encoding) as handle:
            handle.write(data)
    return path


def atomic_write_json(path: str | Path, value: Any, **dumps: Any) -> Path:
    """``json.dumps(value, **dumps)`` written atomically (``dumps`` as for ``json.dumps``, e.g. ``indent=1``)."""
    return atomic_write(path, json.dumps(value, **dumps))


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path`` (whatever was there
    goes), on error it is removed. For outputs that are folders: checkpoints, exports, converted models."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    tmp.mkdir()
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish(tmp: str | Path, path: str | Path) -> Path:
    """Put the finished file or folder ``tmp`` in place of ``path`` (whatever was there goes).

    For outputs whose temporary must have a name known in advance: a folder several processes assemble
    (a checkpoint's ``<name>.tmp``), or an append-only file a resumed writer reopens (a split's
    ``documents.jsonl.tmp``), where the per-process names of ``atomic_file``/``atomic_dir`` cannot serve."""
    tmp, path = Path(tmp), Path(path)
    if tmp.is_dir():
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    else:
        tmp.replace(path)
    return path
