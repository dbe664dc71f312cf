"""The GPU benchmark's kit: what a lent GPU machine needs to run ``train_throughput.py --gpu``, made here.

A lent GPU (an H100 or H200) comes bare for each session, with its own Python 3.12 and CUDA PyTorch, no
package index and no hub, and 15 minutes of device time in all, its start included: there is no time to
improvise an environment there (one earlier session ran out before its reference loop). So everything is
made here, where PyPI is reachable, into ``.gpu/`` (ignored by git; ≈ 39 MiB, under the 64 MiB a call
carries), and the machine runs one prepared script:

    .venv/bin/python benchmarks/gpu_kit.py          # here: writes .gpu/{model,data,whl}
    # then one call of the device tool: command `bash benchmarks/gpu_run.sh`, carry [".gpu"], timeout_s 600

- ``.gpu/model``: SmolLM2-135M's ``config.json`` and tokenizer without weights (the packaged GGUF is
  ≈ 100 MB); the benchmark's ``--random-weights`` makes seeded weights from them there — step time depends
  on shapes, not values.
- ``.gpu/data``: the quickstart corpus packed at 2,048 tokens with that tokenizer (``--data-dir``).
- ``.gpu/whl``: cp312 wheels, at ``requirements.lock``'s versions, of every distribution the benchmark
  imports that the machine's own PyTorch does not bring (``CARRIED``); ``gpu_run.sh`` installs them with
  ``--no-index --no-deps`` first. ``tests/test_gpu_kit.py`` runs the benchmark on a tiny model and fails
  when it imports a distribution in neither list, so a new import cannot break the next lease unseen.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as bench  # noqa: E402  (the benchmark this kit carries; it puts ROOT on sys.path)

#: What the benchmark imports beyond the machine's PyTorch: carried as wheels at the lock's versions
#: (the machine's own transformers, tokenizers and hub client differ from the pins; pydantic is absent).
CARRIED = (
    "accelerate", "annotated-types", "anyio", "certifi", "h11", "hf-xet", "httpcore2", "httpx2",
    "huggingface-hub", "idna", "packaging", "psutil", "pydantic", "pydantic-core", "pyyaml", "regex",
    "safetensors", "tokenizers", "tqdm", "transformers", "truststore", "typing-inspection", "xxhash",
)

#: In the lent machine's image (the device library's KINDS.md, its package list read 2026-11-17), never
#: carried: PyTorch and what it was built with or pins (numpy's ABI), and the libraries that torch and
#: transformers import where present (sentencepiece, protobuf, scipy, colorama, tabulate, charset-normalizer).
DEVICE_PROVIDES = (
    "torch", "triton", "numpy", "sympy", "mpmath", "networkx", "jinja2", "markupsafe", "fsspec", "filelock",
    "typing-extensions", "setuptools", "pillow", "sentencepiece", "protobuf", "scipy", "colorama", "tabulate",
    "charset-normalizer",
)

#: Imported only where installed and absent from the image (torch tries dill; tabulate tries wcwidth).
OPTIONAL = ("dill", "wcwidth")

#: The device README's platform tags for `pip download` of manylinux wheels.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")

SEQ_LEN = 2048


def locked_versions(lock: Path = ROOT / "requirements.lock") -> dict[str, str]:
    """``name → version`` from the lock's ``name==version`` lines (names canonical, as pip compares them)."""
    pins = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name.split("[", 1)[0])] = version.split(";", 1)[0].strip()
    return pins


def write_model_folder(out: Path) -> Path:
    """The packaged SmolLM2-135M's config and tokenizer files, without its weights."""
    from cpt_utils.config import load_params
    from cpt_utils.modeling import resolve_model_dir

    source = Path(resolve_model_dir(load_params(ROOT / "params/quickstart.yaml").model))
    return bench.copy_config_and_tokenizer(source, out)


def write_data(out: Path, seq_len: int = SEQ_LEN) -> Path:
    """The data the benchmark prepares for itself at ``seq_len`` (the quickstart corpus, the packaged
    tokenizer; ``train_throughput.prepare_data``, cached under the runs folder), copied to ``out``."""
    args = argparse.Namespace(data_dir=None, seq_len=seq_len, attn="auto", model_dir=None)
    bench.prepare_data(args)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(bench._data_dir(args), out)
    return out


def download_wheels(out: Path, python_version: str = "3.12", names: tuple[str, ...] = CARRIED) -> list[Path]:
    """``names`` at the lock's versions as wheels for ``python_version`` on manylinux x86-64 (no deps:
    ``CARRIED`` names each one the benchmark needs)."""
    pins = locked_versions()
    missing = [n for n in names if canonicalize_name(n) not in pins]
    if missing:
        raise SystemExit(f"not in requirements.lock: {', '.join(missing)} (CARRIED must name locked distributions)")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", python_version, "--implementation", "cp", *platforms, "-d", str(out),
                    *(f"{n}=={pins[canonicalize_name(n)]}" for n in names)], check=True)
    return sorted(out.glob("*.whl"))


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / ".gpu"), help="the kit's folder (default .gpu, ignored by git)")
    parser.add_argument("--python-version", default="3.12", help="the lent machine's Python (wheels' tags)")
    args = parser.parse_args(argv)
    from cpt_utils.paths import configure_environment

    configure_environment(offline=True)
    out = Path(args.out)
    model = write_model_folder(out / "model")
    data = write_data(out / "data")
    wheels = download_wheels(out / "whl", args.python_version)
    for part in (model, data, out / "whl"):
        print(f"{part}: {folder_bytes(part) / 2**20:.1f} MiB")
    print(f"{len(wheels)} wheels; kit {folder_bytes(out) / 2**20:.1f} MiB in all (a device call carries 64 MiB "
          "with the working tree)\nnext, on a lent GPU: the device tool's run with command "
          "`bash benchmarks/gpu_run.sh`, carry [\".gpu\"], timeout_s 600 (or `gpu_run.sh flex` alone first, 400)")


if __name__ == "__main__":
    main()
