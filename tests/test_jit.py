"""JiT (algorithms/jit.py): the Lipschitz ratio on hand-made outputs, the loss of linear models
whose ratio is known, one SGD step against its gradient written out, no change at lr 0, no
label or retain sample read, and what it does on digits."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

from mnemonic_mu.algorithms import baselines as B
from mnemonic_mu.algorithms.jit import jit, jit_epoch, lipschitz_loss, lipschitz_ratio
from mnemonic_mu.algorithms.method_api import UnlearnData
from mnemonic_mu.algorithms.methods import METHODS, unlearn
from mnemonic_mu.algorithms.models import build_model
from mnemonic_mu.algorithms.train import TrainConfig, train_model
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.io.data import load_dataset

X = torch.tensor([[1.0, 0.0], [0.5, 2.0], [-1.0, 1.5], [2.0, -1.0], [0.0, -0.5]])
Y = torch.tensor([0, 1, 2, 0, 1])
W = torch.tensor([[0.7, -1.2], [-0.4, 0.9], [0.2, 0.3]])


def linear(weight: torch.Tensor, bias: bool = True) -> nn.Linear:
    m = nn.Linear(weight.shape[1], weight.shape[0], bias=bias)
    with torch.no_grad():
        m.weight.copy_(weight)
        if bias:
            m.bias.copy_(torch.arange(weight.shape[0], dtype=torch.float32))
    return m


def test_lipschitz_ratio_on_hand_made_outputs():
    """Sample 0: ||(0,0) - (3,4)|| / ||(1,0)|| = 5 and ||(0,0) - (0,1)|| / ||(0,2)|| = 0.5;
    sample 1: ||(1,1) - (1,1)|| / ||(0,5)|| = 0 and ||(1,1) - (4,5)|| / ||(3,4)|| = 1.  Mean 6.5 / 4."""
    out = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    out_noisy = torch.tensor([[[3.0, 4.0], [0.0, 1.0]], [[1.0, 1.0], [4.0, 5.0]]])
    noise = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[0.0, 5.0], [3.0, 4.0]]])
    assert lipschitz_ratio(out, out_noisy, noise).item() == 1.625
    # inputs of any shape: the noise norm is over all of a copy's entries
    assert lipschitz_ratio(out, out_noisy, noise.view(2, 2, 1, 2)).item() == 1.625
    with pytest.raises(ConfigError, match="out_noisy must be"):
        lipschitz_ratio(out, out_noisy[:1], noise)


def test_lipschitz_loss_of_a_scaled_rotation_is_its_scale():
    """f(x) = 3 R x + b with R a rotation: ||f(x) - f(x')|| = 3 ||x - x'|| for every draw."""
    c, s = math.cos(0.3), math.sin(0.3)
    m = linear(3 * torch.tensor([[c, -s], [s, c]]))
    for sigma in (0.01, 0.5, 2.0):
        loss = lipschitz_loss(m, X, sigma, 7, torch.Generator().manual_seed(1))
        assert loss.item() == pytest.approx(3.0, rel=1e-5)


def test_lipschitz_loss_draws_its_noise_from_the_generator():
    """The loss of f(x) = W x + b recomputed sample by sample from the same draws."""
    m, sigma, n = linear(W), 0.3, 4
    loss = lipschitz_loss(m, X, sigma, n, torch.Generator().manual_seed(2))
    noise = torch.randn((len(X), n, 2), generator=torch.Generator().manual_seed(2)) * sigma
    ratios = [
        float(torch.linalg.vector_norm(W @ noise[b, j]) / torch.linalg.vector_norm(noise[b, j]))
        for b in range(len(X))
        for j in range(n)
    ]
    assert loss.item() == pytest.approx(sum(ratios) / len(ratios), rel=1e-5)


def test_jit_at_learning_rate_zero_leaves_the_model_unchanged():
    m = build_model("mlp", (1, 2, 2), 3, seed=0)
    before = copy.deepcopy(m.state_dict())
    x = torch.rand(6, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    passes = jit_epoch(m, torch.optim.SGD(m.parameters(), lr=0.0), x, 0.5, 25, 1, torch.Generator().manual_seed(0))
    assert passes == 6 * 26
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_one_jit_step_by_hand():
    """f(x) = W x + b: d/dW ||W xi|| / ||xi|| = (W xi) xi^T / (||W xi|| ||xi||); b drops out of
    f(x) - f(x'), so it stays.  One batch holding every sample (the batch order, then the noise,
    drawn from the generator seeded by ``seed``), plain SGD: W - lr * the mean of those."""
    m, sigma, n, lr = linear(W), 0.4, 3, 0.2
    d = UnlearnData(X[Y != 0], Y[Y != 0], X, Y, X, Y, num_classes=3)
    result = jit(m, None, [0], d, seed=5, sigmas=(sigma,), lrs=(lr,), n_perturb=n, batch_size=8)
    assert result.chosen == {"sigma": sigma, "lr": lr, "epochs": 1}
    assert result.backward_passes == len(X) * (n + 1)
    gen = torch.Generator().manual_seed(5)
    torch.randperm(len(X), generator=gen)  # the batch order (the loss is a mean: order-free)
    noise = torch.randn((len(X), n, 2), generator=gen) * sigma
    grad = torch.zeros_like(W)
    for xi in noise.reshape(-1, 2):
        grad += torch.outer(W @ xi, xi) / (torch.linalg.vector_norm(W @ xi) * torch.linalg.vector_norm(xi))
    expected = W - lr * grad / (len(X) * n)
    torch.testing.assert_close(result.model.weight.detach(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.model.bias.detach(), m.bias.detach())  # no weight decay, no step on b


def test_jit_reads_no_label_and_refuses_bad_grids():
    m = build_model("mlp", (1, 2, 1), 3, seed=0)
    x = X.view(5, 1, 2, 1)
    d = UnlearnData(x[Y != 0], Y[Y != 0], x[Y == 0], Y[Y == 0], x, Y, num_classes=3)
    relabelled = dataclasses.replace(d, y_forget=torch.tensor([2, 1]), y_retain=torch.tensor([0, 0, 2]))
    a = jit(m, None, [0], d, sigmas=(0.5,), lrs=(0.1,))
    b = jit(m, None, [0], relabelled, sigmas=(0.5,), lrs=(0.1,))
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    for bad in ({"sigmas": (), "lrs": (0.1,)}, {"sigmas": (0.0,), "lrs": (0.1,)}, {"sigmas": (0.5,), "lrs": ()}):
        with pytest.raises(ConfigError, match="jit needs a non-empty grid"):
            jit(m, None, [0], d, **bad)
    with pytest.raises(ConfigError, match="n_perturb and batch_size"):
        jit(m, None, [0], d, sigmas=(0.5,), lrs=(0.1,), n_perturb=0)


def test_the_entry():
    entry = METHODS["jit"]
    assert entry.sees == "forget samples" and entry.grid == {"sigmas": (0.5, 0.8), "lrs": (3e-4, 1.5)}
    assert entry.arguments() == {"sigmas": (0.5, 0.8), "lrs": (3e-4, 1.5)}  # N, epochs and batch: the function's


@pytest.fixture(scope="module")
def digits_mlp():
    """An MLP trained on digits without codes: 12 epochs of 20 steps (240 steps)."""
    ds = load_dataset("digits", split_seed=0)
    model = build_model("mlp", ds.input_shape, ds.num_classes, seed=0)
    cfg = TrainConfig(epochs=12, batch_size=64, lr=0.05, t_mix=0.0, seed=0, eval_every=0)
    train_model(model, ds, torch.zeros(ds.num_classes, *ds.input_shape), cfg)
    return ds, model


def test_on_digits_jit_smooths_the_forget_samples_and_the_rule_refuses_the_collapse(digits_mlp):
    """What JiT does on digits, class 0 (its ~125 forget samples, one step each): at the grid's
    eta 1.5 one epoch cuts the forget samples' Lipschitz ratio below a tenth and the MLP collapses
    (validation A_R under 30 %, i.e. it forgets every class); at eta 3e-4 the ratio moves by under
    1 % and so does the model's accuracy.  The selection rule therefore takes a 3e-4 candidate,
    within the retain budget."""
    ds, model = digits_mlp
    data = UnlearnData.from_dataset(ds, [0])

    def ratio(m):
        with torch.no_grad():
            return lipschitz_loss(m, data.x_forget, 0.5, 25, torch.Generator().manual_seed(9)).item()

    result = unlearn("jit", model, None, [0], data, seed=0)
    assert len(result.search) == 4 and result.backward_passes == 4 * len(data.x_forget) * 26
    for s in result.search:
        if s["lr"] == 1.5:
            assert s["val_A_R"] < 30.0 and s["tier"] == "least damage", s
        else:
            assert abs(s["val_A_R"] - result.info["val_A_R_original"]) < 2.0, s
    assert result.chosen["lr"] == 3e-4 and result.info["selection"] == "retain budget"
    assert abs(ratio(result.model) / ratio(model) - 1) < 0.01
    collapsed = copy.deepcopy(model)
    jit_epoch(
        collapsed,
        torch.optim.SGD(collapsed.parameters(), lr=1.5),
        data.x_forget,
        0.5,
        25,
        1,
        torch.Generator().manual_seed(0),
    )
    assert ratio(collapsed) < 0.1 * ratio(model)
    scores = [(s["val_A_R"], s["val_E_F"]) for s in result.search]
    assert result.search[B.Selection().choose(scores, result.info["val_A_R_original"])]["lr"] == 3e-4
