"""Every relative link and every pointer to a file or a section resolves, offline.

Checked: the links of README.md, CONTRIBUTING.md, docs/**/*.md and the notebooks' markdown
cells (``[text](target)``, ``<a href>``, ``<img src>``; a ``#anchor`` must be a heading of the
target, slugged as GitHub does), and the pointers written in prose there and in the package's source (docstrings and
comments): a repository path (``docs/protocol.md``, ``notebooks/04_unlearning.ipynb``,
``mnemonic_mu/profiles/*.yaml``) must exist, and a section named after a file
(``docs/protocol.md, "Splits"``, ``(README, section "Notebooks")``,
``docs/method.md section 6``) must be a heading of that file.  Code blocks and code spans
of markdown are not links.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    *sorted((ROOT / "docs").rglob("*.md")),
    *sorted((ROOT / "notebooks").glob("*.ipynb")),
]  # a notebook: its markdown cells
SOURCES = sorted((ROOT / "mnemonic_mu").rglob("*.py"))

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=\"([^\"]+)\"", re.I)
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$", re.M)
# a file a pointer names: README / CONTRIBUTING (with or without .md) or a path under a top folder
FILE = r"(README(?:\.md)?|CONTRIBUTING(?:\.md)?|(?:docs|notebooks|tests|benchmarks|mnemonic_mu)/[\w./*-]*\w)"
# FILE, "Section" / FILE, section "Section" / FILE section "Section" / FILE ("Section"
SECTION = re.compile(FILE + r"(?:,\s+(?:section\s+)?|\s+section\s+|\s+\()\"([^\"]+)\"")
NUMBERED = re.compile(FILE + r",?\s+section\s+(\d+)\b")
PATH = re.compile(r"(?<![\w./-])" + FILE + r"(?![\w/-])")


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lower-cased, punctuation dropped (letters,
    digits, ``_``, ``-`` and spaces kept), each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = "".join(c for c in text.lower() if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return text.replace(" ", "-")


def _prose(text: str) -> str:
    """Markdown without its fenced code blocks (kept as blank lines)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def _markdown(path: Path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return path.read_text()


@lru_cache(maxsize=None)
def headings(path: Path) -> tuple[str, ...]:
    """The heading texts of a markdown file or of a notebook's markdown cells."""
    return tuple(m.group(2) for m in HEADING.finditer(_prose(_markdown(path))))


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of the headings of ``path``: a repeated slug gets -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for h in headings(path):
        s = slug(h)
        out.add(f"{s}-{seen[s]}" if s in seen else s)
        seen[s] = seen.get(s, 0) + 1
    return out


def markdown_links(text: str) -> list[str]:
    """The link targets of markdown ``text``, outside code blocks and code spans."""
    prose = CODE_SPAN.sub("", _prose(text))
    return [m.group(1) for m in LINK.finditer(prose)] + [m.group(1) for m in HTML_LINK.finditer(prose)]


def check_link(source: Path, target: str) -> str | None:
    """Why the link ``target`` of the file ``source`` does not resolve, or None if it does
    (a web address is not checked)."""
    if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
        return None
    path, _, anchor = target.partition("#")
    file = (source.parent / path).resolve() if path else source
    if not file.exists():
        return f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}"
    if anchor and file.suffix in (".md", ".ipynb") and anchor not in anchors(file):
        return f"{target}: no heading of {file.name} has the anchor #{anchor}"
    return None


def _file(name: str) -> Path:
    return ROOT / (name + ".md" if name in ("README", "CONTRIBUTING") else name)


def check_path(name: str) -> str | None:
    """Why the repository path ``name`` (a glob with ``*``) names nothing, or None."""
    if "*" in name:
        return None if any(ROOT.glob(name)) else f"{name}: matches no file"
    return None if _file(name).exists() else f"{name}: no such file"


