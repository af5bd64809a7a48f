"""Checkpoints: weights, mnemonic codes, config, split indices and sha256s in one folder.

Layout of a checkpoint folder::

    model.pt       state_dict, config (JSON text), split indices, history
    codes.pt       the mnemonic codes, alone, readable by the owner only (0600)
    manifest.json  sha256 of both files plus the config

Files are written with ``torch.save`` into a staging folder that is renamed
into place; they are read back with ``torch.load(weights_only=True)`` after
the sha256 check, so loading never executes code from the file.  Codes are a
trigger for their class (docs/troubleshooting.md, "Security"): keep ``codes.pt`` private.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..algorithms.models import build_model
from ..errors import CheckpointError
from .artifacts import atomic_write_bytes, staging_dir, verify_manifest, write_manifest

MODEL_FILE = "model.pt"
CODES_FILE = "codes.pt"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode), its codes and everything recorded with it."""

    model: nn.Module
    codes: torch.Tensor
    config: dict
    splits: dict[str, torch.Tensor] = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    folder: Path | None = None


def _tensor_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_checkpoint(
    folder: str | os.PathLike,
    model: nn.Module,
    codes: torch.Tensor,
    config: dict,
    splits: dict[str, torch.Tensor] | None = None,
    history: dict | None = None,
) -> Path:
    """Write a checkpoint folder atomically; ``config`` must include ``model``,
    ``input_shape`` and ``num_classes`` so :func:`load_checkpoint` can rebuild it."""
    for key in ("model", "input_shape", "num_classes"):
        if key not in config:
            raise ValueError(f"checkpoint config needs {key!r}")
    folder = Path(folder)
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config_json": json.dumps(config, sort_keys=True, default=str),
        "splits": {k: torch.as_tensor(v).cpu() for k, v in (splits or {}).items()},
        "history_json": json.dumps(history or {}, default=str),
    }
    with staging_dir(folder) as tmp:
        atomic_write_bytes(tmp / MODEL_FILE, _tensor_bytes(payload))
        atomic_write_bytes(tmp / CODES_FILE, _tensor_bytes(codes.detach().cpu()), mode=0o600)
        write_manifest(tmp, {"config": config, "format": "mnemonic-mu-checkpoint/1"})
    return folder


def _safe_load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files
        raise CheckpointError(
            f"{path} could not be read as a checkpoint ({type(exc).__name__}); it is truncated "
            "or not a mnemonic-mu checkpoint. Delete it and train again."
        ) from None


def load_checkpoint(
    folder: str | os.PathLike,
    expect: dict | None = None,
    device: torch.device | str = "cpu",
) -> Checkpoint:
    """Verify and load a checkpoint folder.

    ``expect`` maps config keys to required values (for example
    ``{"model": "mlp", "dataset": "mnist5k"}``); a mismatch raises
    :class:`CheckpointError` instead of silently using the wrong model.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"no checkpoint at {folder}; train a model first (mnemonic-mu experiment)")
    listed = verify_manifest(folder)["files"]
    unlisted = [name for name in (MODEL_FILE, CODES_FILE) if name not in listed]
    if unlisted:
        raise CheckpointError(
            f"the manifest of {folder} does not record the sha256 of {', '.join(unlisted)}, so it "
            "cannot be trusted; delete the folder and train again."
        )
    payload = _safe_load(folder / MODEL_FILE)
    codes = _safe_load(folder / CODES_FILE)
    try:
        config = json.loads(payload["config_json"])
        state = payload["state_dict"]
        config["model"], config["num_classes"], tuple(config["input_shape"])
    except (KeyError, IndexError, TypeError, ValueError):
        raise CheckpointError(f"{folder / MODEL_FILE} lacks its config or weights; train again.") from None
    for key, want in (expect or {}).items():
        if config.get(key) != want:
            raise CheckpointError(
                f"checkpoint {folder} was made with {key}={config.get(key)!r}, not {want!r}; "
                "point to a checkpoint of the right model and dataset."
            )
    try:
        model = build_model(config["model"], tuple(config["input_shape"]), config["num_classes"])
    except (TypeError, ValueError) as exc:  # ConfigError is a ValueError
        raise CheckpointError(
            f"checkpoint {folder} records a model the kit cannot build ({exc}); train again."
        ) from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"checkpoint {folder} does not fit model {config['model']!r} "
            f"({first[1].strip() if len(first) > 1 else first[0]}); it comes from another model or dataset."
        ) from None
    if not isinstance(codes, torch.Tensor) or tuple(codes.shape) != (
        config["num_classes"],
        *config["input_shape"],
    ):
        raise CheckpointError(
            f"codes in {folder} have shape {tuple(getattr(codes, 'shape', ()))}, expected "
            f"{(config['num_classes'], *config['input_shape'])}; the codes belong to another model."
        )
    model.to(device).eval()
    return Checkpoint(
        model=model,
        codes=codes,
        config=config,
        splits=dict(payload.get("splits", {})),
        history=json.loads(payload.get("history_json", "{}")),
        folder=folder,
    )


__all__ = ["CODES_FILE", "Checkpoint", "MODEL_FILE", "load_checkpoint", "save_checkpoint"]
