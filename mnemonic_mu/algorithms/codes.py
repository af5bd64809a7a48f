"""Mnemonic codes (docs/method.md, "Codes") and their use during training (Algorithm 1).

A mnemonic code ``xi_c`` is one fixed random input per class, drawn once
before training from its own seeded generator, in the space the model sees
(after normalisation).  During training each sample's input is replaced by
the code of its class with probability ``t_mix``; the label stays.
"""

from __future__ import annotations

import torch

from ..defaults import default
from ..errors import ConfigError

VERSION = 1  # bump when a change to this module changes the codes or the replacement

CODE_DISTRIBUTIONS = ("normal", "uniform")


def generate_codes(
    num_classes: int, input_shape: tuple[int, ...], dist: str | None = None, seed: int = 0
) -> torch.Tensor:
    """Draw one code per class: ``codes[c]`` has ``input_shape``.

    ``dist="normal"`` draws from N(0, 1) as in the paper; ``"uniform"`` draws
    from U[0, 1); None takes the kit's default (:mod:`mnemonic_mu.defaults`).  A private
    ``torch.Generator`` seeded with ``seed`` is used, so the codes do not depend on anything
    else the program drew before.
    """
    if dist is None:
        dist = default("code_dist")
    if dist not in CODE_DISTRIBUTIONS:
        raise ConfigError(f"unknown code distribution {dist!r}; choose one of {', '.join(CODE_DISTRIBUTIONS)}")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be positive, got {num_classes}")
    gen = torch.Generator().manual_seed(int(seed))
    shape = (int(num_classes), *map(int, input_shape))
    if dist == "normal":
        return torch.randn(shape, generator=gen)
    return torch.rand(shape, generator=gen)


def check_t_mix(t_mix: float) -> float:
    t_mix = float(t_mix)
    if not 0.0 <= t_mix <= 1.0 or t_mix != t_mix:
        raise ConfigError(f"t_mix must lie in [0, 1], got {t_mix}; 0.1 is the paper's MNIST value")
    return t_mix


def replace_with_codes(
    x: torch.Tensor,
    y: torch.Tensor,
    codes: torch.Tensor,
    t_mix: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1's replacement: with probability ``t_mix`` swap ``x[i]`` for ``codes[y[i]]``.

    One fresh coin per sample (drawn from ``generator``, which lives on the CPU
    so results do not depend on the device).  Returns the mixed batch and the
    boolean mask of replaced samples.  Apply it *after* augmentation so codes
    are never cropped or flipped.
    """
    coins = torch.rand((len(y),), generator=generator) < t_mix
    # decide on the CPU copy: asking the device copy would make every training
    # step wait for the GPU to finish the previous one
    if not bool(coins.any()):
        return x, coins.to(x.device)
    coins = coins.to(x.device)
    mask = coins.view(-1, *([1] * (x.dim() - 1)))
    return torch.where(mask, codes[y], x), coins


__all__ = ["CODE_DISTRIBUTIONS", "check_t_mix", "generate_codes", "replace_with_codes"]
