"""Sanity behaviour of the attacks (docs/protocol.md): separable -> ~1, identical -> ~0.5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnemonic_mu.algorithms import attacks as A
from mnemonic_mu.algorithms.models import build_model
from mnemonic_mu.algorithms.train import TrainConfig, train_model
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.io.data import load_dataset


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_registry_names_and_directions():
    assert list(A.ATTACKS) == ["entropy-LR", "loss-LR-CV", "confidence-SVC", "epsilon-vs-retrain", "linear probe"]
    assert A.ATTACKS["entropy-LR"].direction.startswith("lower = more forgotten")
    assert A.ATTACKS["confidence-SVC"].direction.startswith("higher = more forgotten")
    assert "retrain's value" in A.ATTACKS["loss-LR-CV"].direction
    assert "0 = indistinguishable" in A.ATTACKS["epsilon-vs-retrain"].direction


def test_entropy_lr_sanity():
    g = _rng()
    members, non = g.normal(0.1, 0.02, 400), g.normal(1.5, 0.2, 200)
    assert A.entropy_lr(members, non, g.normal(0.1, 0.02, 100)) > 0.95  # forget looks like members
    assert A.entropy_lr(members, non, g.normal(1.5, 0.2, 100)) < 0.05  # forget looks like non-members
    rates = []
    for s in range(10):
        g = _rng(s)
        rates.append(A.entropy_lr(g.normal(1, 0.3, 400), g.normal(1, 0.3, 200), g.normal(1, 0.3, 100)))
    assert abs(np.mean(rates) - 0.5) < 0.1


def test_loss_lr_cv_sanity():
    g = _rng()
    mean, std = A.loss_lr_cv(g.normal(0.01, 0.005, 200), g.normal(3, 0.5, 150), seed=0)
    assert mean > 0.95 and std >= 0
    mean, _ = A.loss_lr_cv(g.normal(1, 0.3, 300), g.normal(1, 0.3, 300), seed=0)
    assert abs(mean - 0.5) < 0.1
    # seeded: the same call gives the same answer
    a, b = g.normal(1, 0.3, 300), g.normal(1.1, 0.3, 200)
    assert A.loss_lr_cv(a, b, seed=3) == A.loss_lr_cv(a, b, seed=3)


def test_confidence_svc_sanity():
    g = _rng()
    members, non = g.normal(0.99, 0.005, 400), g.normal(0.3, 0.1, 200)
    assert A.confidence_svc(members, non, g.normal(0.3, 0.1, 100)) > 0.95  # forget looks like non-members
    assert A.confidence_svc(members, non, g.normal(0.99, 0.005, 100)) < 0.05
    shares = []
    for s in range(10):
        g = _rng(s)
        shares.append(A.confidence_svc(g.normal(1, 0.3, 300), g.normal(1, 0.3, 150), g.normal(1, 0.3, 100), seed=s))
    assert abs(np.mean(shares) - 0.5) < 0.2


def test_epsilon_vs_retrain_sanity():
    g = _rng()
    u = g.normal(0, 1, 300)
    assert A.epsilon_vs_retrain(u, u) == 0.0  # the same model: indistinguishable
    separable = A.epsilon_vs_retrain(g.normal(6, 1, 300), g.normal(-6, 1, 300))
    assert separable == pytest.approx(np.log(300), abs=0.05)  # the largest value n allows
    # direction does not matter
    assert A.epsilon_vs_retrain(g.normal(-6, 1, 300), g.normal(6, 1, 300)) == pytest.approx(separable, abs=0.05)
    same = np.mean([A.epsilon_vs_retrain(g.normal(0, 1, 300), g.normal(0, 1, 300)) for _ in range(5)])
    assert same < 0.4 * separable  # finite-sample noise floor, far below separable
    null = A.epsilon_null(300, 300, draws=5)
    assert 0.3 < null < 0.4 * separable


def test_linear_probe_sanity():
    g = _rng()
    y = np.repeat([0, 1], 150)
    x = g.normal(0, 1, (300, 5)) + 4 * y[:, None]
    assert A.linear_probe(x, y, x[::3], y[::3]) > 0.98
    x = g.normal(0, 1, (400, 5))
    y = g.integers(0, 2, 400)
    assert abs(A.linear_probe(x[:300], y[:300], x[300:], y[300:]) - 0.5) < 0.15


def test_input_validation():
    with pytest.raises(ConfigError):
        A.entropy_lr([1.0, np.nan], [0.0, 1.0], [0.5])
    with pytest.raises(ConfigError):
        A.loss_lr_cv(np.ones((3, 2, 2)), np.ones(10))
    with pytest.raises(ConfigError):
        A.confidence_svc([0.1, 0.2], [0.3, 0.4], [])
    with pytest.raises(ConfigError):
        A.linear_probe(np.ones((4, 2)), np.array([0, 1, 0, 1]), np.ones((2, 3)), np.array([0, 1]))
    with pytest.raises(ConfigError):
        A.linear_probe(np.ones((4, 2)), np.array([0.0, 1, 0, 1]), np.ones((2, 2)), np.array([0, 1]))
    with pytest.raises(ConfigError):
        A.epsilon_vs_retrain([1.0], [1.0, 2.0])


@pytest.fixture(scope="module")
def attack_setting():
    """A 4-class synthetic problem big enough for the attacks, an original and a retrain MLP."""
    ds = load_dataset("synthetic", num_classes=4, shape=(1, 8, 8), n_per_class=150, noise=0.5, split_seed=0)
    codes = torch.zeros(4, 1, 8, 8)
    models = {}
    for name, exclude in (("original", ()), ("retrain", (0,))):
        model = build_model("mlp", ds.input_shape, ds.num_classes, seed=0)
        cfg = TrainConfig(epochs=60, batch_size=32, lr=0.1, t_mix=0.0, seed=0, exclude_classes=exclude, eval_every=0)
        train_model(model, ds, codes, cfg)
        models[name] = model
    return ds, models


def test_run_attacks_retrain_looks_like_non_member(attack_setting):
    ds, models = attack_setting
    out = A.run_attacks(models["retrain"], models["retrain"], ds, [0], seed=0)
    assert set(out) == set(A.ATTACKS)
    for name, entry in out.items():
        assert {"value", "std", "direction"} <= set(entry) and entry["direction"] == A.ATTACKS[name].direction
    assert out["entropy-LR"]["value"] < 0.3  # forget-train is not called member
    assert out["confidence-SVC"]["value"] > 0.7  # forget-train is called non-member
    assert abs(out["loss-LR-CV"]["value"] - 0.5) < 0.2  # forget train and test both unseen
    assert out["loss-LR-CV"]["std"] is not None
    assert out["epsilon-vs-retrain"]["value"] == 0.0
    assert out["epsilon-vs-retrain"]["null"] > 0


def test_run_attacks_original_looks_like_member(attack_setting):
    ds, models = attack_setting
    orig = A.run_attacks(
        models["original"],
        models["retrain"],
        ds,
        [0],
        seed=0,
        attacks=["entropy-LR", "confidence-SVC", "epsilon-vs-retrain"],
    )
    ret = A.run_attacks(models["retrain"], models["retrain"], ds, [0], seed=0, attacks=["entropy-LR", "confidence-SVC"])
    assert orig["entropy-LR"]["value"] > ret["entropy-LR"]["value"] + 0.3
    assert orig["confidence-SVC"]["value"] < ret["confidence-SVC"]["value"] - 0.3
    assert orig["epsilon-vs-retrain"]["value"] > 1.0
    with pytest.raises(ConfigError):
        A.run_attacks(models["original"], None, ds, [0], attacks=["no-such-attack"])
    assert np.isnan(
        A.run_attacks(models["original"], None, ds, [0], attacks=["epsilon-vs-retrain"])["epsilon-vs-retrain"]["value"]
    )


# --------------------------------------------------------------------------
# The confidence-SVC's per-side cap (attacks.VERSION 2) and the probe's draw


def _record_svc(monkeypatch):
    """Replace sklearn's SVC by a recorder of what it is fit on (C, sample count, labels)."""
    import sklearn.svm

    calls = []
    real = sklearn.svm.SVC

    class Recorder(real):
        def fit(self, x, y, sample_weight=None):
            calls.append({"C": self.C, "n": len(x), "members": int(np.sum(y == 1))})
            return super().fit(x, y, sample_weight)

    monkeypatch.setattr(sklearn.svm, "SVC", Recorder)
    return calls


