"""The bad-input battery (issue 6): every mistake a user can make, in one table.

Each :class:`Case` is either a library call or a CLI command line, the
exception type the library must raise and a fragment of its message.  For a
CLI case the test also checks what a user sees: a non-zero exit status, one
line on stderr and no stack trace.  To cover a new mistake, add one ``Case``
to :data:`CASES` (with a ``setup`` if it needs files on disk).

The numbers in the case ids follow the issue's list:
1 forget set, 2 settings, 3 missing data / failed download, 4 damaged data
files, 5 damaged or mismatched checkpoints and codes, 6 report parameters and
7 stage order (``REPORT_CASES``, after the main table), 8 NaN/inf weights,
9 a CUDA device that is not there.  "sec" cases check that nothing given as
data is ever executed.

No test touches the network: the autouse fixture below makes any socket
connection fail, and downloads are simulated by replacing torchvision's
dataset classes.
"""

from __future__ import annotations

import ast
import copy
import functools
import gzip
import io
import json
import os
import pickle
import random
import socket
import subprocess
import sys
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
import torch

import mnemonic_mu
from mnemonic_mu.algorithms.codes import generate_codes
from mnemonic_mu.algorithms.forget import forget
from mnemonic_mu.algorithms.metrics import check_forget_classes
from mnemonic_mu.algorithms.models import build_model
from mnemonic_mu.algorithms.train import TrainConfig
from mnemonic_mu.drivers.cli import build_parser, main
from mnemonic_mu.drivers.executor import check_scheduler_address, resolve_connect_timeout, slurm_cluster_options
from mnemonic_mu.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DeviceError,
    ModelStateError,
    StageOrderError,
)
from mnemonic_mu.io.artifacts import MANIFEST, sha256_file, write_json
from mnemonic_mu.io.checkpoint import CODES_FILE, MODEL_FILE, load_checkpoint, save_checkpoint
from mnemonic_mu.io.data import load_dataset, read_cifar_batch, read_idx
from mnemonic_mu.runtime import resolve_device
from mnemonic_mu.settings import Settings

PACKAGE_DIR = Path(mnemonic_mu.__file__).parent


# --------------------------------------------------------------------------
# The case table


@dataclass(frozen=True)
class Case:
    """One bad input.

    ``call(env)`` runs a library call, or ``argv`` is a CLI command line
    (``{tmp}`` is replaced by the test's temporary folder).  ``setup(env)``
    prepares files first; ``check(env)`` runs after the error (for example to
    assert that a planted command did not run).
    """

    id: str
    error: type[BaseException]
    match: str
    call: Callable | None = None
    argv: tuple[str, ...] | None = None
    setup: Callable | None = None
    check: Callable | None = None


# -- fabricated data roots ----------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (unsigned bytes) holding ``array``."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


MNIST_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def make_mnist_root(root: Path, folder: str = "MNIST", gz: bool = False) -> Path:
    """A tiny but valid torchvision MNIST layout: 30 train and 10 test images."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = (
        rng.integers(0, 256, (30, 28, 28)),
        np.arange(30) % 10,
        rng.integers(0, 256, (10, 28, 28)),
        np.arange(10) % 10,
    )
    for stem, a in zip(MNIST_STEMS, arrays):
        data = idx_bytes(a)
        if gz:
            (raw / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (raw / stem).write_bytes(data)
    return raw


def cifar_batch_bytes(n: int = 10, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    entry = {"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), "labels": [i % 10 for i in range(n)]}
    return pickle.dumps(entry, protocol=2)


CIFAR_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def make_cifar_root(root: Path) -> Path:
    """A tiny but valid ``cifar-10-batches-py`` folder (10 images per batch)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(CIFAR_NAMES):
        (folder / name).write_bytes(cifar_batch_bytes(seed=i))
    return folder


