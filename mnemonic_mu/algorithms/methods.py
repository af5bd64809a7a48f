"""The registry of unlearning methods: the mnemonic step and its variants beside the baselines.

One signature for all (:mod:`mnemonic_mu.algorithms.method_api`), one registry
(:data:`METHODS`, a dict), each variant a small diff from its base method
(:func:`_variant`).  :data:`INPUT_MODEL` names the trained model each method
starts from; :data:`VERSIONS` keys the results each method's code made.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from ..defaults import default
from ..errors import ConfigError
from .baselines import finetune, fisher_forgetting, neggrad, ours_with_data, random_label, retrain, ssd
from .fisher import code_fisher
from .forget import Calibration, forget
from .method_api import MethodResult, Timer, UnlearnData, model_device, need_data, val_score
from .metrics import check_forget_classes


def mnemonic(
    model: nn.Module,
    codes: torch.Tensor,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    step: str | None = None,
    lambda1: float | None = None,
    lambda2: float | None = None,
    lambda1_grid: Sequence[float] | None = None,
    lambda2_grid: Sequence[float] | None = None,
    calibration: Calibration | None = None,
) -> MethodResult:
    """One-shot forgetting with mnemonic codes (Yamashita, Yamada, Shibata, "One-Shot Machine
    Unlearning with Mnemonic Code", ACML 2024): wraps :func:`mnemonic_mu.algorithms.forget.forget`.

    eta = f_F / f_R from the code Fisher (Eq. 6-7), per-layer alpha_l (Eq. 5), the
    sign chosen on the codes.  With ``lambda1`` and ``lambda2`` given, no data is
    touched; otherwise (lambda1, lambda2) are chosen over the paper's grid by
    ``A_R + E_F`` on the validation split (the code Fisher is computed once; the
    search costs forward passes only and counts in the time).  ``calibration`` sets the
    calibrated step's rules (default: :class:`~mnemonic_mu.algorithms.forget.Calibration`).
    """
    lambda1_grid = lambda1_grid or default("lambda1_grid")
    lambda2_grid = lambda2_grid or default("lambda2_grid")
    with Timer() as t:
        forget_classes = check_forget_classes(forget_classes, len(codes))
        fishers = code_fisher(model, codes.to(model_device(model)), method="batched")
        search: list[dict] = []
        if lambda1 is not None and lambda2 is not None:
            new, record = forget(model, codes, forget_classes, lambda1, lambda2, step=step, calibration=calibration,
                                 per_class_fisher=fishers)
        else:
            data = need_data("mnemonic_tuned", data)
            best = None
            for l1 in lambda1_grid:
                for l2 in lambda2_grid:
                    cand, rec = forget(model, codes, forget_classes, l1, l2, step=step, calibration=calibration,
                                       per_class_fisher=fishers)
                    score = val_score(cand, data, forget_classes)
                    search.append({"lambda1": l1, "lambda2": l2, "val_score": score})
                    if best is None or score > best[0]:
                        best = (score, cand, rec)
            assert best is not None, "the lambda grids are not empty"
            _, new, record = best
    return MethodResult(
        model=new,
        seconds=t.seconds,
        backward_passes=len(codes),
        chosen={"lambda1": record.lambda1, "lambda2": record.lambda2, "step": record.step},
        search=search,
        info={"sign": record.sign, "sign_tie": record.sign_tie, "scale": record.scale, "warnings": record.warnings,
              "guard": record.guard, "parts": [p.get("guard", {}) for p in record.parts]},
    )


# --------------------------------------------------------------------------
# Registry

MethodFn = Callable[..., MethodResult]


def _variant(base: MethodFn, doc: str, **preset) -> MethodFn:
    """``base`` with some settings preset: a variant is a small diff from its base method."""
    fn = functools.partial(base, **preset)
    fn.__doc__ = doc
    fn.__name__ = f"{base.__name__}[{', '.join(f'{k}={v}' for k, v in preset.items())}]"  # type: ignore[attr-defined]
    return fn


METHODS: dict[str, MethodFn] = {
    "mnemonic_tuned": _variant(
        mnemonic,
        "mnemonic with (lambda1, lambda2) chosen on the validation split over the paper's grid (paper step).",
        step="paper",
    ),
    "mnemonic_paper": _variant(
        mnemonic,
        "mnemonic with the paper's step and MNIST lambdas (1e-3, 10) fixed: codes only, no data at all.",
        step="paper",
        lambda1=1e-3,
        lambda2=10.0,
    ),
    "mnemonic_calibrated": _variant(
        mnemonic,
        "mnemonic with this kit's calibrated step (codes only, see forget.py), paper lambdas fixed.",
        step="calibrated",
        lambda1=1e-3,
        lambda2=10.0,
    ),
    "mnemonic_calibrated_v1": _variant(
        mnemonic,
        "mnemonic with the calibrated step as it stood before the retain guard (Calibration.v1(): every "
        "parameter on one scale, margin 2), paper lambdas fixed: kept to compare against.",
        step="calibrated",
        lambda1=1e-3,
        lambda2=10.0,
        calibration=Calibration.v1(),
    ),
    "ours_with_data": ours_with_data,
    "retrain": retrain,
    "finetune": finetune,
    "neggrad": neggrad,
    "neggrad_plus": _variant(
        neggrad,
        "NegGrad+ (Kurmanji et al., NeurIPS 2023): neggrad with retain weights beta in (0.95, 0.9, 0.99) "
        "(descend on retain data too), lr in (0.01, 0.05), up to 10 epochs over the retain data; their "
        "code's beta 0.95, lr 0.01, 10 epochs come first in the grid.",
        retain_weights=(0.95, 0.9, 0.99),
        lrs=(1e-2, 5e-2),
        epochs=10,
    ),
    "random_label": random_label,
    "ssd": ssd,
    "fisher_forgetting": fisher_forgetting,
}

# Which trained model each method starts from ("original" = trained with codes).
INPUT_MODEL: dict[str, str] = {name: "original" for name in METHODS} | {"ours_with_data": "no_codes"}
# The version of each method's code: bump one when a change alters its numbers, and the
# sweep and the report recompute that method's rows (mnemonic_mu.io.store).
VERSIONS: dict[str, int] = {name: 1 for name in METHODS} | {
    "mnemonic_calibrated": 2,
    # 2: the reference implementations' estimators and defaults, the Selection rule (baselines.py);
    # 3: Selection's collapse_ratio 0.5 -> 0.95 (chosen on validation: benchmarks/validation_studies.py)
    "fisher_forgetting": 3,
    "ssd": 3,
    "neggrad": 3,
    "neggrad_plus": 3,
}


def unlearn(
    name: str,
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    **settings,
) -> MethodResult:
    """Run registered method ``name``; checks that the input model is left untouched."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    result = METHODS[name](model, codes, forget_classes, data, seed=seed, **settings)
    for n, p in model.state_dict().items():
        if not torch.equal(p, before[n]):
            raise RuntimeError(f"method {name!r} modified its input model ({n}); this is a bug")
    return result


__all__ = ["INPUT_MODEL", "METHODS", "MethodResult", "UnlearnData", "VERSIONS", "mnemonic", "unlearn"]
