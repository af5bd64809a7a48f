"""Safe artifact I/O: atomic writes, sha256 manifests, cache keys and locks.

Rules every stage follows (for users: docs/troubleshooting.md, "Interrupted runs"):

* A file or folder is written under a temporary name in the same directory
  and renamed into place, so a killed run leaves the old complete artifact or
  none, never a half-written one.
* Every artifact folder has a ``manifest.json`` listing the sha256 of each
  payload file; :func:`verify_manifest` checks it before anything is trusted.
* Cache keys are short hashes of the canonical JSON of a stage's settings,
  chained to the upstream key.
* :func:`file_lock` serialises two runs that compute the same key.
* Written files and folders get the permissions the user's umask gives a
  plain ``open``/``mkdir`` (``0o666`` / ``0o777`` minus the umask, so a group
  can read a shared cache under umask 022), not the owner-only ``0o600`` /
  ``0o700`` of :mod:`tempfile`; a caller that passes ``mode`` (the codes,
  ``0o600``) gets exactly that mode.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

from ..errors import CheckpointError

MANIFEST = "manifest.json"
_PROC_STATUS = "/proc/self/status"  # Linux: holds the process's umask ("Umask:\t0022")
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows.

    Linux reports it in ``/proc/self/status``.  Elsewhere the only way is an ``os.umask``
    round trip, which changes the process-wide value for an instant: it is done under a
    lock, through the most private value (``0o077``), so a file another thread creates in
    that instant is at worst owner-only, never more open than the user asked for.
    """
    try:
        with open(_PROC_STATUS) as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def settings_key(settings: dict, upstream: str | None = None, length: int = 12) -> str:
    """Short hash of ``settings`` (canonical JSON), chained to an ``upstream`` key."""
    payload = canonical_json({"settings": settings, "upstream": upstream})
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``.

    The file gets ``mode`` if given, else what the umask gives a new file (``0o666 & ~umask``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # created 0o600
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode if mode is not None else 0o666 & ~current_umask())
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN written as null)."""
    atomic_write_text(path, json.dumps(_nan_to_none(obj), indent=2, sort_keys=False, default=str) + "\n")


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


@contextlib.contextmanager
def staging_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it replaces ``final``.

    The swap is two renames (old out of the way, new into place); a run killed
    between them leaves no artifact rather than a broken one.  On an error
    the temporary folder is removed and ``final`` is untouched.  The folder gets
    what the umask gives a new folder (``0o777 & ~umask``).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))  # created 0o700
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        yield tmp
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_manifest(folder: str | os.PathLike, meta: dict | None = None) -> dict:
    """Record the sha256 of every file in ``folder`` (except the manifest) plus ``meta``."""
    folder = Path(folder)
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    manifest = {"files": files, **(meta or {})}
    write_json(folder / MANIFEST, manifest)
    return manifest


def verify_manifest(folder: str | os.PathLike) -> dict:
    """Check every file listed in ``folder``'s manifest against its sha256.

    Raises :class:`CheckpointError` naming the first missing or altered file.
    """
    folder = Path(folder)
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise CheckpointError(
            f"{folder} has no {MANIFEST}: it is not a complete artifact (an interrupted run?). "
            "Delete the folder and run the stage again."
        )
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not a mapping")
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"{mpath} is corrupted; delete {folder} and run the stage again.") from None
    for name, digest in files.items():
        p = folder / name
        if not p.is_file():
            raise CheckpointError(f"{p} is missing; delete {folder} and run the stage again.")
        if sha256_file(p) != digest:
            raise CheckpointError(
                f"{p} does not match the sha256 in its manifest (corrupted or tampered with); "
                f"delete {folder} and run the stage again."
            )
    return manifest


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed), released on exit."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


__all__ = [
    "MANIFEST",
    "atomic_write_bytes",
    "atomic_write_text",
    "canonical_json",
    "current_umask",
    "file_lock",
    "settings_key",
    "sha256_file",
    "staging_dir",
    "verify_manifest",
    "write_json",
    "write_manifest",
]
