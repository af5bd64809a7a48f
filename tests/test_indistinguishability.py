"""Indistinguishability from retrain (docs/indistinguishability.md): ToW, output
divergences, the per-example epsilon and forget score of the NeurIPS 2023
scorer, its finite-N floor, U-LiRA and the "no signal" check, on hand-made
values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mnemonic_mu.algorithms import indistinguishability as I, metrics as M
from mnemonic_mu.algorithms.attacks import logit_confidence
from mnemonic_mu.algorithms.models import build_model
from mnemonic_mu.errors import ConfigError

DELTA = I.DELTA


def _rng(seed=0):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------
# Tug-of-War


def test_tow_identical_accuracies_is_one():
    accs = {"forget": 3.0, "retain": 97.5, "test": 88.0}
    assert M.tug_of_war(accs, dict(accs)) == 1.0


def test_tow_known_products():
    u = {"forget": 10.0, "retain": 90.0, "test": 80.0}
    r = {"forget": 0.0, "retain": 100.0, "test": 85.0}
    assert M.tug_of_war(u, r) == pytest.approx(0.9 * 0.9 * 0.95)  # 0.7695
    assert M.tug_of_war(r, u) == pytest.approx(0.7695)  # symmetric
    # 100 points apart on one set: 0, whatever the others
    assert (
        M.tug_of_war({"forget": 100.0, "retain": 50.0, "test": 50.0}, {"forget": 0.0, "retain": 50.0, "test": 50.0})
        == 0.0
    )
    assert M.tug_of_war(
        {"forget": 50.0, "retain": 75.0, "test": 60.0}, {"forget": 0.0, "retain": 100.0, "test": 80.0}
    ) == pytest.approx(0.5 * 0.75 * 0.8)


def test_tow_from_rows_uses_train_sets_and_whole_test():
    row = {"E_F_train": 90.0, "A_R_train": 95.0, "test_accuracy": 80.0}  # forget acc 10
    ref = {"E_F_train": 100.0, "A_R_train": 99.0, "test_accuracy": 84.0}  # forget acc 0
    assert M.tow_accuracies(row) == {"forget": 10.0, "retain": 95.0, "test": 80.0}
    assert M.tug_of_war_from_rows(row, ref) == pytest.approx(0.90 * 0.96 * 0.96)
    assert M.tug_of_war_from_rows(row, {"A_R_train": 99.0, "test_accuracy": 84.0}) is None
    assert M.tug_of_war_from_rows(row, ref | {"test_accuracy": math.nan}) is None


def test_tow_rejects_bad_accuracies():
    good = {"forget": 0.0, "retain": 90.0, "test": 80.0}
    with pytest.raises(ConfigError, match="percentage"):
        M.tug_of_war(good | {"retain": 110.0}, good)
    with pytest.raises(ConfigError, match="'test'"):
        M.tug_of_war({"forget": 0.0, "retain": 90.0}, good)


def test_mean_t_interval_hand_computed():
    out = M.mean_t_interval([0.8, 0.9, 1.0])
    t_975_2 = 4.302652729911275  # Student-t 0.975 quantile, 2 degrees of freedom (tables)
    assert out["mean"] == pytest.approx(0.9)
    assert out["std"] == pytest.approx(0.1)
    assert out["half_width"] == pytest.approx(t_975_2 * 0.1 / math.sqrt(3))
    assert (out["low"], out["high"]) == pytest.approx((0.9 - out["half_width"], 0.9 + out["half_width"]))
    assert out["n"] == 3 and out["level"] == 0.95
    one = M.mean_t_interval([0.7])
    assert one["mean"] == 0.7 and math.isnan(one["half_width"])
    with pytest.raises(ConfigError):
        M.mean_t_interval([])


# --------------------------------------------------------------------------
# Output-distribution divergence


def test_js_and_activation_distance_identical_is_zero():
    p = torch.softmax(torch.tensor(_rng().normal(0, 3, (50, 10))), 1).numpy()
    assert I.js_divergence(p, p) == 0.0
    assert I.activation_distance(p, p) == 0.0


def test_js_and_activation_distance_disjoint_one_hot():
    p, q = np.eye(3)[[0, 1, 2]], np.eye(3)[[1, 2, 0]]
    assert I.js_divergence(p, q, base=math.e) == pytest.approx(math.log(2))  # nats
    assert I.js_divergence(p, q) == pytest.approx(1.0)  # bits, the default
    assert I.activation_distance(p, q) == pytest.approx(math.sqrt(2))


def test_js_and_activation_distance_hand_computed():
    # p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4), KL(p||m) = log 4/3, KL(q||m) = (1/2) log 4/3
    p, q = [1.0, 0.0], [0.5, 0.5]
    assert I.js_divergence(p, q, base=math.e) == pytest.approx(0.75 * math.log(4 / 3))
    assert I.js_divergence(p, q) == pytest.approx(0.75 * math.log2(4 / 3))
    assert I.activation_distance(p, q) == pytest.approx(math.sqrt(0.5))
    # the mean over samples: this pair and an identical pair
    pp, qq = np.array([p, [0.2, 0.8]]), np.array([q, [0.2, 0.8]])
    assert I.js_divergence(pp, qq) == pytest.approx(0.75 * math.log2(4 / 3) / 2)
    assert I.activation_distance(pp, qq) == pytest.approx(math.sqrt(0.5) / 2)


def test_divergence_rejects_logits_and_shape_mismatch():
    with pytest.raises(ConfigError, match="softmax"):
        I.js_divergence([[2.0, -1.0]], [[0.5, 0.5]])
    with pytest.raises(ConfigError, match="sum to 1"):
        I.activation_distance([[2.0, 1.0]], [[0.5, 0.5]])
    with pytest.raises(ConfigError, match="same shape"):
        I.activation_distance(np.eye(3), np.eye(2))


def test_divergence_from_retrain_and_band_on_tiny_models(tiny_dataset):
    models = [build_model("mlp", tiny_dataset.input_shape, tiny_dataset.num_classes, seed=s) for s in range(3)]
    same = I.divergence_from_retrain(models[0], models[0], tiny_dataset, [1])
    n_forget = int((tiny_dataset.split("test")[1] == 1).sum())
    assert same["forget"]["n"] == n_forget and same["retain"]["n"] == len(tiny_dataset.y_test) - n_forget
    for side in ("forget", "retain"):
        assert same[side]["js"] == 0.0 and same[side]["activation_distance"] == 0.0
    ab = I.divergence_from_retrain(models[0], models[1], tiny_dataset, [1])
    ba = I.divergence_from_retrain(models[1], models[0], tiny_dataset, [1])
    assert ab["forget"]["js"] == pytest.approx(ba["forget"]["js"])  # symmetric
    assert 0 < ab["forget"]["js"] <= 1 and 0 < ab["retain"]["activation_distance"] <= math.sqrt(2)
    band = I.retrain_band(models, tiny_dataset, [1])
    assert band["n_pairs"] == 3 and set(band["pairs"]) == {"0-1", "0-2", "1-2"}
    assert band["pairs"]["0-1"]["forget"]["js"] == pytest.approx(ab["forget"]["js"])
    stats = band["retain"]["js"]
    assert 0 < stats["min"] <= stats["mean"] <= stats["max"]
    with pytest.raises(ConfigError, match="two retrain"):
        I.retrain_band(models[:1], tiny_dataset, [1])


# --------------------------------------------------------------------------
# Logit-scaled confidence


def test_logit_scaled_confidence_matches_probabilities_and_is_stable():
    logits = _rng().normal(0, 2, (3, 40, 5))  # (models, examples, classes)
    y = _rng(1).integers(0, 5, 40)
    phi = I.logit_scaled_confidence(logits, y)
    assert phi.shape == (3, 40)
    p_true = torch.softmax(torch.tensor(logits), -1).numpy()[:, np.arange(40), y]
    np.testing.assert_allclose(phi, np.log(p_true / (1 - p_true)), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(phi[0], logit_confidence(p_true[0]), rtol=1e-9)  # attacks.py's version
    # extreme logits: p_y rounds to 1 (or 0) in float64, phi stays exact
    np.testing.assert_allclose(I.logit_scaled_confidence([[1000.0, 0.0], [0.0, 1000.0]], [0, 0]), [1000.0, -1000.0])
    with pytest.raises(ConfigError, match="integer"):
        I.logit_scaled_confidence(logits, y.astype(float))


def test_population_confidences_shape(tiny_dataset):
    models = [build_model("mlp", tiny_dataset.input_shape, tiny_dataset.num_classes, seed=s) for s in range(2)]
    x, y = tiny_dataset.split("test")
    conf = I.population_confidences(models, x[:7], y[:7])
    assert conf.shape == (2, 7)
    np.testing.assert_allclose(conf[1], I.logit_scaled_confidence(M.predict_logits(models[1], x[:7]), y[:7]))


# --------------------------------------------------------------------------
# Per-example epsilon (NeurIPS 2023 scorer)


def _epsilon_by_hand(u: np.ndarray, r: np.ndarray, delta: float = DELTA) -> float:
    """The scorer's rule for one example written out, one threshold at a time."""
    cap = math.ceil(math.log(max(len(u), len(r)) - 1))
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    best = 0.0
    for t in np.unique(np.concatenate([u, r])):
        fpr, fnr = np.mean(neg >= t), np.mean(pos < t)
        if fpr == 0 and fnr == 0:
            best = max(best, cap)
        elif fpr == 0 or fnr == 0:
            continue
        else:
            terms = [math.log((1 - delta - a) / b) for a, b in ((fpr, fnr), (fnr, fpr)) if 1 - delta - a > 0]
            best = max(best, *terms)
    return min(best, cap)


