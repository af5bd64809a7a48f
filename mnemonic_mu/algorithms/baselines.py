"""The data-based baselines the mnemonic step is compared with, behind the one signature of
:mod:`mnemonic_mu.algorithms.method_api`.  Each docstring cites the method's source.  The grids
they search are arguments without a default: each method's values live in its registry entry
(:data:`mnemonic_mu.algorithms.methods.METHODS`), which passes them."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..errors import ConfigError
from .dataset import make_augment
from .fisher import Fisher, minibatch_fisher, sample_fisher, trainable
from .forget import check_model_finite, fisher_ratio, layer_alphas, perturbed
from .method_api import MethodResult, Timer, UnlearnData, model_device, need_data, subsample, val_score
from .metrics import check_forget_classes, forgetting_scores, predict_logits
from .models import MODELS, build_model
from .train import train_model


def ours_with_data(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    *,
    lambda1_grid: Sequence[float],
    lambda2_grid: Sequence[float],
    max_samples: int | None = 10_000,
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
    assert best is not None, "the lambda grids are not empty"
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
# Choosing one candidate of a grid on the validation split


@dataclass(frozen=True)
class Selection:
    """The rule that picks a forgetting baseline's hyperparameters from validation A_R and E_F (%).

    1. *target*: among the candidates whose E_F reaches ``target_e_f`` and that have kept
       A_R at least ``collapse_ratio`` times the original's A_R, the largest A_R;
    2. *retain budget*: if there is none, among the candidates whose A_R is at most ``max_drop``
       points below the original's, the largest E_F (then the largest A_R);
    3. *least damage*: if there is none either, the largest A_R.

    Ties go to the first candidate in grid order.  A_R + E_F (the kit's score for the other
    methods) can prefer a model that forgets by collapsing (A_R 40, E_F 100 scores above
    A_R 95, E_F 40); this rule cannot: a collapsed model is never in tier 1, and it loses
    more than ``max_drop`` points, so it is never in tier 2.

    ``collapse_ratio`` 0.95 was chosen on validation splits only (``docs/baselines.md``, made by
    ``python benchmarks/validation_studies.py --study selection``): the ratio 0.5 used before let
    tier 1 take candidates that had lost up to half of the original's A_R.
    """

    target_e_f: float = 99.0  # E_F (%) that counts as forgotten (the kit's results count E_F >= 99)
    max_drop: float = 5.0  # retain budget: the most validation A_R points tier 2 may lose
    collapse_ratio: float = 0.95  # tier 1 refuses a model that lost more than 5 % of the original's A_R

    TIERS = {2: "target", 1: "retain budget", 0: "least damage"}

    def key(self, a_r: float, e_f: float, a_r_original: float) -> tuple[int, float, float]:
        """A sort key: the candidate with the largest key is chosen (tier, then within the tier)."""
        a_r, e_f = (0.0 if math.isnan(v) else float(v) for v in (a_r, e_f))
        if e_f >= self.target_e_f and a_r >= self.collapse_ratio * a_r_original:
            return (2, a_r, e_f)
        if a_r >= a_r_original - self.max_drop:
            return (1, e_f, a_r)
        return (0, a_r, e_f)

    def choose(self, scores: Sequence[tuple[float, float]], a_r_original: float) -> int:
        """Index of the chosen candidate among ``scores`` = [(A_R, E_F), ...] (first on ties)."""
        if not scores:
            raise ConfigError("nothing to choose from: the grid is empty")
        keys = [self.key(a_r, e_f, a_r_original) for a_r, e_f in scores]
        return max(range(len(keys)), key=lambda i: (keys[i], -i))


class Chooser:
    """Scores candidates on validation as they come and keeps the best one.

    With a :class:`Selection` the rule above; with ``None`` the kit's A_R + E_F
    (:func:`~mnemonic_mu.algorithms.method_api.val_score`), first on ties either way.
    """

    def __init__(self, model: nn.Module, data: UnlearnData, forget_classes: Sequence[int], selection: Selection | None):
        self.data, self.forget_classes, self.selection = data, forget_classes, selection
        self.a_r_original = self._scores(model)[0] if selection is not None else float("nan")
        self.best: tuple | None = None
        self.search: list[dict] = []

    def _scores(self, model: nn.Module) -> tuple[float, float]:
        return forgetting_scores(predict_logits(model, self.data.x_val), self.data.y_val.cpu(), self.forget_classes)

    def offer(self, model: nn.Module, params: dict, keep_copy: bool = False, **extra) -> None:
        a_r, e_f = self._scores(model)
        score = (0.0 if math.isnan(a_r) else a_r) + (0.0 if math.isnan(e_f) else e_f)
        entry = params | {"val_score": score, "val_A_R": a_r, "val_E_F": e_f} | extra
        key: tuple  # (score,), or the selection's (tier, ...)
        if self.selection is None:
            key = (score,)
        else:
            key = self.selection.key(a_r, e_f, self.a_r_original)
            entry["tier"] = Selection.TIERS[key[0]]
        self.search.append(entry)
        if self.best is None or key > self.best[0]:
            self.best = (key, copy.deepcopy(model) if keep_copy else model, dict(params), entry)

    def info(self) -> dict:
        if self.selection is None or self.best is None:
            return {}
        return {
            "selection": self.best[3]["tier"],
            "val_A_R_original": self.a_r_original,
            "val_A_R": self.best[3]["val_A_R"],
            "val_E_F": self.best[3]["val_E_F"],
        }


# --------------------------------------------------------------------------
# Gradient-based baselines


def batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """One pass over ``range(n)`` in mini-batches of indices, in a random order drawn from ``gen``."""
    perm = torch.randperm(n, generator=gen)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def _endless_batches(n: int, batch_size: int, gen: torch.Generator):
    """Mini-batches of ``range(n)``, pass after pass, each pass in a fresh random order."""
    while True:
        yield from batches(n, batch_size, gen)


def sgd_search(
    model: nn.Module,
    runs: Sequence[tuple[dict, Callable]],
    epochs: int,
    seed: int,
    chooser: Chooser,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> tuple[nn.Module, dict, int]:
    """For each run ``(params, epoch_fn)`` (``params["lr"]`` its learning rate), train a copy of
    ``model`` with ``epoch_fn`` for ``epochs`` epochs and offer the model after every epoch to
    ``chooser``; return the chosen (model, params with its epoch count, backward passes)."""
    if int(epochs) < 1:
        raise ConfigError(f"epochs must be at least 1, got {epochs}")
    passes = 0
    for params, epoch_fn in runs:
        lr = params["lr"]
        if not float(lr) > 0:
            raise ConfigError(f"learning rates must be positive, got {lr}")
        work = copy.deepcopy(model)
        opt = torch.optim.SGD(work.parameters(), lr=float(lr), momentum=momentum, weight_decay=weight_decay)
        gen = torch.Generator().manual_seed(int(seed))
        for epoch in range(1, int(epochs) + 1):
            work.train()
            passes += epoch_fn(work, opt, gen)
            work.eval()
            if not all(bool(torch.isfinite(p).all()) for p in work.parameters()):
                chooser.search.append(params | {"epochs": epoch, "val_score": float("nan"), "diverged": True})
                break
            chooser.offer(work, params | {"epochs": epoch}, keep_copy=True)
    if chooser.best is None:
        raise ConfigError("every learning rate diverged; pass smaller lrs")
    return chooser.best[1], chooser.best[2], passes


def optimizer_step(model, opt, loss) -> None:
    """One step of ``opt`` down the gradient of ``loss``."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def load_batch(x, y, idx, device, augment, gen):
    """The samples ``idx`` of ``(x, y)`` on ``device``, augmented when ``augment`` is given."""
    xb, yb = x[idx].to(device), y[idx].to(device)
    if augment is not None:
        xb = augment(xb, gen)
    return xb, yb


