"""Membership-style attacks on a forget request (docs/protocol.md, "The attacks").

Each recipe is a pure function of arrays with input checks, named exactly as in
docs/protocol.md.  Notation: member = 1.  Every random split is seeded.

The registry :data:`ATTACKS` holds each attack whole: an :class:`Attack` entry names its
function (one signature for all: it takes an :class:`AttackInput`, the model's precomputed
per-sample statistics on a request), how to read its value (direction, scale, decimals),
its recipe and what else it reports.  :func:`run_attacks` runs the entries; the sweep and
results tables, retrain's band, the report pages, the settings' default and CLI help,
docs/protocol.md's table and notebook 05's (:func:`markdown_table`) read it.  A new
attack is one entry.

All shares and accuracies are fractions in [0, 1] (multiply by 100 for
percent).  Sanity behaviour (tests/test_attacks.py): separable inputs give
about 1.0, inputs drawn from one distribution give about 0.5 (for the probe:
chance, 0.5 with two classes; for epsilon-vs-retrain the analogue is about 0
for identical distributions and the largest value the sample size allows,
about log n, for separable ones).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .metrics import check_forget_classes, predict_logits

DELTA = 1e-5  # delta of epsilon-vs-retrain (docs/protocol.md)

VERSION = 2  # bump when a change to this module changes an attack's value
# 2: confidence-SVC fit on at most SVC_MAX_PER_SIDE samples per side, C rescaled
#    (VERSION 1: all of D_t and |D_t| samples of D_r, C = 3)

# confidence-SVC: most samples per side (D_r, D_t) of the RBF fit, drawn with the request's
# seed; chosen on its measured cost and effect on the value (docs/evaluation.md, "Subsamples in the attacks").
SVC_MAX_PER_SIDE = 2_000


# --------------------------------------------------------------------------
# Input checks


def _as_1d(name: str, values, min_len: int = 1) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be a 1-D array of per-sample values, got shape {arr.shape}")
    if len(arr) < min_len:
        raise ConfigError(f"{name} needs at least {min_len} samples, got {len(arr)}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} contains NaN or inf; clip losses / confidences before attacking")
    return arr


def _as_2d(name: str, values, min_len: int = 1) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be a (samples, features) array, got shape {arr.shape}")
    if len(arr) < min_len:
        raise ConfigError(f"{name} needs at least {min_len} samples, got {len(arr)}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} contains NaN or inf")
    return arr


def _as_labels(name: str, values, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != n:
        raise ConfigError(f"{name} must be a 1-D array of {n} labels, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _subsample(arr: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(arr) <= n:
        return arr
    return arr[np.sort(rng.choice(len(arr), size=n, replace=False))]


# --------------------------------------------------------------------------
# The recipes


def entropy_lr(entropy_retain: np.ndarray, entropy_test: np.ndarray, entropy_forget: np.ndarray) -> float:
    """entropy-LR (as in Selective Synaptic Dampening, Foster et al. AAAI 2024).

    Fit ``LogisticRegression(class_weight="balanced")`` on the softmax entropy
    of D_r (member, 1) vs D_t (non-member, 0); return the share of D_f
    predicted member.  Lower = more forgotten; retrain is near 0 for a
    forgotten class.  Deterministic (no random split).
    """
    from sklearn.linear_model import LogisticRegression

    r = _as_1d("entropy_retain", entropy_retain, 2)
    t = _as_1d("entropy_test", entropy_test, 2)
    f = _as_1d("entropy_forget", entropy_forget, 1)
    x = np.concatenate([r, t])[:, None]
    members = np.concatenate([np.ones(len(r)), np.zeros(len(t))])
    clf = LogisticRegression(class_weight="balanced").fit(x, members)
    return float(clf.predict(f[:, None]).mean())


def loss_lr_cv(
    losses_forget_train: np.ndarray,
    losses_forget_test: np.ndarray,
    seed: int = 0,
    n_splits: int = 5,
    test_size: float = 0.2,
) -> tuple[float, float]:
    """loss-LR-CV (as in SCRUB, Kurmanji et al. NeurIPS 2023, and the NeurIPS 2023 starting kit).

    Per-sample cross-entropy of D_f (member, 1) vs the forget-class samples of
    D_t (0); the larger side is subsampled (seeded) to the size of the smaller;
    ``n_splits``-fold ``StratifiedShuffleSplit`` (``test_size`` held out,
    seeded) accuracy of a ``LogisticRegression``.  Returns ``(mean, std)``.
    0.5 = cannot tell; the target is retrain's value, and below 0.5 is not
    "better".
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    a = _as_1d("losses_forget_train", losses_forget_train, 5)
    b = _as_1d("losses_forget_test", losses_forget_test, 5)
    rng = np.random.default_rng(int(seed))
    n = min(len(a), len(b))
    a, b = _subsample(a, n, rng), _subsample(b, n, rng)
    x = np.concatenate([a, b])[:, None]
    members = np.concatenate([np.ones(n), np.zeros(n)])
    cv = StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=int(seed))
    scores = cross_val_score(LogisticRegression(), x, members, cv=cv, scoring="accuracy")
    return float(scores.mean()), float(scores.std())


