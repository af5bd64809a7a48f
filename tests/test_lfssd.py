"""Loss-Free SSD (algorithms/lfssd.py): its label-free importance against gradients computed by
hand on linear models, SSD's dampening of those importances, labels never read, and what it does
on digits."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from mnemonic_mu.algorithms import baselines as B
from mnemonic_mu.algorithms.lfssd import lfssd, output_norm_sensitivity
from mnemonic_mu.algorithms.method_api import UnlearnData
from mnemonic_mu.algorithms.methods import METHODS, unlearn
from mnemonic_mu.algorithms.models import build_model
from mnemonic_mu.algorithms.train import TrainConfig, train_model
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.io.data import load_dataset


class TwoLinear(nn.Module):
    """f(x) = head(fc1(x)): 2 inputs, 2 hidden units, 3 outputs, no activation."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 2)
        self.head = nn.Linear(2, 3)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, -0.5], [0.3, 0.8]]))
            self.fc1.bias.copy_(torch.tensor([0.1, -0.2]))
            self.head.weight.copy_(torch.tensor([[0.7, -1.2], [-0.4, 0.9], [0.2, 0.3]]))
            self.head.bias.copy_(torch.tensor([0.05, -0.1, 0.0]))

    def forward(self, x):
        return self.head(self.fc1(x))


X = torch.tensor([[1.0, 0.0], [0.5, 2.0], [-1.0, 1.5], [2.0, -1.0], [0.0, -0.5]])
Y = torch.tensor([0, 1, 2, 0, 1])


def sq_norm_grads_by_hand(m: TwoLinear, x: torch.Tensor) -> dict:
    """Gradient of mean_i ||f(x_i)||^2 for the two linear layers, by the chain rule written out:
    d/df = 2 f / B, then back through head (W2) and fc1."""
    with torch.no_grad():
        h = x @ m.fc1.weight.T + m.fc1.bias
        f = h @ m.head.weight.T + m.head.bias
        g = 2 * f / len(x)  # d loss / d f
        d = g @ m.head.weight  # d loss / d h
        return {"fc1.weight": d.T @ x, "fc1.bias": d.sum(0), "head.weight": g.T @ h, "head.bias": g.sum(0)}


def by_hand(m: TwoLinear, x: torch.Tensor, bs: int) -> dict:
    """LFSSD's importance by hand: the mean over in-order mini-batches of |gradient|."""
    per = [sq_norm_grads_by_hand(m, x[i : i + bs]) for i in range(0, len(x), bs)]
    return {n: sum(p[n].abs() for p in per) / len(per) for n in per[0]}


def test_output_norm_sensitivity_of_one_linear_unit_by_hand():
    """f(x) = x1 + 2 x2 + 0.5 on x = (1, 1), (2, 0) | (0, -1) (batches of 2): f = 3.5, 2.5 | -1.5.
    Batch 1: d/dW mean f^2 = (2/2)(3.5 (1, 1) + 2.5 (2, 0)) = (8.5, 3.5), d/db = 3.5 + 2.5 = 6;
    batch 2: 2 (-1.5)(0, -1) = (0, 3), d/db = -3.  Mean of the absolute values: (4.25, 3.25), 4.5."""
    m = nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.0, 2.0]]))
        m.bias.copy_(torch.tensor([0.5]))
    imp = output_norm_sensitivity(m, torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, -1.0]]), batch_size=2)
    assert imp["weight"].tolist() == [[4.25, 3.25]]
    assert imp["bias"].tolist() == [4.5]


@pytest.mark.parametrize("bs", [1, 2, 5])
def test_output_norm_sensitivity_is_the_mean_absolute_minibatch_gradient(bs):
    m = TwoLinear()
    model_mode = m.training
    imp = output_norm_sensitivity(m, X, batch_size=bs)
    expected = by_hand(m, X, bs)
    assert imp.keys() == expected.keys()
    for n in imp:
        torch.testing.assert_close(imp[n], expected[n], rtol=1e-5, atol=1e-7)
    assert m.training == model_mode  # the mode is restored


