"""Diagonal Fisher information estimators.

A Fisher here is a dict ``{name: tensor}`` keyed like ``named_parameters()``
(trainable parameters only; BatchNorm running statistics are buffers and get
none).  All estimators put the model in eval mode, so BatchNorm uses its
running statistics, and restore its mode afterwards.

* :func:`code_fisher` - the paper's Eq. 6: for each class c, the squared
  gradient of the cross-entropy of the model on the code ``xi_c`` with label
  c.  One backward pass per class, independent of the dataset size.
  ``method="vmap"`` computes the same values in one vectorised call;
  ``method="batched"`` runs the codes as one batch and forms the per-class
  squared gradients from layer inputs and output gradients (the fast path).
* :func:`code_fisher_means` - f_F and f_R directly (means over groups of
  classes); on the batched path the Linear layers never materialise a
  per-class gradient.
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
from torch.nn.grad import conv2d_weight

from ..errors import ConfigError

Fisher = dict[str, torch.Tensor]


VERSION = 1  # bump when a change to this module changes a Fisher's numbers


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
    gradients in one vectorised ``torch.func`` call; ``method="batched"`` in
    one batched forward/backward with per-sample gradients formed from layer
    inputs and output gradients (falls back to the loop for layer types it
    does not know; see :func:`batched_supported`).  Tests check all three
    agree.  Either way the cost counts as ``len(classes)`` backward passes.
    """
    device = next(model.parameters()).device
    classes = list(range(len(codes))) if classes is None else [int(c) for c in classes]
    if method == "batched":
        return code_fisher_means(model, codes, [[c] for c in classes], method="batched")
    x = codes[classes].to(device)
    y = torch.tensor(classes, device=device)
    params = trainable(model)
    with _EvalMode(model):
        if method == "vmap":
            detached = {n: p.detach() for n, p in params.items()}
            grads = _per_sample_grad_fn(model)(detached, x, y)
            return [{n: g[k].detach() ** 2 for n, g in grads.items()} for k in range(len(classes))]
        if method != "loop":
            raise ValueError(f"method must be one of {', '.join(FISHER_METHODS)}, got {method!r}")
        out = []
        for k in range(len(classes)):
            loss = F.cross_entropy(model(x[k : k + 1]), y[k : k + 1])
            gs = torch.autograd.grad(loss, list(params.values()))
            out.append({n: g.detach() ** 2 for n, g in zip(params, gs)})
        return out


FISHER_METHODS = ("loop", "vmap", "batched")


def code_fisher_means(
    model: nn.Module,
    codes: torch.Tensor,
    groups: Sequence[Sequence[int]],
    method: str = "batched",
) -> list[Fisher]:
    """Mean code Fisher over each group of classes: ``[mean_{c in g} (grad CE(f(xi_c), c))^2 for g in groups]``.

    With ``groups = [forget_classes, retain_classes]`` this is ``[f_F, f_R]``
    of Eq. 6.  ``method="loop"``/``"vmap"`` average :func:`code_fisher`'s
    per-class values with :func:`mean_fisher` (the reference).
    ``method="batched"`` runs every needed code in one batch; for a 2-D
    Linear layer the group mean of squared per-sample gradients is
    ``(w * delta^2)^T a^2`` (the squared outer product factorises), one
    matrix product per layer; Conv2d takes one weight-gradient convolution
    per sample, squared straight into the group sums, and eval-mode
    BatchNorm forms its small per-sample gradients directly.  Models with other
    parametrised layers fall back to the loop.
    """
    if method not in FISHER_METHODS:
        raise ValueError(f"method must be one of {', '.join(FISHER_METHODS)}, got {method!r}")
    groups = [[int(c) for c in g] for g in groups]
    if any(not g for g in groups):
        raise ValueError("every group of classes needs at least one class")
    classes = sorted({c for g in groups for c in g})
    if method != "batched" or batched_supported(model) is not None:
        per = dict(zip(classes, code_fisher(model, codes, classes, "loop" if method == "batched" else method)))
        return [mean_fisher(per[c] for c in g) for g in groups]
    param = next(model.parameters())
    x = codes[classes].to(param.device)
    y = torch.tensor(classes, device=param.device)
    weights = torch.zeros(len(groups), len(classes), dtype=param.dtype, device=param.device)
    for k, g in enumerate(groups):
        for c in g:
            weights[k, classes.index(c)] += 1.0 / len(g)
    with _EvalMode(model):
        out = _batched_group_fisher(model, x, y, weights)
    if out is None:  # a layer ran twice in one forward (shared weights): use the loop
        return code_fisher_means(model, codes, groups, method="loop")
    return out


