"""``make book``: the notebooks, executed, and the docs as one static website (docs/book.md).

::

    python -m mnemonic_mu.drivers.book [--profile ci|laptop|paper] [--out build/book]
                                       [--executed reports/ci] [--cache-dir DIR]

Three steps, each in its own folder under ``--out`` (default ``build/book/``):

1. ``executed/``: the nine notebooks run at the profile.  The six stage notebooks go through
   the report runner (:func:`~mnemonic_mu.drivers.report.run_report`, into ``reports/``), or
   are copied from ``--executed`` (a finished ``mnemonic-mu report`` run folder); the three
   that the report does not run are executed with papermill and the small knobs of ``MORE``.
   Nothing is written into ``notebooks/``.
2. ``src/``: a Sphinx project: ``book/`` (``conf.py``, ``_static/book.css``), the README as
   the home page with the table of contents (``CHAPTERS``: the order a student reads in),
   CONTRIBUTING.md, ``docs/*.md``, the executed notebooks and MathJax (``_static/mathjax``,
   from the npm package that ``make book-tools`` installs into the virtual environment).
3. ``html/``: the site, built by ``python -m sphinx`` (MyST-NB renders the notebooks with
   their outputs and figures; MathJax typesets the math in the browser).  Copy this folder to
   any web host.  ``book.json`` beside it holds the seconds of each step and the page list.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..errors import ConfigError, MnemonicError
from ..notebook_stages import NOTEBOOKS
from ..overrides import PROFILES
from ..paths import project_root
from .report import execute_notebook, notebook_dir, run_report

MATHJAX_VERSION = "3.2.2"  # the npm package `mathjax`, pinned in the Makefile (book-tools)

# The notebooks the report does not run, with knobs that keep them to a minute or two at the
# ci profile (their own defaults are a laptop's full study): a 2 x 2 sweep, the calibration
# study as it is, the per-example attack on six seeds (its minimum).
MORE: dict[str, dict[str, object]] = {
    "07_comparison": {"classes": [0, 3], "seeds": [0, 1], "jobs": 2},
    "08_calibration": {},
    "09_per_example_attack": {"seeds": [0, 1, 2, 3, 4, 5]},
}

# The table of contents, in the order a student reads: the README (the home page), the nine
# notebooks, then the reference pages.  A page of docs/ that is not listed here comes after
# the listed ones (alphabetically), so a new page is never left out; a listed page that does
# not exist (yet) is skipped.
REFERENCE = (
    "glossary",
    "method",
    "protocol",
    "evaluation",
    "indistinguishability",
    "baselines",
    "calibration",
    "matched",
    "results",
    "settings",
    "report",
    "book",
    "performance",
    "distributed",
    "troubleshooting",
)
CHAPTERS = ("Notebooks", "Reference")


def mathjax_dir() -> Path:
    """MathJax's browser files (``es5/``), installed by ``make book-tools`` with npm into the
    virtual environment that runs this (``<venv>/mathjax/node_modules/mathjax/es5``)."""
    es5 = Path(sys.prefix) / "mathjax" / "node_modules" / "mathjax" / "es5"
    try:
        version = json.loads((es5.parent / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        version = None
    if version != MATHJAX_VERSION or not (es5 / "tex-chtml.js").is_file():
        found = f"version {version} found" if version else f"{es5 / 'tex-chtml.js'} is missing"
        raise ConfigError(
            f"MathJax {MATHJAX_VERSION} is not installed ({found}); run `make book-tools` "
            f"(npm install mathjax@{MATHJAX_VERSION} into the virtual environment)"
        )
    return es5


def notebook_names() -> list[str]:
    """Every numbered notebook of ``notebooks/``, in order (``01_...`` to ``09_...``)."""
    return sorted(p.stem for p in notebook_dir().glob("[0-9][0-9]_*.ipynb"))


def execute(
    out: Path, profile: str = "ci", executed: Path | None = None, cache_dir: str | None = None, progress: bool = False
) -> tuple[Path, dict]:
    """Every numbered notebook executed at ``profile`` into ``out/executed/``; returns the
    folder and the seconds of each step."""
    folder = out / "executed"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    overrides = {"cache_dir": str(Path(cache_dir).resolve())} if cache_dir else {}
    seconds = {}
    t0 = time.perf_counter()
    if executed is None:
        executed = run_report(
            profile, run=f"book-{profile}", reports_dir=out / "reports", overrides=overrides, progress=progress
        ).parent
        seconds["report"] = time.perf_counter() - t0
    for name in NOTEBOOKS:
        src = Path(executed) / f"{name}.ipynb"
        if not src.is_file():
            raise ConfigError(f"{src} is missing: --executed takes a finished `mnemonic-mu report` run folder")
        shutil.copy2(src, folder / f"{name}.ipynb")
    for name in notebook_names():
        if name in NOTEBOOKS:
            continue
        knobs = MORE.get(name, {})
        params = {"profile": profile, **knobs, "overrides": overrides | {"run_dir": str(out / "runs" / name)}}
        if name == "07_comparison":
            params["out_dir"] = str(out / "runs" / name / "sweep")
        t1 = time.perf_counter()
        execute_notebook(notebook_dir() / f"{name}.ipynb", folder / f"{name}.ipynb", params, notebook_dir(), progress)
        seconds[name] = time.perf_counter() - t1
    return folder, seconds


def reference_pages(docs: Path) -> list[str]:
    """The docs' page names in the book's order (``REFERENCE``, then any other, alphabetically)."""
    present = {p.stem for p in docs.glob("*.md")}
    return [n for n in REFERENCE if n in present] + sorted(present - set(REFERENCE))


def assemble(src: Path, executed: Path) -> list[str]:
    """The Sphinx project in ``src`` (emptied first); returns its pages in reading order."""
    root, mathjax = project_root(), mathjax_dir()
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(root / "book", src, ignore=shutil.ignore_patterns("__pycache__"))  # conf.py, _static/
    (src / "notebooks").mkdir()
    shutil.copytree(root / "docs", src / "docs", ignore=shutil.ignore_patterns("results"))
    shutil.copy2(root / "CONTRIBUTING.md", src / "CONTRIBUTING.md")
    notebooks = notebook_names()
    for name in notebooks:
        shutil.copy2(executed / f"{name}.ipynb", src / "notebooks" / f"{name}.ipynb")
    # MathJax: the one combined file the pages load, and what it loads on demand (TeX
    # extensions, the CHTML fonts, the menu and its accessibility tools)
    dest = src / "_static" / "mathjax"
    shutil.copytree(
        mathjax,
        dest,
        ignore=lambda d, names: [n for n in names if Path(d) == mathjax and n.endswith(".js") and n != "tex-chtml.js"],
    )
    reference = [f"docs/{n}" for n in reference_pages(src / "docs")] + ["CONTRIBUTING"]
    toc = [(CHAPTERS[0], [f"notebooks/{n}" for n in notebooks]), (CHAPTERS[1], reference)]
    blocks = "".join(
        f"\n```{{toctree}}\n:hidden:\n:caption: {caption}\n\n" + "\n".join(entries) + "\n```\n"
        for caption, entries in toc
    )
    (src / "index.md").write_text((root / "README.md").read_text() + blocks)
    return ["index"] + [e for _, entries in toc for e in entries]


def sphinx_build(src: Path, html: Path, doctrees: Path, warnings: Path) -> None:
    """``python -m sphinx -b html`` from scratch (``-E``); its warnings go to ``warnings``."""
    shutil.rmtree(html, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-b",
        "html",
        "-E",
        "-q",
        "-w",
        str(warnings),
        "-d",
        str(doctrees),
        str(src),
        str(html),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise MnemonicError(f"sphinx failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


def build_book(
    out: str | Path | None = None,
    profile: str = "ci",
    executed: str | Path | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
) -> Path:
    """Execute the notebooks, assemble the Sphinx project and build the site under ``out``
    (default ``<repo>/build/book``); returns the site's ``index.html``."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    out = Path(out).resolve() if out else project_root() / "build" / "book"
    mathjax_dir()  # before any notebook runs: a missing tool is found in a second, not after minutes
    start = time.perf_counter()
    folder, seconds = execute(out, profile, Path(executed).resolve() if executed else None, cache_dir, progress)
    t0 = time.perf_counter()
    pages = assemble(out / "src", folder)
    sphinx_build(out / "src", out / "html", out / "doctrees", out / "sphinx-warnings.txt")
    seconds["sphinx"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - start
    record = {
        "profile": profile,
        "executed_from": str(executed) if executed else None,
        "pages": pages,
        "seconds": seconds,
        "warnings": (out / "sphinx-warnings.txt").read_text().splitlines(),
    }
    (out / "book.json").write_text(json.dumps(record, indent=2) + "\n")
    return out / "html" / "index.html"


TIME_RECORD = Path("docs/results/book/make-book.json")  # the measured times docs/book.md quotes
TIME_MARKERS = ("<!-- book-time:start -->", "<!-- book-time:end -->")


def time_markdown(record: dict) -> str:
    """The "How long it takes" paragraph of docs/book.md, from the measured ``record``."""
    clean, again, test = record["clean_clone"], record["again"], record["test"]
    b = clean["book_seconds"]
    return (
        f"Measured on {record['machine']}, with `time {record['command']}` in a fresh clone (the driver's "
        f"`build/book/book.json` gives the steps): **{clean['wall_seconds'] / 60:.1f} min** in all. Of these, "
        f"{clean['install_seconds']:.0f} s create the virtual environment and install the kit, and "
        f"{b['total']:.0f} s build the book: the report's notebooks 01-06 (training the ci models) "
        f"{b['report']:.0f} s, `07_comparison` {b['07_comparison']:.0f} s, `08_calibration` "
        f"{b['08_calibration']:.0f} s, `09_per_example_attack` {b['09_per_example_attack']:.0f} s, and Sphinx "
        f"{b['sphinx']:.0f} s for {clean['pages']} pages. `make book` again, with the models cached, takes "
        f"{again['wall_seconds']:.0f} s.\n\n"
        f"The browser test alone (`{test['command']}`) takes {test['wall_seconds']:.0f} s, since it also runs "
        f"the ci report that it shares with the other report tests. Of these, {test['book_seconds']['total']:.0f} s "
        f"build the book. In `make test`, the report has already run for those tests. On a busier "
        f"machine (load average {test['busier']['load_average']}) the same test took "
        f"{test['busier']['wall_seconds']:.0f} s, {test['busier']['book_seconds']['07_comparison']:.0f} s of "
        f"them in `07_comparison`'s sweep (two worker processes).\n\n"
        f"Numbers from `{TIME_RECORD.as_posix()}`; after measuring again, update that file and run "
        f"`python -m mnemonic_mu.drivers.book --write-time-docs`."
    )


def write_time_docs(root: Path | None = None) -> Path:
    """Rewrite the paragraph between ``TIME_MARKERS`` in docs/book.md from ``TIME_RECORD``."""
    root = root or project_root()
    page = root / "docs" / "book.md"
    text = page.read_text()
    start, end = text.index(TIME_MARKERS[0]) + len(TIME_MARKERS[0]), text.index(TIME_MARKERS[1])
    record = json.loads((root / TIME_RECORD).read_text())
    page.write_text(text[:start] + "\n" + time_markdown(record) + "\n" + text[end:])
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mnemonic_mu.drivers.book", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="ci", help="the settings profile the notebooks run at (default: ci)")
    parser.add_argument("--out", default=None, help="output folder (default: build/book); the site is OUT/html")
    parser.add_argument(
        "--executed",
        default=None,
        help="a finished `mnemonic-mu report` run folder whose notebooks 01-06 to use instead of running them",
    )
    parser.add_argument("--cache-dir", default=None, help="the model cache (default: the profile's, data/cache)")
    parser.add_argument(
        "--write-time-docs",
        action="store_true",
        help=f"only rewrite docs/book.md's measured times from {TIME_RECORD.as_posix()}",
    )
    args = parser.parse_args(argv)
    if args.write_time_docs:
        print(write_time_docs())
        return 0
    try:
        index = build_book(args.out, args.profile, args.executed, args.cache_dir, progress=sys.stderr.isatty())
    except MnemonicError as exc:
        print(f"mnemonic-mu book: error: {exc}", file=sys.stderr)
        return 2
    record = json.loads((index.parent.parent / "book.json").read_text())
    print(f"{index} ({len(record['pages'])} pages, {record['seconds']['total']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