def confidence_svc(
    confidence_retain: np.ndarray,
    confidence_test: np.ndarray,
    confidence_forget: np.ndarray,
    seed: int = 0,
    max_per_side: int | None = None,
    rescale: bool = True,
) -> float:
    """confidence-SVC "MIA-efficacy" (as in SalUn, Fan et al. ICLR 2024, and
    sparsity-aware unlearning, Jia et al. NeurIPS 2023).

    Feature: probability of the true class.  ``SVC(C=3, gamma="auto",
    kernel="rbf")`` fit on |D_t| samples of D_r (member, 1, seeded draw) vs D_t
    (0); return the share of D_f predicted non-member.  Higher = more
    forgotten; retrain is near 1 (100 %) for a forgotten class.

    The fit's cost grows about quadratically with its size, so it sees at most
    ``max_per_side`` samples per side (default :data:`SVC_MAX_PER_SIDE`; ``0``:
    no cap): ``n = min(|D_t|, max_per_side)`` of D_r, then ``n`` of D_t, drawn
    without replacement by one generator seeded with ``seed`` (a side already at
    ``n`` is kept whole, so below the cap this is the recipe above, exactly).
    With ``rescale`` (the default), a capped fit uses ``C = 3 |D_t| / n``: its
    hinge sum, scaled up by ``|D_t| / n``, estimates the uncapped fit's, so it
    solves the same objective; without it the subsample's weaker data term
    biases the value (docs/evaluation.md, "Subsamples in the attacks", gives both, measured).
    """
    from sklearn.svm import SVC

    r = _as_1d("confidence_retain", confidence_retain, 2)
    t = _as_1d("confidence_test", confidence_test, 2)
    f = _as_1d("confidence_forget", confidence_forget, 1)
    cap = SVC_MAX_PER_SIDE if max_per_side is None else int(max_per_side)
    if cap < 0 or cap == 1:
        raise ConfigError(f"max_per_side must be 0 (no cap) or at least 2, got {max_per_side}")
    n = len(t) if cap == 0 else min(len(t), cap)
    c = 3.0 * len(t) / n if rescale else 3.0
    rng = np.random.default_rng(int(seed))
    r = _subsample(r, n, rng)
    t = _subsample(t, n, rng)
    x = np.concatenate([r, t])[:, None]
    members = np.concatenate([np.ones(len(r)), np.zeros(len(t))])
    clf = SVC(C=c, gamma="auto", kernel="rbf").fit(x, members)
    return float(1.0 - clf.predict(f[:, None]).mean())


