"""Where the sweep's (and a report grid's) independent tasks run: one interface, swappable backends.

An executor maps a function over a list of argument tuples and returns the
results in order.  Tasks are idempotent: each writes its artifact atomically
under the shared cache, keyed by :mod:`mnemonic_mu.io.store`, and a task that
finds its artifact done returns it, so a task that is run twice (a retry, two
workers racing on one key) costs time, never correctness.

Backends:

* ``local`` (the default): this machine's processes through joblib's loky pool,
  or in-process for one job.
* ``dask``: a ``dask.distributed`` cluster.  With a scheduler address (the
  ``scheduler`` option, or Dask's own ``scheduler-address`` setting, which the
  environment variable ``DASK_SCHEDULER_ADDRESS`` sets) it connects to that
  cluster, giving up after :func:`resolve_connect_timeout` seconds; otherwise it starts
  a ``LocalCluster`` of ``jobs`` single-threaded worker processes on the
  loopback interface.  A ready Dask cluster object
  (``cluster=``, for example a ``dask_jobqueue.PBSCluster``) or client
  (``client=``) can be passed too.
* ``slurm``: a ``dask_jobqueue.SLURMCluster`` of ``jobs`` one-worker jobs
  (:func:`slurm_cluster_options`); :func:`slurm_job_script` returns the job
  script such a cluster submits, without SLURM installed and without starting
  anything.

Bad input fails before anything starts, with one line saying what to give
instead: a scheduler address (:func:`check_scheduler_address`), a worker's
memory (:func:`check_memory`) and wall time (:func:`check_walltime`).

Every backend records per task the time it was submitted (on the client) and
the time it started and ended (measured inside the task, on the worker), so
``queueing = start - submit``; :meth:`timing_split` aggregates them per label
(the sweep's ``train`` and ``score`` stages).

On a cluster the cache directory must be *shared storage*: every worker and the
client must see the same files at the same path.  Before submitting,
:class:`DaskExecutor` writes a marker file into every directory its tasks will
write to (the settings' ``cache_dir``, an output folder passed as a path) and
asks every worker to read it (``client.run``); a worker that cannot see it
stops the run with a :class:`~mnemonic_mu.errors.ConfigError` instead of
silently training every model again on its own disk.  The marker stays until
:meth:`DaskExecutor.close` and every task checks it before running, so a worker
that joins later is refused too.

A worker that dies while the executor runs (a crash, an OOM kill) is read from
the scheduler's own event log (the ``remove-worker`` events Dask records, not
those of workers retired on purpose): :meth:`DaskExecutor.describe` reports the
lost workers and how many of this executor's tasks they held, which Dask ran
again elsewhere.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ConfigError
from ..paths import resolve_path
from ..settings import Settings

BACKENDS = ("local", "dask", "slurm")
MARKER_PREFIX = ".mnemonic-mu-shared-"  # marker files of the shared-storage check (hidden, tiny)
# One worker = one process with one thread and one torch thread (the kit's unit of work).
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# Memory per SLURM worker.  Measured on mnist5k (docs/distributed.md): one process training a
# request's three models and scoring it with the laptop profile's ten baselines peaked at
# 0.94 GiB resident (0.5 GiB of it Python, torch and the data); a Dask worker running a sweep's
# tasks (benchmark item ``distributed``) at 0.95-0.96 GiB.  4 GB leaves room for full MNIST,
# CIFAR-10 and ResNet-18 and keeps a worker clear of Dask's pause (80 %) and kill (95 %)
# thresholds of its memory limit.
SLURM_MEMORY = "4GB"
# Below this a worker cannot hold Python, torch and the data (about 0.5 GiB of the peak above).
MIN_WORKER_MEMORY = 512 * 2**20
SLURM_WALLTIME = "02:00:00"
GPU_RESOURCES = {"GPU": 1}
# Seconds to reach a scheduler given by address before giving up (see resolve_connect_timeout): a
# scheduler that answers does so within milliseconds on a cluster's network, and a wrong address
# should not keep a user waiting for Dask's own default.
CONNECT_TIMEOUT = 5.0
CONNECT_SETTING = "distributed.comm.timeouts.connect"  # Dask's setting, honoured when the user set it
# The job script's scheduler address in a dry run (dask-jobqueue's own placeholder; a real run fills it in)
SCRIPT_SCHEDULER = "tcp://<insert-scheduler-address-here>:8786"


# --------------------------------------------------------------------------
# Task wrapper and timings (the same for every backend)


def _where() -> str:
    """``host:pid`` of the process running a task."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _run_task(fn: Callable, args: tuple, markers: tuple[tuple[str, str, str], ...] = ()) -> tuple:
    """Run ``fn(*args)`` inside a worker: ``(result, started, finished, where)``.

    ``started`` and ``finished`` are ``time.time()`` on the worker (wall clocks, so they
    compare with the client's submit time up to the machines' clock skew).  ``markers``
    are the shared-storage markers this task's directories must hold (see
    :func:`_marker_path`); a task on a worker that cannot see one refuses to run.
    """
    for kind, spec, token in markers:
        if not _marker_path(_probe_root(kind, spec), token).is_file():
            raise ConfigError(_not_shared_message(kind, _probe_root(kind, spec), _where()))
    started = time.time()
    result = fn(*args)
    return result, started, time.time(), _where()


