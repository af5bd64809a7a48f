"""``mnemonic-mu report``: execute the six stage notebooks with papermill and build an HTML report.

::

    mnemonic-mu report [--profile ci|laptop|paper] [--run NAME] [-p key=value ...]

Parameters come from a profile (``mnemonic_mu/profiles/<name>.yaml``) and
``-p`` overrides (each value read with ``yaml.safe_load``, never evaluated).
Before anything runs, every name is checked against the ``parameters``
cells of the notebooks (a name no notebook declares is an error; papermill
itself would only warn) and its type against the declared default, and the
whole set is validated by :class:`~mnemonic_mu.stages.StageConfig`.  Each
notebook then gets only the names it declares.

The run is built in a hidden staging folder beside ``reports/<run>/`` and
renamed into place when every notebook has succeeded.  When a notebook
fails, the run stops with the notebook's name and cell, and the staging
folder (with the partial executed notebook) is kept as
``reports/<run>.failed/``.
"""

from __future__ import annotations

import ast
import html
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from ..errors import ConfigError, MnemonicError
from ..io.artifacts import atomic_write_text, write_json
from ..notebook_stages import NOTEBOOKS
from ..settings import PROFILES, Settings, load_profile, parse_overrides, project_root

KERNEL = "python3"
PATH_PARAMETERS = ("data_root", "cache_dir")  # -p values: relative to the caller's directory
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
    """Profile + overrides, every name checked against what the notebooks declare (papermill
    itself would only warn) and the whole set validated by :class:`Settings`."""
    params = load_profile(profile)
    for key in overrides:
        if key in RUNNER_PARAMETERS:
            raise ConfigError(f"{key} is set by the runner; choose the run's folder with --run NAME")
    params |= overrides
    known = set().union(*[set(d) for d in declared.values()])
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(
            f"unknown parameter {unknown[0]!r}: no notebook declares it; known: {', '.join(sorted(known))}"
        )
    for key in PATH_PARAMETERS:  # absolute, so every kernel sees the same folders
        path = Path(str(params.get(key, Settings().to_dict()[key]))).expanduser()
        if not path.is_absolute():
            path = (cwd if key in overrides else project_root()) / path
        params[key] = str(path.resolve())
    checked = Settings(**params).to_dict()  # the same validation the notebooks' config cells do
    return {k: checked[k] for k in params}


def resolved_config(params: dict) -> dict:
    """Every setting of the run: the defaults overridden by ``params``."""
    return {k: v for k, v in Settings(**params).to_dict().items() if k != "run_dir"}


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
            super().__init__(**kwargs)

    return IPCKernelManager


def _execute(src: Path, out: Path, parameters: dict, cwd: Path, progress: bool) -> None:
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


_EXPORTER = None


def _html(executed: Path) -> str:
    """One HTML page with code visible (nbconvert's lab template; the exporter is reused)."""
    global _EXPORTER
    if _EXPORTER is None:
        from nbconvert import HTMLExporter

        _EXPORTER = HTMLExporter(template_name="lab")
    body, _ = _EXPORTER.from_filename(str(executed))
    return body


