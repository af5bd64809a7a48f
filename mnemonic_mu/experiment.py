"""The train -> forget -> evaluate pipeline behind ``mnemonic-mu experiment``.

Trained models are cached under ``<cache_dir>/models/<model>-<key>/`` where
``key`` hashes every setting that affects training, so forgetting other
classes of the same model costs no retraining.  The retrain reference is
cached the same way (its key includes the excluded classes).
"""

from __future__ import annotations

import math
import numbers
import os
import platform
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from .artifacts import file_lock, settings_key
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .codes import CODE_DISTRIBUTIONS, check_t_mix, generate_codes
from .data import DATASETS, Dataset, load_dataset
from .errors import CheckpointError, ConfigError, DeviceError
from .forget import MULTI_MODES, STEPS, Calibration, forget
from .metrics import check_forget_classes, evaluate
from .models import MODELS, build_model
from .train import TrainConfig, train_model


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when present)."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} was requested but this machine has no usable CUDA GPU; "
                "use --device cpu (or auto)"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"device {name!r} was requested but this machine has {count} CUDA GPU(s), "
                f"cuda:0 to cuda:{count - 1}; use one of those, cuda, or --device cpu"
            )
        return device
    if name != "cpu":
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto")
    return torch.device("cpu")


def set_threads(threads: int | None) -> int:
    """Fix torch's intra-op thread count (argument, else OMP_NUM_THREADS, else unchanged)."""
    if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(os.environ["OMP_NUM_THREADS"])
    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


