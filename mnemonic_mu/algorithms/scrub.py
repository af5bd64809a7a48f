"""SCRUB (Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine Unlearning",
NeurIPS 2023): a student, initialised from the original model (the teacher), learns to disobey
the teacher on the forget samples and to obey it on the retain samples.

* a *max-step* (:func:`max_step_loss`) ascends ``KL(teacher || student)`` on a forget batch;
* a *min-step* (:func:`min_step_loss`) descends ``alpha * KL(teacher || student) + gamma * CE``
  on a retain batch;
* an epoch is one pass of max-steps over the forget samples, only in the first ``msteps``
  epochs, then one pass of min-steps over the retain samples (:func:`epoch_phases`);
* the KL is the temperature-scaled distillation loss (:func:`distill_kl`).

Hyperparameters are chosen on the validation split by the kit's selection rule
(:class:`~mnemonic_mu.algorithms.baselines.Selection`) over the registry entry's grid, the
model after every epoch a candidate (:func:`~mnemonic_mu.algorithms.baselines.sgd_search`).
"""

from __future__ import annotations

import copy
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .baselines import Chooser, Selection, batches, data_augment, load_batch, optimizer_step, sgd_search
from .method_api import MethodResult, Timer, UnlearnData, model_device, need_data
from .metrics import check_forget_classes

