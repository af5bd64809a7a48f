"""Zero-shot unlearning: the two methods of Chundawat, Tarun, Mandal, Kankanhalli, "Zero-Shot
Machine Unlearning", IEEE TIFS 2023 (arXiv 2201.05629), behind the one signature of
:mod:`~mnemonic_mu.algorithms.method_api`.

Both see nothing of the data: the model alone (and, where the request has them, the shape of its
codes, to know the input shape of a model that does not say it).  Neither can choose a
hyperparameter on the validation split without seeing it, so each runs with fixed values, given
by its registry entry (:data:`~mnemonic_mu.algorithms.methods.METHODS`), which docs/baselines.md
states with their sources.

* :func:`emmn` - error minimising-maximising noise: for each forget class a batch of noise that
  *maximises* the model's loss on that label (:func:`noise_objective` with ``maximize=True``), for
  each retain class a batch that *minimises* it, both with an L2 penalty on the noise; then an
  impair pass (the model trained on all the noise with its labels, a high learning rate) and a
  repair pass (on the retain classes' noise only).
* :func:`gkt` - gated knowledge transfer: a generator searches for pseudo-samples on which a
  fresh student disagrees with the model (the teacher); the band-pass gate (:func:`gate`) drops
  every pseudo-sample to which the teacher gives a forget class more than ``threshold`` of its
  probability; the student is distilled from the teacher on the rest (KL plus the attention term
  of :func:`attention_loss`).  The kit's generator is a reduced one (:class:`MLPGenerator`) run
  for far fewer pseudo-batches than the authors' (:data:`GKT_REDUCED`).  It is not a registered
  method (too slow on a laptop CPU for what it keeps; docs/baselines.md gives the numbers).
"""

from __future__ import annotations

import copy
import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .method_api import MethodResult, Timer, UnlearnData, model_device
from .metrics import check_forget_classes

# --------------------------------------------------------------------------
# Shared


def input_shape(model: nn.Module, codes: torch.Tensor | None) -> tuple[int, ...]:
    """The shape of one input of ``model``: that of a code when the request has codes, else the
    input width of a model whose first layer is a linear one (the kit's MLP flattens its input)."""
    if codes is not None and codes.dim() >= 2:
        return tuple(int(d) for d in codes.shape[1:])
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), None)
    if isinstance(first, nn.Linear):
        return (int(first.in_features),)
    raise ConfigError(
        "a zero-shot method needs the input shape: pass the model's codes (one per class) or a model "
        "whose first layer is linear"
    )


