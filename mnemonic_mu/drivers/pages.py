"""The report's HTML pages, from jinja2 templates: the run page (``reports/<run>/index.html``)
and the gallery of every run (``reports/index.html``), with the verdict and its band rule."""

from __future__ import annotations

import json
import os
import re
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import bands
from ..algorithms.attacks import ATTACKS, distance_attacks
from ..algorithms.methods import by_sees, row_sees
from ..defaults import RUNTIME
from ..errors import MnemonicError
from ..io.artifacts import atomic_write_text, file_lock
from ..notebook_stages import NOTEBOOKS
from ..settings import Settings
from .common import PATH_PARAMETERS, read_json, read_yaml, reports_root

if TYPE_CHECKING:
    import jinja2

# --------------------------------------------------------------------------
# Pages: the run page (index.html of a run) and the gallery (reports/index.html)

TEMPLATES = "templates"  # package folder of the jinja2 templates
STEP = "mnemonic"  # the summary row of the run's one-shot step
REFERENCE = "retrain"  # the row every method is compared with
FORGOTTEN_E_F = 99.0  # E_F (%) at or above which the step counts as having forgotten
FRACTION_BAND = 0.05  # a share or accuracy within this of retrain's counts as inside its band
NATS_BAND = 0.5  # a log-ratio (an attack of scale "nats") within this of retrain's, when nothing better is known
BAND_RULE = (
    f"shares and accuracies within {FRACTION_BAND} of retrain's value, log-ratios within {NATS_BAND} nats; an "
    "attack that measures a distance to retrain ("
    + ", ".join(distance_attacks())
    + ") at most the retrain band's mean + 2 std when the summary has one, else at most the attack's finite-sample "
    "null (two samples of one distribution) when recorded, else as above; an attack flagged no_signal shows "
    '"no signal" and is not counted.'
)

_TITLES = {
    "01_mnemonic_codes": "Mnemonic codes",
    "02_training": "Training with codes, without codes, retrain",
    "03_fisher": "Fisher information from the codes",
    "04_unlearning": "One-shot unlearning",
    "05_membership_evaluation": "Membership evaluation",
    "06_report": "Report",
}

# One line per figure the notebooks save, keyed by the file's stem; a figure not listed
# here gets its stem in words.
CAPTIONS = {
    "01_mnemonic_codes_gallery": (
        "The first training sample of each class above its normal and its uniform mnemonic code."
    ),
    "01_mnemonic_codes_values": "Pixel values of the data and of the normal and uniform codes.",
    "01_mnemonic_codes_batch": (
        "One training batch after replacement; samples swapped for their class's code are framed in red."
    ),
    "01_mnemonic_codes_rate": "Share of samples replaced per class over ten simulated epochs, against t_mix (dashed).",
    "02_training_curves": "Training loss and validation accuracy per epoch of original, no-codes and retrain.",
    "02_training_per_class": "Test accuracy per class of the three trained models; the forget class is shaded.",
    "03_fisher_approximation": "Distance to the Oracle Fisher: the code Fisher against the Fisher of n real samples.",
    "03_fisher_eta_layers": "Largest and median eta = f_F / f_R of each layer (log10).",
    "03_fisher_first_layer": "The MLP's first layer summed per pixel: code Fisher, Oracle Fisher and eta as images.",
    "04_unlearning_per_class": "Test accuracy per class: original, unlearned and retrain; the forget class is shaded.",
    "04_unlearning_every_class": (
        "E_F and A_R when each class is forgotten in turn, the paper's step against the calibrated one."
    ),
    "04_unlearning_lambda_sweep": (
        "Validation A_R and E_F over the (lambda1, lambda2) grid, and A_R + E_F along each axis."
    ),
    "04_unlearning_time": "Seconds of the one-shot step against training each model (log scale).",
    "05_membership_distributions": "Per-sample loss, entropy and confidence of each model on each sample group.",
    "05_membership_attacks": "Every attack's value of each model, beside retrain's band.",
    "06_report_methods": "A_R and E_F (%) of every method.",
}
WIDE_FIGURE = 2.4  # width / height above which a figure spans both columns ...
WIDE_PIXELS = 1000  # ... or its width in pixels (half a column would shrink it past reading)

SUMMARY_COLUMNS = ("A_R", "E_F", "A_R_train", "E_F_train", "test_accuracy", "gap")

_ENV = None


