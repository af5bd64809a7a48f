"""The defaults chosen by benchmarks/validation_studies.py are what its committed JSON gives, and
the docs' generated sections are that JSON rendered (the pattern of the calibration study's test)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from mnemonic_mu.algorithms.baselines import Selection
from mnemonic_mu.defaults import default

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("validation_studies", ROOT / "benchmarks" / "validation_studies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _section(study, name: str, path: Path) -> str:
    start, end = study.MARKERS[name]
    text = path.read_text()
    return text[text.index(start) + len(start) : text.index(end)].strip("\n")


def test_the_selection_default_is_what_the_validation_study_chose(study):
    doc = json.loads(study.OUT_SELECTION.read_text())
    assert doc["rules"] == study.rules()
    assert study.summarise_selection(doc["rows"]) == doc["summary"]
    assert study.choose_rule(doc["summary"]) == doc["chosen"]
    assert study.changed_choices(doc["rows"], doc["chosen"]) == doc["changed"]
    # Selection()'s defaults choose, on every committed request, method and half, what the rule chose
    rule = doc["rules"][doc["chosen"]]
    assert rule["floor"] == "ratio" and Selection().collapse_ratio == rule["value"]
    for row in doc["rows"]:
        for method in study.METHODS:
            for half in ("a", "b", "all"):
                scores, a_r0 = study._cands(row, method, half), row["original"][half][0]
                assert Selection().choose(scores, a_r0) == study.apply_rule(rule, scores, a_r0)
    # validation only: every request is scored on the two halves of the validation split
    assert len(doc["rows"]) == sum(len(s["seeds"]) * len(study.CLASSES) for s in doc["settings"])
    assert all(set(r["original"]) == {"a", "b", "all"} for r in doc["rows"])
    assert _section(study, "selection", study.DOC_SELECTION) == study.markdown_selection(doc), (
        "docs/baselines.md is stale: python benchmarks/validation_studies.py --study selection --render"
    )


def test_the_code_dist_section_is_the_committed_study(study):
    doc = json.loads(study.OUT_CODE_DIST.read_text())
    assert study.summarise_code_dist(doc["rows"]) == doc["summary"]
    assert study.decide_code_dist(doc["summary"]) == doc["decision"]
    n = sum(len(s["seeds"]) * len(study.CLASSES) for s in doc["settings"]) * len(study.DISTS)
    assert len(doc["rows"]) == n and all(set(r["steps"]) == set(study.STEPS) for r in doc["rows"])
    assert default("code_dist") == ("normal" if doc["decision"] == "switch" else "uniform"), (
        "the code_dist default is not what docs/results/calibration/code_dist.json decided"
    )
    assert _section(study, "code_dist", study.DOC_CODE_DIST) == study.markdown_code_dist(doc), (
        "docs/protocol.md is stale: python benchmarks/validation_studies.py --study code_dist --render"
    )


def test_the_rules_on_hand_made_candidates(study):
    """apply_rule's floors on one request: the only forgotten candidate lost 35 points."""
    scores, original = [(94.0, 60.0), (60.0, 100.0), (92.0, 95.0)], 95.0
    picks = {name: study.apply_rule(rule, scores, original) for name, rule in study.rules().items()}
    assert picks["ratio-0.5"] == 1  # the rule before takes the damaged model
    assert picks["ratio-0.95"] == picks["drop-5"] == picks["best-2"] == 2  # retain budget: most E_F within 5
    assert picks["ratio-0.5"] == Selection(collapse_ratio=0.5).choose(scores, original)


def test_halves_split_every_class_in_two(study):
    import torch

    y = torch.tensor([0] * 9 + [1] * 4 + [2] * 1)
    in_a = study.halves(y)
    assert [int(in_a[y == c].sum()) for c in range(3)] == [4, 2, 0]
    assert torch.equal(in_a, study.halves(y))  # seeded