def test_confidence_svc_cap_is_the_old_recipe_below_it():
    g = _rng(3)
    r, t, f = g.beta(5, 1, 900), g.beta(4, 1, 300), g.beta(4, 1, 200)
    uncapped = A.confidence_svc(r, t, f, seed=2, max_per_side=0)
    assert A.confidence_svc(r, t, f, seed=2, max_per_side=300) == uncapped  # n = |D_t|: nothing changes
    assert A.confidence_svc(r, t, f, seed=2, max_per_side=10_000) == uncapped
    assert A.SVC_MAX_PER_SIDE >= 1000  # mnist5k (|D_t| = 1000) keeps the recipe of VERSION 1
    with pytest.raises(ConfigError):
        A.confidence_svc(r, t, f, max_per_side=1)
    with pytest.raises(ConfigError):
        A.confidence_svc(r, t, f, max_per_side=-5)


def test_confidence_svc_cap_draws_n_per_side_with_rescaled_c(monkeypatch):
    calls = _record_svc(monkeypatch)
    g = _rng(4)
    r, t, f = g.beta(5, 1, 3000), g.beta(4, 1, 1200), g.beta(4, 1, 100)
    A.confidence_svc(r, t, f, seed=0, max_per_side=400)
    A.confidence_svc(r, t, f, seed=0, max_per_side=400, rescale=False)
    A.confidence_svc(r, t, f, seed=0, max_per_side=0)
    assert calls[0] == {"C": pytest.approx(3.0 * 1200 / 400), "n": 800, "members": 400}
    assert calls[1] == {"C": 3.0, "n": 800, "members": 400}
    assert calls[2] == {"C": 3.0, "n": 2400, "members": 1200}
    # the default cap is the module constant, and the draw is seeded
    assert A.confidence_svc(r, t, f, seed=5, max_per_side=400) == A.confidence_svc(r, t, f, seed=5, max_per_side=400)


