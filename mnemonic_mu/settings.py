"""The one settings object: every knob of the kit, its default, and its check.

:class:`Settings` is built by the library, the CLI (``experiment``, ``sweep``,
``report``), the notebooks' parameters cells and the YAML profiles alike.
Each default is stated once, below, with a one-line comment; profiles
(``mnemonic_mu/profiles/*.yaml``) are partial overrides of it; the CLI's
options are derived from its fields (:func:`add_options`); docs/settings.md
is generated from it (:func:`defaults_table`).  :meth:`Settings.__post_init__`
is the only validator: a wrong value fails there with one clear message.

Library functions that take one of these choices as an optional argument
(``forget(step=None)``, ``generate_codes(dist=None)``, ``TrainConfig``) fall
back to :func:`default`, so the kit has one table of defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import dataclasses
import inspect
import math
import numbers
import re
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

import yaml

from .algorithms.attacks import ATTACKS
from .algorithms.forget import PAPER_LAMBDA1_GRID, PAPER_LAMBDA2_GRID
from .errors import ConfigError, DeviceError


def _registered_baselines() -> tuple[str, ...]:
    """Every registered method but the references (:func:`~mnemonic_mu.algorithms.methods.baseline_names`)."""
    from .algorithms.methods import baseline_names  # imported when asked: methods -> train imports this module

    return baseline_names()


@dataclass(frozen=True)
class Settings:
    """Every setting of a run; the defaults are the kit's (the ``laptop`` profile)."""

    # -- data
    dataset: str = "mnist5k"  # mnist5k (offline default) | digits | mnist | fashion_mnist | cifar10 | synthetic | synthetic_pairs
    data_root: str = "data"  # torchvision data root of mnist, fashion_mnist and cifar10
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
    step: str = "calibrated"  # calibrated (the kit's, codes only) | paper (Eq. 5 with fixed lambdas)
    multi: str = "sequential"  # several classes, calibrated step: sequential (one step per class) | joint
    lambda1: float = 1e-3  # Eq. 5 gain cap (paper MNIST: 1e-3)
    lambda2: float = 10.0  # Eq. 5 largest change per layer (paper MNIST: 10)
    lambda1_grid: tuple[float, ...] = PAPER_LAMBDA1_GRID  # the paper's lambda1 grid, scored on validation
    lambda2_grid: tuple[float, ...] = PAPER_LAMBDA2_GRID  # the paper's lambda2 grid, scored on validation
    tune_lambdas: bool = False  # use the validation-best (lambda1, lambda2) instead of the pair above
    # -- the Fisher study of notebook 03
    fisher_samples: tuple[int, ...] = (1, 10, 100)  # n of the "Fisher from n real samples" curve
    fisher_repeats: int = 3  # random draws per n
    # -- evaluation
    baselines: tuple[str, ...] = field(default_factory=_registered_baselines)  # methods scored beside the mnemonic step (by default every method of the registry but retrain, the reference)
    probe_max_train: int = 2000  # train samples drawn for the linear-probe attack
    attacks: tuple[str, ...] = field(default_factory=lambda: tuple(ATTACKS))  # attacks scored per row (by default every attack of the registry); none: accuracies only (the report needs all)
    band_seeds: tuple[int, ...] = (1000, 1001, 1002, 1003)  # seeds of the extra retrain references that make retrain's band (never the request's seed); none: no band
    # -- runtime: where and how fast; none of these changes a result
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    threads: int = 1  # torch threads (0: OMP_NUM_THREADS or torch's default)
    workers: int = 0  # processes for a request's independent models, rows and baselines (0: one per CPU core; 1: all in this process)
    cache_dir: str = "data/cache"  # trained models and stage results
    use_cache: bool = True  # reuse a cached model or result with the same key
    run_dir: str = "reports/notebooks"  # figures/ and metrics/ of a notebook run
    compute_upstream: bool = True  # a notebook computes a missing earlier stage (and says so in one line); false: stop and name the notebook to run first

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name), default(f.name)))
        _validate(self)

    # -- views
    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def results_dict(self) -> dict:
        """The settings that can change a number (everything but :data:`RUNTIME`)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME}

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    def train_config(self, exclude=(), t_mix: float | None = None):
        """The :class:`~mnemonic_mu.algorithms.train.TrainConfig` of one model of this recipe."""
        from .algorithms.train import TrainConfig

        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, momentum=self.momentum,
            weight_decay=self.weight_decay, t_mix=self.t_mix if t_mix is None else t_mix,
            cosine=self.cosine, seed=self.seed, exclude_classes=tuple(exclude), precision=self.precision,
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
RUNTIME = (
    "data_root", "download", "device", "threads", "workers", "cache_dir", "use_cache", "run_dir", "compute_upstream",
)


def default(name: str):
    """The default of setting ``name`` (the one table above; ``attacks`` and ``baselines``: every attack
    and every method but retrain of the registries, :data:`~mnemonic_mu.algorithms.attacks.ATTACKS` and
    :data:`~mnemonic_mu.algorithms.methods.METHODS`, read when asked)."""
    f = _FIELDS[name]
    return f.default_factory() if callable(f.default_factory) else f.default


def comments() -> dict[str, str]:
    """``{name: its one-line comment}``, read from the class source above."""
    src = inspect.getsource(Settings)
    return dict(re.findall(r"^    (\w+): [^=]+= .*?  # (.*)$", src, flags=re.M))


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


def check_recipe(epochs, batch_size, lr, momentum, weight_decay, t_mix) -> None:
    """The training recipe's ranges (also checked by TrainConfig)."""
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


