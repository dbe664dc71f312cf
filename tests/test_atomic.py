"""The one atomic-write helper: a target is whole or untouched, and no temporary is left behind."""

import json

import numpy as np
import pytest

from cpt_utils.atomic import atomic_dir, atomic_file, atomic_write, atomic_write_json, publish


def test_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "result.json"
    atomic_write_json(target, {"a": 1}, indent=1)
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    atomic_write(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["b.bin", "result.json", "sub"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "array.npy"
    with atomic_file(target) as handle:
        np.save(handle, np.arange(3))
    with pytest.raises(RuntimeError):
        with atomic_file(target) as handle:
            handle.write(b"half")
            raise RuntimeError("killed mid-write")
    assert np.load(target).tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["array.npy"]


def test_folder_is_published_whole_or_not_at_all(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(ValueError):
        with atomic_dir(out) as tmp:
            (tmp / "weights").write_text("v2-partial")
            raise ValueError("crash")
    assert (out / "weights").read_text() == "v1"
    shared = tmp_path / "model.tmp"  # a folder several processes assembled under an agreed name
    shared.mkdir()
    (shared / "weights").write_text("v3")
    publish(shared, out)
    assert (out / "weights").read_text() == "v3" and not shared.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
