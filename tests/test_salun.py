"""SalUn (Fan et al., ICLR 2024): the saliency mask against hand-made gradients (threshold, ratio,
ties, one threshold for the whole model), the forget gradient and the masked step against hand
computations, the weights outside the mask left exactly where they were, and a smoke test on digits."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnemonic_mu.algorithms import salun as S
from mnemonic_mu.algorithms.codes import generate_codes
from mnemonic_mu.algorithms.method_api import UnlearnData
from mnemonic_mu.algorithms.methods import METHODS
from mnemonic_mu.algorithms.metrics import evaluate
from mnemonic_mu.algorithms.models import build_model
from mnemonic_mu.algorithms.train import TrainConfig, train_model
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.io.data import load_dataset

# |g| = 0.1 0.4 0.3 | 0.2 0.0 0.3 0.5  (N = 7; the two 0.3 are one float; one gradient is exactly 0)
GRADS = {"a": torch.tensor([0.1, -0.4, 0.3]), "b": torch.tensor([[0.2, 0.0], [-0.3, 0.5]])}


def kept(mask) -> dict:
    return {n: m.tolist() for n, m in mask.items()}


@pytest.mark.parametrize(
    "ratio, expected",
    [
        # k = round(0.5 * 7) = 4 (3.5, half up): gamma = 0.3, the 4 largest |g| (signs ignored)
        (0.5, {"a": [False, True, True], "b": [[False, False], [True, True]]}),
        # k = round(0.25 * 7) = 2: gamma = 0.4
        (0.25, {"a": [False, True, False], "b": [[False, False], [False, True]]}),
        # k = round(0.4 * 7) = 3: gamma = 0.3, shared by two weights: both kept (4 > k)
        (0.4, {"a": [False, True, True], "b": [[False, False], [True, True]]}),
        # k = 7: gamma = 0, but the weight with a zero gradient is not salient (6 kept)
        (1.0, {"a": [True, True, True], "b": [[True, False], [True, True]]}),
        # k = round(0.01 * 7) = 0, at least 1: the largest |g| only
        (0.01, {"a": [False, False, False], "b": [[False, False], [False, True]]}),
    ],
)
def test_saliency_mask_by_hand(ratio, expected):
    mask = S.saliency_mask(GRADS, ratio)
    assert kept(mask) == expected
    assert all(m.dtype == torch.bool and m.shape == GRADS[n].shape for n, m in mask.items())


def test_saliency_mask_is_one_threshold_for_the_whole_model():
    """Half of all weights: both of the layer with the large gradients, none of the other (a
    per-layer rule would keep one of each)."""
    mask = S.saliency_mask({"big": torch.tensor([1.0, -2.0]), "small": torch.tensor([0.02, 0.01])}, 0.5)
    assert kept(mask) == {"big": [True, True], "small": [False, False]}


def test_salient_count_rounds_half_up_and_keeps_one():
    assert S.salient_count(7, 0.5) == 4  # 3.5 up
    assert S.salient_count(10, 0.3) == 3  # 0.3 * 10 = 3.0000000000000004 in floats: still 3
    assert S.salient_count(10, 0.7) == 7
    assert S.salient_count(3, 0.1) == 1  # 0.3 rounds to 0: at least one
    assert S.salient_count(1_000_000, 0.5) == 500_000


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5, math.nan])
def test_bad_ratio_is_one_clear_error(ratio):
    with pytest.raises(ConfigError, match="mask ratio"):
        S.saliency_mask(GRADS, ratio)


class Linear3(nn.Module):
    """logits = head(x): 2 inputs, 3 classes (9 parameters)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(2, 3)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[0.7, -1.2], [-0.4, 0.9], [0.2, 0.3]]))
            self.head.bias.copy_(torch.tensor([0.05, -0.1, 0.0]))

    def forward(self, x):
        return self.head(x)


X = torch.tensor([[1.0, 0.0], [0.5, 2.0], [-1.0, 1.5], [2.0, -1.0], [0.0, -0.5]])
Y = torch.tensor([0, 1, 2, 0, 1])


