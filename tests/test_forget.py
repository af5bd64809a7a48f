import copy
from dataclasses import replace

import pytest
import torch

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
from mnemonic_mu.errors import ConfigError, ModelStateError


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


def expected_step(model, eta, alpha, sign, scale, forget_classes, cal):
    """The calibrated step written out by hand: w + sign * gain * alpha_l * eta_l, where the
    output layer (``head``) moves only in the forget classes' rows, by ``scale``, and every
    other layer by min(scale, hidden_cap); with protect_rows off, everything by ``scale``."""
    new = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in new.named_parameters():
            step = alpha[n] * eta[n]
            if cal.protect_rows and n.startswith("head."):
                mask = torch.zeros(step.shape[0])
                mask[list(forget_classes)] = 1.0
                step = step * mask.view(-1, *([1] * (step.dim() - 1)))
                gain = scale
            else:
                gain = scale if not cal.protect_rows or n.startswith("head.") else min(scale, cal.hidden_cap)
            p.copy_(dict(model.named_parameters())[n] + sign * gain * step)
    return new


@pytest.mark.parametrize("cal", [Calibration(), Calibration.v1()], ids=["default", "v1"])
def test_sequential_multi_class_is_one_calibrated_step_per_class(tiny_trained, cal):
    """Several classes: each part is the single-class calibrated step along f_c / f_R,
    applied to the previous part's model, with every Fisher taken from the input model."""
    model, codes = tiny_trained
    new, rec = forget(model, codes, [3, 1], step="calibrated", calibration=cal)
    assert rec.multi == "sequential" and [p["class"] for p in rec.parts] == [1, 3]
    assert rec.backward_passes == 4 and rec.alpha == {}  # still one backward pass per class
    assert rec.sign == "".join(p["sign"] for p in rec.parts) and len(rec.sign) == 2
    assert rec.scale == max(p["scale"] for p in rec.parts)
    if cal == Calibration.v1():
        assert min(p["scale"] for p in rec.parts) > 0
    fis = code_fisher(model, codes)
    f_r = mean_fisher([fis[0], fis[2]])  # the classes that stay, for both parts
    expect = model
    for part in rec.parts:
        eta = fisher_ratio(fis[part["class"]], f_r)
        alpha = layer_alphas(eta, 1e-3, 10.0)
        assert part["alpha"] == pytest.approx(alpha, rel=1e-4)
        assert part["guard"]["scale"] == part["scale"]
        expect = expected_step(
            expect, eta, alpha, 1.0 if part["sign"] == "+" else -1.0, part["scale"], [part["class"]], cal
        )
    for (n, p), q in zip(new.named_parameters(), expect.parameters()):  # float rounding only
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    rep = code_report(new, codes, torch.arange(4), [1, 3])
    assert rec.forget_code_predicted == (rep["forget_margin"] > 0)
    if not rec.warnings:  # both forget codes lost, both remaining codes kept
        assert rep["E_F"] == 100.0 and rep["A_R"] == 100.0


