"""Diagonal Fisher information estimators.

A Fisher here is a dict ``{name: tensor}`` keyed like ``named_parameters()``
(trainable parameters only; BatchNorm running statistics are buffers and get
none).  All estimators put the model in eval mode, so BatchNorm uses its
running statistics, and restore its mode afterwards.

* :func:`code_fisher` - the paper's Eq. 6: for each class c, the squared
  gradient of the cross-entropy of the model on the code ``xi_c`` with label
  c.  One backward pass per class, independent of the dataset size.
  ``method="vmap"`` computes the same values in one vectorised call.
* :func:`data_fisher` - the per-sample empirical diagonal Fisher
  ``mean_i (d loss_i / d w)^2`` over real samples, vectorised with
  ``torch.func`` and chunked to bound memory.  On all training samples of
  the forget classes it is the paper's "Oracle Fisher".
* :func:`minibatch_fisher` - ``mean_b (d mean-loss_b / d w)^2`` over
  mini-batches.  Some unlearning code calls this "the Fisher", but it is a
  different quantity: the square of an average is not the average of squares
  (it shrinks roughly by the batch size where gradients disagree).  Provided
  for comparison only.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

Fisher = dict[str, torch.Tensor]


def trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters by name (the tensors the Fisher and the step act on)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


class _EvalMode:
    """Context manager: eval mode inside, the previous mode restored after."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc) -> None:
        self.model.train(self.was_training)


def _per_sample_grad_fn(model: nn.Module):
    """A vmapped function (params, x, y) -> per-sample gradients of the cross-entropy."""
    buffers = dict(model.named_buffers())

    def loss(params, x, y):
        out = functional_call(model, (params, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(out, y.unsqueeze(0))

    return vmap(grad(loss), in_dims=(None, 0, 0))


def code_fisher(
    model: nn.Module,
    codes: torch.Tensor,
    classes: Sequence[int] | None = None,
    method: str = "loop",
) -> list[Fisher]:
    """Per-class code Fisher (Eq. 6): ``[ (grad CE(f(xi_c), c))^2 for c in classes ]``.

    ``method="loop"`` does one forward/backward per class, batch of one (the
    paper's procedure).  ``method="vmap"`` computes the same per-class squared
    gradients in one vectorised ``torch.func`` call (the fast path; tests
    check both agree).  Either way the cost counts as ``len(classes)``
    backward passes.
    """
    device = next(model.parameters()).device
    classes = list(range(len(codes))) if classes is None else [int(c) for c in classes]
    x = codes[classes].to(device)
    y = torch.tensor(classes, device=device)
    params = trainable(model)
    with _EvalMode(model):
        if method == "vmap":
            detached = {n: p.detach() for n, p in params.items()}
            grads = _per_sample_grad_fn(model)(detached, x, y)
            return [{n: g[k].detach() ** 2 for n, g in grads.items()} for k in range(len(classes))]
        if method != "loop":
            raise ValueError(f"method must be 'loop' or 'vmap', got {method!r}")
        out = []
        for k in range(len(classes)):
            loss = F.cross_entropy(model(x[k : k + 1]), y[k : k + 1])
            gs = torch.autograd.grad(loss, list(params.values()))
            out.append({n: g.detach() ** 2 for n, g in zip(params, gs)})
        return out


def mean_fisher(fishers: Iterable[Fisher]) -> Fisher:
    """Element-wise mean of several Fisher dicts (f_F or f_R of Eq. 6)."""
    fishers = list(fishers)
    if not fishers:
        raise ValueError("mean_fisher needs at least one Fisher")
    return {n: torch.stack([f[n] for f in fishers]).mean(0) for n in fishers[0]}


def data_fisher(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    chunk_size: int = 256,
    progress: bool = False,
) -> Fisher:
    """Per-sample empirical diagonal Fisher ``mean_i g_i^2`` over real samples.

    Per-sample gradients come from ``torch.func`` (vmap over grad), ``chunk_size``
    samples at a time so memory stays bounded by ``chunk_size`` copies of the
    parameters.  Costs one backward pass per sample.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    params = {n: p.detach() for n, p in trainable(model).items()}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    if len(y) == 0:
        raise ValueError("data_fisher needs at least one sample")
    with _EvalMode(model):
        fn = _per_sample_grad_fn(model)
        for i in tqdm(range(0, len(y), chunk_size), disable=not progress, desc="fisher", leave=False):
            grads = fn(params, x[i : i + chunk_size].to(device), y[i : i + chunk_size].to(device))
            for n, g in grads.items():
                total[n] += (g**2).sum(0)
    return {n: t / len(y) for n, t in total.items()}


def minibatch_fisher(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128
) -> Fisher:
    """Mean over mini-batches of the squared *mini-batch* gradient (not the per-sample Fisher)."""
    device = next(model.parameters()).device
    params = trainable(model)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    n_batches = 0
    with _EvalMode(model):
        for i in range(0, len(y), batch_size):
            loss = F.cross_entropy(model(x[i : i + batch_size].to(device)), y[i : i + batch_size].to(device))
            gs = torch.autograd.grad(loss, list(params.values()))
            for n, g in zip(params, gs):
                total[n] += g.detach() ** 2
            n_batches += 1
    return {n: t / n_batches for n, t in total.items()}


def fisher_distance(a: Fisher, b: Fisher, normalise: bool = True) -> float:
    """Relative L2 distance between two Fishers (flattened), as in the paper's Fig. 5.

    With ``normalise`` each Fisher is first scaled to unit sum, so the distance
    compares where the sensitivity lies, not its overall magnitude.
    """
    va = torch.cat([a[n].flatten() for n in a]).double()
    vb = torch.cat([b[n].flatten() for n in a]).double()
    if normalise:
        va, vb = va / va.sum().clamp_min(1e-300), vb / vb.sum().clamp_min(1e-300)
    return float((va - vb).norm() / vb.norm().clamp_min(1e-300))


__all__ = [
    "Fisher",
    "code_fisher",
    "data_fisher",
    "fisher_distance",
    "mean_fisher",
    "minibatch_fisher",
    "trainable",
]
