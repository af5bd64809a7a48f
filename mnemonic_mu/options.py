"""The settings as command-line options and as docs/settings.md's table, derived from the fields
of :class:`~mnemonic_mu.settings.Settings` and the comments of their table
(:func:`mnemonic_mu.defaults.comments`): nothing here restates a default or a help text.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from .defaults import comments
from .io.data import DATASETS
from .overrides import parse_value
from .settings import Settings


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, names) -> None:
    """One ``--name`` option per setting in ``names``, typed and documented from the table.

    Defaults are left to :class:`Settings` (an option not given is not passed), so the
    help shows the default but the parser never restates it.  Lists take YAML
    (``--forget-classes 3`` or ``--forget-classes [1,2]``), booleans ``--x`` / ``--no-x``.
    """
    notes = comments()
    registered = {"dataset": DATASETS}  # settings that name a registry entry: the help lists them
    for name in names:
        d = Settings.default(name)
        listed = f": {', '.join(registered[name])}" if name in registered else ""
        help_ = f"{notes.get(name, '')}{listed} (default {_show(d)})"
        if isinstance(d, bool):
            parser.add_argument(
                option(name), dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_
            )
        elif isinstance(d, tuple):
            flags = [option(name)] + (["--forget"] if name == "forget_classes" else [])  # the short name people type
            parser.add_argument(
                *flags,
                dest=name,
                nargs="+",
                default=None,
                metavar="V",
                help=help_ + ("; 'none' for an empty list" if isinstance(d[0], str) else ""),
            )
        else:
            parser.add_argument(option(name), dest=name, default=None, metavar=type(d).__name__.upper(), help=help_)


def _typed(name: str, raw: str, like):
    """One command-line word read as the type of ``like`` (``float('nan')`` and ``1e-4`` included);
    a word that is not one is passed on as text, for the validator to refuse by name."""
    if isinstance(like, str):
        return raw
    if raw.strip().startswith("["):
        return parse_value(name, raw)
    try:
        return int(raw) if isinstance(like, int) and not isinstance(like, bool) else float(raw)
    except ValueError:
        return raw


def from_args(args: argparse.Namespace, names, base: dict | None = None) -> Settings:
    """:class:`Settings` from the options of :func:`add_options` that were given, over ``base``."""
    given = dict(base or {})
    for name in names:
        raw = getattr(args, name, None)
        if raw is None:
            continue
        d = Settings.default(name)
        if isinstance(d, bool):
            given[name] = raw
        elif isinstance(d, tuple):
            if raw in (["none"], ["[]"]):
                given[name] = []
                continue
            values = [_typed(name, r, d[0]) for r in raw]
            given[name] = values[0] if len(values) == 1 and isinstance(values[0], list) else values
        else:
            given[name] = _typed(name, raw, d)
    return Settings(**given)


def _show(v) -> str:
    return "none" if v == () else (" ".join(map(str, v)) if isinstance(v, tuple) else str(v))


def defaults_table() -> str:
    """docs/settings.md's table: every setting, its default and its comment."""
    notes = comments()
    lines = ["| setting | default | meaning |", "|---|---|---|"]
    for f in fields(Settings):
        d = Settings.default(f.name)
        value = list(d) if isinstance(d, tuple) else d
        note = notes.get(f.name, "").replace("|", "\\|")  # a pipe would end the cell
        lines.append(f"| `{f.name}` | `{value}` | {note} |")
    return "\n".join(lines) + "\n"


__all__ = ["add_options", "defaults_table", "from_args", "option"]