class _PlantedCommand:
    """Pickles to a call of os.system: loading it must never run the command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def marker_absent(env) -> None:
    assert not (env.tmp / "PWNED").exists(), "a planted command was executed"


def damage_mnist(kind: str, gz: bool = False) -> Callable:
    """Setup: a valid MNIST root under ``{tmp}/data`` with one file damaged by ``kind``."""

    def setup(env):
        raw = make_mnist_root(env.tmp / "data", gz=gz)
        path = raw / (MNIST_STEMS[0] + (".gz" if gz else ""))
        data = bytearray(path.read_bytes())
        if kind == "truncate":
            data = data[: len(data) // 2]
        elif kind == "magic":
            payload = bytearray(gzip.decompress(bytes(data)) if gz else data)
            payload[0:4] = b"\x1f\x8b\x08\x00"
            data = bytearray(gzip.compress(bytes(payload)) if gz else payload)
        elif kind == "typecode":
            data[2] = 0x0D  # float32 IDX, not MNIST's unsigned bytes
        elif kind == "not_gzip":
            data = bytearray(b"this is not gzip data at all\n" * 50)
        elif kind == "gzip_stream":
            data[20:60] = bytes(40)  # damage the deflate stream behind a valid header
        elif kind == "count":
            other = raw / (MNIST_STEMS[1] + (".gz" if gz else ""))
            labels = idx_bytes(np.arange(29) % 10)
            other.write_bytes(gzip.compress(labels) if gz else labels)
            return
        elif kind == "labels":
            other = raw / MNIST_STEMS[3]
            other.write_bytes(idx_bytes(np.full(10, 42)))
            return
        path.write_bytes(bytes(data))

    return setup


def damage_cifar(kind: str) -> Callable:
    def setup(env):
        folder = make_cifar_root(env.tmp / "data")
        path = folder / "data_batch_3"
        if kind == "truncate":
            path.write_bytes(path.read_bytes()[:500])
        elif kind == "garbage":
            path.write_bytes(random.Random(4).randbytes(4096))  # fixed bytes: the same failure on every run
        elif kind == "persistent_id":  # pickle's message for this spans two lines
            path.write_bytes(b"P1\n." + bytes(64))
        elif kind == "planted":
            path.write_bytes(pickle.dumps({"data": _PlantedCommand(env.tmp / "PWNED"), "labels": [0]}))
        elif kind == "not_a_dict":
            path.write_bytes(pickle.dumps([1, 2, 3]))
        elif kind == "shape":
            path.write_bytes(pickle.dumps({"data": np.zeros((4, 100), np.uint8), "labels": [0, 1, 2, 3]}))
        elif kind == "missing":
            path.unlink()

    return setup


def load_data(name: str, **kw) -> Callable:
    return lambda env: load_dataset(name, env.tmp / "data", **kw)


# -- simulated downloads --------------------------------------------------------


def failing_download(exc: BaseException) -> Callable:
    """Setup: torchvision's dataset classes raise ``exc`` as a failed download would."""

    class Unreachable:
        def __init__(self, *args, **kwargs):
            raise exc

    def setup(env):
        import torchvision

        for name in ("MNIST", "FashionMNIST", "CIFAR10"):
            env.monkeypatch.setattr(torchvision.datasets, name, Unreachable)

    return setup


# -- checkpoints -----------------------------------------------------------------


def ck_config(env, **over) -> dict:
    ds = env.dataset
    return {
        "model": "mlp",
        "input_shape": list(ds.input_shape),
        "num_classes": ds.num_classes,
        "dataset": ds.name,
    } | over


def saved_checkpoint(env, **over) -> Path:
    return save_checkpoint(env.tmp / "ck", env.model, env.codes, ck_config(env, **over))


