"""The registry of unlearning methods: the mnemonic step and its variants beside the baselines.

A method is one :class:`Method` entry of :data:`METHODS`: its function (the one signature of
:mod:`~mnemonic_mu.algorithms.method_api`), what it sees of the data (one of :data:`SEES`), the
trained model it starts from, the version of its code (in the keys of its cached results), the
grid it searches on the validation split, the settings it takes from
:class:`~mnemonic_mu.settings.Settings`, its source and a one-line description.  A variant is
the same function with other ``fixed`` arguments or another grid.  The settings' default and
validator, the CLI help, the sweep, the results tables, the report pages and docs/baselines.md
(:func:`markdown_table`) read the registry.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .baselines import finetune, fisher_forgetting, neggrad, ours_with_data, random_label, retrain, ssd
from .fisher import code_fisher
from .forget import PAPER_LAMBDA1_GRID, PAPER_LAMBDA2_GRID, Calibration, Matching, forget
from .jit import jit
from .lfssd import lfssd
from .method_api import MethodResult, Timer, UnlearnData, model_device, need_data, val_score
from .metrics import check_forget_classes
from .salun import salun
from .scrub import scrub
from .zero_shot import emmn


def mnemonic(
    model: nn.Module,
    codes: torch.Tensor,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    step: str | None = None,
    lambda1: float | None = None,
    lambda2: float | None = None,
    lambda1_grid: Sequence[float] = (),
    lambda2_grid: Sequence[float] = (),
    calibration: Calibration | None = None,
) -> MethodResult:
    """One-shot forgetting with mnemonic codes (Yamashita, Yamada, Shibata, "One-Shot Machine
    Unlearning with Mnemonic Code", ACML 2024): wraps :func:`mnemonic_mu.algorithms.forget.forget`.

    eta = f_F / f_R from the code Fisher (Eq. 6-7), per-layer alpha_l (Eq. 5), the
    sign chosen on the codes.  With ``lambda1`` and ``lambda2`` given, no data is
    touched, and the step is the one the pipeline's row ``mnemonic`` takes (the same call of
    :func:`~mnemonic_mu.algorithms.forget.forget`, so the same weights to the bit); otherwise
    (lambda1, lambda2) are chosen over ``lambda1_grid`` x ``lambda2_grid`` by ``A_R + E_F`` on
    the validation split (the per-class code Fishers are computed once; the search costs forward
    passes only and counts in the time).  ``calibration`` sets the calibrated step's rules
    (default: :class:`~mnemonic_mu.algorithms.forget.Calibration`); the matched step draws its
    level offset from ``seed`` (:class:`~mnemonic_mu.algorithms.forget.Matching`).
    """
    with Timer() as t:
        forget_classes = check_forget_classes(forget_classes, len(codes))
        search: list[dict] = []
        if lambda1 is not None and lambda2 is not None:
            new, record = forget(
                model,
                codes,
                forget_classes,
                lambda1,
                lambda2,
                step=step,
                calibration=calibration,
                fisher_method="batched",
                matching=Matching(seed=seed),
            )
        else:
            data = need_data("mnemonic_tuned", data)
            if not lambda1_grid or not lambda2_grid:
                raise ConfigError(
                    "mnemonic needs lambda1 and lambda2, or non-empty lambda1_grid and lambda2_grid "
                    "to choose them from on the validation split"
                )
            fishers = code_fisher(model, codes.to(model_device(model)), method="batched")
            best = None
            for l1 in lambda1_grid:
                for l2 in lambda2_grid:
                    cand, rec = forget(
                        model,
                        codes,
                        forget_classes,
                        l1,
                        l2,
                        step=step,
                        calibration=calibration,
                        per_class_fisher=fishers,
                        matching=Matching(seed=seed),
                    )
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
        info={
            "sign": record.sign,
            "sign_tie": record.sign_tie,
            "scale": record.scale,
            "warnings": record.warnings,
            "guard": record.guard,
            "parts": [p.get("guard", {}) for p in record.parts],
        },
    )


# --------------------------------------------------------------------------
# The registry

MethodFn = Callable[..., MethodResult]

# What a method sees of the request's data, from the least to the most; the test split is never
# among it.  A method with a grid also reads the validation split to choose among the grid.
SEES: dict[str, str] = {
    "nothing": "the model and its codes only: no sample of any split",
    "validation split": "the model, its codes and the validation split (to choose its hyperparameters); "
    "no training sample",
    "forget samples": "the forget classes' training samples",
    "retain samples": "the remaining classes' training samples",
    "forget and retain samples": "training samples of the forget classes and of the remaining classes",
}
INPUT_MODELS = ("original", "no_codes")  # the trained models a method can start from (pipeline.ROLES but retrain)


@dataclass(frozen=True)
class Method:
    """One unlearning method, whole: an entry of :data:`METHODS`.

    ``function`` has the one signature of :mod:`~mnemonic_mu.algorithms.method_api` and is called
    with ``fixed`` (the arguments that make a variant: the step, fixed lambdas), ``grid`` (the
    values it searches, choosing on the validation split; a whole number ``n`` there, such as
    ``epochs``, offers every value 1..n) and, from a request's settings, the
    :class:`~mnemonic_mu.settings.Settings` fields named in ``settings`` (they override the
    grid).  ``sees`` is one of :data:`SEES`; ``input_model`` one of :data:`INPUT_MODELS`;
    ``version`` keys the results its code made (bump it when a change alters its numbers: the
    sweep and the report recompute that method's rows, :mod:`mnemonic_mu.io.store`).
    ``reference``: a reference row of every request rather than a method to compare (retrain:
    trained once and cached), so not among the default baselines.  ``default``: among the default
    baselines (:func:`baseline_names`, run by every report and sweep that does not name its
    methods); False makes a method opt-in (named in ``baselines``), for one whose cost on a laptop
    request would lengthen the first-touch path (``make report``) by more than it shows there.
    ``backward_passes``: what the backward passes its result counts are, in words.
    """

    name: str
    function: MethodFn
    sees: str
    description: str
    source: str = ""
    input_model: str = "original"
    version: int = 1
    grid: Mapping[str, Any] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    settings: tuple[str, ...] = ()
    reference: bool = False
    default: bool = True
    backward_passes: str = ""

    def __post_init__(self) -> None:
        if self.sees not in SEES:
            raise ConfigError(f"method {self.name!r}: sees must be one of {', '.join(SEES)}, got {self.sees!r}")
        if self.input_model not in INPUT_MODELS:
            raise ConfigError(
                f"method {self.name!r}: input_model must be one of {', '.join(INPUT_MODELS)}, got {self.input_model!r}"
            )
        params = inspect.signature(self.function).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unknown = [k for k in (*self.fixed, *self.grid, *self.settings) if k not in params]
            if unknown:
                raise ConfigError(f"method {self.name!r}: its function takes no argument {unknown[0]!r}")
        both = set(self.fixed) & set(self.grid)
        if both:
            raise ConfigError(f"method {self.name!r}: {sorted(both)[0]!r} is both fixed and a grid")

    def arguments(self, **options) -> dict[str, Any]:
        """The keyword arguments of its function: ``fixed``, then ``grid``, then ``options``."""
        return dict(self.fixed) | dict(self.grid) | options

    def __call__(
        self,
        model: nn.Module,
        codes: torch.Tensor | None,
        forget_classes: Iterable[int],
        data: UnlearnData | None = None,
        seed: int = 0,
        **options,
    ) -> MethodResult:
        """Run the method: its function with :meth:`arguments` (``options`` override the entry's)."""
        return self.function(model, codes, forget_classes, data, seed=seed, **self.arguments(**options))


_PAPER_LAMBDAS = {"lambda1": 1e-3, "lambda2": 10.0}  # the paper's MNIST lambdas
_PAPER_GRID = {"lambda1_grid": PAPER_LAMBDA1_GRID, "lambda2_grid": PAPER_LAMBDA2_GRID}
_PAPER = "Yamashita, Yamada, Shibata, ACML 2024"
_GOLATKAR = "Golatkar, Achille, Soatto, CVPR 2020"
_SSD_GRID = {"alphas": (10.0, 1.0, 3.0, 30.0, 100.0), "lambdas": (1.0, 0.1, 0.5, 5.0)}  # ssd's and lfssd's
_ZERO_SHOT = "Chundawat, Tarun, Mandal, Kankanhalli, IEEE TIFS 2023 (arXiv 2201.05629)"
# Fixed values (EMMN sees no validation split to choose on); where each comes from, and why GKT
# is not registered: docs/baselines.md, "Zero-shot unlearning".
_EMMN = {
    "noise_per_class": 256,
    "noise_steps": 100,
    "noise_lr": 0.1,
    "noise_lambda": 0.1,
    "impair_lr": 0.02,
    "repair_lr": 0.01,
    "batch_size": 256,
}

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "mnemonic_tuned",
            mnemonic,
            "validation split",
            "the paper's step with (lambda1, lambda2) chosen by validation A_R + E_F over the settings' grids",
            source=_PAPER + "; there tuned on the test split",
            grid=_PAPER_GRID,
            fixed={"step": "paper"},
            settings=("lambda1_grid", "lambda2_grid"),
            backward_passes="|C| (one per class code)",
        ),
        Method(
            "mnemonic_paper",
            mnemonic,
            "nothing",
            "the paper's step (Eq. 5-7) with its MNIST lambdas fixed",
            source=_PAPER,
            version=2,
            fixed={"step": "paper"} | _PAPER_LAMBDAS,
            backward_passes="|C|",
        ),
        Method(
            "mnemonic_calibrated",
            mnemonic,
            "nothing",
            "this kit's calibrated step (docs/calibration.md) with the paper's lambdas: the row `mnemonic` at "
            "the default settings",
            source="this kit",
            version=3,
            fixed={"step": "calibrated"} | _PAPER_LAMBDAS,
            backward_passes="|C|",
        ),
        Method(
            "mnemonic_matched",
            mnemonic,
            "nothing",
            "this kit's matched step (docs/matched.md): each forget class's output row set to retrain's level, "
            "chosen on validation with the per-example attack; nothing else moves",
            source="this kit",
            version=1,
            fixed={"step": "matched"} | _PAPER_LAMBDAS,
            backward_passes="0",
        ),
        Method(
            "mnemonic_calibrated_v1",
            mnemonic,
            "nothing",
            "the calibrated step as it stood before the retain guard (`Calibration.v1()`: every parameter on one "
            "scale, margin 2), kept to compare against",
            source="this kit",
            version=2,
            fixed={"step": "calibrated"} | _PAPER_LAMBDAS | {"calibration": Calibration.v1()},
            backward_passes="|C|",
        ),
        Method(
            "ours_with_data",
            ours_with_data,
            "forget and retain samples",
            "the paper's ablation: the same step with per-sample Fishers of forget and retain samples (at most "
            "10,000 each) on the model trained without codes; (lambda1, lambda2, sign) by validation A_R + E_F",
            source=_PAPER + ", its ablation",
            input_model="no_codes",
            grid=_PAPER_GRID,
            backward_passes="one per sample drawn",
        ),
        Method(
            "retrain",
            retrain,
            "retain samples",
            "train from scratch on the retain samples with the original's recipe: the gold standard (the sweep "
            "takes it from the model cache)",
            source=f"e.g. {_GOLATKAR}",
            reference=True,
            backward_passes="epochs x retain samples",
        ),
        Method(
            "finetune",
            finetune,
            "retain samples",
            "fine-tune on the retain samples; forgetting by catastrophic forgetting; chosen by validation A_R + E_F",
            source=_GOLATKAR,
            grid={"lrs": (0.01, 0.05), "epochs": 5},
            backward_passes="one per sample per epoch",
        ),
        Method(
            "neggrad",
            neggrad,
            "forget samples",
            "gradient ascent on the forget samples; chosen by the selection rule (`Selection`)",
            source=f"{_GOLATKAR}; Kurmanji et al., NeurIPS 2023",
            version=3,
            grid={"lrs": (1e-3, 1e-2, 5e-2, 1e-1), "epochs": 5},
            backward_passes="one per sample per epoch",
        ),
        Method(
            "neggrad_plus",
            neggrad,
            "forget and retain samples",
            "NegGrad+: each step descends beta x CE on a retain batch and ascends (1 - beta) x CE on a forget "
            "batch, an epoch one pass over the retain data (their code's beta 0.95, lr 0.01, 10 epochs first); "
            "chosen by the selection rule",
            source="Kurmanji, Triantafillou, Hayes, Triantafillou, NeurIPS 2023",
            version=3,
            grid={"retain_weights": (0.95, 0.9, 0.99), "lrs": (1e-2, 5e-2), "epochs": 10},
            backward_passes="one per sample per epoch",
        ),
        Method(
            "random_label",
            random_label,
            "forget and retain samples",
            "fine-tune on the forget samples relabelled with a random remaining class, each batch paired with "
            "retain samples; chosen by validation A_R + E_F",
            source="Graves, Nagisetty, Ganesh, AAAI 2021; the RL of SalUn, Fan et al., ICLR 2024",
            grid={"lrs": (0.01, 0.05), "epochs": 5},
            backward_passes="one per sample per epoch",
        ),
        Method(
            "ssd",
            ssd,
            "forget and retain samples",
            "Selective Synaptic Dampening: shrink the parameters far more important to the forget samples than "
            "to all training samples; chosen by the selection rule",
            source="Foster, Schoepf, Brintrup, AAAI 2024",
            version=3,
            grid=_SSD_GRID,
            backward_passes="one per sample (in mini-batches of 64)",
        ),
        Method(
            "fisher_forgetting",
            fisher_forgetting,
            "retain samples",
            "Gaussian noise scaled by the inverse Fisher of the retain samples, the forget classes' output rows "
            "reset; chosen by the selection rule",
            source=_GOLATKAR,
            version=3,
            grid={"alphas": (1e-6, 1e-8, 1e-7, 3e-7, 3e-6, 1e-5)},
            backward_passes="K (classes) per retain sample",
        ),
        Method(
            "scrub",
            scrub,
            "forget and retain samples",
            "SCRUB: a student initialised from the original ascends the tempered KL divergence from the original on "
            "forget batches (max-steps, in the first `msteps` epochs only) and descends alpha x KL + gamma x CE on "
            "retain batches (min-steps); chosen by the selection rule",
            source="Kurmanji, Triantafillou, Hayes, Triantafillou, NeurIPS 2023",
            grid={"lrs": (5e-4, 1e-3, 2e-3, 5e-3), "msteps": (2, 3), "epochs": 5},
            fixed={
                "alpha": 0.001,
                "gamma": 0.99,
                "temperature": 4.0,
                "forget_batch_size": 32,
                "retain_batch_size": 128,
                "lr_decay_after": 3,
            },
            backward_passes="one per forget sample per max epoch, one per retain sample per epoch",
            default=False,
        ),
        Method(
            "lfssd",
            lfssd,
            "forget and retain samples",
            "Loss-Free SSD: SSD's selection and dampening with label-free importances, the mean absolute gradient "
            "of the squared l2 norm of the model's output, over the forget inputs and over every training input "
            "(their labels never read); chosen by the selection rule",
            source="Foster, Schoepf, Brintrup, ICLR 2024 Tiny Papers (arXiv 2402.19308)",
            grid=_SSD_GRID,
            backward_passes="one per sample (in mini-batches of 64)",
            default=False,
        ),
        Method(
            "jit",
            jit,
            "forget samples",
            "JiT: one epoch of plain SGD, a step per forget input (no label, no retain sample), down the mean "
            "Lipschitz ratio ||f(x) - f(x')|| / ||x - x'|| over N = 25 Gaussian copies x' of it; (sigma, lr) from "
            "the authors' full-class settings, chosen on the validation split by the selection rule",
            source="Foster, Fogarty, Schoepf, Öztireli, Brintrup, arXiv 2402.01401 (2024; TMLR 2025)",
            grid={"sigmas": (0.5, 0.8), "lrs": (3e-4, 1.5)},
            backward_passes="N + 1 per forget sample per candidate",
            default=False,
        ),
        Method(
            "salun",
            salun,
            "forget and retain samples",
            "SalUn: a saliency mask keeps the weights with the largest |gradient| of the forget samples' "
            "cross-entropy (one threshold over the whole model), then random-label fine-tuning (as `random_label`) "
            "moves only those; their released settings (ratio 0.5, lr 0.013, 10 epochs) first; chosen by the "
            "selection rule",
            source="Fan, Liu, Zhang, Wong, Wei, Liu, ICLR 2024",
            grid={"mask_ratios": (0.5, 0.3, 0.7), "lrs": (0.013, 0.005, 0.03), "epochs": 10},
            backward_passes="one per forget sample (the mask), then one per sample per epoch",
            default=False,
        ),
        Method(
            "zero_shot_emmn",
            emmn,
            "nothing",
            "error minimising-maximising noise: noise that maximises the model's loss for each forget class and "
            "minimises it for each retain class (L2 penalty), then one impair pass over all the noise and one repair "
            "pass over the retain noise; the paper's fixed values, no selection",
            source=_ZERO_SHOT,
            fixed=_EMMN,
            backward_passes="K x noise_per_class x (noise_steps + 1) + retain noise (one per noise sample per step)",
            default=False,
        ),
    )
}


