"""``mnemonic-mu report``: the whole notebook sequence through papermill (ci profile).

One session fixture runs the six notebooks once; the tests assert on the
metrics they wrote and on the run page and gallery built from them (slow tests,
like every test that executes a notebook; the parameter and grid checks are fast).
Parameter checks run before any kernel starts.  A small grid (two datasets,
one of which fails in its first notebook, times two seeds) runs once per
session in parallel; tests/test_browser.py looks at the same pages in a
browser (the helpers below share them through the session's base temp folder).
"""

from __future__ import annotations

import json
import math
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml
from conftest import built_once

from mnemonic_mu import notebook_stages as stages
from mnemonic_mu.algorithms.methods import method_choices
from mnemonic_mu.drivers import grid as grid_module, report as report_module
from mnemonic_mu.drivers.cli import main
from mnemonic_mu.drivers.grid import grid_points, grid_run_names, parse_grid, run_grid
from mnemonic_mu.drivers.report import NotebookFailed, declared_parameters, notebook_dir, resolve_parameters, run_report
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.overrides import parse_overrides
from mnemonic_mu.settings import Settings

# The small grid: digits runs, and mnist runs that fail in their first notebook (no data
# under data_root), so the gallery has finished and failed rows; five epochs, no baselines.
GRID = {"dataset": ["digits", "mnist"], "forget_classes": [[1], [3]]}
GRID_NAMES = [
    "ci-dataset_digits-forget_classes_1",
    "ci-dataset_digits-forget_classes_3",
    "ci-dataset_mnist-forget_classes_1",
    "ci-dataset_mnist-forget_classes_3",
]


def shared_ci_report(tmp_path_factory) -> Path:
    """The ci report of this session (run once, also used by tests/test_browser.py)."""
    with built_once(tmp_path_factory, "ci") as base:
        index = base / "reports" / "ci-test" / "index.html"
        if not index.is_file():
            # every registered method, the opt-in ones too (the default baselines leave those out)
            everything = {"cache_dir": str(base / "cache"), "baselines": list(method_choices())}
            index = run_report("ci", run="ci-test", reports_dir=base / "reports", overrides=everything)
    return index.parent


def shared_grid(tmp_path_factory) -> tuple[Path, dict]:
    """``(reports folder, first call)`` of the session's small grid, run once with two jobs;
    the first call's results and seconds are kept beside the folder for whichever test asks."""
    with built_once(tmp_path_factory, "grid") as base:
        root, first = base / "reports", base / "first-call.json"
        if not first.is_file():
            t0 = time.perf_counter()
            results = run_grid("ci", GRID, overrides=grid_overrides(base), jobs=2, reports_dir=root)
            first.write_text(json.dumps({"results": results, "seconds": time.perf_counter() - t0}))
    return root, json.loads(first.read_text())


def grid_overrides(base: Path) -> dict:
    return {"epochs": 5, "baselines": "none", "cache_dir": str(base / "cache"), "data_root": str(base / "nowhere")}


