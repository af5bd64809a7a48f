"""Classifiers used in the paper (docs/method.md, "The paper's setups and numbers") plus a small CNN.

Every model exposes ``features(x)`` (the penultimate representation, used by
the linear-probe attack) and ``head`` (the last linear layer), so
``model(x) == model.head(model.features(x))``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError


class MLP(nn.Module):
    """The paper's MNIST model: flatten -> Linear(d, hidden) -> sigmoid -> Linear(hidden, K)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: int = 1000):
        super().__init__()
        self.fc1 = nn.Linear(math.prod(input_shape), hidden)
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc1(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SmallCNN(nn.Module):
    """Two conv blocks and a linear head: a quick model for images on a CPU."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 32):
        super().__init__()
        c, h, w = input_shape
        self.body = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem: 3x3 stride-1 conv, no max-pool (docs/method.md,
    "The paper's setups and numbers")."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 64):
        super().__init__()
        c = input_shape[0]
        self.conv1 = nn.Conv2d(c, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, in_planes = [], width
        for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            planes = width * mult
            layers.append(nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.head = nn.Linear(in_planes, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


MODELS = {"mlp": MLP, "cnn": SmallCNN, "resnet18": ResNet18}


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, seed: int | None = None) -> nn.Module:
    """Instantiate model ``name``; with ``seed`` the initial weights are reproducible."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if name != "mlp" and len(input_shape) != 3:
        raise ConfigError(f"model {name!r} needs image inputs (C, H, W), got shape {tuple(input_shape)}")
    if seed is None:
        return MODELS[name](tuple(input_shape), int(num_classes))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return MODELS[name](tuple(input_shape), int(num_classes))


__all__ = ["MLP", "MODELS", "ResNet18", "SmallCNN", "build_model"]
