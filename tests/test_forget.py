import pytest
import torch

from mnemonic_mu.errors import ConfigError, ModelStateError
from mnemonic_mu.algorithms.fisher import code_fisher, mean_fisher
from mnemonic_mu.algorithms.forget import (
    Calibration,
    code_report,
    fisher_ratio,
    forget,
    layer_alphas,
    perturbed,
)
from mnemonic_mu.algorithms.metrics import evaluate


def test_ratio_guards_zero_nan_inf():
    tiny = torch.finfo(torch.float32).tiny
    f_f = {"w": torch.tensor([0.0, 10.0, float("nan"), 1.0, 4.0])}
    f_r = {"w": torch.tensor([0.0, 0.0, 1.0, float("nan"), 2.0])}
    eta = fisher_ratio(f_f, f_r)["w"]
    assert eta[0] == 1.0  # 0/0 -> floor/floor
    assert eta[2] == 0.0  # NaN -> 0
    assert eta[3] == 0.0  # x/NaN -> NaN -> 0
    assert eta[4] == 2.0
    # 10 / tiny overflows float32 -> +inf -> the largest finite value of the tensor (2.0)
    assert 10.0 / tiny > torch.finfo(torch.float32).max
    assert float(eta[1]) == 2.0
    assert torch.isfinite(eta).all()
    eta_floor = fisher_ratio(f_f, f_r, floor=1e-3)["w"]
    assert float(eta_floor[1]) == pytest.approx(10.0 / 1e-3)


def test_per_tensor_alpha():
    eta = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([1e6, 5.0]), "c": torch.zeros(3)}
    alpha = layer_alphas(eta, lambda1=1e-3, lambda2=10.0)
    assert alpha["a"] == 1e-3  # 10 / 2 = 5 > lambda1: lambda1 caps the gain
    assert alpha["b"] == pytest.approx(1e-5)  # 10 / 1e6: lambda2 caps the largest change
    assert alpha["c"] == 1e-3  # nothing stands out
    # the largest change in a tensor never exceeds lambda2
    assert float((alpha["b"] * eta["b"]).max()) == pytest.approx(10.0)


def test_forget_returns_new_model_and_record(tiny_trained, tiny_dataset):
    model, codes = tiny_trained
    before = {n: p.clone() for n, p in model.state_dict().items()}
    new, rec = forget(model, codes, [2], lambda1=1e-3, lambda2=10.0, fisher_method="loop", step="paper")
    for n, p in model.state_dict().items():
        assert torch.equal(p, before[n])  # input untouched
    assert new is not model
    assert rec.backward_passes == 4 and rec.sign in "+-" and rec.seconds > 0
    assert set(rec.alpha) == {n for n, _ in model.named_parameters()}
    # the step is exactly w + sign * alpha * eta of the code Fisher (Eq. 5-7)
    fis = code_fisher(model, codes)
    eta = fisher_ratio(fis[2], mean_fisher([fis[0], fis[1], fis[3]]))
    alpha = layer_alphas(eta, 1e-3, 10.0)
    sgn = 1.0 if rec.sign == "+" else -1.0
    for n, p in new.named_parameters():
        torch.testing.assert_close(p, dict(model.named_parameters())[n] + sgn * alpha[n] * eta[n])


def test_sign_is_chosen_on_codes(tiny_trained):
    model, codes = tiny_trained
    labels = torch.arange(4)
    for c in range(4):
        fis = code_fisher(model, codes)
        eta = fisher_ratio(fis[c], mean_fisher(fis[k] for k in range(4) if k != c))
        alpha = layer_alphas(eta, 1e-3, 10.0)
        score = {
            s: (lambda r: r["A_R"] + r["E_F"])(code_report(perturbed(model, eta, alpha, v), codes, labels, [c]))
            for s, v in (("+", 1.0), ("-", -1.0))
        }
        _, rec = forget(model, codes, [c], step="paper")
        assert rec.sign_tie == (score["+"] == score["-"])
        if not rec.sign_tie:
            assert score[rec.sign] > score["-" if rec.sign == "+" else "+"]


def test_tie_detected_and_reported(tiny_trained):
    model, codes = tiny_trained
    # a negligible step cannot change any code's prediction: both signs tie
    _, rec = forget(model, codes, [1], lambda1=1e-12, lambda2=1e-12, step="paper")
    assert rec.sign_tie
    assert any("tied" in w for w in rec.warnings)
    assert rec.forget_code_predicted  # and the forget code still predicts its class
    assert any("still predicted" in w for w in rec.warnings)


def test_multiple_forget_classes(tiny_trained, tiny_dataset):
    model, codes = tiny_trained
    new, rec = forget(model, codes, [3, 1], step="paper")
    assert rec.forget_classes == [1, 3]
    ev = evaluate(new, tiny_dataset, [1, 3])
    assert 0 <= ev["E_F"] <= 100 and 0 <= ev["A_R"] <= 100