def _frozen(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with no parameter taking gradients (the input model is never
    touched, not even its ``.grad``)."""
    copy_ = copy.deepcopy(model).eval()
    for p in copy_.parameters():
        p.requires_grad_(False)
    return copy_


def _num_classes(model: nn.Module, shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(model(torch.zeros(1, *shape, device=model_device(model))).shape[1])


def _randn(gen: torch.Generator, *shape: int, device: torch.device) -> torch.Tensor:
    """Standard normal draws from the CPU generator ``gen``, then moved: the same numbers on any device."""
    return torch.randn(*shape, generator=gen).to(device)


# --------------------------------------------------------------------------
# EMMN: error minimising-maximising noise


def noise_penalty(noise: torch.Tensor) -> torch.Tensor:
    """The noise regulariser: the squared L2 norm of each noise sample, averaged over the batch."""
    return noise.pow(2).flatten(1).sum(1).mean()


def noise_objective(
    model: nn.Module, noise: torch.Tensor, label: int, maximize: bool, noise_lambda: float
) -> torch.Tensor:
    """What the noise for class ``label`` minimises: ``-CE + lambda * penalty`` for the forget
    classes' error-maximising noise (``maximize``), ``CE + lambda * penalty`` for the retain
    classes' error-minimising noise; CE is the mean cross-entropy of ``model`` on ``noise`` with
    every sample labelled ``label`` (:func:`noise_penalty`)."""
    target = torch.full((len(noise),), int(label), dtype=torch.long, device=noise.device)
    ce = F.cross_entropy(model(noise), target)
    return (-ce if maximize else ce) + float(noise_lambda) * noise_penalty(noise)


def learn_noise(
    frozen: nn.Module,
    shape: tuple[int, ...],
    label: int,
    maximize: bool,
    n: int,
    steps: int,
    lr: float,
    noise_lambda: float,
    gen: torch.Generator,
) -> torch.Tensor:
    """``n`` noise samples for class ``label``, drawn standard normal and moved ``steps`` Adam steps
    (learning rate ``lr``) down :func:`noise_objective` of the frozen model."""
    device = model_device(frozen)
    noise = _randn(gen, n, *shape, device=device).requires_grad_(True)
    opt = torch.optim.Adam([noise], lr=float(lr))
    for _ in range(int(steps)):
        opt.zero_grad(set_to_none=True)
        noise_objective(frozen, noise, label, maximize, noise_lambda).backward()
        opt.step()
    return noise.detach()


def _train_pass(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, batch_size: int, gen: torch.Generator
) -> None:
    """One pass of Adam (learning rate ``lr``) over ``(x, y)`` in a random order, cross-entropy."""
    opt = torch.optim.Adam(model.parameters(), lr=float(lr))
    model.train()
    for idx in torch.randperm(len(y), generator=gen).split(int(batch_size)):
        idx = idx.to(x.device)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    model.eval()


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number, got {value!r}")


def emmn(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    *,
    noise_per_class: int,
    noise_steps: int,
    noise_lr: float,
    noise_lambda: float,
    impair_lr: float,
    repair_lr: float,
    batch_size: int,
) -> MethodResult:
    """Error minimising-maximising noise (EMMN) of Chundawat et al., "Zero-Shot Machine
    Unlearning", IEEE TIFS 2023: sees nothing (``data`` is ignored).

    1. For each forget class, ``noise_per_class`` samples of error-maximising noise; for each
       retain class as many of error-minimising noise (:func:`learn_noise`, ``noise_steps`` Adam
       steps at ``noise_lr``, penalty weight ``noise_lambda``), on a frozen copy of the model.
    2. Impair: one pass of Adam at ``impair_lr`` over all the noise, each batch labelled with its
       class (cross-entropy), in batches of ``batch_size``.
    3. Repair: one pass of Adam at ``repair_lr`` over the retain classes' noise only.
    """
    with Timer() as t:
        shape = input_shape(model, codes)
        frozen = _frozen(model)
        k = _num_classes(frozen, shape)
        fc = check_forget_classes(forget_classes, k)
        if int(noise_per_class) < 1 or int(noise_steps) < 0 or int(batch_size) < 1:
            raise ConfigError("noise_per_class and batch_size must be at least 1 and noise_steps at least 0")
        _check_positive(noise_lr=noise_lr, impair_lr=impair_lr, repair_lr=repair_lr)
        if not noise_lambda >= 0:
            raise ConfigError(f"noise_lambda must be zero or positive, got {noise_lambda!r}")
        gen = torch.Generator().manual_seed(int(seed))
        device = model_device(model)
        noises, labels = [], []
        for c in range(k):
            noises.append(
                learn_noise(frozen, shape, c, c in fc, int(noise_per_class), noise_steps, noise_lr, noise_lambda, gen)
            )
            labels.append(torch.full((int(noise_per_class),), c, dtype=torch.long, device=device))
        x, y = torch.cat(noises), torch.cat(labels)
        retain = torch.isin(y, torch.tensor(fc, device=device), invert=True)
        work = copy.deepcopy(model)
        for p in work.parameters():
            p.requires_grad_(True)
        _train_pass(work, x, y, impair_lr, batch_size, gen)
        _train_pass(work, x[retain], y[retain], repair_lr, batch_size, gen)
    with torch.no_grad():
        ce = {
            "forget_noise_ce": float(F.cross_entropy(frozen(x[~retain]), y[~retain])),
            "retain_noise_ce": float(F.cross_entropy(frozen(x[retain]), y[retain])),
        }
    passes = len(y) * int(noise_steps) + len(y) + int(retain.sum())
    return MethodResult(work, t.seconds, passes, {}, [], ce | {"noise_samples": len(y)})


# --------------------------------------------------------------------------
# GKT: gated knowledge transfer

# The reduced run's arguments: the authors' values (their MNIST notebook) but for the generator
# (:class:`MLPGenerator`, ``generator_hidden``) and the number of draws (100, not 4,000).  GKT is
# not a registered method: docs/baselines.md, "Zero-shot unlearning", says why.
GKT_REDUCED: dict[str, float | int] = {
    "pseudo_batches": 100,
    "batch_size": 256,
    "z_dim": 128,
    "generator_hidden": 512,
    "generator_steps": 1,
    "student_steps": 10,
    "generator_lr": 1e-3,
    "student_lr": 1e-3,
    "threshold": 0.01,
    "at_beta": 250.0,
    "temperature": 1.0,
    "grad_clip": 5.0,
}


def gate(teacher_logits: torch.Tensor, forget_classes: Iterable[int], threshold: float) -> torch.Tensor:
    """The band-pass gate: True for the pseudo-samples to which the teacher gives every forget
    class a probability (softmax of ``teacher_logits``) of at most ``threshold``."""
    prob = torch.softmax(teacher_logits.detach().float(), dim=1)[:, list(forget_classes)]
    return (prob <= float(threshold)).all(dim=1)


def kd_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) of the softmaxes at ``temperature``, averaged over samples *and*
    classes (torch's ``kl_div`` with its default elementwise mean, as the authors' code has it: the
    per-sample KL divided by the number of classes)."""
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_s, F.softmax(teacher_logits / temperature, dim=1), reduction="sum") / log_s.numel()