class _Timings:
    """Per task: label, index, submitted, started, finished, where, failed."""

    def __init__(self) -> None:
        self.tasks: list[dict] = []

    def add(self, label: str, index: int, submitted: float, out: tuple | None, failed: bool = False) -> None:
        started, finished, where = (out[1], out[2], out[3]) if out is not None else (None, None, None)
        self.tasks.append(
            {
                "label": label,
                "index": index,
                "submitted": submitted,
                "started": started,
                "finished": finished,
                "where": where,
                "failed": failed,
            }
        )

    def split(self) -> dict:
        """``queue_seconds`` (sum over tasks of start - submit), ``<label>_seconds`` (sum of the
        tasks' own run times per label) and ``tasks`` (per label: count, failures, queueing
        sum / max, run-time sum, the stage's wall time from first submit to last end)."""
        per: dict[str, dict] = {}
        for t in self.tasks:
            e = per.setdefault(
                t["label"],
                {
                    "n": 0,
                    "failed": 0,
                    "queue_seconds": 0.0,
                    "queue_seconds_max": 0.0,
                    "run_seconds": 0.0,
                    "first_submit": t["submitted"],
                    "last_end": None,
                },
            )
            e["n"] += 1
            e["first_submit"] = min(e["first_submit"], t["submitted"])
            if t["failed"] or t["started"] is None:
                e["failed"] += int(t["failed"])
                continue
            queued = max(0.0, t["started"] - t["submitted"])  # clock skew can make it slightly negative
            e["queue_seconds"] += queued
            e["queue_seconds_max"] = max(e["queue_seconds_max"], queued)
            e["run_seconds"] += t["finished"] - t["started"]
            e["last_end"] = t["finished"] if e["last_end"] is None else max(e["last_end"], t["finished"])
        out: dict[str, Any] = {"queue_seconds": sum(e["queue_seconds"] for e in per.values())}
        tasks = {}
        for label, e in per.items():
            out[f"{label}_seconds"] = e["run_seconds"]
            wall = None if e["last_end"] is None else e["last_end"] - e["first_submit"]
            tasks[label] = {k: v for k, v in e.items() if k not in ("first_submit", "last_end")} | {
                "stage_wall_seconds": wall
            }
        out["tasks"] = tasks
        return out


class LocalExecutor:
    """joblib's process pool on this machine (in-process when ``jobs`` is 1)."""

    name = "local"

    def __init__(self, jobs: int = 1):
        if int(jobs) < 1:
            raise ConfigError(f"jobs must be at least 1, got {jobs}")
        self.jobs = int(jobs)
        self.timings = _Timings()

    def map(self, fn: Callable, args: Sequence[tuple], label: str = "tasks") -> list:
        """``[fn(*a) for a in args]``, in order, across ``jobs`` processes."""
        args = [tuple(a) for a in args]
        submitted = time.time()
        if self.jobs <= 1 or len(args) <= 1:
            outs = [_run_task(fn, a) for a in args]
        else:
            from joblib import Parallel, delayed

            outs = Parallel(n_jobs=self.jobs, backend="loky")(delayed(_run_task)(fn, a) for a in args)
        for i, out in enumerate(outs):
            self.timings.add(label, i, submitted, out)
        return [out[0] for out in outs]

    def timing_split(self) -> dict:
        """Queueing, per-label run time and per-label details (:meth:`_Timings.split`)."""
        return self.timings.split()

    def describe(self) -> dict:
        return {"backend": self.name, "workers": self.jobs}

    def close(self) -> None:
        pass

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------
# The shared-storage check


