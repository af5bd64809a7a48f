"""The six notebook stages: one validated config, artifacts keyed by settings, shared helpers.

Stage graph (an arrow = "reads the artifact of")::

    01_mnemonic_codes -> 02_training -> 03_fisher
                                     -> 04_unlearning -> 05_membership_evaluation
    06_report reads 02_training, 04_unlearning and 05_membership_evaluation

Every stage writes one folder ``<cache_dir>/stages/<stage>-<key>/`` holding
``result.json`` (the payload), ``config.json`` (the stage's settings, its
upstream keys and the full resolved config), ``meta.json`` (versions,
device, time) and a sha256 ``manifest.json``.  ``key`` hashes the stage's
own settings chained to the keys of its upstream stages
(:func:`stage_key`), so a notebook finds its input by recomputing the key
from its parameters, never from a hard-coded path.  Asking for a stage that
was not computed raises :class:`StageOrderError` naming the notebook to run
first, unless ``compute_upstream`` is set: then the ``compute_*`` function of
that stage runs here (the notebooks call the very same functions).

Figures and metrics of a report run go to ``<run_dir>/figures`` and
``<run_dir>/metrics``, named after their notebook.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .artifacts import atomic_write_bytes, atomic_write_text, settings_key, sha256_file, staging_dir, verify_manifest
from .artifacts import write_json, write_manifest
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .codes import generate_codes, replace_with_codes
from .data import Dataset, load_dataset
from .errors import CheckpointError, ConfigError, StageOrderError
from .experiment import ExperimentConfig, environment, resolve_device, set_threads, train_or_load
from .fisher import code_fisher, data_fisher, fisher_distance, mean_fisher
from .forget import fisher_ratio, forget, layer_alphas
from .metrics import check_forget_classes, evaluate, gap_to_retrain, predict_logits

NOTEBOOKS = (
    "01_mnemonic_codes",
    "02_training",
    "03_fisher",
    "04_unlearning",
    "05_membership_evaluation",
    "06_report",
)

UPSTREAM: dict[str, tuple[str, ...]] = {
    "01_mnemonic_codes": (),
    "02_training": ("01_mnemonic_codes",),
    "03_fisher": ("02_training",),
    "04_unlearning": ("02_training",),
    "05_membership_evaluation": ("04_unlearning",),
    "06_report": ("02_training", "04_unlearning", "05_membership_evaluation"),
}

# The settings that change a stage's result (device, threads and paths do not).
STAGE_SETTINGS: dict[str, tuple[str, ...]] = {
    "01_mnemonic_codes": ("dataset", "split_seed", "code_dist", "seed", "t_mix", "batch_size"),
    "02_training": ("model", "epochs", "lr", "momentum", "weight_decay", "cosine", "forget_classes"),
    "03_fisher": ("fisher_samples", "fisher_repeats", "lambda1", "lambda2"),
    "04_unlearning": ("lambda1", "lambda2", "step", "lambda1_grid", "lambda2_grid", "tune_lambdas"),
    "05_membership_evaluation": (),
    "06_report": ("baselines",),
}

# Methods of mnemonic_mu.methods run by 06_report: every registered one but
# retrain, whose row is stage 02's reference (same recipe, trained once).
# Registry "mnemonic", the validation-tuned variant, is shown as
# "mnemonic (registry)" since the row "mnemonic" is stage 04's result.
DEFAULT_BASELINES = (
    "mnemonic",
    "mnemonic_paper",
    "mnemonic_calibrated",
    "ours_with_data",
    "finetune",
    "neggrad",
    "neggrad_plus",
    "random_label",
    "ssd",
    "fisher_forgetting",
)

_COMMON = ("data_root", "download", "cache_dir", "run_dir")
_RUNTIME = ("device", "threads", "compute_upstream")

# The parameters each notebook declares: its own settings, those of every
# stage upstream (needed to recompute their keys) and the runtime options.
NOTEBOOK_PARAMETERS: dict[str, tuple[str, ...]] = {}


def _chain(stage: str) -> list[str]:
    out: list[str] = []
    for up in UPSTREAM[stage]:
        out += [s for s in _chain(up) if s not in out]
    return out + [stage] if stage not in out else out


for _nb in NOTEBOOKS:
    _names = [n for s in _chain(_nb) for n in STAGE_SETTINGS[s]] + list(_COMMON)
    if _nb != "01_mnemonic_codes":
        _names += list(_RUNTIME)
    NOTEBOOK_PARAMETERS[_nb] = tuple(dict.fromkeys(_names))


# --------------------------------------------------------------------------
# The config


@dataclass(frozen=True)
class StageConfig:
    """Every notebook parameter; defaults are the ``laptop`` profile.

    A notebook builds it from its ``parameters`` cell; validation happens
    here, so a wrong value fails in the config cell with one clear message.
    """

    dataset: str = "mnist5k"  # see mnemonic_mu.data.DATASETS
    data_root: str = "data"  # torchvision data root (mnist, fashion_mnist, cifar10)
    download: bool = False  # let torchvision download a missing dataset
    split_seed: int = 0  # seed of the train/validation/test split
    model: str = "mlp"  # mlp (paper, MNIST) | cnn | resnet18 (paper, CIFAR-10)
    epochs: int = 40  # training epochs (paper: 200; mnist5k plateaus by 40)
    batch_size: int = 128  # paper: 128
    lr: float = 0.01  # SGD learning rate (paper: 0.01)
    momentum: float = 0.9  # SGD momentum (paper: 0.9)
    weight_decay: float = 5e-4  # SGD weight decay (paper: 5e-4)
    cosine: bool = False  # cosine schedule (paper: CIFAR-10 only)
    t_mix: float = 0.1  # code replacement probability (paper MNIST: 0.1)
    code_dist: str = "uniform"  # uniform U[0,1) (default, measured better: README) | normal (paper)
    seed: int = 0  # training, code and attack seed
    forget_classes: tuple[int, ...] = (0,)  # classes to forget (paper: 0)
    fisher_samples: tuple[int, ...] = (1, 10, 100)  # n of the "Fisher from n real samples" curve
    fisher_repeats: int = 3  # random draws per n
    lambda1: float = 1e-3  # Eq. 5 gain cap (paper MNIST: 1e-3)
    lambda2: float = 10.0  # Eq. 5 largest change per layer (paper MNIST: 10)
    step: str = "paper"  # paper | calibrated (the kit extension, see README)
    lambda1_grid: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # validation sweep of lambda1
    lambda2_grid: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)  # validation sweep of lambda2
    tune_lambdas: bool = False  # use the validation-best (lambda1, lambda2) instead of the given pair
    baselines: tuple[str, ...] = DEFAULT_BASELINES  # methods of mnemonic_mu.methods shown beside ours in 06
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    threads: int = 1  # torch threads; 0: OMP_NUM_THREADS or the torch default
    cache_dir: str = "data/cache"  # trained models and stage artifacts
    run_dir: str = "reports/notebooks"  # figures/ and metrics/ of this run
    compute_upstream: bool = False  # compute a missing upstream stage instead of stopping

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            want = _FIELD_TYPES[f.name]
            if want is tuple:
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    value = [value]  # one class given as a number
                if not isinstance(value, (list, tuple)):
                    raise ConfigError(f"{f.name} must be a list, got {value!r}")
                if isinstance(value, str):
                    value = [value]
                inner = {"forget_classes": int, "fisher_samples": int, "baselines": str}.get(f.name, float)
                if inner is str:
                    if not all(isinstance(v, str) for v in value):
                        raise ConfigError(f"{f.name} must be a list of names, got {value!r}")
                elif any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
                    raise ConfigError(f"{f.name} must be a list of numbers, got {value!r}")
                if inner is int and any(float(v) != int(v) for v in value):
                    raise ConfigError(f"{f.name} must be a list of integers, got {value!r}")
                object.__setattr__(self, f.name, tuple(inner(v) for v in value))
            elif want is float:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"{f.name} must be a number, got {value!r}")
                object.__setattr__(self, f.name, float(value))
            elif want is int:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"{f.name} must be an integer, got {value!r}")
            elif not isinstance(value, want):
                raise ConfigError(f"{f.name} must be a {want.__name__}, got {value!r}")
        if not self.forget_classes:
            raise ConfigError("forget_classes is empty; name at least one class, e.g. [0]")
        if self.fisher_repeats < 1 or any(n < 1 for n in self.fisher_samples):
            raise ConfigError("fisher_samples and fisher_repeats must be positive")
        if not self.lambda1_grid or not self.lambda2_grid:
            raise ConfigError("lambda1_grid and lambda2_grid need at least one value each")
        if any(not (math.isfinite(v) and v > 0) for v in self.lambda1_grid + self.lambda2_grid):
            raise ConfigError("lambda grids must hold positive numbers")
        if baselines_available():
            from .methods import METHODS

            unknown = [b for b in self.baselines if b not in METHODS]
            if unknown:
                raise ConfigError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(METHODS)}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads}")
        self.experiment()  # validates dataset, model, code_dist, step, t_mix, lambdas, training
        # every named dataset but 'synthetic' has 10 classes: check the request before any notebook runs
        check_forget_classes(self.forget_classes, 10 if self.dataset != "synthetic" else 10**9)
        resolve_device(self.device)  # 'cuda' on a machine without one fails here, not in notebook 02

    def experiment(self) -> ExperimentConfig:
        """The same settings as :class:`ExperimentConfig` (shares its cache of trained models)."""
        return ExperimentConfig(
            dataset=self.dataset,
            data_root=str(self.data_path),
            download=self.download,
            model=self.model,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            cosine=self.cosine,
            t_mix=self.t_mix,
            code_dist=self.code_dist,
            forget=self.forget_classes,
            seed=self.seed,
            split_seed=self.split_seed,
            lambda1=self.lambda1,
            lambda2=self.lambda2,
            step=self.step,
            device=self.device,
            threads=self.threads,
            cache_dir=str(self.cache_path),
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

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def setup(self) -> torch.device:
        """Fix the thread count (torch and BLAS) and return the device (call once per notebook)."""
        threads = set_threads(self.threads or None)
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
        return resolve_device(self.device)


_SCALARS = {"str": str, "int": int, "float": float, "bool": bool}
_FIELD_TYPES: dict[str, type] = {
    f.name: tuple if str(f.type).startswith("tuple") else _SCALARS[str(f.type)] for f in fields(StageConfig)
}


def project_root() -> Path:
    """The nearest folder at or above the working directory holding ``pyproject.toml`` and
    ``notebooks/`` (the repository), else the working directory.  Relative paths of a
    :class:`StageConfig` are resolved against it, so a notebook run from ``notebooks/``
    and one run by ``mnemonic-mu report`` share the same cache."""
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return cwd


def resolve_path(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


# --------------------------------------------------------------------------
# Keys and artifact folders


def stage_settings(cfg: StageConfig, stage: str) -> dict:
    return {name: cfg.to_dict()[name] for name in STAGE_SETTINGS[stage]}


def stage_key(cfg: StageConfig, stage: str) -> str:
    """settings_key of the stage's settings chained to its upstream keys."""
    upstream = "+".join(stage_key(cfg, up) for up in UPSTREAM[stage]) or None
    return settings_key({"stage": stage, **stage_settings(cfg, stage)}, upstream)


