"""``mnemonic-mu report --grid KEY=[v1,v2] ...``: the Cartesian product of some settings, one
ordinary run each, in parallel through the executor interface, resumable."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..overrides import parse_overrides
from .common import PATH_PARAMETERS, check_run_name, read_json, read_yaml, reports_root
from .executor import make_executor
from .pages import build_gallery
from .report import declared_parameters, notebook_dir, resolve_parameters, resolved_config, run_report

# --------------------------------------------------------------------------
# Grids: the Cartesian product of some settings, one ordinary run each


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["seed=[0,1]", "forget_classes=[[1],[3]]"]`` -> ``{"seed": [0, 1], "forget_classes": [[1], [3]]}``.

    Each value is a YAML list (read like ``-p``, never evaluated); a list setting takes a
    list of lists."""
    grid: dict[str, list] = {}
    for item in items:
        ((key, values),) = parse_overrides([item]).items()
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; put every value in one --grid {key}=[...]")
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"--grid {item!r}: the values must be a non-empty YAML list, e.g. --grid seed=[0,1] "
                "(for a list setting, a list of lists: --grid forget_classes=[[1],[3]])"
            )
        seen = [json.dumps(v, sort_keys=True) for v in values]
        if len(set(seen)) < len(seen):
            raise ConfigError(f"--grid {key} lists a value twice: {values!r}")
        grid[key] = values
    return grid


def grid_points(grid: dict[str, list]) -> list[dict]:
    """The Cartesian product of ``grid``: one ``{key: value}`` per run, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _name_part(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "_".join(_name_part(v) for v in value) or "none"
    return str(value)


def grid_run_names(prefix: str, points: list[dict]) -> list[str]:
    """One run name per grid point, ``<prefix>-<key>_<value>-...`` in the allowed characters
    (``=`` and other characters become ``_``); names that would clash, or run long, get a
    short hash of the point."""

    def digest(point: dict) -> str:
        return hashlib.sha1(json.dumps(point, sort_keys=True, default=str).encode()).hexdigest()[:8]

    names = []
    for point in points:
        raw = prefix + "".join(f"-{k}={_name_part(v)}" for k, v in point.items())
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("_")
        if len(name) > 120:
            name = f"{name[:100].rstrip('_-.')}-{digest(point)}"
        names.append(name)
    for i, point in enumerate(points):
        if names.count(names[i]) > 1:
            names[i] = f"{names[i]}-{digest(point)}"
    return names


def run_is_done(folder: Path, resolved: dict) -> bool:
    """A finished run of exactly these settings: ``index.html`` present and the same resolved
    settings in its ``params.yaml``."""
    return (folder / "index.html").is_file() and read_yaml(folder / "params.yaml").get("resolved") == resolved


def _grid_task(profile: str, run: str, overrides: dict, reports_dir: str, notebooks: str) -> dict:
    """One grid point, run in a worker; a failure is returned, never raised, so the others go on."""
    t0 = time.perf_counter()
    try:
        index = run_report(profile, run=run, overrides=overrides, reports_dir=reports_dir, notebooks=notebooks)
    except Exception as exc:  # reported in the result and in <run>.failed/failure.json
        return {
            "run": run,
            "status": "failed",
            "seconds": time.perf_counter() - t0,
            "index": None,
            "error": f"{type(exc).__name__}: {exc}",
        }
    return {"run": run, "status": "done", "seconds": time.perf_counter() - t0, "index": str(index), "error": None}


def run_grid(
    profile: str,
    grid: dict[str, list],
    overrides: dict | None = None,
    jobs: int = 1,
    run: str | None = None,
    reports_dir: str | os.PathLike | None = None,
    notebooks: str | os.PathLike | None = None,
) -> list[dict]:
    """Run every point of ``grid`` (over the profile and ``overrides``) as its own report.

    Every point is resolved and checked by :class:`Settings` before anything runs.  Points
    whose folder already holds a finished run of the same settings are skipped; the others
    run ``jobs`` at a time through ``make_executor("local", jobs)``; a failed point does not
    stop the others.  The gallery is rebuilt at the end.  Returns one
    ``{"run", "status" (done | skipped | failed), "seconds", "index", "error"}`` per point,
    in grid order.
    """
    overrides = dict(overrides or {})
    prefix = run or profile
    check_run_name(prefix)
    both = sorted(set(grid) & set(overrides))
    if both:
        raise ConfigError(f"{both[0]} is both a -p override and a --grid axis; keep one")
    if not grid:
        raise ConfigError("an empty grid; give at least one --grid KEY=[V1,V2]")
    folder = Path(notebooks).resolve() if notebooks else notebook_dir()
    declared = declared_parameters(folder)
    points = grid_points(grid)
    names = grid_run_names(prefix, points)
    cwd = Path.cwd()
    plan = []
    for name, point in zip(names, points):
        mine = overrides | point
        params = resolve_parameters(profile, mine, declared, cwd)  # every point checked before any runs
        mine = {k: (params[k] if k in PATH_PARAMETERS else v) for k, v in mine.items()}  # folders made absolute
        plan.append((name, mine, resolved_config(profile, params)))
    root = reports_root(reports_dir)
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    todo = []
    for name, mine, resolved in plan:
        if run_is_done(root / name, resolved):
            seconds = read_json(root / name / "metrics" / "run.json").get("seconds")
            results[name] = {
                "run": name,
                "status": "skipped",
                "seconds": seconds,
                "index": str(root / name / "index.html"),
                "error": None,
            }
        else:
            todo.append((profile, name, mine, str(root), str(folder)))
    if todo:
        executor = make_executor("local", jobs)
        try:
            for res in executor.map(_grid_task, todo, "report grid"):
                results[res["run"]] = res
        finally:
            executor.close()
    build_gallery(root)
    return [results[name] for name in names]
