"""A dataset as the algorithms see it: preloaded tensors split three ways, and its batch-wise augmentation.

Loading one from files is :mod:`mnemonic_mu.io.data`'s job (:func:`~mnemonic_mu.io.data.load_dataset`).
A change to the augmentation changes trained weights: bump ``train.VERSION`` (and ``ensemble.VERSION``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..errors import ConfigError


@dataclass
class Dataset:
    """Preloaded tensors of one dataset, split three ways.

    ``x_*`` are float32 inputs in model space, ``y_*`` int64 labels.  The
    ``*_index`` tensors give each sample's position in the source pool it was
    drawn from (the official train or test file), so a checkpoint can record
    exactly which samples were trained on.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    train_index: torch.Tensor
    val_index: torch.Tensor
    test_index: torch.Tensor
    augment: str = "none"  # "none" or "crop_flip" (batch-wise, see augment_batch)
    pad_value: tuple[float, ...] = field(default_factory=tuple)  # per-channel value of a black pixel

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x, y)`` of ``"train"``, ``"val"`` or ``"test"``."""
        if name not in ("train", "val", "test"):
            raise ConfigError(f"unknown split {name!r}; use 'train', 'val' or 'test'")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def summary(self) -> dict:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "n_train": len(self.y_train),
            "n_val": len(self.y_val),
            "n_test": len(self.y_test),
            "augment": self.augment,
        }


def augment_batch(
    x: torch.Tensor, generator: torch.Generator, pad_value: Sequence[float], padding: int = 4
) -> torch.Tensor:
    """Random crop with ``padding`` plus horizontal flip, on a whole batch at once.

    Equivalent to torchvision's ``RandomCrop(size, padding)`` followed by
    ``RandomHorizontalFlip()`` applied per sample, but on a preloaded tensor:
    the padding is filled with each channel's value of a black pixel (so the
    result matches cropping before normalisation).  ``generator`` must live on
    the CPU; the offsets are moved to ``x``'s device.
    """
    b, c, h, w = x.shape
    fill = torch.tensor(pad_value, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    padded = fill.expand(b, c, h + 2 * padding, w + 2 * padding).clone()
    padded[:, :, padding : padding + h, padding : padding + w] = x
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    flip = (torch.rand((b,), generator=generator) < 0.5).to(x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)[None]
    cols = ox[:, None] + torch.arange(w, device=x.device)[None]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


AugmentFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def make_augment(dataset: Dataset) -> AugmentFn | None:
    """The batch-wise augmentation for ``dataset`` (``None`` when it has none)."""
    if dataset.augment == "none":
        return None
    pad = dataset.pad_value
    return lambda x, gen: augment_batch(x, gen, pad)


__all__ = ["AugmentFn", "Dataset", "augment_batch", "make_augment"]
