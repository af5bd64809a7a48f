"""The book (``make book``, docs/book.md) in a real browser: Debian's headless Chromium driven by Playwright.

The book is built once per session into a tmp folder, the way ``make book`` builds it: the
session's ci report (tests/test_report.py's shared run) gives notebooks 01-06, the driver
executes 07-09 at the ci profile, Sphinx builds the site.  The site is served by a local http
server on 127.0.0.1, and every page reachable from the home page is opened at 1280 x 800 and
then at 390 px (a phone).  Each page answers 200, raises no script error and loads nothing
from another host; every image has loaded, and a notebook's page shows every figure of its
executed notebook; every link inside the site answers 200 and its ``#fragment`` names an
element of the target page; every formula is typeset by MathJax (no TeX error, no raw ``$$``
or ``\\(`` left in the text); no page is wider than the window at either width.  The first
screen of each page is kept under the session's tmp folder (``book-shots/``).

Without Chromium, Playwright, the Sphinx packages or MathJax (``make book-tools``) the tests
are skipped with the reason, except in CI (environment variable ``CI`` set), where they fail.
The browser tests are marked ``slow``; the last test (docs/book.md quotes its measured times
as generated) is quick.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag

import pytest
from conftest import built_once
from test_report import shared_ci_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 800}


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must build and check the book (.ci/run installs Chromium and runs make book-tools)")
    pytest.skip(f"{reason} (make install, make book-tools, apt-get install chromium; in CI these tests fail instead)")


def _missing() -> str | None:
    """Why the book cannot be built or opened here, or None."""
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM}"
    for module in ("playwright", "sphinx", "myst_nb", "sphinx_book_theme"):
        try:
            __import__(module)
        except ImportError:
            return f"the {module} package is not installed (pip install -e '.[dev]')"
    from mnemonic_mu.drivers.book import mathjax_dir
    from mnemonic_mu.errors import ConfigError

    try:
        mathjax_dir()
    except ConfigError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    """The book's build folder (``book.json``, ``src/``, ``html/``), built once per session."""
    reason = _missing()
    if reason:
        _unavailable(reason)
    from mnemonic_mu.drivers.book import build_book

    ci = shared_ci_report(tmp_path_factory)  # base/reports/ci-test; its model cache is base/cache
    with built_once(tmp_path_factory, "book") as out:
        if not (out / "book.json").is_file():
            build_book(out, "ci", executed=ci, cache_dir=str(ci.parent.parent / "cache"))
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def copyfile(self, source, outputfile):
        try:
            super().copyfile(source, outputfile)
        except (BrokenPipeError, ConnectionResetError):  # the browser left the page before it loaded
            pass


