"""What this machine's matmuls can do: the denominator of MFU.

CPU: the bf16 and fp32 matmul peaks are *measured* once per machine (a few seconds) and cached as JSON
in ``cache_dir()/hardware/``, keyed by CPU model, core count and torch thread count — DESIGN §8 shows
why a table cannot work: an AMX Xeon multiplies bf16 6× faster than fp32, an AVX2 EPYC 200× slower.
GPU: dense bf16 peaks from the vendors' data sheets, matched on the *exact* device name; an unknown
GPU has peak ``None`` and its MFU is shown as unknown rather than guessed (issue 13 item 5).

MFU = tokens/s per device × FLOPs per token ÷ ``peak_flops(...)``, where the peak is the faster of the
machine's bf16 and fp32 matmul: a run that leaves a faster precision unused shows it as low MFU. The CPU
peak is the maximum ever measured on the machine (a busy machine reads low), measured again until one
measurement had the machine to itself, and MFU is never shown above 100%: a value that would be is
flagged as a stale peak and reported as unknown.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
import warnings
from pathlib import Path

from .atomic import atomic_write_json
from .paths import cache_dir

#: Dense (no sparsity) bf16 tensor-core peaks, FLOP/s, keyed by ``torch.cuda.get_device_name()``.
GPU_PEAK_BF16_FLOPS: dict[str, float] = {
    "NVIDIA H100 80GB HBM3": 989e12,          # H100 SXM
    "NVIDIA H100 PCIe": 756e12,
    "NVIDIA H100 NVL": 835e12,
    "NVIDIA H200": 989e12,
    "NVIDIA GH200 480GB": 989e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "NVIDIA A100-PCIE-40GB": 312e12,
    "NVIDIA L4": 121e12,
    "NVIDIA L40S": 362e12,
    "NVIDIA L40": 181e12,
    "NVIDIA A10": 125e12,
    "NVIDIA A10G": 70e12,
    "NVIDIA GeForce RTX 4090": 165e12,
    "NVIDIA GeForce RTX 3090": 71e12,
}


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), or ``platform.processor()`` elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_key(threads: int) -> str:
    raw = f"{cpu_model()}-{os.cpu_count()}cores-{threads}threads"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)


def measure_matmul_flops(dtype: str, budget_s: float = 1.0) -> float:
    """Peak FLOP/s of square matmuls in ``dtype`` (``bf16``/``fp32``) on the CPU, in ~``budget_s``.

    The size grows 256 → 2048 while one product stays fast, so a CPU that emulates bf16 (≈ 0.2 GFLOP/s)
    costs about a second instead of minutes. Each product is timed both by the wall clock and by the
    CPU time of torch's threads (FLOPs × threads ÷ CPU-seconds: a descheduled thread does not count on
    a shared machine). Both are lower bounds of the true peak, so the best of them over several repeats
    at the largest size is kept. On a heavily shared machine it still reads low (OpenMP threads spin
    while waiting for a descheduled sibling): refresh the cache on a quiet machine for MFU you report.
    """
    import torch  # lazy: reading the cached peak must not import torch

    torch_dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    threads = torch.get_num_threads()
    n = 256
    while True:
        a = torch.randn(n, n, dtype=torch_dtype)
        b = torch.randn(n, n, dtype=torch_dtype)
        start = time.perf_counter()
        a @ b  # warm-up (oneDNN/MKL kernel selection)
        first = time.perf_counter() - start
        if n < 2048 and first * 8 <= budget_s / 2:
            n *= 2
            continue
        best, deadline = 0.0, time.perf_counter() + budget_s / 2
        while True:
            wall, cpu = time.perf_counter(), time.process_time()
            a @ b
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best = max(best, 2 * n**3 / wall, 2 * n**3 * threads / cpu if cpu > 0 else 0.0)
            if time.perf_counter() > deadline:
                return best


#: A measurement during which other processes kept more than this many cores busy (beyond the cores torch's
#: threads leave free) competed with them and may read low: the entry is measured again at its next use.
#: An idle 2-core machine reads 0.05-0.09 (its daemons); the test suite running beside it, 1.0.
QUIET_COMPETING_CORES = 0.25

#: The older rule, for cache entries written before competition was recorded: a 1-minute load average above
#: this many runnable tasks per core marks the entry as measured under load.
QUIET_LOAD_PER_CORE = 0.5


def _cpu_seconds() -> tuple[float, float] | None:
    """(CPU-seconds every process has used since boot, including time the hypervisor gave to other guests;
    CPU-seconds of this process), or None where psutil cannot read the machine's times."""
    import psutil  # lazy, like torch: reading the cached peak needs neither

    try:
        times = psutil.cpu_times()._asdict()
    except (OSError, NotImplementedError, psutil.Error):
        return None
    # idle and iowait leave the core free; Linux counts guest time inside user time already
    busy = sum(v for k, v in times.items() if k not in ("idle", "iowait", "guest", "guest_nice"))
    return busy, time.process_time()


