"""The interface every unlearning method shares: what it may see and what it returns.

Every method is called the same way::

    result = METHODS[name](model, codes, forget_classes, data, seed=0, **settings)

(an entry of :data:`~mnemonic_mu.algorithms.methods.METHODS` calls its function with its fixed
arguments and grid, then ``settings``).

* ``model`` - the trained model to unlearn (left untouched; the result holds a
  new one).  ``ours_with_data`` expects the model trained *without* codes
  (each entry's ``input_model`` says which trained model the method takes).
* ``codes`` - the model's mnemonic codes (used by the mnemonic methods only).
* ``forget_classes`` - the request C_F.
* ``data`` - an :class:`UnlearnData` (retain / forget train data, the
  validation split, the training recipe); ``None`` is accepted only by the
  data-free ``mnemonic_paper`` and ``mnemonic_calibrated``.
* ``settings`` - the method's own options (its grid and fixed arguments come from its registry entry).

Each returns a :class:`MethodResult`: the new model, its wall time (the whole
call, hyperparameter search included, measured with ``time.perf_counter``),
its backward passes (one per sample whose gradient was taken, |C| for the
code Fisher) and what was chosen.

Hyperparameters are chosen on the validation split only: the tuned
baselines (Fisher forgetting, SSD, NegGrad, NegGrad+) by
:class:`~mnemonic_mu.algorithms.baselines.Selection` (the best A_R among
candidates that forget without losing more than 5 % of the original's A_R,
then stated fallbacks), ``mnemonic_tuned`` by ``A_R + E_F`` (the paper's
criterion moved from test to validation); ties go to the first candidate in
grid order.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .dataset import Dataset
from .metrics import check_forget_classes, forgetting_scores, predict_logits
from .train import TrainConfig, retained_mask


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


def val_score(model: nn.Module, data: UnlearnData, forget_classes: Sequence[int]) -> float:
    """A_R + E_F on the validation split (%, 0-200): the selection criterion."""
    a_r, e_f = forgetting_scores(predict_logits(model, data.x_val), data.y_val.cpu(), forget_classes)
    return (0.0 if math.isnan(a_r) else a_r) + (0.0 if math.isnan(e_f) else e_f)


def need_data(name: str, data: UnlearnData | None) -> UnlearnData:
    if data is None:
        raise ConfigError(f"method {name!r} needs data (retain / forget / validation); pass UnlearnData")
    if len(data.y_forget) == 0 or len(data.y_retain) == 0:
        raise ConfigError(f"method {name!r} needs both retain and forget training samples")
    return data


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def subsample(x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None or len(y) <= n:
        return x, y
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.sort(torch.randperm(len(y), generator=gen)[:n])[0]
    return x[idx], y[idx]


__all__ = ["MethodResult", "Timer", "UnlearnData", "model_device", "need_data", "subsample", "val_score"]
