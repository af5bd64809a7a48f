"""The method's stages, top to bottom; every driver runs these functions.

    data -> codes -> train or load (original, no-codes, retrain) -> code Fisher
         -> forget -> evaluate -> attacks -> baselines

Each stage is a function from explicit inputs to explicit outputs.  Keys,
caching and files happen at one boundary, :mod:`mnemonic_mu.io.store`
(datasets and trained models); the stages themselves only compute.
``mnemonic-mu experiment`` runs one request through :func:`run_request`; the
sweep maps :func:`run_request`'s parts over (seed, class) requests; the
notebooks call the same functions one stage per notebook
(:mod:`mnemonic_mu.notebook_stages`); :func:`score` scores every model for
all of them, so a number means the same thing wherever it is shown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

from .algorithms.attacks import run_attacks
from .algorithms.codes import generate_codes
from .algorithms.dataset import Dataset
from .algorithms.fisher import Fisher, code_fisher
from .algorithms.forget import Calibration, ForgetRecord, Matching, forget
from .algorithms.indistinguishability import divergence_from_retrain
from .algorithms.methods import MethodResult, UnlearnData, get_method, unlearn
from .algorithms.metrics import (
    check_forget_classes,
    evaluate,
    forgetting_scores,
    gap_to_retrain,
    predict_logits,
    tug_of_war_from_rows,
)
from .bands import request_band
from .errors import ConfigError
from .io import store
from .io.artifacts import file_lock
from .io.checkpoint import Checkpoint
from .runtime import environment, parallel_map, setup, worker_count
from .settings import Settings

# The trained models of a request: with codes, the same recipe without codes, and
# retrain (from scratch without the forget classes: the gold standard).
ROLES = ("original", "no_codes", "retrain")


# --------------------------------------------------------------------------
# 1. Data


def load_data(s: Settings) -> Dataset:
    """The dataset of ``s``, split by ``s.split_seed`` (cached: :func:`mnemonic_mu.io.store.load_data`)."""
    return store.load_data(s)


# --------------------------------------------------------------------------
# 2. Codes (section 1 of docs/method.md)


def make_codes(s: Settings, dataset: Dataset) -> torch.Tensor:
    """One code per class, drawn from ``s.code_dist`` with its own generator seeded by ``s.seed``."""
    return generate_codes(dataset.num_classes, dataset.input_shape, s.code_dist, s.seed)


# --------------------------------------------------------------------------
# 3. Train or load (Algorithm 1)


def recipes(s: Settings, forget_classes: Iterable[int]) -> dict:
    """The :class:`TrainConfig` of each role: codes at ``t_mix``; none; retain data only."""
    return {
        "original": s.train_config(),
        "no_codes": s.train_config(t_mix=0.0),
        "retrain": s.train_config(exclude=tuple(forget_classes)),
    }


def train_models(
    s: Settings, dataset: Dataset, roles: Iterable[str] = ROLES, device=None, progress: bool = False
) -> dict[str, tuple[Checkpoint, bool]]:
    """``{role: (checkpoint, from_cache)}``: each model trained once per key, then loaded
    (together as one computation with ``s.trainer == "ensemble"``)."""
    device = device or setup(s)
    forget_classes = check_forget_classes(s.forget_classes, dataset.num_classes)
    recipe = recipes(s, forget_classes)
    return store.train_many(s, dataset, {role: recipe[role] for role in roles}, device, progress)


def band_request(s: Settings, band_seed: int) -> Settings:
    """The settings of one band reference: the request of ``s`` with seed ``band_seed``."""
    return s.replace(seed=int(band_seed), band_seeds=())


def train_band_reference(
    s: Settings, dataset: Dataset, band_seed: int, device=None, progress: bool = False
) -> tuple[Checkpoint, bool]:
    """``(checkpoint, from_cache)`` of the retrain reference of the request of ``s`` trained
    with seed ``band_seed`` (own initial weights, codes and batch order; cached like every
    model, so the requests of a sweep that forget the same class share it)."""
    return train_models(band_request(s, band_seed), dataset, ("retrain",), device, progress)["retrain"]


def train_band(
    s: Settings, dataset: Dataset, device=None, progress: bool = False
) -> dict[int, tuple[Checkpoint, bool]]:
    """``{band seed: (checkpoint, from_cache)}``: :func:`train_band_reference` for each of ``s.band_seeds``."""
    device = device or setup(s)
    return {b: train_band_reference(s, dataset, b, device, progress) for b in s.band_seeds}


# --------------------------------------------------------------------------
# 4. The code Fisher (Eq. 6)


def code_fishers(model: torch.nn.Module, codes: torch.Tensor) -> list[Fisher]:
    """One diagonal Fisher per class, each from one backward pass on that class's code."""
    return code_fisher(model, codes.to(next(model.parameters()).device))