LR_DECAY = 0.1  # the paper: the learning rate is multiplied by 0.1 after a number of epochs


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The distillation divergence of SCRUB (Hinton et al.'s knowledge-distillation loss):
    ``T^2 * mean_n KL(softmax(t_n / T) || softmax(s_n / T))``, the teacher's distribution
    first, summed over the classes and averaged over the batch."""
    t = float(temperature)
    log_student = F.log_softmax(student_logits / t, dim=1)
    log_teacher = F.log_softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * (t * t)


def max_step_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """What a max-step descends on a forget batch: ``-distill_kl`` (it ascends the divergence)."""
    return -distill_kl(student_logits, teacher_logits, temperature)


def min_step_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    y: torch.Tensor,
    alpha: float,
    gamma: float,
    temperature: float,
) -> torch.Tensor:
    """What a min-step descends on a retain batch: ``alpha * distill_kl + gamma * CE`` (the
    cross-entropy of the student's untempered logits)."""
    kl = distill_kl(student_logits, teacher_logits, temperature)
    return float(alpha) * kl + float(gamma) * F.cross_entropy(student_logits, y)


def epoch_phases(epoch: int, msteps: int) -> tuple[str, ...]:
    """The passes of epoch ``epoch`` (from 1): ``("max", "min")`` in the first ``msteps``
    epochs, ``("min",)`` after them."""
    if int(epoch) < 1:
        raise ConfigError(f"epochs count from 1, got {epoch}")
    return ("max", "min") if int(epoch) <= int(msteps) else ("min",)


def epoch_lr(lr: float, epoch: int, lr_decay_after: int | None) -> float:
    """The learning rate of epoch ``epoch`` (from 1): ``lr``, times :data:`LR_DECAY` after
    epoch ``lr_decay_after`` (``None``: never)."""
    return float(lr) * (LR_DECAY if lr_decay_after is not None and int(epoch) > int(lr_decay_after) else 1.0)


class ScrubRun:
    """One run of the grid (a learning rate, a number of max epochs): called once per epoch by
    :func:`~mnemonic_mu.algorithms.baselines.sgd_search`, in order, with the student, its
    optimizer and the run's generator; returns the backward passes of the epoch and logs, per
    epoch, how many max- and min-steps it took."""

    def __init__(
        self,
        teacher: nn.Module,
        data: UnlearnData,
        lr: float,
        msteps: int,
        *,
        alpha: float,
        gamma: float,
        temperature: float,
        forget_batch_size: int,
        retain_batch_size: int,
        lr_decay_after: int | None,
    ):
        self.teacher, self.data, self.lr, self.msteps = teacher, data, float(lr), int(msteps)
        self.alpha, self.gamma, self.temperature = float(alpha), float(gamma), float(temperature)
        self.forget_batch_size, self.retain_batch_size = int(forget_batch_size), int(retain_batch_size)
        self.lr_decay_after = lr_decay_after
        self.device, self.augment = model_device(teacher), data_augment(data)
        self.epoch = 0
        self.log: list[dict] = []

    def _teacher(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.teacher(x)

    def __call__(self, student: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator) -> int:
        self.epoch += 1
        for group in opt.param_groups:
            group["lr"] = epoch_lr(self.lr, self.epoch, self.lr_decay_after)
        d, passes, steps = self.data, 0, {"max": 0, "min": 0}
        for phase in epoch_phases(self.epoch, self.msteps):
            if phase == "max":
                for idx in batches(len(d.y_forget), self.forget_batch_size, gen):
                    xf, _ = load_batch(d.x_forget, d.y_forget, idx, self.device, self.augment, gen)
                    optimizer_step(student, opt, max_step_loss(student(xf), self._teacher(xf), self.temperature))
                    passes, steps["max"] = passes + len(idx), steps["max"] + 1
            else:
                for idx in batches(len(d.y_retain), self.retain_batch_size, gen):
                    xr, yr = load_batch(d.x_retain, d.y_retain, idx, self.device, self.augment, gen)
                    loss = min_step_loss(student(xr), self._teacher(xr), yr, self.alpha, self.gamma, self.temperature)
                    optimizer_step(student, opt, loss)
                    passes, steps["min"] = passes + len(idx), steps["min"] + 1
        self.log.append(
            {"lr": self.lr, "msteps": self.msteps, "epoch": self.epoch} | {f"{k}_steps": v for k, v in steps.items()}
        )
        return passes


def scrub(
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    *,
    lrs: Sequence[float],
    msteps: Sequence[int],
    epochs: int,
    alpha: float,
    gamma: float,
    temperature: float,
    forget_batch_size: int,
    retain_batch_size: int,
    lr_decay_after: int | None = None,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    selection: Selection = Selection(),
) -> MethodResult:
    """SCRUB (Kurmanji et al., NeurIPS 2023, Algorithm 1): a student initialised from
    ``model`` (the teacher, left untouched and kept in eval mode) is trained with SGD
    (``momentum``, ``weight_decay``) for ``epochs`` epochs, each a pass of max-steps over the
    forget samples while the epoch is at most ``msteps``, then a pass of min-steps over the
    retain samples (:class:`ScrubRun`); the learning rate drops by :data:`LR_DECAY` after epoch
    ``lr_decay_after``.  Both passes see the training recipe's augmentation; the teacher scores
    the same augmented batch as the student.

    The grid is ``lrs`` x ``msteps`` x epochs 1..``epochs`` (every epoch's model is a
    candidate), chosen on validation by ``selection`` (:class:`Selection`).  ``codes`` is
    ignored.  Backward passes: one per forget sample per max epoch, one per retain sample per
    epoch (the teacher's forward passes are not counted)."""
    data = need_data("scrub", data)
    fc = check_forget_classes(forget_classes, data.num_classes)
    if not lrs or not msteps:
        raise ConfigError(f"scrub needs non-empty lrs and msteps, got lrs {lrs}, msteps {msteps}")
    if not all(int(m) == m and m >= 0 for m in msteps):
        raise ConfigError(f"scrub's msteps (epochs with max-steps) must be whole numbers >= 0, got {msteps}")
    if not float(temperature) > 0:
        raise ConfigError(f"scrub's temperature must be positive, got {temperature}")
    if not (float(alpha) >= 0 and float(gamma) >= 0):
        raise ConfigError(f"scrub's alpha and gamma must be >= 0, got alpha {alpha}, gamma {gamma}")
    if int(forget_batch_size) < 1 or int(retain_batch_size) < 1:
        raise ConfigError(
            f"scrub's batch sizes must be at least 1, got forget {forget_batch_size}, retain {retain_batch_size}"
        )
    with Timer() as t:
        teacher = copy.deepcopy(model).eval()

        def run(lr: float, m: int) -> ScrubRun:
            return ScrubRun(
                teacher,
                data,
                lr,
                m,
                alpha=alpha,
                gamma=gamma,
                temperature=temperature,
                forget_batch_size=forget_batch_size,
                retain_batch_size=retain_batch_size,
                lr_decay_after=lr_decay_after,
            )

        runs = [({"lr": lr, "msteps": int(m)}, run(lr, int(m))) for lr in lrs for m in msteps]
        chooser = Chooser(model, data, fc, selection)
        new, chosen, passes = sgd_search(model, runs, epochs, seed, chooser, momentum, weight_decay)
    info = chooser.info() | {"steps": [entry for _, r in runs for entry in r.log]}
    return MethodResult(new, t.seconds, passes, chosen, chooser.search, info)


__all__ = ["LR_DECAY", "ScrubRun", "distill_kl", "epoch_lr", "epoch_phases", "max_step_loss", "min_step_loss", "scrub"]
