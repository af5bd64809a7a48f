"""Figures and tables for the notebooks and reports (matplotlib, pandas).

Nothing here computes: these functions draw and tabulate what the stages and
:mod:`mnemonic_mu.pipeline` returned (tests/test_plots.py checks that this module imports no
algorithm).  Figures and metrics of a run go to ``<run_dir>/figures`` and
``<run_dir>/metrics``, named after their notebook.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from .bands import metric_values
from .io.artifacts import atomic_write_bytes, write_json


def savefig(fig, s, name: str) -> Path:
    """Save ``fig`` as ``<run_dir>/figures/<name>.png`` (atomic) and return the path."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    path = s.run_path / "figures" / f"{name}.png"
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_metrics(s, name: str, metrics: dict) -> Path:
    """Write ``<run_dir>/metrics/<name>.json`` atomically."""
    path = s.run_path / "metrics" / f"{name}.json"
    write_json(path, metrics)
    return path


def summary_table(summary: dict, columns=("A_R", "E_F", "A_R_train", "E_F_train", "gap")):
    """The summary's methods as a pandas DataFrame (rows = methods)."""
    import pandas as pd

    rows = {name: {c: row.get(c) for c in columns} for name, row in summary["methods"].items()}
    return pd.DataFrame(rows).T.astype(float).round(2)


def attack_table(summary: dict):
    """Every attack (columns) of every method that has them (rows), as a pandas DataFrame."""
    import pandas as pd

    rows = {
        name: {a: v.get("value") for a, v in row["attacks"].items()}
        for name, row in summary["methods"].items()
        if row.get("attacks")
    }
    return pd.DataFrame(rows).T.astype(float).round(3)


def request_band_table(summary: dict):
    """Every metric of every method beside retrain's seed band (a pandas DataFrame): the row
    ``retrain band`` holds the band's min..max, each method's cell its value and ``in`` /
    ``OUT`` (:mod:`mnemonic_mu.bands`); an attack without signal here has "(no signal)" in
    its column name.  ``None`` when the run has no band (``band_seeds`` none)."""
    import pandas as pd

    band = summary.get("band")
    if not band:
        return None
    quiet = {a for a, v in band["signal"].items() if v["no_signal"]}
    name = {m: m + (" (no signal)" if m in quiet else "") for m in band["stats"]}
    rows = {"retrain band": {name[m]: f"{st['min']:.3g}..{st['max']:.3g}" for m, st in band["stats"].items()}}
    for method, row in summary["methods"].items():
        values, flags = metric_values(row), band["inside"].get(method, {})
        rows[method] = {name[m]: f"{values[m]:.3g} {'in' if ok else 'OUT'}" for m, ok in flags.items()}
    return pd.DataFrame(rows).T


def image_grid(ax_row, images: torch.Tensor, titles=None, cmap: str = "gray") -> None:
    """Draw a row of images (C, H, W) on the given axes, one per axis, without ticks."""
    for k, ax in enumerate(ax_row):
        img = images[k]
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap=cmap)
        else:  # colour images: rescale each to [0, 1] for display
            arr = img.permute(1, 2, 0).numpy()
            ax.imshow((arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-12))
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)


def per_class_bars(ax, per_class: dict[str, list[float]], forget_classes) -> None:
    """Grouped bars of per-class accuracy (%) for several models; forget classes shaded."""
    names = list(per_class)
    k = len(next(iter(per_class.values())))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ax.bar(np.arange(k) + (i - (len(names) - 1) / 2) * width, per_class[name], width, label=name)
    for c in forget_classes:
        ax.axvspan(c - 0.45, c + 0.45, color="0.85", zorder=0)
    ax.set_xticks(range(k))
    ax.set_xlabel("class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)


__all__ = [
    "attack_table",
    "image_grid",
    "per_class_bars",
    "request_band_table",
    "savefig",
    "summary_table",
    "write_metrics",
]
