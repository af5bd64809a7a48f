"""SCRUB (Kurmanji et al., NeurIPS 2023): its tempered distillation KL and step losses on hand-made
logits, its max/min schedule, two epochs of its steps against a hand computation, its grid and
selection, and a smoke test on digits (it forgets the class, the remaining accuracy holds)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from mnemonic_mu import pipeline
from mnemonic_mu.algorithms import scrub as S
from mnemonic_mu.algorithms.baselines import Selection
from mnemonic_mu.algorithms.method_api import UnlearnData
from mnemonic_mu.algorithms.methods import METHODS, unlearn
from mnemonic_mu.algorithms.metrics import forgetting_scores, predict_logits
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.settings import Settings

LN2, LN3 = math.log(2.0), math.log(3.0)


# --------------------------------------------------------------------------
# The losses on hand-made logits


def test_distill_kl_by_hand_temperature_included():
    """T = 2.  Row 1: teacher logits (0, 2 ln 3) -> softmax of logits / T = (1/4, 3/4); student
    (0, 0) -> (1/2, 1/2): KL(teacher || student) = 1/4 ln(1/2) + 3/4 ln(3/2) = 3/4 ln 3 - ln 2
    (the other direction, ln 2 - 1/2 ln 3, differs).  Row 2: the student equals the teacher, KL 0.
    The loss is T^2 times the mean over the rows."""
    teacher = torch.tensor([[0.0, 2 * LN3], [1.0, -1.0]])
    student = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    row1 = 0.75 * LN3 - LN2
    expected = 4.0 * (row1 + 0.0) / 2
    assert S.distill_kl(student, teacher, 2.0).item() == pytest.approx(expected, rel=1e-6)
    assert S.distill_kl(teacher, student, 2.0).item() == pytest.approx(4.0 * (LN2 - 0.5 * LN3) / 2, rel=1e-6)
    # T = 1: no scaling; the same row reads (1/10, 9/10) against (1/2, 1/2)
    kl_t1 = 0.1 * math.log(0.2) + 0.9 * math.log(1.8)
    assert S.distill_kl(student[:1], teacher[:1], 1.0).item() == pytest.approx(kl_t1, rel=1e-6)
    assert S.distill_kl(teacher, teacher, 4.0).item() == pytest.approx(0.0, abs=1e-7)


def test_step_losses_by_hand():
    """max-step: -KL; min-step: alpha KL + gamma CE, the CE on the untempered logits."""
    teacher = torch.tensor([[0.0, 2 * LN3]])
    student = torch.tensor([[0.0, 0.0]])
    kl = 4.0 * (0.75 * LN3 - LN2)  # T = 2
    assert S.max_step_loss(student, teacher, 2.0).item() == pytest.approx(-kl, rel=1e-6)
    y = torch.tensor([1])
    ce = LN2  # student (0, 0): p(y) = 1/2
    got = S.min_step_loss(student, teacher, y, alpha=0.25, gamma=0.5, temperature=2.0).item()
    assert got == pytest.approx(0.25 * kl + 0.5 * ce, rel=1e-6)
    assert S.min_step_loss(student, teacher, y, 0.0, 1.0, 2.0).item() == pytest.approx(LN2, rel=1e-6)


def test_max_steps_only_in_the_first_msteps_epochs_and_the_lr_drops_after_its_epoch():
    assert [S.epoch_phases(e, 2) for e in (1, 2, 3, 4)] == [("max", "min"), ("max", "min"), ("min",), ("min",)]
    assert S.epoch_phases(1, 0) == ("min",)
    assert [S.epoch_lr(0.01, e, 3) for e in (1, 3, 4, 5)] == pytest.approx([0.01, 0.01, 0.001, 0.001])
    assert S.epoch_lr(0.01, 9, None) == 0.01
    with pytest.raises(ConfigError, match="from 1"):
        S.epoch_phases(0, 2)


# --------------------------------------------------------------------------
# Two epochs of steps against a hand computation


def _linear() -> nn.Linear:
    m = nn.Linear(2, 3)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[0.7, -1.2], [-0.4, 0.9], [0.2, 0.3]]))
        m.bias.copy_(torch.tensor([0.05, -0.1, 0.0]))
    return m


X_F = torch.tensor([[1.0, 0.0], [2.0, -1.0]])
Y_F = torch.tensor([0, 0])
X_R = torch.tensor([[0.5, 2.0], [-1.0, 1.5], [0.0, -0.5]])
Y_R = torch.tensor([1, 2, 1])


def _data(x_f=X_F, y_f=Y_F, x_r=X_R, y_r=Y_R) -> UnlearnData:
    return UnlearnData(x_r, y_r, x_f, y_f, torch.cat([x_r, x_f]), torch.cat([y_r, y_f]), num_classes=3)


def _kl_by_hand(s, t, temp):
    p_t = torch.exp(t / temp) / torch.exp(t / temp).sum(1, keepdim=True)
    p_s = torch.exp(s / temp) / torch.exp(s / temp).sum(1, keepdim=True)
    return temp**2 * (p_t * (p_t.log() - p_s.log())).sum(1).mean()


def _ce_by_hand(s, y):
    p = torch.exp(s) / torch.exp(s).sum(1, keepdim=True)
    return -p[torch.arange(len(y)), y].log().mean()


def test_two_epochs_of_max_and_min_steps_by_hand():
    """msteps 2, one batch per pass: max, min (lr), then max, min (lr x 0.1, the decay after
    epoch 1); SGD with momentum: buf = g (first step), buf = mu buf + g, w -= lr buf, with
    g = grad loss + wd w.  The first max-step is weight decay alone: at the teacher the KL's
    gradient is zero."""
    lr, wd, mu, temp, alpha, gamma = 0.5, 5e-4, 0.9, 2.0, 0.3, 0.8
    model = _linear()
    teacher = copy.deepcopy(model).eval()
    run = S.ScrubRun(
        teacher,
        _data(),
        lr,
        2,
        alpha=alpha,
        gamma=gamma,
        temperature=temp,
        forget_batch_size=8,
        retain_batch_size=8,
        lr_decay_after=1,
    )
    student = copy.deepcopy(model).train()
    opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=mu, weight_decay=wd)
    gen = torch.Generator().manual_seed(0)
    passes = run(student, opt, gen) + run(student, opt, gen)
    assert passes == 2 * (len(Y_F) + len(Y_R))
    assert [(e["max_steps"], e["min_steps"]) for e in run.log] == [(1, 1), (1, 1)]

    with torch.no_grad():
        t_f, t_r = teacher(X_F), teacher(X_R)
    w, b = model.weight.detach().clone(), model.bias.detach().clone()
    buf: list[torch.Tensor] | None = None
    for step, (kind, step_lr) in enumerate([("max", lr), ("min", lr), ("max", lr * 0.1), ("min", lr * 0.1)]):
        w_, b_ = w.clone().requires_grad_(), b.clone().requires_grad_()
        if kind == "max":
            loss = -_kl_by_hand(X_F @ w_.T + b_, t_f, temp)
        else:
            s = X_R @ w_.T + b_
            loss = alpha * _kl_by_hand(s, t_r, temp) + gamma * _ce_by_hand(s, Y_R)
        g_w, g_b = torch.autograd.grad(loss, (w_, b_))
        if step == 0:
            assert float(g_w.abs().max()) < 1e-6 and float(g_b.abs().max()) < 1e-6
        g = [g_w + wd * w, g_b + wd * b]
        buf = g if buf is None else [mu * m + gi for m, gi in zip(buf, g)]
        w, b = w - step_lr * buf[0], b - step_lr * buf[1]
    torch.testing.assert_close(student.weight.detach(), w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(student.bias.detach(), b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(student.weight.detach(), model.weight.detach())


# --------------------------------------------------------------------------
# The method: schedule, grid, selection, bad input


def _small_data():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(12, 2, generator=gen)
    y = torch.tensor([0] * 5 + [1] * 4 + [2] * 3)
    return _data(x[:5], y[:5], x[5:], y[5:])


def test_scrub_takes_max_steps_in_the_first_msteps_epochs_only():
    """5 forget samples in batches of 2 (3 max-steps), 7 retain samples in batches of 3 (3
    min-steps); max epochs 2 of 4, and 0 (no max-step at all)."""
    common = dict(alpha=0.001, gamma=0.99, temperature=4.0, forget_batch_size=2, retain_batch_size=3)
    result = S.scrub(_linear(), None, [0], _small_data(), lrs=(0.01,), msteps=(2, 0), epochs=4, **common)
    steps = result.info["steps"]
    assert [(e["msteps"], e["epoch"], e["max_steps"], e["min_steps"]) for e in steps] == [
        (2, 1, 3, 3),
        (2, 2, 3, 3),
        (2, 3, 0, 3),
        (2, 4, 0, 3),
        (0, 1, 0, 3),
        (0, 2, 0, 3),
        (0, 3, 0, 3),
        (0, 4, 0, 3),
    ]
    assert result.backward_passes == (4 * 7 + 2 * 5) + 4 * 7


def test_scrub_chooses_by_the_selection_rule_over_its_grid():
    result = S.scrub(
        _linear(),
        None,
        [0],
        _small_data(),
        lrs=(0.01, 0.5),
        msteps=(1, 2),
        epochs=3,
        alpha=0.001,
        gamma=0.99,
        temperature=4.0,
        forget_batch_size=2,
        retain_batch_size=3,
    )
    assert [(e["lr"], e["msteps"], e["epochs"]) for e in result.search] == [
        (lr, m, e) for lr in (0.01, 0.5) for m in (1, 2) for e in (1, 2, 3)
    ]
    scores = [(e["val_A_R"], e["val_E_F"]) for e in result.search]
    pick = result.search[Selection().choose(scores, result.info["val_A_R_original"])]
    assert result.chosen == {k: pick[k] for k in ("lr", "msteps", "epochs")}
    assert result.info["selection"] == pick["tier"]


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"temperature": 0.0}, "temperature must be positive"),
        ({"msteps": (-1,)}, "msteps"),
        ({"msteps": (1.5,)}, "msteps"),
        ({"lrs": ()}, "non-empty lrs"),
        ({"alpha": -1.0}, "alpha and gamma"),
        ({"forget_batch_size": 0}, "batch sizes"),
    ],
)
def test_scrub_bad_input_is_one_clear_error(bad, match):
    args = dict(
        lrs=(0.01,),
        msteps=(2,),
        epochs=1,
        alpha=0.001,
        gamma=0.99,
        temperature=4.0,
        forget_batch_size=2,
        retain_batch_size=3,
    )
    with pytest.raises(ConfigError, match=match):
        S.scrub(_linear(), None, [0], _small_data(), **(args | bad))


def test_the_registry_entry_holds_the_papers_values():
    m = METHODS["scrub"]
    assert m.sees == "forget and retain samples" and m.input_model == "original"
    assert dict(m.fixed) == {
        "alpha": 0.001,
        "gamma": 0.99,
        "temperature": 4.0,
        "forget_batch_size": 32,
        "retain_batch_size": 128,
        "lr_decay_after": 3,
    }
    assert m.grid["lrs"][0] == 5e-4 and m.grid["msteps"] == (2, 3) and m.grid["epochs"] == 5


# --------------------------------------------------------------------------
# Smoke test on digits


@pytest.mark.slow  # a 30-epoch digits model, then 8 runs x 5 epochs of SCRUB (about 2,000 steps)
def test_scrub_forgets_a_digits_class_and_keeps_the_rest(tmp_path):
    """The registry's SCRUB on the ci profile's digits MLP, class 0: the chosen model has forgotten
    the class on validation and on test (E_F >= 90 %) and kept the remaining accuracy within the
    selection rule's retain budget (5 points of the original's)."""
    s = Settings.from_profile("ci", cache_dir=str(tmp_path), threads=1, workers=1)
    dataset = pipeline.load_data(s)
    original = pipeline.train_models(s, dataset, ("original",))["original"][0]
    data = UnlearnData.from_dataset(dataset, [0], s.train_config())
    result = unlearn("scrub", original.model, original.codes, [0], data, seed=0)
    assert result.info["val_E_F"] >= 90.0
    assert result.info["val_A_R"] >= result.info["val_A_R_original"] - 5.0
    x_test, y_test = dataset.split("test")
    a_r0, _ = forgetting_scores(predict_logits(original.model, x_test), y_test, [0])
    a_r, e_f = forgetting_scores(predict_logits(result.model, x_test), y_test, [0])
    assert e_f >= 90.0, result.chosen
    assert a_r >= a_r0 - 5.0, (a_r, a_r0, result.chosen)
