"""``mnemonic-mu report``: execute the six stage notebooks with papermill and build an HTML report.

::

    mnemonic-mu report [--profile ci|laptop|paper] [--run NAME] [-p key=value ...]
    mnemonic-mu report [--profile P] --grid KEY=[V1,V2] [--grid KEY2=[...]] [--jobs N] [-p key=value ...]

Parameters come from a profile (``mnemonic_mu/profiles/<name>.yaml``) and
``-p`` overrides (each value read with ``yaml.safe_load``, never evaluated).
Before anything runs, every name is checked against the ``parameters``
cells of the notebooks (a name no notebook declares is an error; papermill
itself would only warn) and its type against the declared default, and the
whole set is validated by :class:`~mnemonic_mu.settings.Settings`.  Each
notebook then gets only the names it declares.

The run is built in a hidden staging folder beside ``reports/<run>/`` and
renamed into place when every notebook has succeeded.  When a notebook
fails, the run stops with the notebook's name and cell, and the staging
folder (with the partial executed notebook and a ``failure.json`` naming the
notebook, the cell and the error) is kept as ``reports/<run>.failed/``.

Pages are rendered from the jinja2 templates in ``mnemonic_mu/templates/``:
``run.html.j2`` (``reports/<run>/index.html``: a verdict box, the summary,
the attacks, the notebooks, the figures with captions, the files, the
settings) and ``gallery.html.j2`` (``reports/index.html``: one row per run and
per failed run, rebuilt after every run from what is under ``reports/``).

``--grid`` runs the Cartesian product of its values as ordinary runs, one
folder each (named from the grid values), through
:func:`~mnemonic_mu.drivers.executor.make_executor`; a run whose folder holds
an ``index.html`` and the same resolved settings is not redone, and a failed
run does not stop the others.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import yaml

from .. import pipeline
from ..errors import ConfigError, MnemonicError
from ..io.artifacts import atomic_write_text, current_umask, write_json
from ..notebook_stages import NOTEBOOKS, UPSTREAM
from ..paths import project_root
from ..runtime import worker_count
from ..settings import Settings
from .common import PATH_PARAMETERS, check_run_name, reports_root
from .pages import build_gallery, index_html

LOG = logging.getLogger(__name__)
KERNEL = "python3"
RUNNER_PARAMETERS = ("run_dir",)  # set by the runner (use --run)


class NotebookFailed(MnemonicError):
    """A notebook raised an error while the report ran."""


# --------------------------------------------------------------------------
# Parameters


def notebook_dir() -> Path:
    """The folder holding the stage notebooks (the repository's ``notebooks/``)."""
    for folder in (Path(__file__).resolve().parents[2] / "notebooks", project_root() / "notebooks"):
        if all((folder / f"{nb}.ipynb").is_file() for nb in NOTEBOOKS):
            return folder
    raise ConfigError(
        "cannot find the stage notebooks (notebooks/01_mnemonic_codes.ipynb ...); run from a clone "
        "of the repository or pass --notebooks DIR"
    )


def declared_parameters(folder: Path) -> dict[str, dict]:
    """``{notebook: {name: default}}`` from each notebook's ``parameters`` cell."""
    import papermill

    out = {}
    for nb in NOTEBOOKS:
        params = papermill.inspect_notebook(str(folder / f"{nb}.ipynb"))
        try:
            out[nb] = {name: ast.literal_eval(p["default"]) for name, p in params.items()}
        except (ValueError, SyntaxError):
            raise ConfigError(f"notebook {nb}: a default in its parameters cell is not a literal") from None
    return out


def resolve_parameters(profile: str, overrides: dict, declared: dict[str, dict], cwd: Path) -> dict:
    """The run's settings over its profile: ``overrides`` with every name checked against the
    settings (papermill itself would only warn) and the whole set validated by
    :class:`Settings`; data_root and cache_dir made absolute, so every kernel sees the same
    folders.  What each notebook receives is :func:`notebook_parameters`."""
    for key in overrides:
        if key in RUNNER_PARAMETERS:
            raise ConfigError(f"{key} is set by the runner; choose the run's folder with --run NAME")
    known = set(Settings.names())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"unknown parameter {unknown[0]!r}: no notebook declares it and it is not a setting; "
            f"known: {', '.join(sorted(known))}"
        )
    params = dict(overrides)
    base = Settings.from_profile(profile).to_dict()
    for key in PATH_PARAMETERS:
        path = Path(str(params.get(key, base[key]))).expanduser()
        if not path.is_absolute():
            path = (cwd if key in overrides else project_root()) / path
        params[key] = str(path.resolve())
    checked = Settings.from_profile(profile, **params).to_dict()  # the notebooks' own validation, now
    if tuple(checked["attacks"]) != Settings().attacks:
        raise ConfigError(
            "the report scores every attack; leave 'attacks' at its default "
            "(a sweep can score fewer: mnemonic-mu sweep --attacks ...)"
        )
    return {k: checked[k] for k in params}


