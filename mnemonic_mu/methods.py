"""Unlearning methods behind one signature and one registry.

Every method is called the same way::

    result = METHODS[name](model, codes, forget_classes, data, seed=0, **settings)

* ``model`` - the trained model to unlearn (left untouched; the result holds a
  new one).  ``ours_with_data`` expects the model trained *without* codes
  (:data:`INPUT_MODEL` says which trained model each method takes).
* ``codes`` - the model's mnemonic codes (used by the mnemonic methods only).
* ``forget_classes`` - the request C_F.
* ``data`` - an :class:`UnlearnData` (retain / forget train data, the
  validation split, the training recipe); ``None`` is accepted only by the
  data-free ``mnemonic_paper`` and ``mnemonic_calibrated``.
* ``settings`` - the method's own options (defaults in each signature).

Each returns a :class:`MethodResult`: the new model, its wall time (the whole
call, hyperparameter search included, measured with ``time.perf_counter``),
its backward passes (one per sample whose gradient was taken, |C| for the
code Fisher) and what was chosen.

Hyperparameters are chosen on the validation split only, by the score
``A_R + E_F`` on validation (both in %, the paper's criterion moved from
test to validation); ties go to the first candidate in grid order.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset, make_augment
from .errors import ConfigError
from .fisher import code_fisher, data_fisher, trainable
from .forget import check_model_finite, fisher_ratio, forget, layer_alphas, perturbed
from .metrics import check_forget_classes, forgetting_scores, predict_logits
from .models import MODELS, build_model
from .train import TrainConfig, retained_mask, train_model

# The paper's grid for (lambda1, lambda2) (METHOD.md section 4)
LAMBDA1_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
LAMBDA2_GRID = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)


# --------------------------------------------------------------------------
# Inputs and outputs


@dataclass
class UnlearnData:
    """What data-based methods may see: retain / forget train data, validation, the recipe.

    Build it with :meth:`from_dataset`; the test split is deliberately absent.
    """

    x_retain: torch.Tensor
    y_retain: torch.Tensor
    x_forget: torch.Tensor
    y_forget: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    train_config: TrainConfig = field(default_factory=TrainConfig)  # recipe of the original (retrain, lr scale)
    dataset: Dataset | None = None  # for retrain (train_model) and augmentation

    @classmethod
    def from_dataset(
        cls, dataset: Dataset, forget_classes: Iterable[int], train_config: TrainConfig | None = None
    ) -> "UnlearnData":
        forget_classes = check_forget_classes(forget_classes, dataset.num_classes)
        keep = retained_mask(dataset.y_train, forget_classes)
        return cls(
            x_retain=dataset.x_train[keep],
            y_retain=dataset.y_train[keep],
            x_forget=dataset.x_train[~keep],
            y_forget=dataset.y_train[~keep],
            x_val=dataset.x_val,
            y_val=dataset.y_val,
            num_classes=dataset.num_classes,
            train_config=train_config or TrainConfig(),
            dataset=dataset,
        )


@dataclass
class MethodResult:
    """A method's output: the new model and what it cost."""

    model: nn.Module
    seconds: float
    backward_passes: int
    chosen: dict = field(default_factory=dict)  # selected hyperparameters
    search: list[dict] = field(default_factory=list)  # every candidate's validation score
    info: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"seconds": self.seconds, "backward_passes": self.backward_passes, "chosen": self.chosen} | self.info


def val_score(model: nn.Module, data: UnlearnData, forget_classes: Sequence[int]) -> float:
    """A_R + E_F on the validation split (%, 0-200): the selection criterion."""
    a_r, e_f = forgetting_scores(predict_logits(model, data.x_val), data.y_val.cpu(), forget_classes)
    return (0.0 if math.isnan(a_r) else a_r) + (0.0 if math.isnan(e_f) else e_f)