# --------------------------------------------------------------------------
# 5. Forget (Eq. 5-7 and the calibrated step)


@dataclass
class Unlearned:
    """The model after the one-shot step, what the step did, and its median time."""

    model: torch.nn.Module
    record: ForgetRecord
    seconds: float


def forget_step(
    s: Settings,
    model: torch.nn.Module,
    codes: torch.Tensor,
    forget_classes,
    per_class: list[Fisher] | None = None,
    lambdas: tuple[float, float] | None = None,
    repeats: int = 3,
) -> Unlearned:
    """The step of ``s.step`` with ``(s.lambda1, s.lambda2)`` (or ``lambdas``), timed after a
    warm-up as the median of ``repeats`` runs (the step is deterministic: every run gives the
    same weights)."""
    lambda1, lambda2 = lambdas or (s.lambda1, s.lambda2)
    kwargs: dict[str, Any] = dict(
        step=s.step, calibration=Calibration(multi=s.multi), per_class_fisher=per_class, matching=Matching(seed=s.seed)
    )
    forget(model, codes, forget_classes, lambda1, lambda2, **kwargs)  # warm-up
    runs = [forget(model, codes, forget_classes, lambda1, lambda2, **kwargs) for _ in range(repeats)]
    seconds = sorted(r.seconds for _, r in runs)[len(runs) // 2]
    new, record = runs[-1]
    return Unlearned(new, record, seconds)


def lambda_sweep(
    s: Settings, model, codes, dataset: Dataset, forget_classes, per_class=None, split: str = "val"
) -> dict:
    """A_R and E_F on ``split`` (the validation split: never the test split) for every
    (lambda1, lambda2) of the settings' grids; ``[i][j]`` is lambda1_grid[i], lambda2_grid[j]."""
    per_class = per_class or code_fishers(model, codes)
    x, y = dataset.split(split)
    out: dict[str, Any] = {
        "split": split,
        "lambda1_grid": list(s.lambda1_grid),
        "lambda2_grid": list(s.lambda2_grid),
        "A_R": [],
        "E_F": [],
        "sign": [],
    }
    cal = Calibration(multi=s.multi)
    for l1 in s.lambda1_grid:
        rows: tuple[list, list, list] = ([], [], [])
        for l2 in s.lambda2_grid:
            new, rec = forget(
                model, codes, forget_classes, l1, l2, step=s.step, calibration=cal, per_class_fisher=per_class
            )
            a_r, e_f = forgetting_scores(predict_logits(new, x), y, forget_classes)
            rows[0].append(a_r)
            rows[1].append(e_f)
            rows[2].append(rec.sign + ("?" if rec.sign_tie else ""))
        for key, row in zip(("A_R", "E_F", "sign"), rows):
            out[key].append(row)
    return out


def forget_every_class(
    model: torch.nn.Module,
    codes: torch.Tensor,
    dataset: Dataset,
    lambda1: float,
    lambda2: float,
    steps: Sequence[str] = ("paper", "calibrated"),
) -> list[dict]:
    """Forget each class in turn from the same model with each step; one row per (step, class).

    Rows hold test A_R / E_F, the sign, whether the sign test tied, the scale and the
    number of warnings, so a reader sees which requests a step fails on.  Costs
    ``len(steps) * num_classes`` one-shot steps, no training.
    """
    rows = []
    for step in steps:
        for c in range(dataset.num_classes):
            new, rec = forget(model, codes, [c], lambda1, lambda2, step=step, calibration=Calibration())
            ev = evaluate(new, dataset, [c], splits=("test",))
            rows.append(
                {
                    "step": step,
                    "class": c,
                    "A_R": ev["A_R"],
                    "E_F": ev["E_F"],
                    "sign": rec.sign,
                    "sign_tie": rec.sign_tie,
                    "scale": rec.scale,
                    "forgotten": ev["E_F"] >= 99.0,
                    "warnings": len(rec.warnings),
                }
            )
    return rows


def best_lambdas(sweep: dict) -> tuple[float, float, float]:
    """(lambda1, lambda2, A_R + E_F) maximising A_R + E_F of a sweep (first on ties)."""
    best = None
    for i, l1 in enumerate(sweep["lambda1_grid"]):
        for j, l2 in enumerate(sweep["lambda2_grid"]):
            score_ = sweep["A_R"][i][j] + sweep["E_F"][i][j]
            if best is None or score_ > best[2] + 1e-9:
                best = (l1, l2, score_)
    assert best is not None, "a sweep has at least one (lambda1, lambda2)"
    return best


def record_row(record: ForgetRecord, seconds: float) -> dict:
    """What a results row keeps of a :class:`ForgetRecord`."""
    keep = (
        "step",
        "multi",
        "sign",
        "sign_tie",
        "scale",
        "lambda1",
        "lambda2",
        "backward_passes",
        "forget_code_predicted",
        "retain_codes_kept",
        "warnings",
        "alpha",
        "parts",
        "guard",
    )
    return {k: getattr(record, k) for k in keep} | {"seconds": seconds, "forget_seconds": seconds}


# --------------------------------------------------------------------------
# 6-7. Evaluate and attack: the one scoring function


def score(model: torch.nn.Module, retrain_model: torch.nn.Module | None, dataset: Dataset, s: Settings) -> dict:
    """Accuracies (test and train, per class, confusion matrix; percent), the attacks of
    ``s.attacks`` and the output divergence from the retrain reference (Jensen-Shannon and
    activation distance on forget-test and retain-test), for one model of the request of ``s``."""
    forget_classes = check_forget_classes(s.forget_classes, dataset.num_classes)
    row = evaluate(model, dataset, forget_classes)
    attacks = run_attacks(
        model, retrain_model, dataset, forget_classes, seed=s.seed, attacks=s.attacks, probe_max_train=s.probe_max_train
    )
    row["attacks"] = attacks
    row["divergence"] = (
        divergence_from_retrain(model, retrain_model, dataset, forget_classes) if retrain_model else None
    )
    return row


def compare_to_retrain(row: dict, ref: dict | None) -> dict:
    """``{"gap", "tow"}`` of a row against the retrain row ``ref``: the gap
    (:func:`~mnemonic_mu.algorithms.metrics.gap_to_retrain`) and Tug-of-War
    (:func:`~mnemonic_mu.algorithms.metrics.tug_of_war_from_rows`); None without ``ref``."""
    if not ref:
        return {"gap": None, "tow": None}
    return {"gap": gap_to_retrain(row, ref), "tow": tug_of_war_from_rows(row, ref)}


def add_gaps(rows: dict[Any, dict], ref: dict | None = None) -> dict[Any, dict]:
    """Add :func:`compare_to_retrain` to every row (against ``rows["retrain"]`` unless ``ref``);
    ``rows`` are a request's rows by method or its band rows by band seed."""
    ref = ref if ref is not None else rows.get("retrain")
    for row in rows.values():
        row.update(compare_to_retrain(row, ref))
    return rows


def score_band(
    s: Settings, band: dict[int, Checkpoint], retrain_model: torch.nn.Module, dataset: Dataset, retrain_row: dict
) -> dict[int, dict]:
    """``{band seed: row}``: each band reference scored like a method against the request's
    retrain (:func:`band_row`, gap and ToW against ``retrain_row``)."""
    return add_gaps({b: band_row(s, ck, retrain_model, dataset) for b, ck in band.items()}, retrain_row)


def band_row(s: Settings, ck: Checkpoint, retrain_model: torch.nn.Module, dataset: Dataset) -> dict:
    """One band reference's row: :func:`score` against the request's retrain, and its :func:`reference_row`."""
    return score(ck.model, retrain_model, dataset, s) | reference_row(ck, dataset)


# --------------------------------------------------------------------------
# 8. Baselines (the registry of algorithms/methods.py)


def run_method(
    name: str, s: Settings, dataset: Dataset, models: dict[str, Checkpoint], data: UnlearnData | None = None
) -> MethodResult:
    """Registered method ``name`` on the request of ``s``, from the trained model it expects
    (its entry's ``input_model``), with the settings its entry names as its own.

    Data-based methods see retain / forget training data and the validation split (what each
    sees: its entry's ``sees``), never the test split; the mnemonic variants see only the model
    and its codes.
    """
    entry = get_method(name)
    missing = [k for k in entry.settings if k not in Settings.names()]
    if missing:
        raise ConfigError(f"method {name!r} takes the setting {missing[0]!r}, which Settings does not have")
    forget_classes = check_forget_classes(s.forget_classes, dataset.num_classes)
    data = data or UnlearnData.from_dataset(dataset, forget_classes, s.train_config())
    start = models[entry.input_model]
    own = {k: getattr(s, k) for k in entry.settings}
    return unlearn(name, start.model, start.codes, forget_classes, data, seed=s.seed, **own)


def score_method(
    name: str, s: Settings, dataset: Dataset, models: dict[str, Checkpoint], data: UnlearnData | None = None
) -> dict:
    """Method ``name`` run on the request (:func:`run_method`) and its model scored against
    retrain (:func:`score`): one results row, the same for every driver."""
    result = run_method(name, s, dataset, models, data)
    return score(result.model, models["retrain"].model, dataset, s) | method_row(result, name)


def method_row(result: MethodResult, name: str) -> dict:
    return {
        "seconds": result.seconds,
        "backward_passes": result.backward_passes,
        "chosen": result.chosen,
        "input_model": get_method(name).input_model,
        "info": {k: v for k, v in result.info.items() if k != "warnings"},
        "warnings": list(result.info.get("warnings", [])),
    }


# --------------------------------------------------------------------------
# One request, every stage


def reference_row(ck: Checkpoint, dataset: Dataset) -> dict:
    """What a results row keeps of a trained reference: its time, its cost, its key."""
    exclude = ck.config["train"]["exclude_classes"]
    kept = ~torch.isin(dataset.y_train, torch.tensor(exclude, dtype=dataset.y_train.dtype))
    return {
        "seconds": float(ck.config["train_seconds"]),
        "backward_passes": int(ck.config["train"]["epochs"]) * int(kept.sum()),
        "checkpoint": str(ck.folder),
        "key": ck.config["key"],
        "exclude_classes": list(exclude),
        "t_mix": ck.config["train"]["t_mix"],
        "replaced_fraction": ck.config["replaced_fraction"],
    }


def run_request(s: Settings, progress: bool = False, roles: Iterable[str] = ROLES, bar: bool | None = False) -> dict:
    """Every stage for the request of ``s``: train or load the models of ``roles`` (retrain
    and the original always), forget with ``s.step``, score it, the references and every
    method of ``s.baselines``.

    Returns ``{"settings", "environment", "rows": {name: row}, "band_rows": {seed: row},
    "band", "total_seconds"}``; rows ``original``, ``no_codes``, ``retrain`` (references, as
    ``roles`` asks), ``mnemonic`` (the step of ``s``) and one per baseline, each with
    accuracies, attacks, divergence, ``gap`` and ``tow``; ``band_rows`` the retrain
    references of ``s.band_seeds`` scored the same way; ``band`` what
    :func:`mnemonic_mu.bands.request_band` makes of them (None without band seeds).

    The models, the rows and the baselines are independent of each other: with
    ``s.workers`` other than 1 they run in that many processes (:func:`parallel_rows`), with
    the same numbers as in one.  ``bar``: a progress bar over those tasks (None: on a terminal).
    """
    start = time.perf_counter()
    device = setup(s)
    dataset = load_data(s)
    forget_classes = check_forget_classes(s.forget_classes, dataset.num_classes)
    roles = tuple(r for r in ROLES if r in set(roles) | {"original", "retrain"})
    work = plan(s, dataset, roles)
    timing: dict = {"workers": work["workers"], "trained": work["to_train"], "rows": work["rows"]}
    if work["workers"] > 1:
        rows, band_rows = parallel_rows(s, dataset, roles, progress=bar, timing=timing)
    else:
        rows, band_rows = _sequential_rows(s, dataset, roles, forget_classes, device, progress, timing)
    return {
        "settings": s.to_dict(),
        "environment": environment(device),
        "rows": rows,
        "band_rows": band_rows,
        "band": request_band(rows, band_rows),
        "timing": timing,
        "total_seconds": time.perf_counter() - start,
    }


def plan(s: Settings, dataset: Dataset, roles: Iterable[str] = ROLES) -> dict:
    """What :func:`run_request` will do for ``s``, before it starts: ``{"models": {name: in
    the cache?}, "to_train", "rows", "baselines", "workers"}`` (band references named
    ``band<seed>``; rows: every reference, the step, each baseline and each band reference)."""
    forget_classes = check_forget_classes(s.forget_classes, dataset.num_classes)
    recipe = recipes(s, forget_classes)
    models = {role: store.is_cached(s, dataset, recipe[role]) for role in roles}
    for b in s.band_seeds:
        band = band_request(s, b)
        models[f"band{b}"] = store.is_cached(band, dataset, recipes(band, forget_classes)["retrain"])
    n_rows = len(models) + 1 + len(s.baselines)
    return {
        "models": models,
        "to_train": sum(not c for c in models.values()),
        "rows": n_rows,
        "baselines": list(s.baselines),
        "workers": worker_count(s.workers, max(len(models), n_rows)),
    }


def _sequential_rows(s: Settings, dataset: Dataset, roles, forget_classes, device, progress: bool, timing: dict):
    """:func:`run_request`'s rows and band rows, one after the other in this process."""
    t0 = time.perf_counter()
    trained = train_models(s, dataset, roles, device=device, progress=progress)
    train_seconds = time.perf_counter() - t0
    models = {role: ck for role, (ck, _) in trained.items()}
    retrain_model = models["retrain"].model
    rows: dict[str, dict] = {}
    for role, (ck, cached) in trained.items():
        rows[role] = score(ck.model, retrain_model, dataset, s) | reference_row(ck, dataset) | {"from_cache": cached}
    original = models["original"]
    unlearned = forget_step(s, original.model, original.codes, forget_classes)
    rows["mnemonic"] = score(unlearned.model, retrain_model, dataset, s) | record_row(
        unlearned.record, unlearned.seconds
    )
    data = UnlearnData.from_dataset(dataset, forget_classes, s.train_config()) if s.baselines else None
    for name in s.baselines:
        rows[name] = score_method(name, s, dataset, models, data)
    add_gaps(rows)
    t1 = time.perf_counter()
    band = {b: ck for b, (ck, _) in train_band(s, dataset, device, progress).items()}
    train_seconds += time.perf_counter() - t1
    band_rows = score_band(s, band, retrain_model, dataset, rows["retrain"])
    timing |= {"train_seconds": train_seconds, "score_seconds": time.perf_counter() - t0 - train_seconds}
    return rows, band_rows


# --------------------------------------------------------------------------
# Rows kept on disk: the notebooks' stages 05-06 and the report's prefetch share them

# What each kind of row depends on: its key holds these algorithm versions.
_SCORED = ("data", "codes", "train", "evaluate", "attacks", "divergence")
ROW_COMPONENTS = {"reference": _SCORED, "mnemonic": _SCORED + ("fisher", "forget")}


def row_components(name: str) -> tuple[str, ...]:
    """The algorithm versions behind row ``name`` (a reference, ``band<seed>``, the step, a method)."""
    if name in ROLES or name.startswith("band"):  # band<seed>: a band reference
        return ROW_COMPONENTS["reference"]
    if name == "mnemonic":
        return ROW_COMPONENTS["mnemonic"]
    return _SCORED + (f"method:{name}",)


def row_key(s: Settings, name: str) -> str:
    """A row's key: the request's settings and the versions of the code behind that row (not the
    other methods, nor the band seeds: a band reference's row is keyed by its own ``band<seed>``)."""
    d = {k: v for k, v in s.results_dict().items() if k not in ("baselines", "band_seeds")}
    return store.key_of(d | {"method": name}, row_components(name))


def cached_row(s: Settings, name: str, compute) -> dict:
    """``compute()``, the scored row ``name`` of the request of ``s``, kept under
    ``<cache_dir>/rows/`` by :func:`row_key`: computed once, then read.  A process asking for a
    row that another is computing waits for it (a lock) instead of computing it twice."""
    key = row_key(s, name)
    with file_lock(s.cache_path / "locks" / f"row-{key}.lock"):
        rows, _ = store.cached_rows(s.cache_path / "rows" / f"{name}-{key}.json", key, lambda: [compute()], s.use_cache)
    return rows[0]


def reference_score(s: Settings, name: str) -> dict:
    """:func:`score` of reference ``name`` (a role, or ``band<seed>``) against retrain, cached by
    :func:`cached_row`; the models are read from the cache (trained first if missing)."""

    def compute():
        dataset, device = _task_setup(s)
        retrain_model = train_models(s, dataset, ("retrain",), device)["retrain"][0].model
        if name.startswith("band"):
            model = train_band_reference(s, dataset, int(name[4:]), device)[0].model
        else:
            model = train_models(s, dataset, (name,), device)[name][0].model
        return score(model, retrain_model, dataset, s)

    return cached_row(s, name, compute)


def method_score(s: Settings, name: str, data: UnlearnData | None = None) -> dict:
    """:func:`score_method` of registered method ``name`` on the request of ``s``, cached by
    :func:`cached_row`."""

    def compute():
        dataset, device = _task_setup(s)
        roles = tuple(dict.fromkeys(("original", "retrain", get_method(name).input_model)))
        models = {role: ck for role, (ck, _) in train_models(s, dataset, roles, device).items()}
        return score_method(name, s, dataset, models, data)

    return cached_row(s, name, compute)


def prefetch_phases(s: Settings, roles: Iterable[str] = ROLES) -> list[tuple[str, Callable, list[tuple]]]:
    """What :func:`prefetch` computes, phase by phase: ``(label, function, argument tuples)`` of
    every model (:func:`train_task`), then the rows of the references and the band references
    (:func:`reference_score`), then the baselines (:func:`method_score`)."""
    roles = tuple(roles)
    return [
        ("train", train_task, [(s, role) for role in roles] + [(s, "retrain", b) for b in s.band_seeds]),
        ("references", reference_score, [(s, role) for role in roles] + [(s, f"band{b}") for b in s.band_seeds]),
        ("baselines", method_score, [(s, name) for name in s.baselines]),
    ]


def prefetch(s: Settings, roles: Iterable[str] = ROLES, progress: bool | None = False) -> dict:
    """Compute ahead, in ``s.workers`` processes, what the notebooks of the request of ``s``
    will ask for: every model (:func:`train_task`), then the rows of the references, the band
    references and the baselines (:func:`reference_score`, :func:`method_score`), in the order
    the notebooks need them.  Everything lands in the caches the stages read, so a notebook
    that gets there first computes it itself and the other waits (locks): the numbers are the
    same either way.  Returns ``{"trained", "rows", "seconds"}``."""
    start = time.perf_counter()
    (_, _, models), *scored = phases = prefetch_phases(s, roles)
    for label, fn, args in phases:
        parallel_map(fn, args, s.workers, label, progress)
    return {
        "trained": len(models),
        "rows": sum(len(args) for _, _, args in scored),
        "seconds": time.perf_counter() - start,
    }


# --------------------------------------------------------------------------
# The same rows from several processes

_TASK_DATA: dict = {}


def _task_setup(s: Settings) -> tuple[Dataset, torch.device]:
    """A worker's dataset (loaded once per process) and device, threads set as ``s`` says."""
    device = setup(s)
    key = (s.dataset, str(s.data_path), s.split_seed, str(s.cache_path))
    if key not in _TASK_DATA:
        _TASK_DATA.clear()
        _TASK_DATA[key] = load_data(s)
    return _TASK_DATA[key], device


def train_task(s: Settings, role: str, band_seed: int | None = None) -> bool:
    """Train one model of the request of ``s`` into the cache, or find it there (a role, or the
    band reference of ``band_seed``); returns whether it came from the cache."""
    dataset, device = _task_setup(s)
    if band_seed is not None:
        return train_band_reference(s, dataset, band_seed, device)[1]
    return train_models(s, dataset, (role,), device)[role][1]


def row_task(s: Settings, kind: str, name, model: torch.nn.Module | None = None) -> dict:
    """One row of the request of ``s``, its models read from the cache: ``kind`` "reference"
    (role ``name``), "band" (band seed ``name``), "step" (``model``, the step's output) or
    "method" (registered method ``name``), scored by :func:`score` against retrain."""
    dataset, device = _task_setup(s)
    retrain_model = train_models(s, dataset, ("retrain",), device)["retrain"][0].model
    if kind == "reference":
        ck = train_models(s, dataset, (name,), device)[name][0]
        return score(ck.model, retrain_model, dataset, s) | reference_row(ck, dataset)
    if kind == "band":
        return band_row(s, train_band_reference(s, dataset, name, device)[0], retrain_model, dataset)
    if kind == "step":
        if model is None:
            raise ValueError("a 'step' row needs the step's model")
        return score(model, retrain_model, dataset, s)
    if kind == "method":
        roles = tuple(dict.fromkeys(("original", "retrain", get_method(name).input_model)))
        models = {role: ck for role, (ck, _) in train_models(s, dataset, roles, device).items()}
        return score_method(name, s, dataset, models)
    raise ValueError(f"unknown row kind {kind!r}")


def parallel_rows(
    s: Settings, dataset: Dataset, roles=ROLES, progress: bool | None = False, timing: dict | None = None
):
    """``(rows, band_rows)`` of :func:`run_request` computed by ``s.workers`` processes: first
    every model (each trained once into the cache, or found there), then every row and
    baseline, the longest first.  Each task runs one thread as in one process, so the numbers
    are those of the sequential path (a test checks it).  ``timing`` gets the wall seconds of
    the two phases."""
    device = setup(s)
    forget_classes = check_forget_classes(s.forget_classes, dataset.num_classes)
    jobs = [(s, role) for role in roles] + [(s, "retrain", b) for b in s.band_seeds]
    t0 = time.perf_counter()
    cached = parallel_map(train_task, jobs, s.workers, "train", progress)
    t1 = time.perf_counter()
    trained = {role: ck for role, (ck, _) in train_models(s, dataset, roles, device).items()}
    unlearned = forget_step(s, trained["original"].model, trained["original"].codes, forget_classes)
    tasks = [(s, "method", name) for name in s.baselines] + [(s, "reference", role) for role in roles]
    tasks += [(s, "band", b) for b in s.band_seeds] + [(s, "step", "mnemonic", unlearned.model)]
    done = parallel_map(row_task, tasks, s.workers, "score", progress)
    by_task = {(t[1], t[2]): row for t, row in zip(tasks, done)}
    rows = {role: by_task["reference", role] | {"from_cache": c} for role, c in zip(roles, cached)}
    rows["mnemonic"] = by_task["step", "mnemonic"] | record_row(unlearned.record, unlearned.seconds)
    rows |= {name: by_task["method", name] for name in s.baselines}
    add_gaps(rows)
    band_rows = add_gaps({b: by_task["band", b] for b in s.band_seeds}, rows["retrain"])
    if timing is not None:
        timing |= {"train_seconds": t1 - t0, "score_seconds": time.perf_counter() - t1}
    return rows, band_rows


__all__ = [
    "ROLES",
    "ROW_COMPONENTS",
    "cached_row",
    "method_score",
    "prefetch",
    "reference_score",
    "row_components",
    "row_key",
    "Unlearned",
    "add_gaps",
    "band_request",
    "band_row",
    "best_lambdas",
    "code_fishers",
    "compare_to_retrain",
    "forget_every_class",
    "forget_step",
    "lambda_sweep",
    "load_data",
    "make_codes",
    "method_row",
    "parallel_rows",
    "plan",
    "recipes",
    "record_row",
    "reference_row",
    "row_task",
    "run_method",
    "run_request",
    "score",
    "score_band",
    "score_method",
    "train_band",
    "train_band_reference",
    "train_models",
    "train_task",
]