def notebook_parameters(declared: dict, profile: str, params: dict, run_dir: str) -> dict:
    """What one notebook receives: its profile, its own knobs that the run sets, and every
    other setting of the run in its ``overrides`` mapping (the run's folder included)."""
    mine: dict = {"profile": profile} if "profile" in declared else {}
    mine |= {k: v for k, v in params.items() if k in declared and k not in ("profile", "overrides")}
    if "overrides" in declared:
        mine["overrides"] = {k: v for k, v in params.items() if k not in mine} | {"run_dir": run_dir}
    return mine


def resolved_config(profile: str, params: dict) -> dict:
    """Every setting of the run: the profile overridden by ``params``."""
    return {k: v for k, v in Settings.from_profile(profile, **params).to_dict().items() if k != "run_dir"}


# --------------------------------------------------------------------------
# Running


def _kernel_manager_class():
    """Kernels talk over local IPC sockets on POSIX (no network port, and no warning about
    unencrypted TCP on every start); elsewhere jupyter_client's default."""
    from jupyter_client.manager import AsyncKernelManager

    if os.name != "posix":
        return AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            # sockets of its own: the default prefix ("kernel-ipc" in the working folder) can be
            # taken by two kernels started at once from different processes (--grid --jobs N)
            kwargs.setdefault("ip", os.path.join(tempfile.gettempdir(), f"mnemonic-mu-kernel-{uuid.uuid4().hex}"))
            super().__init__(**kwargs)

    return IPCKernelManager


def execute_notebook(src: Path, out: Path, parameters: dict, cwd: Path, progress: bool) -> None:
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel

    try:
        papermill.execute_notebook(
            str(src),
            str(out),
            parameters=parameters,
            kernel_name=KERNEL,
            cwd=str(cwd),
            progress_bar=progress,
            log_output=False,
            kernel_manager_class=_kernel_manager_class(),
        )
    except NoSuchKernel:
        raise ConfigError(
            f"no Jupyter kernel named {KERNEL!r}; register one with "
            f"`python -m ipykernel install --sys-prefix --name {KERNEL}` (make install does it)"
        ) from None


_EXPORTERS = threading.local()  # one nbconvert exporter per thread (notebooks convert side by side)


def _html(executed: Path) -> str:
    """One HTML page with code visible (nbconvert's lab template; each thread reuses its exporter)."""
    if getattr(_EXPORTERS, "html", None) is None:
        from nbconvert import HTMLExporter

        _EXPORTERS.html = HTMLExporter(template_name="lab")
    body, _ = _EXPORTERS.html.from_filename(str(executed))
    return body