def rehash(folder: Path) -> None:
    """Rewrite the manifest so the sha256s match the (damaged) files: tests the next line of defence."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {name: sha256_file(folder / name) for name in manifest["files"]}
    write_json(folder / MANIFEST, manifest)


def damage_checkpoint(kind: str) -> Callable:
    def setup(env):
        folder = saved_checkpoint(env)
        model_pt, codes_pt, manifest = folder / MODEL_FILE, folder / CODES_FILE, folder / MANIFEST
        if kind == "truncate":
            model_pt.write_bytes(model_pt.read_bytes()[:1000])
        elif kind == "flip":
            blob = bytearray(codes_pt.read_bytes())
            blob[-40] ^= 0x01
            codes_pt.write_bytes(bytes(blob))
        elif kind == "truncate_rehashed":
            model_pt.write_bytes(model_pt.read_bytes()[:1000])
            rehash(folder)
        elif kind == "no_manifest":
            manifest.unlink()
        elif kind == "bad_manifest":
            manifest.write_text('{"files": ')
        elif kind == "empty_manifest":
            write_json(manifest, {"files": {}})
        elif kind == "planted":
            torch.save(_PlantedCommand(env.tmp / "PWNED"), model_pt)
            rehash(folder)
        elif kind == "no_config":
            torch.save({"state_dict": {}, "config_json": "{}"}, model_pt)
            rehash(folder)
        elif kind == "missing_codes":
            codes_pt.unlink()

    return setup


def foreign_checkpoint(env):
    """Weights of a 4-class model saved under a config that says 10 classes (another dataset)."""
    save_checkpoint(env.tmp / "ck", env.model, env.codes, ck_config(env, num_classes=10))


def wrong_codes_checkpoint(env):
    save_checkpoint(env.tmp / "ck", env.model, torch.zeros(4, 1, 5, 5), ck_config(env))


def load_ck(**kw) -> Callable:
    return lambda env: load_checkpoint(env.tmp / "ck", **kw)


# -- models ----------------------------------------------------------------------


def broken_model(env, value: float, name: str = "fc1.weight"):
    model = copy.deepcopy(env.model)
    with torch.no_grad():
        dict(model.named_parameters())[name].view(-1)[0] = value
    return model


def no_cuda(env):
    env.monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def one_gpu(env):
    env.monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    env.monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def file_in_the_way(env):
    (env.tmp / "afile").write_text("not a folder")


# -- the table ---------------------------------------------------------------------

BASE = (
    "experiment",
    "--dataset",
    "digits",
    "--epochs",
    "1",
    "--baselines",
    "none",
    "--cache-dir",
    "{tmp}/cache",
    "--out",
    "{tmp}/out.json",
)


def cli(*extra: str) -> tuple[str, ...]:
    return BASE + extra


EVIL = "__import__('os').system('touch PWNED')"

# the table: one case per line, read down (never wrapped)
# fmt: off
CASES: list[Case] = [
    # 1. forget set
    Case("1-class-outside-lib", ConfigError, "outside this dataset's classes 0..3", lambda e: forget(e.model, e.codes, [4], step="paper")),
    Case("1-class-negative-lib", ConfigError, "outside", lambda e: check_forget_classes([-1], 10)),
    Case("1-empty-lib", ConfigError, "forget set is empty", lambda e: forget(e.model, e.codes, [], step="paper")),
    Case("1-duplicate-lib", ConfigError, "names a class twice", lambda e: forget(e.model, e.codes, [1, 1], step="paper")),
    Case("1-every-class-lib", ConfigError, "cannot forget every class", lambda e: forget(e.model, e.codes, [0, 1, 2, 3], step="paper")),
    Case("1-not-integers-lib", ConfigError, "must be integers", lambda e: check_forget_classes(["one"], 10)),
    Case("1-class-outside-cli", ConfigError, "outside this dataset's classes 0..9", argv=cli("--forget", "10")),
    Case("1-empty-cli", SystemExit, "expected at least one argument", argv=cli("--forget")),
    Case("1-duplicate-cli", ConfigError, "names a class twice", argv=cli("--forget", "3", "3")),
    Case("1-every-class-cli", ConfigError, "cannot forget every class", argv=cli("--forget", *map(str, range(10)))),
    Case("1-config-forget-type", ConfigError, "forget_classes must be a list", lambda e: Settings(forget_classes="3")),
    # 2. settings
    Case("2-t-mix-high-lib", ConfigError, "t_mix must lie in [0, 1]", lambda e: Settings(t_mix=1.5)),
    Case("2-t-mix-negative-lib", ConfigError, "t_mix must lie in [0, 1]", lambda e: TrainConfig(t_mix=-0.1)),
    Case("2-t-mix-high-cli", ConfigError, "t_mix must lie in [0, 1]", argv=cli("--t-mix", "1.5")),
    Case("2-t-mix-nan-cli", ConfigError, "t_mix must lie in [0, 1]", argv=cli("--t-mix", "nan")),
    Case("2-lambda1-zero-lib", ConfigError, "lambda1 must be a positive", lambda e: forget(e.model, e.codes, [0], lambda1=0.0, step="paper")),
    Case("2-lambda2-negative-lib", ConfigError, "lambda2 must be a positive", lambda e: forget(e.model, e.codes, [0], lambda2=-1.0, step="paper")),
    Case("2-lambda1-nan-lib", ConfigError, "lambda1 must be a positive", lambda e: Settings(lambda1=float("nan"))),
    Case("2-lambda1-zero-cli", ConfigError, "lambda1 must be a positive", argv=cli("--lambda1", "0")),
    Case("2-lambda2-negative-cli", ConfigError, "lambda2 must be a positive", argv=cli("--lambda2", "-1")),
    Case("2-epochs-zero-lib", ConfigError, "epochs must be at least 1", lambda e: TrainConfig(epochs=0)),
    Case("2-epochs-zero-cli", ConfigError, "epochs must be at least 1", argv=cli("--epochs", "0")),
    Case("2-epochs-word-cli", ConfigError, "setting epochs must be an integer, got 'two'", argv=cli("--epochs", "two")),
    Case("2-epochs-string-lib", ConfigError, "epochs must be an integer", lambda e: Settings(epochs="3")),
    Case("2-epochs-float-lib", ConfigError, "epochs must be an integer", lambda e: Settings(epochs=2.5)),
    Case("2-model-lib", ConfigError, "unknown model 'vgg'", lambda e: build_model("vgg", (1, 8, 8), 10)),
    Case("2-model-cli", ConfigError, "unknown model 'vgg'; choose one of mlp", argv=cli("--model", "vgg")),
    Case("2-dataset-lib", ConfigError, "unknown dataset 'imagenet'", lambda e: load_dataset("imagenet")),
    Case("2-dataset-cli", ConfigError, "unknown dataset 'imagenet'; choose one of", argv=cli("--dataset", "imagenet")),
    Case("2-code-dist-lib", ConfigError, "unknown code distribution", lambda e: generate_codes(10, (1, 8, 8), "laplace")),
    Case("2-code-dist-cli", ConfigError, "unknown code distribution 'laplace'", argv=cli("--code-dist", "laplace")),
    Case("2-step-cli", ConfigError, "unknown step", argv=cli("--step", "bold")),
    Case("2-lr-inf-cli", ConfigError, "lr must be a positive finite number", argv=cli("--lr", "inf")),
    Case("2-weight-decay-nan-cli", ConfigError, "weight_decay must be a finite number", argv=cli("--weight-decay", "nan")),
    Case("2-batch-size-cli", ConfigError, "batch_size must be at least 1", argv=cli("--batch-size", "0")),
    Case("2-threads-cli", ConfigError, "threads must be >= 0", argv=cli("--threads", "-2")),
    Case("2-seed-cli", ConfigError, "seed must be an integer in [0, 2**63)", argv=cli("--seed", str(2**70))),
    Case("2-out-is-folder-cli", ConfigError, "is a folder; give a file path", argv=cli("--out", "{tmp}")),
    Case("2-cache-dir-blocked-cli", OSError, "check the path", argv=cli("--cache-dir", "{tmp}/afile/cache"), setup=file_in_the_way),
    Case("2-no-command-cli", SystemExit, "invalid choice: 'experimnet'", argv=("experimnet",)),
    # 3. dataset missing / download failing (never the real network)
    Case("3-mnist-missing-lib", DataError, "--download", load_data("mnist")),
    Case("3-fashion-missing-lib", DataError, "dataset 'fashion_mnist' not found", load_data("fashion_mnist")),
    Case("3-cifar-missing-lib", DataError, "dataset 'cifar10' not found", load_data("cifar10")),
    Case("3-mnist-missing-cli", DataError, "dataset 'mnist' not found", argv=cli("--dataset", "mnist", "--data-root", "{tmp}/data")),
    Case("3-download-urlerror-lib", DataError, "downloading dataset 'mnist'", load_data("mnist", download=True),
         setup=failing_download(urllib.error.URLError("[Errno -3] Temporary failure in name resolution"))),
    Case("3-download-oserror-lib", DataError, "Check the network connection", load_data("cifar10", download=True),
         setup=failing_download(OSError("Network is unreachable"))),
    Case("3-download-fails-cli", DataError, "downloading dataset 'fashion_mnist'",
         argv=cli("--dataset", "fashion_mnist", "--data-root", "{tmp}/data", "--download"),
         setup=failing_download(urllib.error.URLError("no network"))),
    # 4. damaged data files
    Case("4-idx-truncated", DataError, "truncated", load_data("mnist"), setup=damage_mnist("truncate")),
    Case("4-idx-gz-truncated", DataError, "could not read", load_data("mnist"), setup=damage_mnist("truncate", gz=True)),
    Case("4-idx-bad-magic", DataError, "bad magic number", load_data("mnist"), setup=damage_mnist("magic")),
    Case("4-idx-gz-bad-magic", DataError, "bad magic number", load_data("mnist"), setup=damage_mnist("magic", gz=True)),
    Case("4-idx-type-code", DataError, "is not unsigned byte", load_data("mnist"), setup=damage_mnist("typecode")),
    Case("4-idx-gz-not-gzip", DataError, "not in the expected format", load_data("mnist"), setup=damage_mnist("not_gzip", gz=True)),
    Case("4-idx-gz-stream", DataError, "could not read", load_data("mnist"), setup=damage_mnist("gzip_stream", gz=True)),
    Case("4-idx-count-mismatch", DataError, "do not match", load_data("mnist"), setup=damage_mnist("count")),
    Case("4-idx-labels-range", DataError, "labels outside 0..9", load_data("mnist"), setup=damage_mnist("labels")),
    Case("4-idx-read-directly", DataError, "bad magic number", lambda e: read_idx(e.tmp / "afile"), setup=file_in_the_way),
    Case("4-idx-cli", DataError, "truncated", argv=cli("--dataset", "mnist", "--data-root", "{tmp}/data"), setup=damage_mnist("truncate")),
    Case("4-cifar-truncated", DataError, "could not read CIFAR-10 batch", load_data("cifar10"), setup=damage_cifar("truncate")),
    Case("4-cifar-garbage", DataError, "not in the CIFAR-10 python format", load_data("cifar10"), setup=damage_cifar("garbage")),
    Case("4-cifar-persistent-id", DataError, "no persistent_load function", load_data("cifar10"),
         setup=damage_cifar("persistent_id")),
    Case("4-cifar-not-a-dict", DataError, "could not read CIFAR-10 batch", load_data("cifar10"), setup=damage_cifar("not_a_dict")),
    Case("4-cifar-shape", DataError, "could not read CIFAR-10 batch", load_data("cifar10"), setup=damage_cifar("shape")),
    Case("4-cifar-one-missing", DataError, "missing data_batch_3", load_data("cifar10"), setup=damage_cifar("missing")),
    Case("4-cifar-planted-command", DataError, "is not allowed in a CIFAR batch", load_data("cifar10"),
         setup=damage_cifar("planted"), check=marker_absent),
    Case("4-cifar-planted-cli", DataError, "is not allowed", argv=cli("--dataset", "cifar10", "--model", "cnn", "--data-root", "{tmp}/data"),
         setup=damage_cifar("planted"), check=marker_absent),
    # 5. checkpoints and codes
    Case("5-ck-absent", CheckpointError, "no checkpoint at", load_ck()),
    Case("5-ck-truncated", CheckpointError, "does not match the sha256", load_ck(), setup=damage_checkpoint("truncate")),
    Case("5-ck-codes-altered", CheckpointError, "does not match the sha256", load_ck(), setup=damage_checkpoint("flip")),
    Case("5-ck-truncated-rehashed", CheckpointError, "could not be read as a checkpoint", load_ck(),
         setup=damage_checkpoint("truncate_rehashed")),
    Case("5-ck-no-manifest", CheckpointError, "not a complete artifact", load_ck(), setup=damage_checkpoint("no_manifest")),
    Case("5-ck-bad-manifest", CheckpointError, "is corrupted", load_ck(), setup=damage_checkpoint("bad_manifest")),
    Case("5-ck-empty-manifest", CheckpointError, "does not record the sha256", load_ck(), setup=damage_checkpoint("empty_manifest")),
    Case("5-ck-codes-missing", CheckpointError, "is missing", load_ck(), setup=damage_checkpoint("missing_codes")),
    Case("5-ck-no-config", CheckpointError, "lacks its config or weights", load_ck(), setup=damage_checkpoint("no_config")),
    Case("5-ck-planted-command", CheckpointError, "could not be read", load_ck(), setup=damage_checkpoint("planted"), check=marker_absent),
    Case("5-ck-other-dataset", CheckpointError, "was made with dataset='synthetic', not 'mnist'", load_ck(expect={"dataset": "mnist"}),
         setup=saved_checkpoint),
    Case("5-ck-shape-mismatch", CheckpointError, "does not fit model 'mlp'", load_ck(), setup=foreign_checkpoint),
    Case("5-ck-codes-shape", CheckpointError, "the codes belong to another model", load_ck(), setup=wrong_codes_checkpoint),
    Case("5-codes-shape-forget", ConfigError, "do not fit the model's input", lambda e: forget(e.model, torch.zeros(4, 1, 5, 5), [0], step="paper")),
    Case("5-codes-count-forget", ConfigError, "3 codes for a model with 4 classes", lambda e: forget(e.model, e.codes[:3], [0], step="paper")),
    # 8. NaN / inf weights
    Case("8-nan-weights", ModelStateError, "contains NaN or inf", lambda e: forget(broken_model(e, float("nan")), e.codes, [0], step="paper")),
    Case("8-inf-bias", ModelStateError, "parameter 'head.bias'", lambda e: forget(broken_model(e, float("inf"), "head.bias"), e.codes, [0], step="paper")),
    # 9. CUDA asked for, none present
    Case("9-cuda-lib", DeviceError, "no usable CUDA GPU; use --device cpu", lambda e: resolve_device("cuda"), setup=no_cuda),
    Case("9-cuda-index-lib", DeviceError, "'cuda:1' was requested", lambda e: resolve_device("cuda:1"), setup=no_cuda),
    Case("9-cuda-cli", DeviceError, "no usable CUDA GPU", argv=cli("--device", "cuda"), setup=no_cuda),
    Case("9-device-unknown-cli", ConfigError, "unknown device 'gpu'", argv=cli("--device", "gpu")),
    Case("9-device-malformed-lib", ConfigError, "unknown device 'cuda:x'", lambda e: resolve_device("cuda:x")),
    Case("9-gpu-index-absent-lib", DeviceError, "has 1 CUDA GPU(s), cuda:0 to cuda:0", lambda e: resolve_device("cuda:3"),
         setup=one_gpu),
    # dist. the cluster options of `mnemonic-mu sweep` (docs/distributed.md): refused before anything starts or connects
    Case("dist-address-cli", ConfigError, "--scheduler '127.0.0.1:8786x' is not a scheduler address: it needs HOST:PORT",
         argv=("sweep", "--scheduler", "127.0.0.1:8786x")),
    Case("dist-protocol-lib", ConfigError, "unknown protocol 'http'", lambda e: check_scheduler_address("http://node7:8786")),
    Case("dist-scheduler-file-cli", ConfigError, "no such scheduler file", argv=("sweep", "--scheduler", "{tmp}/scheduler.json")),
    Case("dist-scheduler-with-slurm-cli", ConfigError, "drop --scheduler or --backend",
         argv=("sweep", "--backend", "slurm", "--scheduler", "tcp://127.0.0.1:8786")),
    Case("dist-connect-timeout-cli", ConfigError, "the connect timeout must be a positive number of seconds",
         argv=("sweep", "--scheduler", "tcp://127.0.0.1:8786", "--connect-timeout", "0")),
    Case("dist-connect-timeout-local-cli", ConfigError, "--connect-timeout needs --backend dask",
         argv=("sweep", "--connect-timeout", "3")),
    Case("dist-connect-timeout-lib", ConfigError, "the connect timeout must be a positive number",
         lambda e: resolve_connect_timeout(-1)),
    Case("dist-memory-unit-cli", ConfigError, "worker memory '4' needs a unit",
         argv=("sweep", "--backend", "slurm", "--dry-run", "--worker-memory", "4")),
    Case("dist-memory-small-lib", ConfigError, "worker memory 100MB is too small", lambda e: slurm_cluster_options(memory="100MB")),
    Case("dist-walltime-cli", ConfigError, "walltime '4h' is not a SLURM time limit",
         argv=("sweep", "--backend", "slurm", "--dry-run", "--walltime", "4h")),
    # sec. parameters are data, never code
    Case("sec-config-string-not-evaluated", ConfigError, "t_mix must be a number", lambda e: Settings(t_mix=EVIL),
         check=marker_absent),
    Case("sec-cli-forget-not-evaluated", ConfigError, "forget_classes must be a list of numbers", argv=cli("--forget", EVIL),
         check=marker_absent),
]



# -- 6 and 7: report parameters and stage order (mnemonic_mu.drivers.report / stages) ------
# Imported lazily so a problem there fails these cases, not the whole battery.


@functools.lru_cache(maxsize=1)
def _declared() -> dict:
    from mnemonic_mu.drivers.report import declared_parameters, notebook_dir

    return declared_parameters(notebook_dir())


def report_params(**overrides) -> Callable:
    def call(env):
        from mnemonic_mu.drivers.report import resolve_parameters

        return resolve_parameters("ci", overrides, _declared(), env.tmp)

    return call


def stage_before_upstream(stage: str) -> Callable:
    def call(env):
        from mnemonic_mu.notebook_stages import load_stage

        return load_stage(Settings(cache_dir=str(env.tmp / "cache"), compute_upstream=False), stage)

    return call


def report(*extra: str) -> tuple[str, ...]:
    return ("report", "--profile", "ci", "--reports-dir", "{tmp}/reports", *extra)


REPORT_CASES: list[Case] = [
    Case("6-unknown-parameter-lib", ConfigError, "unknown parameter 'epoch': no notebook declares it", report_params(epoch=3)),
    Case("6-wrong-type-lib", ConfigError, "setting epochs must be an integer", report_params(epochs="three")),
    Case("6-wrong-type-list-lib", ConfigError, "forget_classes must be a list of integers", report_params(forget_classes=[1.5])),
    Case("6-unknown-parameter-cli", ConfigError, "unknown parameter 'epoch'", argv=report("-p", "epoch=3")),
    Case("6-wrong-type-cli", ConfigError, "setting epochs must be an integer", argv=report("-p", "epochs=three")),
    Case("6-unreadable-value-cli", ConfigError, "cannot read the value of 'epochs'", argv=report("-p", "epochs=[1")),
    Case("6-not-key-value-cli", ConfigError, "is not of the form key=value", argv=report("-p", "epochs")),
    Case("6-runner-parameter-cli", ConfigError, "is set by the runner", argv=report("-p", "run_dir=/tmp")),
    Case("6-bad-value-cli", ConfigError, "t_mix must lie in [0, 1]", argv=report("-p", "t_mix=2")),
    Case("6-unknown-profile-cli", ConfigError, "unknown profile 'fast'", argv=("report", "--profile", "fast")),
    Case("6-run-name-cli", ConfigError, "may only hold letters", argv=report("--run", "../escape")),
    Case("7-fisher-before-training", StageOrderError, "run notebooks/02_training.ipynb first", stage_before_upstream("02_training")),
    Case("7-membership-before-unlearning", StageOrderError, "run notebooks/04_unlearning.ipynb first",
         stage_before_upstream("04_unlearning")),
    Case("sec-report-yaml-tag-not-constructed", ConfigError, "cannot read the value of 'dataset'",
         argv=report("-p", "dataset=!!python/object/apply:os.system ['touch {tmp}/PWNED']"), check=marker_absent),
    Case("sec-report-code-string-not-evaluated", ConfigError, "unknown dataset",
         argv=report("-p", "dataset=" + EVIL), check=marker_absent),
]
CASES += REPORT_CASES
# fmt: on


# --------------------------------------------------------------------------
# Running the table


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def env(tmp_path, monkeypatch, tiny_dataset, tiny_trained):
    model, codes = tiny_trained
    monkeypatch.chdir(tmp_path)  # a CLI default --out or data root never lands in the repository
    return SimpleNamespace(tmp=tmp_path, monkeypatch=monkeypatch, dataset=tiny_dataset, model=model, codes=codes)


def _argv(case: Case, env) -> list[str]:
    return [a.replace("{tmp}", str(env.tmp)) for a in case.argv]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, env, capsys):
    assert (case.call is None) != (case.argv is None), "a case is either a call or a command line"
    if case.setup:
        case.setup(env)
    if case.call is not None:
        with pytest.raises(case.error) as info:
            case.call(env)
        assert case.match in str(info.value)
        assert "\n" not in str(info.value).strip(), "the message should be one line"
    else:
        argv = _argv(case, env)
        # what a user sees: exit status, one line on stderr, no stack trace
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse usage errors
            status = exc.code
        err = capsys.readouterr().err
        assert status not in (0, None), f"exit status {status}"
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
        assert lines[0].startswith("mnemonic-mu"), lines[0]
        assert case.match in lines[0], lines[0]
        # and the exception type behind it
        if case.error is not SystemExit:
            with pytest.raises(case.error, match=None):
                args = build_parser().parse_args(argv)
                args.func(args)
            capsys.readouterr()
    if case.check:
        case.check(env)


# The same in a real process: exit status and stderr as a shell sees them.
SUBPROCESS_CASES = [
    ("9-cuda", ["experiment", "--device", "cuda"], "no usable CUDA GPU"),
    ("3-missing", ["experiment", "--dataset", "mnist", "--data-root", "{tmp}/nothing"], "dataset 'mnist' not found"),
]


@pytest.mark.parametrize("argv, match", [c[1:] for c in SUBPROCESS_CASES], ids=[c[0] for c in SUBPROCESS_CASES])
def test_bad_input_in_a_real_process(argv, match, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--cache-dir", str(tmp_path / "cache")]
    envvars = os.environ | {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mnemonic_mu", *argv],
        cwd=tmp_path,
        env=envvars,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("mnemonic-mu: error: "), proc.stderr
    assert match in proc.stderr


# --------------------------------------------------------------------------
# The fabricated data roots are valid before they are damaged


def test_fabricated_data_roots_load(tmp_path, monkeypatch):
    """Guards the battery: the damaged-file cases fail because of the damage, not the fixture."""
    import torchvision

    calls = []
    monkeypatch.setattr(torchvision.datasets, "MNIST", lambda *a, **k: calls.append(a))
    make_mnist_root(tmp_path / "raw")
    make_mnist_root(tmp_path / "gz", gz=True)
    make_cifar_root(tmp_path / "raw")
    for root in ("raw", "gz"):
        ds = load_dataset("mnist", tmp_path / root)
        assert ds.input_shape == (1, 28, 28) and len(ds.y_test) == 10
    ds = load_dataset("cifar10", tmp_path / "raw")
    assert ds.input_shape == (3, 32, 32) and len(ds.y_train) + len(ds.y_val) == 50
    x, y = read_cifar_batch(tmp_path / "raw" / "cifar-10-batches-py" / "test_batch")
    assert x.shape == (10, 3, 32, 32) and y.tolist() == list(range(10))
    # nothing tried to download: the data was there, and downloading was off anyway
    with pytest.raises(DataError):
        load_dataset("mnist", tmp_path / "empty")
    assert calls == []


# --------------------------------------------------------------------------
# Security properties of the package source


def _package_calls():
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                yield path.name, node


def _dotted(func: ast.expr) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    parts.append(func.id if isinstance(func, ast.Name) else "<expr>")  # model.eval() is not eval()
    return ".".join(reversed(parts))


def test_package_never_executes_what_it_reads():
    """torch.load only with weights_only=True; YAML only through safe_load; no eval/exec/pickle.load."""
    problems = []
    for name, call in _package_calls():
        fn = _dotted(call.func)
        where = f"{name}:{call.lineno} {fn}"
        if fn.endswith("torch.load"):
            kw = {k.arg: k.value for k in call.keywords}
            if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                problems.append(where + " without weights_only=True")
        if fn in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all"):
            problems.append(where + " (use yaml.safe_load)")
        if fn in ("eval", "exec", "compile", "pickle.load", "pickle.loads", "marshal.loads", "__import__"):
            problems.append(where)
        if fn in ("os.system", "subprocess.call", "subprocess.run", "subprocess.Popen", "subprocess.check_output"):
            if (
                any(k.arg == "shell" and getattr(k.value, "value", False) is True for k in call.keywords)
                or fn == "os.system"
            ):
                problems.append(where + " runs a shell")
    assert problems == [], problems


def test_only_the_restricted_unpickler_reads_pickles():
    """CIFAR batches are the one pickle format read; its unpickler allows numpy arrays only."""
    blob = pickle.dumps({"data": _PlantedCommand(Path("/nonexistent/PWNED")), "labels": [0]})
    from mnemonic_mu.io.data import _ArrayUnpickler

    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        _ArrayUnpickler(io.BytesIO(blob)).load()


def test_downloads_only_on_request(tmp_path, monkeypatch):
    """Without download=True a missing dataset never reaches torchvision's downloader."""
    import torchvision

    calls = []

    class Recorder:
        def __init__(self, *args, **kwargs):
            calls.append(kwargs)
            raise OSError("simulated: no network")

    for name in ("MNIST", "FashionMNIST", "CIFAR10"):
        monkeypatch.setattr(torchvision.datasets, name, Recorder)
    for name in ("mnist", "fashion_mnist", "cifar10"):
        with pytest.raises(DataError, match="not found"):
            load_dataset(name, tmp_path)
    assert calls == []
    with pytest.raises(DataError, match="downloading dataset 'mnist'"):
        load_dataset("mnist", tmp_path, download=True)
    assert calls and calls[0]["download"] is True