@pytest.fixture(scope="module")
def server(book):
    """``http://127.0.0.1:PORT/`` serving the site (``html/``)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(book / "html")))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(book):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


_MATHJAX_DONE = """() => (window.MathJax && MathJax.startup && MathJax.startup.promise)
  ? MathJax.startup.promise.then(() => true) : false"""

# What a page shows once loaded: its images, links, formulas and any TeX left untypeset in its
# text (outside code), the navigation's links, and its width against the window's.
_COLLECT = r"""() => {
  const article = document.querySelector("article") || document.body;
  const raw = [];
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  const inline = /\$\$|\\\(|\\\[|(^|[^\\$])\$(?=\S)[^$\n]{1,80}\S\$/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement.closest("pre, code, script, style, mjx-container, .highlight")) continue;
    if (inline.test(n.textContent)) raw.push(n.textContent.trim().slice(0, 100));
  }
  const math = Array.from(article.querySelectorAll(".math"));
  return {
    title: document.title,
    images: Array.from(document.images, i => [i.getAttribute("src"), i.complete, i.naturalWidth]),
    figures: article.querySelectorAll("img").length,
    links: Array.from(document.querySelectorAll("a[href]"), a => a.href),
    nav: Array.from(document.querySelectorAll("nav.bd-docs-nav a.reference.internal"), a => a.href),
    math: math.length,
    typeset: math.filter(m => m.querySelector("mjx-container")).length,
    tex_errors: article.querySelectorAll("mjx-merror").length,
    raw_tex: raw,
    width: [document.documentElement.scrollWidth, window.innerWidth],
  };
}"""


def _relative(url: str, base: str) -> str | None:
    """The site path of ``url`` (no fragment), or None for a link that leaves the site."""
    url, _ = urldefrag(url)
    return url[len(base) :].split("?")[0] if url.startswith(base) else None


@pytest.fixture(scope="module")
def visits(book, server, browser, tmp_path_factory) -> dict[str, dict]:
    """``{site path: what the page showed}`` for every page reachable from ``index.html``."""
    shots = tmp_path_factory.getbasetemp() / "book-shots"
    shots.mkdir(exist_ok=True)
    context = browser.new_context(viewport=VIEWPORT)
    outside: list[str] = []
    failed: list[str] = []

    def route(r):
        if r.request.url.startswith(server):
            r.continue_()
        else:  # the offline site must not need it; abort so the test never waits on the network
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    context.on("response", lambda resp: failed.append(f"{resp.status} {resp.url}") if resp.status >= 400 else None)
    context.on("requestfailed", lambda req: failed.append(f"failed {req.url}") if req.url.startswith(server) else None)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    records: dict[str, dict] = {}
    queue = ["index.html"]
    while queue:
        path = queue.pop(0)
        if path in records:
            continue
        del errors[:], outside[:], failed[:]
        response = page.goto(server + path)
        page.wait_for_load_state("load")
        page.evaluate(_MATHJAX_DONE)
        record = page.evaluate(_COLLECT)
        page.screenshot(path=str(shots / (path.replace("/", "_") + ".png")))
        page.set_viewport_size(PHONE)
        record["phone_width"] = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        page.set_viewport_size(VIEWPORT)
        record.update(status=response.status, errors=list(errors), outside=list(outside), failed=list(failed))
        records[path] = record
        for link in record["links"]:
            target = _relative(link, server)
            if target and target.endswith(".html") and target not in records:
                queue.append(target)
    context.close()
    return records


def _pages(book: Path) -> list[str]:
    return json.loads((book / "book.json").read_text())["pages"]


@pytest.mark.slow  # the book's build executes notebooks 07-09 (minutes)
def test_book_holds_every_notebook_and_doc_in_reading_order(book, visits, server):
    from mnemonic_mu.drivers.book import REFERENCE
    from mnemonic_mu.paths import project_root

    root = project_root()
    notebooks = sorted(p.stem for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    docs = [p.stem for p in (root / "docs").glob("*.md")]
    order = [d for d in REFERENCE if d in docs] + sorted(set(docs) - set(REFERENCE))
    expected = ["index"] + [f"notebooks/{n}" for n in notebooks] + [f"docs/{d}" for d in order] + ["CONTRIBUTING"]
    assert _pages(book) == expected
    assert len(notebooks) == 9 and order[:3] == [d for d in ("glossary", "method", "protocol") if d in docs]
    # the navigation lists them in that order, and every one was reached from the home page
    assert [_relative(u, server) for u in visits["index.html"]["nav"]] == [f"{p}.html" for p in expected]
    assert {f"{p}.html" for p in expected} <= set(visits)
    # the notebooks arrive executed at the ci profile: the figures they draw are in the pages
    assert "digits" in (book / "src" / "notebooks" / "02_training.ipynb").read_text()
    assert json.loads((book / "book.json").read_text())["warnings"] == []  # no broken reference while building


@pytest.mark.slow  # the book's build executes notebooks 07-09 (minutes)
def test_every_page_loads_without_errors_or_other_hosts(visits):
    for path, r in visits.items():
        assert r["status"] == 200, path
        assert r["errors"] == [], f"{path}: script errors {r['errors']}"
        assert r["outside"] == [], f"{path}: requests that leave the site {r['outside']}"
        assert r["failed"] == [], f"{path}: resources that did not load {r['failed']}"
        assert r["title"], path


@pytest.mark.slow  # the book's build executes notebooks 07-09 (minutes)
def test_every_image_loads_and_every_figure_is_shown(book, visits):
    for path, r in visits.items():
        broken = [src for src, complete, width in r["images"] if not complete or width <= 0]
        assert not broken, f"{path}: images that did not load: {broken}"
    for nb in sorted((book / "src" / "notebooks").glob("*.ipynb")):
        outputs = [o for c in json.loads(nb.read_text())["cells"] for o in c.get("outputs", [])]
        figures = sum(any(k.startswith("image/") for k in o.get("data", {})) for o in outputs)
        assert figures > 0, f"{nb.name} drew no figure"
        assert visits[f"notebooks/{nb.stem}.html"]["figures"] == figures, nb.name


@pytest.mark.slow  # the book's build executes notebooks 07-09 (minutes)
def test_every_link_inside_the_site_resolves(visits, server):
    ids: dict[str, set[str]] = {}
    for path, r in visits.items():
        for link in set(r["links"]):
            target = _relative(link, server)
            if target is None:
                assert link.startswith(("https://", "http://", "mailto:")), f"{path}: odd link {link}"
                continue
            if target not in ids:
                try:
                    with urllib.request.urlopen(server + target) as resp:
                        assert resp.status == 200
                        body = resp.read().decode("utf-8", "replace") if target.endswith(".html") else ""
                except urllib.error.HTTPError as exc:
                    pytest.fail(f"{path}: link {link} answers {exc.code}")
                ids[target] = set(re.findall(r'\bid="([^"]+)"', body))
            fragment = urldefrag(link).fragment
            if fragment and target.endswith(".html"):
                assert fragment in ids[target], f"{path}: link {link}: no element #{fragment} in {target}"


def _has_math(text: str) -> bool:
    """Whether Markdown source holds a formula ($...$ or $$...$$ outside code)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return bool(re.search(r"\$\$|(?<![\\$])\$(?=\S)[^$\n]+(?<=\S)\$", text))


