"""Training with mnemonic codes (the paper's Algorithm 1).

Batches are drawn by indexing preloaded tensors (no per-item Python
datasets), augmentation runs batch-wise, and code replacement happens after
augmentation with one fresh coin per sample per epoch.  All randomness of the
loop comes from one CPU ``torch.Generator`` seeded from ``cfg.seed``, and the
initial weights from ``build_model(..., seed=cfg.seed)``, so a run is
reproducible whatever the program did before.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..defaults import default
from ..errors import ConfigError
from .codes import replace_with_codes
from .dataset import Dataset, make_augment
from .metrics import accuracy

VERSION = 1  # bump when a change to this module changes trained weights


@dataclass(frozen=True)
class TrainConfig:
    """One model's training run.  Build it with :meth:`mnemonic_mu.settings.Settings.train_config`;
    the defaults here are the kit's (:mod:`mnemonic_mu.defaults`), never restated."""

    epochs: int = default("epochs")  # passes over the training split
    batch_size: int = default("batch_size")  # samples per SGD step
    lr: float = default("lr")  # SGD learning rate
    momentum: float = default("momentum")  # SGD momentum
    weight_decay: float = default("weight_decay")  # L2 penalty
    t_mix: float = default("t_mix")  # probability of replacing a sample by its class code
    cosine: bool = default("cosine")  # cosine learning-rate schedule over all epochs
    seed: int = default("seed")  # initial weights, batch order, coins and augmentation
    exclude_classes: tuple[int, ...] = ()  # classes left out (the retrain reference)
    eval_every: int = 1  # validation accuracy every N epochs (0 = never)
    precision: str = default("precision")  # fp32 | bf16: autocast of the forward pass and the loss
    channels_last: bool = default("channels_last")  # channels_last memory format (4-D inputs and weights)

    def __post_init__(self) -> None:
        check_recipe(self.epochs, self.batch_size, self.lr, self.momentum, self.weight_decay, self.t_mix)
        object.__setattr__(self, "exclude_classes", tuple(sorted(int(c) for c in self.exclude_classes)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["exclude_classes"] = list(self.exclude_classes)
        for name in ("precision", "channels_last"):  # the defaults leave the keys of fp32 models as they were
            if d[name] == default(name):
                del d[name]
        return d


def check_recipe(epochs, batch_size, lr, momentum, weight_decay, t_mix) -> None:
    """The training recipe's ranges (checked by TrainConfig and by the settings)."""
    if int(epochs) < 1:
        raise ConfigError(f"epochs must be at least 1, got {epochs}")
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if not 0 < float(lr) < math.inf:
        raise ConfigError(f"lr must be a positive finite number, got {lr}")
    if not 0 <= float(momentum) < 1:
        raise ConfigError(f"momentum must lie in [0, 1), got {momentum}")
    if not 0 <= float(weight_decay) < math.inf:
        raise ConfigError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
    if not 0.0 <= float(t_mix) <= 1.0 or t_mix != t_mix:
        raise ConfigError(f"t_mix must lie in [0, 1], got {t_mix}; 0.1 is the paper's MNIST value")


@dataclass
class TrainResult:
    """What a training run produced besides the weights."""

    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    replaced_fraction: float = 0.0  # measured share of samples replaced by codes
    n_train: int = 0


def retained_mask(y: torch.Tensor, exclude: tuple[int, ...]) -> torch.Tensor:
    """Boolean mask of samples whose label is not in ``exclude``."""
    if not exclude:
        return torch.ones_like(y, dtype=torch.bool)
    return ~torch.isin(y, torch.tensor(exclude, dtype=y.dtype))


def train_model(
    model: nn.Module,
    dataset: Dataset,
    codes: torch.Tensor,
    cfg: TrainConfig,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> TrainResult:
    """Train ``model`` in place on ``dataset``'s train split with code replacement.

    ``cfg.t_mix = 0`` gives the model without codes; ``cfg.exclude_classes``
    drops those classes from the training data (the retrain reference).
    Returns per-epoch ``loss`` and ``val_acc`` (percent) histories.
    """
    device = torch.device(device)
    keep = retained_mask(dataset.y_train, cfg.exclude_classes)
    x = dataset.x_train[keep].to(device)
    y = dataset.y_train[keep].to(device)
    if len(y) == 0:
        raise ConfigError("no training samples left after excluding classes")
    x_val, y_val = dataset.x_val.to(device), dataset.y_val.to(device)
    codes = codes.to(device)
    augment = make_augment(dataset)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.precision not in ("fp32", "bf16"):
        raise ConfigError(f"unknown precision {cfg.precision!r}; choose fp32 or bf16")
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if cfg.precision == "bf16"
        else contextlib.nullcontext()
    )
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs) if cfg.cosine else None
    history: dict[str, list[float]] = {"epoch": [], "loss": [], "val_acc": []}
    n, replaced, drawn = len(y), torch.zeros((), device=device), 0
    start = time.perf_counter()
    for epoch in tqdm(range(cfg.epochs), disable=not progress, desc="train", leave=False):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        total = torch.zeros((), device=device)
        for i in range(0, n, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, gen)
            if cfg.t_mix > 0:
                xb, mask = replace_with_codes(xb, yb, codes, cfg.t_mix, gen)
                replaced += mask.sum()
            drawn += len(yb)
            if cfg.channels_last and xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast:  # bf16: the forward pass and the loss in bfloat16, the weights and SGD in fp32
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(yb)
        if sched is not None:
            sched.step()
        history["epoch"].append(epoch + 1)
        history["loss"].append(float(total) / n)
        if cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            history["val_acc"].append(accuracy(model, x_val, y_val))
        else:
            history["val_acc"].append(float("nan"))
    model.eval()
    return TrainResult(
        history=history,
        seconds=time.perf_counter() - start,
        replaced_fraction=float(replaced) / max(drawn, 1),
        n_train=n,
    )


__all__ = ["TrainConfig", "TrainResult", "check_recipe", "retained_mask", "train_model"]
