"""Accuracy metrics of class-wise forgetting (docs/protocol.md, "Accuracy metrics").

A_R: accuracy on samples of the remaining classes (%), higher is better.
E_F: error on samples of the forget classes (%), 100 = fully forgotten.
Both are computed on the test split and on the train split (D_r / D_f).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from ..errors import ConfigError

VERSION = 1  # bump when a change to this module changes an accuracy metric


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Logits of ``model`` (in eval mode) on ``x``, computed in batches on the model's device."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    if not out:
        return torch.empty(0)
    return torch.cat(out)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in percent (NaN on an empty set)."""
    if len(y) == 0:
        return float("nan")
    pred = predict_logits(model, x).argmax(1)
    return 100.0 * float((pred == y.cpu()).float().mean())


def check_forget_classes(forget_classes: Iterable[int], num_classes: int) -> tuple[int, ...]:
    """Validate a forget request: non-empty, no duplicates, in range, not every class."""
    try:
        classes = [int(c) for c in forget_classes]
    except (TypeError, ValueError):
        raise ConfigError(f"forget classes must be integers, got {forget_classes!r}") from None
    if not classes:
        raise ConfigError("the forget set is empty; name at least one class, e.g. --forget 0")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"the forget set {classes} names a class twice; list each class once")
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ConfigError(f"forget class {bad[0]} is outside this dataset's classes 0..{num_classes - 1}")
    if len(classes) >= num_classes:
        raise ConfigError(f"cannot forget every class ({num_classes}); at least one class must remain")
    return tuple(sorted(classes))


def forgetting_scores(logits: torch.Tensor, y: torch.Tensor, forget_classes: Iterable[int]) -> tuple[float, float]:
    """(A_R, E_F) in percent from logits and labels."""
    forget = torch.isin(y, torch.tensor(list(forget_classes), dtype=y.dtype))
    correct = (logits.argmax(1) == y).float()
    a_r = 100.0 * float(correct[~forget].mean()) if bool((~forget).any()) else float("nan")
    e_f = 100.0 * (1.0 - float(correct[forget].mean())) if bool(forget.any()) else float("nan")
    return a_r, e_f


def per_class_accuracy(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float]:
    """Accuracy (%) of each class; NaN for a class with no sample."""
    pred = logits.argmax(1)
    out = []
    for c in range(num_classes):
        m = y == c
        out.append(100.0 * float((pred[m] == c).float().mean()) if bool(m.any()) else float("nan"))
    return out