@pytest.mark.slow  # the book's build executes notebooks 07-09 (minutes)
def test_math_is_typeset(book, visits):
    src = book / "src"
    with_math = []
    for page in _pages(book):
        if page.startswith("notebooks/"):
            cells = json.loads((src / f"{page}.ipynb").read_text())["cells"]
            text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        else:
            text = (src / f"{page}.md").read_text()
        r = visits[f"{page}.html"]
        if _has_math(text):
            with_math.append(page)
            assert r["math"] > 0, f"{page}: its formulas were not parsed as math"
        assert r["typeset"] == r["math"], f"{page}: {r['math'] - r['typeset']} formulas left untypeset"
        assert r["tex_errors"] == 0, f"{page}: MathJax reported TeX errors"
        assert r["raw_tex"] == [], f"{page}: TeX left in the text: {r['raw_tex']}"
    assert {"docs/method", "docs/indistinguishability", "notebooks/03_fisher"} <= set(with_math)


@pytest.mark.slow  # the book's build executes notebooks 07-09 (minutes)
def test_no_page_is_wider_than_the_window(visits):
    for path, r in visits.items():
        for name, (scroll, window) in (("1280 px", r["width"]), ("390 px", r["phone_width"])):
            assert scroll <= window, f"{path} scrolls sideways at {name}: {scroll} px wide"


def test_the_measured_time_in_docs_is_its_record():
    """docs/book.md quotes the measured times of docs/results/book/make-book.json, as generated."""
    from mnemonic_mu.drivers.book import TIME_MARKERS, TIME_RECORD, time_markdown
    from mnemonic_mu.paths import project_root

    root = project_root()
    text = (root / "docs" / "book.md").read_text()
    block = text.split(TIME_MARKERS[0])[1].split(TIME_MARKERS[1])[0]
    record = json.loads((root / TIME_RECORD).read_text())
    assert block.strip() == time_markdown(record).strip()
    clone = record["clean_clone"]
    assert clone["wall_seconds"] >= clone["install_seconds"] + clone["book_seconds"]["total"]