def _probe_root(kind: str, spec: str) -> Path:
    """The directory a task writes to, as *this* process resolves it: a settings' ``cache_dir``
    (``kind="cache_dir"``, resolved like :attr:`Settings.cache_path`) or a path as given
    (``kind="folder"``, relative to this process's working directory)."""
    if kind == "cache_dir":
        return resolve_path(spec)
    return Path(spec).expanduser().absolute()


def _marker_path(root: Path, token: str) -> Path:
    return root / f"{MARKER_PREFIX}{token}"


def _client_path(path: Path) -> Path:
    """Where the client itself reads and writes ``path`` (the identity; the tests replace it to
    simulate a client whose files at a path live on another disk than the workers')."""
    return path


def _not_shared_message(kind: str, root: Path, worker: str) -> str:
    what, setting = (
        ("cache directory", "cache_dir (--cache-dir)")
        if kind == "cache_dir"
        else ("output folder", "the output folder (--out-dir)")
    )
    return (
        f"the {what} {root} is not shared storage: worker {worker} cannot see it; put {setting} on a "
        f"filesystem every worker mounts, at the same path on every machine (docs/distributed.md)"
    )


def _probe_shared(kind: str, spec: str, token: str) -> dict:
    """Run on every worker (``client.run``): does this worker see the client's marker under the
    directory, and can it write beside it?  Returns ``{"where", "root", "seen", "wrote", "error"}``."""
    root = _probe_root(kind, spec)
    out = {"where": _where(), "root": str(root), "seen": False, "wrote": False, "error": ""}
    try:
        marker = _marker_path(root, token)
        out["seen"] = marker.is_file() and marker.read_text() == token
        if out["seen"]:
            reply = marker.with_name(f"{marker.name}.{socket.gethostname()}-{os.getpid()}")
            reply.write_text(token)
            out["wrote"] = True
            out["reply"] = reply.name
    except OSError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def shared_dirs(args: Sequence[tuple]) -> list[tuple[str, str]]:
    """The directories the tasks of ``args`` write to: ``(kind, spec)`` for every settings'
    ``cache_dir`` and every :class:`~pathlib.Path` argument (an output folder), in first-seen order."""
    found: dict[tuple[str, str], None] = {}
    for a in args:
        for x in a:
            if isinstance(x, Settings):
                found[("cache_dir", x.cache_dir)] = None
            elif isinstance(x, Path):
                found[("folder", str(x))] = None
    return list(found)


def needs_gpu(args: Sequence[tuple]) -> bool:
    """Whether any task of ``args`` runs on a CUDA device (a settings' device ``cuda``/``cuda:N``)."""
    return any(isinstance(x, Settings) and str(x.device).startswith("cuda") for a in args for x in a)


# --------------------------------------------------------------------------
# Checks of the cluster options (one clear line each, before anything starts)

_ADDRESS_HELP = (
    "give tcp://HOST:PORT as `dask scheduler` prints it (tls://HOST:PORT with TLS), or the path of "
    "the file its --scheduler-file wrote"
)


def check_scheduler_address(address: str, source: str = "--scheduler") -> str:
    """The address to connect to, from a scheduler address or a scheduler file.

    An address is ``[PROTOCOL://]HOST:PORT`` with a protocol Dask knows (``tcp``, the default,
    ``tls``, ``ws``, ``wss``, ``ucx``) and a port in 1..65535.  A value without ``://`` that
    names a file, or looks like a path (``/`` or ``.json``), is read as the JSON file that
    ``dask scheduler --scheduler-file PATH`` writes, and its ``address`` is checked the same
    way.  ``source`` names where the value came from in the message.
    """
    from distributed.comm import registry
    from distributed.comm.addressing import parse_address, parse_host_port

    text = str(address).strip()
    if "://" not in text and (os.sep in text or text.endswith(".json") or Path(text).expanduser().is_file()):
        path = Path(text).expanduser()
        try:
            info = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{source} {text}: no such scheduler file; {_ADDRESS_HELP}") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{source} {text} is not a readable scheduler file ({type(exc).__name__}); {_ADDRESS_HELP}"
            ) from None
        found = info.get("address") if isinstance(info, dict) else None
        if not isinstance(found, str):
            raise ConfigError(f'scheduler file {text} holds no "address"; {_ADDRESS_HELP}')
        return check_scheduler_address(found, f"the address in scheduler file {text}")
    try:
        scheme, location = parse_address(text)
    except (ValueError, TypeError):
        raise ConfigError(f"{source} {text!r} is not a scheduler address; {_ADDRESS_HELP}") from None
    known = sorted(set(registry.backends) - {"inproc"})  # inproc: within one process only
    if scheme not in known:
        raise ConfigError(
            f"{source} {text!r}: unknown protocol {scheme!r} (Dask knows {', '.join(known)}); {_ADDRESS_HELP}"
        )
    try:
        host, port = parse_host_port(location)
    except (ValueError, TypeError):
        host, port = "", 0
    if not host or not 0 < port < 65536:
        raise ConfigError(
            f"{source} {text!r} is not a scheduler address: it needs HOST:PORT with a port number "
            f"from 1 to 65535; {_ADDRESS_HELP}"
        )
    return text


