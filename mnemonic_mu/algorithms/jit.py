"""JiT, zero-shot unlearning by Lipschitz regularisation (Foster, Fogarty, Schoepf, Öztireli,
Brintrup, "Zero-Shot Machine Unlearning at Scale via Lipschitz Regularization", arXiv 2402.01401,
2024; v4 "An Information Theoretic Approach to Machine Unlearning", TMLR 2025).

JiT sees the trained model and the forget samples only (no retain data, no labels).  For each
forget sample ``x`` it draws ``N`` Gaussian perturbations ``x' = x + xi``, ``xi ~ N(0, sigma^2 I)``,
and minimises the mean Lipschitz ratio ``(1/N) sum_i ||f(x) - f(x')||_2 / ||x - x'||_2`` (their
Algorithm 1) with plain SGD at learning rate ``eta``, one epoch over the forget samples: the
model's output is smoothed around the forget points, which moves the decision boundary there.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .baselines import Chooser, Selection, batches, optimizer_step, sgd_search
from .method_api import MethodResult, Timer, UnlearnData, model_device, need_data
from .metrics import check_forget_classes


def lipschitz_ratio(out: torch.Tensor, out_noisy: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """JiT's loss from outputs: the mean over samples ``b`` and perturbations ``i`` of
    ``||out[b] - out_noisy[b, i]||_2 / ||noise[b, i]||_2``.

    ``out``: (B, K) the outputs at the forget samples; ``out_noisy``: (B, N, K) the outputs at the
    perturbed copies; ``noise``: (B, N, *input shape), the perturbations ``x' - x``."""
    if out_noisy.shape[:1] != out.shape[:1] or out_noisy.shape[2:] != out.shape[1:]:
        raise ConfigError(f"out_noisy must be (B, N, K) for out (B, K), got {tuple(out_noisy.shape)}")
    if noise.shape[:2] != out_noisy.shape[:2]:
        raise ConfigError(f"noise must be (B, N, ...) as out_noisy {tuple(out_noisy.shape[:2])}")
    moved = torch.linalg.vector_norm((out.unsqueeze(1) - out_noisy).flatten(2), dim=2)
    step = torch.linalg.vector_norm(noise.flatten(2), dim=2)
    return (moved / step).mean()


def lipschitz_loss(model: nn.Module, x: torch.Tensor, sigma: float, n_perturb: int, gen: torch.Generator):
    """:func:`lipschitz_ratio` of ``model`` at the samples ``x`` (on the model's device) and
    ``n_perturb`` copies of each with Gaussian noise of standard deviation ``sigma`` drawn from the
    CPU generator ``gen``; one forward pass of the samples and their copies together."""
    noise = (torch.randn((len(x), int(n_perturb), *x.shape[1:]), generator=gen) * float(sigma)).to(x.device)
    noisy = (x.unsqueeze(1) + noise).flatten(0, 1)
    out = model(torch.cat([x, noisy]))
    return lipschitz_ratio(out[: len(x)], out[len(x) :].unflatten(0, (len(x), int(n_perturb))), noise)


def jit_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    sigma: float,
    n_perturb: int,
    batch_size: int,
    gen: torch.Generator,
) -> int:
    """One epoch of JiT on ``model`` in place: one ``opt`` step down :func:`lipschitz_loss` per
    mini-batch of the forget inputs ``x`` (in a random order drawn from ``gen``), the model in eval
    mode (BatchNorm keeps its running statistics; the noisy copies do not update them).  Returns
    the samples whose gradient was taken (each sample and its ``n_perturb`` copies)."""
    device = model_device(model)
    model.eval()
    for idx in batches(len(x), int(batch_size), gen):
        optimizer_step(model, opt, lipschitz_loss(model, x[idx].to(device), sigma, n_perturb, gen))
    return len(x) * (int(n_perturb) + 1)


def jit(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    *,
    sigmas: Sequence[float],
    lrs: Sequence[float],
    n_perturb: int = 25,
    epochs: int = 1,
    batch_size: int = 1,
    selection: Selection = Selection(),
) -> MethodResult:
    """JiT (Foster et al., arXiv 2402.01401): :func:`jit_epoch` with plain SGD (no momentum, no
    weight decay) at learning rate ``lr``, ``epochs`` (1, as theirs) passes over the forget inputs,
    ``n_perturb`` (N = 25, as theirs) noisy copies of each sample at noise level ``sigma``.

    Reads ``data.x_forget`` only (never a retain sample, never a label) to unlearn; the grid
    ``sigmas`` x ``lrs`` is chosen on the validation split by ``selection`` (:class:`Selection`),
    the model offered after each epoch.  The noise is seeded by ``seed``."""
    data = need_data("jit", data)
    if not sigmas or not lrs or not all(float(s) > 0 for s in sigmas):
        raise ConfigError(f"jit needs a non-empty grid and positive noise levels, got sigmas {sigmas}, lrs {lrs}")
    if int(n_perturb) < 1 or int(batch_size) < 1:
        raise ConfigError(f"jit needs n_perturb and batch_size of at least 1, got {n_perturb}, {batch_size}")
    fc = check_forget_classes(forget_classes, data.num_classes)

    def run(sigma: float):
        return lambda work, opt, gen: jit_epoch(work, opt, data.x_forget, sigma, n_perturb, batch_size, gen)

    with Timer() as t:
        chooser = Chooser(model, data, fc, selection)
        runs = [({"sigma": s, "lr": lr}, run(s)) for s in sigmas for lr in lrs]
        new, chosen, passes = sgd_search(model, runs, epochs, seed, chooser, momentum=0.0, weight_decay=0.0)
    return MethodResult(new, t.seconds, passes, chosen, chooser.search, chooser.info())


__all__ = ["jit", "jit_epoch", "lipschitz_loss", "lipschitz_ratio"]