def data_augment(data: UnlearnData):
    """The training recipe's augmentation of ``data``'s dataset (``None``: none)."""
    return make_augment(data.dataset) if data.dataset is not None else None


def finetune(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    *,
    lrs: Sequence[float],
    epochs: int,
    batch_size: int = 128,
) -> MethodResult:
    """Fine-tune on the retain data only, a few epochs (the "Fine-tune" baseline of
    Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless Net", CVPR 2020):
    forgetting relies on catastrophic forgetting of C_F.  ``lrs`` and the epoch
    count (1..``epochs``) are chosen on validation by A_R + E_F."""
    data = need_data("finetune", data)
    fc = check_forget_classes(forget_classes, data.num_classes)
    device, augment = model_device(model), data_augment(data)

    def epoch_fn(work, opt, gen):
        for idx in batches(len(data.y_retain), batch_size, gen):
            xb, yb = load_batch(data.x_retain, data.y_retain, idx, device, augment, gen)
            optimizer_step(work, opt, F.cross_entropy(work(xb), yb))
        return len(data.y_retain)

    with Timer() as t:
        chooser = Chooser(model, data, fc, None)
        new, chosen, passes = sgd_search(model, [({"lr": lr}, epoch_fn) for lr in lrs], epochs, seed, chooser)
    return MethodResult(new, t.seconds, passes, chosen, chooser.search)


