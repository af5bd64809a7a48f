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
        raise ConfigError(
            f"forget class {bad[0]} is outside this dataset's classes 0..{num_classes - 1}"
        )
    if len(classes) >= num_classes:
        raise ConfigError(
            f"cannot forget every class ({num_classes}); at least one class must remain"
        )
    return tuple(sorted(classes))


def forgetting_scores(
    logits: torch.Tensor, y: torch.Tensor, forget_classes: Iterable[int]
) -> tuple[float, float]:
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


__all__ = [
    "ACCURACY_METRICS",
    "MIA_ATTACK",
    "gap_to_retrain",
    "accuracy",
    "check_forget_classes",
    "confusion_matrix",
    "evaluate",
    "forgetting_scores",
    "per_class_accuracy",
    "predict_logits",
]