def logit_confidence(probs_true: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Logit-scaled confidence ``log p_y - log(1 - p_y)`` (clipped away from 0 and 1)."""
    p = np.clip(np.asarray(probs_true, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def epsilon_vs_retrain(scores_unlearned: np.ndarray, scores_retrain: np.ndarray, delta: float = DELTA) -> float:
    """epsilon-vs-retrain (single-model analogue of the NeurIPS 2023 unlearning score).

    Inputs: per forget-test sample, the logit-scaled confidence
    (:func:`logit_confidence`) under the unlearned model and under retrain.
    Every threshold between pooled scores is tried as a test "unlearned"
    vs "retrain", in both directions; at each,
    ``epsilon = max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR)``
    (a term whose ``1 - delta - rate`` is not positive is skipped).  Returns the
    best (largest) epsilon, floored at 0; 0 = indistinguishable.  Error rates
    are floored at ``1 / n`` of their side (a zero count counts as one error),
    so the value is finite: at most about ``log n``.
    """
    u = _as_1d("scores_unlearned", scores_unlearned, 2)
    r = _as_1d("scores_retrain", scores_retrain, 2)
    if not 0 <= delta < 1:
        raise ConfigError(f"delta must lie in [0, 1), got {delta}")
    thresholds = np.unique(np.concatenate([u, r, [-np.inf]]))
    # test "score > t => unlearned": false positives are retrain scores above t,
    # false negatives unlearned scores at or below t
    fpr = 1.0 - np.searchsorted(np.sort(r), thresholds, side="right") / len(r)
    fnr = np.searchsorted(np.sort(u), thresholds, side="right") / len(u)
    best = 0.0
    for a, b in ((fpr, fnr), (1.0 - fpr, 1.0 - fnr)):  # both directions of the test
        a = np.maximum(a, 1.0 / len(r))
        b = np.maximum(b, 1.0 / len(u))
        with np.errstate(divide="ignore", invalid="ignore"):
            e1 = np.where(1 - delta - a > 0, np.log(np.clip(1 - delta - a, 1e-300, None)) - np.log(b), -np.inf)
            e2 = np.where(1 - delta - b > 0, np.log(np.clip(1 - delta - b, 1e-300, None)) - np.log(a), -np.inf)
        best = max(best, float(np.max(e1)), float(np.max(e2)))
    return best


def epsilon_null(n_unlearned: int, n_retrain: int, draws: int = 20, seed: int = 0) -> float:
    """Mean :func:`epsilon_vs_retrain` of two samples drawn from *one* distribution.

    The score depends on ranks only, so this finite-sample floor is the same for
    every continuous distribution: a method whose epsilon is near it cannot be
    told from retrain at this sample size (about 1.4 for 100 vs 100 samples).
    """
    if n_unlearned < 2 or n_retrain < 2 or draws < 1:
        raise ConfigError("epsilon_null needs at least 2 samples per side and 1 draw")
    rng = np.random.default_rng(int(seed))
    return float(
        np.mean(
            [epsilon_vs_retrain(rng.normal(size=n_unlearned), rng.normal(size=n_retrain)) for _ in range(int(draws))]
        )
    )


def _probe_draw(n: int, max_train: int, seed: int) -> np.ndarray:
    """Sorted indices of the linear probe's train samples: all ``n``, or a seeded draw of ``max_train``."""
    if n <= max_train:
        return np.arange(n)
    return np.sort(np.random.default_rng(int(seed)).choice(n, size=max_train, replace=False))


def linear_probe(
    features_train: np.ndarray,
    labels_train: np.ndarray,
    features_forget_test: np.ndarray,
    labels_forget_test: np.ndarray,
    seed: int = 0,
    max_train: int = 2_000,
    C: float = 0.1,
    max_iter: int = 200,
) -> float:
    """linear probe (class-wise leakage of the penultimate features).

    Fit a standardised multinomial ``LogisticRegression`` (L2 strength ``C``,
    at most ``max_iter`` L-BFGS iterations) on penultimate features of train
    data of all classes (a seeded draw of at most ``max_train`` samples);
    return its accuracy on forget-test.  If it stays
    high while E_F is 100, the class was hidden at the head, not removed from
    the features.  Compare with the same probe on retrain.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr = _as_2d("features_train", features_train, 2)
    ytr = _as_labels("labels_train", labels_train, len(xtr))
    xf = _as_2d("features_forget_test", features_forget_test, 1)
    yf = _as_labels("labels_forget_test", labels_forget_test, len(xf))
    if xf.shape[1] != xtr.shape[1]:
        raise ConfigError(f"probe features have {xtr.shape[1]} dims on train but {xf.shape[1]} on forget-test")
    if len(np.unique(ytr)) < 2:
        raise ConfigError("the linear probe needs train samples of at least two classes")
    if len(xtr) > max_train:
        keep = _probe_draw(len(xtr), max_train, seed)
        xtr, ytr = xtr[keep], ytr[keep]
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a probe need not converge to the last digit
        probe.fit(xtr, ytr)
    return float((probe.predict(xf) == yf).mean())


# --------------------------------------------------------------------------
# What an attack sees, the registry, and the model-level convenience


@torch.no_grad()
def sample_statistics(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-sample ``entropy``, ``loss`` (cross-entropy), ``confidence`` (p_true)
    and ``logit_confidence`` of ``model`` on ``(x, y)``."""
    logits = predict_logits(model, x).double()
    y = y.cpu().long()
    logp = F.log_softmax(logits, 1)
    p = logp.exp()
    logp_true = logp.gather(1, y[:, None]).squeeze(1)
    # log(1 - p_y) computed stably as logsumexp over the other classes
    log_rest = logp.scatter(1, y[:, None], float("-inf")).logsumexp(1)
    return {
        "entropy": (-(p * logp.clamp_min(-1e30)).sum(1)).numpy(),
        "loss": (-logp_true).clamp_max(1e4).numpy(),
        "confidence": logp_true.exp().numpy(),
        "logit_confidence": (logp_true - log_rest).clamp(-1e4, 1e4).numpy(),
    }


