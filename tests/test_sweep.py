"""A tiny sweep end to end: rows for every method and reference, the summary, the tables, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from mnemonic_mu import sweep as S
from mnemonic_mu.attacks import ATTACKS, epsilon_vs_retrain, sample_statistics
from mnemonic_mu.cli import main
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.experiment import ExperimentConfig, load_experiment_data, train_or_load

METHODS = ("mnemonic_paper", "finetune", "ssd", "ours_with_data", "retrain")


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    base = ExperimentConfig(dataset="digits", epochs=3, lr=0.05, threads=1, cache_dir=str(tmp / "cache"))
    cfg = S.SweepConfig(base=base, methods=METHODS, classes=(0, 1), seeds=(0,), probe_max_train=300,
                        out_dir=str(tmp / "out"))
    result = S.run_sweep(cfg)
    return cfg, result


def test_rows_and_summary(tiny_sweep):
    cfg, result = tiny_sweep
    names = {r["method"] for r in result["rows"]}
    assert names == set(METHODS) | set(S.REFERENCES)
    assert len(result["rows"]) == 2 * (len(METHODS) - 1 + len(S.REFERENCES))
    for r in result["rows"]:
        assert set(r["attacks"]) == set(ATTACKS)
        assert r["gap"] >= 0 and r["seconds"] > 0
    retrain = [r for r in result["rows"] if r["method"] == "retrain"]
    assert all(r["gap"] == 0 and r["attacks"]["epsilon-vs-retrain"]["value"] == 0 for r in retrain)
    s = result["summary"]["mnemonic_paper"]
    assert s["n_runs"] == 2
    for metric in ("A_R", "E_F", "A_R_train", "E_F_train", "gap", "seconds", *ATTACKS):
        assert {"mean", "std", "worst_class", "worst"} <= set(s[metric])
    assert s["A_R"]["worst"] == min(s["A_R"]["per_class"].values())
    # a second run finds every trained model in the cache
    assert all(t["kind"] in ("original", "no_codes", "retrain") for t in result["trained"])


def test_tables_and_files(tiny_sweep, tmp_path):
    cfg, result = tiny_sweep
    js, md = S.write_sweep(result, tmp_path)
    text = md.read_text()
    for name in (*ATTACKS, "gap to retrain", "ssd", "*retrain*", "Worst class"):
        assert name in text
    assert json.loads(js.read_text())["summary"]["ssd"]["n_runs"] == 2


def test_bad_config():
    with pytest.raises(ConfigError):
        S.SweepConfig(methods=("nope",))
    with pytest.raises(ConfigError):
        S.SweepConfig(seeds=())
    with pytest.raises(ConfigError):
        S.SweepConfig(classes=(1, 1))


def test_cli_sweep_parallel(tmp_path, capsys):
    rc = main(["sweep", "--dataset", "digits", "--epochs", "2", "--methods", "mnemonic_paper",
               "--classes", "3", "--seeds", "0", "1", "--jobs", "2", "--probe-max-train", "300",
               "--cache-dir", str(tmp_path / "cache"), "--out-dir", str(tmp_path / "out")])
    assert rc == 0
    out = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert out["summary"]["mnemonic_paper"]["n_runs"] == 2
    printed = capsys.readouterr().out
    assert "wall time" in printed
    # the retrain band: retrain(seed 1) scored against retrain(seed 0) and the reverse, recomputed here
    band = out["retrain_band"]["epsilon-vs-retrain"]
    base = ExperimentConfig(dataset="digits", epochs=2, cache_dir=str(tmp_path / "cache"))
    data = load_experiment_data(base)
    x, y = data.split("test")
    conf = {}
    for s in (0, 1):
        cfg = replace(base, seed=s)
        ref, cached = train_or_load(cfg, data, cfg.train_config(exclude=(3,)), torch.device("cpu"))
        assert cached
        conf[s] = sample_statistics(ref.model, x[y == 3], y[y == 3])["logit_confidence"]
    expect = [epsilon_vs_retrain(conf[1], conf[0]), epsilon_vs_retrain(conf[0], conf[1])]
    assert band["n_pairs"] == 2 and band["mean"] == pytest.approx(sum(expect) / 2)
    assert band["mean"] > 0  # two seeds' retrains are not the same model
    assert "the retrain band, 2 ordered seed pairs" in printed
    assert main(["sweep", "--methods", "nope"]) == 2


def test_resume_reuses_rows(tiny_sweep):
    cfg, result = tiny_sweep
    files = sorted((cfg.folder() / "rows").glob("*.json"))
    assert [f.name for f in files] == ["seed0_class0.json", "seed0_class1.json"]
    assert result["retrain_band"] is None  # one seed: no second retrain to compare with
    again = S.run_sweep(cfg)  # every model cached, every request's rows on disk
    assert [(r["method"], r["gap"]) for r in again["rows"]] == [(r["method"], r["gap"]) for r in result["rows"]]
    assert again["summary"]["ssd"]["A_R"]["mean"] == pytest.approx(result["summary"]["ssd"]["A_R"]["mean"])


def test_config_roundtrip(tiny_sweep):
    cfg, result = tiny_sweep
    back = S.SweepConfig.from_dict(json.loads(json.dumps(result["config"])))
    assert back == cfg and back.key() == cfg.key()
    # single-class requests only: the multi-class mode must not invalidate finished rows
    assert replace(cfg, base=replace(cfg.base, multi="joint")).key() == cfg.key()
    assert replace(cfg, base=replace(cfg.base, epochs=cfg.base.epochs + 1)).key() != cfg.key()


def test_notebook_07_runs_then_loads_the_finished_sweep(tmp_path):
    """notebooks/07_comparison.ipynb through papermill on a tiny sweep: it writes the
    metrics of every method, and a second execution loads the sweep instead of rerunning it."""
    import nbformat
    import papermill as pm

    from mnemonic_mu.report import notebook_dir

    params = {"dataset": "digits", "epochs": 20, "lr": 0.05, "methods_to_run": ["mnemonic_calibrated", "finetune", "retrain"],
              "classes": [0], "seeds": [0], "jobs": 1, "probe_max_train": 300,
              "cache_dir": str(tmp_path / "cache"), "out_dir": str(tmp_path / "out")}
    outputs = []
    for i in range(2):
        out = tmp_path / f"07-{i}.ipynb"
        pm.execute_notebook(str(notebook_dir() / "07_comparison.ipynb"), str(out), parameters=params,
                            cwd=str(tmp_path), progress_bar=False, kernel_name="python3")
        outputs.append("".join(o.get("text", "") for c in nbformat.read(out, 4).cells if c.cell_type == "code"
                               for o in c.outputs))
    assert "loaded " not in outputs[0] and "loaded " in outputs[1]
    metrics = json.loads((tmp_path / "out" / "07_comparison_metrics.json").read_text())
    assert set(metrics) == {"mnemonic_calibrated", "finetune", *S.REFERENCES}
    for name, row in metrics.items():
        assert 0 <= row["A_R"] <= 100 and 0 <= row["E_F"] <= 100 and set(ATTACKS) <= set(row), name
    assert metrics["retrain"]["E_F"] == 100.0 and metrics["retrain"]["gap"] == 0
    assert metrics["original"]["E_F"] < 20 and metrics["finetune"]["E_F"] > metrics["original"]["E_F"]
    # the notebook's metrics are the sweep's own numbers
    summary = json.loads(next((tmp_path / "out").rglob("sweep.json")).read_text())["summary"]
    for name, row in metrics.items():
        assert row["A_R"] == summary[name]["A_R"]["mean"] and row["worst_gap"] == summary[name]["gap"]["worst"]
    for fig in ("ar_ef", "gap_time", "ef_per_class"):
        assert (tmp_path / "out" / f"07_comparison_{fig}.png").stat().st_size > 1000