def run_report(
    profile: str = "laptop",
    run: str | None = None,
    overrides: dict | None = None,
    reports_dir: str | os.PathLike | None = None,
    notebooks: str | os.PathLike | None = None,
    progress: bool = False,
) -> Path:
    """Execute the notebooks and write ``reports/<run>/``; returns the path of ``index.html``."""
    run = run or profile
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", run):
        raise ConfigError(f"run name {run!r} may only hold letters, digits, '.', '_' and '-'")
    folder = Path(notebooks).resolve() if notebooks else notebook_dir()
    declared = declared_parameters(folder)
    params = resolve_parameters(profile, dict(overrides or {}), declared, Path.cwd())

    root = Path(reports_dir).resolve() if reports_dir else project_root() / "reports"
    root.mkdir(parents=True, exist_ok=True)
    final = root / run
    tmp = Path(tempfile.mkdtemp(prefix=f".{run}.", suffix=".tmp", dir=root))
    tmp.chmod(0o755)  # mkdtemp makes it private; a report is for reading
    timings: dict[str, float] = {}
    start = time.perf_counter()
    try:
        for nb in NOTEBOOKS:
            mine = {k: v for k, v in params.items() if k in declared[nb]}
            if "run_dir" in declared[nb]:
                mine["run_dir"] = str(tmp)
            t0 = time.perf_counter()
            _execute(folder / f"{nb}.ipynb", tmp / f"{nb}.ipynb", mine, folder, progress)
            timings[nb] = time.perf_counter() - t0
            atomic_write_text(tmp / f"{nb}.html", _html(tmp / f"{nb}.ipynb"))
    except Exception as exc:
        failed = root / f"{run}.failed"
        shutil.rmtree(failed, ignore_errors=True)
        os.replace(tmp, failed)
        if type(exc).__name__ == "PapermillExecutionError":
            raise NotebookFailed(
                f"notebook {nb}.ipynb failed in cell {exc.cell_index} (execution count {exc.exec_count}): "
                f"{exc.ename}: {exc.evalue}; the partial executed notebook is {failed / (nb + '.ipynb')}"
            ) from None
        if isinstance(exc, MnemonicError):
            raise
        raise NotebookFailed(f"notebook {nb}.ipynb could not run ({type(exc).__name__}: {exc}); see {failed}") from exc

    summary_path = tmp / "metrics" / "summary.json"
    if not summary_path.is_file():
        raise NotebookFailed(f"06_report did not write metrics/summary.json; see {tmp}")
    total = time.perf_counter() - start
    resolved = resolved_config(params)
    write_json(tmp / "metrics" / "run.json", {"profile": profile, "run": run, "seconds": total, "notebooks": timings})
    atomic_write_text(
        tmp / "params.yaml",
        yaml.safe_dump(
            {"profile": profile, "run": run, "overrides": overrides or {}, "parameters": params, "resolved": resolved},
            sort_keys=False,
        ),
    )
    summary = json.loads(summary_path.read_text())
    atomic_write_text(tmp / "index.html", index_html(run, profile, resolved, summary, timings, total, tmp))
    old = None
    if final.exists():
        old = root / f".{run}.old-{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(root / f"{run}.failed", ignore_errors=True)  # an earlier failure is history now
    return final / "index.html"


# --------------------------------------------------------------------------
# index.html

_TITLES = {
    "01_mnemonic_codes": "Mnemonic codes",
    "02_training": "Training with codes, without codes, retrain",
    "03_fisher": "Fisher information from the codes",
    "04_unlearning": "One-shot unlearning",
    "05_membership_evaluation": "Membership evaluation",
    "06_report": "Report",
}

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}figure{display:inline-block;margin:0.5em;vertical-align:top}
figure img{max-width:520px}figcaption{font-size:0.85em;color:#555}code{background:#f4f4f4;padding:0 3px}
"""


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return html.escape(str(value))


def summary_rows(summary: dict) -> list[tuple[str, dict]]:
    return list(summary["methods"].items())


def index_html(run: str, profile: str, settings_used: dict, summary: dict, timings: dict, total: float, folder: Path) -> str:
    """The report's front page: links, the summary table, every figure inline, the settings."""
    cols = ("A_R", "E_F", "A_R_train", "E_F_train", "test_accuracy", "gap_to_retrain")
    head = "".join(f"<th>{c}</th>" for c in ("method", *cols, "seconds"))
    rows = []
    for name, row in summary_rows(summary):
        secs = row.get("forget_seconds", row.get("train_seconds", row.get("seconds")))
        cells = "".join(f"<td>{_fmt(row.get(c))}</td>" for c in cols)
        rows.append(f"<tr><td>{html.escape(name)}</td>{cells}<td>{_fmt(secs)}</td></tr>")
    attack_rows = []
    names = []
    for _, row in summary_rows(summary):
        names += [n for n in (row.get("attacks") or {}) if n not in names]
    if names:
        attack_rows.append("<tr><th>attack</th>" + "".join(f"<th>{html.escape(m)}</th>" for m, _ in summary_rows(summary)) + "</tr>")
        for a in names:
            vals = "".join(f"<td>{_fmt(((r.get('attacks') or {}).get(a) or {}).get('value'))}</td>" for _, r in summary_rows(summary))
            attack_rows.append(f"<tr><td>{html.escape(a)}</td>{vals}</tr>")
    links = "".join(
        f"<li><a href='{nb}.html'>{nb}</a> ({html.escape(_TITLES[nb])}; {timings.get(nb, 0):.1f} s; "
        f"<a href='{nb}.ipynb'>notebook</a>)</li>"
        for nb in NOTEBOOKS
    )
    figures = "".join(
        f"<figure><img src='figures/{p.name}' alt='{p.stem}'><figcaption>{p.stem}</figcaption></figure>"
        for p in sorted((folder / "figures").glob("*.png"))
    )
    settings = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(json.dumps(v))}</td></tr>" for k, v in settings_used.items()
    )
    warnings = [
        f"<li>{html.escape(name)}: {html.escape(w)}</li>"
        for name, row in summary_rows(summary)
        for w in row.get("warnings", [])
    ]
    forget = ", ".join(map(str, summary["forget_classes"]))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mnemonic-mu report {html.escape(run)}</title><style>{_CSS}</style></head>