def test_forget_gradient_by_hand():
    """d mean CE / d W = (p - onehot)^T x / n, d / d b = sum(p - onehot) / n, in any chunking;
    the model's mode is restored."""
    m = Linear3().train()
    p = (X @ m.head.weight.detach().T + m.head.bias.detach()).softmax(1)
    d = (p - F.one_hot(Y, 3)) / len(Y)
    for batch_size in (2, 5, 100):
        g = S.forget_gradient(m, X, Y, batch_size)
        torch.testing.assert_close(g["head.weight"], d.T @ X, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(g["head.bias"], d.sum(0), rtol=1e-6, atol=1e-7)
    assert m.training
    with pytest.raises(ConfigError):
        S.forget_gradient(m, X[:0], Y[:0])


def test_masked_step_by_hand_and_unmasked_weights_do_not_move():
    """One masked SGD step from rest: a salient weight moves by -lr (g + wd w), the others not at all,
    and after many momentum steps the others are still the same floats (torch.equal)."""
    m = Linear3()
    w0, b0 = m.head.weight.detach().clone(), m.head.bias.detach().clone()
    mask = {
        "head.weight": torch.tensor([[True, False], [False, True], [False, False]]),
        "head.bias": torch.tensor([False, True, False]),
    }
    lr, wd = 0.1, 5e-4
    step = S.masked_step(mask, wd)
    opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9, weight_decay=0.0)
    p = (X @ w0.T + b0).softmax(1)
    d = (p - F.one_hot(Y, 3)) / len(Y)
    gw, gb = d.T @ X, d.sum(0)
    step(m, opt, F.cross_entropy(m(X), Y))
    want_w = torch.where(mask["head.weight"], w0 - lr * (gw + wd * w0), w0)
    want_b = torch.where(mask["head.bias"], b0 - lr * (gb + wd * b0), b0)
    torch.testing.assert_close(m.head.weight.detach(), want_w, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(m.head.bias.detach(), want_b, rtol=1e-6, atol=1e-7)
    for _ in range(20):
        step(m, opt, F.cross_entropy(m(X), (Y + 1) % 3))
    w, b = m.head.weight.detach(), m.head.bias.detach()
    assert torch.equal(w[~mask["head.weight"]], w0[~mask["head.weight"]])
    assert torch.equal(b[~mask["head.bias"]], b0[~mask["head.bias"]])
    assert not torch.equal(w[mask["head.weight"]], w0[mask["head.weight"]])
    assert not torch.equal(b[mask["head.bias"]], b0[mask["head.bias"]])


def test_salun_moves_only_the_chosen_mask(tiny_trained, tiny_dataset):
    """The whole method: every weight outside the chosen ratio's mask (recomputed from the input
    model) is the input's to the bit; inside it, weights moved; the grid is searched in order."""
    model, codes = tiny_trained
    data = UnlearnData.from_dataset(tiny_dataset, [1])
    result = METHODS["salun"](model, codes, [1], data, seed=0, epochs=2, lrs=(0.013, 0.05), mask_ratios=(0.5, 0.2))
    ratio = result.chosen["mask_ratio"]
    mask = S.saliency_mask(S.forget_gradient(model, data.x_forget, data.y_forget), ratio)
    assert result.info["salient_fraction"] == pytest.approx(ratio, abs=1e-3)
    moved = 0
    for (n, p), q in zip(result.model.named_parameters(), model.parameters()):
        assert torch.equal(p.detach()[~mask[n]], q.detach()[~mask[n]]), n
        moved += int((p.detach()[mask[n]] != q.detach()[mask[n]]).sum())
    assert moved > 0
    grid = [(s["mask_ratio"], s["lr"], s["epochs"]) for s in result.search]
    assert grid == [(r, lr, e) for r in (0.5, 0.2) for lr in (0.013, 0.05) for e in (1, 2)]
    assert {"selection", "val_A_R", "val_E_F"} <= set(result.info)
    n_f, n_epochs = len(data.y_forget), 4 * 2  # 4 runs x 2 epochs, each one pass over the forget samples
    assert result.backward_passes == n_f + n_epochs * 2 * n_f  # + as many retain samples


def test_registry_entry_starts_at_the_released_settings():
    entry = METHODS["salun"]
    assert entry.sees == "forget and retain samples" and entry.input_model == "original"
    assert entry.grid["mask_ratios"][0] == 0.5 and entry.grid["lrs"][0] == 0.013 and entry.grid["epochs"] == 10
    assert entry.function is S.salun and entry.source.startswith("Fan")
    with pytest.raises(ConfigError, match="mask ratio"):
        entry(nn.Linear(2, 3), None, [0], _toy_data(), mask_ratios=(0.5, 2.0))
    with pytest.raises(ConfigError, match="non-empty"):
        entry(nn.Linear(2, 3), None, [0], _toy_data(), lrs=())


def _toy_data() -> UnlearnData:
    return UnlearnData(X[1:], Y[1:], X[:1], Y[:1], X, Y, num_classes=3)


@pytest.mark.slow
def test_salun_forgets_a_digit_and_keeps_the_rest():
    """Smoke test on digits (an MLP trained 20 epochs, about 400 steps, then SalUn at its registry
    grid): the forget class's test accuracy falls to at most 10 % (E_F >= 90) and the remaining
    classes' test accuracy A_R stays within 5 points of the trained model's (the selection rule's
    retain budget; measured: E_F 100, A_R within 1.2 points for classes 0, 3, 8)."""
    torch.manual_seed(0)
    ds = load_dataset("digits", split_seed=0)
    codes = generate_codes(ds.num_classes, ds.input_shape, "uniform", seed=0)
    model = build_model("mlp", ds.input_shape, ds.num_classes, seed=0)
    cfg = TrainConfig(epochs=20, batch_size=64, lr=0.05, t_mix=0.1, seed=0)
    train_model(model, ds, codes, cfg)
    before = evaluate(model, ds, [3], splits=("test",))
    result = METHODS["salun"](model, codes, [3], UnlearnData.from_dataset(ds, [3], cfg), seed=0)
    after = evaluate(result.model, ds, [3], splits=("test",))
    assert before["E_F"] < 50  # the class was learnt
    assert after["E_F"] >= 90
    assert after["A_R"] >= before["A_R"] - 5


def test_the_docs_hyperparameters_are_the_registrys():
    """docs/baselines.md's SalUn table states the registry's grid, in its order."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "baselines.md").read_text()
    section = doc.split("## SalUn (`salun`)", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (mask ratio|lr|epochs) \| ([^|]*) \|", section, flags=re.M))
    grid = METHODS["salun"].grid

    def words(values) -> str:
        first, *rest = (f"{v:g}" for v in values)
        return f"first {first}, then {', '.join(rest)}"

    assert rows == {
        "mask ratio": words(grid["mask_ratios"]),
        "lr": words(grid["lrs"]),
        "epochs": f"1 .. {grid['epochs']}",
    }