def neggrad(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    *,
    lrs: Sequence[float],
    epochs: int,
    batch_size: int = 128,
    retain_weights: Sequence[float] = (0.0,),
    selection: Selection = Selection(),
) -> MethodResult:
    """NegGrad: gradient *ascent* on the forget data, minimising ``-CE(forget batch)``, one
    pass over the forget data per epoch (the "NegGrad" baseline of Golatkar, Achille, Soatto,
    CVPR 2020, and of Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded
    Machine Unlearning", NeurIPS 2023).

    With a retain weight ``beta > 0`` it is NegGrad+ (Kurmanji et al.): each step minimises
    ``beta * CE(retain batch) - (1 - beta) * CE(forget batch)``; as in their code, an epoch is
    one pass over the retain data, each retain batch paired with the next forget batch
    (the forget data reshuffled whenever it runs out).

    The grid is ``retain_weights`` x ``lrs`` x epochs 1..``epochs`` (SGD with the training
    recipe's momentum 0.9 and weight decay 5e-4); the candidate is chosen on validation by
    ``selection`` (:class:`Selection`), never by A_R + E_F, which rewards a collapsed model."""
    data = need_data("neggrad", data)
    if not retain_weights or not all(0.0 <= float(b) < 1.0 for b in retain_weights):
        raise ConfigError(f"retain weights must lie in [0, 1), got {retain_weights}")
    fc = check_forget_classes(forget_classes, data.num_classes)
    device, augment = model_device(model), data_augment(data)
    n_r, n_f = len(data.y_retain), len(data.y_forget)

    def ascent_epoch(work, opt, gen):  # NegGrad: one pass over the forget data
        for idx in batches(n_f, batch_size, gen):
            xf, yf = load_batch(data.x_forget, data.y_forget, idx, device, augment, gen)
            optimizer_step(work, opt, -F.cross_entropy(work(xf), yf))
        return n_f

    def plus_epoch(beta):  # NegGrad+: one pass over the retain data, forget batches alongside
        def epoch_fn(work, opt, gen):
            passes, forget_batches = 0, _endless_batches(n_f, batch_size, gen)
            for idx in batches(n_r, batch_size, gen):
                fidx = next(forget_batches)
                xr, yr = load_batch(data.x_retain, data.y_retain, idx, device, augment, gen)
                xf, yf = load_batch(data.x_forget, data.y_forget, fidx, device, augment, gen)
                loss = beta * F.cross_entropy(work(xr), yr) - (1.0 - beta) * F.cross_entropy(work(xf), yf)
                optimizer_step(work, opt, loss)
                passes += len(idx) + len(fidx)
            return passes

        return epoch_fn

    runs = [
        ({"retain_weight": float(b), "lr": lr}, plus_epoch(float(b)) if b > 0 else ascent_epoch)
        for b in retain_weights
        for lr in lrs
    ]
    with Timer() as t:
        chooser = Chooser(model, data, fc, selection)
        new, chosen, passes = sgd_search(model, runs, epochs, seed, chooser)
    return MethodResult(new, t.seconds, passes, chosen, chooser.search, chooser.info())