def stage_dir(cfg: StageConfig, stage: str) -> Path:
    return cfg.cache_path / "stages" / f"{stage}-{stage_key(cfg, stage)}"


@dataclass
class StageArtifact:
    """A stage's saved result (and, right after computing, in-memory extras)."""

    stage: str
    key: str
    folder: Path
    result: dict
    extras: dict = field(default_factory=dict)


def save_stage(
    cfg: StageConfig,
    stage: str,
    result: dict,
    device: torch.device | str = "cpu",
    seconds: float | None = None,
    write_payload: Callable[[Path], None] | None = None,
) -> StageArtifact:
    """Write a stage folder atomically (payload, config, metadata, manifest)."""
    folder, key = stage_dir(cfg, stage), stage_key(cfg, stage)
    with staging_dir(folder) as tmp:
        write_json(tmp / "result.json", result)
        write_json(
            tmp / "config.json",
            {
                "stage": stage,
                "key": key,
                "settings": stage_settings(cfg, stage),
                "upstream": {up: stage_key(cfg, up) for up in UPSTREAM[stage]},
                "config": cfg.to_dict(),
            },
        )
        write_json(
            tmp / "meta.json",
            {
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "seconds": seconds,
                "environment": environment(torch.device(device)),
            },
        )
        if write_payload is not None:
            write_payload(tmp)
        write_manifest(tmp, {"stage": stage, "key": key})
    return StageArtifact(stage, key, folder, result)