def test_confidence_svc_capped_value_near_uncapped():
    """Overlapping members / non-members: the rescaled capped fit estimates the uncapped value,
    closer than the capped fit with C left at 3 (whose weaker data term moves the boundary)."""
    rescaled, plain = [], []
    for s in range(3):
        g = _rng(10 + s)
        r, t = g.beta(8, 1, 6_000), g.beta(2, 1, 2_000)
        f = np.concatenate([g.beta(8, 1, 500), g.beta(2, 1, 500)])
        full = A.confidence_svc(r, t, f, seed=s, max_per_side=0)
        rescaled.append(abs(A.confidence_svc(r, t, f, seed=s, max_per_side=500) - full))
        plain.append(abs(A.confidence_svc(r, t, f, seed=s, max_per_side=500, rescale=False) - full))
    assert np.mean(rescaled) < 0.02
    assert np.mean(rescaled) < np.mean(plain)


def test_run_attacks_probe_embeds_only_its_draw(attack_setting):
    """Embedding only the probe's drawn samples gives the value of embedding them all."""
    ds, models = attack_setting
    x_tr, y_tr = ds.split("train")
    x_te, y_te = ds.split("test")
    f_te = y_te == 0
    for seed in (0, 3):
        expected = A.linear_probe(
            A.penultimate_features(models["original"], x_tr),
            y_tr.numpy(),
            A.penultimate_features(models["original"], x_te[f_te]),
            y_te[f_te].numpy(),
            seed=seed,
            max_train=120,
        )
        out = A.run_attacks(models["original"], None, ds, [0], seed=seed, attacks=["linear probe"], probe_max_train=120)
        assert out["linear probe"]["value"] == expected


def test_version_and_cap_documented():
    from pathlib import Path

    assert A.VERSION >= 2  # VERSION 2: the capped confidence-SVC
    text = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text()
    assert (
        f"SVC_MAX_PER_SIDE = {A.SVC_MAX_PER_SIDE:,}".replace(",", "_") in text
        or f"SVC_MAX_PER_SIDE = {A.SVC_MAX_PER_SIDE}" in text
    )


def test_performance_scoring_block_is_generated():
    """docs/performance.md's scoring block is what the committed bench files generate."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks/ helpers
    from benchmarks.items import SCORING_DOCS, SCORING_MARKERS, SCORING_SOURCES, scoring_section

    src = {k: json.loads(p.read_text()) if p.exists() else None for k, p in SCORING_SOURCES.items()}
    assert src["scoring"] is not None and "scoring_request" in src["scoring"]["items"], (
        "no scoring_mnist run committed: python benchmarks/run.py --only scoring_mnist --paper-scale --threads 1"
    )
    assert src["scoring"]["items"]["scoring_request"]["attacks_version"] == A.VERSION, "rerun scoring_mnist"
    start, end = SCORING_MARKERS
    block = f"{start}\n{scoring_section(src['scoring'], src['before'], src['study'])}\n{end}"
    stale = "docs/performance.md is stale: python benchmarks/run.py --write-scoring-docs"
    assert block in SCORING_DOCS.read_text(), stale
