"""Where every second of a `cpt run` goes: py-spy samples of each notebook's kernel, grouped by job.

    pip install py-spy                                   # a profiler, not a dependency of cpt
    python benchmarks/profile_quickstart.py run  [PARAMS] [--out prof.raw] [--rate 10]
    python benchmarks/profile_quickstart.py show prof.raw [--rate 10]

``run`` runs ``cpt run PARAMS`` (default: the quickstart) with every notebook kernel started under
``py-spy record --idle`` (a ``python3`` kernelspec that wraps ipykernel, found first through
``JUPYTER_PATH``: ``py-spy --subprocesses`` on ``cpt run`` itself did not follow papermill's kernels), one
raw file per kernel in ``--out``, then prints the table; ``show DIR`` prints it for existing raw files.
Kernels start in notebook order, so the files' modification order tells the notebooks apart. Inside a kernel a sample is put in the first job, in the order of ``JOBS``, whose function is
on its stack — so a model load inside an evaluation counts as "model loads", the tasks' lm-eval set-up
as "task suite". Only the kernel's main thread while a cell runs is counted (``run_cell`` on the stack),
so the rows of a notebook add up to its cell time (kernel start-up, papermill and the rendering are in
the index's per-notebook wall time, not here). py-spy samples without pausing the kernel
(``--nonblocking``): by default it stops the process at every sample (a run sampled that way had
training steps of a median 3.8 s against 2.5 s in ``train_step_probe.py``; not separated from this
machine's own variation).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

#: (job, a function on the stack that marks it); the first match wins, so nested work comes first
JOBS: list[tuple[str, str]] = [
    ("imports", "_find_and_load ("),
    ("model loads", "load_checkpoint_model ("),
    ("model loads", "load_model ("),
    ("checkpoint writes", "save_checkpoint ("),
    ("in-loop held-out evaluation", "_log_eval ("),
    ("held-out evaluation", "perplexity ("),
    ("contamination scan", "_check_contamination ("),
    ("task suite: building task folders", "build_task_dir ("),
    ("task suite: scoring", "_loglikelihood_tokens ("),
    ("task suite: lm-eval set-up and metrics", "run_tasks ("),
    ("training steps", "_train_step ("),
    ("training set-up", "setup (cpt_utils/train.py"),
    ("training: other", "fit (cpt_utils/train.py"),
    ("preprocessing", "prepare_data ("),
    ("figures", "matplotlib"),
    ("statistics and tables", "cpt_utils/"),
]
LINE_END = re.compile(r" (\d+)$")


def read_raw(path: Path) -> list[tuple[str, int]]:
    """(stack, samples) pairs from py-spy's raw format (a command line may span several lines)."""
    out, pending = [], ""
    for line in Path(path).read_text(errors="replace").splitlines():
        pending = f"{pending}\n{line}" if pending else line
        match = LINE_END.search(pending)
        if match:
            out.append((pending[:match.start()], int(match.group(1))))
            pending = ""
    return out


def classify(stack: str) -> str:
    for job, marker in JOBS:
        if marker in stack:
            return job
    return "other (kernel)"


def summarize(raw: Path, rate: float) -> dict[str, float]:
    """Seconds per job of one kernel's raw file (its main thread while a cell runs)."""
    seconds: dict[str, float] = defaultdict(float)
    for stack, count in read_raw(raw):
        if "run_cell (" in stack:  # idle between cells, heartbeat and iopub threads are left out
            seconds[classify(stack)] += count / rate
    return seconds


def print_table(folder: Path, rate: float) -> None:
    files = sorted(Path(folder).glob("*.raw"), key=lambda p: p.stat().st_mtime)
    per = [summarize(f, rate) for f in files]
    names = [f"kernel {i + 1}" for i in range(len(files))]
    order = [n for n, _ in JOBS] + ["other (kernel)"]
    jobs = sorted({j for s in per for j in s}, key=order.index)
    print("| job | " + " | ".join(names) + " | all |")
    print("|---|" + "---:|" * (len(files) + 1))
    for job in jobs:
        row = [s.get(job, 0.0) for s in per]
        print(f"| {job} | " + " | ".join(f"{x:,.0f}" for x in row) + f" | {sum(row):,.0f} |")
    totals = [sum(s.values()) for s in per]
    print("| **cells in all** | " + " | ".join(f"**{x:,.0f}**" for x in totals) + f" | **{sum(totals):,.0f}** |")


def profiled_kernelspec(out: Path, rate: float, spy: str) -> Path:
    """A ``python3`` kernelspec that starts ipykernel under py-spy, writing ``out/<kernel>.raw``."""
    spec = out / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    command = (f"exec {spy} record -r {int(rate)} --idle --nonblocking -f raw -o {out}/$(basename {{connection_file}} .json).raw -- "
               f"{sys.executable} -m ipykernel_launcher -f {{connection_file}}")
    (spec / "kernel.json").write_text(json.dumps({"argv": ["bash", "-c", command], "display_name": "Python 3 (py-spy)",
                                                  "language": "python"}))
    return out / "jupyter"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="profile `cpt run PARAMS` and print where the time went")
    run.add_argument("params", nargs="?", default="params/quickstart.yaml")
    run.add_argument("--out", default="quickstart-profile", help="folder for the raw files")
    run.add_argument("--rate", type=int, default=10)
    show = sub.add_parser("show", help="print the table for a folder of py-spy raw files")
    show.add_argument("out")
    show.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.command == "run":
        spy = shutil.which("py-spy")
        if spy is None:
            raise SystemExit("py-spy not found: pip install py-spy (a profiler; not one of cpt's dependencies)")
        out = Path(args.out).resolve()
        out.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "JUPYTER_PATH": str(profiled_kernelspec(out, args.rate, spy))}
        code = subprocess.call([str(Path(sys.executable).with_name("cpt")), "run", args.params], env=env)
        if code:
            raise SystemExit(f"cpt run exited {code}")
    print_table(Path(args.out), args.rate)


if __name__ == "__main__":
    main()