def confusion_matrix(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``cm[true, predicted]``."""
    idx = y.long() * num_classes + logits.argmax(1).long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def evaluate(
    model: nn.Module,
    dataset,
    forget_classes: Iterable[int],
    splits: tuple[str, ...] = ("test", "train"),
) -> dict:
    """A_R and E_F on the test split (``A_R``, ``E_F``) and train split (``A_R_train``,
    ``E_F_train``), plus overall test accuracy, per-class accuracy and the test
    confusion matrix.  Percentages 0-100.
    """
    forget_classes = tuple(forget_classes)
    out: dict = {}
    for split in splits:
        x, y = dataset.split(split)
        logits = predict_logits(model, x)
        a_r, e_f = forgetting_scores(logits, y, forget_classes)
        suffix = "" if split == "test" else f"_{split}"
        out[f"A_R{suffix}"] = a_r
        out[f"E_F{suffix}"] = e_f
        if split == "test":
            out["test_accuracy"] = 100.0 * float((logits.argmax(1) == y).float().mean())
            out["per_class_accuracy"] = per_class_accuracy(logits, y, dataset.num_classes)
            out["confusion_matrix"] = confusion_matrix(logits, y, dataset.num_classes).tolist()
    return out


ACCURACY_METRICS = ("A_R", "E_F", "A_R_train", "E_F_train")
MIA_ATTACK = "confidence-SVC"  # docs/protocol.md's "MIA-efficacy", the MIA score of the gap


def gap_to_retrain(row: dict, ref: dict) -> float | None:
    """Gap to retrain (docs/protocol.md): mean |row - ref| over A_R, E_F, A_R_train,
    E_F_train and the MIA score (confidence-SVC "MIA-efficacy" x 100), all in %.

    ``row`` and ``ref`` are result rows (``ref`` = the retrain reference); a
    metric missing or NaN on either side is left out (the MIA term when the
    attacks did not run).  ``None`` when nothing is comparable.
    """

    def mia(r: dict):
        value = ((r.get("attacks") or {}).get(MIA_ATTACK) or {}).get("value")
        return None if value is None else 100.0 * value

    pairs = [(row.get(k), ref.get(k)) for k in ACCURACY_METRICS] + [(mia(row), mia(ref))]
    diffs = [abs(a - b) for a, b in pairs if a is not None and b is not None and not (math.isnan(a) or math.isnan(b))]
    return sum(diffs) / len(diffs) if diffs else None


# Metric keys renamed since a result file may have been written: {old: new}.
RENAMED_KEYS = {"gap_to_retrain": "gap"}  # one name per metric: a request's rows said gap_to_retrain, a sweep's gap


def renamed_keys(obj):
    """``obj`` (a result read from JSON: dicts, lists, values) with every key of
    :data:`RENAMED_KEYS` under its current name, so files written before a rename read as new ones."""
    if isinstance(obj, dict):
        return {RENAMED_KEYS.get(k, k): renamed_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [renamed_keys(v) for v in obj]
    return obj


__all__ = [
    "ACCURACY_METRICS",
    "MIA_ATTACK",
    "RENAMED_KEYS",
    "renamed_keys",
    "gap_to_retrain",
    "accuracy",
    "check_forget_classes",
    "confusion_matrix",
    "evaluate",
    "forgetting_scores",
    "per_class_accuracy",
    "predict_logits",
]


# --------------------------------------------------------------------------
# Tug-of-War (Zhao et al., "What makes unlearning hard and what to do about it", NeurIPS 2024)

TOW_SETS = ("forget", "retain", "test")  # the three sets of ToW, in the paper's order


def tug_of_war(unlearned: dict, retrain: dict) -> float:
    """Tug-of-War of Zhao et al. (NeurIPS 2024):

    ``ToW = prod_{S in (forget, retain, test)} (1 - |acc_u(S) - acc_r(S)| / 100)``,

    ``acc_u`` / ``acc_r`` the accuracies (percent, 0-100) of the unlearned
    model and of retrain on the forget set, the retain set and the test set.
    ``unlearned`` and ``retrain`` map each name of :data:`TOW_SETS` to an
    accuracy.  1 = the same accuracies as retrain on all three sets; 0 = 100
    points apart on one of them.  Higher is better.
    """
    factors = []
    for name in TOW_SETS:
        pair = []
        for side, accs in (("unlearned", unlearned), ("retrain", retrain)):
            if name not in accs:
                raise ConfigError(f"tug_of_war needs the {name!r} accuracy of {side}; give {', '.join(TOW_SETS)}")
            value = float(accs[name])
            if not 0.0 <= value <= 100.0:  # also rejects NaN
                raise ConfigError(f"{side}'s {name} accuracy must be a percentage in [0, 100], got {value}")
            pair.append(value)
        factors.append(1.0 - abs(pair[0] - pair[1]) / 100.0)
    return math.prod(factors)


def tow_accuracies(row: dict) -> dict | None:
    """The three accuracies of ToW from a results row of :func:`evaluate` (percent):
    forget = ``100 - E_F_train`` (D_f), retain = ``A_R_train`` (D_r), test =
    ``test_accuracy`` (the whole test split).  ``None`` when one is missing or NaN."""
    values = {
        "forget": None if row.get("E_F_train") is None else 100.0 - row["E_F_train"],
        "retain": row.get("A_R_train"),
        "test": row.get("test_accuracy"),
    }
    if any(v is None or math.isnan(v) for v in values.values()):
        return None
    return values


def tug_of_war_from_rows(row: dict, ref: dict) -> float | None:
    """:func:`tug_of_war` of a results row against the retrain row ``ref``
    (accuracies as in :func:`tow_accuracies`); ``None`` when not comparable."""
    a, b = tow_accuracies(row), tow_accuracies(ref)
    return None if a is None or b is None else tug_of_war(a, b)


def mean_t_interval(values: Iterable[float], level: float = 0.95) -> dict:
    """Mean and two-sided Student-t confidence interval of ``values`` (e.g. ToW over seeds).

    ``mean +- t_{(1 + level) / 2, n - 1} * s / sqrt(n)`` with ``s`` the sample
    standard deviation (``ddof = 1``), quantile from ``scipy.stats.t``.  Assumes
    the values are independent (one per seed) and roughly normal; with
    ``n < 2`` the half-width and bounds are NaN.  Returns ``{"mean", "std",
    "n", "level", "half_width", "low", "high", "method"}``.
    """
    from scipy import stats

    xs = [float(v) for v in values]
    if not xs:
        raise ConfigError("mean_t_interval needs at least one value")
    if any(math.isnan(v) for v in xs):
        raise ConfigError("mean_t_interval got NaN; drop runs that were not scored first")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level must lie in (0, 1), got {level}")
    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        std = half = math.nan
    else:
        std = math.sqrt(sum((v - mean) ** 2 for v in xs) / (n - 1))
        half = float(stats.t.ppf((1.0 + level) / 2.0, n - 1)) * std / math.sqrt(n)
    return {
        "mean": mean,
        "std": std,
        "n": n,
        "level": level,
        "half_width": half,
        "low": mean - half,
        "high": mean + half,
        "method": "student-t, ddof=1",
    }


__all__ += ["TOW_SETS", "mean_t_interval", "tow_accuracies", "tug_of_war", "tug_of_war_from_rows"]
