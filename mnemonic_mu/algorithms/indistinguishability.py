"""How far an unlearned model is from retrain (docs/indistinguishability.md).

A method is good when it cannot be told from the model retrained without the
forget data (docs/protocol.md).  This module measures that by output
divergences and by per-example attacks on populations of models, and checks
whether an attack has signal at all.  Each is a pure function of arrays with
input checks; thin helpers take models:

==================== ====================================================== =========================
function             what it measures                                       direction
==================== ====================================================== =========================
js_divergence        mean Jensen-Shannon divergence of two models' softmax  0 = same outputs; compare
                     outputs, base 2 by default (bits, in [0, 1])           with retrain_band
activation_distance  mean L2 distance of the two probability vectors        idem; at most sqrt(2)
                     (Chundawat et al., AAAI 2023)
per_example_epsilon  per forget example, the epsilon of the best threshold  0 = indistinguishable;
                     test "unlearned vs retrain" on its confidences over    at most epsilon_cap
                     N unlearned and N retrain models (NeurIPS 2023 scorer)
forget_score         the competition's bucketed mean of those epsilons      1 = best; compare with
                                                                            forget_score_floor
ulira_accuracy       held-out accuracy of a per-example Gaussian            0.5 = cannot tell
                     likelihood-ratio test (U-LiRA, Hayes et al. 2024)
klom                 a high percentile over the forget examples of the KL   0 = same margins; compare
                     divergence of their margins, unlearned vs retrain      with retrain vs retrain
                     populations (KLoM, Georgiev et al. 2024)
attack_signal        whether an attack's values on the original models and  separates False = the
                     on the retrain models (over seeds) separate at all     attack has no signal here
==================== ====================================================== =========================

Tug-of-War, the accuracy-based score of the same idea, is in :mod:`.metrics`
(:func:`~mnemonic_mu.algorithms.metrics.tug_of_war`).

Populations: the per-example attacks take arrays of shape ``(models,
examples)``, the logit-scaled confidence (:func:`logit_scaled_confidence`) of
each forget example's true class under each of N unlearned models (one per
seed) and under each of N retrain models.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .metrics import check_forget_classes, predict_logits

VERSION = 1  # bump when a change to this module changes one of its values

DELTA = 1e-5  # delta of the per-example epsilon (NeurIPS 2023 scorer)
BUCKET_WIDTH = 0.5  # width of the scorer's epsilon buckets (nats)
BANDS = ("minmax", "std")  # band rules of attack_signal


# --------------------------------------------------------------------------
# Input checks


def _probabilities(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ConfigError(f"{name} must be a (samples, classes) array of probabilities, got shape {arr.shape}")
    if len(arr) == 0:
        raise ConfigError(f"{name} holds no sample")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ConfigError(f"{name} must hold finite, non-negative probabilities: pass softmax outputs, not logits")
    if not np.allclose(arr.sum(1), 1.0, atol=1e-6):
        raise ConfigError(f"the rows of {name} must sum to 1: pass softmax outputs, not logits")
    return arr


def _pair(p, q) -> tuple[np.ndarray, np.ndarray]:
    p, q = _probabilities("p", p), _probabilities("q", q)
    if p.shape != q.shape:
        raise ConfigError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    return p, q


def _population(name: str, values, min_models: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:  # one example
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be a (models, examples) array of confidences, got shape {arr.shape}")
    if arr.shape[0] < min_models:
        raise ConfigError(f"{name} needs at least {min_models} models (rows), got {arr.shape[0]}")
    if arr.shape[1] == 0:
        raise ConfigError(f"{name} holds no example")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} contains NaN or inf; compute confidences with logit_scaled_confidence")
    return arr


def _populations(unlearned, retrain, min_models: int) -> tuple[np.ndarray, np.ndarray]:
    u, r = _population("unlearned", unlearned, min_models), _population("retrain", retrain, min_models)
    if u.shape[1] != r.shape[1]:
        raise ConfigError(f"unlearned and retrain cover {u.shape[1]} and {r.shape[1]} examples; give the same examples")
    return u, r


# --------------------------------------------------------------------------
# Output-distribution divergence from retrain


def js_divergence(p, q, base: float = 2.0) -> float:
    """Mean Jensen-Shannon divergence between the rows of ``p`` and ``q``.

    ``JS(p, q) = (KL(p || m) + KL(q || m)) / 2`` with ``m = (p + q) / 2``, logs
    to ``base``: 2 by default (bits, ``0 <= JS <= 1``), ``math.e`` for nats
    (``JS <= log 2``).  ``p`` and ``q`` are ``(samples, classes)`` probability
    arrays (softmax outputs; one distribution may be 1-D).  Computed with
    ``scipy.spatial.distance.jensenshannon``, which returns the JS *distance*
    (the square root): it is squared here.
    """
    from scipy.spatial.distance import jensenshannon

    p, q = _pair(p, q)
    if not base > 1:
        raise ConfigError(f"the log base must exceed 1, got {base}")
    dist = jensenshannon(p, q, base=base, axis=1)
    # identical rows can give sqrt of a rounding-negative sum: that is 0
    return float(np.mean(np.nan_to_num(dist, nan=0.0) ** 2))


def activation_distance(p, q) -> float:
    """Activation distance of Chundawat et al. ("Can bad teaching induce
    forgetting?", AAAI 2023): the mean over samples of ``||p_i - q_i||_2``, the L2
    distance between two models' output probability vectors.  0 = same
    outputs; at most ``sqrt(2)`` (two different one-hot vectors)."""
    p, q = _pair(p, q)
    return float(np.mean(np.linalg.norm(p - q, axis=1)))


@torch.no_grad()
def output_divergence(model: nn.Module, reference: nn.Module, x: torch.Tensor, base: float = 2.0) -> dict:
    """:func:`js_divergence` (log ``base``) and :func:`activation_distance`
    between the softmax outputs of ``model`` and ``reference`` on ``x``.
    Returns ``{"js", "activation_distance", "n"}`` (NaN for an empty ``x``)."""
    if len(x) == 0:
        return {"js": math.nan, "activation_distance": math.nan, "n": 0}
    p = torch.softmax(predict_logits(model, x).double(), 1).numpy()
    q = torch.softmax(predict_logits(reference, x).double(), 1).numpy()
    return {"js": js_divergence(p, q, base=base), "activation_distance": activation_distance(p, q), "n": len(x)}


def divergence_from_retrain(
    model: nn.Module, retrain_model: nn.Module, dataset, forget_classes: Iterable[int], base: float = 2.0
) -> dict:
    """:func:`output_divergence` of ``model`` from ``retrain_model`` on the
    forget-test and on the retain-test samples of ``dataset`` (its
    ``split("test")``).  Returns ``{"forget": {...}, "retain": {...}}``, each
    ``{"js", "activation_distance", "n"}``.  Lower = closer to retrain; read
    it against :func:`retrain_band`, not against 0."""
    forget_classes = check_forget_classes(forget_classes, dataset.num_classes)
    x, y = dataset.split("test")
    forget = torch.isin(y, torch.tensor(forget_classes, dtype=y.dtype))
    return {
        "forget": output_divergence(model, retrain_model, x[forget], base=base),
        "retain": output_divergence(model, retrain_model, x[~forget], base=base),
    }


def retrain_band(
    retrain_models: Sequence[nn.Module], dataset, forget_classes: Iterable[int], base: float = 2.0
) -> dict:
    """The same divergences between retrain models of different seeds: how far
    a second retrain sits from the first.

    ``retrain_models``: at least two retrain models of one request, one per
    seed.  Both divergences are symmetric, so each unordered pair is scored
    once (:func:`divergence_from_retrain`).  Returns ``{"forget": {metric:
    {"mean", "std", "min", "max"}}, "retain": {...}, "n_pairs", "pairs"}``,
    ``std`` with ``ddof = 0`` as elsewhere in the kit, ``pairs`` the per-pair
    results keyed ``"i-j"`` by position in ``retrain_models``.
    """
    models = list(retrain_models)
    if len(models) < 2:
        raise ConfigError("retrain_band needs at least two retrain models (of different seeds)")
    pairs = {
        f"{i}-{j}": divergence_from_retrain(models[j], models[i], dataset, forget_classes, base=base)
        for i in range(len(models))
        for j in range(i + 1, len(models))
    }
    out: dict = {"n_pairs": len(pairs), "pairs": pairs}
    for side in ("forget", "retain"):
        out[side] = {}
        for metric in ("js", "activation_distance"):
            xs = np.array([p[side][metric] for p in pairs.values()])
            out[side][metric] = {
                "mean": float(np.mean(xs)),
                "std": float(np.std(xs)),
                "min": float(np.min(xs)),
                "max": float(np.max(xs)),
            }
    return out


# --------------------------------------------------------------------------
# Per-example attacks on populations of models (U-LiRA, the NeurIPS 2023 scorer)


def logit_scaled_confidence(logits, targets) -> np.ndarray:
    """Logit-scaled confidence ``phi = log(p_y / (1 - p_y))`` of the true class
    ``y`` (Carlini et al.'s LiRA scaling, used by U-LiRA and the NeurIPS 2023
    scorer).

    Computed without forming ``p_y``: ``phi = z_y - logsumexp_{j != y} z_j``
    for logits ``z``, which stays finite for any finite logits (no clipping).
    ``logits``: ``(..., classes)``, e.g. ``(models, examples, classes)``;
    ``targets``: integer labels of shape ``logits.shape[:-1]`` or broadcastable
    to it (``(examples,)`` for a population).  Returns float64 numpy.
    """
    if isinstance(logits, torch.Tensor):
        z = logits.detach().cpu().double()
    else:
        z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    if z.ndim < 1 or z.shape[-1] < 2:
        raise ConfigError(f"logits must end in a class axis of at least 2 classes, got shape {tuple(z.shape)}")
    if not torch.isfinite(z).all():
        raise ConfigError("logits contain NaN or inf")
    y = targets.detach().cpu() if isinstance(targets, torch.Tensor) else torch.as_tensor(np.asarray(targets))
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ConfigError(f"targets must be integer class labels, got {y.dtype}")
    try:
        y = torch.broadcast_to(y.long(), z.shape[:-1])
    except RuntimeError:
        raise ConfigError(f"targets of shape {tuple(y.shape)} do not fit logits of shape {tuple(z.shape)}") from None
    if bool(((y < 0) | (y >= z.shape[-1])).any()):
        raise ConfigError(f"targets must lie in 0..{z.shape[-1] - 1}")
    y = y[..., None]
    z_true = z.gather(-1, y).squeeze(-1)
    z_rest = z.scatter(-1, y, float("-inf")).logsumexp(-1)
    return (z_true - z_rest).numpy()


def forget_logit_parts(logits, forget_class: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two parts of the forget class's :func:`logit_scaled_confidence`, ``phi = z_c - others``,
    and where the rest of the mass goes: ``(z_c, others, runner_up)`` for logits ``(..., classes)``,
    with ``others`` the log-sum-exp of every other class's logit (the same masking as
    :func:`logit_scaled_confidence`, so ``z_c - others`` is its value to the bit) and ``runner_up``
    the other class with the largest logit.  Float64 / int64 numpy, shape ``logits.shape[:-1]``."""
    z = logits.detach().cpu().double() if isinstance(logits, torch.Tensor) else torch.as_tensor(logits).double()
    c = int(forget_class)
    if not 0 <= c < z.shape[-1]:
        raise ConfigError(f"forget class {c} is not one of the logits' {z.shape[-1]} classes")
    rest = z.clone()
    rest[..., c] = float("-inf")
    return z[..., c].numpy(), rest.logsumexp(-1).numpy(), rest.argmax(-1).numpy()


@torch.no_grad()
def population_confidences(models: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """``(models, examples)`` array of :func:`logit_scaled_confidence` of every
    model on ``(x, y)``: the input of the per-example attacks."""
    if not models:
        raise ConfigError("population_confidences needs at least one model")
    logits = torch.stack([predict_logits(m, x) for m in models]).double()
    return logit_scaled_confidence(logits, y.cpu().long())


def epsilon_cap(n_unlearned: int, n_retrain: int) -> float:
    """The largest epsilon finite populations can show: ``ceil(log(N - 1))``
    nats, ``N = max(n_unlearned, n_retrain)``.

    With both error rates non-zero they are at least ``1 / N_side``, so the
    formula of :func:`per_example_epsilon` stays below ``log(N - 1)``
    (``log((1 - delta) N - 1)`` for equal sizes); a perfectly separating
    threshold gets the cap itself.  This is the scorer's ``max_epsilon``
    (google-deepmind/unlearning_evaluation, ``metric.py``), which also ends its
    buckets (:func:`bucket_points`), so a perfectly separated example scores 0.
    """
    n = max(int(n_unlearned), int(n_retrain))
    if min(int(n_unlearned), int(n_retrain)) < 3:
        raise ConfigError("the per-example epsilon needs at least 3 models per population")
    return float(math.ceil(math.log(n - 1)))


def per_example_epsilon(unlearned, retrain, delta: float = DELTA) -> np.ndarray:
    """Per forget example, the epsilon of the NeurIPS 2023 unlearning scorer
    (Triantafillou et al. 2024, section 3; released as
    google-deepmind/unlearning_evaluation).

    ``unlearned``: ``(N_u, examples)`` confidences under N_u unlearned models,
    ``retrain``: ``(N_r, examples)`` under N_r retrain models (at least 3 each).
    For each example, positive = the population with the larger median (retrain
    when strictly larger, as in the scorer); the test "confidence >= t means
    positive" is tried at every threshold t between distinct pooled values
    (exact: every (FPR, FNR) pair this rule can reach).  At each threshold

        eps(t) = max(log((1 - delta - FPR) / FNR), log((1 - delta - FNR) / FPR)),

    a term whose ``1 - delta - rate`` is not positive skipped, then floored at
    0.  As in the scorer: a threshold with FPR = FNR = 0 (perfect separation)
    gives the cap; one where exactly one rate is 0 is skipped (too few models to
    tell).  The example's epsilon is the largest over thresholds, 0 when none
    remains, and at most :func:`epsilon_cap` (nats).

    Differences from the scorer: exact thresholds instead of its grid of 100
    per unit (every (FPR, FNR) pair a grid threshold reaches is reached here,
    so this is at least the scorer's one-threshold value); its second family
    of two-sided (interval) thresholds and its shortcut to the cap when one
    population's spread is under 1 % of the other's are left out (so this can
    be below the scorer's full value); a perfect separation gets the cap, not
    the scorer's 50 (both score 0 points in :func:`bucket_points`).
    """
    u, r = _populations(unlearned, retrain, 3)
    if not 0 <= delta < 1:
        raise ConfigError(f"delta must lie in [0, 1), got {delta}")
    cap = epsilon_cap(len(u), len(r))
    retrain_positive = np.median(r, 0) > np.median(u, 0)  # (examples,)
    pooled = np.concatenate([u, r])  # (N_u + N_r, examples)
    from_retrain = np.concatenate([np.zeros(len(u), bool), np.ones(len(r), bool)])
    order = np.argsort(pooled, axis=0, kind="stable")
    values = np.take_along_axis(pooled, order, 0)
    is_pos = from_retrain[order] == retrain_positive[None, :]
    n_pos = np.where(retrain_positive, len(r), len(u))
    n_neg = np.where(retrain_positive, len(u), len(r))
    # threshold t = values[k]: predicted positive = rows k.. of the sorted column
    pos_at_or_above = np.cumsum(is_pos[::-1], 0)[::-1]
    neg_at_or_above = np.cumsum(~is_pos[::-1], 0)[::-1]
    fpr = neg_at_or_above / n_neg
    fnr = 1.0 - pos_at_or_above / n_pos
    first_of_ties = np.ones_like(values, dtype=bool)
    first_of_ties[1:] = values[1:] != values[:-1]
    both_zero = (neg_at_or_above == 0) & (pos_at_or_above == n_pos)
    one_zero = (neg_at_or_above == 0) ^ (pos_at_or_above == n_pos)
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = 1.0 - delta - fpr, 1.0 - delta - fnr
        t1 = np.where(a > 0, np.log(np.where(a > 0, a, 1.0)) - np.log(fnr), -np.inf)
        t2 = np.where(b > 0, np.log(np.where(b > 0, b, 1.0)) - np.log(fpr), -np.inf)
    eps = np.maximum(np.maximum(t1, t2), 0.0)
    eps = np.where(both_zero, cap, eps)
    eps = np.where(first_of_ties & ~one_zero, eps, 0.0)
    return np.clip(eps.max(0), 0.0, cap)


def bucket_points(epsilons, max_epsilon: float, width: float = BUCKET_WIDTH) -> np.ndarray:
    """The scorer's points of each epsilon: buckets ``[k w, (k + 1) w)``,
    ``k = 0, 1, ...``, of width ``w = 0.5`` give ``2^-k`` points (1, 1/2, 1/4,
    ...), for every bucket that ends at or below ``max_epsilon``; an epsilon at
    or beyond the last bucket's end gets 0.  (The paper writes it
    ``H(eps) = 2 / 2^n(eps)`` with ``n`` the 1-based bucket index.)"""
    eps = np.asarray(epsilons, dtype=np.float64)
    if np.isnan(eps).any() or (eps < 0).any():
        raise ConfigError("epsilons must be non-negative numbers")
    if not width > 0:
        raise ConfigError(f"the bucket width must be positive, got {width}")
    n_buckets = int(math.floor(max_epsilon / width + 1e-9))  # buckets whose end is <= max_epsilon
    k = np.floor(eps / width)
    return np.where(k < n_buckets, 2.0 ** -np.minimum(k, 1074), 0.0)


def forget_score_from_epsilons(epsilons, max_epsilon: float) -> float:
    """The scorer's forget score: the mean of :func:`bucket_points` over the
    forget examples.  1 = every example in the first bucket (epsilon < 0.5);
    0 = every example at the cap."""
    points = bucket_points(epsilons, max_epsilon)
    if points.size == 0:
        raise ConfigError("the forget score needs at least one example")
    return float(points.mean())


def forget_score(unlearned, retrain, delta: float = DELTA) -> dict:
    """Forget score of the NeurIPS 2023 unlearning competition (Triantafillou et
    al. 2024) from ``(models, examples)`` confidences of unlearned and retrain
    populations: :func:`per_example_epsilon` bucketed by
    :func:`bucket_points` up to :func:`epsilon_cap`, averaged over examples.
    Higher = closer to retrain; read it against :func:`forget_score_floor` at
    the same number of models.  (The competition's final score also multiplies
    by the retain and test accuracies relative to retrain; that part is not
    here.)  Returns ``{"score", "epsilons", "cap", "n_unlearned",
    "n_retrain"}``."""
    u, r = _populations(unlearned, retrain, 3)
    eps = per_example_epsilon(u, r, delta=delta)
    cap = epsilon_cap(len(u), len(r))
    return {
        "score": forget_score_from_epsilons(eps, cap),
        "epsilons": eps,
        "cap": cap,
        "n_unlearned": len(u),
        "n_retrain": len(r),
    }


KLOM_BINS = 20  # KLoM: histogram bins over the two populations' common range of margins
KLOM_CLIP = 100.0  # KLoM: margins clipped to [-KLOM_CLIP, KLOM_CLIP] before binning
KLOM_EPS = 1e-5  # KLoM: the floor of a retrain bin's share where the unlearned population has mass
KLOM_PERCENTILE = 95.0  # KLoM: the percentile over the forget examples reported


def binned_kl(p_samples, q_samples, bins: int = KLOM_BINS, eps: float = KLOM_EPS, clip: float = KLOM_CLIP) -> float:
    """KL(P || Q) in nats between the empirical distributions of two 1-D samples: both clipped
    to ``[-clip, clip]``, binned on ``bins`` equal bins spanning their common range, Q's share
    floored at ``eps`` in every bin where P has mass (so the divergence stays finite)."""
    p = np.clip(np.asarray(p_samples, dtype=np.float64), -clip, clip)
    q = np.clip(np.asarray(q_samples, dtype=np.float64), -clip, clip)
    if p.ndim != 1 or q.ndim != 1 or p.size == 0 or q.size == 0:
        raise ConfigError("binned_kl needs two non-empty 1-D samples")
    if not (np.isfinite(p).all() and np.isfinite(q).all()):
        raise ConfigError("binned_kl: samples contain NaN")
    low, high = min(p.min(), q.min()), max(p.max(), q.max())
    edges = np.linspace(low, high if high > low else low + 1.0, int(bins) + 1)
    p_share = np.histogram(p, edges)[0] / p.size
    q_share = np.histogram(q, edges)[0] / q.size
    mass = p_share > 0
    return float(np.sum(p_share[mass] * np.log(p_share[mass] / np.maximum(q_share[mass], eps))))


def klom(unlearned, retrain, percentile: float = KLOM_PERCENTILE) -> dict:
    """KLoM (Georgiev et al. 2024, "Attribute-to-Delete"): per forget example, the KL divergence
    (:func:`binned_kl`) from the distribution of its margins under the unlearned models to their
    distribution under the retrain models, over ``(models, examples)`` populations; reported as
    the ``percentile`` over the examples (0 = the populations' margins fall in the same bins in
    the same shares).  The margin is the logit-scaled confidence of :func:`logit_scaled_confidence`
    (true-class logit minus the log-sum-exp of the others), the input of the other per-example
    attacks.  Read it against the same statistic for retrain against retrain at the same number
    of models: a finite population is never at 0.  Returns ``{"value", "median", "per_example",
    "percentile", "n_unlearned", "n_retrain"}``."""
    u, r = _populations(unlearned, retrain, 2)
    per = np.array([binned_kl(u[:, j], r[:, j]) for j in range(u.shape[1])])
    return {
        "value": float(np.percentile(per, percentile)),
        "median": float(np.median(per)),
        "per_example": per,
        "percentile": float(percentile),
        "n_unlearned": len(u),
        "n_retrain": len(r),
    }


def retrain_halves(n_models: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of ``n_models`` model indices into two halves of
    ``n_models // 2`` each (one model left out when odd):
    ``perm = default_rng(seed).permutation(n_models)``, halves ``perm[:h]`` and
    ``perm[h:2h]``."""
    perm = np.random.default_rng(int(seed)).permutation(int(n_models))
    h = int(n_models) // 2
    return perm[:h], perm[h : 2 * h]


def forget_score_floor(retrain, seed: int = 0, repeats: int = 5, delta: float = DELTA) -> dict:
    """The finite-N floor of :func:`forget_score`: the score of one half of the
    retrain population against the other half (retrain vs retrain), for
    ``repeats`` seeded splits (:func:`retrain_halves` with seeds ``seed``,
    ``seed + 1``, ...).

    Two retrain halves are as indistinguishable as models get, so this is the
    best score a method can expect (epsilon's floor, the score's ceiling); it
    is below 1 because N is finite.  It is measured at ``N_r // 2`` models per
    side: compare it with the method's score at that size too.  Returns
    ``{"score" (mean), "std" (ddof 0), "scores", "n_per_half", "cap"}``.
    """
    r = _population("retrain", retrain, 6)
    if int(repeats) < 1:
        raise ConfigError(f"repeats must be at least 1, got {repeats}")
    scores = []
    for i in range(int(repeats)):
        a, b = retrain_halves(len(r), seed + i)
        scores.append(forget_score(r[a], r[b], delta=delta)["score"])
    h = len(r) // 2
    return {
        "score": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "scores": scores,
        "n_per_half": h,
        "cap": epsilon_cap(h, h),
    }


def ulira_accuracy(unlearned, retrain, seed: int = 0, min_std: float = 1e-3) -> dict:
    """A per-example likelihood-ratio attack in the style of U-LiRA (Hayes et
    al., "Inexact unlearning needs more careful evaluations to avoid a false
    sense of privacy", 2024).

    Each population's models are split once (seeded, the same split for every
    example) into shadow and target halves (:func:`retrain_halves`).  Per
    example, a Gaussian is fit (mean, std with ``ddof = 1`` floored at
    ``min_std``) to the shadow confidences of each population; every target
    model is called "unlearned" when ``log N(phi; mu_u, s_u) > log N(phi; mu_r,
    s_r)``.  Per-example balanced accuracy ``(TPR + TNR) / 2`` over the
    targets; the result is its mean over examples.  0.5 = cannot tell; 1 = each
    example gives the model away.  Needs at least 4 models per population.
    Returns ``{"accuracy", "per_example"}``.
    """
    u, r = _populations(unlearned, retrain, 4)
    su, tu = retrain_halves(len(u), seed)
    sr, tr = retrain_halves(len(r), seed + 1)

    def fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x.mean(0), np.maximum(x.std(0, ddof=1), min_std)

    mu_u, s_u = fit(u[su])
    mu_r, s_r = fit(r[sr])

    def says_unlearned(x: np.ndarray) -> np.ndarray:
        log_u = -0.5 * ((x - mu_u) / s_u) ** 2 - np.log(s_u)
        log_r = -0.5 * ((x - mu_r) / s_r) ** 2 - np.log(s_r)
        return log_u > log_r

    per_example = 0.5 * (says_unlearned(u[tu]).mean(0) + (~says_unlearned(r[tr])).mean(0))
    return {"accuracy": float(per_example.mean()), "per_example": per_example}


# --------------------------------------------------------------------------
# Does an attack carry signal at all?


def _band(xs: np.ndarray, rule: str) -> tuple[float, float]:
    if rule == "minmax":
        return float(xs.min()), float(xs.max())
    m, s = float(xs.mean()), float(xs.std())
    return m - s, m + s


def attack_signal(original, retrain, band: str = "minmax") -> dict:
    """Whether an attack tells the original models from the retrain models at all.

    ``original`` / ``retrain``: the attack's value for each original model and
    each retrain model (one per seed).  Each side's band is ``band``:
    ``"minmax"`` (default) = its min..max, ``"std"`` = mean +- std (``ddof =
    0``).  The two separate when the bands are disjoint (strictly), i.e. each
    side lies outside the other's band (for ``"minmax"``: every value of each
    side).  If they do not, the attack has no signal on this setup: its value
    for an unlearned model cannot say "forgotten" or "not".  Returns
    ``{"separates", "band", "original": {"mean", "std", "low", "high", "n"},
    "retrain": {...}, "gap"}``, ``gap`` the distance between the bands
    (positive when they separate, negative = overlap).
    """
    if band not in BANDS:
        raise ConfigError(f"unknown band {band!r}; choose from {', '.join(BANDS)}")
    sides = {}
    for name, values in (("original", original), ("retrain", retrain)):
        xs = np.asarray(values, dtype=np.float64).ravel()
        if xs.size == 0 or not np.isfinite(xs).all():
            raise ConfigError(f"{name} needs at least one finite value")
        low, high = _band(xs, band)
        sides[name] = {"mean": float(xs.mean()), "std": float(xs.std()), "low": low, "high": high, "n": int(xs.size)}
    o, r = sides["original"], sides["retrain"]
    gap = max(o["low"] - r["high"], r["low"] - o["high"])
    return {"separates": bool(gap > 0), "band": band, "original": o, "retrain": r, "gap": float(gap)}


__all__ = [
    "BANDS",
    "BUCKET_WIDTH",
    "DELTA",
    "KLOM_BINS",
    "KLOM_CLIP",
    "KLOM_EPS",
    "KLOM_PERCENTILE",
    "activation_distance",
    "attack_signal",
    "binned_kl",
    "bucket_points",
    "divergence_from_retrain",
    "epsilon_cap",
    "forget_logit_parts",
    "forget_score",
    "forget_score_floor",
    "forget_score_from_epsilons",
    "js_divergence",
    "klom",
    "logit_scaled_confidence",
    "output_divergence",
    "per_example_epsilon",
    "population_confidences",
    "retrain_band",
    "retrain_halves",
    "ulira_accuracy",
]
