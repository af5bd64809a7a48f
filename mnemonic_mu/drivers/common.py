"""What the drivers share: settings from a command line, the report folders' names and
paths, and tolerant readers of the small JSON and YAML files a run leaves behind.

The drivers import from here, never from :mod:`~mnemonic_mu.drivers.cli` (the top of the
drivers) nor each other's private names (``tests/test_layers.py``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml

from ..algorithms.metrics import renamed_keys
from ..errors import ConfigError
from ..options import from_args
from ..overrides import load_profile
from ..paths import project_root
from ..settings import Settings

PATH_SETTINGS = ("data_root", "cache_dir", "run_dir")  # given on the command line: relative to the caller's folder
PATH_PARAMETERS = ("data_root", "cache_dir")  # report -p values: relative to the caller's directory
RUN_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"  # the characters a run folder's name may hold


def settings_from_args(args, names) -> Settings:
    """Profile, then the options given (paths given here are relative to the working directory)."""
    for name in PATH_SETTINGS:
        if getattr(args, name, None):
            setattr(args, name, str(Path(getattr(args, name)).expanduser().resolve()))
    return from_args(args, names, base=load_profile(args.profile))


def check_run_name(run: str) -> None:
    if not re.fullmatch(RUN_NAME, run):
        raise ConfigError(f"run name {run!r} may only hold letters, digits, '.', '_' and '-'")


def reports_root(reports_dir: str | os.PathLike | None = None) -> Path:
    """The folder the run folders go in: ``reports_dir`` or ``<repo>/reports``."""
    return Path(reports_dir).resolve() if reports_dir else project_root() / "reports"


def read_yaml(path: Path) -> dict:
    """The mapping in a YAML file; ``{}`` when it is missing, unreadable or not a mapping."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def read_json(path: Path) -> dict:
    """The object in a JSON file; ``{}`` when it is missing, unreadable or not an object (metric keys
    renamed since it was written read under their new names: :func:`~mnemonic_mu.algorithms.metrics.renamed_keys`)."""
    try:
        data = renamed_keys(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


__all__ = [
    "PATH_PARAMETERS",
    "PATH_SETTINGS",
    "RUN_NAME",
    "check_run_name",
    "read_json",
    "read_yaml",
    "reports_root",
    "settings_from_args",
]
