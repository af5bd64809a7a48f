"""The per-item data pipeline the kit's training loop is compared with.

This is how torchvision-based unlearning code usually trains on MNIST (and,
as far as the paper describes it, how its experiments were run): a
``torchvision.datasets.MNIST``-style dataset that turns each uint8 image
into a PIL image and back into a tensor with ``ToTensor()``, one item at a
time, batched by a ``DataLoader``.  Everything else is kept identical to
:func:`mnemonic_mu.algorithms.train.train_model` (same permutation and code coins from
the same generator, same optimiser, same loss), so the two pipelines train
the same weights (``tests/test_fastpaths.py`` checks it) and their time
difference is the data pipeline alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Sampler
from torchvision.transforms import ToTensor

from mnemonic_mu.algorithms.codes import replace_with_codes
from mnemonic_mu.algorithms.train import TrainConfig


class MNISTItems(torch.utils.data.Dataset):
    """torchvision-style MNIST: ``__getitem__`` returns ``(transform(PIL image), int label)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        if images.dtype != torch.uint8 or images.dim() != 3:
            raise ValueError("images must be a uint8 tensor of shape (N, H, W)")
        self.images, self.labels = images, labels
        self.transform = transform or ToTensor()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i].numpy())
        return self.transform(img), int(self.labels[i])


class EpochPermutation(Sampler):
    """A fresh ``torch.randperm(n, generator=gen)`` per epoch: the kit's batch order."""

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


def make_loader(dataset: MNISTItems, batch_size: int, generator: torch.Generator, num_workers: int = 0) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochPermutation(len(dataset), generator),
        num_workers=num_workers,
    )


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser :func:`mnemonic_mu.algorithms.train.train_model` builds."""
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def dataloader_epoch(
    model: nn.Module,
    loader: DataLoader,
    codes: torch.Tensor,
    opt: torch.optim.Optimizer,
    t_mix: float,
    generator: torch.Generator,
) -> float:
    """One training epoch through ``loader`` with Algorithm 1's code replacement; mean loss."""
    model.train()
    total, n = torch.zeros(()), 0
    for xb, yb in loader:
        if t_mix > 0:
            xb, _ = replace_with_codes(xb, yb, codes, t_mix, generator)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach() * len(yb)
        n += len(yb)
    model.eval()
    return float(total) / max(n, 1)