def _choose(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _validate(s: Settings) -> None:
    from .algorithms.codes import CODE_DISTRIBUTIONS
    from .algorithms.forget import MULTI_MODES, STEPS
    from .algorithms.methods import METHODS, baseline_names
    from .algorithms.metrics import check_forget_classes
    from .algorithms.models import MODELS
    from .io.data import DATASETS
    from .runtime import resolve_device

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
        raise ConfigError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(baseline_names())} (or none)")
    references = [b for b in s.baselines if METHODS[b].reference]
    if references:
        raise ConfigError(f"{references[0]} is always the reference row (trained once, cached); leave it out of "
                          "baselines")
    unknown = [a for a in s.attacks if a not in ATTACKS]
    if unknown:
        raise ConfigError(f"unknown attack {unknown[0]!r}; choose from {', '.join(ATTACKS)} (or none)")
    if len(set(s.band_seeds)) != len(s.band_seeds) or any(not 0 <= b < 2**63 for b in s.band_seeds):
        raise ConfigError(f"band_seeds must be distinct integers in [0, 2**63), got {list(s.band_seeds)}")
    if s.seed in s.band_seeds:
        raise ConfigError(f"band_seeds {list(s.band_seeds)} holds the request's own seed {s.seed}: the band is "
                          "retrain's spread over other seeds; drop it from band_seeds or choose another seed")
    if s.probe_max_train < 10:
        raise ConfigError(f"probe_max_train must be at least 10, got {s.probe_max_train}")
    if s.threads < 0:
        raise ConfigError(f"threads must be >= 0 (0 = OMP_NUM_THREADS or torch's default), got {s.threads}")
    if s.workers < 0:
        raise ConfigError(f"workers must be >= 0 (0 = one per CPU core, 1 = all in this process), got {s.workers}")
    if not s.forget_classes:
        raise ConfigError("forget_classes is empty; name at least one class, e.g. [0]")
    # every named dataset but 'synthetic' has 10 classes: check the request before anything runs
    check_forget_classes(s.forget_classes, 10 if s.dataset != "synthetic" else 10**9)
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


# --------------------------------------------------------------------------
# Paths


def project_root() -> Path:
    """The nearest folder at or above the working directory holding ``pyproject.toml`` and
    ``notebooks/`` (the repository), else the working directory.  Relative paths of
    :class:`Settings` resolve against it, so a notebook run from ``notebooks/`` and one
    run by ``mnemonic-mu report`` share the same cache."""
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return cwd