def load_stage(cfg: StageConfig, stage: str) -> StageArtifact:
    """Load a stage's artifact for these settings; see the module doc for a missing one."""
    folder = stage_dir(cfg, stage)
    if not folder.is_dir():
        if cfg.compute_upstream:
            return COMPUTE[stage](cfg)
        raise StageOrderError(
            f"no result of stage {stage} for these settings (key {stage_key(cfg, stage)}): "
            f"run notebooks/{stage}.ipynb first with the same parameters, "
            "or set compute_upstream = True"
        )
    verify_manifest(folder)
    result = json.loads((folder / "result.json").read_text())
    return StageArtifact(stage, stage_key(cfg, stage), folder, result)


# --------------------------------------------------------------------------
# Data


def load_data(cfg: StageConfig) -> Dataset:
    """The dataset split by ``cfg.split_seed``; small datasets are cached as tensors
    under ``<cache_dir>/datasets`` (parsing mnist5k's CSV takes seconds), each with a
    sha256 file; a file that does not match its hash is ignored and rebuilt."""
    ident = {"dataset": cfg.dataset, "split_seed": cfg.split_seed, "root": str(cfg.data_path), "v": 1}
    path = cfg.cache_path / "datasets" / f"{cfg.dataset}-{settings_key(ident)}.pt"
    names = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "train_index", "val_index", "test_index")
    digest = path.with_name(path.name + ".sha256")
    if path.is_file() and digest.is_file() and digest.read_text().strip() == sha256_file(path):
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            return Dataset(
                name=blob["name"],
                num_classes=int(blob["num_classes"]),
                augment=blob["augment"],
                pad_value=tuple(blob["pad_value"]),
                **{n: blob[n] for n in names},
            )
        except Exception:  # a stale cache file: load from source below
            pass
    ds = load_dataset(cfg.dataset, cfg.data_path, download=cfg.download, split_seed=cfg.split_seed)
    if ds.x_train.numel() * 4 < 64 * 2**20:
        blob = {n: getattr(ds, n) for n in names}
        blob |= {"name": ds.name, "num_classes": ds.num_classes, "augment": ds.augment, "pad_value": list(ds.pad_value)}
        buf = io.BytesIO()
        torch.save(blob, buf)
        atomic_write_bytes(path, buf.getvalue())
        atomic_write_text(digest, hashlib.sha256(buf.getvalue()).hexdigest() + "\n")
    return ds


def forget_mask(y: torch.Tensor, forget_classes) -> torch.Tensor:
    return torch.isin(y, torch.tensor(list(forget_classes), dtype=y.dtype))


