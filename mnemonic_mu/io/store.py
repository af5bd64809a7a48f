"""The artifact layer: every cached model and result, keyed by its settings and by the code that made it.

A key is a short hash of (the settings that change the artifact, the
versions of the code that computes it, the upstream key).  The versions are
the package version plus the explicit ``VERSION`` of each algorithm module
involved (``algorithms/train.py``, ``forget.py`` ...) and, for a method, the
``version`` of its entry in ``algorithms.methods.METHODS``: bump one when a change alters its
numbers, and every artifact it made is recomputed rather than silently reused.
Every artifact records its key, and every folder is written atomically with a
sha256 manifest (:mod:`mnemonic_mu.io.artifacts`).

Layout under ``<cache_dir>``::

    datasets/<name>-<key>.pt        split tensors of small datasets (+ .sha256)
    models/<model>-<dataset>-<key>/ trained checkpoints (original, no-codes, retrain)
    stages/<stage>-<key>/           notebook stage results (result.json, config.json, meta.json)
    locks/<key>.lock                two processes computing one key wait for each other
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Hashable, TypeVar

import torch

from ..algorithms import attacks, codes, ensemble, fisher, forget, indistinguishability, methods, metrics, train
from ..algorithms.codes import generate_codes
from ..algorithms.dataset import Dataset
from ..algorithms.models import build_model
from ..algorithms.train import TrainConfig, train_model
from ..errors import CheckpointError
from ..version import __version__
from . import data
from .artifacts import (
    atomic_write_bytes,
    atomic_write_text,
    file_lock,
    settings_key,
    sha256_file,
    staging_dir,
    verify_manifest,
    write_json,
    write_manifest,
)
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .data import load_dataset

# The algorithm versions, by component; methods add "method:<name>".
COMPONENTS = {
    "data": data,
    "codes": codes,
    "train": train,
    "ensemble": ensemble,
    "fisher": fisher,
    "forget": forget,
    "evaluate": metrics,
    "attacks": attacks,
    "divergence": indistinguishability,
}


def versions(*components: str) -> dict[str, str | int]:
    """``{"package": ..., component: VERSION ...}`` of the named components (``method:NAME`` too)."""
    out: dict[str, str | int] = {"package": __version__}
    for c in components:
        out[c] = methods.get_method(c.split(":", 1)[1]).version if c.startswith("method:") else COMPONENTS[c].VERSION
    return out


def key_of(settings: dict, components: tuple[str, ...], upstream: str | None = None) -> str:
    """The key of an artifact: its settings, the versions of ``components`` and the upstream key."""
    return settings_key({"settings": settings, "versions": versions(*components)}, upstream)


# --------------------------------------------------------------------------
# Datasets

_SPLIT_TENSORS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "train_index", "val_index", "test_index")


def load_data(s) -> Dataset:
    """The dataset of settings ``s`` split by ``s.split_seed``; small datasets are cached as
    tensors under ``<cache_dir>/datasets`` (parsing mnist5k's CSV takes seconds), each with a
    sha256 file; a file that does not match its hash is ignored and rebuilt."""
    ident = {"dataset": s.dataset, "split_seed": s.split_seed, "root": str(s.data_path)}
    path = s.cache_path / "datasets" / f"{s.dataset}-{key_of(ident, ('data',))}.pt"
    digest = path.with_name(path.name + ".sha256")
    if s.use_cache and path.is_file() and digest.is_file() and digest.read_text().strip() == sha256_file(path):
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            return Dataset(
                name=blob["name"],
                num_classes=int(blob["num_classes"]),
                augment=blob["augment"],
                pad_value=tuple(blob["pad_value"]),
                **{n: blob[n] for n in _SPLIT_TENSORS},
            )
        except Exception:  # a stale cache file: load from source below
            pass
    ds = load_dataset(s.dataset, s.data_path, download=s.download, split_seed=s.split_seed)
    if ds.x_train.numel() * 4 < 64 * 2**20:
        blob = {n: getattr(ds, n) for n in _SPLIT_TENSORS}
        blob |= {"name": ds.name, "num_classes": ds.num_classes, "augment": ds.augment, "pad_value": list(ds.pad_value)}
        buf = io.BytesIO()
        torch.save(blob, buf)
        atomic_write_bytes(path, buf.getvalue())
        atomic_write_text(digest, hashlib.sha256(buf.getvalue()).hexdigest() + "\n")
    return ds


# --------------------------------------------------------------------------
# Trained models

MODEL_COMPONENTS = ("data", "codes", "train")


def model_settings(s, dataset: Dataset, train_cfg: TrainConfig) -> dict:
    """Everything that determines a trained model: its key hashes this and the code versions.

    A model trained in an ensemble equals its one-by-one twin only up to float rounding, so
    the trainer is part of the key (and the ensemble's code version with it)."""
    extra = {"trainer": "ensemble", "ensemble_version": ensemble.VERSION} if s.trainer == "ensemble" else {}
    return extra | {
        "dataset": dataset.name,
        "data": dataset.summary(),
        "split_seed": s.split_seed,
        "model": s.model,
        "code_dist": s.code_dist,
        "code_seed": s.seed,
        "train": train_cfg.to_dict() | {"eval_every": None},
    }


def model_key(s, dataset: Dataset, train_cfg: TrainConfig) -> str:
    return key_of(model_settings(s, dataset, train_cfg), MODEL_COMPONENTS)


def _model_folder(s, dataset: Dataset, key: str) -> Path:
    return s.cache_path / "models" / f"{s.model}-{dataset.name}-{key}"


def is_cached(s, dataset: Dataset, train_cfg: TrainConfig) -> bool:
    """Whether the model of these settings lies in the cache (and will be loaded, not trained)."""
    folder = _model_folder(s, dataset, model_key(s, dataset, train_cfg))
    return bool(s.use_cache) and (folder / "manifest.json").is_file()


def _cached(s, folder: Path, key: str, device) -> Checkpoint | None:
    if s.use_cache and folder.is_dir():
        try:
            return load_checkpoint(folder, expect={"key": key}, device=device)
        except CheckpointError:
            pass  # a broken entry is replaced
    return None


def _save_trained(s, dataset: Dataset, train_cfg: TrainConfig, model, codes_, result, device) -> Checkpoint:
    key = model_key(s, dataset, train_cfg)
    folder = _model_folder(s, dataset, key)
    config = model_settings(s, dataset, train_cfg) | {
        "key": key,
        "versions": versions(*MODEL_COMPONENTS),
        "input_shape": list(dataset.input_shape),
        "num_classes": dataset.num_classes,
        "train_seconds": result.seconds,
        "replaced_fraction": result.replaced_fraction,
        "device": str(device),
        "torch": torch.__version__,
    }
    splits = {"train": dataset.train_index, "val": dataset.val_index, "test": dataset.test_index}
    save_checkpoint(folder, model, codes_, config, splits, result.history)
    return load_checkpoint(folder, expect={"key": key}, device=device)


def train_or_load(
    s, dataset: Dataset, train_cfg: TrainConfig, device: torch.device, progress: bool = False
) -> tuple[Checkpoint, bool]:
    """The cached model of these settings, training it first if needed: ``(checkpoint, from_cache)``.

    A corrupted cache entry is trained again; two processes asking for the same key
    wait for each other, so the model is trained once.
    """
    return train_many(s, dataset, {"model": train_cfg}, device, progress)["model"]


@contextlib.contextmanager
def model_lock(s, key: str):
    """Hold the lock of model ``key``: a process training or loading it through
    :func:`train_many` waits meanwhile (and one holding it makes this wait)."""
    with file_lock(s.cache_path / "locks" / f"{key}.lock"):
        yield


def save_trained(
    s,
    dataset: Dataset,
    train_cfg: TrainConfig,
    model,
    codes_: torch.Tensor,
    result,
    device="cpu",
    locked: bool = False,
) -> Checkpoint:
    """Keep a model trained outside :func:`train_or_load` (a notebook's written-out training cell)
    in the cache under its key, as :func:`train_or_load` would have, and return the stored checkpoint.

    ``result`` is what :func:`~mnemonic_mu.algorithms.train.train_model` returned.  The caller
    must have trained exactly the recipe of the key: the model built by ``build_model(s.model,
    ..., seed=s.seed)``, the codes of ``s.seed`` and ``train_cfg``, one model at a time (refused
    with ``s.trainer == "ensemble"``, whose key promises an ensemble's rounding).  ``locked``:
    the caller already holds :func:`model_lock` of the key.
    """
    if s.trainer == "ensemble":
        raise CheckpointError("save_trained stores a model trained alone; with trainer='ensemble' use train_many")
    key = model_key(s, dataset, train_cfg)
    with contextlib.nullcontext() if locked else model_lock(s, key):
        return _save_trained(s, dataset, train_cfg, model, codes_, result, device)


Name = TypeVar("Name", bound=Hashable)  # what the caller calls each model: a role, (kind, classes), ...


def train_many(
    s, dataset: Dataset, train_cfgs: dict[Name, TrainConfig], device: torch.device, progress: bool = False
) -> dict[Name, tuple[Checkpoint, bool]]:
    """:func:`train_or_load` for several models of one recipe: ``{name: (checkpoint, from_cache)}``.

    With ``s.trainer == "ensemble"`` the models not in the cache are trained together as
    one computation (:func:`mnemonic_mu.algorithms.ensemble.train_ensemble`, chunked to
    fit memory); each is stored under its own key as if trained alone.
    """
    keys = {name: model_key(s, dataset, cfg) for name, cfg in train_cfgs.items()}
    with contextlib.ExitStack() as locks:
        for key in sorted(set(keys.values())):  # one order for every process: no deadlock
            locks.enter_context(file_lock(s.cache_path / "locks" / f"{key}.lock"))
        out: dict[Name, tuple[Checkpoint, bool]] = {}
        for name, key in keys.items():
            ck = _cached(s, _model_folder(s, dataset, key), key, device)
            if ck is not None:
                out[name] = (ck, True)
        todo = [name for name in train_cfgs if name not in out]
        if not todo:
            return {name: out[name] for name in train_cfgs}
        codes_ = generate_codes(dataset.num_classes, dataset.input_shape, s.code_dist, s.seed)
        if s.trainer == "ensemble" and len(todo) > 1:
            members = [(codes_, train_cfgs[name]) for name in todo]
            trained = ensemble.train_ensemble(s.model, dataset, members, device=device, progress=progress)
            for name, (model, result) in zip(todo, trained):
                out[name] = (_save_trained(s, dataset, train_cfgs[name], model, codes_, result, device), False)
        else:
            for name in todo:
                model = build_model(s.model, dataset.input_shape, dataset.num_classes, seed=s.seed)
                result = train_model(model, dataset, codes_, train_cfgs[name], device=device, progress=progress)
                out[name] = (_save_trained(s, dataset, train_cfgs[name], model, codes_, result, device), False)
    return {name: out[name] for name in train_cfgs}


# --------------------------------------------------------------------------
# Results (stage results of the notebooks, rows of a sweep)


@dataclass
class Result:
    """A saved result (and, right after computing, in-memory extras such as models)."""

    kind: str
    key: str
    folder: Path
    result: dict
    extras: dict = field(default_factory=dict)


def save_result(
    folder: Path,
    kind: str,
    key: str,
    result: dict,
    config: dict,
    environment: dict,
    seconds: float | None = None,
    write_payload: Callable[[Path], None] | None = None,
) -> Result:
    """Write a result folder atomically: ``result.json``, ``config.json`` (its settings,
    versions and upstream keys), ``meta.json`` (time, environment), payload files, manifest."""
    with staging_dir(folder) as tmp:
        write_json(tmp / "result.json", result)
        write_json(tmp / "config.json", {"kind": kind, "key": key} | config)
        write_json(
            tmp / "meta.json",
            {
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "seconds": seconds,
                "environment": environment,
            },
        )
        if write_payload is not None:
            write_payload(tmp)
        write_manifest(tmp, {"kind": kind, "key": key})
    return Result(kind, key, folder, result)


def load_result(folder: Path, kind: str, key: str) -> Result:
    """A saved result, its manifest verified (keys renamed since it was written read under their
    new names: :func:`~mnemonic_mu.algorithms.metrics.renamed_keys`)."""
    verify_manifest(folder)
    return Result(kind, key, folder, metrics.renamed_keys(json.loads((folder / "result.json").read_text())))


def cached_rows(
    path: Path, key: str, compute: Callable[[], list[dict]], use_cache: bool = True
) -> tuple[list[dict], bool]:
    """Rows stored at ``path`` under ``key``, else ``compute()`` written there: ``(rows, reused)``.

    A file with another key (other settings, or rows of an older algorithm version) is
    recomputed, never reused.
    """
    if use_cache and path.is_file():
        try:
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                return metrics.renamed_keys(saved["rows"]), True
        except (OSError, ValueError, KeyError):
            pass  # unreadable: compute again
    rows = compute()
    write_json(path, {"key": key, "rows": rows})
    return rows, False


__all__ = [
    "COMPONENTS",
    "Result",
    "cached_rows",
    "is_cached",
    "key_of",
    "load_data",
    "load_result",
    "model_lock",
    "model_key",
    "model_settings",
    "save_result",
    "save_trained",
    "train_many",
    "train_or_load",
    "versions",
]