def test_per_example_epsilon_matches_the_rule_written_out():
    g = _rng()
    u = np.round(g.normal(0.5, 1, (9, 30)), 1)  # rounded: many ties
    r = np.round(g.normal(0, 1, (7, 30)), 1)
    r[:, :3] = u[:7, :3] + 9  # three separated examples
    got = I.per_example_epsilon(u, r)
    want = [_epsilon_by_hand(u[:, i], r[:, i]) for i in range(30)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert (got[:3] == I.epsilon_cap(9, 7)).all()


def test_per_example_epsilon_identical_populations_is_zero():
    # Tolerance 0: with the same confidences on both sides FPR = TPR at every
    # threshold, so both terms are log(1 - delta / rate) < 0 and the floor at 0
    # returns 0 exactly.  The order of the models does not matter.
    u = _rng().normal(0, 1, (20, 100))
    assert (I.per_example_epsilon(u, u) == 0.0).all()
    assert (I.per_example_epsilon(u, u[_rng(1).permutation(20)]) == 0.0).all()
    assert I.forget_score(u, u)["score"] == 1.0


def test_per_example_epsilon_separated_populations_reach_the_cap():
    g = _rng()
    n = 20
    cap = I.epsilon_cap(n, n)
    assert cap == math.ceil(math.log(n - 1)) == 3.0
    eps = I.per_example_epsilon(g.normal(5, 1, (n, 50)), g.normal(-5, 1, (n, 50)))
    assert (eps == cap).all()  # a threshold with FPR = FNR = 0: the cap
    assert (I.per_example_epsilon(g.normal(-5, 1, (n, 50)), g.normal(5, 1, (n, 50))) == cap).all()  # either side
    assert I.forget_score(g.normal(5, 1, (n, 50)), g.normal(-5, 1, (n, 50)))["score"] == 0.0
    # one retrain model of twenty below every unlearned one: the gap threshold has
    # FPR = 0 < FNR and is skipped; the best is FPR = FNR = 1/20, log((1 - delta) 20 - 1)
    u = g.normal(-5, 0.1, (n, 10))
    r = np.concatenate([g.normal(5, 0.1, (n - 1, 10)), np.full((1, 10), -20.0)])
    np.testing.assert_allclose(I.per_example_epsilon(u, r), math.log((1 - DELTA) * n - 1), rtol=1e-12)


def test_per_example_epsilon_rejects_bad_populations():
    g = _rng()
    with pytest.raises(ConfigError, match="same examples"):
        I.per_example_epsilon(g.normal(size=(5, 4)), g.normal(size=(5, 3)))
    with pytest.raises(ConfigError, match="at least 3"):
        I.per_example_epsilon(g.normal(size=(2, 4)), g.normal(size=(5, 4)))
    with pytest.raises(ConfigError, match="NaN"):
        I.per_example_epsilon(np.full((5, 4), np.nan), g.normal(size=(5, 4)))


# --------------------------------------------------------------------------
# Forget score: the competition's bucketing


def test_bucket_points_hand_made():
    # max_epsilon 3 (N = 20): six buckets of width 0.5 worth 1, 1/2, ..., 1/32; 0 from 3 on
    eps = [0.0, 0.49, 0.5, 0.99, 1.0, 2.7, 2.99, 3.0, 50.0]
    want = [1, 1, 0.5, 0.5, 0.25, 1 / 32, 1 / 32, 0, 0]
    np.testing.assert_allclose(I.bucket_points(eps, 3.0), want)
    assert I.forget_score_from_epsilons(eps, 3.0) == pytest.approx(sum(want) / len(want))
    # N = 3: max_epsilon ceil(log 2) = 1, two buckets
    assert I.epsilon_cap(3, 3) == 1.0
    np.testing.assert_allclose(I.bucket_points([0.2, 0.7, 1.0], 1.0), [1, 0.5, 0])
    # the competition's N = 512: max_epsilon ceil(log 511) = 7, fourteen buckets
    assert I.epsilon_cap(512, 512) == 7.0
    np.testing.assert_allclose(I.bucket_points([6.9, 7.0], 7.0), [2.0**-13, 0])
    with pytest.raises(ConfigError):
        I.bucket_points([-0.1], 3.0)


def test_forget_score_returns_its_parts():
    g = _rng()
    u, r = g.normal(0, 1, (10, 40)), g.normal(0.3, 1, (12, 40))
    out = I.forget_score(u, r)
    assert out["cap"] == math.ceil(math.log(11)) and (out["n_unlearned"], out["n_retrain"]) == (10, 12)
    np.testing.assert_array_equal(out["epsilons"], I.per_example_epsilon(u, r))
    assert out["score"] == I.forget_score_from_epsilons(out["epsilons"], out["cap"])


# --------------------------------------------------------------------------
# The finite-N floor


def test_forget_score_floor_on_a_split_population():
    g = _rng()
    retrain = g.normal(0, 1, (40, 300))
    floor = I.forget_score_floor(retrain, seed=0, repeats=3)
    # it is exactly the score of the seeded halves
    for i, score in enumerate(floor["scores"]):
        a, b = I.retrain_halves(40, i)
        assert len(a) == len(b) == 20 and not set(a) & set(b)
        assert score == I.forget_score(retrain[a], retrain[b])["score"]
    assert floor["n_per_half"] == 20 and floor["cap"] == 3.0
    assert floor["score"] == pytest.approx(np.mean(floor["scores"]))
    # finite N: retrain against retrain is far from the ideal 1 (but far above a separated 0)
    assert 0.1 < floor["score"] < 0.6
    # and it is what a perfect unlearner (same distribution as retrain) gets at that size:
    # both average 300 examples, so they agree to a few hundredths
    perfect = np.mean([I.forget_score(g.normal(0, 1, (20, 300)), g.normal(0, 1, (20, 300)))["score"] for _ in range(3)])
    assert abs(floor["score"] - perfect) < 0.05
    with pytest.raises(ConfigError, match="at least 6"):
        I.forget_score_floor(retrain[:5])


# --------------------------------------------------------------------------
# U-LiRA


def test_ulira_accuracy_sanity():
    g = _rng()
    same = I.ulira_accuracy(g.normal(0, 1, (20, 400)), g.normal(0, 1, (20, 400)))
    assert abs(same["accuracy"] - 0.5) < 0.03  # 400 examples x 20 targets: standard error about 0.006
    assert same["per_example"].shape == (400,)
    apart = I.ulira_accuracy(g.normal(6, 1, (20, 400)), g.normal(0, 1, (20, 400)))
    assert apart["accuracy"] > 0.99
    with pytest.raises(ConfigError, match="at least 4"):
        I.ulira_accuracy(g.normal(size=(3, 5)), g.normal(size=(8, 5)))


# --------------------------------------------------------------------------
# "No signal"


def test_attack_signal_without_signal():
    # values built to overlap: the attack cannot tell original from retrain here
    out = I.attack_signal([0.48, 0.52, 0.50], [0.49, 0.51, 0.47])
    assert out["separates"] is False and out["gap"] < 0 and out["band"] == "minmax"
    assert (out["original"]["low"], out["original"]["high"]) == (0.48, 0.52)
    assert (out["retrain"]["low"], out["retrain"]["high"]) == (0.47, 0.51)
    assert out["gap"] == pytest.approx(0.48 - 0.51)
    assert I.attack_signal([0.48, 0.52, 0.50], [0.49, 0.51, 0.47], band="std")["separates"] is False


def test_attack_signal_with_signal():
    out = I.attack_signal([0.95, 0.97, 0.99], [0.02, 0.05, 0.03])
    assert out["separates"] is True and out["gap"] == pytest.approx(0.95 - 0.05)
    assert out["original"]["mean"] == pytest.approx(0.97) and out["retrain"]["n"] == 3
    # the band rule matters: one stray seed overlaps min..max but not mean +- std
    original, retrain = [0.1, 0.2, 0.9], [0.8, 0.85, 0.95]
    assert I.attack_signal(original, retrain)["separates"] is False
    std = I.attack_signal(original, retrain, band="std")
    assert std["separates"] is True
    assert std["original"]["high"] == pytest.approx(0.4 + np.std(original))
    with pytest.raises(ConfigError, match="band"):
        I.attack_signal([1.0], [0.0], band="iqr")


def test_binned_kl_hand_computed():
    assert I.binned_kl([0.0, 0.3, 0.9], [0.0, 0.3, 0.9]) == 0.0
    # bins [0, 0.5), [0.5, 1]: P = (1/2, 1/2), Q = (3/4, 1/4)
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert I.binned_kl([0, 0, 1, 1], [0, 0, 0, 1], bins=2) == pytest.approx(expected, abs=1e-15)
    # disjoint: Q's empty bin is floored at eps, so KL = log(1 / eps)
    assert I.binned_kl([0, 0], [1, 1], bins=2) == pytest.approx(math.log(1 / I.KLOM_EPS))
    # clipped to +-clip before binning: 1e9 and 500 fall in the same (last) bin
    assert I.binned_kl([-1.0, 1e9], [-1.0, 500.0], bins=4, clip=100.0) == 0.0
    with pytest.raises(ConfigError, match="two non-empty 1-D samples"):
        I.binned_kl([], [1.0])


def test_klom_is_a_percentile_of_per_example_divergences():
    rng = np.random.default_rng(0)
    retrain = rng.normal(-5.0, 1.0, size=(8, 20))
    assert I.klom(retrain, retrain)["value"] == 0.0
    unlearned = retrain.copy()
    unlearned[:, :3] += 50.0  # three examples far above retrain's margins
    out = I.klom(unlearned, retrain)
    per = out["per_example"]
    assert per[0] == I.binned_kl(unlearned[:, 0], retrain[:, 0]) == pytest.approx(math.log(1 / I.KLOM_EPS))
    assert (per[3:] == 0.0).all()
    assert out["value"] == np.percentile(per, 95) and out["median"] == 0.0 and out["percentile"] == 95.0
    with pytest.raises(ConfigError, match="same examples"):
        I.klom(unlearned[:, :5], retrain)


def test_forget_logit_parts_split_the_confidence_and_name_the_runner_up():
    """z_c - others is logit_scaled_confidence with every target c, to the bit; others is the
    log-sum-exp of the other logits; the runner-up is the other class with the largest logit."""
    logits = torch.tensor([[2.0, 0.5, 1.0, -1.0], [-3.0, 4.0, 0.0, 4.5]], dtype=torch.float32)
    zc, others, runner = I.forget_logit_parts(logits, 1)
    assert zc.tolist() == [0.5, 4.0]
    want = torch.logsumexp(logits.double()[:, [0, 2, 3]], 1).numpy()
    np.testing.assert_allclose(others, want, rtol=0, atol=1e-12)
    assert np.array_equal(zc - others, I.logit_scaled_confidence(logits, torch.tensor([1, 1])))
    assert runner.tolist() == [0, 3]  # never the forget class itself, even where it leads
    with pytest.raises(ConfigError, match="forget class 4 is not one of the logits' 4 classes"):
        I.forget_logit_parts(logits, 4)
