"""The default step can be rebuilt from the notebooks: the cells of 03_fisher and 04_unlearning
tagged ``rebuild`` (and their imports cells), executed on their own, give
``forget(step="calibrated")``'s model to 1e-5.

This is the script a student would write after reading 03-04: it takes nothing from the
library but the trained model and its codes.  It runs on the ci profile (digits) on class 0
and on an undertrained original (8 epochs) where the guard acts on class 4 (no safe scale
reaches the forget target, the step warns) and only part of the remaining views is checked.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import nbformat
import pytest
import torch

from mnemonic_mu import pipeline
from mnemonic_mu.algorithms.forget import Calibration, forget
from mnemonic_mu.settings import Settings

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = ("03_fisher", "04_unlearning")


def rebuild_cells() -> list[tuple[str, str]]:
    """``(kind, source)`` of the imports cell and every ``rebuild`` cell of 03 and 04, in notebook order."""
    out = []
    for name in SOURCES:
        cells = [c for c in nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4).cells if c.cell_type == "code"]
        tagged = [c.source for c in cells if "rebuild" in c.metadata.get("tags", [])]
        assert tagged, f"{name}: no cell tagged 'rebuild'"
        out += [("imports", cells[0].source)] + [("rebuild", source) for source in tagged]
    return out


def rebuild_namespace() -> dict:
    """The functions and constants the cells define, executed in a fresh namespace."""
    ns: dict = {}
    for _, source in rebuild_cells():
        exec(compile(source, "<notebook cell>", "exec"), ns)
    return ns


def original(tmp_path, **changes):
    cfg = Settings.from_profile("ci", cache_dir=str(tmp_path / "cache"), **changes)
    data = pipeline.load_data(cfg)
    ck = pipeline.train_models(cfg, data, ("original",), device=torch.device("cpu"))["original"][0]
    return ck.model.eval(), ck.codes, cfg


def rebuild(ns, model, codes, fc, cfg, **kw):
    """The student's script: code Fishers by 03's cell, the step by 04's."""
    per_class = [ns["code_fisher_by_hand"](model, codes, k) for k in range(len(codes))]
    return ns["calibrated_step"](model, codes, per_class, fc, cfg.lambda1, cfg.lambda2, **kw)


def largest_difference(a, b) -> float:
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5, msg=n)
    return max(float((p - q).abs().max()) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_rebuild_cells_define_only_functions_and_constants():
    """A tagged cell runs anywhere: no notebook variable (cfg, data, the model) is read at its top level."""
    for source in (source for kind, source in rebuild_cells() if kind == "rebuild"):
        for stmt in ast.parse(source).body:
            assert isinstance(stmt, (ast.FunctionDef, ast.Assign, ast.While, ast.Import, ast.ImportFrom, ast.Expr)), (
                ast.unparse(stmt)[:80]
            )
    ns = rebuild_namespace()
    for name in (
        "code_fisher_by_hand",
        "eta_alpha",
        "moved",
        "held_rows",
        "gains",
        "views_of",
        "watch",
        "scan",
        "calibrate_one",
        "calibrated_step",
    ):
        assert callable(ns[name]), name


@pytest.mark.slow
def test_the_notebook_cells_rebuild_the_default_step(tmp_path, capsys):
    ns = rebuild_namespace()
    # class 0 of the ci profile: the step qualifies (sign -, no warning)
    model, codes, cfg = original(tmp_path)
    mine, parts = rebuild(ns, model, codes, [0], cfg)
    library, rec = forget(model, codes, [0], cfg.lambda1, cfg.lambda2, step="calibrated")
    diff_plain = largest_difference(mine, library)
    assert (parts[0]["sign"], parts[0]["k"]) == (rec.sign, rec.scale)
    assert not rec.warnings and parts[0]["warning"] is None
    # two classes in turn: the sequential request
    mine, parts = rebuild(ns, model, codes, [0, 3], cfg)
    library, rec = forget(model, codes, [0, 3], cfg.lambda1, cfg.lambda2, step="calibrated")
    largest_difference(mine, library)
    assert [(p["class"], p["sign"], p["scale"]) for p in rec.parts] == [(p["class"], p["sign"], p["k"]) for p in parts]

    # an undertrained original (8 epochs): on class 4 the guard acts
    model, codes, cfg = original(tmp_path, epochs=8)
    mine, parts = rebuild(ns, model, codes, [4], cfg)
    library, rec = forget(model, codes, [4], cfg.lambda1, cfg.lambda2, step="calibrated")
    diff_guard = largest_difference(mine, library)
    part = parts[0]
    assert any(w.startswith("calibration could not push") for w in rec.warnings), rec.warnings  # the guard acted ...
    assert part["warning"] is not None  # ... here too
    assert part["warning"].startswith("no safe scale reaches the target")
    assert (part["sign"], part["k"]) == (rec.sign, rec.scale) and rec.guard["scale"] == part["k"]
    assert part["views_skipped"] == rec.guard["views_skipped"] > 0  # views the model already gets wrong are skipped
    kept = min((t for t in part["traces"][part["sign"]] if t[2] == "safe"), key=lambda t: t[1]["forget_margin"])
    assert kept[0] == part["k"] and math.isclose(rec.guard["forget_margin"], kept[1]["forget_margin"], abs_tol=1e-5)
    assert all(trace[-1][2] == "guard" for trace in part["traces"].values())  # both signs stopped by the guard

    # the comparison can fail: the same cells with an 8-nat margin give another model
    model, codes, cfg = original(tmp_path)
    other, _ = rebuild(ns, model, codes, [0], cfg, margin=8.0)
    with pytest.raises(AssertionError):
        largest_difference(other, forget(model, codes, [0], cfg.lambda1, cfg.lambda2, step="calibrated")[0])
    with capsys.disabled():
        print(
            f"\nrebuild vs forget(step='calibrated'): class 0 {diff_plain:.1e}; "
            f"class 4 at 8 epochs (guard) {diff_guard:.1e}"
        )


def test_the_constants_of_the_cells_are_the_librarys():
    """04 checks them in a cell too; here without a kernel, so a changed default fails fast."""
    ns = rebuild_namespace()
    cal = Calibration()
    assert (ns["MARGIN"], ns["N_VIEWS"], ns["JITTER"], ns["VIEW_SEED"], ns["HIDDEN_CAP"]) == (
        cal.margin,
        cal.n_views,
        cal.jitter,
        cal.seed,
        cal.hidden_cap,
    )
    ladder = ns["LADDER"]
    assert ladder[0] == cal.min_scale and ladder[-1] <= cal.max_scale * (1 + 1e-9) < ladder[-1] * cal.growth
    assert all(b == a * cal.growth for a, b in zip(ladder, ladder[1:]))