def _param_modules(model: nn.Module) -> list[nn.Module]:
    """Modules that directly own a trainable parameter."""
    return [m for m in model.modules() if any(p is not None and p.requires_grad for p in m._parameters.values())]


def batched_supported(model: nn.Module) -> str | None:
    """``None`` if ``method="batched"`` can handle ``model``, else the reason it cannot.

    Supported: ``nn.Linear``, ``nn.Conv2d`` (numeric padding, one group,
    zero padding) and BatchNorm with running statistics (used in eval mode).
    A layer that runs twice in one forward (shared weights), or whose output
    is later modified in place, is detected at run time and also sends the
    computation to the loop.
    """
    modules = _param_modules(model)
    owned = [id(p) for m in modules for p in m._parameters.values() if p is not None]
    if len(owned) != len(set(owned)):
        return "a parameter shared between layers"
    for m in modules:
        if isinstance(m, nn.Linear):
            continue
        if isinstance(m, nn.Conv2d):
            if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
                return f"{type(m).__name__} with groups, a padding mode or string padding"
            continue
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.running_mean is None or m.running_var is None:
                return "BatchNorm without running statistics"
            continue
        return f"layer type {type(m).__name__}"
    return None


def _batched_group_fisher(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor
) -> list[Fisher] | None:
    """Group means of squared per-sample gradients from one batched forward/backward.

    ``weights[k, i]`` is the weight of sample ``i`` in group ``k``.  The loss
    is the *sum* of per-sample cross-entropies, so the gradient with respect
    to a layer's output at sample ``i`` is exactly that of sample ``i``
    alone (batch of one); BatchNorm uses running statistics, so samples do
    not interact.  Returns ``None`` if a layer ran more than once.
    """
    modules = _param_modules(model)
    inputs: dict[nn.Module, torch.Tensor] = {}
    outputs: dict[nn.Module, torch.Tensor] = {}
    calls = {m: 0 for m in modules}
    versions: dict[nn.Module, int] = {}

    def hook(module, inp, out):
        calls[module] += 1
        inputs[module], outputs[module], versions[module] = inp[0].detach(), out, out._version

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.enable_grad():
            loss = F.cross_entropy(model(x), y, reduction="sum")
    finally:
        for h in handles:
            h.remove()
    if any(n != 1 for n in calls.values()) or any(outputs[m]._version != v for m, v in versions.items()):
        return None  # shared layer, or an output changed in place: its gradient is not the layer's
    deltas = torch.autograd.grad(loss, [outputs[m] for m in modules])
    name_of = {id(p): n for n, p in trainable(model).items()}
    fisher: list[Fisher] = [{} for _ in range(len(weights))]
    with torch.no_grad():
        for m, d in zip(modules, deltas):
            for local, value in _group_squares(m, inputs[m], d, weights).items():
                p = m._parameters[local]
                if p is not None and p.requires_grad:
                    for k in range(len(weights)):
                        fisher[k][name_of[id(p)]] = value[k]
    return [{n: f[n] for n in name_of.values()} for f in fisher]