def _environment() -> "jinja2.Environment":
    """The jinja2 environment of the package's templates (autoescaped, strict about names)."""
    global _ENV
    if _ENV is None:
        import jinja2

        _ENV = jinja2.Environment(
            loader=jinja2.PackageLoader("mnemonic_mu", TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
    return _ENV


def render(template: str, **context: Any) -> str:
    """Render ``mnemonic_mu/templates/<template>`` with ``context``."""
    return _environment().get_template(template).render(**context)


def _fmt(value: Any, digits: int = 2) -> str:
    """A number with ``digits`` decimals, ``-`` for a missing one."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}"
    return str(value)


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def _sort_key(value: Any) -> str:
    """``data-sort`` of a numeric cell: the number, or empty (sorted last) when missing."""
    return "" if value is None or (isinstance(value, float) and value != value) else repr(float(value))


def summary_rows(summary: dict) -> list[tuple[str, dict]]:
    """``(method, row)`` of every method of a summary: the trained models and retrain first, then
    the methods grouped by what they see, the least data first (:func:`by_sees`), so the
    data-free rows read together."""
    methods = summary.get("methods") or {}
    return [(name, methods[name]) for name in by_sees(methods)]


def _digits(name: str) -> int:
    """The decimals an attack's value shows (the registry's; 3 for a name it does not hold)."""
    attack = ATTACKS.get(name)
    return 3 if attack is None else attack.digits


def _value(row: dict | None, attack: str) -> float | None:
    value = (((row or {}).get("attacks") or {}).get(attack) or {}).get("value")
    return None if value is None or value != value else float(value)


def attack_status(summary: dict, method: str, attack: str) -> tuple[str, str]:
    """``(status, why)`` of one attack of one method against retrain, by :data:`BAND_RULE`.

    ``status`` is ``"inside"``, ``"outside"``, ``"no signal"`` (the row flags the attack
    ``no_signal``) or ``"missing"`` (a value is absent on either side).
    """
    methods = summary.get("methods") or {}
    result = ((methods.get(method) or {}).get("attacks") or {}).get(attack) or {}
    if result.get("no_signal"):
        return "no signal", "the original sits inside retrain's band on this attack: it cannot tell them apart here"
    value, ref = _value(methods.get(method), attack), _value(methods.get(REFERENCE), attack)
    if value is None or ref is None:
        return "missing", "no value for this method or for retrain"
    band = summary.get("band") or {}
    flag = (band.get("inside") or {}).get(method, {}).get(attack)
    if flag is not None:  # the run's own retrain band: retrain references of other seeds
        st = band["stats"][attack]
        return ("inside" if flag else "outside"), (
            f"retrain band of {st['n']} seeds: {st['min']:.3g}..{st['max']:.3g}"
            + (" (at most the top)" if attack in bands.at_most_metrics() else "")
        )
    entry = ATTACKS.get(attack)
    digits = _digits(attack)
    if attack in distance_attacks():
        band = ((summary.get("retrain_band") or {}).get(attack)) or {}
        if band.get("mean") is not None:
            edge = float(band["mean"]) + 2 * float(band.get("std") or 0.0)
            return ("inside" if value <= edge + 1e-9 else "outside"), (
                f"retrain band: at most {edge:.{digits}f} (mean + 2 std)"
            )
        if result.get("null") is not None:
            null = float(result["null"])
            return ("inside" if value <= null + 1e-9 else "outside"), (
                f"at most the finite-sample null {null:.{digits}f}"
            )
    tolerance, unit = (NATS_BAND, " nats") if entry is not None and entry.scale == "nats" else (FRACTION_BAND, "")
    inside = abs(value - ref) <= tolerance + 1e-9
    return ("inside" if inside else "outside"), f"within {tolerance}{unit} of retrain's {ref:.{digits}f}"


def verdict(summary: dict) -> dict:
    """The run at a glance: has the step forgotten, its A_R against retrain's, its attacks
    inside retrain's band, its gap and warnings (what the verdict box and the gallery show)."""
    methods = summary.get("methods") or {}
    step, ref = methods.get(STEP), methods.get(REFERENCE)
    band = summary.get("band")
    rule = (
        (
            f"the run's retrain band, {len(band['seeds'])} retrain references trained with seeds "
            f"{', '.join(map(str, band['seeds']))}: {band['rule']}; an attack whose original sits inside the band "
            'shows "no signal" and is not counted'
        )
        if band
        else f"no seed band in this run (band_seeds none): {BAND_RULE}"
    )
    out: dict[str, Any] = {"method": STEP, "rule": rule, "threshold": f"{FORGOTTEN_E_F:g}"}
    if step is None or ref is None:
        missing = STEP if step is None else REFERENCE
        return out | {
            "available": False,
            "css": "",
            "reason": f"The summary has no {missing!r} row, so there is no verdict.",
        }
    attacks = []
    for name in step.get("attacks") or {}:
        status, why = attack_status(summary, STEP, name)
        digits = _digits(name)
        attacks.append(
            {
                "name": name,
                "status": status,
                "status_css": status.replace(" ", ""),
                "title": why,
                "value": _fmt(_value(step, name), digits),
                "retrain": _fmt(_value(ref, name), digits),
            }
        )
    counted = [a for a in attacks if a["status"] in ("inside", "outside")]
    inside = sum(a["status"] == "inside" for a in attacks)
    e_f, a_r, a_r_ref = step.get("E_F"), step.get("A_R"), ref.get("A_R")
    forgotten = e_f is not None and e_f >= FORGOTTEN_E_F
    diff = None if a_r is None or a_r_ref is None else a_r - a_r_ref
    return out | {
        "available": True,
        "forgotten": forgotten,
        "css": "ok" if forgotten else "fail",
        "E_F": _fmt(e_f),
        "E_F_train": _fmt(step.get("E_F_train")),
        "A_R": _fmt(a_r),
        "A_R_retrain": _fmt(a_r_ref),
        "A_R_diff": _signed(diff),
        "A_R_diff_value": diff,
        "ar_css": "" if diff is None else ("good" if diff >= -1.0 else ("warn" if diff >= -5.0 else "bad")),
        "gap": _fmt(step.get("gap")),
        "attacks": attacks,
        "inside": inside,
        "counted": len(counted),
        "no_signal": sum(a["status"] == "no signal" for a in attacks),
        "attack_css": "" if not counted else ("good" if inside == len(counted) else ("warn" if inside else "bad")),
        "warnings": [str(w) for w in step.get("warnings") or []],
    }


def changed_settings(params: dict) -> tuple[dict, dict]:
    """``(results, runtime)``: the settings of a run (its ``params.yaml``) that differ from its profile.

    ``results`` can change a number, ``runtime`` cannot (:data:`~mnemonic_mu.defaults.RUNTIME`).
    Folders (``data_root``, ``cache_dir``) count as changed only when given as overrides, since
    the profile's are relative to wherever the kit was run.  An unknown profile falls back to
    the run's overrides.
    """
    resolved = params.get("resolved") or {}
    overrides = params.get("overrides") or {}
    try:
        base = Settings.from_profile(str(params.get("profile"))).to_dict()
        diff = {k: v for k, v in resolved.items() if k not in PATH_PARAMETERS and k in base and base[k] != v}
        diff |= {k: resolved.get(k, v) for k, v in overrides.items() if k in PATH_PARAMETERS}
    except MnemonicError:
        diff = {k: resolved.get(k, v) for k, v in overrides.items()}
    results = {k: v for k, v in diff.items() if k not in RUNTIME}
    runtime = {k: v for k, v in diff.items() if k in RUNTIME}
    return results, runtime


def _setting_text(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"


def _png_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's header, ``None`` when it is not a PNG."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", head[16:24])


def caption(stem: str) -> str:
    """The one-line caption of a figure: :data:`CAPTIONS`, else its stem in words."""
    if stem in CAPTIONS:
        return CAPTIONS[stem]
    words = re.sub(r"^\d+_", "", stem).replace("_", " ").strip()
    return (words[:1].upper() + words[1:] + ".") if words else stem


def figure_groups(folder: Path) -> list[dict]:
    """The run's figures grouped by the notebook that drew them, each with its caption."""
    groups: dict[str, dict] = {}
    order = {stem: i for i, stem in enumerate(CAPTIONS)}  # the order the notebooks draw them
    paths = sorted(
        (folder / "figures").glob("*.png"),
        key=lambda p: (p.stem[:3], order.get(p.stem, len(order)), p.stem),
    )
    for path in paths:
        nb = next((n for n in NOTEBOOKS if path.stem.startswith(n)), None)
        key = nb or "other"
        title = f"{nb[:2]} · {_TITLES[nb]}" if nb else "Other figures"
        size = _png_size(path)
        wide = bool(size and size[1] and (size[0] / size[1] > WIDE_FIGURE or size[0] > WIDE_PIXELS))
        groups.setdefault(key, {"title": title, "figures": []})["figures"].append(
            {
                "src": f"figures/{path.name}",
                "stem": path.stem,
                "caption": caption(path.stem),
                "wide": wide,
                "width": size[0] if size else None,
                "height": size[1] if size else None,
            }
        )
    return list(groups.values())


def run_page_context(
    run: str,
    profile: str,
    settings_used: dict,
    summary: dict,
    timings: dict,
    total: float,
    folder: Path,
    params: dict | None = None,
) -> dict:
    """Everything ``run.html.j2`` shows, as plain strings and lists."""
    params = params or {"profile": profile, "overrides": {}, "resolved": settings_used}
    results, runtime = changed_settings(params)
    rows = summary_rows(summary)
    css = {STEP: "step", REFERENCE: "reference"}
    table = []
    for name, row in rows:
        secs = row.get("forget_seconds", row.get("train_seconds", row.get("seconds")))
        table.append(
            {
                "name": name,
                "css": css.get(name, ""),
                "sees": row_sees(name),
                "cells": [_fmt(row.get(c)) for c in SUMMARY_COLUMNS],
                "seconds": _fmt(secs),
            }
        )
    attack_names: list[str] = []
    legend: dict[str, str] = {}
    for _, row in rows:
        for a, res in (row.get("attacks") or {}).items():
            if a not in attack_names:
                attack_names.append(a)
                legend[a] = str((res or {}).get("direction") or "")
    attack_rows = []
    for name, row in rows:
        cells = []
        for a in attack_names:
            res = (row.get("attacks") or {}).get(a) or {}
            status, why = attack_status(summary, name, a)
            digits = _digits(a)
            text = "no signal" if status == "no signal" else _fmt(_value(row, a), digits)
            std = res.get("std")
            cells.append(
                {
                    "text": text,
                    "std": None if std is None else _fmt(std, digits),
                    "css": status if status in ("inside", "outside") else "",
                    "title": f"{status}: {why}",
                }
            )
        attack_rows.append({"name": name, "css": css.get(name, ""), "cells": cells})
    notebooks = [
        {
            "name": nb,
            "title": _TITLES.get(nb, nb),
            "seconds": _fmt(timings.get(nb), 1),
            "html": f"{nb}.html",
            "ipynb": f"{nb}.ipynb",
        }
        for nb in NOTEBOOKS
    ]
    files = [{"href": "params.yaml", "label": "params.yaml", "note": "profile, overrides, every setting"}]
    files += [
        {"href": f"metrics/{p.name}", "label": f"metrics/{p.name}", "note": ""}
        for p in sorted((folder / "metrics").glob("*.json"))
    ]
    changed = set(results) | set(runtime)
    forget = summary.get("forget_classes") or []
    return {
        "run": run,
        "profile": profile,
        "dataset": str(summary.get("dataset")),
        "model": str(summary.get("model")),
        "forget": ", ".join(map(str, forget)),
        "forget_count": len(forget),
        "seed": summary.get("seed"),
        "total_seconds": f"{total:.0f}",
        "finished": time.strftime("%Y-%m-%d %H:%M"),
        "changed": [_setting_text(k, v) for k, v in results.items()] + [f"{k} (runtime)" for k in runtime],
        "gallery_href": "../index.html",
        "verdict": verdict(summary),
        "summary_cols": SUMMARY_COLUMNS,
        "summary_rows": table,
        "other_warnings": [(n, str(w)) for n, r in rows if n != STEP for w in r.get("warnings") or []],
        "attack_names": attack_names,
        "attack_legend": legend,
        "attack_rows": attack_rows,
        "notebooks": notebooks,
        "figure_groups": figure_groups(folder),
        "files": files,
        "settings_columns": _halves(
            [{"name": k, "value": json.dumps(v), "changed": k in changed} for k, v in settings_used.items()]
        ),
    }


def _halves(items: list) -> list[list]:
    """``items`` in two columns (the first one longer by at most one)."""
    half = (len(items) + 1) // 2
    return [items[:half], items[half:]] if items[half:] else [items]


def index_html(
    run: str,
    profile: str,
    settings_used: dict,
    summary: dict,
    timings: dict,
    total: float,
    folder: Path,
    params: dict | None = None,
) -> str:
    """The run's page (``run.html.j2``): the verdict box, the summary table, the attacks (methods
    as rows), the notebooks with their seconds, every figure with a caption, the files, the settings."""
    return render(
        "run.html.j2",
        **run_page_context(run, profile, settings_used, summary, timings, total, folder, params),
    )


def _when(path: Path) -> tuple[str, str]:
    """``(shown, sort key)`` of a file's modification time."""
    try:
        t = path.stat().st_mtime
    except OSError:
        return "-", ""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)), f"{t:.0f}"


