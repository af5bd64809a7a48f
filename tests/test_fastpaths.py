"""Fast paths agree with the reference paths (correctness only; speed lives in benchmarks/).

* code Fisher: ``batched`` and ``vmap`` vs the paper's one-backward-per-class loop,
  per class and as the group means f_F, f_R (Eq. 6), MLP / CNN / ResNet-18;
* the batched path falls back to the loop, exactly, where it cannot apply;
* the forgetting step: one model copy for both sign candidates gives the same
  weights, bit for bit, as building each candidate with ``perturbed``;
  the batched Fisher gives the same sign and weights within float tolerance;
* training: the kit's preloaded-tensor loop and the per-item DataLoader
  pipeline of the benchmark train the same weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mnemonic_mu.algorithms.dataset import Dataset
from mnemonic_mu.algorithms.fisher import batched_supported, code_fisher, code_fisher_means, mean_fisher
from mnemonic_mu.algorithms.forget import fisher_ratio, forget, layer_alphas, perturbed
from mnemonic_mu.algorithms.models import ResNet18, build_model
from mnemonic_mu.algorithms.train import TrainConfig, train_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks/ helpers


def _assert_fisher_close(fast, ref, rtol=1e-4):
    """Equal within float tolerance, relative to each tensor's scale (squares span many decades)."""
    assert list(fast) == list(ref)
    for n in ref:
        scale = float(ref[n].abs().max())
        torch.testing.assert_close(fast[n], ref[n], rtol=rtol, atol=rtol * scale + 1e-30)


def _model(name, shape, k=4):
    """A small model; "resnet18" is the kit's ResNet-18 at width 8 (same blocks, a fraction of the cost)."""
    torch.manual_seed(0)
    model = ResNet18(shape, k, width=8) if name == "resnet18" else build_model(name, shape, k, seed=0)
    if name != "mlp":  # non-trivial BatchNorm running statistics, so eval mode matters
        model.train()
        with torch.no_grad():
            model(torch.randn(16, *shape) * 3 + 1)
    return model, torch.randn(k, *shape)


CASES = [("mlp", (1, 6, 6)), ("cnn", (3, 8, 8)), ("resnet18", (3, 8, 8))]


@pytest.mark.parametrize("name,shape", CASES)
def test_batched_code_fisher_matches_loop(name, shape):
    model, codes = _model(name, shape)
    assert batched_supported(model) is None
    was_training = model.training
    ref = code_fisher(model, codes, method="loop")
    fast = code_fisher(model, codes, method="batched")
    assert len(fast) == len(ref)
    for f, r in zip(fast, ref):
        _assert_fisher_close(f, r)
    assert model.training == was_training  # mode restored


@pytest.mark.parametrize("name,shape", CASES)
@pytest.mark.parametrize("groups", [[[0], [1, 2, 3]], [[0, 2], [1, 3]]])
def test_group_means_match_reference(name, shape, groups):
    model, codes = _model(name, shape)
    per = code_fisher(model, codes, method="loop")
    ref = [mean_fisher(per[c] for c in g) for g in groups]
    for method in ("batched", "vmap") if name != "resnet18" else ("batched",):  # vmap: see test_fisher.py
        for f, r in zip(code_fisher_means(model, codes, groups, method), ref):
            _assert_fisher_close(f, r, rtol=1e-3 if method == "vmap" else 1e-4)
    # the loop path of code_fisher_means is the reference itself, bit for bit
    for f, r in zip(code_fisher_means(model, codes, groups, "loop"), ref):
        assert all(torch.equal(f[n], r[n]) for n in r)


class _Shared(nn.Module):
    """A layer applied twice: per-sample gradients need the loop."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.fc(torch.tanh(self.fc(x.flatten(1))))))


class _InPlace(nn.Module):
    """A layer whose output is changed in place afterwards."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu_(self.fc(x.flatten(1))))


class _LayerNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.norm(self.fc(x.flatten(1))))


@pytest.mark.parametrize("cls", [_Shared, _InPlace, _LayerNorm])
def test_batched_falls_back_to_loop_exactly(cls):
    torch.manual_seed(0)
    model, codes = cls(), torch.randn(3, 1, 6)
    if cls is _LayerNorm:
        assert batched_supported(model) is not None
    ref = code_fisher(model, codes, method="loop")
    fast = code_fisher(model, codes, method="batched")
    for f, r in zip(fast, ref):
        assert all(torch.equal(f[n], r[n]) for n in r)


