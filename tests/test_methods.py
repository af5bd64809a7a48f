"""Every registered method runs on a tiny model through the same call and leaves its input untouched."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mnemonic_mu.algorithms import fisher as F, methods as M
from mnemonic_mu.algorithms.metrics import evaluate
from mnemonic_mu.algorithms.train import TrainConfig
from mnemonic_mu.errors import ConfigError

# small grids / epochs so the whole file runs in seconds
FAST = {
    "mnemonic_tuned": {"lambda1_grid": (1e-3, 1e-1), "lambda2_grid": (10.0, 1e3)},
    "ours_with_data": {"lambda1_grid": (1e-3, 1e-1), "lambda2_grid": (10.0, 1e3)},
    "finetune": {"epochs": 2},
    "neggrad": {"epochs": 2},
    "neggrad_plus": {"epochs": 2},
    "random_label": {"epochs": 2},
    "ssd": {"alphas": (1.0, 10.0)},
    "fisher_forgetting": {"alphas": (1e-6, 1e-7)},
}


@pytest.fixture(scope="module")
def request_data(tiny_dataset):
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, t_mix=0.2, seed=0)
    return M.UnlearnData.from_dataset(tiny_dataset, [0], train_config=cfg)


def test_registry_complete():
    for name in (
        "mnemonic_tuned",
        "retrain",
        "finetune",
        "neggrad",
        "neggrad_plus",
        "random_label",
        "ssd",
        "fisher_forgetting",
        "ours_with_data",
    ):
        assert name in M.METHODS and M.METHODS[name].description and M.METHODS[name].function.__doc__
    assert M.METHODS["ours_with_data"].input_model == "no_codes"


@pytest.mark.parametrize("name", list(M.METHODS))
def test_every_method_same_call(name, tiny_trained, tiny_dataset, request_data):
    model, codes = tiny_trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = M.unlearn(name, model, codes, [0], request_data, seed=0, **FAST.get(name, {}))
    assert isinstance(result, M.MethodResult)
    assert result.model is not model
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{name} changed the input ({k})"
    assert result.seconds > 0 and result.backward_passes > 0
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    ev = evaluate(result.model, tiny_dataset, [0], splits=("test",))
    assert 0 <= ev["A_R"] <= 100 and 0 <= ev["E_F"] <= 100
    if name.startswith("mnemonic"):
        assert result.backward_passes == len(codes)


def test_selection_uses_validation_and_forgets(tiny_trained, tiny_dataset, request_data):
    model, codes = tiny_trained
    result = M.unlearn("finetune", model, codes, [0], request_data, seed=0, epochs=2)
    assert len(result.search) == 4 and result.chosen["lr"] in (0.01, 0.05)
    best = max(s["val_score"] for s in result.search)
    assert M.val_score(result.model, request_data, [0]) == pytest.approx(best)
    ng = M.unlearn("neggrad", model, codes, [0], request_data, seed=0, epochs=3, lrs=(0.1,))
    assert ng.chosen["lr"] == 0.1 and 1 <= ng.chosen["epochs"] <= 3 and len(ng.search) <= 3


def test_data_free_and_bad_input(tiny_trained):
    model, codes = tiny_trained
    result = M.unlearn("mnemonic_paper", model, codes, [1], None)
    assert result.chosen == {"lambda1": 1e-3, "lambda2": 10.0, "step": "paper"}
    with pytest.raises(ConfigError):
        M.unlearn("finetune", model, codes, [1], None)
    with pytest.raises(ConfigError):
        M.unlearn("no-such-method", model, codes, [1], None)
    with pytest.raises(ConfigError):
        M.unlearn("mnemonic_paper", model, codes, [7], None)


def test_linear_fisher_matches_reference(tiny_trained, tiny_dataset):
    from mnemonic_mu.algorithms.fisher import data_fisher

    model, _ = tiny_trained
    x, y = tiny_dataset.x_train[:50], tiny_dataset.y_train[:50]
    fast, ref = F.linear_fisher(model, x, y, batch_size=16), data_fisher(model, x, y)
    assert set(fast) == set(ref)
    for n in ref:
        torch.testing.assert_close(fast[n], ref[n], rtol=1e-4, atol=1e-10)
    with pytest.raises(ConfigError):
        F.sample_fisher(model, x[:0], y[:0])


def test_a_fixed_lambda_variant_is_the_row_mnemonics_step(tiny_trained):
    """One path: the baselines mnemonic_calibrated / mnemonic_paper (default settings) and the row
    ``mnemonic`` (pipeline.forget_step) with the same step and lambdas give the same weights, to the bit."""
    from mnemonic_mu import pipeline
    from mnemonic_mu.settings import Settings

    model, codes = tiny_trained
    moved = []
    for name, step in (("mnemonic_calibrated", "calibrated"), ("mnemonic_paper", "paper")):
        entry = M.METHODS[name]
        s = Settings(step=step, lambda1=entry.fixed["lambda1"], lambda2=entry.fixed["lambda2"])
        for forget_classes in ([0], [1], [2], [3], [1, 3]):
            row = pipeline.forget_step(s, model, codes, forget_classes, repeats=1)
            result = M.unlearn(name, model, codes, forget_classes, None)
            assert result.chosen == {"lambda1": s.lambda1, "lambda2": s.lambda2, "step": step}
            assert result.info["sign"] == row.record.sign and result.info["scale"] == row.record.scale
            new, ref = dict(result.model.named_parameters()), dict(row.model.named_parameters())
            assert set(new) == set(ref)
            for n, p in ref.items():
                assert torch.equal(new[n], p), f"{name} and the row mnemonic differ at {n} ({forget_classes})"
            moved.append(any(not torch.equal(p, model.get_parameter(n)) for n, p in ref.items()))
    assert any(moved)  # not only unchanged models compared


# What each level of SEES does not read: the parts of UnlearnData (and of its dataset) a method of
# that level must give the same model without.
UNSEEN = {
    "nothing": {"forget", "retain", "val"},
    "validation split": {"forget", "retain"},
    "forget samples": {"retain"},
    "retain samples": {"forget"},
    "forget and retain samples": set(),
}


def _blind(data: M.UnlearnData, unseen: set, forget_classes) -> M.UnlearnData:
    """``data`` with the inputs of every part in ``unseen`` replaced by noise and their labels shuffled
    (the dataset's copies too; its train labels stay, so retrain still excludes the same samples)."""
    gen = torch.Generator().manual_seed(123)

    def noise(x):
        return torch.rand(x.shape, generator=gen) * 3 - 1

    def shuffled(y):
        return y[torch.randperm(len(y), generator=gen)]

    changes: dict = {}
    ds = data.dataset
    x_train = ds.x_train.clone()
    forget_rows = torch.isin(ds.y_train, torch.tensor(forget_classes))
    for part, rows in (("forget", forget_rows), ("retain", ~forget_rows)):
        if part in unseen:
            x, y = getattr(data, f"x_{part}"), getattr(data, f"y_{part}")
            changes |= {f"x_{part}": noise(x), f"y_{part}": shuffled(y)}
            x_train[rows] = noise(x_train[rows])
    ds_changes = {"x_train": x_train}
    if "val" in unseen:
        changes |= {"x_val": noise(data.x_val), "y_val": shuffled(data.y_val)}
        ds_changes |= {"x_val": changes["x_val"], "y_val": changes["y_val"]}
    return dataclasses.replace(data, **changes, dataset=dataclasses.replace(ds, **ds_changes))


@pytest.mark.parametrize("name", list(M.METHODS))
def test_a_method_sees_what_its_entry_says(name, tiny_trained, request_data):
    """The registry's ``sees`` is true: hiding what a method does not see (noise instead of samples)
    leaves its model the same to the bit."""
    model, codes = tiny_trained
    entry = M.METHODS[name]
    assert entry.sees in M.SEES and UNSEEN.keys() == M.SEES.keys()
    unseen = UNSEEN[entry.sees]
    blind = _blind(request_data, unseen, [0])
    assert not torch.equal(blind.dataset.x_train, request_data.dataset.x_train) or not unseen
    seen = M.unlearn(name, model, codes, [0], request_data, seed=0, **FAST.get(name, {}))
    hidden = M.unlearn(name, model, codes, [0], blind, seed=0, **FAST.get(name, {}))
    for (n, p), q in zip(seen.model.named_parameters(), hidden.model.parameters()):
        assert torch.equal(p, q), f"{name} read data it does not see ({entry.sees}): {n} differs"
    assert seen.chosen == hidden.chosen
