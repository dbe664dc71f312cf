"""Where every second of a `cpt run` goes: py-spy samples of each notebook's kernel, grouped by job.

    pip install py-spy                                   # a profiler, not a dependency of cpt
    python benchmarks/profile_quickstart.py run  [PARAMS] [--out prof.raw] [--rate 10]
    python benchmarks/profile_quickstart.py show prof.raw [--rate 10]

``run`` wraps ``cpt run PARAMS`` (default: the quickstart) in ``py-spy record --subprocesses --idle`` and
then prints the table; ``show`` prints it for an existing raw file. Each notebook runs in its own
kernel process (papermill), so the process id tells the notebooks apart (kernels start in notebook
order). Inside a kernel a sample is put in the first job, in the order of ``JOBS``, whose function is
on its stack — so a model load inside an evaluation counts as "model loads", the tasks' lm-eval set-up
as "task suite". Only the kernel's main thread while a cell runs is counted (``run_cell`` on the stack),
so the rows of a notebook add up to its cell time; the parent process's own work (papermill, rendering
with nbconvert) is its own row. Sampling at 10 Hz adds ≈ 1% to the run.
"""

from __future__ import annotations

import argparse
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


def summarize(raw: Path, rate: float) -> tuple[dict, dict]:
    """Seconds per (process, job) and each process's label."""
    seconds: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    labels: dict[int, str] = {}
    for stack, count in read_raw(raw):
        head, _, frames = stack.partition(";")
        match = re.match(r'process (\d+):"(.*)"', head, re.S)
        if not match:
            continue
        pid, cmd = int(match.group(1)), match.group(2)
        kernel = "ipykernel" in cmd
        labels.setdefault(pid, "kernel" if kernel else cmd.split()[0].rsplit("/", 1)[-1])
        if kernel:
            if "run_cell (" not in frames:
                continue  # idle between cells, or a kernel thread (heartbeat, iopub)
            seconds[pid][classify(frames)] += count / rate
        elif "execute_notebook (" in frames and "render_html" not in frames:
            continue  # the parent waiting on the kernel: counted in the kernel
        else:
            seconds[pid]["parent: " + ("rendering" if "render_html (" in frames else
                                        "start-up and imports" if "_find_and_load (" in frames else
                                        "waiting and other")] += count / rate
    return seconds, labels


def print_table(raw: Path, rate: float, names: list[str] | None = None) -> None:
    seconds, labels = summarize(raw, rate)
    kernels = sorted(pid for pid, label in labels.items() if label == "kernel")
    names = names or [f"kernel {i + 1}" for i in range(len(kernels))]
    jobs = sorted({job for pid in kernels for job in seconds[pid]}, key=lambda j: [n for n, _ in JOBS].index(j)
                  if j in [n for n, _ in JOBS] else len(JOBS))
    print("| job | " + " | ".join(names) + " | all |")
    print("|---|" + "---:|" * (len(kernels) + 1))
    for job in jobs:
        row = [seconds[pid].get(job, 0.0) for pid in kernels]
        print(f"| {job} | " + " | ".join(f"{s:,.0f}" for s in row) + f" | {sum(row):,.0f} |")
    totals = [sum(seconds[pid].values()) for pid in kernels]
    print("| **cells in all** | " + " | ".join(f"**{s:,.0f}**" for s in totals) + f" | **{sum(totals):,.0f}** |")
    for pid, label in labels.items():
        if label != "kernel":
            for job, s in sorted(seconds[pid].items()):
                if s >= 1:
                    print(f"{label} (pid {pid}) {job}: {s:,.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="profile `cpt run PARAMS` and print where the time went")
    run.add_argument("params", nargs="?", default="params/quickstart.yaml")
    run.add_argument("--out", default="quickstart-profile.raw")
    run.add_argument("--rate", type=float, default=10.0)
    show = sub.add_parser("show", help="print the table for an existing py-spy raw file")
    show.add_argument("raw")
    show.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.command == "run":
        spy = shutil.which("py-spy")
        if spy is None:
            raise SystemExit("py-spy not found: pip install py-spy (a profiler; not one of cpt's dependencies)")
        cpt = str(Path(sys.executable).with_name("cpt"))
        code = subprocess.call([spy, "record", "-r", str(args.rate), "--subprocesses", "--idle", "-f", "raw",
                                "-o", args.out, "--", cpt, "run", args.params])
        if code:
            raise SystemExit(f"cpt run exited {code}")
        args.raw = args.out
    print_table(Path(args.raw), args.rate)


if __name__ == "__main__":
    main()