def _dask_default(key: str):
    """The value Dask and distributed ship for ``key`` (their own YAML defaults), or None."""
    import dask

    merged: dict = {}
    for defaults in dask.config.defaults:
        dask.config.update(merged, defaults)
    return dask.config.get(key, None, config=merged)


def resolve_connect_timeout(seconds: float | None = None) -> float:
    """Seconds to try reaching a scheduler given by address before giving up.

    Precedence: ``seconds`` (the option ``--connect-timeout``); else Dask's
    ``distributed.comm.timeouts.connect`` when the user set it (a Dask config file, the
    environment variable ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT`` or ``dask.config.set``);
    else :data:`CONNECT_TIMEOUT`.  The client keeps the same value for its other Dask timeouts
    (a reconnection after a lost connection, closing), as Dask does with its own setting.
    """
    if seconds is not None:
        try:
            value = float(seconds)
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(
                f"the connect timeout must be a positive number of seconds, got {seconds!r} "
                f"(--connect-timeout; default {CONNECT_TIMEOUT:g})"
            )
        return value
    import dask
    import distributed  # noqa: F401 - registers distributed's defaults with dask.config
    from dask.utils import parse_timedelta

    configured = dask.config.get(CONNECT_SETTING, None)
    if configured is None:
        return CONNECT_TIMEOUT
    from_user = dask.config.get(CONNECT_SETTING, None, config=dask.config.collect()) is not None
    if not from_user and configured == _dask_default(CONNECT_SETTING):
        return CONNECT_TIMEOUT
    try:
        value = parse_timedelta(configured, "s")
    except (ValueError, TypeError, KeyError):
        value = math.nan
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(
            f"Dask's setting {CONNECT_SETTING} = {configured!r} is not a positive duration; "
            "fix it (e.g. 10s) or pass --connect-timeout SECONDS"
        )
    return float(value)


_MEMORY_HELP = "give a number and a unit, e.g. 4GB (the default) or 2500MB"


def check_memory(memory) -> str:
    """A worker's memory as dask-jobqueue takes it: a number with a unit (``4GB``, ``2500MB``,
    ``3.5GiB``), at least :data:`MIN_WORKER_MEMORY`.  A bare number would be read as bytes."""
    from dask.utils import parse_bytes

    text = str(memory).strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*[A-Za-z]+", text):
        raise ConfigError(
            f"worker memory {text!r} needs a unit (a bare number would be bytes): {_MEMORY_HELP} (--worker-memory)"
        )
    try:
        size = parse_bytes(text)
    except (ValueError, TypeError, KeyError):
        raise ConfigError(f"worker memory {text!r} has an unknown unit: {_MEMORY_HELP} (--worker-memory)") from None
    if size < MIN_WORKER_MEMORY:
        raise ConfigError(
            f"worker memory {text} is too small: one worker needs at least "
            f"{MIN_WORKER_MEMORY // 2**20}MiB for Python, torch and the data; {_MEMORY_HELP} "
            "(--worker-memory)"
        )
    return text


# SLURM's forms of a time limit (sbatch --time): minutes, minutes:seconds, hours:minutes:seconds,
# days-hours, days-hours:minutes, days-hours:minutes:seconds
_HOURS, _SIXTY = r"([01]?\d|2[0-3])", r"[0-5]?\d"
_WALLTIME_FORMS = (
    r"\d+",
    rf"\d+:{_SIXTY}",
    rf"\d+:{_SIXTY}:{_SIXTY}",
    rf"\d+-{_HOURS}",
    rf"\d+-{_HOURS}:{_SIXTY}",
    rf"\d+-{_HOURS}:{_SIXTY}:{_SIXTY}",
)


def check_walltime(walltime) -> str:
    """A SLURM time limit in one of the forms ``sbatch --time`` accepts (minutes, MM:SS, HH:MM:SS,
    D-HH, D-HH:MM, D-HH:MM:SS; minutes and seconds below 60, hours after a day below 24)."""
    text = str(walltime).strip()
    if not any(re.fullmatch(form, text) for form in _WALLTIME_FORMS):
        raise ConfigError(
            f"walltime {text!r} is not a SLURM time limit; use minutes (90), MM:SS, HH:MM:SS "
            "(04:00:00), D-HH, D-HH:MM or D-HH:MM:SS (1-12:00:00) (--walltime)"
        )
    return text