# --------------------------------------------------------------------------
# Stage 01: codes


def measure_replacement(
    dataset: Dataset, codes: torch.Tensor, t_mix: float, batch_size: int, epochs: int = 10, seed: int = 0
) -> dict:
    """Share of training draws replaced by codes over ``epochs`` simulated epochs (Algorithm 1).

    Returns the measured rate, its binomial standard error and the rate per class.
    """
    gen = torch.Generator().manual_seed(int(seed))
    x, y = dataset.x_train, dataset.y_train
    hits = torch.zeros(dataset.num_classes)
    draws = torch.zeros(dataset.num_classes)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            yb = y[perm[i : i + batch_size]]
            _, mask = replace_with_codes(x[perm[i : i + batch_size]], yb, codes, t_mix, gen)
            hits += torch.bincount(yb[mask], minlength=dataset.num_classes).float()
            draws += torch.bincount(yb, minlength=dataset.num_classes).float()
    rate = float(hits.sum() / draws.sum())
    return {
        "t_mix": t_mix,
        "measured": rate,
        "std_error": math.sqrt(t_mix * (1 - t_mix) / float(draws.sum())),
        "draws": int(draws.sum()),
        "per_class": (hits / draws.clamp_min(1)).tolist(),
    }


def compute_codes(cfg: StageConfig, dataset: Dataset | None = None) -> StageArtifact:
    """Stage 01: draw the codes (section 1) and measure the replacement rate (Algorithm 1)."""
    start = time.perf_counter()
    dataset = dataset or load_data(cfg)
    codes = generate_codes(dataset.num_classes, dataset.input_shape, cfg.code_dist, cfg.seed)
    result = {
        "code_dist": cfg.code_dist,
        "num_classes": dataset.num_classes,
        "input_shape": list(dataset.input_shape),
        "codes_sha256": hashlib.sha256(codes.numpy().tobytes()).hexdigest(),
        "code_stats": {"mean": float(codes.mean()), "std": float(codes.std())},
        "data_stats": {"mean": float(dataset.x_train.mean()), "std": float(dataset.x_train.std())},
        "replacement": measure_replacement(dataset, codes, cfg.t_mix, cfg.batch_size, seed=cfg.seed),
        "dataset": dataset.summary(),
    }
    art = save_stage(cfg, "01_mnemonic_codes", result, seconds=time.perf_counter() - start)
    art.extras["codes"] = codes
    return art


# --------------------------------------------------------------------------
# Stage 02: training

MODEL_ROLES = ("original", "no_codes", "retrain")


def brief(ev: dict) -> dict:
    """The accuracy metrics kept in artifacts (percent)."""
    keep = ("A_R", "E_F", "A_R_train", "E_F_train", "test_accuracy", "per_class_accuracy")
    return {k: ev[k] for k in keep if k in ev}


def compute_training(cfg: StageConfig, dataset: Dataset | None = None, progress: bool = False) -> StageArtifact:
    """Stage 02: the original model (with codes), the same without codes, and retrain.

    Models come from :func:`train_or_load`, so each is trained once per
    setting and shared with ``mnemonic-mu experiment``.
    """
    start = time.perf_counter()
    device = cfg.setup()
    dataset = dataset or load_data(cfg)
    codes_art = load_stage(cfg, "01_mnemonic_codes")
    forget_classes = check_forget_classes(cfg.forget_classes, dataset.num_classes)
    exp = cfg.experiment()
    recipes = {
        "original": exp.train_config(),
        "no_codes": exp.train_config(t_mix=0.0),
        "retrain": exp.train_config(exclude=forget_classes),
    }
    models, checkpoints = {}, {}
    for role, train_cfg in recipes.items():
        ck, cached = train_or_load(exp, dataset, train_cfg, device, progress)
        if role == "original":
            expected = generate_codes(dataset.num_classes, dataset.input_shape, cfg.code_dist, cfg.seed)
            if not torch.equal(ck.codes.cpu(), expected):
                raise CheckpointError(f"the codes in {ck.folder} are not the codes of stage 01; delete it")
        checkpoints[role] = ck
        models[role] = {
            "checkpoint": str(ck.folder),
            "key": ck.config["key"],
            "t_mix": train_cfg.t_mix,
            "exclude_classes": list(train_cfg.exclude_classes),
            "train_seconds": ck.config["train_seconds"],
            "replaced_fraction": ck.config["replaced_fraction"],
            "from_cache": cached,
            "history": ck.history,
            "metrics": brief(evaluate(ck.model, dataset, forget_classes)),
        }
    result = {"codes_key": codes_art.key, "forget_classes": list(forget_classes), "models": models}
    art = save_stage(cfg, "02_training", result, device, time.perf_counter() - start)
    art.extras["checkpoints"] = checkpoints
    return art