class _Links(HTMLParser):
    """Every ``href`` and ``src`` of a page, and the text of the elements with an ``id``."""

    def __init__(self):
        super().__init__()
        self.hrefs, self.srcs, self.captions = [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "img":
            self.srcs.append(a["src"])
        if tag == "figcaption":
            self.captions += 1


def _links(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text())
    return parser


@pytest.fixture(scope="session")
def ci_report(tmp_path_factory):
    return shared_ci_report(tmp_path_factory)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow  # the session's ci report: six notebooks executed
def test_report_writes_every_part(ci_report):
    for nb in stages.NOTEBOOKS:
        assert (ci_report / f"{nb}.ipynb").is_file()
        page = (ci_report / f"{nb}.html").read_text()
        assert "Settings" in page and "compute_" in page  # code is visible
        assert (ci_report / "metrics" / f"{nb}.json").is_file()
    page = _links(ci_report / "index.html")
    assert all(f"{nb}.html" in page.hrefs and f"{nb}.ipynb" in page.hrefs for nb in stages.NOTEBOOKS)
    figures = sorted(f"figures/{p.name}" for p in (ci_report / "figures").glob("*.png"))
    assert sorted(page.srcs) == figures and len(figures) >= 10 and page.captions == len(figures)
    assert "params.yaml" in page.hrefs and "metrics/summary.json" in page.hrefs and "metrics/run.json" in page.hrefs
    for href in page.hrefs:  # every link of the page is a file of the run (or the gallery, one level up)
        if not href.startswith("#"):
            assert (ci_report / href).is_file(), href
    params = yaml.safe_load((ci_report / "params.yaml").read_text())
    assert params["profile"] == "ci" and params["resolved"]["dataset"] == "digits"
    assert not list(ci_report.parent.glob(".ci-test.*"))  # no staging folder left behind
    gallery = (ci_report.parent / "index.html").read_text()
    assert 'href="ci-test/index.html"' in gallery


@pytest.mark.slow  # the session's ci report: six notebooks executed
def test_run_page_is_a_template_with_a_caption_for_every_figure(ci_report):
    from mnemonic_mu.drivers.pages import CAPTIONS, caption

    html = (ci_report / "index.html").read_text()
    for p in (ci_report / "figures").glob("*.png"):
        assert p.stem in CAPTIONS, f"{p.stem}: add a caption to pages.CAPTIONS"
        assert CAPTIONS[p.stem].replace("'", "&#39;") in html
    assert caption("07_comparison_seed_spread") == "Comparison seed spread."
    assert "@media print" in html and "overflow-x: auto" in html  # the shared CSS is inlined
    for section in ("verdict", "summary", "attacks", "notebooks", "figures", "files", "settings"):
        assert f'id="{section}"' in html


@pytest.mark.slow  # the session's ci report: six notebooks executed
def test_verdict_box_states_the_runs_numbers(ci_report):
    """The verdict's numbers, read back from the page, are the summary's."""
    summary = _json(ci_report / "metrics" / "summary.json")
    step, ref = summary["methods"]["mnemonic"], summary["methods"]["retrain"]
    html = (ci_report / "index.html").read_text()

    def text(element_id):
        return re.search(rf'id="{element_id}">([^<]*)<', html).group(1)

    assert text("v-ef") == f"{step['E_F']:.2f}"
    assert text("v-ar-step") == f"{step['A_R']:.2f}" and text("v-ar-retrain") == f"{ref['A_R']:.2f}"
    assert text("v-ar-diff") == f"{step['A_R'] - ref['A_R']:+.2f}"
    assert text("v-gap-value") == f"{step['gap']:.2f}"
    # the run's own seed band decides: an attack the original is inside the band on has no signal, the
    # others count, inside when the step's value lies in the band references' min..max (epsilon: <= max)
    band = summary["band"]
    assert band["seeds"] == list(Settings.from_profile("ci").band_seeds)
    assert len(summary["band_rows"]) == len(band["seeds"])
    counted = [a for a in step["attacks"] if not band["signal"][a]["no_signal"]]
    inside = 0
    for name in counted:
        st, value = band["stats"][name], step["attacks"][name]["value"]
        low = -math.inf if name == "epsilon-vs-retrain" else st["min"]
        inside += low - 1e-9 <= value <= st["max"] + 1e-9
    assert text("v-inside") == str(inside) and text("v-counted") == str(len(counted))
    assert all(step["attacks"][a]["no_signal"] == band["signal"][a]["no_signal"] for a in step["attacks"])
    assert ("forgotten" if step["E_F"] >= 99 else "not forgotten") in html
    assert (
        f"the run&#39;s retrain band, {len(band['seeds'])} retrain references" in html
        or f"the run's retrain band, {len(band['seeds'])} retrain references" in html
    )
    if not step["warnings"]:
        assert "The step raised no warnings." in html


def test_verdict_reads_no_signal_and_a_retrain_band():
    from mnemonic_mu.drivers.pages import attack_status, verdict

    def row(**values):
        return {"A_R": 90.0, "E_F": 100.0, "attacks": {k: {"value": v} for k, v in values.items()}}

    summary = {
        "methods": {
            "retrain": row(**{"entropy-LR": 0.01, "linear probe": 0.2, "epsilon-vs-retrain": 0.0}),
            "mnemonic": row(**{"entropy-LR": 0.05, "linear probe": 0.9, "epsilon-vs-retrain": 0.4}),
        }
    }
    summary["methods"]["mnemonic"]["attacks"]["linear probe"]["no_signal"] = True
    assert attack_status(summary, "mnemonic", "entropy-LR")[0] == "inside"
    assert attack_status(summary, "mnemonic", "linear probe")[0] == "no signal"
    assert attack_status(summary, "mnemonic", "epsilon-vs-retrain")[0] == "inside"  # within 0.5 nats
    summary["retrain_band"] = {"epsilon-vs-retrain": {"mean": 0.1, "std": 0.1}}
    assert attack_status(summary, "mnemonic", "epsilon-vs-retrain")[0] == "outside"  # above mean + 2 std
    v = verdict(summary)
    assert (v["inside"], v["counted"], v["no_signal"], v["forgotten"]) == (1, 2, 1, True)
    assert not verdict({"methods": {"retrain": row()}})["available"]
    assert "no seed band in this run" in v["rule"]
    # with the run's own seed band, the band's inside flags decide (not the fixed tolerances)
    from mnemonic_mu.bands import request_band

    band_rows = {
        1000: row(**{"entropy-LR": 0.0, "linear probe": 0.85, "epsilon-vs-retrain": 0.3}),
        1001: row(**{"entropy-LR": 0.02, "linear probe": 0.95, "epsilon-vs-retrain": 0.5}),
    }
    methods = {
        k: {**r, "attacks": {a: {"value": x["value"]} for a, x in r["attacks"].items()}}
        for k, r in summary["methods"].items()
    }
    methods["original"] = row(**{"entropy-LR": 0.5, "linear probe": 0.9, "epsilon-vs-retrain": 2.0})
    banded = {"methods": methods, "band": request_band(methods, band_rows)}
    assert attack_status(banded, "mnemonic", "linear probe")[0] == "inside"  # 0.9 in 0.85..0.95
    assert attack_status(banded, "mnemonic", "entropy-LR")[0] == "outside"  # 0.05 above 0.0..0.02
    assert attack_status(banded, "mnemonic", "epsilon-vs-retrain")[0] == "inside"  # 0.4 <= 0.5
    assert banded["band"]["signal"]["linear probe"]["no_signal"]  # the original's 0.9 lies inside the band
    assert "retrain band of 2 seeds" in attack_status(banded, "mnemonic", "entropy-LR")[1]
    assert "2 retrain references trained with seeds 1000, 1001" in verdict(banded)["rule"]


@pytest.mark.slow  # the session's ci report: six notebooks executed
def test_executed_notebooks_have_no_errors(ci_report):
    for nb in stages.NOTEBOOKS:
        cells = nbformat.read(ci_report / f"{nb}.ipynb", as_version=4).cells
        errors = [o for c in cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{nb}: {errors[0]['ename']}"
        injected = [c for c in cells if "injected-parameters" in c.metadata.get("tags", [])]
        source = injected[0].source.replace("'", '"')
        assert len(injected) == 1 and ('profile = "ci"' in source or 'dataset = "digits"' in source)


@pytest.mark.slow  # the session's ci report: six notebooks executed
def test_summary_metrics_are_meaningful(ci_report):
    summary = _json(ci_report / "metrics" / "summary.json")
    assert summary["dataset"] == "digits" and summary["forget_classes"] == [0] and summary["seed"] == 0
    m = summary["methods"]
    original, mnemonic, retrain = m["original"], m["mnemonic"], m["retrain"]
    # percentages, not fractions
    assert 85 <= original["A_R"] <= 100 and original["E_F"] <= 15
    assert retrain["E_F"] == 100.0 and retrain["A_R"] >= 85
    # the one-shot step (calibrated, codes only, no data) forgets class 0 and keeps most of the rest
    assert mnemonic["E_F"] >= 95 and mnemonic["A_R"] >= 70
    # its speed: benchmarks, not a timed test
    assert mnemonic["backward_passes"] == 10 and mnemonic["forget_seconds"] > 0
    assert mnemonic["gap"] < original["gap"]
    assert retrain["gap"] == 0
    assert 0 <= mnemonic["attacks"]["entropy-LR"]["value"] <= 1


@pytest.mark.slow  # the session's ci report: six notebooks executed
def test_summary_lists_every_method_with_every_attack_and_gap(ci_report):
    """Issue acceptance: every registered method, A_R, E_F, every attack and the gap."""
    from mnemonic_mu.algorithms.attacks import ATTACKS
    from mnemonic_mu.algorithms.methods import METHODS
    from mnemonic_mu.algorithms.metrics import gap_to_retrain

    m = _json(ci_report / "metrics" / "summary.json")["methods"]
    # the registry's retrain is the cached reference row "retrain" (same recipe, trained once)
    expected = {"original", "no_codes", "retrain", "mnemonic"} | set(METHODS)
    assert expected <= set(m), sorted(expected - set(m))
    for name, row in m.items():
        assert 0 <= row["A_R"] <= 100 and 0 <= row["E_F"] <= 100, name
        assert set(row["attacks"]) == set(ATTACKS), name
        for attack, res in row["attacks"].items():
            assert res["value"] is not None and np.isfinite(res["value"]), (name, attack)
        # the stored gap is the one definition of docs/protocol.md, MIA term included
        assert row["gap"] == pytest.approx(gap_to_retrain(row, m["retrain"]))
        mia = 100 * abs(row["attacks"]["confidence-SVC"]["value"] - m["retrain"]["attacks"]["confidence-SVC"]["value"])
        acc = [abs(row[k] - m["retrain"][k]) for k in ("A_R", "E_F", "A_R_train", "E_F_train")]
        assert row["gap"] == pytest.approx((sum(acc) + mia) / 5)
    assert m["retrain"]["gap"] == 0
    # the data-free step and retrain forget; gradient ascent moves the model away from the original
    assert m["mnemonic_calibrated"]["E_F"] >= 95 and m["neggrad"]["E_F"] > m["original"]["E_F"]


@pytest.mark.slow  # the session's ci report: six notebooks executed
def test_stage_metrics_are_consistent(ci_report):
    codes = _json(ci_report / "metrics" / "01_mnemonic_codes.json")
    rep = codes["replacement"]
    assert abs(rep["measured"] - 0.1) < 5 * rep["std_error"]
    training = _json(ci_report / "metrics" / "02_training.json")
    assert abs(training["models"]["original"]["replaced_fraction"] - 0.1) < 0.02
    assert training["models"]["no_codes"]["replaced_fraction"] == 0
    fisher = _json(ci_report / "metrics" / "03_fisher.json")
    assert fisher["code_backward_passes"] == 10 and 0 < fisher["code_distance"] < 2
    assert set(fisher["sample_distances"]) == {"1", "10"}
    unlearning = _json(ci_report / "metrics" / "04_unlearning.json")
    assert len(unlearning["sweep"]["A_R"]) == 3 and unlearning["sweep"]["split"] == "val"
    assert unlearning["after"]["E_F"] == _json(ci_report / "metrics" / "summary.json")["methods"]["mnemonic"]["E_F"]


def test_parameters_are_checked_before_anything_runs(tmp_path):
    declared = declared_parameters(notebook_dir())
    with pytest.raises(ConfigError, match="unknown parameter 'epoch'"):
        run_report("ci", reports_dir=tmp_path, overrides={"epoch": 3})
    with pytest.raises(ConfigError, match="epochs must be an integer"):
        run_report("ci", reports_dir=tmp_path, overrides={"epochs": 2.5})
    with pytest.raises(ConfigError, match="unknown dataset"):
        run_report("ci", reports_dir=tmp_path, overrides={"dataset": "imagenet"})
    with pytest.raises(ConfigError, match="set by the runner"):
        run_report("ci", reports_dir=tmp_path, overrides={"run_dir": "x"})
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written
    params = resolve_parameters("ci", {"lambda1": 1, "forget_classes": 3, "data_root": "d"}, declared, tmp_path)
    assert params["lambda1"] == 1.0 and params["forget_classes"] == [3]
    assert params["data_root"] == str(tmp_path / "d")


def test_overrides_are_parsed_safely():
    got = parse_overrides(["epochs=5", "forget_classes=[1, 2]", "cosine=true", "lambda1=1e-4", "x=__import__('os')"])
    assert got == {"epochs": 5, "forget_classes": [1, 2], "cosine": True, "lambda1": 1e-4, "x": "__import__('os')"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["epochs"])


def test_cli_reports_a_bad_parameter_in_one_line(capsys, tmp_path):
    assert main(["report", "--profile", "ci", "--reports-dir", str(tmp_path), "-p", "bogus=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown parameter 'bogus'" in err[0]
    assert main(["report", "--profile", "nope", "--reports-dir", str(tmp_path)]) == 2


@pytest.mark.slow  # starts a kernel and runs notebook 01 until it fails
def test_failing_notebook_stops_the_run_and_keeps_the_partial_notebook(tmp_path):
    with pytest.raises(NotebookFailed, match=r"01_mnemonic_codes\.ipynb failed in cell \d+.*DataError") as err:
        run_report(
            "ci",
            run="broken",
            reports_dir=tmp_path,
            overrides={"dataset": "mnist", "data_root": str(tmp_path / "nowhere"), "cache_dir": str(tmp_path / "c")},
        )
    partial = tmp_path / "broken.failed" / "01_mnemonic_codes.ipynb"
    assert str(partial) in str(err.value)
    cells = nbformat.read(partial, as_version=4).cells
    assert any(o.output_type == "error" for c in cells if c.cell_type == "code" for o in c.outputs)
    assert not (tmp_path / "broken").exists() and not (tmp_path / "broken.failed" / "02_training.ipynb").exists()
    failure = _json(tmp_path / "broken.failed" / "failure.json")
    assert failure["notebook"] == "01_mnemonic_codes" and failure["ename"] == "DataError"
    assert isinstance(failure["cell_index"], int) and f"cell {failure['cell_index']}" in str(err.value)
    assert failure["partial_notebook"] == "01_mnemonic_codes.ipynb"
    assert yaml.safe_load((tmp_path / "broken.failed" / "params.yaml").read_text())["overrides"]["dataset"] == "mnist"
    gallery = (tmp_path / "index.html").read_text()  # rebuilt after the failure
    assert 'href="broken.failed/01_mnemonic_codes.ipynb"' in gallery and "DataError" in gallery


def test_forget_request_and_device_checked_before_any_notebook(monkeypatch):
    import torch

    from mnemonic_mu.errors import ConfigError, DeviceError
    from mnemonic_mu.settings import Settings

    with pytest.raises(ConfigError, match="twice"):
        Settings(forget_classes=[1, 1])
    with pytest.raises(ConfigError, match="outside"):
        Settings(forget_classes=[10])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no usable CUDA"):
        Settings(device="cuda")


def test_dataset_cache_is_hash_checked(tmp_path):
    import torch

    from mnemonic_mu.pipeline import load_data
    from mnemonic_mu.settings import Settings

    cfg = Settings(dataset="digits", cache_dir=str(tmp_path))
    first = load_data(cfg)
    (blob,) = (tmp_path / "datasets").glob("*.pt")
    assert (blob.parent / (blob.name + ".sha256")).is_file()
    # a tampered cache file (same format, other numbers) must not be trusted
    data = torch.load(blob, weights_only=True)
    data["y_test"] = torch.zeros_like(data["y_test"])
    torch.save(data, blob)
    again = load_data(cfg)
    assert torch.equal(again.y_test, first.y_test)


# --------------------------------------------------------------------------
# Grids


def test_grid_values_names_and_checks_come_before_anything_runs(tmp_path, capsys):
    grid = parse_grid(["forget_classes=[[1],[3]]", "seed=[0,1]"])
    assert grid == {"forget_classes": [[1], [3]], "seed": [0, 1]}
    points = grid_points(grid)
    assert points[1] == {"forget_classes": [1], "seed": 1} and len(points) == 4
    assert grid_run_names("ci", points) == [
        "ci-forget_classes_1-seed_0",
        "ci-forget_classes_1-seed_1",
        "ci-forget_classes_3-seed_0",
        "ci-forget_classes_3-seed_1",
    ]
    odd = grid_run_names("ci", [{"step": "a b"}, {"step": "a/b"}, {"lambda1": 1e-4}])
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", n) for n in odd) and len(set(odd)) == 3
    assert odd[2] == "ci-lambda1_0.0001"
    with pytest.raises(ConfigError, match="YAML list"):
        parse_grid(["seed=1"])
    with pytest.raises(ConfigError, match="twice"):
        parse_grid(["seed=[0,0]"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["seed=[0]", "seed=[1]"])
    with pytest.raises(ConfigError, match="epochs must be an integer"):  # the second point is refused ...
        run_grid("ci", {"epochs": [5, 2.5]}, reports_dir=tmp_path)
    with pytest.raises(ConfigError, match="both a -p override and a --grid axis"):
        run_grid("ci", {"seed": [0, 1]}, overrides={"seed": 2}, reports_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # ... before the first one ran
    assert main(["report", "--profile", "ci", "--reports-dir", str(tmp_path), "--grid", "seed=[0,x]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seed must be an integer" in err[0]


def test_a_kit_error_in_a_notebook_reaches_the_caller_as_itself(tmp_path, monkeypatch):
    """A notebook that stops with the kit's own error (a ConfigError) fails the run with that
    error and its message, not with the runner's internal wrapper; the partial run is kept."""

    def execute(src, dst, params, cwd, progress):
        raise ConfigError("forget_classes [12] is out of range: this dataset has classes 0-9")

    monkeypatch.setattr(report_module, "execute_notebook", execute)
    with pytest.raises(ConfigError, match=r"out of range: this dataset has classes 0-9") as err:
        run_report("ci", run="kit-error", reports_dir=tmp_path, overrides={"workers": 1})
    assert type(err.value) is ConfigError
    record = json.loads((tmp_path / "kit-error.failed" / "failure.json").read_text())
    assert record["notebook"] == "01_mnemonic_codes"


def test_grid_skips_finished_runs_and_survives_a_failure(tmp_path, monkeypatch):
    """The grid's bookkeeping, with run_report replaced by a stand-in (in-process, one job)."""
    declared = declared_parameters(notebook_dir())
    calls = []

    def fake_run_report(profile, run=None, overrides=None, reports_dir=None, notebooks=None, progress=False):
        calls.append(run)
        if overrides["seed"] == 1:
            raise NotebookFailed("notebook 02_training.ipynb failed in cell 3")
        folder = Path(reports_dir) / run
        folder.mkdir()
        params = resolve_parameters(profile, overrides, declared, Path.cwd())
        record = {
            "profile": profile,
            "overrides": overrides,
            "resolved": report_module.resolved_config(profile, params),
        }
        (folder / "params.yaml").write_text(yaml.safe_dump(record))
        (folder / "index.html").write_text("<!doctype html><title>stand-in</title>")
        return folder / "index.html"

    monkeypatch.setattr(grid_module, "run_report", fake_run_report)
    grid = {"seed": [0, 1, 2]}
    first = run_grid("ci", grid, overrides={"epochs": 3}, reports_dir=tmp_path)
    assert [r["status"] for r in first] == ["done", "failed", "done"] and "cell 3" in first[1]["error"]
    assert calls == ["ci-seed_0", "ci-seed_1", "ci-seed_2"]
    gallery = (tmp_path / "index.html").read_text()
    assert gallery.count('<tr data-run="') == 2 and 'href="ci-seed_2/index.html"' in gallery
    calls.clear()
    again = run_grid("ci", grid, overrides={"epochs": 3}, reports_dir=tmp_path)
    assert [r["status"] for r in again] == ["skipped", "failed", "skipped"] and calls == ["ci-seed_1"]
    calls.clear()
    run_grid("ci", {"seed": [0]}, overrides={"epochs": 4}, reports_dir=tmp_path)  # other settings: run again
    assert calls == ["ci-seed_0"]


@pytest.mark.slow
def test_grid_runs_in_parallel_once_and_a_failure_does_not_stop_the_others(tmp_path_factory):
    root, first = shared_grid(tmp_path_factory)
    results = first["results"]
    assert [r["run"] for r in results] == GRID_NAMES
    assert [r["status"] for r in results] == ["done", "done", "failed", "failed"], results
    assert all("01_mnemonic_codes.ipynb failed in cell" in r["error"] for r in results[2:])
    for name in GRID_NAMES[:2]:
        params = yaml.safe_load((root / name / "params.yaml").read_text())
        assert params["resolved"]["epochs"] == 5 and params["resolved"]["baselines"] == []
        assert _json(root / name / "metrics" / "summary.json")["forget_classes"] == [int(name[-1])]
    for name in GRID_NAMES[2:]:
        assert _json(root / f"{name}.failed" / "failure.json")["notebook"] == "01_mnemonic_codes"
    assert not list(root.glob(".*.tmp"))  # every staging folder renamed away
    gallery = (root / "index.html").read_text()
    assert all(f'data-run="{name}"' in gallery for name in GRID_NAMES)
    # a second call does no work for the finished runs (the failed ones are tried again)
    stamps = {n: (root / n / "index.html").stat().st_mtime_ns for n in GRID_NAMES[:2]}
    again = run_grid("ci", GRID, overrides=grid_overrides(root.parent), jobs=2, reports_dir=root)
    assert [r["status"] for r in again] == ["skipped", "skipped", "failed", "failed"]
    assert {n: (root / n / "index.html").stat().st_mtime_ns for n in GRID_NAMES[:2]} == stamps
    assert all(f'data-run="{name}"' in (root / "index.html").read_text() for name in GRID_NAMES)
