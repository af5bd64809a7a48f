"""The kit's defaults: every setting, its default and its one-line comment, written once.

:class:`Defaults` is the table.  :class:`~mnemonic_mu.settings.Settings` derives from it and adds
the coercion and the validation; the CLI's options and docs/settings.md are generated from its
comments (:func:`comments`, :mod:`mnemonic_mu.options`); profiles (``mnemonic_mu/profiles/*.yaml``)
are partial overrides of it.  Library functions that take one of these choices as an optional
argument (``forget(step=None)``, ``generate_codes(dist=None)``, ``TrainConfig``) fall back to
:func:`default`, so the kit has one table of defaults.

This module imports nothing of the package: the algorithms read it.  Two defaults are not
written here: ``attacks`` is every attack of the registry
(:data:`~mnemonic_mu.algorithms.attacks.ATTACKS`) and ``baselines`` every method of the registry
but the references (:func:`~mnemonic_mu.algorithms.methods.baseline_names`), which
:class:`~mnemonic_mu.settings.Settings` fills in; their comments are here with the others.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Defaults:
    """Every setting of a run and its default (the ``laptop`` profile); build
    :class:`~mnemonic_mu.settings.Settings`, which validates them, never this table."""

    # one line per setting, never wrapped: comments() reads each setting's comment from its line
    # fmt: off
    # -- data
    dataset: str = "mnist5k"  # a dataset of the registry (`mnemonic-mu datasets`, docs/protocol.md#datasets)
    data_root: str = "data"  # folder of the datasets that read files (torchvision's layout)
    download: bool = False  # let torchvision download a missing dataset
    split_seed: int = 0  # seed of the stratified train / validation / test split
    # -- training with codes (Algorithm 1)
    model: str = "mlp"  # mlp (paper, MNIST) | cnn | resnet18 (paper, CIFAR-10)
    epochs: int = 40  # training epochs (paper: 200; mnist5k's validation accuracy plateaus by 40)
    batch_size: int = 128  # samples per SGD step (paper: 128)
    lr: float = 0.01  # SGD learning rate (paper: 0.01)
    momentum: float = 0.9  # SGD momentum (paper: 0.9)
    weight_decay: float = 5e-4  # SGD weight decay (paper: 5e-4)
    cosine: bool = False  # cosine learning-rate schedule (paper: CIFAR-10 only)
    t_mix: float = 0.1  # probability of replacing a sample by its class code (paper MNIST: 0.1)
    code_dist: str = "uniform"  # uniform U[0,1) (the kit's) | normal N(0,1) (the paper's)
    seed: int = 0  # initial weights, codes, batch order, coins, baselines and attacks
    trainer: str = "single"  # single (one model at a time) | ensemble (a request's models as one computation; mlp, cnn)
    precision: str = "fp32"  # fp32 | bf16 (autocast in the training step; a GPU option, measured in docs/performance.md)
    channels_last: bool = False  # channels_last memory format for convolutional models (a GPU option)
    # -- the request and the one-shot step (Eq. 5-7)
    forget_classes: tuple[int, ...] = (0,)  # the classes to forget, C_F (paper: class 0)
    step: str = "calibrated"  # calibrated (the kit's, codes only) | paper (Eq. 5, fixed lambdas) | matched (docs/matched.md)
    multi: str = "sequential"  # several classes, calibrated step: sequential (one step per class) | joint
    lambda1: float = 1e-3  # Eq. 5 gain cap (paper MNIST: 1e-3)
    lambda2: float = 10.0  # Eq. 5 largest change per layer (paper MNIST: 10)
    lambda1_grid: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # the paper's lambda1 grid, scored on validation
    lambda2_grid: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)  # the paper's lambda2 grid, scored on validation
    tune_lambdas: bool = False  # use the validation-best (lambda1, lambda2) instead of the pair above
    # -- the Fisher study of notebook 03
    fisher_samples: tuple[int, ...] = (1, 10, 100)  # n of the "Fisher from n real samples" curve
    fisher_repeats: int = 3  # random draws per n
    # -- evaluation
    baselines: tuple[str, ...] = ()  # methods scored beside the mnemonic step (by default the registry's default methods; the opt-in ones, e.g. scrub, when named)
    probe_max_train: int = 2000  # train samples drawn for the linear-probe attack
    attacks: tuple[str, ...] = ()  # attacks scored per row (by default every attack of the registry); none: accuracies only (the report needs all)
    band_seeds: tuple[int, ...] = (1000, 1001, 1002, 1003)  # seeds of the extra retrain references that make retrain's band (never the request's seed); none: no band
    # -- runtime: where and how fast; none of these changes a result
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    threads: int = 1  # torch threads (0: OMP_NUM_THREADS or torch's default)
    workers: int = 0  # processes for a request's independent models, rows and baselines (0: one per CPU core; 1: all in this process)
    cache_dir: str = "data/cache"  # trained models and stage results
    use_cache: bool = True  # reuse a cached model or result with the same key
    run_dir: str = "reports/notebooks"  # figures/ and metrics/ of a notebook run
    compute_upstream: bool = True  # a notebook computes a missing earlier stage (and says so in one line); false: stop and name the notebook to run first
    # fmt: on


RUNTIME = (
    "data_root",
    "download",
    "device",
    "threads",
    "workers",
    "cache_dir",
    "use_cache",
    "run_dir",
    "compute_upstream",
)  # the settings that never change a number (left out of the cache keys)
FILLED_BY_SETTINGS = ("attacks", "baselines")  # defaults that depend on a registry above this module


def default(name: str):
    """The default of setting ``name`` in the table above (``attacks``, ``baselines``: ask
    :meth:`mnemonic_mu.settings.Settings.default`, which knows the registries)."""
    if name in FILLED_BY_SETTINGS:
        raise KeyError(f"the default of {name!r} is set by mnemonic_mu.settings.Settings; use Settings.default")
    f = _FIELDS[name]
    return f.default


def comments() -> dict[str, str]:
    """``{name: its one-line comment}``, read from the class source above."""
    src = inspect.getsource(Defaults)
    return dict(re.findall(r"^    (\w+): [^=]+= .*?  # (.*)$", src, flags=re.M))


_FIELDS = {f.name: f for f in fields(Defaults)}


__all__ = ["Defaults", "RUNTIME", "comments", "default"]
