import json
import subprocess
import sys

from mnemonic_mu.drivers.cli import main


def _run(tmp_path, *extra):
    out = tmp_path / "result.json"
    argv = [
        "experiment", "--dataset", "digits", "--epochs", "3", "--lr", "0.05", "--forget", "3",
        "--baselines", "none", "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--threads", "1", *extra,
    ]
    assert main(argv) == 0
    return json.loads(out.read_text())


def test_experiment_writes_the_documented_json(tmp_path, capsys):
    res = _run(tmp_path)
    cfg = res["settings"]
    for key in ("dataset", "data_root", "model", "epochs", "batch_size", "lr", "t_mix", "code_dist",
                "forget_classes", "seed", "lambda1", "lambda2", "device", "step"):
        assert key in cfg
    assert cfg["forget_classes"] == [3] and cfg["dataset"] == "digits"
    rows = res["rows"]
    assert set(rows) == {"original", "no_codes", "retrain", "mnemonic"}  # --baselines none
    for key in ("test_accuracy", "A_R", "E_F"):
        assert 0 <= rows["original"][key] <= 100
    m = rows["mnemonic"]
    for key in ("A_R", "E_F", "A_R_train", "E_F_train"):
        assert 0 <= m[key] <= 100
    assert m["sign"] in ("+", "-") and isinstance(m["sign_tie"], bool)
    assert m["backward_passes"] == 10 and m["forget_seconds"] > 0
    assert rows["retrain"]["E_F"] == 100.0  # never saw class 3
    assert rows["retrain"]["gap_to_retrain"] == 0 and rows["retrain"]["attacks"]["epsilon-vs-retrain"]["value"] == 0
    assert rows["original"]["from_cache"] is False
    assert "torch" in res["environment"] and res["environment"]["device"] == "cpu"
    assert "mnemonic: step" in capsys.readouterr().out


def test_cached_model_is_reused(tmp_path):
    first = _run(tmp_path)
    second = _run(tmp_path, "--forget", "5")
    assert second["rows"]["original"]["from_cache"] is True
    assert second["rows"]["original"]["test_accuracy"] == first["rows"]["original"]["test_accuracy"]
    third = _run(tmp_path, "--no-use-cache")
    assert third["rows"]["original"]["from_cache"] is False
    assert third["rows"]["original"]["test_accuracy"] == first["rows"]["original"]["test_accuracy"]  # deterministic


def test_multi_class_mode_is_chosen_and_named(tmp_path, capsys, monkeypatch):
    seq = _run(tmp_path, "--forget", "1", "3")["rows"]["mnemonic"]
    joint = _run(tmp_path, "--forget", "1", "3", "--multi", "joint")
    assert joint["settings"]["multi"] == "joint"
    joint = joint["rows"]["mnemonic"]
    assert seq["multi"] == "sequential" and [p["class"] for p in seq["parts"]] == [1, 3]
    assert joint["multi"] == "joint" and joint["parts"] == []
    assert len(seq["sign"]) == 2 and joint["sign"] in ("+", "-")
    assert seq["backward_passes"] == joint["backward_passes"] == 10
    assert "step calibrated sequential" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)  # the default output path is relative: reports/experiments/<name>.json
    assert main(["experiment", "--dataset", "digits", "--epochs", "3", "--lr", "0.05", "--forget", "1", "3",
                 "--multi", "joint", "--baselines", "none", "--cache-dir", "cache", "--threads", "1"]) == 0
    assert (tmp_path / "reports/experiments/digits_mlp_forget1-3_seed0_calibrated-joint.json").exists()


def test_module_entry_point_and_bad_option():
    proc = subprocess.run([sys.executable, "-m", "mnemonic_mu", "experiment", "--t-mix", "2"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "t_mix" in proc.stderr and "Traceback" not in proc.stderr