@torch.no_grad()
def penultimate_features(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> np.ndarray:
    """``model.features(x)`` in eval mode, as a float64 numpy array."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    features = cast(Callable[[torch.Tensor], torch.Tensor], model.features)  # every model of models.py has one
    out = [features(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was)
    return torch.cat(out).double().numpy()


@dataclass(frozen=True)
class AttackInput:
    """What every attack sees of one model on one forget request, computed once by :func:`run_attacks`.

    ``train`` / ``test``: the model's :func:`sample_statistics` on the whole train / test
    split; ``forget_train`` / ``forget_test``: boolean masks of the forget classes' samples
    there (D_f; forget-test), so D_r is ``train[...][~forget_train]`` and D_t all of ``test``;
    ``retrain_forget_test``: the retrain model's statistics on forget-test (given to an attack
    that ``needs_retrain``, which is not run without a retrain model).  The model and the
    splits themselves serve an attack that needs more than the statistics (the linear probe's
    features).  ``seed`` seeds every random draw; ``probe_max_train`` is the setting of that name.
    """

    model: nn.Module
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    forget_train: np.ndarray
    forget_test: np.ndarray
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    retrain_forget_test: dict[str, np.ndarray] | None
    seed: int
    probe_max_train: int


# The registry's functions: each takes an AttackInput and returns {"value", optional "std", its extras}.


def _run_entropy_lr(a: AttackInput) -> dict[str, float]:
    f = a.forget_train
    return {"value": entropy_lr(a.train["entropy"][~f], a.test["entropy"], a.train["entropy"][f])}


def _run_loss_lr_cv(a: AttackInput) -> dict[str, float]:
    mean, std = loss_lr_cv(a.train["loss"][a.forget_train], a.test["loss"][a.forget_test], seed=a.seed)
    return {"value": mean, "std": std}


def _run_confidence_svc(a: AttackInput) -> dict[str, float]:
    f = a.forget_train
    return {
        "value": confidence_svc(a.train["confidence"][~f], a.test["confidence"], a.train["confidence"][f], seed=a.seed)
    }


def _run_epsilon_vs_retrain(a: AttackInput) -> dict[str, float]:
    if a.retrain_forget_test is None:
        raise ConfigError("epsilon-vs-retrain needs the retrain model's statistics on forget-test")
    n = int(a.forget_test.sum())
    value = epsilon_vs_retrain(a.test["logit_confidence"][a.forget_test], a.retrain_forget_test["logit_confidence"])
    return {"value": value, "null": epsilon_null(n, n, seed=a.seed)}


def _run_linear_probe(a: AttackInput) -> dict[str, float]:
    # the probe's own seeded draw, made here so that only the drawn samples are embedded
    keep = torch.from_numpy(_probe_draw(len(a.x_train), a.probe_max_train, a.seed))
    f_te = torch.from_numpy(a.forget_test)
    return {
        "value": linear_probe(
            penultimate_features(a.model, a.x_train[keep]),
            a.y_train[keep].numpy(),
            penultimate_features(a.model, a.x_test[f_te]),
            a.y_test[f_te].numpy(),
            seed=a.seed,
            max_train=a.probe_max_train,
        )
    }


SCALES = ("fraction", "nats")  # how an attack's value reads: a share or accuracy in [0, 1], or a log-ratio


@dataclass(frozen=True)
class Attack:
    """One attack, whole: an entry of :data:`ATTACKS`.

    ``function`` takes an :class:`AttackInput` and returns ``{"value": ...}``, plus ``"std"``
    when the value is a mean over folds and one value per key of ``extras``.  ``direction``
    says how to read the value (every result carries it); ``reports`` what the value is,
    ``recipe`` how it is made and ``source`` where the recipe comes from (markdown:
    :func:`markdown_table`).  ``scale`` is one of :data:`SCALES` and ``digits`` the decimals
    tables show.  ``needs_retrain``: the attack compares the model with the retrain model
    (its value is NaN without one).  ``distance_to_retrain``: the value is a distance to the
    request's retrain, 0 for retrain itself, so only the top of retrain's band counts and the
    worst class is the highest.  ``extras``: ``{key: what it is}`` of the further values each
    result carries; an extra ``null`` (the value for two samples of one distribution at this
    sample size) is the finite-sample floor the report pages read a distance against.
    """

    name: str
    direction: str
    recipe: str
    function: Callable[[AttackInput], dict[str, float]]
    reports: str
    source: str = ""
    scale: str = "fraction"
    digits: int = 3
    needs_retrain: bool = False
    distance_to_retrain: bool = False
    extras: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"attack {self.name!r}: scale must be one of {', '.join(SCALES)}, got {self.scale!r}")


ATTACKS: dict[str, Attack] = {
    a.name: a
    for a in (
        Attack(
            "entropy-LR",
            "lower = more forgotten; target = retrain's value (near 0 for a forgotten class)",
            '`LogisticRegression(class_weight="balanced")` on the softmax entropy, $D_r$ (1) vs $D_t$ (0)',
            _run_entropy_lr,
            "share of $D_f$ predicted member",
            source="as in SSD, Foster et al. AAAI 2024",
        ),
        Attack(
            "loss-LR-CV",
            "target = retrain's value; 0.5 = cannot tell, below 0.5 is not better",
            "per-sample cross-entropy; $D_f$ (1) vs forget-class samples of $D_t$ (0), the larger side subsampled "
            "to the smaller; 5-fold stratified shuffle-split accuracy of a logistic regression",
            _run_loss_lr_cv,
            "mean (and std) accuracy over the folds",
            source="as in SCRUB, Kurmanji et al. NeurIPS 2023, and the NeurIPS 2023 kit",
        ),
        Attack(
            "confidence-SVC",
            "higher = more forgotten; target = retrain's value (near 1 for a forgotten class)",
            'probability of the true class; `SVC(gamma="auto")` (RBF) on '
            rf"$n = \min(\lvert D_t \rvert, "
            rf"{SVC_MAX_PER_SIDE})$ seeded samples of $D_r$ (1) vs $n$ of $D_t$ (0), "
            r"$C = 3 \lvert D_t \rvert / n$ (the capped fit solves the uncapped objective; "
            "[evaluation.md](evaluation.md#subsamples-in-the-attacks))",
            _run_confidence_svc,
            "share of $D_f$ predicted non-member",
            source='"MIA-efficacy" of SalUn, Fan et al. ICLR 2024',
        ),
        Attack(
            "epsilon-vs-retrain",
            "lower = closer to retrain; 0 = indistinguishable",
            r"per forget-test sample the logit-scaled confidence $\log p_y - \log(1 - p_y)$ under the model and "
            r"under retrain; over thresholds, $\varepsilon = \max(\log(1 - \delta - \text{FPR}) - \log \text{FNR}, "
            r"\log(1 - \delta - \text{FNR}) - \log \text{FPR})$ with $\delta = 10^{-5}$",
            _run_epsilon_vs_retrain,
            r"the best $\varepsilon$, in nats",
            source="a single-model analogue of the NeurIPS 2023 score",
            scale="nats",
            digits=2,
            needs_retrain=True,
            distance_to_retrain=True,
            extras={
                "null": "its value for two samples of one distribution of the same sizes (the finite-sample floor)"
            },
        ),
        Attack(
            "linear probe",
            "target = retrain's value; high while E_F = 100 means hidden at the head, not removed",
            "a standardised logistic-regression probe ($C = 0.1$) on penultimate-layer features of the model, fit "
            "on at most `probe_max_train` training samples of all classes",
            _run_linear_probe,
            "its accuracy on forget-test",
        ),
    )
}


def distance_attacks() -> tuple[str, ...]:
    """The attacks of the registry marked ``distance_to_retrain`` (0 for retrain itself, higher is
    worse), in registry order: the bands, the sweep's worst class and the report pages read them."""
    return tuple(a.name for a in ATTACKS.values() if a.distance_to_retrain)