def run_report(
    profile: str = "laptop",
    run: str | None = None,
    overrides: dict | None = None,
    reports_dir: str | os.PathLike | None = None,
    notebooks: str | os.PathLike | None = None,
    progress: bool = False,
) -> Path:
    """Execute the notebooks and write ``reports/<run>/``; returns the path of ``index.html``.

    The gallery ``reports/index.html`` is rebuilt afterwards, whether the run succeeded or
    failed.  A failure raises :class:`NotebookFailed` (or the :class:`MnemonicError` a
    notebook raised) after the partial run is kept as ``reports/<run>.failed/`` with a
    ``failure.json``.
    """
    run = run or profile
    check_run_name(run)
    folder = Path(notebooks).resolve() if notebooks else notebook_dir()
    declared = declared_parameters(folder)
    params = resolve_parameters(profile, dict(overrides or {}), declared, Path.cwd())
    resolved = resolved_config(profile, params)

    root = reports_root(reports_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / run
    tmp = Path(tempfile.mkdtemp(prefix=f".{run}.", suffix=".tmp", dir=root))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it private; a report is for reading, as the umask says
    record = {
        "profile": profile,
        "run": run,
        "overrides": dict(overrides or {}),
        "parameters": params,
        "resolved": resolved,
    }
    atomic_write_text(tmp / "params.yaml", yaml.safe_dump(record, sort_keys=False))  # a failed run keeps it too
    timings: dict[str, float] = {}
    start = time.perf_counter()
    nb: str | None = None
    ahead = _prefetch(Settings.from_profile(profile, **params))
    try:

        def run_one(name: str) -> None:
            mine = notebook_parameters(declared[name], profile, params, str(tmp))
            t0 = time.perf_counter()
            execute_notebook(folder / f"{name}.ipynb", tmp / f"{name}.ipynb", mine, folder, progress)
            timings[name] = time.perf_counter() - t0
            atomic_write_text(tmp / f"{name}.html", _html(tmp / f"{name}.ipynb"))  # while the next one runs

        _run_in_order(run_one)
        summary_path = tmp / "metrics" / "summary.json"
        if not summary_path.is_file():
            raise NotebookFailed(f"06_report did not write metrics/summary.json; see {root / (run + '.failed')}")
        total = time.perf_counter() - start
        write_json(
            tmp / "metrics" / "run.json",
            {"profile": profile, "run": run, "seconds": total, "notebooks": timings, "prefetch": ahead.result()},
        )
        summary = json.loads(summary_path.read_text())
        page = index_html(run, profile, resolved, summary, timings, total, tmp, params=record)
        atomic_write_text(tmp / "index.html", page)
    except Exception as caught:
        ahead.result()  # let the prefetch finish its task before the folder moves
        exc: Any = caught  # papermill's error (untyped) carries the cell's details
        if isinstance(caught, _NotebookError):
            nb, exc = caught.notebook, caught.error
        failed = root / f"{run}.failed"
        shutil.rmtree(failed, ignore_errors=True)
        os.replace(tmp, failed)
        write_json(failed / "failure.json", failure_record(exc, run, profile, nb, failed, timings))
        _rebuild_gallery(root)
        if type(exc).__name__ == "PapermillExecutionError":
            raise NotebookFailed(
                f"notebook {nb}.ipynb failed in cell {exc.cell_index} (execution count {exc.exec_count}): "
                f"{exc.ename}: {exc.evalue}; the partial executed notebook is {failed / f'{nb}.ipynb'}"
            ) from None
        if isinstance(exc, MnemonicError):
            raise exc from None  # the kit's own message, not the wrapper that carried it here
        raise NotebookFailed(f"notebook {nb}.ipynb could not run ({type(exc).__name__}: {exc}); see {failed}") from exc

    old = None
    if final.exists():
        old = root / f".{run}.old-{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(root / f"{run}.failed", ignore_errors=True)  # an earlier failure is history now
    _rebuild_gallery(root)
    return final / "index.html"


class _NotebookError(Exception):
    """A notebook of a run failed: its name and the error (unwrapped before it is reported)."""

    def __init__(self, notebook: str, error: BaseException):
        super().__init__(notebook)
        self.notebook, self.error = notebook, error


def _run_in_order(run_one, at_once: int = 2) -> None:
    """Run every notebook once its upstream notebooks (``notebook_stages.UPSTREAM``) are done,
    ``at_once`` at a time (03 beside 04: both read only 02).  A failure stops the run once the
    notebooks already running end; it is raised as :class:`_NotebookError`."""
    done: set[str] = set()
    running: dict = {}
    failed: _NotebookError | None = None
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        while len(done) < len(NOTEBOOKS) and failed is None:
            for name in NOTEBOOKS:
                ready = name not in done and name not in running.values() and set(UPSTREAM[name]) <= done
                if ready and len(running) < at_once:
                    running[pool.submit(run_one, name)] = name
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                name = running.pop(fut)
                error = fut.exception()
                if error is not None and failed is None:
                    failed = _NotebookError(name, error)
                done.add(name)
        wait(running)
    if failed is not None:
        raise failed


class _Prefetch:
    """The pipeline's independent work of a run (``pipeline.prefetch``: models, reference rows,
    baselines) in a background thread over ``workers`` processes, while the notebooks run."""

    def __init__(self, s: Settings):
        self.outcome: dict | None = None
        self._thread = threading.Thread(target=self._work, args=(s,), name="mnemonic-mu-prefetch", daemon=True)
        self._thread.start()

    def _work(self, s: Settings) -> None:
        try:
            self.outcome = pipeline.prefetch(s)
        except Exception as exc:  # the notebooks compute what is missing themselves
            LOG.warning("computing ahead stopped (%s: %s); the notebooks compute the rest", type(exc).__name__, exc)
            self.outcome = {"error": f"{type(exc).__name__}: {exc}"}

    def result(self) -> dict | None:
        self._thread.join()
        return self.outcome


class _NoPrefetch:
    def result(self) -> None:
        return None


def _prefetch(s: Settings):
    """Start :class:`_Prefetch` unless the run asks for one process (``workers = 1``)."""
    return _Prefetch(s) if worker_count(s.workers, 8) > 1 else _NoPrefetch()


def failure_record(
    exc: BaseException, run: str, profile: str, notebook: str | None, failed: Path, timings: dict
) -> dict:
    """What ``<run>.failed/failure.json`` holds: the failing notebook, its cell and the error."""
    papermill = type(exc).__name__ == "PapermillExecutionError"
    partial = failed / f"{notebook}.ipynb" if notebook else None
    return {
        "run": run,
        "profile": profile,
        "notebook": notebook,
        "cell_index": getattr(exc, "cell_index", None) if papermill else None,
        "exec_count": getattr(exc, "exec_count", None) if papermill else None,
        "ename": getattr(exc, "ename", None) if papermill else type(exc).__name__,
        "evalue": str(getattr(exc, "evalue", "") if papermill else exc)[:2000],
        "partial_notebook": partial.name if partial is not None and partial.is_file() else None,
        "seconds": timings,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _rebuild_gallery(root: Path) -> None:
    """Rebuild ``reports/index.html``; a problem there is logged, never raised over the run's own result."""
    try:
        build_gallery(root)
    except Exception as exc:  # the run's outcome matters more than its listing
        LOG.warning("could not rebuild the gallery %s: %s: %s", root / "index.html", type(exc).__name__, exc)


__all__ = [
    "NotebookFailed",
    "declared_parameters",
    "execute_notebook",
    "notebook_dir",
    "notebook_parameters",
    "resolve_parameters",
    "run_report",
]
