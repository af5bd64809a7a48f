"""One-shot forgetting with mnemonic codes (Eq. 5-7, Algorithm 2) and a calibrated step.

Paper step (``step="paper"``)
    1. Code Fisher per class (Eq. 6); f_F = mean over forget classes, f_R = mean
       over remaining classes.
    2. eta_i = f_F,i / f_R,i (Eq. 7) with guards: both Fishers floored at a tiny
       value, NaN -> 0, +inf -> the largest finite eta of that tensor.
    3. Per tensor l: alpha_l = min(lambda1, lambda2 / max_i eta_l,i).
    4. Candidates w + alpha*eta and w - alpha*eta (one sign for the whole
       model, Eq. 5); keep the one with the larger A_R + E_F on the codes alone.
       If both score the same (a *tie*), the sign whose forget codes lose more
       log-probability relative to the remaining codes wins, and the record
       says the test tied.

Calibrated step (``step="calibrated"``, this kit's extension, docs/calibration.md)
    Same direction ``alpha*eta``, with two changes and a step size chosen per
    request from the codes alone:

    - the output layer's rows of the remaining classes stay where they are
      (``protect_rows``): moving them shifts those classes' scores on every input,
      and that, not the hidden layers, is what damaged the remaining classes on
      the hard requests (docs/calibration.md, section "Where the damage lands");
    - the scale k of ``w +- k*alpha*eta`` grows geometrically until every forget
      code (and jittered views of it) is misclassified with a log-probability
      margin, while every remaining code (and its views) that the input model
      classifies correctly keeps its class; the forget rows follow k, the layers
      below move by ``min(k, hidden_cap)``.  The sign reaching that with the
      smaller k wins.  No training, test or validation data is touched.

    When no scale forgets without a remaining code losing its class, the step
    says so in a warning that names the numbers (target, margins reached, scale)
    and takes the largest safe scale instead of damaging.  ``Calibration.v1()``
    is the step of forget.VERSION 1 (every parameter on one scale, margin 2).

    Several forget classes (``Calibration.multi="sequential"``, the default):
    one calibrated step per forget class, applied in turn, each along its own
    direction f_c / f_R (f_R over the classes that stay); the code Fishers all
    come from the input model in the same single batch of codes, so the request
    still costs one backward pass per class.  Codes of classes already
    forgotten are left out of the later steps' checks.  ``multi="joint"`` takes
    one step along the mean forget Fisher f_F of Eq. 6 instead (measured worse
    on multi-class requests: of 30 on mnist5k, ten forget sets x three seeds, it
    forgot 29 with A_R 1.79 points under retrain's on average, the sequential
    step 30; that study, README at commit a88a9ef, is no longer in the docs).

Matched step (``step="matched"``, this kit's, docs/matched.md)
    Aimed at retrain's outputs on the forget class, example by example, not at a margin.
    Retrain never has class c as a target, so its logit of c ends up at one level on every
    input (its spread over examples is a few hundredths of a nat, docs/matched.md); the
    step sets each forget class's output row to ``slope * (w_c, b_c)`` and adds ``level``
    to its bias, so the forget logit becomes ``level + slope * z_c``: nearly that constant,
    slightly lower where the original was most sure of c (where retrain's other classes
    score higher than the original's).  ``level`` and ``slope`` (:class:`Matching`) were
    chosen on validation splits with the per-example attack
    (``python benchmarks/matched_study.py``).  Nothing else moves: the remaining classes'
    rows and the layers below keep their weights to the bit.  It reads no data and needs
    no Fisher (0 backward passes); the codes check the result (every forget code
    misclassified, every remaining code kept), as for the other steps.

All return a *new* model (the input is left untouched) and a :class:`ForgetRecord`.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..defaults import default
from ..errors import ConfigError, ModelStateError
from .fisher import Fisher, code_fisher_means, mean_fisher, trainable
from .metrics import check_forget_classes

VERSION = 2  # bump when a change to this module changes the step's numbers

STEPS = ("paper", "calibrated", "matched")
# The paper's (lambda1, lambda2) grids (Yamashita et al. searched them on the test split; the kit
# scores them on validation): written once, as the defaults of the settings lambda1_grid /
# lambda2_grid (mnemonic_mu/defaults.py); the grid of the methods that search them (algorithms/methods.py).
PAPER_LAMBDA1_GRID: tuple[float, ...] = default("lambda1_grid")
PAPER_LAMBDA2_GRID: tuple[float, ...] = default("lambda2_grid")
MULTI_MODES = ("sequential", "joint")
# the matched step's defaults (Matching): the choice of benchmarks/matched_study.py on validation splits
LEVEL, SLOPE, NOISE = -8.25, -0.1, 0.5


@dataclass
class ForgetRecord:
    """What one forgetting step did; everything a reader needs to trust or doubt it."""

    step: str  # "paper", "calibrated" or "matched"
    forget_classes: list[int]
    sign: str  # "+" or "-"
    sign_tie: bool  # both signs scored the same A_R + E_F on the codes
    lambda1: float
    lambda2: float
    scale: float  # multiplier k of the paper's step (1.0 for the paper step; the largest k of the parts)
    alpha: dict[str, float]  # per-tensor alpha_l (empty for a sequential request: see ``parts``)
    code_scores: dict[str, dict[str, float]]  # per sign: A_R / E_F on the codes (%) and margins
    forget_code_predicted: bool  # after the step, a forget code still predicts its own class
    retain_codes_kept: bool  # after the step, every remaining code keeps its class
    backward_passes: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    multi: str = "single"  # "single" (one forget class), "joint", "sequential" or "rows" (matched)
    # sequential: per class its sign, sign_tie, scale, alpha, code_scores and guard
    parts: list[dict] = field(default_factory=list)
    guard: dict = field(default_factory=dict)  # calibrated: the criterion's numbers (targets, margins reached, scales)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------
# The pieces of Eq. 5-7


def fisher_ratio(f_forget: Fisher, f_retain: Fisher, floor: float | None = None) -> Fisher:
    """eta = f_F / f_R (Eq. 7), guarded.

    Both Fishers are floored at ``floor`` (default: the dtype's smallest normal
    number) before dividing; NaN becomes 0 and +inf the largest finite value of
    that tensor (0 if it has none).
    """
    eta = {}
    for n, ff in f_forget.items():
        fr = f_retain[n]
        lo = torch.finfo(ff.dtype).tiny if floor is None else floor
        r = ff.clamp_min(lo).div_(fr.clamp_min(lo))
        r.nan_to_num_(nan=0.0, posinf=float("inf"), neginf=0.0)
        # only +inf can be left now, so one max() tells whether any is (isfinite() costs ~4 passes)
        if r.numel() and not bool(r.max() < float("inf")):
            finite = torch.isfinite(r)
            top = float(r[finite].max()) if bool(finite.any()) else 0.0
            r = torch.where(finite, r, torch.full_like(r, top))
        eta[n] = r
    return eta


def layer_alphas(eta: Fisher, lambda1: float, lambda2: float) -> dict[str, float]:
    """alpha_l = min(lambda1, lambda2 / max_i eta_l,i) for every tensor l."""
    out = {}
    for n, e in eta.items():
        top = float(e.max()) if e.numel() else 0.0
        out[n] = float(lambda1) if top <= 0 else min(float(lambda1), float(lambda2) / top)
    return out


@torch.no_grad()
def _write_step(
    target: nn.Module, model: nn.Module, eta: Fisher, alpha: dict[str, float], sign: float, scale: float = 1.0
) -> None:
    """Eq. 5: set ``target``'s trainable weights to ``model``'s ``w + sign * scale * alpha_l * eta_l``, in place."""
    base = trainable(model)
    for n, p in trainable(target).items():
        torch.add(base[n], eta[n], alpha=sign * scale * alpha[n], out=p)


def perturbed(model: nn.Module, eta: Fisher, alpha: dict[str, float], sign: float, scale: float = 1.0) -> nn.Module:
    """A copy of ``model`` with ``w + sign * scale * alpha_l * eta_l`` (Eq. 5, :func:`_write_step`)."""
    new = copy.deepcopy(model)
    _write_step(new, model, eta, alpha, sign, scale)
    return new


@torch.no_grad()
def code_report(
    model: nn.Module, codes: torch.Tensor, labels: torch.Tensor, forget_classes: Iterable[int]
) -> dict[str, float]:
    """Scores of ``model`` on code inputs (and their views) with their class labels.

    ``A_R``/``E_F``: accuracy on remaining-class codes and error on forget-class
    codes (%).  ``forget_margin``: the largest (log p_true - max other log p)
    over forget codes (negative = all misclassified).  ``retain_margin``: the
    smallest such margin over remaining codes (positive = all kept).
    ``log_p_gap``: mean log p_true of remaining codes minus that of forget codes
    (the tie-break: larger = more selective).  ``forget_on_retain``: mean over
    remaining codes of log p(any forget class) (lower = the forget classes are
    suppressed beyond their own codes).
    """
    logp, true, margin = _log_probs(model, codes, labels)
    labels = labels.cpu()
    forget = torch.isin(labels, torch.tensor(list(forget_classes)))
    correct = margin > 0
    return {
        "A_R": 100.0 * float(correct[~forget].float().mean()),
        "E_F": 100.0 * (1.0 - float(correct[forget].float().mean())),
        "forget_margin": float(margin[forget].max()),
        "retain_margin": float(margin[~forget].min()),
        "log_p_gap": float(true[~forget].mean() - true[forget].mean()),
        "forget_on_retain": float(logp[~forget][:, list(forget_classes)].logsumexp(1).mean()),
    }


def code_margins(model: nn.Module, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per input: log p(label) minus the largest other log p (positive = classified as its label)."""
    return _log_probs(model, codes, labels)[2]