def _competing_cores(before: tuple[float, float] | None, after: tuple[float, float] | None, wall: float,
                     threads: int) -> float | None:
    """Cores other processes kept busy during a measurement, beyond those torch's threads left free.

    The 1-minute load average cannot say this: it lags by minutes, so it still counts work that has
    ended (a report started right after the test suite) and misses work that has just begun."""
    if before is None or after is None or wall <= 0:
        return None
    others = max(0.0, (after[0] - before[0]) - (after[1] - before[1])) / wall
    free = max(0, (os.cpu_count() or 1) - threads)
    return max(0.0, others - free)


def _cache_path(threads: int) -> Path:
    return cache_dir() / "hardware" / f"{_cpu_key(threads)}.json"


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or half-written: measure again


def _measured_under_load(entry: dict) -> bool:
    """True when no measurement behind the entry is known to have had the machine to itself.

    Entries record ``quiet``: whether any of their measurements ran with at most ``QUIET_COMPETING_CORES``
    of competition. Older entries only have the load average at measurement (``QUIET_LOAD_PER_CORE``)."""
    if "quiet" in entry:
        return not entry["quiet"]
    load = entry.get("load_average_1min")
    return load is None or load / (entry.get("cores") or os.cpu_count() or 1) > QUIET_LOAD_PER_CORE


def cpu_peak_flops(refresh: bool = False) -> dict[str, float]:
    """``{"bf16": FLOP/s, "fp32": FLOP/s, ...}`` for this CPU at torch's current thread count.

    A matmul peak measured on a busy machine reads low (a shared machine's other work takes the cores)
    and a low peak inflates MFU: a peak measured while the test suite ran made a quickstart report show
    98.7% MFU for a step at ≈ 52%. So the cached value is the *maximum ever measured* here, each
    measurement records the cores other processes used meanwhile (the machine's busy time less this
    process's, from psutil), and an entry none of whose measurements had the machine to itself is
    measured again at its next use — whatever the load average says, which lags by minutes. ``refresh``
    measures again unconditionally; each new measurement only ever raises the cached peaks. Peaks measured
    with fewer torch threads are lower bounds too (more threads never make the machine slower), so they count.
    """
    import torch  # lazy: reading the cached peak must not import torch

    threads = torch.get_num_threads()
    path = _cache_path(threads)
    cached = _read(path)
    if cached is not None and not refresh and not _measured_under_load(cached):
        return _with_fewer_threads(cached, threads)
    load = os.getloadavg()[0]
    before, start = _cpu_seconds(), time.perf_counter()
    fresh = {"bf16": measure_matmul_flops("bf16"), "fp32": measure_matmul_flops("fp32")}
    competing = _competing_cores(before, _cpu_seconds(), time.perf_counter() - start, threads)
    # where competition cannot be measured (psutil cannot read the times), the load average decides
    if competing is not None:
        quiet, busy = competing <= QUIET_COMPETING_CORES, f"other processes kept {competing:.2f} cores busy"
    else:
        quiet, busy = load / (os.cpu_count() or 1) <= QUIET_LOAD_PER_CORE, f"the load average was {load:.1f}"
    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads, **fresh,
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_average_1min": load,
              "competing_cores": competing, "quiet": quiet, "measurements": 1}
    if cached is not None:
        result["bf16"], result["fp32"] = max(cached["bf16"], fresh["bf16"]), max(cached["fp32"], fresh["fp32"])
        result["measurements"] = cached.get("measurements", 1) + 1
        result["quiet"] = quiet or not _measured_under_load(cached)  # once quiet, the max is the peak
    if not result["quiet"]:
        warnings.warn(f"the CPU's matmul peak was measured while {busy}: it may read low and MFU high; it is "
                      "measured again at its next use (or: python -m cpt_utils.hardware --refresh)", stacklevel=2)
    atomic_write_json(path, result, indent=1)
    return _with_fewer_threads(result, threads)


