import json
import re
import subprocess
import sys

import pytest

from mnemonic_mu.drivers.cli import main


def _run(tmp_path, *extra):
    out = tmp_path / "result.json"
    argv = [
        "experiment",
        "--dataset",
        "digits",
        "--epochs",
        "3",
        "--lr",
        "0.05",
        "--forget",
        "3",
        "--baselines",
        "none",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(out),
        "--threads",
        "1",
        *extra,
    ]
    assert main(argv) == 0
    return json.loads(out.read_text())


@pytest.mark.slow  # one experiment: six models trained, seven rows scored
def test_experiment_writes_the_documented_json(tmp_path, capsys):
    res = _run(tmp_path)
    cfg = res["settings"]
    for key in (
        "dataset",
        "data_root",
        "model",
        "epochs",
        "batch_size",
        "lr",
        "t_mix",
        "code_dist",
        "forget_classes",
        "seed",
        "lambda1",
        "lambda2",
        "device",
        "step",
    ):
        assert key in cfg
    assert cfg["forget_classes"] == [3] and cfg["dataset"] == "digits"
    rows = res["rows"]
    assert set(rows) == {"original", "retrain", "mnemonic"}  # --baselines none: the quick run, no no-codes model
    for key in ("test_accuracy", "A_R", "E_F"):
        assert 0 <= rows["original"][key] <= 100
    m = rows["mnemonic"]
    for key in ("A_R", "E_F", "A_R_train", "E_F_train"):
        assert 0 <= m[key] <= 100
    assert m["sign"] in ("+", "-") and isinstance(m["sign_tie"], bool)
    assert m["backward_passes"] == 10 and m["forget_seconds"] > 0
    assert rows["retrain"]["E_F"] == 100.0  # never saw class 3
    assert rows["retrain"]["gap"] == 0 and rows["retrain"]["attacks"]["epsilon-vs-retrain"]["value"] == 0
    assert rows["original"]["from_cache"] is False
    assert "torch" in res["environment"] and res["environment"]["device"] == "cpu"
    out = capsys.readouterr().out
    assert "the step: calibrated" in out
    # the plan comes first, the table names what each row is, and the JSON is the printed table
    assert out.startswith("quick run: train 6 model(s) (0 in the cache), score 7 rows")
    assert re.search(r"^mnemonic +the one-shot step \(codes only, no data\) +[0-9.]+ +[0-9.]+", out, flags=re.M)
    assert re.search(r"^retrain band +4 retrains with other seeds +A_R [0-9.]+\.\.[0-9.]+", out, flags=re.M)
    from mnemonic_mu.drivers.cli import experiment_lines

    assert "\n".join(experiment_lines(res)) in out


@pytest.mark.slow  # three experiments, two baselines
def test_compare_adds_every_baseline_and_states_its_cost_first(tmp_path, capsys):
    """--compare: the no-codes model and the baselines beside the step; the plan line counts the
    work before it starts, and once this machine has timed the recipe it says about how long."""
    quick = _run(tmp_path, "--baselines", "none")
    assert set(quick["rows"]) == {"original", "retrain", "mnemonic"}
    capsys.readouterr()
    full = _run(tmp_path, "--baselines", "mnemonic_paper", "finetune", "--compare")
    assert list(full["rows"]) == ["original", "no_codes", "retrain", "mnemonic", "mnemonic_paper", "finetune"]
    assert full["rows"]["original"]["from_cache"] and not full["rows"]["no_codes"]["from_cache"]
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("the full comparison: train 1 model(s) (6 in the cache), run 2 baseline(s), score 10 rows")
    assert "no timing of mnemonic_paper, finetune on this machine yet" in first  # train and score were timed
    _run(tmp_path, "--baselines", "mnemonic_paper", "finetune", "--compare")
    again = capsys.readouterr().out.splitlines()[0]
    assert again.startswith("the full comparison: train 0 model(s) (7 in the cache)")
    assert re.search(r"; about \d+ s on this machine \(from its earlier runs\)$", again), again


@pytest.mark.slow  # three experiments
def test_cached_model_is_reused(tmp_path):
    first = _run(tmp_path)
    second = _run(tmp_path, "--forget", "5")
    assert second["rows"]["original"]["from_cache"] is True
    assert second["rows"]["original"]["test_accuracy"] == first["rows"]["original"]["test_accuracy"]
    third = _run(tmp_path, "--no-use-cache")
    assert third["rows"]["original"]["from_cache"] is False
    assert third["rows"]["original"]["test_accuracy"] == first["rows"]["original"]["test_accuracy"]  # deterministic


@pytest.mark.slow  # three experiments
def test_multi_class_mode_is_chosen_and_named(tmp_path, capsys, monkeypatch):
    seq = _run(tmp_path, "--forget", "1", "3")["rows"]["mnemonic"]
    joint = _run(tmp_path, "--forget", "1", "3", "--multi", "joint")
    assert joint["settings"]["multi"] == "joint"
    joint = joint["rows"]["mnemonic"]
    assert seq["multi"] == "sequential" and [p["class"] for p in seq["parts"]] == [1, 3]
    assert joint["multi"] == "joint" and joint["parts"] == []
    assert len(seq["sign"]) == 2 and joint["sign"] in ("+", "-")
    assert seq["backward_passes"] == joint["backward_passes"] == 10
    assert "the step: calibrated sequential" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)  # the default output path is relative: reports/experiments/<name>.json
    assert (
        main(
            [
                "experiment",
                "--dataset",
                "digits",
                "--epochs",
                "3",
                "--lr",
                "0.05",
                "--forget",
                "1",
                "3",
                "--multi",
                "joint",
                "--baselines",
                "none",
                "--cache-dir",
                "cache",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert (tmp_path / "reports/experiments/digits_mlp_forget1-3_seed0_calibrated-joint.json").exists()


def test_module_entry_point_and_bad_option():
    proc = subprocess.run(
        [sys.executable, "-m", "mnemonic_mu", "experiment", "--t-mix", "2"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "t_mix" in proc.stderr and "Traceback" not in proc.stderr