<body>
<h1>mnemonic-mu report: {html.escape(run)}</h1>
<p>Profile <code>{html.escape(profile)}</code>; dataset <code>{html.escape(summary['dataset'])}</code>,
model <code>{html.escape(str(summary.get('model')))}</code>, forget class(es) {forget}, seed {summary['seed']}.
All notebooks ran in {total:.0f} s.</p>
<h2>Summary</h2>
<p>Accuracies in percent on the test split (<code>_train</code>: training split). E_F = error on the forget
class (100 = forgotten). Compare every method with <b>retrain</b>: gap_to_retrain is the mean absolute
difference to it over A_R, E_F (test and train) and the confidence-SVC MIA score (lower is better).
Seconds: training for original, no_codes and retrain; the unlearning method's own time (its
hyperparameter search included) for every other row.</p>
<table><tr>{head}</tr>{''.join(rows)}</table>
{'<h3>Warnings</h3><ul>' + ''.join(warnings) + '</ul>' if warnings else ''}
{'<h3>Membership attacks (shares and accuracies as fractions, epsilon as a log-ratio; the target is retrain&#39;s value)</h3><table>' + ''.join(attack_rows) + '</table>' if attack_rows else ''}
<h2>Notebooks</h2><ol>{links}</ol>
<h2>Figures</h2>{figures}
<h2>Settings</h2><p>Also in <a href="params.yaml">params.yaml</a>; metrics in <code>metrics/*.json</code>.</p>
<table>{settings}</table>
</body></html>
"""


# --------------------------------------------------------------------------
# CLI


def add_subcommand(sub) -> None:
    """Register ``mnemonic-mu report`` (called by :mod:`mnemonic_mu.drivers.cli`)."""
    p = sub.add_parser(
        "report",
        help="run the six notebooks with papermill and write an HTML report",
        description="Execute notebooks/01..06 with papermill and write reports/<run>/ (executed "
        "notebooks, HTML pages, index.html, figures/, metrics/, params.yaml).",
    )
    p.add_argument("--profile", default="laptop", help="ci | laptop (default) | paper")
    p.add_argument("--run", default=None, help="name of the run folder under reports/ (default: the profile)")
    p.add_argument(
        "-p", "--param", action="append", default=[], metavar="KEY=VALUE",
        help="override a notebook parameter (repeatable), e.g. -p epochs=5 -p forget_classes=[3]",
    )
    p.add_argument("--reports-dir", default=None, help="where run folders go (default: <repo>/reports)")
    p.add_argument("--notebooks", default=None, help="folder of the stage notebooks (default: the repo's)")
    p.add_argument("--progress", action="store_true", help="show papermill's cell progress")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    index = run_report(
        profile=args.profile,
        run=args.run,
        overrides=parse_overrides(args.param),
        reports_dir=args.reports_dir,
        notebooks=args.notebooks,
        progress=args.progress,
    )
    run = json.loads((index.parent / "metrics" / "run.json").read_text())
    print(f"report written in {run['seconds']:.0f} s: {index}")
    return 0


__all__ = [
    "NotebookFailed",
    "PROFILES",
    "add_subcommand",
    "declared_parameters",
    "notebook_dir",
    "parse_overrides",
    "resolve_parameters",
    "run_report",
]