@torch.no_grad()
def _log_probs(model: nn.Module, x: torch.Tensor, labels: torch.Tensor):
    """``(log p, log p of the label, margin)`` of ``model`` in eval mode on ``x``, on the CPU;
    the margin is log p(label) minus the largest other log p."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logp = F.log_softmax(model(x.to(device)).float(), 1).cpu()
    model.train(was_training)
    labels = labels.cpu()
    true = logp.gather(1, labels[:, None]).squeeze(1)
    return logp, true, true - logp.scatter(1, labels[:, None], float("-inf")).max(1).values


def code_views(codes: torch.Tensor, n_views: int, jitter: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each code plus ``n_views`` copies with Gaussian noise of std ``jitter * std(codes)``."""
    labels = torch.arange(len(codes))
    if n_views <= 0 or jitter <= 0:
        return codes, labels
    gen = torch.Generator().manual_seed(int(seed))
    sd = float(codes.std()) * jitter
    noisy = codes.unsqueeze(1) + sd * torch.randn((len(codes), n_views, *codes.shape[1:]), generator=gen)
    views = torch.cat([codes.unsqueeze(1), noisy], 1)
    return views.flatten(0, 1), labels.repeat_interleave(n_views + 1)


# --------------------------------------------------------------------------
# Input checks


