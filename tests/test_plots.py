"""plots draws and tabulates only; the forget-every-class study it used to run lives in the pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

import mnemonic_mu.plots as plots
from mnemonic_mu import pipeline
from mnemonic_mu.algorithms.forget import Calibration, forget
from mnemonic_mu.algorithms.metrics import evaluate


def test_plots_imports_no_algorithm():
    tree = ast.parse(Path(plots.__file__).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    assert not [m for m in imported if m.startswith(("algorithms", ".algorithms", "mnemonic_mu.algorithms"))]
    assert not hasattr(plots, "every_class") and hasattr(pipeline, "forget_every_class")


def test_forget_every_class_is_one_step_per_step_and_class(tiny_trained, tiny_dataset):
    model, codes = tiny_trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = pipeline.forget_every_class(model, codes, tiny_dataset, 1e-3, 10.0)
    assert [(r["step"], r["class"]) for r in rows] == [(s, c) for s in ("paper", "calibrated") for c in range(4)]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the model is left untouched
    for r in rows:
        new, rec = forget(model, codes, [r["class"]], 1e-3, 10.0, step=r["step"], calibration=Calibration())
        ev = evaluate(new, tiny_dataset, [r["class"]], splits=("test",))
        assert (r["A_R"], r["E_F"], r["sign"], r["scale"]) == (ev["A_R"], ev["E_F"], rec.sign, rec.scale)
        assert r["forgotten"] == (ev["E_F"] >= 99.0) and r["warnings"] == len(rec.warnings)
    assert pipeline.forget_every_class(model, codes, tiny_dataset, 1e-3, 10.0, steps=("paper",)) == rows[:4]


def test_a_file_written_before_the_gap_rename_reads_under_the_new_name(tmp_path):
    """One name per metric: request rows said ``gap_to_retrain`` and sweep rows ``gap``; files
    written before the rename (cached rows, stage results, run pages, the README's quick start)
    read with ``gap``."""
    import json

    from mnemonic_mu.algorithms.metrics import renamed_keys
    from mnemonic_mu.drivers.cli import experiment_lines
    from mnemonic_mu.io import store

    old = {"rows": {"mnemonic": {"A_R": 97.0, "gap_to_retrain": 1.25, "attacks": {}}}, "gap": [{"gap_to_retrain": 0}]}
    assert renamed_keys(old) == {"rows": {"mnemonic": {"A_R": 97.0, "gap": 1.25, "attacks": {}}}, "gap": [{"gap": 0}]}
    path = tmp_path / "row.json"
    path.write_text(json.dumps({"key": "k", "rows": [{"gap_to_retrain": 2.5}]}))
    rows, reused = store.cached_rows(path, "k", lambda: [{"gap": -1.0}])
    assert reused and rows == [{"gap": 2.5}]
    committed = Path(__file__).resolve().parent.parent / "docs/results/experiments/quickstart.json"
    new = renamed_keys(json.loads(committed.read_text()))
    old = json.loads(json.dumps(new).replace('"gap":', '"gap_to_retrain":'))  # as written before the rename
    assert "gap_to_retrain" in old["rows"]["retrain"] and "gap" not in old["rows"]["retrain"]
    lines = experiment_lines(old)
    assert lines == experiment_lines(new) and any(line.startswith("retrain ") and " 0.00 " in line for line in lines)