@dataclass(frozen=True)
class ExperimentConfig:
    """Every option of ``mnemonic-mu experiment``; defaults = the paper's MNIST setting on mnist5k."""

    dataset: str = "mnist5k"  # see mnemonic_mu.data.DATASETS
    data_root: str = "data"  # torchvision data root for mnist / fashion_mnist / cifar10
    download: bool = False  # allow torchvision to download a missing dataset
    model: str = "mlp"  # mlp | cnn | resnet18
    epochs: int = 200  # training epochs (paper: 200)
    batch_size: int = 128  # paper: 128
    lr: float = 0.01  # SGD learning rate (paper: 0.01)
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # SGD weight decay
    cosine: bool = False  # cosine schedule (paper: CIFAR-10 only)
    t_mix: float = 0.1  # code replacement probability (paper MNIST: 0.1)
    code_dist: str = "uniform"  # uniform U[0,1) (default, measured better: README) | normal (paper)
    forget: tuple[int, ...] = (0,)  # classes to forget
    seed: int = 0  # training seed; also seeds the codes
    split_seed: int = 0  # fixed seed of the train/validation(/test) split
    lambda1: float = 1e-3  # Eq. 5 gain cap (paper MNIST: 1e-3)
    lambda2: float = 10.0  # Eq. 5 largest change per layer (paper MNIST: 10)
    step: str = "calibrated"  # calibrated (default, measured better: README) | paper
    multi: str = "sequential"  # calibrated step, several classes: sequential (default, README) | joint
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    threads: int = 0  # torch threads (0 = OMP_NUM_THREADS or torch's default)
    cache_dir: str = "data/cache"  # where trained models are cached
    use_cache: bool = True  # reuse a cached model with the same settings
    retrain: bool = True  # also train/evaluate the retrain-from-scratch reference
    no_codes: bool = False  # also train/evaluate the same recipe with t_mix = 0

    def __post_init__(self) -> None:
        self._check_types()
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.code_dist not in CODE_DISTRIBUTIONS:
            raise ConfigError(
                f"unknown code distribution {self.code_dist!r}; choose one of {', '.join(CODE_DISTRIBUTIONS)}"
            )
        if self.step not in STEPS:
            raise ConfigError(f"unknown step {self.step!r}; choose one of {', '.join(STEPS)}")
        if self.multi not in MULTI_MODES:
            raise ConfigError(f"unknown multi-class mode {self.multi!r}; choose one of {', '.join(MULTI_MODES)}")
        check_t_mix(self.t_mix)
        for name in ("lambda1", "lambda2"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a positive number, got {v} (paper MNIST: 1e-3 and 10)")
        object.__setattr__(self, "forget", tuple(int(c) for c in self.forget))
        for name in ("seed", "split_seed"):
            if not 0 <= getattr(self, name) < 2**63:
                raise ConfigError(f"{name} must be an integer in [0, 2**63), got {getattr(self, name)}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 = OMP_NUM_THREADS or torch's default), got {self.threads}")
        self.train_config()  # validates epochs, batch size, lr ...

    def _check_types(self) -> None:
        """Every field must have its default's type (an int is accepted for a float).

        Settings arrive from the CLI, YAML profiles and notebook parameters; a
        string where a number belongs is refused here, never converted or evaluated.
        """
        for f in fields(self):
            value, default = getattr(self, f.name), f.default
            if isinstance(default, tuple):
                ok = isinstance(value, (list, tuple)) and all(
                    isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in value
                )
                want = "a list of class numbers"
            elif isinstance(default, bool):
                ok, want = isinstance(value, bool), "true or false"
            elif isinstance(default, int):
                ok, want = isinstance(value, numbers.Integral) and not isinstance(value, bool), "an integer"
            elif isinstance(default, float):
                ok, want = isinstance(value, numbers.Real) and not isinstance(value, bool), "a number"
            else:
                ok, want = isinstance(value, (str, os.PathLike)), "a string"
            if not ok:
                raise ConfigError(f"setting {f.name} must be {want}, got {value!r} ({type(value).__name__})")

    def train_config(self, exclude: tuple[int, ...] = (), t_mix: float | None = None) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            t_mix=self.t_mix if t_mix is None else t_mix,
            cosine=self.cosine,
            seed=self.seed,
            exclude_classes=exclude,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["forget"] = list(self.forget)
        return d

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def load_experiment_data(cfg: ExperimentConfig) -> Dataset:
    return load_dataset(cfg.dataset, cfg.data_root, download=cfg.download, split_seed=cfg.split_seed)


def model_settings(cfg: ExperimentConfig, dataset: Dataset, train_cfg: TrainConfig) -> dict:
    """Everything that determines a trained model: the cache key is its hash."""
    return {
        "dataset": dataset.name,
        "data": dataset.summary(),
        "split_seed": cfg.split_seed,
        "model": cfg.model,
        "code_dist": cfg.code_dist,
        "code_seed": cfg.seed,
        "train": train_cfg.to_dict() | {"eval_every": None},
    }


def train_or_load(
    cfg: ExperimentConfig,
    dataset: Dataset,
    train_cfg: TrainConfig,
    device: torch.device,
    progress: bool = False,
) -> tuple[Checkpoint, bool]:
    """Return the cached model for these settings, training it first if needed.

    Returns ``(checkpoint, from_cache)``.  A corrupted cache entry is trained
    again; two processes asking for the same key wait for each other.
    """
    settings = model_settings(cfg, dataset, train_cfg)
    key = settings_key(settings)
    root = Path(cfg.cache_dir).expanduser().resolve()
    folder = root / "models" / f"{cfg.model}-{dataset.name}-{key}"
    with file_lock(root / "locks" / f"{key}.lock"):
        if cfg.use_cache and folder.is_dir():
            try:
                ck = load_checkpoint(folder, expect={"key": key}, device=device)
                return ck, True
            except CheckpointError:
                pass  # a broken entry is replaced below
        codes = generate_codes(dataset.num_classes, dataset.input_shape, cfg.code_dist, cfg.seed)
        model = build_model(cfg.model, dataset.input_shape, dataset.num_classes, seed=cfg.seed)
        result = train_model(model, dataset, codes, train_cfg, device=device, progress=progress)
        config = settings | {
            "key": key,
            "input_shape": list(dataset.input_shape),
            "num_classes": dataset.num_classes,
            "train_seconds": result.seconds,
            "replaced_fraction": result.replaced_fraction,
            "device": str(device),
            "torch": torch.__version__,
        }
        splits = {"train": dataset.train_index, "val": dataset.val_index, "test": dataset.test_index}
        save_checkpoint(folder, model, codes, config, splits, result.history)
        ck = load_checkpoint(folder, expect={"key": key}, device=device)
        return ck, False


def _brief(ev: dict) -> dict:
    keep = ("test_accuracy", "A_R", "E_F", "A_R_train", "E_F_train", "per_class_accuracy")
    return {k: ev[k] for k in keep if k in ev}


def run_experiment(cfg: ExperimentConfig, progress: bool = False) -> dict:
    """Train (or load) the original model, forget ``cfg.forget`` in one shot, evaluate.

    Returns the JSON-ready result: ``config``, ``environment``, ``original``,
    ``mnemonic`` and, when enabled, ``retrain`` and ``no_codes``.
    """
    device = resolve_device(cfg.device)
    threads = set_threads(cfg.threads or None)
    dataset = load_experiment_data(cfg)
    forget_classes = check_forget_classes(cfg.forget, dataset.num_classes)
    start = time.perf_counter()

    original, cached = train_or_load(cfg, dataset, cfg.train_config(), device, progress)
    out: dict = {
        "config": cfg.to_dict() | {"device_resolved": str(device), "threads": threads},
        "environment": environment(device),
    }
    ev = evaluate(original.model, dataset, forget_classes)
    out["original"] = _brief(ev) | {
        "train_seconds": original.config["train_seconds"],
        "from_cache": cached,
        "checkpoint": str(original.folder),
    }

    # warm-up, so the timed step measures the step and not one-off allocations
    step = dict(step=cfg.step, calibration=Calibration(multi=cfg.multi))
    forget(original.model, original.codes, forget_classes, cfg.lambda1, cfg.lambda2, **step)
    unlearned, record = forget(original.model, original.codes, forget_classes, cfg.lambda1, cfg.lambda2, **step)
    ev = evaluate(unlearned, dataset, forget_classes)
    out["mnemonic"] = _brief(ev) | {
        "step": record.step,
        "sign": record.sign,
        "sign_tie": record.sign_tie,
        "scale": record.scale,
        "forget_seconds": record.seconds,
        "backward_passes": record.backward_passes,
        "forget_code_predicted": record.forget_code_predicted,
        "retain_codes_kept": record.retain_codes_kept,
        "warnings": record.warnings,
        "alpha": record.alpha,
        "multi": record.multi,
        "parts": record.parts,
    }
    if cfg.retrain:
        ref, cached = train_or_load(cfg, dataset, cfg.train_config(exclude=forget_classes), device, progress)
        out["retrain"] = _brief(evaluate(ref.model, dataset, forget_classes)) | {
            "train_seconds": ref.config["train_seconds"],
            "from_cache": cached,
        }
    if cfg.no_codes:
        plain, cached = train_or_load(cfg, dataset, cfg.train_config(t_mix=0.0), device, progress)
        out["no_codes"] = _brief(evaluate(plain.model, dataset, forget_classes)) | {
            "train_seconds": plain.config["train_seconds"],
            "from_cache": cached,
        }
    out["total_seconds"] = time.perf_counter() - start
    return out


def environment(device: torch.device) -> dict:
    """Versions, device and host facts recorded with every result."""
    import numpy

    from . import __version__

    env = {
        "mnemonic_mu": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    env["packages"] = _package_versions(("torchvision", "scikit-learn", "mlxtend", "papermill"))
    return env


def _package_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Installed versions (None when absent), read from metadata without importing the packages."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


__all__ = [
    "ExperimentConfig",
    "environment",
    "load_experiment_data",
    "model_settings",
    "resolve_device",
    "run_experiment",
    "set_threads",
    "train_or_load",
]
