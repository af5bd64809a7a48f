"""mnemonic-mu: one-shot class unlearning with mnemonic codes.

Reference kit for Yamashita, Yamada and Shibata, "One-Shot Machine Unlearning
with Mnemonic Code" (ACML 2024, arXiv 2306.05670).  The package, by place::

    defaults.py         every setting's default and its comment, written once
    settings.py         the one settings object: every knob and its check
    overrides.py        profiles and -p overrides, read as YAML
    options.py          the settings as CLI options and as docs/settings.md's table
    pipeline.py         the method's stages, top to bottom (every driver runs these)
    notebook_stages.py  what each stage notebook computes and keeps
    plots.py            figures and tables for notebooks and reports
    runtime.py          device, threads, the environment recorded with results
    algorithms/         codes, training, Fisher, the step, metrics, attacks, methods
    io/                 datasets, checkpoints, atomic files, the keyed artifact store
    drivers/            the command line, the sweep, the papermill report

See README.md for the paper-to-code map.
"""

from .algorithms.codes import generate_codes, replace_with_codes
from .algorithms.dataset import Dataset
from .algorithms.fisher import code_fisher, data_fisher, mean_fisher, minibatch_fisher
from .algorithms.forget import Calibration, ForgetRecord, forget
from .algorithms.metrics import evaluate
from .algorithms.models import build_model
from .algorithms.train import TrainConfig, train_model
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DeviceError,
    MnemonicError,
    ModelStateError,
    StageOrderError,
)
from .io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .io.data import DATASETS, load_dataset
from .settings import Settings
from .version import __version__

__all__ = [
    "Calibration",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "DATASETS",
    "DataError",
    "Dataset",
    "DeviceError",
    "ForgetRecord",
    "MnemonicError",
    "ModelStateError",
    "Settings",
    "StageOrderError",
    "TrainConfig",
    "__version__",
    "build_model",
    "code_fisher",
    "data_fisher",
    "evaluate",
    "forget",
    "generate_codes",
    "load_checkpoint",
    "load_dataset",
    "mean_fisher",
    "minibatch_fisher",
    "replace_with_codes",
    "save_checkpoint",
    "train_model",
]