def _group_squares(m: nn.Module, a: torch.Tensor, d: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{local param name: (groups, *param.shape)}`` weighted sums of squared per-sample gradients.

    ``a`` is the layer's input and ``d`` the gradient of the summed loss with
    respect to its output, both with the batch first.
    """
    n_groups, batch = weights.shape
    per: dict[str, torch.Tensor] = {}
    if isinstance(m, nn.Linear) and a.dim() == 2:
        # grad W_i = d_i a_i^T, so (grad W_i)^2 = d_i^2 (a_i^2)^T: the weighted sum is one product
        d2, a2 = d * d, a * a
        return {"weight": torch.matmul((weights[:, :, None] * d2[None]).transpose(1, 2), a2), "bias": weights @ d2}
    if isinstance(m, nn.Linear):
        a3, d3 = a.reshape(batch, -1, a.shape[-1]), d.reshape(batch, -1, d.shape[-1])
        per = {"weight": torch.bmm(d3.transpose(1, 2), a3), "bias": d3.sum(1)}
    elif isinstance(m, nn.Conv2d):
        # one weight-gradient convolution per sample, squared straight into the group sums
        # (never holding all per-sample gradients of a layer at once)
        w = weights.tolist()
        acc = torch.zeros((n_groups, *m.weight.shape), dtype=d.dtype, device=d.device)
        for i in range(batch):
            g = conv2d_weight(a[i : i + 1], m.weight.shape, d[i : i + 1], m.stride, m.padding, m.dilation, m.groups)
            for k in range(n_groups):
                if w[k][i]:
                    acc[k].addcmul_(g, g, value=w[k][i])
        out = {"weight": acc}
        if m.bias is not None:
            out["bias"] = weights @ d.sum((2, 3)).square()
        return out
    else:  # BatchNorm in eval mode: y = (a - mean) / sqrt(var + eps) * weight + bias
        assert isinstance(m, nn.modules.batchnorm._BatchNorm), "batched_supported admits no other layer"
        mean, var = m.get_buffer("running_mean"), m.get_buffer("running_var")
        shape = (1, -1) + (1,) * (a.dim() - 2)
        x_hat = (a - mean.view(shape)) / torch.sqrt(var.view(shape) + m.eps)
        dims = tuple(range(2, a.dim()))
        per = {"weight": (d * x_hat).sum(dims) if dims else d * x_hat, "bias": d.sum(dims) if dims else d}
    out = {}
    for name, g in per.items():
        if m._parameters.get(name) is not None:
            sq = g * g
            out[name] = (weights @ sq.reshape(batch, -1)).view(n_groups, *sq.shape[1:])
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


def minibatch_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128) -> Fisher:
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


def linear_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> dict | None:
    """Exact per-sample empirical diagonal Fisher for models built only of ``nn.Linear`` layers.

    For a linear layer ``z = W a + b`` the per-sample gradient is ``g_i a_i^T`` with
    ``g_i = d loss_i / d z_i``, so ``sum_i (g_i a_i^T)^2 = (g^2)^T (a^2)``: one batched
    forward/backward gives the same numbers as :func:`mnemonic_mu.algorithms.fisher.data_fisher`
    (a test checks this) without materialising per-sample gradients.  Returns
    ``None`` when some trainable parameter is not a Linear weight or bias (each
    Linear used once per forward); callers then fall back to ``data_fisher``.
    """
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    names: set[str] = set()
    for n, m in linears.items():
        names.update(f"{n}.{k}" for k, p in m.named_parameters(recurse=False) if p.requires_grad)
    params = trainable(model)
    if not linears or names != set(params):
        return None
    device = next(model.parameters()).device
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
    else :func:`mnemonic_mu.algorithms.fisher.data_fisher`.  Either way one backward pass per sample."""
    if len(y) == 0:
        raise ConfigError("a data Fisher needs at least one sample")
    fast = linear_fisher(model, x, y)
    return fast if fast is not None else data_fisher(model, x, y, chunk_size=chunk_size)


__all__ = [
    "linear_fisher",
    "sample_fisher",
    "FISHER_METHODS",
    "Fisher",
    "batched_supported",
    "code_fisher",
    "code_fisher_means",
    "data_fisher",
    "fisher_distance",
    "mean_fisher",
    "minibatch_fisher",
    "trainable",
]