def load_models(
    cfg: StageConfig, training: StageArtifact, roles=MODEL_ROLES, device: torch.device | str = "cpu"
) -> dict[str, Checkpoint]:
    """The checkpoints stage 02 recorded, verified against their keys."""
    if "checkpoints" in training.extras:
        return {r: training.extras["checkpoints"][r] for r in roles}
    out = {}
    for role in roles:
        entry = training.result["models"][role]
        try:
            out[role] = load_checkpoint(entry["checkpoint"], expect={"key": entry["key"]}, device=device)
        except CheckpointError as exc:
            raise StageOrderError(f"{exc} (run notebooks/02_training.ipynb again)") from None
    return out


# --------------------------------------------------------------------------
# Stage 03: Fisher


def compute_fisher(
    cfg: StageConfig, dataset: Dataset | None = None, original: Checkpoint | None = None
) -> StageArtifact:
    """Stage 03: code Fisher vs Oracle Fisher vs Fisher of n real samples (the paper's Fig. 5).

    The Oracle is the per-sample empirical Fisher over all training samples of
    the forget classes; distances are :func:`fisher_distance` to it.
    """
    start = time.perf_counter()
    device = cfg.setup()
    dataset = dataset or load_data(cfg)
    if original is None:
        original = load_models(cfg, load_stage(cfg, "02_training"), ("original",), device)["original"]
    model, codes = original.model, original.codes.to(device)
    forget_classes = check_forget_classes(cfg.forget_classes, dataset.num_classes)
    retain_classes = [c for c in range(dataset.num_classes) if c not in forget_classes]

    t0 = time.perf_counter()
    per_class = code_fisher(model, codes)
    code_seconds = time.perf_counter() - t0
    f_forget = mean_fisher(per_class[c] for c in forget_classes)
    f_retain = mean_fisher(per_class[c] for c in retain_classes)

    x, y = dataset.split("train")
    m = forget_mask(y, forget_classes)
    xf, yf = x[m], y[m]
    t0 = time.perf_counter()
    oracle = data_fisher(model, xf, yf, chunk_size=64)
    oracle_seconds = time.perf_counter() - t0

    gen = torch.Generator().manual_seed(cfg.seed)
    sample_distances: dict[str, list[float]] = {}
    for n in cfg.fisher_samples:
        if n >= len(yf):
            continue
        ds = []
        for _ in range(cfg.fisher_repeats):
            idx = torch.randperm(len(yf), generator=gen)[:n]
            ds.append(fisher_distance(data_fisher(model, xf[idx], yf[idx], chunk_size=64), oracle))
        sample_distances[str(n)] = ds

    eta = fisher_ratio(f_forget, f_retain)
    alpha = layer_alphas(eta, cfg.lambda1, cfg.lambda2)
    layers = {
        name: {
            "numel": e.numel(),
            "eta_max": float(e.max()),
            "eta_median": float(e.median()),
            "alpha": alpha[name],
            "max_change": float((alpha[name] * e).max()),
        }
        for name, e in eta.items()
    }
    result = {
        "forget_classes": list(forget_classes),
        "oracle_samples": len(yf),
        "code_distance": fisher_distance(f_forget, oracle),
        "retain_code_distance": fisher_distance(f_retain, oracle),
        "sample_distances": sample_distances,
        "code_backward_passes": len(per_class),
        "code_seconds": code_seconds,
        "oracle_seconds": oracle_seconds,
        "layers": layers,
    }
    art = save_stage(cfg, "03_fisher", result, device, time.perf_counter() - start)
    art.extras.update(per_class=per_class, f_forget=f_forget, f_retain=f_retain, oracle=oracle, eta=eta)
    return art


# --------------------------------------------------------------------------
# Stage 04: unlearning


def lambda_sweep(
    model: torch.nn.Module,
    codes: torch.Tensor,
    dataset: Dataset,
    forget_classes,
    lambda1_grid,
    lambda2_grid,
    step: str = "paper",
    per_class_fisher=None,
    split: str = "val",
) -> dict:
    """A_R and E_F on ``split`` (the validation split: never the test split) for every
    (lambda1, lambda2) of the grid; ``[i][j]`` is lambda1_grid[i], lambda2_grid[j]."""
    per_class_fisher = per_class_fisher or code_fisher(model, codes)
    x, y = dataset.split(split)
    m = forget_mask(y, forget_classes)
    a_r, e_f, sign = [], [], []
    for l1 in lambda1_grid:
        rows = ([], [], [])
        for l2 in lambda2_grid:
            new, rec = forget(model, codes, forget_classes, l1, l2, step=step, per_class_fisher=per_class_fisher)
            correct = predict_logits(new, x).argmax(1) == y
            rows[0].append(100.0 * float(correct[~m].float().mean()))
            rows[1].append(100.0 * (1.0 - float(correct[m].float().mean())))
            rows[2].append(rec.sign + ("?" if rec.sign_tie else ""))
        a_r.append(rows[0])
        e_f.append(rows[1])
        sign.append(rows[2])
    return {
        "split": split,
        "lambda1_grid": list(lambda1_grid),
        "lambda2_grid": list(lambda2_grid),
        "A_R": a_r,
        "E_F": e_f,
        "sign": sign,
    }