# --------------------------------------------------------------------------
# Dask


def _has_bokeh() -> bool:
    """Whether bokeh, the dashboard's dependency, is installed (run on the scheduler)."""
    return importlib.util.find_spec("bokeh") is not None


def _dashboard_address() -> str:
    """The scheduler's HTTP server on a free loopback port; it serves the dashboard when bokeh
    (the dashboard's dependency) is installed, else only its health and metrics routes."""
    return "127.0.0.1:0"


class DaskExecutor:
    """Tasks as ``dask.distributed`` futures on a cluster (see the module doc).

    ``scheduler``: an address (``tcp://HOST:8786``) to connect to; default Dask's
    ``scheduler-address`` setting (``DASK_SCHEDULER_ADDRESS``), else a ``LocalCluster`` of
    ``jobs`` single-threaded worker processes on 127.0.0.1.  ``cluster`` / ``client``: use a
    ready Dask cluster or client instead (the executor closes what it created only).
    ``retries``: how often Dask reruns a task that *raised* (a worker that dies is handled by
    the scheduler's ``distributed.scheduler.allowed-failures``, default 3: its tasks are
    rescheduled on the other workers).  ``gpu``: ask for the Dask resource ``GPU=1`` per
    task (``None``: when the task's settings have device ``cuda``); such tasks run only on
    workers started with ``--resources GPU=1``.  ``worker_resources``: the resources of a
    LocalCluster's workers (default ``GPU=1`` each when this machine has CUDA).
    ``progress``: a progress bar on stderr (``None``: when stderr is a terminal).
    ``check_shared``: refuse directories the workers cannot see (see module doc).
    ``wait_timeout``: seconds to wait for the first worker of an external cluster.
    ``connect_timeout``: seconds to try reaching ``scheduler`` (:func:`resolve_connect_timeout`).
    """

    name = "dask"

    def __init__(
        self,
        jobs: int = 1,
        scheduler: str | None = None,
        *,
        cluster=None,
        client=None,
        retries: int = 2,
        gpu: bool | None = None,
        worker_resources: dict | None = None,
        progress: bool | None = None,
        check_shared: bool = True,
        wait_timeout: float = 120.0,
        connect_timeout: float | None = None,
        kind: str = "dask",
    ):
        import dask
        from distributed import Client, LocalCluster

        if int(jobs) < 1:
            raise ConfigError(f"jobs must be at least 1, got {jobs}")
        if int(retries) < 0:
            raise ConfigError(f"retries must be >= 0, got {retries}")
        self.jobs, self.retries, self.gpu, self.kind = int(jobs), int(retries), gpu, kind
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        self.check_shared, self.wait_timeout = bool(check_shared), float(wait_timeout)
        self.timings = _Timings()
        self.token = uuid.uuid4().hex[:12]
        self._markers: dict[tuple[str, str], Path] = {}  # (kind, spec) -> the client's marker file
        self._checked: dict[tuple[str, str], set[str]] = {}  # (kind, spec) -> worker addresses seen OK
        self._own_cluster = self._own_client = False
        self._batch = 0
        self._workers_seen: set[str] = set()
        self._keys: set[str] = set()  # every task key this executor submitted
        self.lost: dict[str, set[str]] = {}  # a worker lost while we ran -> our task keys it held
        source = "--scheduler"
        if not scheduler and dask.config.get("scheduler-address", None):
            scheduler = dask.config.get("scheduler-address")
            source = "Dask's scheduler-address (DASK_SCHEDULER_ADDRESS)"
        if client is not None:
            self.client, self.cluster = client, cluster
        elif cluster is not None:
            self.cluster, self.client, self._own_client = cluster, Client(cluster), True
        elif scheduler:
            address = check_scheduler_address(scheduler, source)
            timeout = resolve_connect_timeout(connect_timeout)
            try:
                self.client = Client(address, timeout=timeout)
            except (OSError, TimeoutError, ValueError, TypeError) as exc:
                why = "" if str(exc).startswith("Timed out") else f" ({type(exc).__name__}: {exc})"  # not twice
                raise ConfigError(
                    f"cannot reach the Dask scheduler at {address} within {timeout:g} s{why}; check "
                    "that `dask scheduler` runs there and that this machine can reach that host and "
                    "port, or wait longer with --connect-timeout SECONDS (docs/distributed.md)"
                ) from None
            self.cluster, self._own_client = None, True
        else:
            if worker_resources is None:
                import torch

                worker_resources = dict(GPU_RESOURCES) if torch.cuda.is_available() else None
            self.cluster = LocalCluster(
                n_workers=self.jobs,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=_dashboard_address(),
                resources=worker_resources,
                env=dict(WORKER_ENV),
            )
            self.client = Client(self.cluster)
            self._own_cluster = self._own_client = True
        self.scheduler = self.client.scheduler.address
        self.dashboard = self._dashboard_link()
        self._events_from = max((when for when, _ in self._events()), default=-math.inf)  # the scheduler's clock

    def _events(self) -> list:
        """The scheduler's ``all`` event log: ``(time, message)`` pairs (empty if it cannot be read)."""
        try:
            return list(self.client.get_events("all"))
        except Exception:  # any: reporting lost workers must never break a run
            return []

    def _note_lost_workers(self) -> None:
        """Record the workers the scheduler removed unexpectedly (not retired on purpose) since this
        executor started: those it had seen, or that held one of its tasks."""
        for when, msg in self._events():
            if when <= self._events_from or not isinstance(msg, dict) or msg.get("action") != "remove-worker":
                continue
            if msg.get("expected"):
                continue
            # the address as a string: a key of self.lost, which is sorted into the result
            worker, held = str(msg.get("worker")), set(msg.get("processing-tasks") or ()) & self._keys
            if worker in self._workers_seen or held:
                self.lost.setdefault(worker, set()).update(held)

    def _running(self, ours: set) -> int:
        """Our tasks executing now: per worker, ours among the tasks it holds, at most its threads.
        (A worker holds more tasks than it has threads: the scheduler sends the next ones ahead.)"""
        return running_tasks(self.client.processing(), self.client.nthreads(), ours)

    def _dashboard_link(self) -> str | None:
        try:
            services = self.client.scheduler_info().get("services", {})
        except Exception:  # any: an unreachable link is just not shown
            return None
        if "dashboard" not in services:
            return None
        try:  # the HTTP server is always there; its dashboard pages only with bokeh on the scheduler's machine
            if not self.client.run_on_scheduler(_has_bokeh):
                return None
        except Exception:
            return None
        return self.client.dashboard_link

    # -- the shared-storage check
    def _workers(self) -> dict:
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        if not info:
            try:
                self.client.wait_for_workers(1, timeout=self.wait_timeout)
            except (TimeoutError, OSError):
                raise ConfigError(
                    f"no Dask worker connected to {self.scheduler} within {self.wait_timeout:.0f} s; "
                    "start workers with `dask worker " + self.scheduler + "`"
                ) from None
            info = self.client.scheduler_info(n_workers=-1)["workers"]
        self._workers_seen |= set(info)
        return info

    def _check_shared(self, dirs: list[tuple[str, str]], workers: dict) -> None:
        for kind, spec in dirs:
            if (kind, spec) not in self._markers:
                root = _client_path(_probe_root(kind, spec))
                root.mkdir(parents=True, exist_ok=True)
                marker = _marker_path(root, self.token)
                marker.write_text(self.token)
                self._markers[(kind, spec)] = marker
            marker = self._markers[(kind, spec)]
            todo = [w for w in workers if w not in self._checked.setdefault((kind, spec), set())]
            if not todo:
                continue
            replies = self.client.run(_probe_shared, kind, spec, self.token, workers=todo, on_error="return")
            for address in todo:
                r = replies.get(address)
                if isinstance(r, BaseException) or r is None:
                    continue  # the worker left meanwhile (or could not answer): its tasks still check the marker
                name = workers[address].get("name", address)
                who = f"{name} ({r['where']})" if str(name) != address else f"{address} ({r['where']})"
                if not r["seen"]:
                    raise ConfigError(
                        _not_shared_message(kind, Path(r["root"]), who) + (f" [{r['error']}]" if r["error"] else "")
                    )
                reply = marker.with_name(r.get("reply", ""))
                if not r["wrote"] or not reply.is_file():
                    raise ConfigError(
                        _not_shared_message(kind, Path(r["root"]), who)
                        + " (it sees the client's marker but the client does not see its reply)"
                    )
                reply.unlink(missing_ok=True)
                self._checked[(kind, spec)].add(address)

    def _check_resources(self, workers: dict) -> None:
        have = [w for w, info in workers.items() if info.get("resources", {}).get("GPU", 0) >= 1]
        if not have:
            raise ConfigError(
                "these tasks need a GPU (device cuda) but no connected Dask worker advertises the "
                "resource GPU; start GPU workers with `dask worker ADDRESS --nthreads 1 --resources "
                "GPU=1` (or use --device cpu)"
            )

    # -- the interface
    def map(self, fn: Callable, args: Sequence[tuple], label: str = "tasks") -> list:
        """``[fn(*a) for a in args]``, in order, as Dask futures on the cluster.

        Checks shared storage and GPU resources first; shows a progress bar when asked;
        waits for every task (so every finished one has written its artifact), then
        raises the first task's exception, if any.
        """
        from distributed import as_completed

        args = [tuple(a) for a in args]
        if not args:
            return []
        workers = self._workers()
        dirs = shared_dirs(args)
        if self.check_shared:
            self._check_shared(dirs, workers)
        gpu = needs_gpu(args) if self.gpu is None else self.gpu
        if gpu:
            self._check_resources(workers)
        markers = tuple((kind, spec, self.token) for kind, spec in dirs) if self.check_shared else ()
        self._batch += 1
        keys = [f"mnemonic-{label}-{self._batch}-{i}-{self.token}" for i in range(len(args))]
        self._keys.update(keys)
        submitted = time.time()
        futures = self.client.map(
            _run_task,
            [fn] * len(args),
            args,
            [markers] * len(args),
            key=keys,
            pure=False,
            retries=self.retries,
            resources=dict(GPU_RESOURCES) if gpu else None,
        )
        index = {f.key: i for i, f in enumerate(futures)}
        failed: list = []
        bar = _progress_bar(len(futures), label, self.progress)
        asked, running = 0.0, 0
        try:
            for f in as_completed(futures):
                if f.status == "error":
                    failed.append(f)
                if bar is not None:
                    bar.update(1)
                    if time.monotonic() - asked > 0.5:  # refreshed at most twice a second
                        asked = time.monotonic()
                        running = self._running(set(index))
                    bar.set_postfix(running=running, failed=len(failed), refresh=False)
        finally:
            if bar is not None:
                bar.close()
            self._note_lost_workers()
        ok = [f for f in futures if f.status == "finished"]
        outs = dict(zip((f.key for f in ok), self.client.gather(ok))) if ok else {}
        for f in futures:
            self.timings.add(label, index[f.key], submitted, outs.get(f.key), failed=f.key not in outs)
        lost = [f for f in futures if f.key not in outs]  # raised, or cancelled (a lost connection)
        if lost:
            lost[0].result()  # raises the task's own exception, with the worker's traceback
        return [outs[k][0] for k in keys]

    def timing_split(self) -> dict:
        """Queueing, per-label run time and per-label details (:meth:`_Timings.split`)."""
        return self.timings.split()

    def describe(self) -> dict:
        """Backend, workers seen, scheduler, dashboard, cluster, retries; ``lost_workers`` (addresses
        of workers that died while this executor ran) and ``rescheduled_tasks`` (how many of its
        tasks they held, which Dask ran again on other workers)."""
        return {
            "backend": self.kind,
            "workers": len(self._workers_seen) or self.jobs,
            "scheduler": self.scheduler,
            "dashboard": self.dashboard,
            "cluster": type(self.cluster).__name__ if self.cluster else "external",
            "retries": self.retries,
            "lost_workers": sorted(self.lost),
            "rescheduled_tasks": len(set().union(*self.lost.values())),
        }

    def close(self) -> None:
        """Remove the markers; close the client and the cluster this executor started."""
        for marker in self._markers.values():
            marker.unlink(missing_ok=True)
        self._markers.clear()
        if self._own_client:
            self.client.close()
        if self._own_cluster and self.cluster is not None:
            self.cluster.close()
        self._own_client = self._own_cluster = False

    def __enter__(self) -> "DaskExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def running_tasks(processing: dict, nthreads: dict, ours) -> int:
    """How many of the tasks ``ours`` are executing: per worker (``processing``: worker -> the
    keys it holds, ``nthreads``: worker -> threads, as ``Client.processing`` / ``Client.nthreads``
    give them), ours among those it holds, but no more than its threads."""
    return sum(min(sum(1 for k in keys if k in ours), int(nthreads.get(w, 0))) for w, keys in processing.items())