StepFn = Callable[[nn.Module, torch.optim.Optimizer, torch.Tensor], None]


def random_label_epoch(
    data: UnlearnData,
    forget_classes: Sequence[int],
    batch_size: int,
    device: torch.device,
    step: StepFn = optimizer_step,
) -> Callable[[nn.Module, torch.optim.Optimizer, torch.Generator], int]:
    """One epoch of random-label fine-tuning, for :func:`sgd_search`: one pass over the forget
    samples in batches of ``batch_size``, each relabelled with a random remaining class (drawn afresh
    each epoch) and paired with as many retain samples drawn at random; one ``step`` (default: a
    plain optimiser step; :func:`~mnemonic_mu.algorithms.salun.salun` masks it) per batch of the
    cross-entropy over the pair.  Returns the backward passes (samples) of the epoch.
    :func:`random_label` and SalUn share it."""
    remaining = torch.tensor([c for c in range(data.num_classes) if c not in forget_classes])
    augment, n_r = data_augment(data), len(data.y_retain)

    def epoch_fn(work, opt, gen):
        passes = 0
        for idx in batches(len(data.y_forget), batch_size, gen):
            xf, _ = load_batch(data.x_forget, data.y_forget, idx, device, augment, gen)
            wrong = remaining[torch.randint(0, len(remaining), (len(idx),), generator=gen)].to(device)
            ridx = torch.randint(0, n_r, (len(idx),), generator=gen)
            xr, yr = load_batch(data.x_retain, data.y_retain, ridx, device, augment, gen)
            step(work, opt, F.cross_entropy(work(torch.cat([xf, xr])), torch.cat([wrong, yr])))
            passes += 2 * len(idx)
        return passes

    return epoch_fn


def random_label(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    *,
    lrs: Sequence[float],
    epochs: int,
    batch_size: int = 128,
) -> MethodResult:
    """Random labels (Graves, Nagisetty, Ganesh, "Amnesiac Machine Learning", AAAI 2021;
    the "RL" baseline of Fan et al., SalUn, ICLR 2024): fine-tune on the forget
    samples relabelled with a random *wrong* class (drawn afresh each epoch, only
    among remaining classes), each forget batch paired with a retain batch of the
    same size.  ``lrs`` and the epoch count are chosen on validation by A_R + E_F."""
    data = need_data("random_label", data)
    fc = check_forget_classes(forget_classes, data.num_classes)
    epoch_fn = random_label_epoch(data, fc, batch_size, model_device(model))
    with Timer() as t:
        chooser = Chooser(model, data, fc, None)
        new, chosen, passes = sgd_search(model, [({"lr": lr}, epoch_fn) for lr in lrs], epochs, seed, chooser)
    return MethodResult(new, t.seconds, passes, chosen, chooser.search)


# --------------------------------------------------------------------------
# Selective Synaptic Dampening


def ssd_dampen(
    model: nn.Module, imp_forget: Fisher, imp_full: Fisher, alpha: float, lam: float
) -> tuple[nn.Module, int]:
    """The SSD step on a copy of ``model``: every parameter with ``[]_Df,i > alpha * []_D,i``
    (selection) is multiplied by ``beta_i = min(lam * []_D,i / []_Df,i, 1)`` (dampening);
    the others stay.  Returns (new model, how many parameters were dampened)."""
    new, changed = copy.deepcopy(model), 0
    with torch.no_grad():
        for n, p in trainable(new).items():
            select = imp_forget[n] > float(alpha) * imp_full[n]
            # where selected, imp_forget > 0, so the ratio is finite; elsewhere it is not used
            beta = (float(lam) * imp_full[n] / imp_forget[n].clamp_min(torch.finfo(p.dtype).tiny)).clamp(max=1.0)
            p.mul_(torch.where(select, beta, torch.ones_like(beta)))
            changed += int(select.sum())
    return new, changed


