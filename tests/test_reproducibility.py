"""Same seed and settings, two separate processes, identical metrics on CPU (issue 6).

Two ``mnemonic-mu experiment`` runs on the tiny ``digits`` data, each with
its own empty cache (so each one trains), run side by side.  Every metric
they write must be bit-identical, and so must the trained weights; only
timings and paths may differ.  The result JSON must also say what produced
it: package versions, device and seeds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnemonic_mu.io.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # two experiment processes, each training six models with two baselines

SETTINGS = [
    "--dataset",
    "digits",
    "--epochs",
    "2",
    "--baselines",
    "mnemonic_paper",
    "finetune",
    "--seed",
    "3",
    "--split-seed",
    "1",
    "--forget",
    "2",
    "--device",
    "cpu",
]
VOLATILE = {"seconds", "forget_seconds", "total_seconds", "from_cache", "checkpoint"}


def _start(folder: Path) -> subprocess.Popen:
    folder.mkdir()
    env = os.environ | {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONHASHSEED": "random"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mnemonic_mu",
            "experiment",
            *SETTINGS,
            "--cache-dir",
            str(folder / "cache"),
            "--out",
            str(folder / "result.json"),
        ],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stable(obj):
    """The result without timings, cache flags and paths."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def test_two_processes_same_seed_identical_metrics(tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    procs = [_start(folder) for folder in runs]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    a, b = (json.loads((folder / "result.json").read_text()) for folder in runs)

    for section in ("original", "no_codes", "retrain", "mnemonic", "mnemonic_paper", "finetune"):
        assert section in a["rows"]
        assert _stable(a["rows"][section]) == _stable(b["rows"][section]), section
    assert a["rows"]["original"]["from_cache"] is False and b["rows"]["original"]["from_cache"] is False  # both trained
    assert a["rows"]["mnemonic"]["per_class_accuracy"] == b["rows"]["mnemonic"]["per_class_accuracy"]

    # the weights themselves, not just the rounded-off consequences
    ck_a, ck_b = (load_checkpoint(r["rows"]["original"]["checkpoint"]) for r in (a, b))
    for (name, wa), wb in zip(ck_a.model.state_dict().items(), ck_b.model.state_dict().values()):
        assert torch.equal(wa, wb), name
    assert torch.equal(ck_a.codes, ck_b.codes)

    # what produced the numbers is on record
    env = a["environment"]
    for key in ("mnemonic_mu", "python", "torch", "numpy", "platform", "torch_threads", "device"):
        assert env.get(key) not in (None, ""), key
    assert env["packages"]["torchvision"] and env["packages"]["scikit-learn"]
    assert env["device"] == "cpu" and a["settings"]["device"] == "cpu"
    assert (a["settings"]["seed"], a["settings"]["split_seed"]) == (3, 1)
    assert a["settings"]["forget_classes"] == [2] and a["settings"]["epochs"] == 2
    assert env["torch"] == torch.__version__