TABLE_START, TABLE_END = "<!-- attacks:start -->", "<!-- attacks:end -->"  # docs/protocol.md's generated table


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a pipe would end the cell


_TABLE_COLUMNS: dict[str, Callable[[Attack], str]] = {
    "attack": lambda a: f"`{a.name}`" + (f" ({a.source})" if a.source else ""),
    "recipe": lambda a: a.recipe,
    "reports": lambda a: a.reports,
    "direction": lambda a: a.direction + "".join(f"; also reports `{k}`: {v}" for k, v in a.extras.items()),
}


def markdown_table(columns: Iterable[str] = tuple(_TABLE_COLUMNS)) -> str:
    """The registry as a markdown table, one row per attack: ``columns`` of ``attack`` (its name
    and source), ``recipe``, ``reports`` and ``direction`` (with its extras).  docs/protocol.md
    holds all four between :data:`TABLE_START` and :data:`TABLE_END`; notebook 05 prints three."""
    columns = list(columns)
    unknown = [c for c in columns if c not in _TABLE_COLUMNS]
    if unknown:
        raise ConfigError(f"unknown column {unknown[0]!r}; choose from {', '.join(_TABLE_COLUMNS)}")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(_TABLE_COLUMNS[c](a)) for c in columns) + " |" for a in ATTACKS.values()]
    return "\n".join(lines) + "\n"


