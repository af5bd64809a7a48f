"""The run page and the gallery in a real browser: Debian's headless Chromium driven by Playwright.

At laptop size (1280 x 800): every image has loaded, nothing is wider than the
viewport (except inside a box that scrolls sideways), every link resolves to
a file that exists, the verdict box states the run's numbers, the gallery
lists every run of a small grid and sorts by a column.  A screenshot of each
page is kept under the test's tmp folder.

The browser is ``/usr/bin/chromium`` (``apt-get install chromium``; ``.ci/run``
installs it), launched by Playwright with ``executable_path``: nothing is
downloaded at test time and ``playwright install`` is never used.  Without
Chromium (or the ``playwright`` package) these tests are skipped with the
reason, except in CI (environment variable ``CI`` set), where they fail.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from test_report import GRID_NAMES, shared_ci_report, shared_grid

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

pytestmark = pytest.mark.slow  # a browser, over the ci report and the small grid (notebooks executed: minutes)


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs Chromium with apt-get)")
    pytest.skip(f"{reason} (install it with `apt-get install -y chromium`; in CI these tests fail instead)")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        _unavailable(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.errors = errors
    yield tab
    context.close()


@pytest.fixture(scope="module")
def ci_report(browser, tmp_path_factory):  # after the browser: no report is built for a skipped test
    return shared_ci_report(tmp_path_factory)


@pytest.fixture(scope="module")
def grid(browser, tmp_path_factory):
    return shared_grid(tmp_path_factory)


def _open(page, path: Path, shots: Path, name: str):
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"{name}-first-screen.png"))
    page.screenshot(path=str(shots / f"{name}-full.png"), full_page=True)
    assert not page.errors, page.errors  # no script error


# Elements whose box reaches past the viewport's right (or left) edge, except those inside a
# box that scrolls sideways (overflow-x auto or scroll), which is where wide tables belong.
_OVERFLOWING = """() => {
  const width = window.innerWidth;
  const scrolls = el => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === "auto" || o === "scroll") return true;
    }
    return false;
  };
  const out = [];
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if ((r.width || r.height) && (r.right > width + 0.5 || r.left < -0.5) && !scrolls(el)) {
      out.push(`${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}.${el.className}: ${r.left}..${r.right}`);
    }
  }
  return out;
}"""


def _check_layout(page) -> None:
    sizes = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert sizes[0] <= sizes[1], f"the page scrolls sideways: {sizes[0]} px wide in a {sizes[1]} px window"
    assert page.evaluate(_OVERFLOWING) == []
    images = page.evaluate(
        "() => Array.from(document.images, i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
    )
    broken = [src for src, complete, width in images if not complete or width <= 0]
    assert not broken, f"images that did not load: {broken}"


def _check_links(page, path: Path) -> int:
    """Every link of the page leads to a file that exists (or an element of the page); returns the count."""
    hrefs = page.evaluate(
        "() => Array.from(document.querySelectorAll('a[href]'), a => [a.getAttribute('href'), a.href])"
    )
    assert hrefs
    for raw, absolute in hrefs:
        url = urlparse(absolute)
        if raw.startswith("#"):
            assert page.locator(f"[id='{raw[1:]}']").count() == 1, f"{path}: no element for {raw}"
            continue
        assert url.scheme == "file", f"{path}: link {raw} leaves the report"
        assert Path(unquote(url.path)).is_file(), f"{path}: link {raw} leads nowhere"
    return len(hrefs)


def test_run_page_fits_a_laptop_screen_and_every_image_loads(ci_report, page, tmp_path):
    _open(page, ci_report / "index.html", tmp_path, "run")
    _check_layout(page)
    assert page.locator("img").count() == len(list((ci_report / "figures").glob("*.png")))
    assert page.locator("#verdict").bounding_box()["y"] < VIEWPORT["height"] / 2  # the verdict is on the first screen
    # the attack table is transposed: one row per method
    summary = json.loads((ci_report / "metrics" / "summary.json").read_text())
    assert page.locator("#attack-table tbody tr").count() == len(summary["methods"])


def test_run_page_links_resolve(ci_report, page, tmp_path):
    _open(page, ci_report / "index.html", tmp_path, "run")
    assert _check_links(page, ci_report / "index.html") >= 2 * 6 + 2


def test_run_page_prints_without_overflow(ci_report, page, tmp_path):
    page.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi
    page.emulate_media(media="print")
    _open(page, ci_report / "index.html", tmp_path, "run-print")
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1]
    assert page.locator("nav.toc").is_hidden()


def test_verdict_box_shows_the_runs_numbers(ci_report, page, tmp_path):
    summary = json.loads((ci_report / "metrics" / "summary.json").read_text())
    step, ref = summary["methods"]["mnemonic"], summary["methods"]["retrain"]
    _open(page, ci_report / "index.html", tmp_path, "run")
    box = page.locator("#verdict")
    assert box.locator("#v-ef").inner_text() == f"{step['E_F']:.2f}"
    assert box.locator("#v-ar-step").inner_text() == f"{step['A_R']:.2f}"
    assert box.locator("#v-ar-retrain").inner_text() == f"{ref['A_R']:.2f}"
    assert box.locator("#v-ar-diff").inner_text() == f"{step['A_R'] - ref['A_R']:+.2f}"
    assert box.locator("#v-gap-value").inner_text() == f"{step['gap']:.2f}"
    forgotten = box.locator("#v-forgotten .value").inner_text()
    assert forgotten == ("forgotten" if step["E_F"] >= 99 else "not forgotten")
    # attacks the original sits inside retrain's band on have no signal and are not counted
    counted = [a for a, r in step["attacks"].items() if not r["no_signal"]]
    assert box.locator("#v-counted").inner_text() == str(len(counted))
    chips = box.locator(".chip").all_inner_texts()
    assert len(chips) == len(step["attacks"])
    assert sum(c.endswith("no signal") for c in chips) == len(step["attacks"]) - len(counted)
    assert int(box.locator("#v-inside").inner_text()) == sum(c.endswith("inside") for c in chips)
    assert int(box.locator("#v-inside").inner_text()) == sum(summary["band"]["inside"]["mnemonic"][a] for a in counted)
    warnings = box.locator("#v-warnings li").all_inner_texts()
    assert warnings == ([f"warning: {w}" for w in step["warnings"]] or ["The step raised no warnings."])
    n = len(summary["band"]["seeds"])
    assert f"the run's retrain band, {n} retrain references" in box.inner_text()  # the band rule is stated


def test_gallery_lists_every_grid_run_and_sorts(grid, page, tmp_path):
    root, _ = grid
    _open(page, root / "index.html", tmp_path, "gallery")
    _check_layout(page)
    _check_links(page, root / "index.html")
    finished = page.locator("#run-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    failed = page.locator("#failed-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert sorted(finished + failed) == sorted(GRID_NAMES)
    assert sorted(failed) == GRID_NAMES[2:]
    assert all("01_mnemonic_codes" in t for t in page.locator("#failed-table tbody tr").all_inner_texts())
    # the settings that differ from the profile are shown
    assert "forget_classes=[3]" in page.locator(f"#run-table tr[data-run='{GRID_NAMES[1]}']").inner_text()
    # sorting: click "seconds" twice, the rows follow the numbers up and then down
    header = page.locator("#run-table th", has_text="seconds")
    column = header.evaluate("th => th.cellIndex") + 1
    cells = f"#run-table tbody td:nth-child({column})"
    header.click()
    up = [float(x) for x in page.locator(cells).evaluate_all("cs => cs.map(c => c.dataset.sort)")]
    header.click()
    down = [float(x) for x in page.locator(cells).evaluate_all("cs => cs.map(c => c.dataset.sort)")]
    assert up == sorted(up) and down == sorted(down, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"


def test_ci_gallery_and_grid_run_pages_fit(ci_report, grid, page, tmp_path):
    root, _ = grid
    pages = [ci_report.parent / "index.html"] + [root / n / "index.html" for n in GRID_NAMES[:2]]
    for i, path in enumerate(pages):
        _open(page, path, tmp_path, f"page{i}")
        _check_layout(page)
        _check_links(page, path)