@pytest.mark.parametrize("name,shape", [("mlp", (1, 6, 6)), ("resnet18", (3, 8, 8))])
@pytest.mark.parametrize("forget_classes", [[0], [2], [1, 3]])
def test_one_copy_sign_test_is_bit_identical(name, shape, forget_classes):
    model, codes = _model(name, shape)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    new, record = forget(model, codes, forget_classes, fisher_method="loop", step="paper")
    fishers = code_fisher(model, codes)
    rest = [c for c in range(4) if c not in forget_classes]
    eta = fisher_ratio(mean_fisher(fishers[c] for c in forget_classes), mean_fisher(fishers[c] for c in rest))
    ref = perturbed(model, eta, layer_alphas(eta, 1e-3, 10.0), 1.0 if record.sign == "+" else -1.0)
    for (n, a), b in zip(new.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), n
    for n, p in model.state_dict().items():  # input untouched
        assert torch.equal(p, before[n])


@pytest.mark.parametrize("name,shape", [("mlp", (1, 6, 6)), ("resnet18", (3, 8, 8))])
def test_forget_batched_matches_loop(name, shape):
    model, codes = _model(name, shape)
    ref, rec_ref = forget(model, codes, [0], fisher_method="loop", step="paper")
    fast, rec_fast = forget(model, codes, [0], fisher_method="batched", step="paper")
    assert rec_fast.sign == rec_ref.sign
    assert rec_fast.alpha.keys() == rec_ref.alpha.keys()
    for n in rec_ref.alpha:
        assert rec_fast.alpha[n] == pytest.approx(rec_ref.alpha[n], rel=1e-3)
    original = model.state_dict()
    for (n, a), b in zip(fast.state_dict().items(), ref.state_dict().values()):
        step = float((b - original[n]).abs().max())  # compare relative to the size of the step
        torch.testing.assert_close(a, b, rtol=0, atol=1e-3 * step + 1e-7)


def test_kit_loop_and_dataloader_pipeline_train_the_same_weights():
    from benchmarks.pipelines import MNISTItems, dataloader_epoch, make_loader, make_optimizer

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (200, 8, 8), dtype=torch.uint8, generator=gen)
    labels = torch.arange(200) % 4
    x = (images.float() / 255.0).unsqueeze(1)
    idx = torch.arange(200)
    dataset = Dataset("u8", x, labels, x[:8], labels[:8], x[:8], labels[:8], 4, idx, idx[:8], idx[:8])
    codes = torch.randn(4, 1, 8, 8)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, t_mix=0.3, seed=3, eval_every=0)

    kit = build_model("mlp", (1, 8, 8), 4, seed=0)
    train_model(kit, dataset, codes, cfg)

    ref = build_model("mlp", (1, 8, 8), 4, seed=0)
    g = torch.Generator().manual_seed(cfg.seed)
    loader = make_loader(MNISTItems(images, labels), cfg.batch_size, g)
    opt = make_optimizer(ref, cfg)
    for _ in range(cfg.epochs):
        dataloader_epoch(ref, loader, codes, opt, cfg.t_mix, g)
    for (n, a), b in zip(kit.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)


def _reference_ratio(f_forget, f_retain):
    """fisher_ratio as first written (isfinite on every tensor): the one-pass check must match it."""
    eta = {}
    for n, ff in f_forget.items():
        lo = torch.finfo(ff.dtype).tiny
        r = torch.nan_to_num(ff.clamp_min(lo) / f_retain[n].clamp_min(lo), nan=0.0, posinf=float("inf"), neginf=0.0)
        finite = torch.isfinite(r)
        if not bool(finite.all()):
            top = float(r[finite].max()) if bool(finite.any()) else 0.0
            r = torch.where(finite, r, torch.full_like(r, top))
        eta[n] = r
    return eta


def test_fisher_ratio_matches_reference_with_nan_and_inf():
    gen = torch.Generator().manual_seed(0)
    ff = {"a": torch.rand(50, generator=gen), "b": torch.rand(3, 4, generator=gen), "c": torch.zeros(0)}
    fr = {n: torch.rand(v.shape, generator=gen) for n, v in ff.items()}
    ff["a"][:3] = 3e38  # overflow to +inf against a floored f_R
    fr["a"][:3] = 0.0
    ff["a"][3] = float("nan")
    ff["b"][:] = float("inf")  # nothing finite left: falls to 0
    ref, fast = _reference_ratio(ff, fr), fisher_ratio(ff, fr)
    for n in ref:
        assert torch.equal(fast[n], ref[n]), n


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_model_finite_catches_every_non_finite(bad):
    from mnemonic_mu.algorithms.forget import check_model_finite
    from mnemonic_mu.errors import ModelStateError

    model, _ = _model("mlp", (1, 6, 6))
    check_model_finite(model)
    with torch.no_grad():
        model.head.bias[1] = bad
    with pytest.raises(ModelStateError):
        check_model_finite(model)
