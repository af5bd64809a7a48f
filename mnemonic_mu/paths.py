"""Where relative paths of the settings resolve: the repository's root, else the working directory."""

from __future__ import annotations

from pathlib import Path


def project_root() -> Path:
    """The nearest folder at or above the working directory holding ``pyproject.toml`` and
    ``notebooks/`` (the repository), else the working directory.  Relative paths of
    :class:`~mnemonic_mu.settings.Settings` resolve against it, so a notebook run from
    ``notebooks/`` and one run by ``mnemonic-mu report`` share the same cache."""
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return cwd


def resolve_path(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


__all__ = ["project_root", "resolve_path"]