def get_method(name: str) -> Method:
    """The entry of registered method ``name``, or one clear ConfigError naming the others."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def method_choices() -> tuple[str, ...]:
    """The registered methods a request may compare with the step (every one but the references),
    in registry order: what the setting ``baselines`` accepts."""
    return tuple(name for name, m in METHODS.items() if not m.reference)


def baseline_names() -> tuple[str, ...]:
    """The default of the setting ``baselines``: :func:`method_choices` but the opt-in ones
    (:attr:`Method.default` False), in registry order."""
    return tuple(name for name in method_choices() if METHODS[name].default)


def row_sees(row: str) -> str:
    """What the results row ``row`` saw of the data: a registered method's :attr:`Method.sees`;
    ``mnemonic`` (the kit's step at the request's settings) "nothing"; "-" for the trained models
    ``original`` and ``no_codes`` (not unlearned) and for a name the registry does not hold."""
    if row in METHODS:
        return METHODS[row].sees
    return "nothing" if row == "mnemonic" else "-"


def by_sees(rows: Iterable[str]) -> list[str]:
    """``rows`` in the order every table lists them: the trained models (:data:`INPUT_MODELS`)
    and the registry's reference (retrain) first, then the methods grouped by what they see
    (:func:`row_sees`, in :data:`SEES` order, the least data first; the kit's step ``mnemonic``
    first among those that see nothing); the given order within a group (the sort is stable)."""
    rank = {sees: i for i, sees in enumerate(SEES)}

    def reference(row: str) -> bool:
        return row in INPUT_MODELS or (row in METHODS and METHODS[row].reference)

    return sorted(rows, key=lambda n: (not reference(n), rank.get(row_sees(n), -1), n != "mnemonic"))


def uses_selection(row: str) -> bool:
    """Whether registered method ``row`` chooses among its grid by the selection rule
    (:class:`~mnemonic_mu.algorithms.baselines.Selection`: its function takes ``selection``)."""
    return row in METHODS and "selection" in inspect.signature(METHODS[row].function).parameters


def unlearn(
    name: str,
    model: nn.Module,
    codes: torch.Tensor | None,
    forget_classes: Iterable[int],
    data: UnlearnData | None = None,
    seed: int = 0,
    **options,
) -> MethodResult:
    """Run registered method ``name`` (``options`` override its entry's arguments); checks that the
    input model is left untouched."""
    entry = get_method(name)
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    result = entry(model, codes, forget_classes, data, seed=seed, **options)
    for n, p in model.state_dict().items():
        if not torch.equal(p, before[n]):
            raise RuntimeError(f"method {name!r} modified its input model ({n}); this is a bug")
    return result


# --------------------------------------------------------------------------
# The registry as a table (docs/baselines.md)

TABLE_START, TABLE_END = "<!-- methods:start -->", "<!-- methods:end -->"  # docs/baselines.md's generated table


def _show(value: Any) -> str:
    """A fixed argument's value in words: a dataclass by the fields that differ from its defaults."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changed = [
            f"{f.name}={getattr(value, f.name)!r}"
            for f in dataclasses.fields(value)
            if f.default is not dataclasses.MISSING and getattr(value, f.name) != f.default
        ]
        return f"{type(value).__name__}({', '.join(changed)})"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _arguments(m: Method) -> str:
    fixed = [f"`{k}`={_show(v)}" for k, v in m.fixed.items()]
    grid = [
        f"`{k}` 1..{v}"
        if isinstance(v, int) and not isinstance(v, bool)
        else f"`{k}` {{{', '.join(_show(x) for x in v)}}}"
        for k, v in m.grid.items()
    ]
    own = "its settings " + ", ".join(f"`{k}`" for k in m.settings) if m.settings else ""
    return "; ".join(filter(None, (", ".join(fixed), " x ".join(grid), own))) or "-"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a pipe would end the cell