def best_lambdas(sweep: dict) -> tuple[float, float, float]:
    """(lambda1, lambda2, A_R + E_F) maximising A_R + E_F of a sweep (first on ties)."""
    best = None
    for i, l1 in enumerate(sweep["lambda1_grid"]):
        for j, l2 in enumerate(sweep["lambda2_grid"]):
            score = sweep["A_R"][i][j] + sweep["E_F"][i][j]
            if best is None or score > best[2] + 1e-9:
                best = (l1, l2, score)
    return best


def timed_forget(model, codes, forget_classes, lambda1, lambda2, step, repeats: int = 3):
    """The forgetting step after one warm-up; returns (model, record, median seconds)."""
    forget(model, codes, forget_classes, lambda1, lambda2, step=step)
    runs = [forget(model, codes, forget_classes, lambda1, lambda2, step=step) for _ in range(repeats)]
    seconds = sorted(r.seconds for _, r in runs)[len(runs) // 2]
    new, rec = runs[-1]
    return new, rec, seconds


def compute_unlearning(
    cfg: StageConfig, dataset: Dataset | None = None, original: Checkpoint | None = None
) -> StageArtifact:
    """Stage 04: the validation sweep of (lambda1, lambda2), the one-shot step, its evaluation.

    The unlearned model is saved as a checkpoint inside the stage folder.
    """
    start = time.perf_counter()
    device = cfg.setup()
    dataset = dataset or load_data(cfg)
    training = load_stage(cfg, "02_training")
    if original is None:
        original = load_models(cfg, training, ("original",), device)["original"]
    model, codes = original.model, original.codes.to(device)
    forget_classes = check_forget_classes(cfg.forget_classes, dataset.num_classes)

    per_class = code_fisher(model, codes)
    sweep = lambda_sweep(model, codes, dataset, forget_classes, cfg.lambda1_grid, cfg.lambda2_grid, cfg.step, per_class)
    l1_best, l2_best, _ = best_lambdas(sweep)
    lambda1, lambda2 = (l1_best, l2_best) if cfg.tune_lambdas else (cfg.lambda1, cfg.lambda2)
    unlearned, record, seconds = timed_forget(model, codes, forget_classes, lambda1, lambda2, cfg.step)
    after = evaluate(unlearned, dataset, forget_classes)
    before = training.result["models"]["original"]["metrics"]
    result = {
        "forget_classes": list(forget_classes),
        "lambda1": lambda1,
        "lambda2": lambda2,
        "lambdas_from": "validation sweep" if cfg.tune_lambdas else "parameters",
        "validation_best": {"lambda1": l1_best, "lambda2": l2_best},
        "step": cfg.step,
        "record": record.to_dict() | {"seconds": seconds},
        "forget_seconds": seconds,
        "backward_passes": record.backward_passes,
        "before": before,
        "after": brief(after),
        "confusion_matrix": after["confusion_matrix"],
        "sweep": sweep,
    }

    def write_model(tmp: Path) -> None:
        save_checkpoint(
            tmp / "model",
            unlearned,
            original.codes,
            original.config | {"unlearned": True, "forget_classes": list(forget_classes)},
            original.splits,
        )

    art = save_stage(cfg, "04_unlearning", result, device, time.perf_counter() - start, write_model)
    art.extras.update(model=unlearned, record=record, per_class=per_class)
    return art


def load_unlearned(cfg: StageConfig, unlearning: StageArtifact, device="cpu") -> torch.nn.Module:
    if "model" in unlearning.extras:
        return unlearning.extras["model"]
    return load_checkpoint(unlearning.folder / "model", device=device).model


# --------------------------------------------------------------------------
# Stage 05: membership evaluation


@torch.no_grad()
def sample_statistics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-sample ``loss`` (cross-entropy), ``entropy`` of the softmax and ``confidence``
    (probability of the true class): the features the attacks of EVALUATION.md use."""
    logits = predict_logits(model, x)
    logp = F.log_softmax(logits, 1)
    losses = F.nll_loss(logp, y.cpu(), reduction="none")
    entropy = -(logp.exp() * logp).sum(1)
    return {"loss": losses.numpy(), "entropy": entropy.numpy(), "confidence": (-losses).exp().numpy()}


def sample_groups(dataset: Dataset, forget_classes) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """retain-train (D_r), forget-train (D_f), retain-test and forget-test."""
    out = {}
    for split, label in (("train", "train"), ("test", "test")):
        x, y = dataset.split(split)
        m = forget_mask(y, forget_classes)
        out[f"retain-{label}"] = (x[~m], y[~m])
        out[f"forget-{label}"] = (x[m], y[m])
    return out


def baselines_available() -> bool:
    """True when the kit has the baseline registry ``mnemonic_mu.methods``."""
    import importlib.util

    return importlib.util.find_spec("mnemonic_mu.methods") is not None


def attacks_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("mnemonic_mu.attacks") is not None


def compute_membership(cfg: StageConfig, dataset: Dataset | None = None) -> StageArtifact:
    """Stage 05: per-sample loss/entropy/confidence summaries and the attacks of
    EVALUATION.md (``mnemonic_mu.attacks.run_attacks``) for original, unlearned, retrain
    and the model trained without codes."""
    start = time.perf_counter()
    device = cfg.setup()
    dataset = dataset or load_data(cfg)
    forget_classes = check_forget_classes(cfg.forget_classes, dataset.num_classes)
    training = load_stage(cfg, "02_training")
    checkpoints = load_models(cfg, training, ("original", "retrain", "no_codes"), device)
    models = {
        "original": checkpoints["original"].model,
        "mnemonic": load_unlearned(cfg, load_stage(cfg, "04_unlearning"), device),
        "retrain": checkpoints["retrain"].model,
        "no_codes": checkpoints["no_codes"].model,
    }
    groups = sample_groups(dataset, forget_classes)
    distributions = {
        role: {
            group: {k: {"mean": float(v.mean()), "median": float(np.median(v))} for k, v in sample_statistics(m, *xy).items()}
            for group, xy in groups.items()
        }
        for role, m in models.items()
    }
    attacks = None
    if attacks_available():
        from .attacks import run_attacks

        attacks = {
            role: run_attacks(m, models["retrain"], dataset, forget_classes, seed=cfg.seed) for role, m in models.items()
        }
    result = {"forget_classes": list(forget_classes), "distributions": distributions, "attacks": attacks}
    art = save_stage(cfg, "05_membership_evaluation", result, device, time.perf_counter() - start)
    art.extras["models"] = models
    return art




# --------------------------------------------------------------------------
# Stage 06: the summary


def build_summary(cfg: StageConfig) -> dict:
    """``metrics/summary.json``: dataset, forget classes, seed and, per method, the
    accuracy metrics (percent), times and attack values, plus the gap to retrain.

    Gap to retrain (EVALUATION.md): mean absolute difference to retrain over A_R,
    E_F, A_R_train, E_F_train and the MIA score (confidence-SVC x 100).
    """
    training = load_stage(cfg, "02_training").result
    unlearning = load_stage(cfg, "04_unlearning").result
    membership = load_stage(cfg, "05_membership_evaluation").result
    attacks = membership.get("attacks")
    models = training["models"]
    methods: dict[str, dict] = {
        "original": dict(models["original"]["metrics"]) | {"train_seconds": models["original"]["train_seconds"]},
        "mnemonic": dict(unlearning["after"])
        | {
            "forget_seconds": unlearning["forget_seconds"],
            "backward_passes": unlearning["backward_passes"],
            "lambda1": unlearning["lambda1"],
            "lambda2": unlearning["lambda2"],
            "step": unlearning["step"],
            "sign": unlearning["record"]["sign"],
            "sign_tie": unlearning["record"]["sign_tie"],
            "warnings": unlearning["record"]["warnings"],
        },
        "retrain": dict(models["retrain"]["metrics"]) | {"train_seconds": models["retrain"]["train_seconds"]},
        "no_codes": dict(models["no_codes"]["metrics"]) | {"train_seconds": models["no_codes"]["train_seconds"]},
    }
    for role, row in methods.items():
        if attacks and role in attacks:
            row["attacks"] = attacks[role]
    add_gaps(methods)
    return {
        "dataset": cfg.dataset,
        "model": cfg.model,
        "forget_classes": list(cfg.forget_classes),
        "seed": cfg.seed,
        "units": "percent",
        "methods": methods,
    }


def add_gaps(methods: dict[str, dict]) -> None:
    """Add ``gap_to_retrain`` (:func:`mnemonic_mu.metrics.gap_to_retrain`) to every method row (in place)."""
    ref = methods.get("retrain")
    if not ref:
        return
    for row in methods.values():
        row["gap_to_retrain"] = gap_to_retrain(row, ref)


def run_baselines(cfg: StageConfig, dataset: Dataset, device="cpu") -> dict[str, dict]:
    """One summary row per method of ``cfg.baselines`` (registry ``mnemonic_mu.methods``).

    Each method starts from the trained model it expects (``INPUT_MODEL``),
    sees only retain/forget training data and the validation split (never
    the test split), and is evaluated like the others, with all five attacks
    of EVALUATION.md against the same retrain reference.
    """
    if not baselines_available() or not cfg.baselines:
        return {}
    from .methods import INPUT_MODEL, UnlearnData, unlearn

    forget_classes = check_forget_classes(cfg.forget_classes, dataset.num_classes)
    checkpoints = load_models(cfg, load_stage(cfg, "02_training"), device=device)
    data = UnlearnData.from_dataset(dataset, forget_classes, cfg.experiment().train_config())
    rows = {}
    for name in cfg.baselines:
        start = checkpoints[INPUT_MODEL[name]]
        res = unlearn(name, start.model, checkpoints["original"].codes, forget_classes, data, seed=cfg.seed)
        key = f"{name} (registry)" if name in MODEL_ROLES + ("mnemonic",) else name
        row = rows[key] = brief(evaluate(res.model, dataset, forget_classes)) | {
            "seconds": res.seconds,
            "backward_passes": res.backward_passes,
            "chosen": res.chosen,
            "input_model": INPUT_MODEL[name],
        }
        if attacks_available():
            from .attacks import run_attacks

            row["attacks"] = run_attacks(res.model, checkpoints["retrain"].model, dataset, forget_classes, seed=cfg.seed)
    return rows


def compute_report(cfg: StageConfig, dataset: Dataset | None = None) -> StageArtifact:
    """Stage 06: :func:`build_summary` plus the baseline rows (saved, so a rerun is instant)."""
    start = time.perf_counter()
    device = cfg.setup()
    summary = build_summary(cfg)
    if baselines_available() and cfg.baselines:
        summary["methods"] |= run_baselines(cfg, dataset or load_data(cfg), device)
        add_gaps(summary["methods"])
    return save_stage(cfg, "06_report", summary, device, time.perf_counter() - start)


def summary_table(summary: dict, columns=("A_R", "E_F", "A_R_train", "E_F_train", "gap_to_retrain")):
    """The summary's methods as a pandas DataFrame (rows = methods)."""
    import pandas as pd

    rows = {name: {c: row.get(c) for c in columns} for name, row in summary["methods"].items()}
    return pd.DataFrame(rows).T.astype(float).round(2)


def attack_table(summary: dict):
    """The five attacks (columns, named as in EVALUATION.md) of every method that has them
    (rows), as a pandas DataFrame; empty when no attack ran."""
    import pandas as pd

    rows = {
        name: {a: v.get("value") for a, v in row["attacks"].items()}
        for name, row in summary["methods"].items()
        if row.get("attacks")
    }
    return pd.DataFrame(rows).T.astype(float).round(3)


# --------------------------------------------------------------------------
# Figures and metrics of a run


def savefig(fig, cfg: StageConfig, name: str) -> Path:
    """Save ``fig`` as ``<run_dir>/figures/<name>.png`` (atomic) and return the path."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    path = cfg.run_path / "figures" / f"{name}.png"
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_metrics(cfg: StageConfig, name: str, metrics: dict) -> Path:
    """Write ``<run_dir>/metrics/<name>.json`` atomically."""
    path = cfg.run_path / "metrics" / f"{name}.json"
    write_json(path, metrics)
    return path


def image_grid(ax_row, images: torch.Tensor, titles=None, cmap: str = "gray") -> None:
    """Draw a row of images (C, H, W) on the given axes, one per axis, without ticks."""
    for k, ax in enumerate(ax_row):
        img = images[k]
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap=cmap)
        else:  # colour images: rescale each to [0, 1] for display
            arr = img.permute(1, 2, 0).numpy()
            ax.imshow((arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-12))
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)


def every_class(
    model: torch.nn.Module,
    codes: torch.Tensor,
    dataset: Dataset,
    lambda1: float,
    lambda2: float,
    steps: Sequence[str] = ("paper", "calibrated"),
) -> list[dict]:
    """Forget each class in turn from the same model with each step; one row per (step, class).

    Rows hold test A_R / E_F, the sign, whether the sign test tied, the scale and the
    warnings, so a reader sees which requests the step fails on (the known weakness of
    fixed lambdas).  Costs ``len(steps) * num_classes`` one-shot steps, no training.
    """
    rows = []
    for step in steps:
        for c in range(dataset.num_classes):
            new, rec = forget(model, codes, [c], lambda1, lambda2, step=step)
            ev = evaluate(new, dataset, [c], splits=("test",))
            rows.append(
                {
                    "step": step,
                    "class": c,
                    "A_R": ev["A_R"],
                    "E_F": ev["E_F"],
                    "sign": rec.sign,
                    "sign_tie": rec.sign_tie,
                    "scale": rec.scale,
                    "forgotten": ev["E_F"] >= 99.0,
                    "warnings": len(rec.warnings),
                }
            )
    return rows


def per_class_bars(ax, per_class: dict[str, list[float]], forget_classes) -> None:
    """Grouped bars of per-class accuracy (%) for several models; forget classes shaded."""
    names = list(per_class)
    k = len(next(iter(per_class.values())))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ax.bar(np.arange(k) + (i - (len(names) - 1) / 2) * width, per_class[name], width, label=name)
    for c in forget_classes:
        ax.axvspan(c - 0.45, c + 0.45, color="0.85", zorder=0)
    ax.set_xticks(range(k))
    ax.set_xlabel("class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)


COMPUTE: dict[str, Callable[[StageConfig], StageArtifact]] = {
    "01_mnemonic_codes": compute_codes,
    "02_training": compute_training,
    "03_fisher": compute_fisher,
    "04_unlearning": compute_unlearning,
    "05_membership_evaluation": compute_membership,
    "06_report": compute_report,
}


__all__ = [
    "COMPUTE",
    "NOTEBOOKS",
    "NOTEBOOK_PARAMETERS",
    "StageArtifact",
    "StageConfig",
    "UPSTREAM",
    "best_lambdas",
    "build_summary",
    "compute_codes",
    "compute_fisher",
    "compute_membership",
    "compute_training",
    "compute_unlearning",
    "image_grid",
    "lambda_sweep",
    "load_data",
    "load_models",
    "load_stage",
    "load_unlearned",
    "measure_replacement",
    "per_class_bars",
    "sample_groups",
    "sample_statistics",
    "save_stage",
    "savefig",
    "stage_dir",
    "stage_key",
    "summary_table",
    "attack_table",
    "write_metrics",
]
