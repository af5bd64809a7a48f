"""Where the sweep's (and a report grid's) independent tasks run: one interface, swappable backends.

An executor maps a function over a list of argument tuples and returns the
results in order.  Tasks are idempotent: each writes its artifact atomically
under the shared cache, keyed by :mod:`mnemonic_mu.io.store`, and a task that
finds its artifact done returns it, so a task that is run twice (a retry, two
workers racing on one key) costs time, never correctness.

Backends:

* ``local`` (the default): this machine's processes through joblib's loky pool,
  or in-process for one job.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ..errors import ConfigError

BACKENDS = ("local",)


class LocalExecutor:
    """joblib's process pool on this machine (in-process when ``jobs`` is 1)."""

    name = "local"

    def __init__(self, jobs: int = 1):
        if int(jobs) < 1:
            raise ConfigError(f"jobs must be at least 1, got {jobs}")
        self.jobs = int(jobs)

    def map(self, fn: Callable, args: Sequence[tuple], label: str = "tasks") -> list:
        if self.jobs <= 1 or len(args) <= 1:
            return [fn(*a) for a in args]
        from joblib import Parallel, delayed

        return Parallel(n_jobs=self.jobs, backend="loky")(delayed(fn)(*a) for a in args)

    def describe(self) -> dict:
        return {"backend": self.name, "workers": self.jobs}

    def close(self) -> None:
        pass


def make_executor(backend: str = "local", jobs: int = 1, **options):
    """The executor of ``backend`` with ``jobs`` workers."""
    if backend == "local":
        return LocalExecutor(jobs)
    raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "LocalExecutor", "make_executor"]
