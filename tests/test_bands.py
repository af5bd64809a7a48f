"""Retrain's seed band (mnemonic_mu.bands): the inside rule, the signal flag, one request on real data."""

from __future__ import annotations

import math

import pytest

from mnemonic_mu import bands as B, pipeline
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.settings import Settings

NAMES = {"entropy_LR": "entropy-LR", "linear_probe": "linear probe"}


def _row(a_r, gap=0.0, tow=1.0, **attacks):
    return {
        "A_R": a_r,
        "E_F": 100.0,
        "A_R_train": a_r,
        "E_F_train": 100.0,
        "gap": gap,
        "tow": tow,
        "attacks": {NAMES[k]: {"value": v} for k, v in attacks.items()},
        "divergence": {
            "forget": {"js": gap / 10, "activation_distance": gap / 5},
            "retain": {"js": gap / 20, "activation_distance": gap / 10},
        },
    }


def test_band_stats_and_the_inside_rule():
    band = [_row(90.0, gap=1.0, tow=0.9, entropy_LR=0.1), _row(94.0, gap=3.0, tow=0.97, entropy_LR=0.3)]
    st = B.band_stats(band)
    assert st["A_R"] == {"mean": 92.0, "std": 2.0, "min": 90.0, "max": 94.0, "n": 2}
    # two-sided: below and above the band are both outside
    assert B.inside("A_R", 90.0, st["A_R"]) and B.inside("A_R", 94.0, st["A_R"])
    assert not B.inside("A_R", 89.9, st["A_R"]) and not B.inside("A_R", 94.1, st["A_R"])
    # distances to retrain: only the top edge counts (retrain itself sits at 0, below every band)
    assert B.inside("gap", 0.0, st["gap"]) and not B.inside("gap", 3.5, st["gap"])
    assert B.inside("js_forget", 0.0, st["js_forget"]) and not B.inside("js_forget", 0.31, st["js_forget"])
    # ToW: only the bottom edge counts (retrain itself is 1)
    assert B.inside("tow", 1.0, st["tow"]) and not B.inside("tow", 0.85, st["tow"])
    flags = B.inside_flags(_row(95.0, gap=0.0, tow=1.0, entropy_LR=0.2), st)
    assert flags["A_R"] is False and flags["gap"] and flags["tow"] and flags["entropy-LR"]
    assert "linear probe" not in flags  # not scored on either side: no flag


def test_expected_inside_is_the_chance_another_retrain_lands_inside():
    assert B.expected_inside("A_R", 4) == pytest.approx(3 / 5)  # (R - 1) / (R + 1)
    assert B.expected_inside("gap", 4) == pytest.approx(4 / 5)  # R / (R + 1): one edge
    assert B.expected_inside("tow", 3) == pytest.approx(3 / 4)


def test_no_signal_on_a_setup_built_to_have_none():
    """The original sits inside retrain's band on the linear probe (no signal), far outside it on
    entropy-LR (signal)."""
    band = {1000: _row(90.0, entropy_LR=0.0, linear_probe=0.90), 1001: _row(92.0, entropy_LR=0.02, linear_probe=0.96)}
    rows = {"original": _row(91.0, gap=20.0, tow=0.5, entropy_LR=0.8, linear_probe=0.93), "retrain": _row(91.0)}
    out = B.request_band(rows, band)
    assert out["signal"]["linear probe"]["no_signal"] is True
    assert out["signal"]["entropy-LR"]["no_signal"] is False
    assert out["signal"]["entropy-LR"]["gap"] == pytest.approx(0.78)
    assert out["inside"]["original"]["gap"] is False and out["inside"]["retrain"]["gap"] is True
    assert out["seeds"] == [1000, 1001] and B.request_band(rows, {}) is None


@pytest.mark.slow  # a request with three band retrains, 20 epochs each
def test_one_request_scores_its_band_against_its_own_retrain(tmp_path):
    """On real data (digits): the band references are other seeds' retrains (other weights), each
    scored against the request's retrain, so their distances to it are positive; the request's own
    retrain is at distance 0, inside on every one-sided metric."""
    s = Settings(
        dataset="digits",
        epochs=20,
        lr=0.05,
        baselines=(),
        attacks=("epsilon-vs-retrain",),
        band_seeds=(1000, 1001, 1002),
        cache_dir=str(tmp_path / "cache"),
        forget_classes=(2,),
    )
    out = pipeline.run_request(s)
    band, rows = out["band_rows"], out["rows"]
    assert sorted(band) == [1000, 1001, 1002]
    assert len({r["key"] for r in band.values()} | {rows["retrain"]["key"]}) == 4  # four different models
    for r in band.values():
        assert r["E_F"] == 100.0 and r["exclude_classes"] == [2]  # each is a retrain of the request
        assert r["gap"] > 0 and r["tow"] < 1 and r["divergence"]["retain"]["js"] > 0
        assert r["attacks"]["epsilon-vs-retrain"]["value"] > 0
    flags = out["band"]["inside"]["retrain"]
    assert all(flags[m] for m in ("gap", "tow", "js_forget", "js_retain", "activation_forget", "epsilon-vs-retrain"))
    # the untouched original did not forget: outside retrain's band on E_F, gap and ToW
    assert not any(out["band"]["inside"]["original"][m] for m in ("E_F", "gap", "tow"))
    assert math.isclose(out["band"]["stats"]["A_R"]["max"], max(r["A_R"] for r in band.values()))


def test_band_seeds_are_checked():
    with pytest.raises(ConfigError, match="holds the request's own seed 1000"):
        Settings(seed=1000, band_seeds=(1000, 1001))
    with pytest.raises(ConfigError, match="band_seeds must be distinct"):
        Settings(band_seeds=(5, 5))
    assert Settings(band_seeds="none").band_seeds == () and Settings(band_seeds=["none"]).band_seeds == ()
