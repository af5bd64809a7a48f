"""The committed notebooks: no outputs, one literal parameters cell that matches the config.

These tests read the .ipynb files only (no kernel); executing them is tested in
tests/test_report.py.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import papermill
import pytest

from mnemonic_mu import notebook_stages as stages
from mnemonic_mu.errors import ConfigError, StageOrderError
from mnemonic_mu.drivers.report import PROFILES, declared_parameters, resolve_parameters
from mnemonic_mu.settings import Settings, load_profile

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _read(name: str):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def _parameters_cell(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{len(tagged)} cells tagged 'parameters'"
    return tagged[0]


@pytest.mark.parametrize("name", stages.NOTEBOOKS)
def test_committed_without_outputs_and_with_kernelspec(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{name}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.parametrize("name", stages.NOTEBOOKS)
def test_parameters_cell_holds_commented_literals_after_the_imports(name):
    nb = _read(name)
    idx = _parameters_cell(nb)
    code_before = [c for c in nb.cells[:idx] if c.cell_type == "code"]
    assert len(code_before) == 1 and "import" in code_before[0].source, "parameters must follow the imports cell"
    lines = nb.cells[idx].source.splitlines()
    for stmt, line in zip(ast.parse(nb.cells[idx].source).body, lines, strict=True):
        assert isinstance(stmt, ast.Assign) and len(stmt.targets) == 1, line
        ast.literal_eval(stmt.value)  # literals only
        assert "  # " in line, f"{name}: parameter without a trailing comment: {line}"
    assert "|" not in nb.cells[idx].source.split("#")[0]


@pytest.mark.parametrize("name", stages.NOTEBOOKS)
def test_parameters_match_the_config_and_the_laptop_profile(name):
    nb = _read(name)
    idx = _parameters_cell(nb)
    declared = {
        k: ast.literal_eval(v["default"]) for k, v in papermill.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb")).items()
    }
    assert tuple(declared) == stages.NOTEBOOK_PARAMETERS[name]
    defaults = Settings().to_dict()
    for key, value in declared.items():
        assert value == defaults[key], f"{name}: default of {key} differs from Settings"
    for key, value in load_profile("laptop").items():
        if key in declared:
            assert declared[key] == value, f"{name}: default of {key} is not the laptop profile's"
    # the next code cell passes every parameter, by name, to the config dataclass
    config = next(c for c in nb.cells[idx + 1 :] if c.cell_type == "code")
    calls = [n for n in ast.walk(ast.parse(config.source)) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Settings"]
    assert len(calls) == 1, f"{name}: the config cell must build Settings"
    passed = {kw.arg: kw.value.id for kw in calls[0].keywords if isinstance(kw.value, ast.Name)}
    assert passed == {k: k for k in declared}, f"{name}: config cell does not pass exactly its parameters"
    Settings(**declared)  # the defaults validate


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_only_name_declared_parameters_of_the_right_type(profile):
    declared = declared_parameters(NOTEBOOKS)
    params = resolve_parameters(profile, {}, declared, Path.cwd())
    assert params.keys() <= set().union(*[set(d) for d in declared.values()])


def test_every_notebook_has_summary_and_exercises():
    for name in stages.NOTEBOOKS:
        text = "\n".join(c.source for c in _read(name).cells if c.cell_type == "markdown")
        assert "## Summary" in text and "## Exercises" in text, name
        assert json.dumps(text)  # plain text


def test_stage_order_error_names_the_notebook_to_run_first(tmp_path):
    cfg = Settings(dataset="synthetic", epochs=2, cache_dir=str(tmp_path))
    with pytest.raises(StageOrderError, match=r"notebooks/02_training\.ipynb first"):
        stages.load_stage(cfg, "02_training")
    # keys chain: changing a training setting changes every downstream key, not upstream ones
    other = Settings(dataset="synthetic", epochs=3, cache_dir=str(tmp_path))
    assert stages.stage_key(cfg, "01_mnemonic_codes") == stages.stage_key(other, "01_mnemonic_codes")
    for stage in stages.NOTEBOOKS[1:]:
        assert stages.stage_key(cfg, stage) != stages.stage_key(other, stage)


def test_compute_upstream_computes_missing_stages(tmp_path):
    cfg = Settings(
        dataset="synthetic", epochs=2, cache_dir=str(tmp_path), run_dir=str(tmp_path / "run"), compute_upstream=True
    )
    art = stages.load_stage(cfg, "02_training")  # computes 01, then 02
    assert (stages.stage_dir(cfg, "01_mnemonic_codes") / "manifest.json").is_file()
    assert art.result["models"]["retrain"]["exclude_classes"] == [0]
    again = stages.load_stage(cfg, "02_training")  # now read from disk
    assert again.result["models"]["original"]["key"] == art.result["models"]["original"]["key"]


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="epochs must be an integer"):
        Settings(epochs="100")
    with pytest.raises(ConfigError, match="unknown dataset"):
        Settings(dataset="imagenet")
    with pytest.raises(ConfigError, match="forget_classes"):
        Settings(forget_classes=[])
    assert Settings(forget_classes=3, lambda1=1).forget_classes == (3,)


def test_a_version_bump_changes_the_stage_keys_downstream(monkeypatch):
    """A stage result made by older code is never reused: its key holds the algorithms' versions."""
    from mnemonic_mu.algorithms import forget

    cfg = Settings(dataset="synthetic", epochs=2)
    before = {stage: stages.stage_key(cfg, stage) for stage in stages.NOTEBOOKS}
    monkeypatch.setattr(forget, "VERSION", forget.VERSION + 1)
    after = {stage: stages.stage_key(cfg, stage) for stage in stages.NOTEBOOKS}
    assert after["01_mnemonic_codes"] == before["01_mnemonic_codes"]
    assert after["02_training"] == before["02_training"]  # training does not run the step
    for stage in ("03_fisher", "04_unlearning", "05_membership_evaluation", "06_report"):
        assert after[stage] != before[stage], stage


def test_committed_notebooks_match_their_generator(tmp_path):
    import subprocess
    import sys

    subprocess.run([sys.executable, str(NOTEBOOKS / "_build.py"), str(tmp_path)], check=True)
    for name in stages.NOTEBOOKS:
        fresh = (tmp_path / f"{name}.ipynb").read_text()
        assert fresh == (NOTEBOOKS / f"{name}.ipynb").read_text(), (
            f"{name}.ipynb differs from notebooks/_build.py: edit the generator and run it"
        )