def _changed_cells(params: dict) -> dict:
    """The gallery's "settings changed" cell: ``key=value`` of each setting that changes a number,
    the names alone of the runtime ones (their values, folders mostly, in the tooltip)."""
    results, runtime = changed_settings(params)
    shown = [_setting_text(k, v) for k, v in results.items()]
    return {
        "changed": shown,
        "runtime": ", ".join(runtime),
        "runtime_title": "; ".join(_setting_text(k, v) for k, v in runtime.items()),
        "changed_text": " ".join(shown + list(runtime)),
    }


def gallery_entry(folder: Path) -> dict:
    """One finished run's row of the gallery (from its params.yaml, summary.json and run.json)."""
    params = read_yaml(folder / "params.yaml")
    summary = read_json(folder / "metrics" / "summary.json")
    seconds = read_json(folder / "metrics" / "run.json").get("seconds")
    methods = summary.get("methods") or {}
    step, ref = methods.get(STEP) or {}, methods.get(REFERENCE) or {}
    v = verdict(summary)
    diff = v.get("A_R_diff_value")

    def cell(value, digits=2, css=""):
        return {"text": _fmt(value, digits), "sort": _sort_key(value), "css": css}

    cells = [
        cell(step.get("A_R")),
        cell(step.get("E_F"), css="" if not v["available"] else ("inside" if v["forgotten"] else "outside")),
        cell(ref.get("A_R")),
        cell(ref.get("E_F")),
        {"text": _signed(diff), "sort": _sort_key(diff), "css": ""},
        cell(step.get("gap")),
        {
            "text": f"{v['inside']}/{v['counted']}" if v["available"] else "-",
            "sort": _sort_key(v["inside"]) if v["available"] else "",
            "css": "",
        },
        cell(seconds, 0),
    ]
    shown, sort = _when(
        folder / "metrics" / "run.json" if (folder / "metrics" / "run.json").is_file() else folder / "index.html"
    )
    return {
        "name": folder.name,
        "name_parts": folder.name.split("-"),
        "href": f"{folder.name}/index.html",
        "profile": str(params.get("profile", "-")),
        "cells": cells,
        "finished": shown,
        "finished_sort": sort,
        **_changed_cells(params),
    }