def test_calibrated_step_forgets_the_codes(tiny_trained):
    model, codes = tiny_trained
    labels = torch.arange(4)
    for c in range(4):
        new, rec = forget(model, codes, [c], step="calibrated")
        rep = code_report(new, codes, labels, [c])
        if not rec.warnings:
            assert rep["forget_margin"] < 0 and rep["retain_margin"] > 0
            assert not rec.forget_code_predicted and rec.retain_codes_kept
        assert rec.step == "calibrated" and rec.scale >= 0


def test_sequential_multi_class_is_one_calibrated_step_per_class(tiny_trained):
    """Several classes: each part is the single-class calibrated step along f_c / f_R,
    applied to the previous part's model, with every Fisher taken from the input model."""
    model, codes = tiny_trained
    new, rec = forget(model, codes, [3, 1], step="calibrated")
    assert rec.multi == "sequential" and [p["class"] for p in rec.parts] == [1, 3]
    assert rec.backward_passes == 4 and rec.alpha == {}  # still one backward pass per class
    assert rec.sign == "".join(p["sign"] for p in rec.parts) and len(rec.sign) == 2
    assert rec.scale == max(p["scale"] for p in rec.parts) and min(p["scale"] for p in rec.parts) > 0
    fis = code_fisher(model, codes)
    f_r = mean_fisher([fis[0], fis[2]])  # the classes that stay, for both parts
    expect = model
    for part in rec.parts:
        eta = fisher_ratio(fis[part["class"]], f_r)
        alpha = layer_alphas(eta, 1e-3, 10.0)
        assert part["alpha"] == pytest.approx(alpha, rel=1e-4)
        expect = perturbed(expect, eta, alpha, 1.0 if part["sign"] == "+" else -1.0, part["scale"])
    for (n, p), q in zip(new.named_parameters(), expect.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    rep = code_report(new, codes, torch.arange(4), [1, 3])
    assert rec.forget_code_predicted == (rep["forget_margin"] > 0)
    if not rec.warnings:  # both forget codes lost, both remaining codes kept
        assert rep["E_F"] == 100.0 and rep["A_R"] == 100.0


def test_joint_multi_class_and_single_class_modes(tiny_trained):
    model, codes = tiny_trained
    joint, rec = forget(model, codes, [1, 3], step="calibrated", calibration=Calibration(multi="joint"))
    assert rec.multi == "joint" and rec.parts == [] and rec.sign in ("+", "-")
    fis = code_fisher(model, codes)
    eta = fisher_ratio(mean_fisher([fis[1], fis[3]]), mean_fisher([fis[0], fis[2]]))
    expect = perturbed(model, eta, layer_alphas(eta, 1e-3, 10.0), 1.0 if rec.sign == "+" else -1.0, rec.scale)
    for p, q in zip(joint.parameters(), expect.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    # the paper step is always the joint Eq. 5-7 step; one class has one mode
    assert forget(model, codes, [1, 3], step="paper")[1].multi == "joint"
    one_seq, r1 = forget(model, codes, [2], step="calibrated")
    one_joint, r2 = forget(model, codes, [2], step="calibrated", calibration=Calibration(multi="joint"))
    assert r1.multi == r2.multi == "single" and r1.scale == r2.scale
    for p, q in zip(one_seq.parameters(), one_joint.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ConfigError, match="multi"):
        forget(model, codes, [1, 3], step="calibrated", calibration=Calibration(multi="both"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(forget_classes=[]), "empty"),
        (dict(forget_classes=[1, 1]), "twice"),
        (dict(forget_classes=[7]), "outside"),
        (dict(forget_classes=[0, 1, 2, 3]), "every class"),
        (dict(forget_classes=[0], lambda1=0.0), "lambda1"),
        (dict(forget_classes=[0], lambda2=-1.0), "lambda2"),
        (dict(forget_classes=[0], step="bogus"), "step"),
    ],
)
def test_bad_requests(tiny_trained, kwargs, match):
    model, codes = tiny_trained
    with pytest.raises(ConfigError, match=match):
        forget(model, codes, **kwargs)


def test_nan_weights_refused(tiny_trained):
    model, codes = tiny_trained
    import copy

    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.fc1.weight[0, 0] = float("nan")
    with pytest.raises(ModelStateError, match="NaN"):
        forget(broken, codes, [0], step="paper")


def test_codes_that_do_not_fit(tiny_trained):
    model, codes = tiny_trained
    with pytest.raises(ConfigError, match="do not fit"):
        forget(model, torch.randn(4, 1, 5, 5), [0], step="paper")
    with pytest.raises(ConfigError, match="codes for a model"):
        forget(model, torch.randn(3, 1, 8, 8), [0], step="paper")


def test_too_few_codes_named_before_class_range(tiny_trained):
    model, codes = tiny_trained
    with pytest.raises(ConfigError, match="3 codes for a model with 4 classes"):
        forget(model, codes[:3], [3], step="paper")