def _progress_bar(total: int, label: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="task", file=sys.stderr, dynamic_ncols=True)


# --------------------------------------------------------------------------
# SLURM through dask-jobqueue


def slurm_cluster_options(
    memory: str = SLURM_MEMORY,
    walltime: str = SLURM_WALLTIME,
    queue: str | None = None,
    account: str | None = None,
    gpu: bool = False,
    python: str | None = None,
    job_extra_directives: Sequence[str] = (),
    scheduler_options: dict | None = None,
) -> dict:
    """The keyword arguments of ``dask_jobqueue.SLURMCluster`` for the kit's workers.

    One job = one worker process with one thread and one CPU (``cores=1, processes=1``),
    ``OMP_NUM_THREADS=1`` (and MKL / OpenBLAS) exported by the job script's prologue so
    torch uses one thread, and ``memory`` (see :data:`SLURM_MEMORY`).  With ``gpu`` the job
    asks SLURM for one GPU (``--gres=gpu:1``) and the worker advertises the Dask resource
    ``GPU=1``, so tasks of a ``cuda`` sweep land only there.  ``memory`` and ``walltime`` are
    checked (:func:`check_memory`, :func:`check_walltime`).
    """
    memory, walltime = check_memory(memory), check_walltime(walltime)
    extra = list(job_extra_directives) + (["--gres=gpu:1"] if gpu else [])
    opts: dict[str, Any] = {
        "cores": 1,
        "processes": 1,
        "memory": memory,
        "walltime": walltime,
        "job_script_prologue": [f"export {k}={v}" for k, v in WORKER_ENV.items()],
        "worker_extra_args": ["--resources", "GPU=1"] if gpu else [],
        "job_extra_directives": extra,
        "job_name": "mnemonic-mu-worker",
    }
    opts |= {k: v for k, v in {"queue": queue, "account": account, "python": python}.items() if v}
    if scheduler_options:
        opts["scheduler_options"] = dict(scheduler_options)
    return opts