def ssd(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    *,
    alphas: Sequence[float],
    lambdas: Sequence[float],
    batch_size: int = 64,
    selection: Selection = Selection(),
) -> MethodResult:
    """Selective Synaptic Dampening (Foster, Schoepf, Brintrup, "Fast Machine Unlearning
    Without Retraining Through Selective Synaptic Dampening", AAAI 2024), with the
    importances of their reference code.

    Importances []_D (all training data: retain then forget) and []_Df (forget data) are the
    squared gradient of the mean cross-entropy of each mini-batch of ``batch_size``
    (reference: 64, in order), averaged over the mini-batches, the model in eval mode
    (:func:`~mnemonic_mu.algorithms.fisher.minibatch_fisher`), over the *full* sets.  Then
    :func:`ssd_dampen` with selection threshold alpha and dampening constant lambda.

    The grid is ``alphas`` x ``lambdas``, the paper's values for ResNet18 first (alpha 10,
    lambda 1; its search ranges alpha in [0.1, 100], lambda in [0.1, 5]), chosen on
    validation by ``selection`` (:class:`Selection`); the importances are computed once.
    ``seed`` is unused (SSD is deterministic)."""
    data = need_data("ssd", data)
    if not all(float(lam) > 0 for lam in lambdas) or not lambdas or not alphas:
        raise ConfigError(f"ssd needs a non-empty grid and positive lambdas, got alphas {alphas}, lambdas {lambdas}")
    fc = check_forget_classes(forget_classes, data.num_classes)
    with Timer() as t:
        x_full = torch.cat([data.x_retain, data.x_forget])
        y_full = torch.cat([data.y_retain, data.y_forget])
        imp_forget = minibatch_fisher(model, data.x_forget, data.y_forget, batch_size)
        imp_full = minibatch_fisher(model, x_full, y_full, batch_size)
        chooser = Chooser(model, data, fc, selection)
        for a in alphas:
            for lam in lambdas:
                cand, changed = ssd_dampen(model, imp_forget, imp_full, a, lam)
                chooser.offer(cand, {"alpha": a, "lambda": lam}, dampened=changed)
    n = len(data.y_forget) + len(y_full)
    assert chooser.best is not None, "the alpha and lambda grids are not empty"
    info = chooser.info() | {"importance_samples": n, "dampened": chooser.best[3]["dampened"]}
    return MethodResult(chooser.best[1], t.seconds, n, chooser.best[2], chooser.search, info)


# --------------------------------------------------------------------------
# Fisher forgetting

# The constants of Golatkar et al.'s reference implementation (their "Fisher" noise).
FISHER_EPS = 1e-8  # variance = 1 / (F + FISHER_EPS), before the clamp
MAX_VAR = 1e3  # largest 1 / F of a parameter ...
MAX_VAR_HEAD = 1e2  # ... and of an output-layer parameter
FORGET_ROW_VAR = 1e-4  # variance of the forget classes' output rows (their mean is set to 0)
VAR_BOOST = 10.0  # factor on the output layer's variances and on every 1-D parameter's (biases, BatchNorm)