def attention_map(activation: torch.Tensor) -> torch.Tensor:
    """The attention map of Zagoruyko and Komodakis (attention transfer), L2-normalised per sample:
    for a conv map (N, C, H, W) the mean over channels of the squared activations at each
    position; for a flat activation (N, D) (no positions: an MLP's hidden layer) each unit is a
    position of one channel, so the map is the squared activations themselves (the kit's reading)."""
    a = activation.float().pow(2)
    if a.dim() > 2:
        a = a.mean(1)
    return F.normalize(a.flatten(1), dim=1)


def attention_loss(student_act: torch.Tensor, teacher_act: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two attention maps (:func:`attention_map`)."""
    return (attention_map(student_act) - attention_map(teacher_act)).pow(2).mean()


class MLPGenerator(nn.Module):
    """The kit's reduced generator: z -> Linear -> BatchNorm -> LeakyReLU(0.2) -> Linear -> a
    per-channel BatchNorm of the output (as the authors' convolutional generator ends), reshaped
    to the model's input shape."""

    def __init__(self, z_dim: int, hidden: int, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)
        self.channels = self.shape[0] if len(self.shape) == 3 else 1
        self.body = nn.Sequential(
            nn.Linear(z_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, math.prod(self.shape)),
        )
        self.out_norm = nn.BatchNorm1d(self.channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.body(z).view(len(z), self.channels, -1)
        return self.out_norm(x).view(len(z), *self.shape)


def fresh_student(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model``'s architecture with every layer re-initialised (its own
    ``reset_parameters``) under ``seed``: the student starts from nothing of the teacher."""
    student = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for m in student.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
    for p in student.parameters():
        p.requires_grad_(True)
    return student.train()


def _outputs(model: nn.Module, x: torch.Tensor, with_features: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits, penultimate features or None): ``model.head(model.features(x))`` is the kit's
    models' ``model(x)`` (:mod:`~mnemonic_mu.algorithms.models`)."""
    if with_features:
        h = model.features(x)  # type: ignore[operator]
        return model.head(h), h  # type: ignore[operator]
    return model(x), None


def gkt(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    *,
    pseudo_batches: int,
    batch_size: int,
    z_dim: int,
    generator_hidden: int,
    generator_steps: int,
    student_steps: int,
    generator_lr: float,
    student_lr: float,
    threshold: float,
    at_beta: float,
    temperature: float,
    grad_clip: float,
    max_empty: int = 100,
    snapshot_every: int = 50,
) -> MethodResult:
    """Gated knowledge transfer (GKT) of Chundawat et al., "Zero-Shot Machine Unlearning", IEEE
    TIFS 2023, on the kit's reduced generator: sees nothing (``data`` is ignored).

    A generator (:class:`MLPGenerator`, ``z_dim`` -> ``generator_hidden`` -> the input) and a
    student (:func:`fresh_student`) take turns, as in zero-shot knowledge transfer (Micaelli and
    Storkey, NeurIPS 2019): for each of ``pseudo_batches`` draws of ``batch_size`` latent vectors,
    ``generator_steps`` Adam steps of the generator ascend KL(teacher || student)
    (:func:`kd_divergence`), then ``student_steps`` steps of the student descend KL +
    ``at_beta`` x :func:`attention_loss` on the penultimate features, each step on the
    pseudo-samples the gate passes (:func:`gate`, ``threshold``), gradient norms clipped at
    ``grad_clip``.  A draw the gate passes none of is drawn again; after ``max_empty`` such draws
    in a row the generator goes back to its last snapshot (taken every ``snapshot_every``
    pseudo-batches), and after ``10 x pseudo_batches`` of them in all the student is returned as
    it stands (``info["stopped_early"]``).  The authors lower both learning rates on the
    validation loss; here they stay fixed (the method sees no validation split).
    """
    with Timer() as t:
        shape = input_shape(model, codes)
        teacher = _frozen(model)
        k = _num_classes(teacher, shape)
        fc = check_forget_classes(forget_classes, k)
        sizes = (("pseudo_batches", pseudo_batches, 1), ("batch_size", batch_size, 2), ("z_dim", z_dim, 1))
        for name, v, least in sizes:
            if int(v) < least:
                raise ConfigError(f"{name} must be at least {least}, got {v!r}")
        _check_positive(generator_lr=generator_lr, student_lr=student_lr, temperature=temperature, grad_clip=grad_clip)
        if not 0 < threshold < 1:
            raise ConfigError(f"threshold must lie strictly between 0 and 1, got {threshold!r}")
        with_features = at_beta > 0 and callable(getattr(model, "features", None)) and hasattr(model, "head")
        device = model_device(model)
        gen = torch.Generator().manual_seed(int(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed) + 1)
            generator = MLPGenerator(int(z_dim), int(generator_hidden), shape).to(device).train()
        student = fresh_student(model, seed).to(device)
        opt_g = torch.optim.Adam(generator.parameters(), lr=float(generator_lr))
        opt_s = torch.optim.Adam(student.parameters(), lr=float(student_lr))
        snapshot = copy.deepcopy(generator.state_dict())
        done = passed = drawn = empty_run = empty_total = restores = passes = 0
        stopped_early = False
        while done < int(pseudo_batches):
            z = _randn(gen, int(batch_size), int(z_dim), device=device)
            for step in range(int(generator_steps) + int(student_steps)):
                generator_turn = step < int(generator_steps)
                with torch.set_grad_enabled(generator_turn):
                    x = generator(z)
                with torch.no_grad():
                    keep = gate(teacher(x), fc, threshold)
                drawn += len(x)
                if not bool(keep.any()):
                    break
                x = x[keep] if generator_turn else x[keep].detach()
                passed += len(x)
                passes += len(x)
                s_logits, s_feat = _outputs(student, x, with_features)
                if generator_turn:
                    t_logits, _ = _outputs(teacher, x, False)
                    opt_g.zero_grad(set_to_none=True)
                    (-kd_divergence(s_logits, t_logits, temperature)).backward()
                    nn.utils.clip_grad_norm_(generator.parameters(), float(grad_clip))
                    opt_g.step()
                else:
                    with torch.no_grad():
                        t_logits, t_feat = _outputs(teacher, x, with_features)
                    loss = kd_divergence(s_logits, t_logits, temperature)
                    if with_features:
                        loss = loss + float(at_beta) * attention_loss(s_feat, t_feat)  # type: ignore[arg-type]
                    opt_s.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_(student.parameters(), float(grad_clip))
                    opt_s.step()
            else:
                done += 1
                empty_run = 0
                if done % int(snapshot_every) == 0:
                    snapshot = copy.deepcopy(generator.state_dict())
                continue
            empty_run += 1
            empty_total += 1
            if empty_run >= int(max_empty):
                generator.load_state_dict(snapshot)
                restores += 1
                empty_run = 0
            if empty_total >= 10 * int(pseudo_batches):
                stopped_early = True
                break
        student.eval()
    info = {
        "pass_rate": passed / drawn if drawn else float("nan"),
        "empty_draws": empty_total,
        "restores": restores,
        "pseudo_batches": done,
        "stopped_early": stopped_early,
        "attention_term": with_features,
    }
    return MethodResult(student, t.seconds, max(passes, 1), {}, [], info)


__all__ = [
    "GKT_REDUCED",
    "MLPGenerator",
    "attention_loss",
    "attention_map",
    "emmn",
    "fresh_student",
    "gate",
    "gkt",
    "input_shape",
    "kd_divergence",
    "learn_noise",
    "noise_objective",
    "noise_penalty",
]