def slurm_job_script(**options) -> str:
    """The job script a :func:`slurm_cluster_options` ``SLURMCluster`` would submit (a dry run).

    Needs dask-jobqueue but no SLURM, and starts nothing (no scheduler, no cluster, no
    process): it renders dask-jobqueue's own job (``SLURMJob``, what the cluster renders for its
    ``job_script``) with the placeholder :data:`SCRIPT_SCHEDULER` as the scheduler's address,
    which a real run fills in.  Takes the options of :func:`slurm_cluster_options`.
    """
    from dask_jobqueue.slurm import SLURMJob

    opts = slurm_cluster_options(**options)
    opts.pop("scheduler_options", None)  # the cluster's, not the job's
    return SLURMJob(SCRIPT_SCHEDULER, name="dummy-name", **opts).job_script()


def slurm_executor(
    jobs: int = 1,
    *,
    retries: int = 2,
    gpu: bool | None = None,
    progress: bool | None = None,
    check_shared: bool = True,
    wait_timeout: float = 600.0,
    **options,
) -> DaskExecutor:
    """A :class:`DaskExecutor` on a ``SLURMCluster`` of ``jobs`` one-worker jobs (submitted with
    ``sbatch``; run this on a machine that can submit jobs and that the compute nodes can reach)."""
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(**slurm_cluster_options(gpu=bool(gpu), **options))
    cluster.scale(jobs=int(jobs))
    ex = DaskExecutor(
        jobs,
        cluster=cluster,
        retries=retries,
        gpu=gpu,
        progress=progress,
        check_shared=check_shared,
        wait_timeout=wait_timeout,
        kind="slurm",
    )
    ex._own_cluster = True
    return ex


def make_executor(backend: str = "local", jobs: int = 1, **options):
    """The executor of ``backend`` with ``jobs`` workers.

    ``local``: no options.  ``dask``: the options of :class:`DaskExecutor` (``scheduler=``
    connects to a running cluster).  ``slurm``: those of :func:`slurm_executor` and
    :func:`slurm_cluster_options`.
    """
    if backend == "local":
        unknown = sorted(k for k, v in options.items() if v is not None)
        if unknown:
            raise ConfigError(f"option {unknown[0]!r} needs --backend dask or slurm")
        return LocalExecutor(jobs)
    if backend == "dask":
        return DaskExecutor(jobs, **options)
    if backend == "slurm":
        return slurm_executor(jobs, **options)
    raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "CONNECT_TIMEOUT",
    "DaskExecutor",
    "LocalExecutor",
    "check_memory",
    "check_scheduler_address",
    "check_walltime",
    "make_executor",
    "needs_gpu",
    "resolve_connect_timeout",
    "running_tasks",
    "shared_dirs",
    "slurm_cluster_options",
    "slurm_executor",
    "slurm_job_script",
]
