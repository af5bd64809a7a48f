"""The data-based baselines the mnemonic step is compared with, behind the one signature of
:mod:`mnemonic_mu.algorithms.method_api`.  Each docstring cites the method's source."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..io.data import make_augment
from .fisher import sample_fisher, trainable
from .forget import check_model_finite, fisher_ratio, layer_alphas, perturbed
from .metrics import check_forget_classes
from .method_api import MethodResult, Timer, UnlearnData, model_device, need_data, subsample, val_score
from .models import MODELS, build_model
from .train import train_model


def _lambda_grids():
    from ..settings import default

    return default("lambda1_grid"), default("lambda2_grid")


def ours_with_data(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    max_samples: int | None = 10_000,
    lambda1_grid: Sequence[float] | None = None,
    lambda2_grid: Sequence[float] | None = None,
    chunk_size: int = 64,
) -> MethodResult:
    """The paper's ablation (Yamashita et al., ACML 2024): the same one-shot step,
    eta = f_F / f_R (Eq. 7) with per-layer alpha_l (Eq. 5), but the Fishers come
    from real data (per-sample empirical diagonal Fisher on forget-train and on
    retain-train, each a seeded draw of at most ``max_samples``) on a model
    trained *without* codes.

    A diff from :func:`mnemonic`: data Fisher instead of code Fisher, and with no
    codes the sign is chosen together with (lambda1, lambda2) by ``A_R + E_F`` on
    the validation split.  ``codes`` is ignored.  One backward pass per sample.
    """
    data = need_data("ours_with_data", data)
    grids = _lambda_grids()
    lambda1_grid, lambda2_grid = lambda1_grid or grids[0], lambda2_grid or grids[1]
    with Timer() as t:
        forget_classes = check_forget_classes(forget_classes, data.num_classes)
        check_model_finite(model)
        xf, yf = subsample(data.x_forget, data.y_forget, max_samples, seed)
        xr, yr = subsample(data.x_retain, data.y_retain, max_samples, seed + 1)
        f_forget = sample_fisher(model, xf, yf, chunk_size)
        f_retain = sample_fisher(model, xr, yr, chunk_size)
        eta = fisher_ratio(f_forget, f_retain)
        best, search = None, []
        for l1 in lambda1_grid:
            for l2 in lambda2_grid:
                alpha = layer_alphas(eta, l1, l2)
                for sign in (1.0, -1.0):
                    cand = perturbed(model, eta, alpha, sign)
                    score = val_score(cand, data, forget_classes)
                    search.append({"lambda1": l1, "lambda2": l2, "sign": sign, "val_score": score})
                    if best is None or score > best[0]:
                        best = (score, cand, {"lambda1": l1, "lambda2": l2, "sign": "+" if sign > 0 else "-"})
    return MethodResult(best[1], t.seconds, len(yf) + len(yr), best[2], search, {"fisher_samples": len(yf) + len(yr)})


# --------------------------------------------------------------------------
# Retrain (the gold standard)


def _model_name(model: nn.Module) -> str:
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise ConfigError(f"retrain cannot rebuild a {type(model).__name__}; use one of {', '.join(MODELS)}")


def retrain(
    model: nn.Module,
    codes: torch.Tensor,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
) -> MethodResult:
    """Retrain from scratch on the retain data with the original's recipe
    (``data.train_config``, codes included, forget classes excluded): the gold
    standard every unlearning paper compares with (e.g. Golatkar et al. CVPR 2020).

    The sweep takes this model from the trained-model cache instead of training
    it again (its time is then the recorded training time).
    """
    data = need_data("retrain", data)
    if data.dataset is None:
        raise ConfigError("retrain needs UnlearnData.from_dataset(...) (it trains on the dataset's train split)")
    forget_classes = check_forget_classes(forget_classes, data.num_classes)
    with Timer() as t:
        cfg = replace(data.train_config, exclude_classes=tuple(forget_classes), seed=int(seed), eval_every=0)
        new = build_model(_model_name(model), data.dataset.input_shape, data.num_classes, seed=int(seed))
        result = train_model(new, data.dataset, codes, cfg, device=model_device(model))
    return MethodResult(new, t.seconds, cfg.epochs * result.n_train, {"epochs": cfg.epochs}, [], {})


# --------------------------------------------------------------------------
# Gradient-based baselines


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def _sgd_search(
    model: nn.Module,
    data: UnlearnData,
    forget_classes: Sequence[int],
    seed: int,
    lrs: Sequence[float],
    epochs: int,
    epoch_fn: Callable,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> tuple[nn.Module, dict, list[dict], int]:
    """Run ``epoch_fn`` for each learning rate; after every epoch score the model on
    validation; return the best (model, chosen, search, backward passes)."""
    if int(epochs) < 1:
        raise ConfigError(f"epochs must be at least 1, got {epochs}")
    best, search, passes = None, [], 0
    augment = make_augment(data.dataset) if data.dataset is not None else None
    for lr in lrs:
        if not float(lr) > 0:
            raise ConfigError(f"learning rates must be positive, got {lr}")
        work = copy.deepcopy(model)
        opt = torch.optim.SGD(work.parameters(), lr=float(lr), momentum=momentum, weight_decay=weight_decay)
        gen = torch.Generator().manual_seed(int(seed))
        for epoch in range(1, int(epochs) + 1):
            work.train()
            passes += epoch_fn(work, opt, gen, augment)
            work.eval()
            if not all(bool(torch.isfinite(p).all()) for p in work.parameters()):
                search.append({"lr": lr, "epochs": epoch, "val_score": float("nan"), "diverged": True})
                break
            score = val_score(work, data, forget_classes)
            search.append({"lr": lr, "epochs": epoch, "val_score": score})
            if best is None or score > best[0]:
                best = (score, copy.deepcopy(work), {"lr": lr, "epochs": epoch})
    if best is None:
        raise ConfigError("every learning rate diverged; pass smaller lrs")
    return best[1], best[2], search, passes


def _step(model, opt, loss) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _batch(x, y, idx, device, augment, gen):
    xb, yb = x[idx].to(device), y[idx].to(device)
    if augment is not None:
        xb = augment(xb, gen)
    return xb, yb


def finetune(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    lrs: Sequence[float] = (0.01, 0.05),
    epochs: int = 5,
    batch_size: int = 128,
) -> MethodResult:
    """Fine-tune on the retain data only, a few epochs (the "Fine-tune" baseline of
    Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless Net", CVPR 2020):
    forgetting relies on catastrophic forgetting of C_F.  ``lrs`` and the epoch
    count (1..``epochs``) are chosen on validation."""
    data = need_data("finetune", data)
    fc = check_forget_classes(forget_classes, data.num_classes)
    device = model_device(model)

    def epoch_fn(work, opt, gen, augment):
        for idx in _batches(len(data.y_retain), batch_size, gen):
            xb, yb = _batch(data.x_retain, data.y_retain, idx, device, augment, gen)
            _step(work, opt, F.cross_entropy(work(xb), yb))
        return len(data.y_retain)

    with Timer() as t:
        new, chosen, search, passes = _sgd_search(model, data, fc, seed, lrs, epochs, epoch_fn)
    return MethodResult(new, t.seconds, passes, chosen, search)


def neggrad(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    lrs: Sequence[float] = (1e-2, 5e-2, 1e-1),
    epochs: int = 5,
    batch_size: int = 128,
    retain_weight: float = 0.0,
) -> MethodResult:
    """NegGrad: gradient *ascent* on the forget data (Golatkar et al., CVPR 2020,
    "Eternal Sunshine of the Spotless Net", baseline "NegGrad").

    With ``retain_weight = a > 0`` it is NegGrad+ (Kurmanji, Triantafillou, Hayes,
    Triantafillou, "Towards Unbounded Machine Unlearning", NeurIPS 2023): each
    step minimises ``a * CE(retain batch) - (1 - a) * CE(forget batch)``, one
    pass over the forget data per epoch.  ``lrs`` and the epoch count are chosen
    on validation."""
    data = need_data("neggrad", data)
    if not 0.0 <= retain_weight < 1.0:
        raise ConfigError(f"retain_weight must lie in [0, 1), got {retain_weight}")
    fc = check_forget_classes(forget_classes, data.num_classes)
    device = model_device(model)
    n_r = len(data.y_retain)

    def epoch_fn(work, opt, gen, augment):
        passes = 0
        for idx in _batches(len(data.y_forget), batch_size, gen):
            xf, yf = _batch(data.x_forget, data.y_forget, idx, device, augment, gen)
            loss = -(1.0 - retain_weight) * F.cross_entropy(work(xf), yf)
            passes += len(idx)
            if retain_weight > 0:
                ridx = torch.randint(0, n_r, (batch_size,), generator=gen)
                xr, yr = _batch(data.x_retain, data.y_retain, ridx, device, augment, gen)
                loss = loss + retain_weight * F.cross_entropy(work(xr), yr)
                passes += batch_size
            _step(work, opt, loss)
        return passes

    with Timer() as t:
        new, chosen, search, passes = _sgd_search(model, data, fc, seed, lrs, epochs, epoch_fn)
    return MethodResult(new, t.seconds, passes, chosen | {"retain_weight": retain_weight}, search)



def random_label(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    lrs: Sequence[float] = (0.01, 0.05),
    epochs: int = 5,
    batch_size: int = 128,
) -> MethodResult:
    """Random labels (Graves, Nagisetty, Ganesh, "Amnesiac Machine Learning", AAAI 2021;
    the "RL" baseline of Fan et al., SalUn, ICLR 2024): fine-tune on the forget
    samples relabelled with a random *wrong* class (drawn afresh each epoch, only
    among remaining classes), each forget batch paired with a retain batch of the
    same size.  ``lrs`` and the epoch count are chosen on validation."""
    data = need_data("random_label", data)
    fc = check_forget_classes(forget_classes, data.num_classes)
    device = model_device(model)
    remaining = torch.tensor([c for c in range(data.num_classes) if c not in fc])
    n_r = len(data.y_retain)

    def epoch_fn(work, opt, gen, augment):
        passes = 0
        for idx in _batches(len(data.y_forget), batch_size, gen):
            xf, _ = _batch(data.x_forget, data.y_forget, idx, device, augment, gen)
            wrong = remaining[torch.randint(0, len(remaining), (len(idx),), generator=gen)].to(device)
            ridx = torch.randint(0, n_r, (len(idx),), generator=gen)
            xr, yr = _batch(data.x_retain, data.y_retain, ridx, device, augment, gen)
            _step(work, opt, F.cross_entropy(work(torch.cat([xf, xr])), torch.cat([wrong, yr])))
            passes += 2 * len(idx)
        return passes

    with Timer() as t:
        new, chosen, search, passes = _sgd_search(model, data, fc, seed, lrs, epochs, epoch_fn)
    return MethodResult(new, t.seconds, passes, chosen, search)


# --------------------------------------------------------------------------
# Fisher-based baselines


def ssd(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    alphas: Sequence[float] = (1.0, 3.0, 10.0, 30.0, 100.0),
    lam: float = 1.0,
    max_samples: int | None = 10_000,
    chunk_size: int = 64,
) -> MethodResult:
    """Selective Synaptic Dampening (Foster, Schoepf, Brintrup, "Fast Machine Unlearning
    Without Retraining Through Selective Synaptic Dampening", AAAI 2024).

    Importances are diagonal Fishers: I_Df on the forget data, I_D on all
    training data (retain + forget, a seeded draw of at most ``max_samples``).
    Every parameter with I_Df,i > alpha * I_D,i is multiplied by
    beta_i = min(lam * I_D,i / I_Df,i, 1); the rest stay.  The selection
    threshold ``alpha`` is chosen on validation from ``alphas`` (paper default
    10, lambda 1).  One backward pass per sample."""
    data = need_data("ssd", data)
    if not lam > 0:
        raise ConfigError(f"lam must be positive, got {lam}")
    fc = check_forget_classes(forget_classes, data.num_classes)
    with Timer() as t:
        xf, yf = subsample(data.x_forget, data.y_forget, max_samples, seed)
        x_all = torch.cat([data.x_retain, data.x_forget])
        y_all = torch.cat([data.y_retain, data.y_forget])
        xa, ya = subsample(x_all, y_all, max_samples, seed + 1)
        imp_f = sample_fisher(model, xf, yf, chunk_size)
        imp_d = sample_fisher(model, xa, ya, chunk_size)
        best, search = None, []
        for a in alphas:
            cand = copy.deepcopy(model)
            changed = 0
            with torch.no_grad():
                for n, p in trainable(cand).items():
                    select = imp_f[n] > float(a) * imp_d[n]
                    beta = (lam * imp_d[n] / imp_f[n].clamp_min(torch.finfo(p.dtype).tiny)).clamp(max=1.0)
                    p.mul_(torch.where(select, beta, torch.ones_like(beta)))
                    changed += int(select.sum())
            score = val_score(cand, data, fc)
            search.append({"alpha": a, "val_score": score, "dampened": changed})
            if best is None or score > best[0]:
                best = (score, cand, {"alpha": a, "lambda": lam}, changed)
    info = {"fisher_samples": len(yf) + len(ya), "dampened": best[3]}
    return MethodResult(best[1], t.seconds, len(yf) + len(ya), best[2], search, info)


def fisher_forgetting(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    scales: Sequence[float] = (1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 3e-2),
    fisher_floor: float = 1e-8,
    max_samples: int | None = 10_000,
    chunk_size: int = 64,
) -> MethodResult:
    """Fisher forgetting (Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless
    Net: Selective Forgetting in Deep Networks", CVPR 2020, Sec. 4 "Fisher forgetting").

    Adds Gaussian noise with covariance proportional to the inverse square root of
    the retain-data Fisher: ``w' = w + c * F_r^{-1/4} * n``, ``n ~ N(0, I)``, where
    ``c`` stands for ``(lambda sigma_h^2)^{1/4}``.  Directions the remaining data
    do not constrain are scrambled; F_r is the per-sample diagonal Fisher on a
    seeded draw of at most ``max_samples`` retain samples, floored at
    ``fisher_floor`` (which caps the noise of parameters no retain sample uses).
    The noise is seeded; ``c`` is chosen on validation from ``scales``."""
    data = need_data("fisher_forgetting", data)
    fc = check_forget_classes(forget_classes, data.num_classes)
    with Timer() as t:
        xr, yr = subsample(data.x_retain, data.y_retain, max_samples, seed)
        f_r = sample_fisher(model, xr, yr, chunk_size)
        gen = torch.Generator().manual_seed(int(seed))
        noise = {n: torch.randn(p.shape, generator=gen).to(p.device) * f_r[n].clamp_min(fisher_floor) ** -0.25
                 for n, p in trainable(model).items()}
        best, search = None, []
        for c in scales:
            cand = copy.deepcopy(model)
            with torch.no_grad():
                for n, p in trainable(cand).items():
                    p.add_(noise[n], alpha=float(c))
            score = val_score(cand, data, fc)
            search.append({"scale": c, "val_score": score})
            if best is None or score > best[0]:
                best = (score, cand, {"scale": c})
    return MethodResult(best[1], t.seconds, len(yr), best[2], search, {"fisher_samples": len(yr)})


__all__ = ["finetune", "fisher_forgetting", "neggrad", "ours_with_data", "random_label", "retrain", "ssd"]
