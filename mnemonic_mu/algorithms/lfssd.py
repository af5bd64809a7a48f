"""Loss-Free Selective Synaptic Dampening (Foster, Schoepf, Brintrup, "Loss-Free Machine
Unlearning", ICLR 2024 Tiny Papers, arXiv 2402.19308): SSD with label-free importances.

SSD (:func:`~mnemonic_mu.algorithms.baselines.ssd`) ranks parameters by the diagonal Fisher of
the loss, which needs labels.  LFSSD replaces it by a sensitivity in the spirit of Memory Aware
Synapses (Aljundi et al., ECCV 2018): how much the l2 norm of the model's output moves with each
parameter.  Their reference code (the MIT-licensed SSD repository, whose README gives the two
lines that change) takes, per mini-batch, the gradient of the batch mean of the *squared* l2
norm of each sample's output, and accumulates its *absolute value* (SSD squares it), averaged
over the mini-batches.  The selection and the dampening are SSD's own
(:func:`~mnemonic_mu.algorithms.baselines.ssd_dampen`, the one path).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .baselines import Chooser, Selection, ssd_dampen
from .fisher import Fisher, trainable
from .method_api import MethodResult, Timer, UnlearnData, model_device, need_data
from .metrics import check_forget_classes


def output_norm_sensitivity(model: nn.Module, x: torch.Tensor, batch_size: int = 64) -> Fisher:
    """LFSSD's importance of every trainable parameter, from inputs only (no labels):
    ``mean over mini-batches B of | d/dtheta (1/|B|) sum_{x in B} ||f(x)||_2^2 |``, the mini-batches
    of ``batch_size`` taken in order, the model in eval mode (its mode is restored after)."""
    if len(x) == 0:
        raise ConfigError("an output-norm sensitivity needs at least one sample")
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    device = model_device(model)
    params = trainable(model)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    n_batches = 0
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for i in range(0, len(x), int(batch_size)):
                out = model(x[i : i + int(batch_size)].to(device))
                sq_norm = out.flatten(1).square().sum(1).mean()
                grads = torch.autograd.grad(sq_norm, list(params.values()), allow_unused=True)
                for n, g in zip(params, grads):
                    if g is not None:
                        total[n] += g.detach().abs()
                n_batches += 1
    finally:
        model.train(was_training)
    return {n: t / n_batches for n, t in total.items()}


def lfssd(
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
    """Loss-Free SSD (Foster, Schoepf, Brintrup, ICLR 2024 Tiny Papers): SSD's selection and
    dampening (:func:`~mnemonic_mu.algorithms.baselines.ssd_dampen`) with the label-free
    importances of :func:`output_norm_sensitivity` instead of SSD's squared loss gradients.

    []_Df from the forget samples' inputs, []_D from every training input (retain then forget, as
    :func:`~mnemonic_mu.algorithms.baselines.ssd`), mini-batches of ``batch_size`` (64, as SSD's);
    the labels ``data.y_forget`` and ``data.y_retain`` are never read.  The grid ``alphas`` x
    ``lambdas`` is SSD's, chosen on validation by ``selection`` (:class:`Selection`); the
    importances are computed once.  ``seed`` is unused (LFSSD is deterministic)."""
    data = need_data("lfssd", data)
    if not alphas or not lambdas or not all(float(lam) > 0 for lam in lambdas):
        raise ConfigError(f"lfssd needs a non-empty grid and positive lambdas, got alphas {alphas}, lambdas {lambdas}")
    fc = check_forget_classes(forget_classes, data.num_classes)
    with Timer() as t:
        x_full = torch.cat([data.x_retain, data.x_forget])
        imp_forget = output_norm_sensitivity(model, data.x_forget, batch_size)
        imp_full = output_norm_sensitivity(model, x_full, batch_size)
        chooser = Chooser(model, data, fc, selection)
        for a in alphas:
            for lam in lambdas:
                cand, changed = ssd_dampen(model, imp_forget, imp_full, a, lam)
                chooser.offer(cand, {"alpha": a, "lambda": lam}, dampened=changed)
    n = len(data.x_forget) + len(x_full)
    assert chooser.best is not None, "the alpha and lambda grids are not empty"
    info = chooser.info() | {"importance_samples": n, "dampened": chooser.best[3]["dampened"]}
    return MethodResult(chooser.best[1], t.seconds, n, chooser.best[2], chooser.search, info)


__all__ = ["lfssd", "output_norm_sensitivity"]
