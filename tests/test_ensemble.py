"""Batched ensemble training (mnemonic_mu.algorithms.ensemble) against sequential train_model runs."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from mnemonic_mu.algorithms.codes import generate_codes
from mnemonic_mu.algorithms.dataset import make_augment
from mnemonic_mu.algorithms.ensemble import default_max_members, member_memory_bytes, train_ensemble
from mnemonic_mu.algorithms.metrics import accuracy
from mnemonic_mu.algorithms.models import build_model
from mnemonic_mu.algorithms.train import TrainConfig, train_model
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.io.data import load_dataset

# float rounding only: vmap's batched matmuls sum in another order than one model's
RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", split_seed=0)


def _sequential(model_name, ds, members):
    out = []
    for codes, cfg in members:
        model = build_model(model_name, ds.input_shape, ds.num_classes, seed=cfg.seed)
        out.append((model, train_model(model, ds, codes, cfg)))
    return out


def _assert_same(ensemble, sequential, n_val):
    assert len(ensemble) == len(sequential)
    for k, ((m, r), (m_ref, r_ref)) in enumerate(zip(ensemble, sequential)):
        assert not m.training
        ref = dict(m_ref.named_parameters())
        for name, p in m.named_parameters():
            torch.testing.assert_close(p, ref[name], rtol=RTOL, atol=ATOL, msg=f"member {k}, {name}")
        assert r.history["epoch"] == r_ref.history["epoch"]
        torch.testing.assert_close(
            torch.tensor(r.history["loss"]),
            torch.tensor(r_ref.history["loss"]),
            rtol=RTOL,
            atol=ATOL,
            msg=f"member {k} loss",
        )
        # same NaN pattern (eval_every) and accuracies within one validation sample
        va, vb = torch.tensor(r.history["val_acc"]), torch.tensor(r_ref.history["val_acc"])
        assert torch.equal(va.isnan(), vb.isnan())
        assert (va - vb).nan_to_num().abs().max() <= 100.0 / n_val + 1e-6
        assert r.replaced_fraction == r_ref.replaced_fraction  # the very same coins
        assert r.n_train == r_ref.n_train
        assert r.seconds > 0


@pytest.fixture(scope="module")
def three_mlps(digits):
    """Two seeds and one retrain reference (class 3 excluded): fewer steps, other last batch."""
    cfg = TrainConfig(epochs=2, batch_size=50, lr=0.01, t_mix=0.1)
    members = [
        (generate_codes(10, digits.input_shape, "normal", seed=0), replace(cfg, seed=0)),
        (generate_codes(10, digits.input_shape, "normal", seed=1), replace(cfg, seed=1)),
        (generate_codes(10, digits.input_shape, "normal", seed=0), replace(cfg, seed=2, exclude_classes=(3,))),
    ]
    return members, _sequential("mlp", digits, members), train_ensemble("mlp", digits, members)


def test_three_mlps_match_sequential_training(digits, three_mlps):
    members, sequential, ensemble = three_mlps
    _assert_same(ensemble, sequential, len(digits.y_val))
    n_all = len(digits.y_train)
    assert [r.n_train for _, r in ensemble] == [n_all, n_all, int((digits.y_train != 3).sum())]
    assert n_all % 50 != (n_all - int((digits.y_train == 3).sum())) % 50  # the last batches differ in size
    # different seeds give different models, and training moved the weights
    w = [m.fc1.weight for m, _ in ensemble]
    assert (w[0] - w[1]).abs().max() > 1e-2
    init = build_model("mlp", digits.input_shape, 10, seed=0).fc1.weight
    assert (w[0] - init).abs().max() > 1e-3
    for _, r in ensemble:
        assert 0.05 < r.replaced_fraction < 0.15


def test_chunking_gives_the_same_models(digits, three_mlps):
    members, _, whole = three_mlps
    assert default_max_members("mlp", digits, 32) >= len(members)  # no chunking by default here
    chunked = train_ensemble("mlp", digits, members, max_members=2)
    for (m, r), (m_ref, r_ref) in zip(chunked, whole):
        for p, q in zip(m.parameters(), m_ref.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        assert r.history["loss"] == pytest.approx(r_ref.history["loss"], rel=1e-5)
        assert r.replaced_fraction == r_ref.replaced_fraction
    singles = train_ensemble("mlp", digits, members[2:], max_members=1)
    torch.testing.assert_close(singles[0][0].head.weight, whole[2][0].head.weight, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # six MLPs trained 15 epochs (accuracy above 80%)
def test_test_accuracy_equals_sequential_twin(digits):
    cfg = TrainConfig(epochs=15, batch_size=64, lr=0.05, t_mix=0.1, eval_every=5)
    codes = generate_codes(10, digits.input_shape, "normal", seed=0)
    members = [
        (codes, replace(cfg, seed=0)),
        (codes, replace(cfg, seed=1)),
        (codes, replace(cfg, seed=0, exclude_classes=(0,))),
    ]
    ensemble = train_ensemble("mlp", digits, members)
    sequential = _sequential("mlp", digits, members)
    for (m, r), (m_ref, r_ref) in zip(ensemble, sequential):
        acc, acc_ref = accuracy(m, digits.x_test, digits.y_test), accuracy(m_ref, digits.x_test, digits.y_test)
        assert acc > 80
        assert abs(acc - acc_ref) <= 0.5
        assert [math.isnan(v) for v in r.history["val_acc"]] == [e % 5 != 0 for e in range(1, 16)]
    retrain, _ = ensemble[2]
    assert accuracy(retrain, digits.x_test[digits.y_test == 0], digits.y_test[digits.y_test == 0]) == 0.0


def test_members_with_other_settings(digits):
    """t_mix 0, other lr / momentum / weight decay, cosine, eval_every, a far smaller member."""
    cfg = TrainConfig(epochs=3, batch_size=50, lr=0.02, t_mix=0.2)
    codes = generate_codes(10, digits.input_shape, "uniform", seed=4)
    members = [
        (codes, replace(cfg, seed=3, t_mix=0.0)),
        (codes, replace(cfg, seed=4, lr=0.05, momentum=0.5, weight_decay=0.0)),
        (codes, replace(cfg, seed=5, cosine=True, eval_every=2)),
        (codes, replace(cfg, seed=6, momentum=0.0, exclude_classes=tuple(range(2, 10)))),  # 2 of 10 classes
    ]
    ensemble = train_ensemble("mlp", digits, members)
    _assert_same(ensemble, _sequential("mlp", digits, members), len(digits.y_val))
    assert ensemble[0][1].replaced_fraction == 0.0
    assert math.isnan(ensemble[2][1].history["val_acc"][0]) and not math.isnan(ensemble[2][1].history["val_acc"][1])
    assert ensemble[3][1].n_train < len(digits.y_train) // 4  # idle in most steps of every epoch


def test_cnn_with_augmentation_matches_sequential():
    ds = load_dataset("synthetic", num_classes=4, shape=(3, 8, 8), n_per_class=30, split_seed=0)
    ds = replace(ds, augment="crop_flip", pad_value=(0.0, 0.0, 0.0))  # synthetic data has no augmentation
    assert make_augment(ds) is not None
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, t_mix=0.3)
    codes = generate_codes(4, ds.input_shape, "normal", seed=0)
    members = [(codes, replace(cfg, seed=0)), (codes, replace(cfg, seed=1, exclude_classes=(1,)))]
    ensemble = train_ensemble("cnn", ds, members)
    _assert_same(ensemble, _sequential("cnn", ds, members), len(ds.y_val))
    # without augmentation the same members train other weights: the crops were applied
    plain = train_ensemble("cnn", replace(ds, augment="none"), members[:1])
    assert (plain[0][0].head.weight - ensemble[0][0].head.weight).abs().max() > 1e-4


def test_memory_estimate_and_budget(digits):
    model = build_model("mlp", digits.input_shape, 10, seed=0)
    n_params = sum(p.numel() for p in model.parameters())
    # 6 parameter copies + per sample 4 x (fc1 1000 + head 10 outputs) + 2 x 64 inputs, fp32
    assert member_memory_bytes(model, digits.input_shape, 32) == 4 * (6 * n_params + 32 * (4 * 1010 + 2 * 64))
    assert default_max_members("mlp", digits, 32) >= 1


def test_config_errors(digits):
    codes = generate_codes(10, digits.input_shape, "normal", seed=0)
    cfg = TrainConfig(epochs=2, batch_size=32)
    with pytest.raises(ConfigError, match="at least one member"):
        train_ensemble("mlp", digits, [])
    with pytest.raises(ConfigError, match="share epochs"):
        train_ensemble("mlp", digits, [(codes, cfg), (codes, replace(cfg, epochs=3))])
    with pytest.raises(ConfigError, match="share batch_size"):
        train_ensemble("mlp", digits, [(codes, cfg), (codes, replace(cfg, batch_size=64))])
    with pytest.raises(ConfigError, match="train_model"):
        ds = load_dataset("synthetic", num_classes=4, shape=(1, 8, 8), n_per_class=10)
        train_ensemble("resnet18", ds, [(generate_codes(4, (1, 8, 8)), cfg)])
    with pytest.raises(ConfigError, match="shape"):
        train_ensemble("mlp", digits, [(codes[:5], cfg)])
    with pytest.raises(ConfigError, match="max_members"):
        train_ensemble("mlp", digits, [(codes, cfg)], max_members=0)
    with pytest.raises(ConfigError, match="no training samples"):
        train_ensemble("mlp", digits, [(codes, replace(cfg, exclude_classes=tuple(range(10))))])
    with pytest.raises(ConfigError, match="unknown model"):
        train_ensemble("vit", digits, [(codes, cfg)])


@pytest.mark.slow  # a request's models twice, then two sweeps of two seeds each
def test_the_pipeline_and_the_sweep_train_a_requests_models_as_one(tmp_path):
    """trainer="ensemble": the three models of a request come from one ensemble, equal to the
    one-by-one models up to float rounding, cached under their own keys; a sweep gets the same rows."""
    from mnemonic_mu import pipeline
    from mnemonic_mu.drivers import sweep
    from mnemonic_mu.settings import Settings

    single = Settings(
        dataset="digits",
        epochs=3,
        lr=0.05,
        forget_classes=(3,),
        baselines=("mnemonic_paper",),
        probe_max_train=300,
        cache_dir=str(tmp_path / "single"),
    )
    batched = single.replace(trainer="ensemble", cache_dir=str(tmp_path / "ensemble"))
    data = pipeline.load_data(single)
    one = pipeline.train_models(single, data)
    many = pipeline.train_models(batched, data)
    for role in pipeline.ROLES:
        a, b = one[role][0], many[role][0]
        assert not many[role][1] and a.config["key"] != b.config["key"]  # the trainer is part of the key
        assert b.config["trainer"] == "ensemble"
        for (name, wa), wb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
            torch.testing.assert_close(wb, wa, rtol=1e-4, atol=1e-5, msg=f"{role} {name}")
    assert all(cached for _, cached in pipeline.train_models(batched, data).values())  # then loaded
    rows = {}
    for s in (single, batched):
        result = sweep.run_sweep(s, classes=(3,), seeds=(0, 1), out_dir=str(tmp_path / s.trainer))
        rows[s.trainer] = {(r["method"], r["seed"]): r for r in result["rows"]}
    assert rows["single"].keys() == rows["ensemble"].keys()
    for key, r in rows["single"].items():
        assert abs(r["A_R"] - rows["ensemble"][key]["A_R"]) <= 0.5, key
        assert abs(r["E_F"] - rows["ensemble"][key]["E_F"]) <= 0.5, key
