"""Shared fixtures: tiny synthetic data and a tiny model trained with codes (seconds on a CPU)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import torch

# One torch thread unless the caller asks for more (`OMP_NUM_THREADS=2 make test`): the suite's
# verdicts must not depend on it (run it at 1 and at 2 before a change lands).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
# The processes a test starts (`python -m mnemonic_mu`, notebook kernels) import the package from
# this checkout, ahead of wherever it is installed (a second worktree, an editable install elsewhere).
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")))
)

from mnemonic_mu.algorithms.codes import generate_codes  # noqa: E402
from mnemonic_mu.algorithms.models import build_model  # noqa: E402
from mnemonic_mu.algorithms.train import TrainConfig, train_model  # noqa: E402
from mnemonic_mu.io.artifacts import file_lock  # noqa: E402
from mnemonic_mu.io.data import load_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dataset():
    """4 classes of 1x8x8 prototypes + noise: 60 samples per class."""
    return load_dataset("synthetic", num_classes=4, shape=(1, 8, 8), n_per_class=60, split_seed=0)


@pytest.fixture(scope="session")
def tiny_trained(tiny_dataset):
    """(model, codes): an MLP trained 30 epochs with t_mix 0.2 on ``tiny_dataset``."""
    codes = generate_codes(tiny_dataset.num_classes, tiny_dataset.input_shape, "normal", seed=0)
    model = build_model("mlp", tiny_dataset.input_shape, tiny_dataset.num_classes, seed=0)
    train_model(model, tiny_dataset, codes, TrainConfig(epochs=30, batch_size=32, lr=0.05, t_mix=0.2, seed=0))
    return model, codes


def session_dir(tmp_path_factory) -> Path:
    """This test session's folder, shared by its pytest-xdist workers (``make test`` runs two):
    their common parent under xdist, else the session's own base folder."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def built_once(tmp_path_factory, name: str):
    """Hold the session-wide lock of ``session_dir / name`` and yield that folder: the first
    worker to ask builds what it holds, a second waits, then finds it built."""
    shared = session_dir(tmp_path_factory)
    with file_lock(shared / f"{name}.lock"):
        yield shared / name
