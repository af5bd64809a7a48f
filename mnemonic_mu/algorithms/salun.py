"""SalUn: random-label fine-tuning restricted to the weights salient to the forget data (Fan, Liu,
Zhang, Wong, Wei, Liu, "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in
Both Image Classification and Generation", ICLR 2024), behind the one signature of
:mod:`mnemonic_mu.algorithms.method_api`.

1. The forget loss's gradient at the trained weights, ``g = d CE(D_f) / d theta``
   (:func:`forget_gradient`), and the saliency mask ``m = 1(|g| >= gamma)`` (their Eq. 3), with
   ``gamma`` set so that a fraction ``mask_ratio`` of all trainable weights, counted over the whole
   model, is salient (:func:`saliency_mask`).
2. Random-label fine-tuning (their "RL"; the kit's :func:`~mnemonic_mu.algorithms.baselines.random_label`
   epoch) in which only the salient weights move: ``theta_u = m * (theta_o + delta) + (1 - m) * theta_o``
   (their Eq. 4; :func:`masked_step`).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .baselines import Chooser, Selection, StepFn, random_label_epoch, sgd_search
from .fisher import trainable
from .method_api import MethodResult, Timer, UnlearnData, model_device, need_data
from .metrics import check_forget_classes

Mask = dict[str, torch.Tensor]  # a bool tensor per trainable parameter, keyed like named_parameters()

WEIGHT_DECAY = 5e-4  # the kit's SGD weight decay (the training recipe's), on the salient weights only


def forget_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128
) -> dict[str, torch.Tensor]:
    """The gradient of the mean cross-entropy over all of ``(x, y)`` at the model's weights, the
    model in eval mode (its mode restored after), computed in chunks of ``batch_size`` (the chunking
    does not change the value beyond rounding)."""
    if len(y) == 0:
        raise ConfigError("a saliency mask needs at least one forget sample")
    device = model_device(model)
    params = trainable(model)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(y), int(batch_size)):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            loss = F.cross_entropy(model(xb), yb, reduction="sum")
            for n, g in zip(params, torch.autograd.grad(loss, list(params.values()))):
                total[n] += g.detach()
    finally:
        model.train(was_training)
    return {n: t / len(y) for n, t in total.items()}


def salient_count(n: int, ratio: float) -> int:
    """How many of ``n`` weights a mask of ``ratio`` keeps at least: ``ratio * n`` rounded to the
    nearest whole number (halves up), at least 1."""
    return max(1, math.floor(float(ratio) * n + 0.5))


def check_ratio(ratio: float) -> float:
    ratio = float(ratio)
    if not 0.0 < ratio <= 1.0:  # also refuses NaN
        raise ConfigError(f"a saliency mask ratio is the fraction of weights kept, in (0, 1]; got {ratio}")
    return ratio


def saliency_mask(grads: dict[str, torch.Tensor], ratio: float) -> Mask:
    """The saliency mask ``1(|g| >= gamma)`` (Fan et al., Eq. 3), one threshold for the whole model:
    ``gamma`` is the k-th largest ``|g|`` over every entry of every tensor of ``grads``, k =
    :func:`salient_count` (N entries, ``ratio``).

    Ties at ``gamma`` are all kept, so the mask holds k weights, or more when several share the
    threshold's value.  A weight whose gradient is exactly zero is never salient (no saliency to
    the forget loss), so the mask holds fewer than k when fewer than k gradients are non-zero."""
    ratio = check_ratio(ratio)
    if not grads:
        raise ConfigError("a saliency mask needs at least one parameter")
    flat = torch.cat([g.detach().abs().flatten() for g in grads.values()])
    gamma = torch.topk(flat, salient_count(flat.numel(), ratio), sorted=True).values[-1]
    return {n: (g.detach().abs() >= gamma) & (g != 0) for n, g in grads.items()}


def masked_step(mask: Mask, weight_decay: float = WEIGHT_DECAY) -> StepFn:
    """An optimiser step that moves only the salient weights: after the backward pass each
    parameter's gradient plus ``weight_decay`` times the parameter (SGD's weight decay, here so that
    it too stays inside the mask) is set to zero outside ``mask``; the optimiser (SGD with momentum,
    no weight decay of its own) then leaves those weights exactly where they were."""

    def step(model: nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for n, p in trainable(model).items():
                if p.grad is not None:
                    g = p.grad.add(p, alpha=float(weight_decay))
                    p.grad.copy_(torch.where(mask[n], g, torch.zeros_like(g)))
        opt.step()

    return step


def salun(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    *,
    lrs: Sequence[float],
    epochs: int,
    mask_ratios: Sequence[float],
    batch_size: int = 128,
    selection: Selection = Selection(),
) -> MethodResult:
    """SalUn (Fan et al., ICLR 2024), its random-label form: the saliency mask of each ratio in
    ``mask_ratios`` from the forget samples' cross-entropy gradient at the trained weights
    (:func:`forget_gradient`, :func:`saliency_mask`; computed once), then random-label fine-tuning
    (:func:`~mnemonic_mu.algorithms.baselines.random_label_epoch`: forget samples relabelled with a
    random remaining class, each batch paired with as many random retain samples) in which only the
    salient weights move (:func:`masked_step`; SGD, momentum 0.9, weight decay 5e-4 on the salient
    weights).

    The grid is ``mask_ratios`` x ``lrs`` x epochs 1..``epochs``, the released settings first
    (ratio 0.5, lr 0.013, 10 epochs), chosen on validation by ``selection`` (:class:`Selection`).
    Backward passes: one per forget sample for the gradient, then one per sample per epoch."""
    data = need_data("salun", data)
    ratios = tuple(check_ratio(r) for r in mask_ratios)
    if not ratios or not lrs:
        raise ConfigError(f"salun needs non-empty grids, got mask_ratios {tuple(mask_ratios)}, lrs {tuple(lrs)}")
    fc = check_forget_classes(forget_classes, data.num_classes)
    device = model_device(model)
    with Timer() as t:
        grads = forget_gradient(model, data.x_forget, data.y_forget, batch_size)
        masks = {r: saliency_mask(grads, r) for r in ratios}
        runs = [
            ({"mask_ratio": r, "lr": lr}, random_label_epoch(data, fc, batch_size, device, masked_step(masks[r])))
            for r in ratios
            for lr in lrs
        ]
        chooser = Chooser(model, data, fc, selection)
        new, chosen, passes = sgd_search(model, runs, epochs, seed, chooser, weight_decay=0.0)
    mask = masks[chosen["mask_ratio"]]
    salient = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
    info = chooser.info() | {"saliency_samples": len(data.y_forget), "salient_fraction": salient}
    return MethodResult(new, t.seconds, len(data.y_forget) + passes, chosen, chooser.search, info)


__all__ = ["WEIGHT_DECAY", "forget_gradient", "masked_step", "salient_count", "saliency_mask", "salun"]