def predictive_fisher_reference(model: nn.Module, x: torch.Tensor, chunk_size: int = 64) -> Fisher:
    """The diagonal Fisher expected over the model's own prediction, per sample:
    ``F_i = (1/N) sum_n sum_y p(y | x_n) (d CE(f(x_n), y) / d w_i)^2``, the model in eval mode.

    One gradient per (sample, label) pair, as in Golatkar et al.'s code (there a batch of one
    and one backward pass per label), here vectorised with ``torch.func`` over about
    ``chunk_size`` pairs at a time.  Any model; :func:`predictive_fisher` is the fast path."""
    if len(x) == 0:
        raise ConfigError("a data Fisher needs at least one sample")
    device = model_device(model)
    params = {n: p.detach() for n, p in trainable(model).items()}
    buffers = dict(model.named_buffers())

    def loss(params, xi, y):
        return F.cross_entropy(functional_call(model, (params, buffers), (xi.unsqueeze(0),)), y.unsqueeze(0))

    per_label = vmap(vmap(grad(loss), in_dims=(None, None, 0)), in_dims=(None, 0, None))  # (n, K, *shape)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            num_classes = model(x[:1].to(device)).shape[1]
        labels = torch.arange(num_classes, device=device)
        step = max(1, int(chunk_size) // num_classes)
        for i in range(0, len(x), step):
            xb = x[i : i + step].to(device)
            with torch.no_grad():
                prob = model(xb).softmax(1)
            for n, g in per_label(params, xb, labels).items():
                total[n] += torch.einsum("nk,nk...->...", prob, g * g)
    finally:
        model.train(was_training)
    return {n: t / len(x) for n, t in total.items()}


@torch.enable_grad()
def _linear_predictive_fisher(model: nn.Module, x: torch.Tensor, batch_size: int) -> Fisher | None:
    """:func:`predictive_fisher_reference` for models built only of ``nn.Linear`` layers, from
    one forward and K backward passes per batch: for ``z = W a + b`` the gradient for label y
    is ``d_y a^T``, so the weighted sum of squares is ``(sum_y p_y d_y^2)^T a^2``.  ``None``
    when the model is not of that kind (the caller then takes the reference path)."""
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    params = trainable(model)
    owned = {f"{n}.{k}" for n, m in linears.items() for k, p in m.named_parameters(recurse=False) if p.requires_grad}
    if not linears or owned != set(params):
        return None
    device = model_device(model)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    store: dict[str, list] = {}

    def hook(name):
        def fn(module, inputs, output):
            store.setdefault(name, []).append((inputs[0].detach(), output, output._version))

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in linears.items()]
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device)
            store.clear()
            logits = model(xb)
            calls = [store.get(n, []) for n in linears]
            if any(len(c) != 1 or c[0][0].dim() != 2 or c[0][1]._version != c[0][2] for c in calls):
                return None  # a layer used twice or not at all, on non-flat input, or changed in place
            outputs = [c[0][1] for c in calls]
            prob = logits.detach().softmax(1)
            weighted = [torch.zeros_like(z) for z in outputs]  # sum_y p_y d_y^2 per sample, per layer
            for y in range(logits.shape[1]):
                target = torch.full((len(xb),), y, dtype=torch.long, device=device)
                loss = F.cross_entropy(logits, target, reduction="sum")  # samples do not interact
                deltas = torch.autograd.grad(loss, outputs, retain_graph=True)
                for acc, d in zip(weighted, deltas):
                    acc += prob[:, y : y + 1] * d * d
            for (n, m), acc, c in zip(linears.items(), weighted, calls):
                a = c[0][0]
                if m.weight.requires_grad:
                    total[f"{n}.weight"] += acc.T @ (a * a)
                if m.bias is not None and m.bias.requires_grad:
                    total[f"{n}.bias"] += acc.sum(0)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {n: t / len(x) for n, t in total.items()}


def predictive_fisher(model: nn.Module, x: torch.Tensor, chunk_size: int = 64, batch_size: int = 512) -> Fisher:
    """:func:`predictive_fisher_reference`'s numbers: the exact Linear-only fast path when the
    model allows, else the reference path (tests check that both agree with a plain loop)."""
    if len(x) == 0:
        raise ConfigError("a data Fisher needs at least one sample")
    fast = _linear_predictive_fisher(model, x, batch_size)
    return fast if fast is not None else predictive_fisher_reference(model, x, chunk_size)


