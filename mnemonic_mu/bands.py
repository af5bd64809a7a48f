"""Retrain's seed band: every metric of every method beside the spread of retrain itself.

Retrain (from scratch without the forget classes) is the gold standard, but it is
one draw of a random process: another seed gives other initial weights, codes
and batch order, and other numbers.  A claim "as good as retraining" is only as
sharp as that spread.  So every request also trains the retrain references of
the settings' ``band_seeds`` (each a seed other than the request's own), scores
each exactly like a method - against the request's own retrain reference - and
reads every other row against them:

* **band** of a metric: mean, std (``ddof = 0``) and min..max over the band
  references (:func:`band_stats`);
* **inside** (:func:`inside`): ``min <= value <= max``.  For the metrics that
  measure distance *to* the request's retrain (gap, the attacks of the registry
  marked ``distance_to_retrain`` such as epsilon-vs-retrain, the Jensen-Shannon and
  activation distances; 0 for retrain itself: :func:`at_most_metrics`) only the upper
  edge counts: ``value <= max``; for ToW (1 for retrain itself) only the lower:
  ``value >= min``.  With R band references, another retrain of the same recipe
  lands inside with probability ``(R - 1) / (R + 1)`` on a two-sided metric and
  ``R / (R + 1)`` on a one-sided one (exchangeable continuous values): the
  request's own retrain row, scored like every other, is that check made on the
  data (:func:`expected_inside`);
* **signal** of an attack (:func:`signal`): the original's values and the band's
  lie outside each other's min..max (:func:`~mnemonic_mu.algorithms.indistinguishability.attack_signal`).
  An attack without signal cannot tell the untouched original from a retrain on
  this setup, so its value for an unlearned model says nothing about forgetting:
  tables mark it "no signal here".

The same functions serve one request (``experiment``, the report's
``summary.json``) and a sweep (aggregated over requests, :func:`aggregate`).
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from .algorithms.attacks import ATTACKS, distance_attacks
from .algorithms.indistinguishability import attack_signal
from .algorithms.metrics import ACCURACY_METRICS

RULE = (
    "band: min..max over the retrain references of the band seeds, each scored against the request's "
    "retrain; inside: min <= value <= max (distances to retrain: value <= max; ToW: value >= min)"
)
DIVERGENCES = ("js_forget", "js_retain", "activation_forget", "activation_retain")
AT_LEAST = ("tow",)  # 1 for the request's retrain by construction: only the band's lower edge counts


def at_most_metrics() -> tuple[str, ...]:
    """The metrics that are 0 for the request's retrain by construction (distances to it): only the
    band's upper edge counts.  The gap, every attack of the registry marked ``distance_to_retrain``
    and the divergences."""
    return ("gap", *distance_attacks(), *DIVERGENCES)


def band_metrics() -> tuple[str, ...]:
    """Every metric read against the band: the accuracies, every attack of the registry, the gap,
    ToW and the divergences."""
    return (*ACCURACY_METRICS, *ATTACKS, "gap", "tow", *DIVERGENCES)


def metric_values(row: dict) -> dict[str, float]:
    """Every band metric of a results row (NaN where it was not scored)."""
    out: dict = {k: row.get(k) for k in ACCURACY_METRICS}
    out |= {name: a.get("value") for name, a in (row.get("attacks") or {}).items()}
    out["gap"] = row.get("gap")
    out["tow"] = row.get("tow")
    div = row.get("divergence") or {}
    for side in ("forget", "retain"):
        out[f"js_{side}"] = (div.get(side) or {}).get("js")
        out[f"activation_{side}"] = (div.get(side) or {}).get("activation_distance")
    return {k: math.nan if v is None else float(v) for k, v in out.items()}


def band_stats(band_rows: Iterable[dict]) -> dict[str, dict]:
    """``{metric: {"mean", "std", "min", "max", "n"}}`` over the band references' rows
    (finite values only; a metric no band row has is left out)."""
    values = [metric_values(r) for r in band_rows]
    out = {}
    for metric in band_metrics():
        xs = np.array([v[metric] for v in values if math.isfinite(v.get(metric, math.nan))], dtype=float)
        if xs.size:
            out[metric] = {
                "mean": float(xs.mean()),
                "std": float(xs.std()),
                "min": float(xs.min()),
                "max": float(xs.max()),
                "n": int(xs.size),
            }
    return out


def inside(metric: str, value: float, stat: dict, tol: float = 1e-9) -> bool:
    """Whether ``value`` of ``metric`` lies inside its band ``stat`` (the module's rule)."""
    low = -math.inf if metric in at_most_metrics() else stat["min"] - tol
    high = math.inf if metric in AT_LEAST else stat["max"] + tol
    return bool(low <= value <= high)


def inside_flags(row: dict, stats: dict[str, dict]) -> dict[str, bool]:
    """``{metric: inside}`` for every metric the row and the band both have."""
    v = metric_values(row)
    return {m: inside(m, v[m], stats[m]) for m in stats if math.isfinite(v.get(m, math.nan))}


def expected_inside(metric: str, n_band: int) -> float:
    """The chance that one more retrain of the recipe lands inside a band of ``n_band``
    references: ``(R - 1) / (R + 1)`` two-sided, ``R / (R + 1)`` one-sided."""
    one_sided = metric in at_most_metrics() or metric in AT_LEAST
    return (n_band if one_sided else n_band - 1) / (n_band + 1)


def signal(original_rows: Iterable[dict], band_rows: Iterable[dict]) -> dict[str, dict]:
    """Per attack: does it tell the original from retrain here?  ``{attack: {"separates",
    "no_signal", "gap", "original", "retrain"}}`` from
    :func:`~mnemonic_mu.algorithms.indistinguishability.attack_signal` (min..max bands)."""
    orig = [metric_values(r) for r in original_rows]
    ref = [metric_values(r) for r in band_rows]
    out = {}
    for attack in ATTACKS:
        a = [v[attack] for v in orig if math.isfinite(v.get(attack, math.nan))]
        b = [v[attack] for v in ref if math.isfinite(v.get(attack, math.nan))]
        if a and b:
            res = attack_signal(a, b)
            out[attack] = {
                "separates": res["separates"],
                "no_signal": not res["separates"],
                "gap": res["gap"],
                "original": res["original"],
                "retrain": res["retrain"],
            }
    return out


def request_band(rows: dict[str, dict], band_rows: dict[int, dict]) -> dict | None:
    """The band of one request: ``{"rule", "seeds", "stats", "inside": {method: {metric: bool}},
    "signal": {attack: ...}, "expected_inside": {metric: p}}``; ``None`` without band rows.

    ``rows``: ``{method: row}`` (with ``gap`` and ``tow``); ``band_rows``:
    ``{band seed: row}``, each a retrain reference scored against the request's retrain."""
    if not band_rows:
        return None
    stats = band_stats(band_rows.values())
    n = len(band_rows)
    return {
        "rule": RULE,
        "seeds": [int(b) for b in band_rows],
        "stats": stats,
        "inside": {name: inside_flags(row, stats) for name, row in rows.items()},
        "signal": signal([rows["original"]], band_rows.values()) if "original" in rows else {},
        "expected_inside": {m: expected_inside(m, n) for m in stats},
    }


def aggregate(requests: list[tuple[dict, dict[str, dict], dict[int, dict]]]) -> dict | None:
    """The bands of a sweep.  ``requests``: one ``(key, {method: row}, {band seed: row})`` per
    request, ``key`` holding its ``forget_class``.

    Per method and metric, how many requests lie inside their own request's band; per
    attack and forget class, whether the original's values over the seeds and the band's
    separate (:func:`signal`); ``no_signal`` when they separate on no class.
    """
    requests = [r for r in requests if r[2]]
    if not requests:
        return None
    counts: dict[str, dict[str, dict]] = {}
    by_class: dict[int, tuple[list, list]] = {}
    n_band = set()
    for key, rows, band_rows in requests:
        n_band.add(len(band_rows))
        stats = band_stats(band_rows.values())
        for name, row in rows.items():
            entry = counts.setdefault(name, {})
            for m, ok in inside_flags(row, stats).items():
                c = entry.setdefault(m, {"inside": 0, "n": 0})
                c["n"] += 1
                c["inside"] += int(ok)
        orig, ref = by_class.setdefault(int(key["forget_class"]), ([], []))
        if "original" in rows:
            orig.append(rows["original"])
        ref.extend(band_rows.values())
    per_class = {c: signal(o, r) for c, (o, r) in sorted(by_class.items())}
    attacks = sorted({a for s in per_class.values() for a in s}, key=list(ATTACKS).index)
    sig = {}
    for a in attacks:
        flags = {c: s[a]["separates"] for c, s in per_class.items() if a in s}
        sig[a] = {
            "classes_with_signal": sum(flags.values()),
            "n_classes": len(flags),
            "no_signal": not any(flags.values()),
            "per_class": flags,
        }
    r = min(n_band)  # every request of a sweep has the same band seeds
    return {
        "rule": RULE,
        "n_band": r,
        "n_requests": len(requests),
        "inside": counts,
        "signal": sig,
        "expected_inside": {m: expected_inside(m, r) for m in band_metrics()},
    }


__all__ = [
    "AT_LEAST",
    "DIVERGENCES",
    "RULE",
    "aggregate",
    "at_most_metrics",
    "band_metrics",
    "band_stats",
    "expected_inside",
    "inside",
    "inside_flags",
    "metric_values",
    "request_band",
    "signal",
]
