"""``mnemonic-mu report``: the whole notebook sequence through papermill (ci profile).

One session fixture runs the six notebooks once; the tests assert on the
metrics they wrote.  Parameter checks run before any kernel starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml

from mnemonic_mu import notebook_stages as stages
from mnemonic_mu.drivers.cli import main
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.drivers.report import NotebookFailed, declared_parameters, notebook_dir, resolve_parameters, run_report
from mnemonic_mu.settings import parse_overrides


@pytest.fixture(scope="session")
def ci_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    index = run_report("ci", run="ci-test", reports_dir=root, overrides={"cache_dir": str(root / "cache")})
    return index.parent


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_report_writes_every_part(ci_report):
    for nb in stages.NOTEBOOKS:
        assert (ci_report / f"{nb}.ipynb").is_file()
        page = (ci_report / f"{nb}.html").read_text()
        assert "Settings" in page and "compute_" in page  # code is visible
        assert (ci_report / "metrics" / f"{nb}.json").is_file()
    index = (ci_report / "index.html").read_text()
    assert all(f"href='{nb}.html'" in index for nb in stages.NOTEBOOKS)
    assert index.count("<img src='figures/") == len(list((ci_report / "figures").glob("*.png"))) >= 10
    params = yaml.safe_load((ci_report / "params.yaml").read_text())
    assert params["profile"] == "ci" and params["parameters"]["dataset"] == "digits"
    assert not list(ci_report.parent.glob(".ci-test.*"))  # no staging folder left behind


def test_executed_notebooks_have_no_errors(ci_report):
    for nb in stages.NOTEBOOKS:
        cells = nbformat.read(ci_report / f"{nb}.ipynb", as_version=4).cells
        errors = [o for c in cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{nb}: {errors[0]['ename']}"
        injected = [c for c in cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1 and "dataset = \"digits\"" in injected[0].source.replace("'", '"')


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
    assert mnemonic["backward_passes"] == 10 and mnemonic["forget_seconds"] < 5
    assert mnemonic["gap_to_retrain"] < original["gap_to_retrain"]
    assert retrain["gap_to_retrain"] == 0
    assert 0 <= mnemonic["attacks"]["entropy-LR"]["value"] <= 1


def test_summary_lists_every_method_with_every_attack_and_gap(ci_report):
    """Issue acceptance: every registered method, A_R, E_F, all five attacks and the gap."""
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
        # the stored gap is the one definition of EVALUATION.md, MIA term included
        assert row["gap_to_retrain"] == pytest.approx(gap_to_retrain(row, m["retrain"]))
        mia = 100 * abs(row["attacks"]["confidence-SVC"]["value"] - m["retrain"]["attacks"]["confidence-SVC"]["value"])
        acc = [abs(row[k] - m["retrain"][k]) for k in ("A_R", "E_F", "A_R_train", "E_F_train")]
        assert row["gap_to_retrain"] == pytest.approx((sum(acc) + mia) / 5)
    assert m["retrain"]["gap_to_retrain"] == 0
    # the data-free step and retrain forget; gradient ascent moves the model away from the original
    assert m["mnemonic_calibrated"]["E_F"] >= 95 and m["neggrad"]["E_F"] > m["original"]["E_F"]


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
