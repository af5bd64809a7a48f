import json
import subprocess
import sys

from mnemonic_mu.cli import main


def _run(tmp_path, *extra):
    out = tmp_path / "result.json"
    argv = [
        "experiment", "--dataset", "digits", "--epochs", "3", "--lr", "0.05", "--forget", "3",
        "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--threads", "1", *extra,
    ]
    assert main(argv) == 0
    return json.loads(out.read_text())


def test_experiment_writes_the_documented_json(tmp_path, capsys):
    res = _run(tmp_path)
    cfg = res["config"]
    for key in ("dataset", "data_root", "model", "epochs", "batch_size", "lr", "t_mix", "code_dist",
                "forget", "seed", "lambda1", "lambda2", "device", "step"):
        assert key in cfg
    assert cfg["forget"] == [3] and cfg["dataset"] == "digits"
    for key in ("test_accuracy", "A_R", "E_F"):
        assert 0 <= res["original"][key] <= 100
    m = res["mnemonic"]
    for key in ("A_R", "E_F", "A_R_train", "E_F_train"):
        assert 0 <= m[key] <= 100
    assert m["sign"] in ("+", "-") and isinstance(m["sign_tie"], bool)
    assert m["backward_passes"] == 10 and m["forget_seconds"] > 0
    assert res["retrain"]["E_F"] == 100.0  # never saw class 3
    assert res["original"]["from_cache"] is False
    assert "torch" in res["environment"] and res["environment"]["device"] == "cpu"
    assert "mnemonic :" in capsys.readouterr().out


def test_cached_model_is_reused(tmp_path):
    first = _run(tmp_path, "--no-retrain")
    second = _run(tmp_path, "--no-retrain", "--forget", "5")
    assert second["original"]["from_cache"] is True
    assert second["original"]["test_accuracy"] == first["original"]["test_accuracy"]
    third = _run(tmp_path, "--no-retrain", "--no-cache")
    assert third["original"]["from_cache"] is False
    assert third["original"]["test_accuracy"] == first["original"]["test_accuracy"]  # deterministic


def test_multi_class_mode_is_chosen_and_named(tmp_path, capsys, monkeypatch):
    seq = _run(tmp_path, "--no-retrain", "--forget", "1", "3")
    joint = _run(tmp_path, "--no-retrain", "--forget", "1", "3", "--multi", "joint")
    assert seq["config"]["multi"] == "sequential" and joint["config"]["multi"] == "joint"
    assert seq["mnemonic"]["multi"] == "sequential" and [p["class"] for p in seq["mnemonic"]["parts"]] == [1, 3]
    assert joint["mnemonic"]["multi"] == "joint" and joint["mnemonic"]["parts"] == []
    assert len(seq["mnemonic"]["sign"]) == 2 and joint["mnemonic"]["sign"] in ("+", "-")
    assert seq["mnemonic"]["backward_passes"] == joint["mnemonic"]["backward_passes"] == 10
    assert "step calibrated sequential" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)  # the default output path is relative: reports/experiments/<name>.json
    assert main(["experiment", "--dataset", "digits", "--epochs", "3", "--lr", "0.05", "--forget", "1", "3",
                 "--multi", "joint", "--cache-dir", "cache", "--no-retrain", "--threads", "1"]) == 0
    assert (tmp_path / "reports/experiments/digits_mlp_forget1-3_seed0_calibrated-joint.json").exists()


def test_module_entry_point_and_bad_option():
    proc = subprocess.run([sys.executable, "-m", "mnemonic_mu", "experiment", "--t-mix", "2"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "t_mix" in proc.stderr and "Traceback" not in proc.stderr