def check_section(name: str, section: str) -> str | None:
    """Why ``section`` is not a heading of the file ``name``, or None.  A heading matches when
    it starts with ``section`` (its number, "6. ", may be left out); a bare number matches
    the heading numbered so."""
    file = _file(name)
    if not file.exists():
        return f"{name}: no such file"
    plain = [re.sub(r"[`*]", "", h).strip() for h in headings(file)]
    if section.isdigit():
        found = any(h.startswith(f"{section}. ") for h in plain)
    else:
        want = " ".join(section.split()).rstrip(".")
        found = any(h.startswith(want) or re.sub(r"^\d+\.\s+", "", h).startswith(want) for h in plain)
    return None if found else f'{name}, "{section}": no such heading in {file.relative_to(ROOT)}'


def pointer_problems(text: str) -> list[str]:
    """Every pointer of ``text`` (prose or Python source) that does not resolve."""
    problems = []
    for m in SECTION.finditer(text):
        problems.append(check_section(m.group(1), m.group(2)))
    for m in NUMBERED.finditer(text):
        problems.append(check_section(m.group(1), m.group(2)))
    for m in PATH.finditer(text):
        name = m.group(1).rstrip(".")
        # a template, not a path: docs/results/<name>.json, {out}, docs/results/population/NAME.json,
        # notebooks/01..06
        template = re.search(r"[<>{}]", text[m.start() : m.end() + 1]) or ".." in name
        if not template and not re.fullmatch(r"[A-Z][A-Z_]+", Path(name).stem):
            problems.append(check_path(name))
    return [p for p in problems if p]


def link_problems(path: Path) -> list[str]:
    """Every link and pointer of the markdown file (or notebook) ``path`` that does not resolve."""
    text = _markdown(path)
    problems = [check_link(path, t) for t in markdown_links(text)]
    return [p for p in problems if p] + pointer_problems(_prose(text))


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_pointers_of_the_docs_resolve(path):
    assert link_problems(path) == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pointers_in_the_package_resolve(path):
    assert pointer_problems(path.read_text()) == []


def test_the_checks_find_what_is_broken(tmp_path):
    """The same functions report a made-up broken link, anchor, path and section."""
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n## Two words\n")
    text = (
        "See [there](page.md#two-words), [here](#a-page), [the web](https://example.org/x.md) and "
        "`[a span](nowhere.md)`.\n\n```\n[a fence](nowhere.md)\n```\n"
        "Broken: [gone](no-such-file.md), [bad anchor](page.md#three-words), [self](#nothing).\n"
    )
    found = [check_link(page, t) for t in markdown_links(text)]
    assert [t for t, p in zip(markdown_links(text), found) if p] == [
        "no-such-file.md",
        "page.md#three-words",
        "#nothing",
    ]
    assert slug('5. The kit\'s calibrated step (`forget(step="calibrated")`, the default)') == (
        "5-the-kits-calibrated-step-forgetstepcalibrated-the-default"
    )
    assert anchors(page) == {"a-page", "two-words"}
    assert pointer_problems('(docs/protocol.md, "Splits"), docs/method.md section 6, README.md') == []
    bad = pointer_problems(
        '(docs/protocol.md, "Made-up section"), (README, "Artifacts"), '
        "docs/method.md section 42, docs/no-such-page.md, mnemonic_mu/profiles/*.toml"
    )
    assert len(bad) == 5, bad


COMMANDS = re.compile(r"``mnemonic-mu ([\w-]+(?: \| [\w-]+)+)``")


def listed_commands(doc: str) -> list[str]:
    """The commands a docstring lists as ``mnemonic-mu a | b | c``."""
    m = COMMANDS.search(doc)
    return m.group(1).split(" | ") if m else []


def test_the_drivers_docstrings_list_every_command():
    """cli.py's and drivers/__init__.py's module docstrings name the CLI's commands, all of them."""
    import argparse

    from mnemonic_mu import drivers
    from mnemonic_mu.drivers import cli

    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = list(sub.choices)
    assert {"experiment", "sweep", "report", "results", "population", "settings", "datasets"} <= set(commands)
    for doc in (cli.__doc__, drivers.__doc__):
        assert listed_commands(doc or "") == commands
    assert listed_commands("``mnemonic-mu experiment | sweep``") != commands  # a short list fails
