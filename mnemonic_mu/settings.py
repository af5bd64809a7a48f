"""The one settings object: every knob of the kit, its default, and its check.

:class:`Settings` is built by the library, the CLI (``experiment``, ``sweep``,
``report``), the notebooks' parameters cells and the YAML profiles alike.
Each default is stated once, with a one-line comment, in the table it derives from
(:class:`~mnemonic_mu.defaults.Defaults`).  :meth:`Settings.__post_init__` is the only
validator: a wrong value fails there with one clear message.

The adapters live beside it, each with its own job: profiles and ``-p key=value``
overrides read as YAML (:mod:`mnemonic_mu.overrides`, below this module), the CLI's
options and docs/settings.md's table derived from the fields (:mod:`mnemonic_mu.options`,
above it).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import numbers
from dataclasses import dataclass, field, fields
from pathlib import Path

from .algorithms.attacks import ATTACKS
from .algorithms.codes import CODE_DISTRIBUTIONS
from .algorithms.forget import MULTI_MODES, STEPS
from .algorithms.methods import METHODS, baseline_names, method_choices
from .algorithms.metrics import check_forget_classes
from .algorithms.models import MODELS
from .algorithms.train import TrainConfig, check_recipe
from .defaults import RUNTIME, Defaults
from .errors import ConfigError, DeviceError
from .io.data import DATASETS
from .overrides import load_profile
from .paths import resolve_path
from .runtime import resolve_device


@dataclass(frozen=True)
class Settings(Defaults):
    """Every setting of a run, checked; the defaults are the kit's (:class:`~mnemonic_mu.defaults.Defaults`)."""

    # the one default the table cannot write (it sits below the registry): every attack of the registry
    attacks: tuple[str, ...] = field(default_factory=lambda: tuple(ATTACKS))
    # and every method of the registry but the references
    baselines: tuple[str, ...] = field(default_factory=baseline_names)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name), self.default(f.name)))
        _validate(self)

    # -- views
    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def results_dict(self) -> dict:
        """The settings that can change a number (everything but :data:`~mnemonic_mu.defaults.RUNTIME`)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME}

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    def train_config(self, exclude=(), t_mix: float | None = None) -> TrainConfig:
        """The :class:`~mnemonic_mu.algorithms.train.TrainConfig` of one model of this recipe."""
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            t_mix=self.t_mix if t_mix is None else t_mix,
            cosine=self.cosine,
            seed=self.seed,
            exclude_classes=tuple(exclude),
            precision=self.precision,
            channels_last=self.channels_last,
        )

    @property
    def data_path(self) -> Path:
        return resolve_path(self.data_root)

    @property
    def cache_path(self) -> Path:
        return resolve_path(self.cache_dir)

    @property
    def run_path(self) -> Path:
        return resolve_path(self.run_dir)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def default(cls, name: str):
        """The default of setting ``name``: the table's (:func:`mnemonic_mu.defaults.default`);
        ``attacks``: every attack of the registry, :data:`~mnemonic_mu.algorithms.attacks.ATTACKS`."""
        f = _FIELDS[name]
        return f.default_factory() if callable(f.default_factory) else f.default

    @classmethod
    def from_profile(cls, profile: str = "laptop", **overrides) -> "Settings":
        """The defaults, overridden by a profile, then by ``overrides``."""
        return cls(**(load_profile(profile) | overrides))

    @classmethod
    def from_notebook(cls, profile: str, overrides: dict, **knobs) -> "Settings":
        """A notebook's settings: ``profile``, then ``overrides`` (any setting), then the
        notebook's own knobs; a knob left at None keeps the profile's value."""
        if not isinstance(overrides, dict):
            raise ConfigError(f"overrides must be a mapping of setting names to values, got {overrides!r}")
        unknown = sorted(set(overrides) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r} in overrides; see `mnemonic-mu settings`")
        return cls.from_profile(profile, **(overrides | {k: v for k, v in knobs.items() if v is not None}))


TRAINERS = ("single", "ensemble")
PRECISIONS = ("fp32", "bf16")
_FIELDS = {f.name: f for f in fields(Settings)}


# --------------------------------------------------------------------------
# The validator


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


def _coerce(name: str, value, dflt):
    """``value`` in the type of the default, or one clear ConfigError.

    Settings arrive from the CLI, YAML profiles and notebook parameters; a
    string where a number belongs is refused here, never converted or evaluated.
    """
    if isinstance(dflt, tuple):
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and name == "forget_classes":
            value = [value]  # one class given as a number
        if isinstance(value, str) and name in ("baselines", "attacks", "band_seeds"):
            value = [] if value in ("", "none") else [value]
        if name == "band_seeds" and isinstance(value, (list, tuple)) and list(value) == ["none"]:
            value = []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"setting {name} must be a list, got {value!r}")
        inner = type(dflt[0]) if dflt else str  # an empty default: a list of names
        if inner is str:
            if not all(isinstance(v, str) for v in value):
                raise ConfigError(f"setting {name} must be a list of names, got {value!r}")
            return tuple(value)
        if any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in value):
            raise ConfigError(f"setting {name} must be a list of numbers, got {value!r}")
        if inner is int:
            if any(float(v) != int(v) for v in value):
                raise ConfigError(f"setting {name} must be a list of integers, got {value!r}")
            return tuple(int(v) for v in value)
        return tuple(float(v) for v in value)
    if isinstance(dflt, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"setting {name} must be true or false, got {value!r}")
        return value
    if isinstance(dflt, int):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"setting {name} must be an integer, got {value!r} ({type(value).__name__})")
        return int(value)
    if isinstance(dflt, float):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"setting {name} must be a number, got {value!r} ({type(value).__name__})")
        return float(value)
    if not isinstance(value, (str, Path)):
        raise ConfigError(f"setting {name} must be a string, got {value!r} ({type(value).__name__})")
    return str(value)


def _choose(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _validate(s: Settings) -> None:
    _choose("dataset", s.dataset, DATASETS)
    _choose("model", s.model, MODELS)
    _choose("code distribution", s.code_dist, CODE_DISTRIBUTIONS)
    _choose("step", s.step, STEPS)
    _choose("multi-class mode", s.multi, MULTI_MODES)
    _choose("trainer", s.trainer, TRAINERS)
    _choose("precision", s.precision, PRECISIONS)
    if s.trainer == "ensemble" and (s.precision != "fp32" or s.channels_last):
        raise ConfigError("trainer 'ensemble' trains in fp32 with the default memory format; use trainer 'single'")
    if s.trainer == "ensemble" and s.model == "resnet18":
        raise ConfigError("trainer 'ensemble' cannot train resnet18 (BatchNorm statistics); use trainer 'single'")
    check_recipe(s.epochs, s.batch_size, s.lr, s.momentum, s.weight_decay, s.t_mix)
    for name in ("lambda1", "lambda2"):
        v = getattr(s, name)
        if not (math.isfinite(v) and v > 0):
            raise ConfigError(f"{name} must be a positive number, got {v} (paper MNIST: 1e-3 and 10)")
    if not s.lambda1_grid or not s.lambda2_grid:
        raise ConfigError("lambda1_grid and lambda2_grid need at least one value each")
    if any(not (math.isfinite(v) and v > 0) for v in s.lambda1_grid + s.lambda2_grid):
        raise ConfigError("lambda grids must hold positive numbers")
    for name in ("seed", "split_seed"):
        if not 0 <= getattr(s, name) < 2**63:
            raise ConfigError(f"{name} must be an integer in [0, 2**63), got {getattr(s, name)}")
    if s.fisher_repeats < 1 or any(n < 1 for n in s.fisher_samples):
        raise ConfigError("fisher_samples and fisher_repeats must be positive")
    unknown = [b for b in s.baselines if b not in METHODS]
    if unknown:
        raise ConfigError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(method_choices())} (or none)")
    references = [b for b in s.baselines if METHODS[b].reference]
    if references:
        raise ConfigError(
            f"{references[0]} is always the reference row (trained once, cached); leave it out of baselines"
        )
    unknown = [a for a in s.attacks if a not in ATTACKS]
    if unknown:
        raise ConfigError(f"unknown attack {unknown[0]!r}; choose from {', '.join(ATTACKS)} (or none)")
    if len(set(s.band_seeds)) != len(s.band_seeds) or any(not 0 <= b < 2**63 for b in s.band_seeds):
        raise ConfigError(f"band_seeds must be distinct integers in [0, 2**63), got {list(s.band_seeds)}")
    if s.seed in s.band_seeds:
        raise ConfigError(
            f"band_seeds {list(s.band_seeds)} holds the request's own seed {s.seed}: the band is "
            "retrain's spread over other seeds; drop it from band_seeds or choose another seed"
        )
    if s.probe_max_train < 10:
        raise ConfigError(f"probe_max_train must be at least 10, got {s.probe_max_train}")
    if s.threads < 0:
        raise ConfigError(f"threads must be >= 0 (0 = OMP_NUM_THREADS or torch's default), got {s.threads}")
    if s.workers < 0:
        raise ConfigError(f"workers must be >= 0 (0 = one per CPU core, 1 = all in this process), got {s.workers}")
    if not s.forget_classes:
        raise ConfigError("forget_classes is empty; name at least one class, e.g. [0]")
    # the registry's class count (with its default options): check the request before anything runs
    try:
        check_forget_classes(s.forget_classes, DATASETS[s.dataset].classes())
    except ConfigError as exc:
        raise ConfigError(f"dataset {s.dataset!r}: {exc}") from None
    try:
        resolve_device(s.device)  # 'cuda' on a machine without one fails here, not after training
    except DeviceError:
        if _CHECK_DEVICE.get():
            raise


_CHECK_DEVICE = contextvars.ContextVar("mnemonic_mu_check_device", default=True)


@contextlib.contextmanager
def device_check_deferred():
    """Settings built inside this block check the device's spelling but not that *this* machine
    has it: for a preview of a job that runs elsewhere (``sweep --backend slurm --dry-run`` on a
    login node without a GPU), never for a run.  Such settings fail again when rebuilt outside
    it (``replace`` validates anew)."""
    token = _CHECK_DEVICE.set(False)
    try:
        yield
    finally:
        _CHECK_DEVICE.reset(token)


__all__ = ["Settings", "device_check_deferred"]