def _need_data(name: str, data: UnlearnData | None) -> UnlearnData:
    if data is None:
        raise ConfigError(f"method {name!r} needs data (retain / forget / validation); pass UnlearnData")
    if len(data.y_forget) == 0 or len(data.y_retain) == 0:
        raise ConfigError(f"method {name!r} needs both retain and forget training samples")
    return data


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class _Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def _subsample(x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None or len(y) <= n:
        return x, y
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.sort(torch.randperm(len(y), generator=gen)[:n])[0]
    return x[idx], y[idx]


def linear_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> dict | None:
    """Exact per-sample empirical diagonal Fisher for models built only of ``nn.Linear`` layers.

    For a linear layer ``z = W a + b`` the per-sample gradient is ``g_i a_i^T`` with
    ``g_i = d loss_i / d z_i``, so ``sum_i (g_i a_i^T)^2 = (g^2)^T (a^2)``: one batched
    forward/backward gives the same numbers as :func:`mnemonic_mu.fisher.data_fisher`
    (a test checks this) without materialising per-sample gradients.  Returns
    ``None`` when some trainable parameter is not a Linear weight or bias (each
    Linear used once per forward); callers then fall back to ``data_fisher``.
    """
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    names = set()
    for n, m in linears.items():
        names.update(f"{n}.{k}" for k, p in m.named_parameters(recurse=False) if p.requires_grad)
    params = trainable(model)
    if not linears or names != set(params):
        return None
    device = _device(model)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    store: dict[str, list] = {}

    def hook(name):
        def fn(module, inputs, output):
            store[name] = [inputs[0].detach()]
            output.register_hook(lambda g: store[name].append(g.detach()))

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in linears.items()]
    was = model.training
    model.eval()
    try:
        for i in range(0, len(y), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            store.clear()
            loss = F.cross_entropy(model(xb), yb, reduction="sum")
            torch.autograd.grad(loss, list(params.values()))
            for n, m in linears.items():
                if len(store.get(n, [])) != 2:
                    return None  # a layer used twice or not at all: not this fast path
                a, g = store[n]
                a, g = a.reshape(-1, a.shape[-1]), g.reshape(-1, g.shape[-1])
                if m.weight.requires_grad:
                    total[f"{n}.weight"] += (g**2).T @ (a**2)
                if m.bias is not None and m.bias.requires_grad:
                    total[f"{n}.bias"] += (g**2).sum(0)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {n: t / len(y) for n, t in total.items()}


def sample_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk_size: int = 64) -> dict:
    """Per-sample empirical diagonal Fisher: :func:`linear_fisher` when the model allows,
    else :func:`mnemonic_mu.fisher.data_fisher`.  Either way one backward pass per sample."""
    if len(y) == 0:
        raise ConfigError("a data Fisher needs at least one sample")
    fast = linear_fisher(model, x, y)
    return fast if fast is not None else data_fisher(model, x, y, chunk_size=chunk_size)


# --------------------------------------------------------------------------
# Mnemonic codes (the paper) and its ablation


def mnemonic(
    model: nn.Module,
    codes: torch.Tensor,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    step: str = "paper",
    lambda1: float | None = None,
    lambda2: float | None = None,
    lambda1_grid: Sequence[float] = LAMBDA1_GRID,
    lambda2_grid: Sequence[float] = LAMBDA2_GRID,
) -> MethodResult:
    """One-shot forgetting with mnemonic codes (Yamashita, Yamada, Shibata, "One-Shot Machine
    Unlearning with Mnemonic Code", ACML 2024): wraps :func:`mnemonic_mu.forget.forget`.

    eta = f_F / f_R from the code Fisher (Eq. 6-7), per-layer alpha_l (Eq. 5), the
    sign chosen on the codes.  With ``lambda1`` and ``lambda2`` given, no data is
    touched; otherwise (lambda1, lambda2) are chosen over the paper's grid by
    ``A_R + E_F`` on the validation split (the code Fisher is computed once; the
    search costs forward passes only and counts in the time).
    """
    with _Timer() as t:
        forget_classes = check_forget_classes(forget_classes, len(codes))
        fishers = code_fisher(model, codes.to(_device(model)), method="batched")
        search: list[dict] = []
        if lambda1 is not None and lambda2 is not None:
            new, record = forget(model, codes, forget_classes, lambda1, lambda2, step=step, per_class_fisher=fishers)
        else:
            data = _need_data("mnemonic", data)
            best = None
            for l1 in lambda1_grid:
                for l2 in lambda2_grid:
                    cand, rec = forget(model, codes, forget_classes, l1, l2, step=step, per_class_fisher=fishers)
                    score = val_score(cand, data, forget_classes)
                    search.append({"lambda1": l1, "lambda2": l2, "val_score": score})
                    if best is None or score > best[0]:
                        best = (score, cand, rec)
            _, new, record = best
    return MethodResult(
        model=new,
        seconds=t.seconds,
        backward_passes=len(codes),
        chosen={"lambda1": record.lambda1, "lambda2": record.lambda2, "step": step},
        search=search,
        info={"sign": record.sign, "sign_tie": record.sign_tie, "scale": record.scale, "warnings": record.warnings},
    )