def run_attacks(
    model: nn.Module,
    retrain_model: nn.Module | None,
    dataset,
    forget_classes: Iterable[int],
    seed: int = 0,
    attacks: Iterable[str] | None = None,
    probe_max_train: int = 2_000,
) -> dict[str, dict]:
    """Run the attacks of :data:`ATTACKS` (``attacks``: only those named) on ``model`` for a
    forget request; returns ``{name: {"value", "std" (None unless cross-validated),
    "direction", and the attack's extras}}`` (epsilon-vs-retrain's ``"null"``: its value for
    two samples of one distribution of the same sizes, :func:`epsilon_null`).

    D_r / D_f are the train samples of the remaining / forget classes, D_t the whole test
    split.  ``retrain_model`` is needed only by the attacks that ``needs_retrain`` (their
    value is NaN without it, with no extras).
    """
    names = list(ATTACKS) if attacks is None else list(attacks)
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise ConfigError(f"unknown attack {unknown[0]!r}; choose from {', '.join(ATTACKS)}")
    forget_classes = check_forget_classes(forget_classes, dataset.num_classes)
    fc = torch.tensor(forget_classes)
    x_tr, y_tr = dataset.split("train")
    x_te, y_te = dataset.split("test")
    f_tr, f_te = torch.isin(y_tr, fc), torch.isin(y_te, fc)
    if not bool(f_tr.any()) or not bool(f_te.any()):
        raise ConfigError(f"forget classes {list(forget_classes)} have no train or no test samples")
    retrain_forget_test = None
    if retrain_model is not None and any(ATTACKS[n].needs_retrain for n in names):
        retrain_forget_test = sample_statistics(retrain_model, x_te[f_te], y_te[f_te])
    seen = AttackInput(
        model=model,
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
        forget_train=f_tr.numpy(),
        forget_test=f_te.numpy(),
        train=sample_statistics(model, x_tr, y_tr),
        test=sample_statistics(model, x_te, y_te),
        retrain_forget_test=retrain_forget_test,
        seed=seed,
        probe_max_train=probe_max_train,
    )
    out: dict[str, dict] = {}
    for name in names:
        attack = ATTACKS[name]
        if attack.needs_retrain and seen.retrain_forget_test is None:
            out[name] = {"value": math.nan, "std": None, "direction": attack.direction}
            continue
        got = attack.function(seen)
        std = got.get("std")
        out[name] = {
            "value": float(got["value"]),
            "std": None if std is None else float(std),
            "direction": attack.direction,
        }
        out[name] |= {k: float(got[k]) for k in attack.extras}
    return out


__all__ = [
    "ATTACKS",
    "Attack",
    "AttackInput",
    "DELTA",
    "SCALES",
    "SVC_MAX_PER_SIDE",
    "TABLE_END",
    "TABLE_START",
    "confidence_svc",
    "distance_attacks",
    "entropy_lr",
    "epsilon_null",
    "epsilon_vs_retrain",
    "linear_probe",
    "logit_confidence",
    "loss_lr_cv",
    "markdown_table",
    "penultimate_features",
    "run_attacks",
    "sample_statistics",
]