def test_lfssd_dampens_with_ssds_step_on_these_importances():
    """[]_D over retain + forget (in that order), []_Df over forget, then SSD's dampening."""
    m = TwoLinear()
    x_r, x_f = X[Y != 0], X[Y == 0]
    imp_full, imp_forget = by_hand(m, torch.cat([x_r, x_f]), 2), by_hand(m, x_f, 2)
    d = UnlearnData(x_r, Y[Y != 0], x_f, Y[Y == 0], X, Y, num_classes=3)
    result = lfssd(m, None, [0], d, alphas=(1.0,), lambdas=(0.5,), batch_size=2)
    assert result.chosen == {"alpha": 1.0, "lambda": 0.5}
    assert result.backward_passes == len(x_f) + len(X)
    dampened = 0
    for n, p in m.named_parameters():
        select = imp_forget[n] > imp_full[n]
        beta = torch.where(select, (0.5 * imp_full[n] / imp_forget[n]).clamp(max=1.0), torch.ones_like(p))
        torch.testing.assert_close(result.model.get_parameter(n).detach(), p.detach() * beta, rtol=1e-5, atol=1e-7)
        dampened += int(select.sum())
    assert 0 < dampened < 17 and result.info["dampened"] == dampened


def test_lfssd_never_reads_a_training_label():
    m = TwoLinear()
    d = UnlearnData(X[Y != 0], Y[Y != 0], X[Y == 0], Y[Y == 0], X, Y, num_classes=3)
    relabelled = dataclasses.replace(d, y_retain=torch.tensor([2, 0, 1]), y_forget=torch.tensor([2, 1]))
    grid = METHODS["lfssd"].grid
    a, b = lfssd(m, None, [0], d, **grid), lfssd(m, None, [0], relabelled, **grid)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    assert a.chosen == b.chosen and [s["val_score"] for s in a.search] == [s["val_score"] for s in b.search]


def test_the_entry_searches_ssds_grid_and_bad_grids_are_refused():
    entry = METHODS["lfssd"]
    assert entry.grid == METHODS["ssd"].grid and entry.sees == "forget and retain samples"
    assert "labels never read" in entry.description
    m = TwoLinear()
    d = UnlearnData(X[Y != 0], Y[Y != 0], X[Y == 0], Y[Y == 0], X, Y, num_classes=3)
    result = lfssd(m, None, [0], d, **entry.grid)
    assert (result.search[0]["alpha"], result.search[0]["lambda"]) == (10.0, 1.0) and len(result.search) == 20
    for bad in ({"alphas": (), "lambdas": (1.0,)}, {"alphas": (1.0,), "lambdas": (0.0,)}):
        with pytest.raises(ConfigError, match="lfssd needs a non-empty grid"):
            lfssd(m, None, [0], d, **bad)
    with pytest.raises(ConfigError, match="at least one sample"):
        output_norm_sensitivity(m, X[:0])


@pytest.fixture(scope="module")
def digits_mlp():
    """An MLP trained on digits without codes: 12 epochs of 20 steps (240 steps)."""
    ds = load_dataset("digits", split_seed=0)
    model = build_model("mlp", ds.input_shape, ds.num_classes, seed=0)
    cfg = TrainConfig(epochs=12, batch_size=64, lr=0.05, t_mix=0.0, seed=0, eval_every=0)
    train_model(model, ds, torch.zeros(ds.num_classes, *ds.input_shape), cfg)
    return ds, model


def test_on_digits_lfssd_can_forget_and_the_selection_keeps_the_retain_budget(digits_mlp):
    """What LFSSD does on digits, class 0: some candidate of SSD's grid forgets the class on the
    validation split (E_F >= 99), but on this small model those candidates lose more than 5 points
    of A_R, so the selection rule keeps a candidate within the retain budget; the chosen one is the
    rule's choice among the search."""
    ds, model = digits_mlp
    data = UnlearnData.from_dataset(ds, [0])
    result = unlearn("lfssd", model, None, [0], data, seed=0)
    assert max(s["val_E_F"] for s in result.search) >= 99.0
    scores = [(s["val_A_R"], s["val_E_F"]) for s in result.search]
    pick = result.search[B.Selection().choose(scores, result.info["val_A_R_original"])]
    assert result.chosen == {"alpha": pick["alpha"], "lambda": pick["lambda"]}
    assert result.info["val_A_R"] >= result.info["val_A_R_original"] - 5.0
    assert result.backward_passes == len(data.x_forget) + len(ds.x_train)