def ours_with_data(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    max_samples: int | None = 10_000,
    lambda1_grid: Sequence[float] = LAMBDA1_GRID,
    lambda2_grid: Sequence[float] = LAMBDA2_GRID,
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
    data = _need_data("ours_with_data", data)
    with _Timer() as t:
        forget_classes = check_forget_classes(forget_classes, data.num_classes)
        check_model_finite(model)
        xf, yf = _subsample(data.x_forget, data.y_forget, max_samples, seed)
        xr, yr = _subsample(data.x_retain, data.y_retain, max_samples, seed + 1)
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
    data = _need_data("retrain", data)
    if data.dataset is None:
        raise ConfigError("retrain needs UnlearnData.from_dataset(...) (it trains on the dataset's train split)")
    forget_classes = check_forget_classes(forget_classes, data.num_classes)
    with _Timer() as t:
        cfg = replace(data.train_config, exclude_classes=tuple(forget_classes), seed=int(seed), eval_every=0)
        new = build_model(_model_name(model), data.dataset.input_shape, data.num_classes, seed=int(seed))
        result = train_model(new, data.dataset, codes, cfg, device=_device(model))
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
    data = _need_data("finetune", data)
    fc = check_forget_classes(forget_classes, data.num_classes)
    device = _device(model)

    def epoch_fn(work, opt, gen, augment):
        for idx in _batches(len(data.y_retain), batch_size, gen):
            xb, yb = _batch(data.x_retain, data.y_retain, idx, device, augment, gen)
            _step(work, opt, F.cross_entropy(work(xb), yb))
        return len(data.y_retain)

    with _Timer() as t:
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
    data = _need_data("neggrad", data)
    if not 0.0 <= retain_weight < 1.0:
        raise ConfigError(f"retain_weight must lie in [0, 1), got {retain_weight}")
    fc = check_forget_classes(forget_classes, data.num_classes)
    device = _device(model)
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

    with _Timer() as t:
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
    data = _need_data("random_label", data)
    fc = check_forget_classes(forget_classes, data.num_classes)
    device = _device(model)
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

    with _Timer() as t:
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

    Importances are diagonal Fishers: []_Df on the forget data, []_D on all
    training data (retain + forget, a seeded draw of at most ``max_samples``).
    Every parameter with []_Df,i > alpha * []_D,i is multiplied by
    beta_i = min(lam * []_D,i / []_Df,i, 1); the rest stay.  The selection
    threshold ``alpha`` is chosen on validation from ``alphas`` (paper default
    10, lambda 1).  One backward pass per sample."""
    data = _need_data("ssd", data)
    if not lam > 0:
        raise ConfigError(f"lam must be positive, got {lam}")
    fc = check_forget_classes(forget_classes, data.num_classes)
    with _Timer() as t:
        xf, yf = _subsample(data.x_forget, data.y_forget, max_samples, seed)
        x_all = torch.cat([data.x_retain, data.x_forget])
        y_all = torch.cat([data.y_retain, data.y_forget])
        xa, ya = _subsample(x_all, y_all, max_samples, seed + 1)
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
    data = _need_data("fisher_forgetting", data)
    fc = check_forget_classes(forget_classes, data.num_classes)
    with _Timer() as t:
        xr, yr = _subsample(data.x_retain, data.y_retain, max_samples, seed)
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


# --------------------------------------------------------------------------
# Registry

MethodFn = Callable[..., MethodResult]


def _variant(base: MethodFn, doc: str, **preset) -> MethodFn:
    """``base`` with some settings preset: a variant is a small diff from its base method."""
    fn = functools.partial(base, **preset)
    fn.__doc__ = doc  # type: ignore[attr-defined]
    fn.__name__ = f"{base.__name__}[{', '.join(f'{k}={v}' for k, v in preset.items())}]"  # type: ignore[attr-defined]
    return fn


METHODS: dict[str, MethodFn] = {
    "mnemonic": mnemonic,
    "mnemonic_paper": _variant(
        mnemonic,
        "mnemonic with the paper's MNIST lambdas (1e-3, 10) fixed: codes only, no data at all.",
        lambda1=1e-3,
        lambda2=10.0,
    ),
    "mnemonic_calibrated": _variant(
        mnemonic,
        "mnemonic with this kit's calibrated step (codes only, see forget.py), paper lambdas fixed.",
        step="calibrated",
        lambda1=1e-3,
        lambda2=10.0,
    ),
    "ours_with_data": ours_with_data,
    "retrain": retrain,
    "finetune": finetune,
    "neggrad": neggrad,
    "neggrad_plus": _variant(
        neggrad,
        "NegGrad+ (Kurmanji et al., NeurIPS 2023): neggrad with retain_weight 0.9 (descend on retain data too).",
        retain_weight=0.9,
        lrs=(1e-2, 5e-2),
    ),
    "random_label": random_label,
    "ssd": ssd,
    "fisher_forgetting": fisher_forgetting,
}

# Which trained model each method starts from ("original" = trained with codes).
INPUT_MODEL: dict[str, str] = {name: "original" for name in METHODS} | {"ours_with_data": "no_codes"}
# Methods that never touch data.
DATA_FREE = ("mnemonic_paper", "mnemonic_calibrated")


def unlearn(
    name: str,
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    **settings,
) -> MethodResult:
    """Run registered method ``name``; checks that the input model is left untouched."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    result = METHODS[name](model, codes, forget_classes, data, seed=seed, **settings)
    for n, p in model.state_dict().items():
        if not torch.equal(p, before[n]):
            raise RuntimeError(f"method {name!r} modified its input model ({n}); this is a bug")
    return result


__all__ = [
    "DATA_FREE",
    "INPUT_MODEL",
    "LAMBDA1_GRID",
    "LAMBDA2_GRID",
    "METHODS",
    "MethodResult",
    "UnlearnData",
    "finetune",
    "fisher_forgetting",
    "linear_fisher",
    "mnemonic",
    "neggrad",
    "ours_with_data",
    "random_label",
    "retrain",
    "sample_fisher",
    "ssd",
    "unlearn",
    "val_score",
]
