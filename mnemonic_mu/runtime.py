"""Where a run executes: the device, the thread count, worker processes and the environment recorded with results."""

from __future__ import annotations

import os
import platform
from typing import Callable, Sequence

import torch

from .errors import ConfigError, DeviceError
from .version import __version__


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when present)."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} was requested but this machine has no usable CUDA GPU; use --device cpu (or auto)"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"device {name!r} was requested but this machine has {count} CUDA GPU(s), "
                f"cuda:0 to cuda:{count - 1}; use one of those, cuda, or --device cpu"
            )
        return device
    if name != "cpu":
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto")
    return torch.device("cpu")


def set_threads(threads: int | None) -> int:
    """Fix torch's and the BLAS libraries' thread count (argument, else OMP_NUM_THREADS, else unchanged)."""
    if not threads and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(os.environ["OMP_NUM_THREADS"])
    if threads:
        torch.set_num_threads(int(threads))
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(threads))
    return torch.get_num_threads()


def setup(settings) -> torch.device:
    """Fix the thread count and return the device of ``settings`` (call once per process or notebook)."""
    set_threads(settings.threads or None)
    return resolve_device(settings.device)


def worker_count(workers: int, tasks: int) -> int:
    """How many processes run ``tasks`` independent tasks: ``workers`` (0: one per CPU core this
    process may use), never more than there are tasks."""
    if int(workers) < 0:
        raise ConfigError(f"workers must be >= 0 (0 = one per CPU core), got {workers}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(int(workers) or cores, int(tasks)))


def parallel_map(
    fn: Callable, args: Sequence[tuple], workers: int = 1, desc: str | None = None, progress: bool | None = False
) -> list:
    """``[fn(*a) for a in args]``, in order, across ``workers`` processes (joblib's loky pool,
    whose processes are reused by the next call); in this process when one worker is enough.

    Each task must set its own threads (:func:`setup`), so a task computes the same numbers
    in a worker as here.  ``progress``: a bar over finished tasks (None: only on a terminal).
    """
    from tqdm.auto import tqdm

    args = [tuple(a) for a in args]
    jobs = worker_count(workers, len(args))
    bar = tqdm(total=len(args), desc=desc, disable={False: True, None: None}.get(progress, False), leave=False)
    try:
        if jobs <= 1:
            out = []
            for a in args:
                out.append(fn(*a))
                bar.update()
            return out
        from joblib import Parallel, delayed

        out = []
        for result in Parallel(n_jobs=jobs, backend="loky", return_as="generator")(delayed(fn)(*a) for a in args):
            out.append(result)
            bar.update()
        return out
    finally:
        bar.close()


def environment(device: torch.device) -> dict:
    """Versions, device and host facts recorded with every result."""
    import numpy

    env = {
        "mnemonic_mu": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    env["packages"] = _package_versions(("torchvision", "scikit-learn", "mlxtend", "papermill"))
    return env


def _package_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Installed versions (None when absent), read from metadata without importing the packages."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


__all__ = ["environment", "parallel_map", "resolve_device", "set_threads", "setup", "worker_count"]