def _with_fewer_threads(entry: dict, threads: int) -> dict:
    """``entry`` with each peak raised to the best cached at fewer threads on this CPU (lower bounds)."""
    entry = dict(entry)
    for fewer in range(1, threads):
        other = _read(_cache_path(fewer))
        if other is not None:
            for dtype in ("bf16", "fp32"):
                entry[dtype] = max(entry[dtype], other.get(dtype, 0.0))
    return entry


def gpu_peak_flops(name: str) -> float | None:
    """The dense bf16 peak of the GPU called exactly ``name``; None when it is not in the table."""
    return GPU_PEAK_BF16_FLOPS.get(name.strip())


def peak_flops(device_type: str) -> float | None:
    """The device's best dense matmul FLOP/s (per device), or None when unknown."""
    if device_type == "cuda":
        import torch  # lazy: reading the cached peak must not import torch

        return gpu_peak_flops(torch.cuda.get_device_name())
    if device_type == "cpu":
        peaks = cpu_peak_flops()
        return max(peaks["bf16"], peaks["fp32"])
    return None


def mfu(tokens_per_s_per_device: float, flops_per_token: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation of one device (pass *its* tokens/s, not the sum over processes), or None
    when the peak is unknown — or when the value would exceed 100%, which only a stale (too low) peak
    gives: then a warning says so and how to measure again, instead of an impossible number."""
    if not peak:
        return None
    value = tokens_per_s_per_device * flops_per_token / peak
    if value > 1.0:
        _warn_stale_peak(value, peak)
        return None
    return value


_warned_stale: set[float] = set()


def _warn_stale_peak(value: float, peak: float) -> None:
    if peak not in _warned_stale:
        _warned_stale.add(peak)
        warnings.warn(f"MFU would be {100 * value:.0f}% of a peak of {peak / 1e9:,.1f} GFLOP/s: that peak is stale "
                      "(measured while the machine was busy); MFU is reported as unknown. Measure again on a quiet "
                      "machine: python -m cpt_utils.hardware --refresh", stacklevel=3)


def format_mfu(value: float | None) -> str:
    """``"12.3%"``, or ``"unknown"`` when there is no trustworthy peak."""
    return "unknown" if value is None else f"{100 * value:.1f}%"


def main(argv: list[str] | None = None) -> None:
    """``python -m cpt_utils.hardware [--refresh]``: print (and with --refresh, re-measure) the CPU peaks."""
    import argparse

    parser = argparse.ArgumentParser(description="this CPU's measured matmul peaks (the MFU denominator)")
    parser.add_argument("--refresh", action="store_true", help="measure again (a new peak only ever raises it)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    import torch  # lazy: reading the cached peak must not import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(cpu_peak_flops(refresh=args.refresh), indent=1))


if __name__ == "__main__":
    main()