def check_model_finite(model: nn.Module) -> None:
    """Refuse a model whose parameters contain NaN or inf (a diverged training run)."""
    for n, p in model.named_parameters():
        if p.numel() == 0:
            continue
        lo, hi = torch.aminmax(p.detach())  # one pass; NaN propagates into both
        if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
            raise ModelStateError(
                f"parameter '{n}' of the model contains NaN or inf (training diverged?); "
                "retrain with a smaller learning rate before forgetting."
            )


def check_codes_fit(model: nn.Module, codes: torch.Tensor) -> None:
    """Refuse codes whose shape the model cannot take or whose count differs from its classes."""
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            was = model.training
            model.eval()
            out = model(codes[:1].to(device))
            model.train(was)
    except RuntimeError:
        raise ConfigError(
            f"codes of shape {tuple(codes.shape[1:])} do not fit the model's input; load the "
            "codes saved with this model's checkpoint."
        ) from None
    if out.shape[-1] != len(codes):
        raise ConfigError(
            f"{len(codes)} codes for a model with {out.shape[-1]} classes; load the codes saved "
            "with this model's checkpoint."
        )


def _check_lambdas(lambda1: float, lambda2: float) -> None:
    for name, v in (("lambda1", lambda1), ("lambda2", lambda2)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ConfigError(f"{name} must be a positive number, got {v!r} (paper MNIST: 1e-3 and 10)")


# --------------------------------------------------------------------------
# The step


@dataclass(frozen=True)
class Calibration:
    """Settings of the calibrated step (codes only).

    The defaults were chosen on validation splits only (docs/calibration.md, made by
    ``python benchmarks/calibration_study.py``); :meth:`v1` is the step as it stood before
    (kept for comparison).
    """

    margin: float = 4.0  # forget codes must trail the best other class by at least this many nats ...
    mirror: bool = True  # ... and by as much as they originally led it, when that is more
    retain_margin: float = 0.0  # remaining codes must keep their class by at least this margin ...
    retain_keep: float = 0.0  # ... and by this fraction of their original smallest margin
    suppress: bool = True  # the forget classes must become less likely on the remaining codes
    n_views: int = 4  # jittered copies of each code checked besides the code itself
    jitter: float = 0.1  # noise std of a view, relative to the codes' std
    growth: float = 2.0**0.5  # geometric factor between tried scales
    min_scale: float = 2.0**-6  # smallest scale tried (1.0 = the paper's step)
    max_scale: float = 2.0**20  # largest scale tried
    seed: int = 0  # views' noise
    protect_rows: bool = True  # leave the remaining classes' output rows (weights and bias) where they are
    hidden_cap: float = 0.5  # the layers below the output layer move by at most this scale (1.0 = the paper's)
    only_kept_views: bool = True  # check only the remaining views the input model classifies correctly
    multi: str = "sequential"  # several forget classes: "sequential" (one step per class) or "joint"

    @classmethod
    def v1(cls, **changes) -> "Calibration":
        """The calibrated step of kit versions before the retain guard (forget.VERSION 1):
        every parameter moves by the same scale, margin 2, every remaining view checked."""
        return cls(
            **({"margin": 2.0, "protect_rows": False, "hidden_cap": math.inf, "only_kept_views": False} | changes)
        )


@dataclass(frozen=True)
class Matching:
    """Settings of the matched step: the forget row becomes ``slope * (w_c, b_c)`` plus ``level``
    on its bias.  Chosen on validation splits with the per-example attack (docs/matched.md, made
    by ``python benchmarks/matched_study.py``; a test checks these defaults are its choice)."""

    level: float = LEVEL  # the forget logit's level (nats) on every input ...
    slope: float = SLOPE  # ... plus this multiple of the original's forget logit ...
    noise: float = NOISE  # ... plus a draw of this sd per forget row (retrain's level varies over seeds)
    seed: int = 0  # the draw's seed (the request's seed: each model of a population draws its own)

    def __post_init__(self) -> None:
        for name in ("level", "slope", "noise"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"Matching.{name} must be a finite number, got {v!r}")
        if self.noise < 0:
            raise ConfigError(f"Matching.noise is a standard deviation and cannot be negative, got {self.noise!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"Matching.seed must be a non-negative integer, got {self.seed!r}")

    def draw(self, n: int) -> list[float]:
        """The ``n`` level offsets of a request (one per forget row): ``noise`` times standard normal
        draws from ``seed``; all 0 without noise."""
        if self.noise == 0:
            return [0.0] * n
        gen = torch.Generator().manual_seed(int(self.seed))
        return [self.noise * float(v) for v in torch.randn(n, generator=gen, dtype=torch.float64)]


def forget(
    model: nn.Module,
    codes: torch.Tensor,
    forget_classes: Iterable[int],
    lambda1: float | None = None,
    lambda2: float | None = None,
    step: str | None = None,
    calibration: Calibration | None = None,
    fisher_method: str = "batched",
    per_class_fisher: list[Fisher] | None = None,
    matching: Matching | None = None,
) -> tuple[nn.Module, ForgetRecord]:
    """Forget ``forget_classes`` in one shot from the codes alone.

    ``per_class_fisher`` may pass precomputed code Fishers (one per class) to
    skip step 1; ``fisher_method`` chooses the loop, the vectorised or the
    batched path (see :func:`~mnemonic_mu.algorithms.fisher.code_fisher_means`).
    ``lambda1``, ``lambda2`` and ``step`` left at None take the kit's defaults
    (:mod:`mnemonic_mu.defaults`: the paper's MNIST lambdas and the calibrated step);
    ``matching`` sets the matched step's rules (default: :class:`Matching`).
    Returns ``(new_model, record)``; ``model`` is not modified.
    """
    lambda1 = default("lambda1") if lambda1 is None else lambda1
    lambda2 = default("lambda2") if lambda2 is None else lambda2
    step = default("step") if step is None else step
    if step not in STEPS:
        raise ConfigError(f"unknown step {step!r}; choose {', '.join(repr(s) for s in STEPS)}")
    cal = calibration or Calibration()
    if cal.multi not in MULTI_MODES:
        raise ConfigError(f"unknown Calibration.multi {cal.multi!r}; choose 'sequential' or 'joint'")
    _check_lambdas(lambda1, lambda2)
    num_classes = len(codes)
    check_model_finite(model)
    check_codes_fit(model, codes)  # before the class check: a wrong code count would mislead it
    forget_classes = check_forget_classes(forget_classes, num_classes)
    device = next(model.parameters()).device
    codes = codes.to(device)

    start = time.perf_counter()
    retain_classes = [c for c in range(num_classes) if c not in forget_classes]
    if step == "matched":
        return _forget_matched(model, codes, forget_classes, lambda1, lambda2, matching or Matching(), start)
    multi = "single" if len(forget_classes) == 1 else ("joint" if step == "paper" else cal.multi)
    if multi == "sequential":
        return _forget_sequential(
            model,
            codes,
            forget_classes,
            retain_classes,
            lambda1,
            lambda2,
            cal,
            fisher_method,
            per_class_fisher,
            start,
        )
    # f_F, f_R of Eq. 6
    f_forget, f_retain = _group_fishers(model, codes, [forget_classes, retain_classes], per_class_fisher, fisher_method)
    eta = fisher_ratio(f_forget, f_retain)
    alpha = layer_alphas(eta, lambda1, lambda2)
    labels = torch.arange(num_classes)
    warnings: list[str] = []

    guard: dict = {}
    if step == "paper":
        scale = 1.0
        # one copy for both candidates: w +- alpha*eta is written from the input's weights
        # (the same arithmetic as perturbed(), so the result is bit-identical)
        new = copy.deepcopy(model)
        scores = {}
        for s, sgn in (("+", 1.0), ("-", -1.0)):
            _write_step(new, model, eta, alpha, sgn)
            scores[s] = code_report(new, codes, labels, forget_classes)
        total = {s: v["A_R"] + v["E_F"] for s, v in scores.items()}
        tie = total["+"] == total["-"]
        if tie:
            sign = "+" if scores["+"]["log_p_gap"] >= scores["-"]["log_p_gap"] else "-"
        else:
            sign = "+" if total["+"] > total["-"] else "-"
        if sign == "+":
            _write_step(new, model, eta, alpha, 1.0)
    else:
        views, view_labels = _views(codes, cal, device)
        new, sign, scale, scores, tie, guard = _calibrate(
            model, eta, alpha, views, view_labels, forget_classes, cal, warnings
        )

    seconds = time.perf_counter() - start
    final = code_report(new, codes, labels, forget_classes)
    record = ForgetRecord(
        step=step,
        forget_classes=list(forget_classes),
        sign=sign,
        sign_tie=bool(tie),
        lambda1=float(lambda1),
        lambda2=float(lambda2),
        scale=float(scale),
        alpha=alpha,
        code_scores=scores,
        forget_code_predicted=final["forget_margin"] > 0,
        retain_codes_kept=_kept_codes_kept(model, new, codes, forget_classes),
        backward_passes=num_classes,
        seconds=seconds,
        warnings=warnings,
        multi=multi,
        guard=guard,
    )
    return new, _finish_record(record)


def _forget_matched(model, codes, forget_classes, lambda1, lambda2, match: Matching, start: float):
    """The matched step (module doc): every forget row becomes ``slope * row`` with ``level`` added
    to its bias; nothing else moves."""
    head = output_layer(model)
    if not head:
        raise ConfigError(
            "step='matched' sets the forget classes' rows of the output layer, and this model has no "
            "nn.Linear layer; use step='calibrated'"
        )
    if not any(n.endswith("bias") for n in head):
        raise ConfigError(
            "step='matched' needs an output layer with a bias (the bias holds the level); use step='calibrated'"
        )
    new = copy.deepcopy(model)
    params = trainable(new)
    rows = torch.tensor(list(forget_classes), device=params[head[0]].device)
    offsets = torch.tensor(match.draw(len(forget_classes)), dtype=params[head[0]].dtype, device=rows.device)
    with torch.no_grad():
        for n in head:
            p = params[n]
            p[rows] = p[rows] * match.slope
            if n.endswith("bias"):
                p[rows] += match.level + offsets
    labels = torch.arange(len(codes))
    before = code_report(model, codes, labels, forget_classes)
    final = code_report(new, codes, labels, forget_classes)
    guard = {
        "level": float(match.level),
        "slope": float(match.slope),
        "noise": float(match.noise),
        "offsets": [float(v) for v in offsets],
        "forget_margin": float(final["forget_margin"]),
        "retain_margin": float(final["retain_margin"]),
        "forget_margin_before": float(before["forget_margin"]),
    }
    record = ForgetRecord(
        step="matched",
        forget_classes=list(forget_classes),
        sign="-",
        sign_tie=False,
        lambda1=float(lambda1),
        lambda2=float(lambda2),
        scale=1.0,
        alpha={},
        code_scores={"final": final},
        forget_code_predicted=final["forget_margin"] > 0,
        retain_codes_kept=_kept_codes_kept(model, new, codes, forget_classes),
        backward_passes=0,
        seconds=time.perf_counter() - start,
        warnings=[],
        multi="single" if len(forget_classes) == 1 else "rows",
        guard=guard,
    )
    return new, _finish_record(record)


def _group_fishers(model, codes, groups, per_class_fisher, fisher_method) -> list[Fisher]:
    """Mean code Fisher of each group of classes, from ``per_class_fisher`` when given
    (else :func:`~mnemonic_mu.algorithms.fisher.code_fisher_means`; "batched" never stores the per-class Fishers)."""
    if per_class_fisher is not None:
        return [mean_fisher(per_class_fisher[c] for c in g) for g in groups]
    return code_fisher_means(model, codes, groups, fisher_method)


def _views(codes: torch.Tensor, cal: Calibration, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The calibration's code views on ``device`` and their labels (on the CPU)."""
    views, labels = code_views(codes.cpu(), cal.n_views, cal.jitter, cal.seed)
    return views.to(device), labels


def _kept_codes_kept(before: nn.Module, after: nn.Module, codes: torch.Tensor, forget_classes) -> bool:
    """Every remaining-class code that ``before`` classifies as its class, ``after`` does too."""
    labels = torch.arange(len(codes))
    remaining = ~torch.isin(labels, torch.tensor(list(forget_classes)))
    was = code_margins(before, codes, labels) > 0
    return bool((code_margins(after, codes, labels) > 0)[remaining & was].all())


def _finish_record(record: ForgetRecord) -> ForgetRecord:
    """Add the warnings every step reports (tie, forget code kept, remaining code lost)."""
    if record.sign_tie:
        record.warnings.append(
            "sign test tied: both signs scored the same A_R + E_F on the codes; "
            "the sign was chosen by the log-probability gap"
        )
    if record.forget_code_predicted:
        hint = {
            "paper": "try step='calibrated'",
            "matched": "another class scores below the level on that code: lower Matching.level",
        }.get(record.step, "no safe scale misclassifies it: this request may not be forgettable from the codes")
        record.warnings.append(
            f"a forget code is still predicted as its own class: the step was too small for this request ({hint})"
        )
    if not record.retain_codes_kept:
        record.warnings.append(
            "a remaining-class code that the input model classified correctly lost its class: "
            "the step may have damaged retained classes"
        )
    return record


def _forget_sequential(
    model, codes, forget_classes, retain_classes, lambda1, lambda2, cal, fisher_method, per_class_fisher, start
):
    """Calibrated steps for several classes, one class at a time (see module doc)."""
    num_classes = len(codes)
    # one batch of codes: f_c for each forget class and f_R over the classes that stay
    groups = [[c] for c in forget_classes] + [retain_classes]
    *f_each, f_retain = _group_fishers(model, codes, groups, per_class_fisher, fisher_method)
    views, view_labels = _views(codes, cal, next(model.parameters()).device)
    done: list[int] = []
    current, parts, warnings = model, [], []
    for c, f_c in zip(forget_classes, f_each):
        eta = fisher_ratio(f_c, f_retain)
        alpha = layer_alphas(eta, lambda1, lambda2)
        keep = ~torch.isin(view_labels, torch.tensor(done, dtype=view_labels.dtype))
        part_warnings: list[str] = []
        current, sign, scale, scores, tie, guard = _calibrate(
            current, eta, alpha, views[keep], view_labels[keep], [c], cal, part_warnings
        )
        warnings += [f"class {c}: {w}" for w in part_warnings]
        parts.append(
            {
                "class": c,
                "sign": sign,
                "sign_tie": bool(tie),
                "scale": float(scale),
                "alpha": alpha,
                "code_scores": scores,
                "guard": guard,
            }
        )
        done.append(c)
    seconds = time.perf_counter() - start
    final = code_report(current, codes, torch.arange(num_classes), forget_classes)
    record = ForgetRecord(
        step="calibrated",
        forget_classes=list(forget_classes),
        sign="".join(p["sign"] for p in parts),
        sign_tie=any(p["sign_tie"] for p in parts),
        lambda1=float(lambda1),
        lambda2=float(lambda2),
        scale=max(p["scale"] for p in parts),
        alpha={},
        code_scores={"final": final},
        forget_code_predicted=final["forget_margin"] > 0,
        retain_codes_kept=_kept_codes_kept(model, current, codes, forget_classes),
        backward_passes=num_classes,
        seconds=seconds,
        warnings=warnings,
        multi="sequential",
        parts=parts,
    )
    return current, _finish_record(record)


def _calibrate(model, eta, alpha, views, labels, forget_classes, cal: Calibration, warnings):
    """Grow the scale of the paper's direction until the code criterion holds (see module doc).

    A scale k of sign s qualifies when (1) every forget-code view trails its best
    other class by ``target`` nats, (2) the forget classes became *less* likely on
    the remaining codes than before the step (the class is suppressed, not just
    its code moved) and (3) every remaining-code view that the input model
    classifies correctly still leads by ``retain_floor``.  Each sign is scanned
    upward until (3) fails; the sign that qualifies at the smaller scale wins.
    With ``cal.protect_rows`` the remaining classes' output rows do not move; the
    layers below the output layer move by ``min(k, cal.hidden_cap)``.  Returns
    ``(model, sign, scale, scores, tie, guard)``; ``guard`` holds the criterion's numbers.
    """
    head = set(output_layer(model))
    if cal.protect_rows and head:
        eta = protect_retained_rows(model, eta, forget_classes)
    # a remaining view the input model already gets wrong cannot be "kept": check the others
    kept = code_margins(model, views, labels) > 0
    kept |= torch.isin(labels, torch.tensor(list(forget_classes), dtype=labels.dtype))
    unkept = int((~kept).sum())
    if cal.only_kept_views and unkept:
        views, labels = views[kept.to(views.device)], labels[kept]
    if bool(torch.isin(labels, torch.tensor(list(forget_classes), dtype=labels.dtype)).all()):
        warnings.append(
            "calibration has nothing to guard: the input model classifies no remaining-class code (or view) "
            "correctly, so no scale can be checked against the remaining classes; the model is unchanged. "
            "Train the original longer (its validation accuracy should plateau), or use step='paper'"
        )
        guard = {
            "target_margin": float(cal.margin),
            "retain_floor": math.nan,
            "protect_rows": bool(cal.protect_rows and head),
            "hidden_cap": float(cal.hidden_cap),
            "views_skipped": unkept if cal.only_kept_views else 0,
            "scale": 0.0,
            "hidden_scale": 0.0,
        }
        return copy.deepcopy(model), "-", 0.0, {"+": {}, "-": {}}, False, guard

    def gains(k: float) -> dict[str, float]:
        return {n: a * (k if n in head else min(k, cal.hidden_cap)) for n, a in alpha.items()}

    scales = []
    k = cal.min_scale
    while k <= cal.max_scale * (1 + 1e-9):
        scales.append(k)
        k *= cal.growth
    start = code_report(model, views, labels, forget_classes)
    target = max(cal.margin, start["forget_margin"]) if cal.mirror else cal.margin
    retain_floor = max(cal.retain_margin, cal.retain_keep * start["retain_margin"])
    work = copy.deepcopy(model)
    found: dict[str, tuple[float, dict]] = {}
    fallback: dict[str, tuple[float, float, dict]] = {}  # sign -> (forget margin, scale, report)
    for s, sgn in (("-", -1.0), ("+", 1.0)):
        for k in scales:
            if found and k > min(v[0] for v in found.values()):
                break  # a larger scale cannot win: the smaller qualifying scale is chosen below
            _write_step(work, model, eta, gains(k), sgn)
            rep = code_report(work, views, labels, forget_classes)
            if rep["retain_margin"] <= retain_floor:
                break  # larger steps only damage more: stop this sign here
            suppressed = rep["forget_on_retain"] < start["forget_on_retain"] or not cal.suppress
            if not suppressed:
                continue
            if s not in fallback or rep["forget_margin"] < fallback[s][0]:
                fallback[s] = (rep["forget_margin"], k, rep)
            if rep["forget_margin"] < -target:
                found[s] = (k, rep)
                break
    scores = {s: fallback[s][2] if s in fallback else {} for s in ("+", "-")}
    guard = {
        "target_margin": float(target),
        "retain_floor": float(retain_floor),
        "protect_rows": bool(cal.protect_rows and head),
        "hidden_cap": float(cal.hidden_cap),
        "views_skipped": unkept if cal.only_kept_views else 0,
    }
    tie = False
    if found:
        if len(found) == 2 and found["+"][0] == found["-"][0]:
            tie = True
            sign = "+" if found["+"][1]["log_p_gap"] >= found["-"][1]["log_p_gap"] else "-"
        else:
            sign = min(found, key=lambda s: found[s][0])
        scale = found[sign][0]
    elif fallback:
        sign = min(fallback, key=lambda s: fallback[s][0])
        scale = fallback[sign][1]
        rep = fallback[sign][2]
        warnings.append(
            f"calibration could not push the forget codes {target:.3g} nats below another class "
            f"while every remaining code keeps its class: the largest safe scale {scale:g} leaves the "
            f"forget codes at margin {rep['forget_margin']:+.3g} (smallest remaining-code margin "
            f"{rep['retain_margin']:+.3g}); this class may not be forgotten. A larger step costs remaining "
            "classes: to take one knowingly, use step='paper' with a larger lambda2 (no guard applies there)"
        )
    else:
        sign, scale = "-", 0.0
        warnings.append(
            "calibration found no scale that suppresses the forget class while every remaining code "
            f"keeps its class (smallest remaining-code margin at the input: {start['retain_margin']:+.3g}); "
            "the model is unchanged"
        )
    if found or fallback:
        rep = found[sign][1] if found else fallback[sign][2]
        guard |= {"forget_margin": float(rep["forget_margin"]), "retain_margin": float(rep["retain_margin"])}
    guard |= {"scale": float(scale), "hidden_scale": float(min(scale, cal.hidden_cap))}
    sgn = 1.0 if sign == "+" else -1.0
    return perturbed(model, eta, gains(scale), sgn), sign, scale, scores, tie, guard


def output_layer(model: nn.Module) -> list[str]:
    """Names of the trainable tensors of the output layer: ``model.head`` when it is an
    ``nn.Linear`` (every model of the kit), else the model's last ``nn.Linear``; empty when
    it has none."""
    head = getattr(model, "head", None)
    found = "head" if isinstance(head, nn.Linear) else None
    if found is None:
        for name, m in model.named_modules():
            if isinstance(m, nn.Linear):
                found = name
    if found is None:
        return []
    names = set(trainable(model))
    return [n for n in (f"{found}.weight", f"{found}.bias") if n in names]


def protect_retained_rows(model: nn.Module, eta: Fisher, forget_classes: Iterable[int]) -> Fisher:
    """``eta`` with the output layer's rows of every class but ``forget_classes`` set to 0.

    Those rows are the remaining classes' own scores: moving them shifts a
    remaining class's logit on every input, real data included, and the code
    criterion cannot see it (the codes are memorised with large margins).
    """
    out = dict(eta)
    for n in output_layer(model):
        keep = torch.zeros(eta[n].shape[0], dtype=eta[n].dtype, device=eta[n].device)
        keep[list(forget_classes)] = 1.0
        out[n] = eta[n] * keep.view((-1,) + (1,) * (eta[n].dim() - 1))
    return out


__all__ = [
    "Calibration",
    "ForgetRecord",
    "MULTI_MODES",
    "Matching",
    "PAPER_LAMBDA1_GRID",
    "PAPER_LAMBDA2_GRID",
    "STEPS",
    "check_codes_fit",
    "check_model_finite",
    "code_report",
    "code_views",
    "fisher_ratio",
    "forget",
    "layer_alphas",
    "perturbed",
]
