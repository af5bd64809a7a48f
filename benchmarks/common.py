"""Timing, memory and hardware helpers shared by the benchmark items.

Every figure is a median of several timed repetitions after warm-up calls,
measured with ``time.perf_counter`` at a fixed torch thread count.  Peak
memory is the peak resident set size (``ru_maxrss``) of the child process
that ran only that item, and its increase over the resident size just before
the first timed call; on CUDA, ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from typing import Callable

import torch


def rss_mb() -> float:
    """Current resident set size of this process (MiB)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def timed(fn: Callable[[], object], warmup: int, reps: int, sync: Callable[[], None] | None = None) -> dict:
    """Run ``fn`` ``warmup`` times untimed, then ``reps`` times timed; seconds and memory.

    Returns ``median_s``, ``min_s``, ``max_s`` (wall clock), ``cpu_median_s``
    (process CPU time: on a busy machine it stays close to the unloaded time
    while the wall clock does not), ``reps``, ``warmup``, the load average
    before and after, and memory figures (see module doc).
    """
    sync = sync or (lambda: None)
    rss_before = rss_mb()
    for _ in range(warmup):
        fn()
        sync()
    load_before = load_average()
    times, cpu = [], []
    for _ in range(reps):
        sync()
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    peak = peak_rss_mb()
    out = {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "cpu_median_s": statistics.median(cpu),  # CPU time of all threads of this process
        "reps": reps,
        "warmup": warmup,
        "load_before": load_before,
        "load_after": load_average(),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak, 1),
        "peak_extra_mb": round(max(0.0, peak - rss_before), 1),
    }
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mem_total_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def hardware(threads: int) -> dict:
    """The machine the figures were taken on."""
    import numpy

    hw = {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": mem_total_gb(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(library default)"),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
    return hw


def write_between(page, start: str, end: str, text: str) -> None:
    """Rewrite the part of the page ``page`` (a path) between the markers ``start`` and ``end``
    with ``text`` (the markers stay): how the studies put their generated tables into the docs."""
    from pathlib import Path

    page = Path(page)
    old = page.read_text()
    a, b = old.index(start) + len(start), old.index(end)
    page.write_text(old[:a] + "\n" + text + "\n" + old[b:])
