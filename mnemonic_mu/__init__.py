"""mnemonic-mu: one-shot class unlearning with mnemonic codes.

Reference kit for Yamashita, Yamada and Shibata, "One-Shot Machine Unlearning
with Mnemonic Code" (ACML 2024, arXiv 2306.05670).  See README.md for the
paper-to-code map.
"""

__version__ = "0.1.0"

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint  # noqa: E402
from .codes import generate_codes, replace_with_codes  # noqa: E402
from .data import DATASETS, Dataset, load_dataset  # noqa: E402
from .errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DataError,
    DeviceError,
    MnemonicError,
    ModelStateError,
    StageOrderError,
)
from .fisher import code_fisher, data_fisher, mean_fisher, minibatch_fisher  # noqa: E402
from .forget import Calibration, ForgetRecord, forget  # noqa: E402
from .metrics import evaluate  # noqa: E402
from .models import build_model  # noqa: E402
from .train import TrainConfig, train_model  # noqa: E402

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