_TABLE_COLUMNS: dict[str, Callable[[Method], str]] = {
    "method": lambda m: f"`{m.name}`",
    "sees": lambda m: m.sees,
    "starts from": lambda m: m.input_model,
    "arguments (fixed; grid chosen on validation; settings)": _arguments,
    "backward passes": lambda m: m.backward_passes or "-",
    "version": lambda m: str(m.version),
    "default": lambda m: "reference" if m.reference else ("yes" if m.default else "opt-in"),
    "what it does": lambda m: m.description,
    "source": lambda m: m.source or "-",
}


def markdown_table(columns: Iterable[str] = tuple(_TABLE_COLUMNS)) -> str:
    """The registry as a markdown table, one row per method: ``columns`` of :data:`_TABLE_COLUMNS`.
    docs/baselines.md holds all of them, then :func:`sees_table`, between :data:`TABLE_START` and
    :data:`TABLE_END`; notebook 07 shows it."""
    columns = list(columns)
    unknown = [c for c in columns if c not in _TABLE_COLUMNS]
    if unknown:
        raise ConfigError(f"unknown column {unknown[0]!r}; choose from {', '.join(_TABLE_COLUMNS)}")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(_TABLE_COLUMNS[c](m)) for c in columns) + " |" for m in METHODS.values()]
    return "\n".join(lines) + "\n"


def sees_table() -> str:
    """:data:`SEES` as a markdown table, from the least to the most (docs/baselines.md, below
    :func:`markdown_table`)."""
    lines = ["| sees | what the method reads |", "|---|---|"]
    lines += [f"| {name} | {_cell(what)} |" for name, what in SEES.items()]
    return "\n".join(lines) + "\n"


__all__ = [
    "INPUT_MODELS",
    "METHODS",
    "SEES",
    "TABLE_END",
    "TABLE_START",
    "Method",
    "MethodResult",
    "UnlearnData",
    "baseline_names",
    "method_choices",
    "get_method",
    "markdown_table",
    "mnemonic",
    "row_sees",
    "uses_selection",
    "sees_table",
    "unlearn",
]