def failed_entry(folder: Path) -> dict:
    """One failed run's row: its failing notebook and cell, the error, a link to the partial notebook."""
    name = folder.name[: -len(".failed")]
    failure = read_json(folder / "failure.json")
    params = read_yaml(folder / "params.yaml")
    notebook = failure.get("notebook")
    partial = failure.get("partial_notebook")
    if not failure:  # a failure from before failure.json existed: the last notebook it holds
        executed = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
        partial = executed[-1].name if executed else None
        notebook = executed[-1].stem if executed else None
    if partial and not (folder / partial).is_file():
        partial = None
    cell_index = failure.get("cell_index")
    shown, sort = _when(folder / "failure.json" if failure else folder)
    evalue = str(failure.get("evalue") or "")
    return {
        "name": name,
        "name_parts": name.split("-"),
        "profile": str(params.get("profile", failure.get("profile", "-"))),
        "notebook": notebook or "-",
        "cell": "-" if cell_index is None else str(cell_index),
        "cell_sort": _sort_key(cell_index),
        "ename": str(failure.get("ename") or "unknown error"),
        "evalue": evalue if len(evalue) <= 160 else evalue[:157] + "...",
        "evalue_full": evalue,
        "partial_href": f"{folder.name}/{partial}" if partial else None,
        "partial_label": partial,
        "finished": shown,
        "finished_sort": sort,
        **_changed_cells(params),
    }


def gallery_context(root: Path) -> dict:
    """Every finished run (a folder with index.html and params.yaml) and every failed run
    (``<run>.failed/``) under ``root``; hidden folders (staging) are skipped."""
    runs, failed = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name.endswith(".failed"):
            failed.append(failed_entry(folder))
        elif (folder / "index.html").is_file() and (folder / "params.yaml").is_file():
            runs.append(gallery_entry(folder))
    return {"runs": runs, "failed": failed, "root": str(root), "built": time.strftime("%Y-%m-%d %H:%M")}


def build_gallery(reports_dir: str | os.PathLike | None = None) -> Path:
    """Write ``reports/index.html`` from what is under ``reports/`` (under a lock, so two runs
    finishing at once leave the listing of both); returns its path."""
    root = reports_root(reports_dir)
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".gallery.lock"):
        page = render("gallery.html.j2", **gallery_context(root))
        atomic_write_text(root / "index.html", page)
    return root / "index.html"