@pytest.mark.parametrize("cal", [Calibration(), Calibration.v1()], ids=["default", "v1"])
def test_joint_multi_class_and_single_class_modes(tiny_trained, cal):
    model, codes = tiny_trained
    joint, rec = forget(model, codes, [1, 3], step="calibrated", calibration=replace(cal, multi="joint"))
    assert rec.multi == "joint" and rec.parts == [] and rec.sign in ("+", "-")
    fis = code_fisher(model, codes)
    eta = fisher_ratio(mean_fisher([fis[1], fis[3]]), mean_fisher([fis[0], fis[2]]))
    alpha = layer_alphas(eta, 1e-3, 10.0)
    expect = expected_step(model, eta, alpha, 1.0 if rec.sign == "+" else -1.0, rec.scale, [1, 3], cal)
    if cal == Calibration.v1():  # v1 is the paper's direction on one scale: perturbed() itself
        expect_v1 = perturbed(model, eta, alpha, 1.0 if rec.sign == "+" else -1.0, rec.scale)
        for p, q in zip(expect.parameters(), expect_v1.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    for p, q in zip(joint.parameters(), expect.parameters()):  # float rounding only
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    # the paper step is always the joint Eq. 5-7 step; one class has one mode
    assert forget(model, codes, [1, 3], step="paper")[1].multi == "joint"
    one_seq, r1 = forget(model, codes, [2], step="calibrated", calibration=cal)
    one_joint, r2 = forget(model, codes, [2], step="calibrated", calibration=replace(cal, multi="joint"))
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


# --------------------------------------------------------------------------
# The calibrated step's retain guard (docs/calibration.md)


def test_remaining_rows_never_move_and_a_zero_cap_leaves_their_logits_exact(tiny_trained):
    model, codes = tiny_trained
    x = torch.randn(32, *codes.shape[1:], generator=torch.Generator().manual_seed(0))
    for c in range(4):
        new, rec = forget(model, codes, [c], step="calibrated")
        others = [r for r in range(4) if r != c]
        assert torch.equal(new.head.weight[others], model.head.weight[others])
        assert torch.equal(new.head.bias[others], model.head.bias[others])
        assert rec.guard["protect_rows"] and rec.guard["hidden_scale"] == min(rec.scale, 0.5)
        only_row, _ = forget(model, codes, [c], step="calibrated", calibration=Calibration(hidden_cap=0.0))
        with torch.no_grad():
            assert torch.equal(only_row(x)[:, others], model(x)[:, others])  # only class c's score changes
    # v1 moves every row (the damage the guard removes)
    old, rec_old = forget(model, codes, [3], step="calibrated", calibration=Calibration.v1())
    assert rec_old.scale > 0 and not torch.equal(old.head.weight[:3], model.head.weight[:3])


def test_a_request_the_codes_cannot_forget_safely_warns_with_its_numbers(tiny_trained):
    model, codes = tiny_trained
    new, rec = forget(model, codes, [2], step="calibrated", calibration=Calibration(margin=1e6, max_scale=2.0**4))
    (w,) = [w for w in rec.warnings if "largest safe scale" in w]
    assert f"{rec.scale:g}" in w and "1e+06 nats" in w and f"{rec.guard['forget_margin']:+.3g}" in w
    assert rec.guard["target_margin"] == 1e6 and rec.guard["scale"] == rec.scale <= 2.0**4
    assert rec.forget_code_predicted or rec.guard["forget_margin"] > -1e6


def test_views_the_input_model_already_gets_wrong_are_not_checked(tiny_trained):
    from mnemonic_mu.algorithms.forget import code_margins, code_views

    model, codes = tiny_trained
    cal = Calibration(jitter=2.0)  # views far from the codes: some are misclassified before any step
    views, labels = code_views(codes, cal.n_views, cal.jitter, cal.seed)
    wrong = int(((code_margins(model, views, labels) <= 0) & (labels != 1)).sum())
    assert wrong > 0
    _, rec = forget(model, codes, [1], step="calibrated", calibration=cal)
    assert rec.guard["views_skipped"] == wrong
    _, rec_all = forget(model, codes, [1], step="calibrated", calibration=replace(cal, only_kept_views=False))
    assert rec_all.guard["views_skipped"] == 0 and rec_all.scale == 0.0  # nothing can keep what was never kept
    assert any("model is unchanged" in w for w in rec_all.warnings)


def test_the_calibration_defaults_are_what_the_validation_study_chose():
    """Calibration()'s constants come from docs/results/calibration/validation.json: the rule
    applied to the committed rows picks them again, and docs/calibration.md is that file rendered."""
    import importlib.util
    import json
    from dataclasses import asdict
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("calibration_study", root / "benchmarks" / "calibration_study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    doc = json.loads(study.OUT.read_text())
    assert study.choose(doc["settings"]) == doc["chosen"]
    for r in doc["settings"]:
        for cand, summary in r["summary"].items():
            assert study.summarise(r["rows"], cand) == summary
    fields = asdict(Calibration())
    for k, v in doc["candidates"][doc["chosen"]].items():
        assert fields[k] == v, k
    stale = "docs/calibration.md is stale: python benchmarks/calibration_study.py --render"
    assert study.markdown(doc) in study.DOC.read_text(), stale
    for r in doc["settings"]:  # the study never reads the test split: every setting is scored on validation rows
        assert r["rows"] and all("stand_in_A_R" in row for row in r["rows"])
