"""Exception types raised by the kit.

Every error a user can trigger by bad input derives from :class:`MnemonicError`
and carries one message that says what was wrong and how to fix it.  The CLI
prints that message (without a stack trace) and exits non-zero.
"""

from __future__ import annotations

import re


class MnemonicError(Exception):
    """Base class of every error the kit raises on purpose.

    The message is kept on one line: a library message quoted inside it (a
    pickle or YAML error, say) can span several lines, and its line breaks are
    folded into single spaces.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(re.sub(r"\s*\n\s*", " ", str(message)).strip(), *args)


class ConfigError(MnemonicError, ValueError):
    """A setting is out of range, unknown or of the wrong type."""


class DataError(MnemonicError):
    """A dataset is missing, truncated or in the wrong format."""


class CheckpointError(MnemonicError):
    """A checkpoint or artifact is corrupted, tampered with or does not fit."""


class DeviceError(MnemonicError):
    """The requested device is not available on this machine."""


class StageOrderError(MnemonicError):
    """A notebook stage ran before the stage that produces its input."""


class ModelStateError(MnemonicError):
    """The model is unusable (for example its weights contain NaN or inf)."""
