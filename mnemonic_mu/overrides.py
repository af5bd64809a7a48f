"""Settings written as YAML: the profiles (``mnemonic_mu/profiles/*.yaml``, partial overrides of
the defaults) and ``-p key=value`` overrides.  Values are read as YAML data, never evaluated; the
names are checked against the table of :mod:`mnemonic_mu.defaults`, the values by
:class:`~mnemonic_mu.settings.Settings`, which builds on these.
"""

from __future__ import annotations

import re
from dataclasses import fields
from importlib import resources

import yaml

from .defaults import Defaults
from .errors import ConfigError

PROFILES = ("ci", "laptop", "paper")


def load_profile(name: str) -> dict:
    """The overrides of profile ``name`` (a small YAML mapping shipped with the package)."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    text = (resources.files("mnemonic_mu") / "profiles" / f"{name}.yaml").read_text()
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"profile {name} is not a mapping of setting names to values")
    unknown = sorted(set(data) - _NAMES)
    if unknown:
        raise ConfigError(f"profile {name} names unknown setting {unknown[0]!r}")
    return data


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _numbers(value):
    """YAML 1.1 reads ``1e-4`` as a string; read such strings as floats (lists too)."""
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def parse_value(key: str, raw: str):
    """One value as YAML (numbers, booleans, lists, strings); nothing is evaluated."""
    try:
        return _numbers(yaml.safe_load(raw)) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"cannot read the value of {key!r}: {raw!r}") from None


def parse_overrides(items: list[str]) -> dict:
    """``["epochs=5", "forget_classes=[1, 2]"]`` -> ``{"epochs": 5, "forget_classes": [1, 2]}``."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key):
            raise ConfigError(f"parameter {item!r} is not of the form key=value (for example -p epochs=5)")
        out[key] = parse_value(key, raw)
    return out


_NAMES = {f.name for f in fields(Defaults)}


__all__ = ["PROFILES", "load_profile", "parse_overrides", "parse_value"]