def resolve_path(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


# --------------------------------------------------------------------------
# Profiles and overrides

PROFILES = ("ci", "laptop", "paper")


def load_profile(name: str) -> dict:
    """The overrides of profile ``name`` (a small YAML mapping shipped with the package)."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    text = (resources.files("mnemonic_mu") / "profiles" / f"{name}.yaml").read_text()
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"profile {name} is not a mapping of setting names to values")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"profile {name} names unknown setting {unknown[0]!r}")
    return data


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _numbers(value):
    """YAML 1.1 reads ``1e-4`` as a string; read such strings as floats (lists too)."""
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def parse_value(key: str, raw: str):
    """One value as YAML (numbers, booleans, lists, strings); nothing is evaluated."""
    try:
        return _numbers(yaml.safe_load(raw)) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"cannot read the value of {key!r}: {raw!r}") from None


def parse_overrides(items: list[str]) -> dict:
    """``["epochs=5", "forget_classes=[1, 2]"]`` -> ``{"epochs": 5, "forget_classes": [1, 2]}``."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key):
            raise ConfigError(f"parameter {item!r} is not of the form key=value (for example -p epochs=5)")
        out[key] = parse_value(key, raw)
    return out


# --------------------------------------------------------------------------
# CLI options derived from the fields


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, names) -> None:
    """One ``--name`` option per setting in ``names``, typed and documented from the table.

    Defaults are left to :class:`Settings` (an option not given is not passed), so the
    help shows the default but the parser never restates it.  Lists take YAML
    (``--forget-classes 3`` or ``--forget-classes [1,2]``), booleans ``--x`` / ``--no-x``.
    """
    notes = comments()
    for name in names:
        d, help_ = default(name), f"{notes.get(name, '')} (default {_show(default(name))})"
        if isinstance(d, bool):
            parser.add_argument(option(name), dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_)
        elif isinstance(d, tuple):
            flags = [option(name)] + (["--forget"] if name == "forget_classes" else [])  # the short name people type
            parser.add_argument(*flags, dest=name, nargs="+", default=None, metavar="V",
                                help=help_ + ("; 'none' for an empty list" if isinstance(d[0], str) else ""))
        else:
            parser.add_argument(option(name), dest=name, default=None, metavar=type(d).__name__.upper(), help=help_)


def _typed(name: str, raw: str, like):
    """One command-line word read as the type of ``like`` (``float('nan')`` and ``1e-4`` included);
    a word that is not one is passed on as text, for the validator to refuse by name."""
    if isinstance(like, str):
        return raw
    if raw.strip().startswith("["):
        return parse_value(name, raw)
    try:
        return int(raw) if isinstance(like, int) and not isinstance(like, bool) else float(raw)
    except ValueError:
        return raw


def from_args(args: argparse.Namespace, names, base: dict | None = None) -> Settings:
    """:class:`Settings` from the options of :func:`add_options` that were given, over ``base``."""
    given = dict(base or {})
    for name in names:
        raw = getattr(args, name, None)
        if raw is None:
            continue
        d = default(name)
        if isinstance(d, bool):
            given[name] = raw
        elif isinstance(d, tuple):
            if raw in (["none"], ["[]"]):
                given[name] = []
                continue
            values = [_typed(name, r, d[0]) for r in raw]
            given[name] = values[0] if len(values) == 1 and isinstance(values[0], list) else values
        else:
            given[name] = _typed(name, raw, d)
    return Settings(**given)


def _show(v) -> str:
    return "none" if v == () else (" ".join(map(str, v)) if isinstance(v, tuple) else str(v))


def defaults_table() -> str:
    """docs/settings.md's table: every setting, its default and its comment."""
    notes = comments()
    lines = ["| setting | default | meaning |", "|---|---|---|"]
    for f in fields(Settings):
        value = _plain(default(f.name))
        note = notes.get(f.name, "").replace("|", "\\|")  # a pipe would end the cell
        lines.append(f"| `{f.name}` | `{value}` | {note} |")
    return "\n".join(lines) + "\n"


__all__ = [
    "PROFILES",
    "RUNTIME",
    "Settings",
    "add_options",
    "check_recipe",
    "comments",
    "default",
    "device_check_deferred",
    "defaults_table",
    "from_args",
    "load_profile",
    "parse_overrides",
    "project_root",
    "resolve_path",
]
