"""One request, three drivers, one pipeline: the same numbers whichever way it is run."""

from __future__ import annotations

import json

import pytest

from mnemonic_mu import notebook_stages as stages, pipeline
from mnemonic_mu.algorithms.attacks import ATTACKS
from mnemonic_mu.drivers import sweep
from mnemonic_mu.drivers.cli import EXPERIMENT_OPTIONS, build_parser, main
from mnemonic_mu.options import defaults_table
from mnemonic_mu.overrides import load_profile
from mnemonic_mu.settings import Settings

BASELINES = ("mnemonic_paper", "finetune", "ssd")
METRICS = ("A_R", "E_F", "A_R_train", "E_F_train", "test_accuracy", "per_class_accuracy")


def _values(row: dict) -> dict:
    return {k: row[k] for k in METRICS} | {a: row["attacks"][a]["value"] for a in ATTACKS}


@pytest.mark.slow
def test_one_request_gives_identical_numbers_through_every_driver(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = dict(
        dataset="digits", epochs=30, lr=0.05, forget_classes=(0,), baselines=BASELINES, probe_max_train=300, threads=1
    )
    # 1. mnemonic-mu experiment
    out = tmp_path / "experiment.json"
    assert (
        main(
            [
                "experiment",
                "--dataset",
                "digits",
                "--epochs",
                "30",
                "--lr",
                "0.05",
                "--forget-classes",
                "0",
                "--baselines",
                *BASELINES,
                "--probe-max-train",
                "300",
                "--threads",
                "1",
                "--cache-dir",
                str(tmp_path / "cache-a"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    done = json.loads(out.read_text())
    experiment = done["rows"]
    # 2. the stage functions, as the notebooks call them (own cache: every model trained afresh)
    s = Settings(**common, cache_dir=str(tmp_path / "cache-b"), run_dir=str(tmp_path / "run"))
    data = pipeline.load_data(s)
    stages.compute_codes(s, data)
    stages.compute_training(s, data)
    stages.compute_unlearning(s, data)
    stages.compute_membership(s, data)
    report = stages.compute_report(s, data).result
    notebook = report["methods"]
    # 3. a one-request sweep (its own cache again)
    result = sweep.run_sweep(
        Settings(**common, cache_dir=str(tmp_path / "cache-c")),
        classes=(0,),
        seeds=(0,),
        out_dir=str(tmp_path / "sweep"),
    )
    swept = {r["method"]: r for r in result["rows"]}

    names = {"original", "no_codes", "retrain", "mnemonic", *BASELINES}
    assert names == set(experiment) == set(notebook) == set(swept)
    for name in names:
        assert _values(experiment[name]) == _values(notebook[name]) == _values(swept[name]), name  # bitwise
        assert experiment[name]["gap"] == notebook[name]["gap"] == swept[name]["gap"], name
    # retrain's seed band: the same band references, scored the same way, on every path
    bands = {
        "experiment": {int(b): r for b, r in done["band_rows"].items()},
        "notebook": {int(b): r for b, r in report["band_rows"].items()},
        "sweep": {r["band_seed"]: r for r in result["band_rows"]},
    }
    assert all(sorted(v) == list(s.band_seeds) for v in bands.values())
    for b in s.band_seeds:
        assert _values(bands["experiment"][b]) == _values(bands["notebook"][b]) == _values(bands["sweep"][b]), b
        assert bands["experiment"][b]["tow"] == bands["notebook"][b]["tow"] == bands["sweep"][b]["tow"]
    assert done["band"]["inside"] == report["band"]["inside"]
    assert done["band"]["signal"].keys() == set(ATTACKS)
    # and the numbers mean something: the step forgets, retrain is its own reference
    assert experiment["mnemonic"]["E_F"] >= 95 and experiment["retrain"]["E_F"] == 100
    assert experiment["retrain"]["gap"] == 0


def test_every_setting_has_one_default_and_the_cli_derives_its_options():
    parser = build_parser()
    experiment = parser._subparsers._group_actions[0].choices["experiment"]
    dests = {a.dest for a in experiment._actions}
    assert set(EXPERIMENT_OPTIONS) <= dests
    # an option not given leaves the settings' default: the parser restates none
    args = parser.parse_args(["experiment"])
    assert all(getattr(args, name) is None for name in EXPERIMENT_OPTIONS)
    # profiles are partial overrides of the one table
    assert load_profile("laptop") == {}
    ci = load_profile("ci")
    assert set(ci) < set(Settings.names()) and Settings(**ci).dataset == "digits"
    # library fallbacks read the same table
    from mnemonic_mu.algorithms.train import TrainConfig

    s = Settings()
    assert TrainConfig() == s.train_config()


def test_docs_settings_table_is_generated():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "settings.md").read_text()
    assert defaults_table() in doc, "docs/settings.md is stale: regenerate it with `mnemonic-mu settings`"


def test_model_keys_hold_the_training_code_version(monkeypatch):
    from mnemonic_mu.algorithms import train
    from mnemonic_mu.io import store
    from mnemonic_mu.io.data import load_dataset

    s = Settings(dataset="synthetic", epochs=2)
    data = load_dataset("synthetic")
    before = store.model_key(s, data, s.train_config())
    monkeypatch.setattr(train, "VERSION", train.VERSION + 1)
    assert store.model_key(s, data, s.train_config()) != before


@pytest.mark.slow
def test_a_request_in_two_processes_gives_the_numbers_of_one(tmp_path):
    """workers=2 trains the models, scores the rows and runs the baselines in two processes:
    every number equals the one-process run bit for bit, only the times differ."""
    common = dict(
        dataset="digits",
        epochs=5,
        lr=0.05,
        forget_classes=(3,),
        baselines=("mnemonic_paper", "finetune"),
        probe_max_train=300,
        band_seeds=(1000, 1001),
    )
    one = pipeline.run_request(Settings(**common, workers=1, cache_dir=str(tmp_path / "one")))
    two = pipeline.run_request(Settings(**common, workers=2, cache_dir=str(tmp_path / "two")))
    assert (
        list(one["rows"])
        == list(two["rows"])
        == ["original", "no_codes", "retrain", "mnemonic", "mnemonic_paper", "finetune"]
    )
    for name, row in one["rows"].items():
        assert _values(row) == _values(two["rows"][name]), name
        assert row["gap"] == two["rows"][name]["gap"] and row["tow"] == two["rows"][name]["tow"]
        assert row["divergence"] == two["rows"][name]["divergence"], name
        assert not row.get("from_cache") and not two["rows"][name].get("from_cache")
    for b, row in one["band_rows"].items():
        assert _values(row) == _values(two["band_rows"][b]), b
    assert one["band"]["inside"] == two["band"]["inside"]
    # the quick request: only the original and retrain among the references, found in the cache now
    quick = pipeline.run_request(
        Settings(**common | {"baselines": ()}, workers=2, cache_dir=str(tmp_path / "two")),
        roles=("original", "retrain"),
    )
    assert list(quick["rows"]) == ["original", "retrain", "mnemonic"]
    assert quick["rows"]["original"]["from_cache"] and quick["rows"]["retrain"]["from_cache"]
    assert _values(quick["rows"]["mnemonic"]) == _values(one["rows"]["mnemonic"])