def head_names(model: nn.Module) -> set[str]:
    """Names of the output layer's trainable parameters (every kit model has ``head``)."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise ConfigError(f"fisher_forgetting needs the output layer as model.head; {type(model).__name__} has none")
    ids = {id(p) for p in head.parameters()}
    return {n for n, p in trainable(model).items() if id(p) in ids}


def fisher_noise(
    model: nn.Module, fisher: Fisher, forget_classes: Sequence[int], alpha: float
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Mean and variance of the Fisher-forgetting noise, per parameter (Golatkar et al.'s code):

    * ``var_i = alpha * min(1 / (F_i + 1e-8), 1e3)`` (``1e2`` in the output layer);
    * a weight of two or more dimensions takes, per output unit, the mean of its variances
      over the inputs (``var.mean(1)``);
    * the output rows (weight row and bias) of the forget classes get mean 0 and variance 1e-4;
    * the output layer's variances, and those of every 1-D parameter (biases, BatchNorm),
      are multiplied by 10.

    Every other mean is the trained weight.  Returns ``(mean, var)`` keyed like ``fisher``."""
    head = head_names(model)
    rows = list(forget_classes)
    mean, var = {}, {}
    for n, p in trainable(model).items():
        v = (1.0 / (fisher[n] + FISHER_EPS)).clamp(max=MAX_VAR_HEAD if n in head else MAX_VAR) * float(alpha)
        if v.dim() > 1:
            v = v.mean(1, keepdim=True).expand_as(v).clone()
        mu = p.detach().clone()
        if n in head:
            mu[rows], v[rows] = 0.0, FORGET_ROW_VAR
        if n in head or v.dim() == 1:
            v = v * VAR_BOOST
        mean[n], var[n] = mu, v
    return mean, var


def fisher_forgetting(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    *,
    alphas: Sequence[float],
    max_samples: int | None = None,
    chunk_size: int = 64,
    selection: Selection = Selection(),
) -> MethodResult:
    """Fisher forgetting (Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless Net:
    Selective Forgetting in Deep Networks", CVPR 2020, Sec. 4), as in their reference code:
    ``w' = mu + sqrt(var) * n``, ``n ~ N(0, I)``, with ``(mu, var)`` of :func:`fisher_noise`
    from the retain data's Fisher expected over the model's prediction
    (:func:`predictive_fisher`).  Directions the remaining data do not constrain get the
    most noise; the forget classes' output rows are reset to zero (plus a little noise).

    What differs from the reference: the output layer is ``model.head`` (the reference takes
    every parameter whose first dimension equals the number of classes); several forget
    classes reset all their rows; ``max_samples`` can cap the retain samples (default: all,
    as in the reference); one noise draw ``n`` (``torch.Generator`` seeded with ``seed``, one
    ``randn`` per parameter in ``named_parameters`` order) serves every alpha; and alpha is
    chosen on validation by ``selection`` over ``alphas``, the reference's 1e-6 first."""
    data = need_data("fisher_forgetting", data)
    fc = check_forget_classes(forget_classes, data.num_classes)
    alphas = tuple(alphas)
    if not alphas or not all(float(a) > 0 for a in alphas):
        raise ConfigError(f"fisher_forgetting needs positive alphas, got {alphas}")
    with Timer() as t:
        xr, _ = subsample(data.x_retain, data.y_retain, max_samples, seed)
        fisher = predictive_fisher(model, xr, chunk_size)
        gen = torch.Generator().manual_seed(int(seed))
        noise = {n: torch.randn(p.shape, generator=gen).to(p.device) for n, p in trainable(model).items()}
        chooser = Chooser(model, data, fc, selection)
        for a in alphas:
            mean, var = fisher_noise(model, fisher, fc, a)
            cand = copy.deepcopy(model)
            with torch.no_grad():
                for n, p in trainable(cand).items():
                    p.copy_(mean[n] + var[n].sqrt() * noise[n])
            chooser.offer(cand, {"alpha": a})
    info = chooser.info() | {"fisher_samples": len(xr)}
    passes = data.num_classes * len(xr)  # one gradient per (retain sample, label)
    assert chooser.best is not None, "the alpha grid is not empty"
    return MethodResult(chooser.best[1], t.seconds, passes, chooser.best[2], chooser.search, info)


__all__ = [
    "Chooser",
    "Selection",
    "batches",
    "data_augment",
    "finetune",
    "fisher_forgetting",
    "fisher_noise",
    "head_names",
    "load_batch",
    "neggrad",
    "optimizer_step",
    "ours_with_data",
    "predictive_fisher",
    "predictive_fisher_reference",
    "random_label",
    "random_label_epoch",
    "retrain",
    "sgd_search",
    "ssd",
    "ssd_dampen",
]
