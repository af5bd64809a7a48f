"""``mnemonic-mu population``: the per-example attack on populations of models.

The experiment of docs/indistinguishability.md ("Per-example attacks on
populations of models"), in the style of U-LiRA (Hayes et al. 2024) and the
NeurIPS 2023 unlearning competition's scorer (Triantafillou et al. 2024), at
laptop scale::

    mnemonic-mu population [--dataset D] [--epochs E] [--forget C] [--models N]
                           [--methods M ...] [--out FILE]

1. **Populations.**  For the N seeds ``s.seed, s.seed + 1, ..., s.seed + N - 1``
   (``0 .. N-1`` by default; :func:`population_seeds`) train, or load from the
   cache (:func:`mnemonic_mu.pipeline.train_models`), one original (with codes)
   and one retrain model (the forget classes excluded) each.  The seed sets a
   model's initial weights, its codes and its batch order, so the N originals
   differ in all three; the data split (``split_seed``) is the same for all.
2. **Unlearning.**  Every original is unlearned by every method: ``mnemonic``
   (the settings' own step, :func:`mnemonic_mu.pipeline.forget_step`) and the
   registered methods (:func:`mnemonic_mu.pipeline.run_method`, each from the
   model its entry of :data:`~mnemonic_mu.algorithms.methods.METHODS` names as its
   ``input_model``, with that seed's settings).  The untouched original is always scored too, as the
   method ``original`` (no unlearning): it shows where "not forgotten at all"
   lies on the scale.
3. **Confidences.**  Each model's logit-scaled confidence
   ``phi = log(p_y / (1 - p_y))`` of the true class on the **forget examples**:
   the training examples of the forget classes, the ones the originals learned
   and that must be forgotten (:func:`forget_examples`).  A ``(N, examples)``
   array per method and one for retrain.
4. **Scores**, per method against the retrain population
   (:mod:`mnemonic_mu.algorithms.indistinguishability`): the per-example
   epsilons and the bucketed forget score at N models per side, the U-LiRA
   accuracy, and, at half the models, the same forget score and U-LiRA accuracy
   on the seeded splits of :func:`~mnemonic_mu.algorithms.indistinguishability.retrain_halves`
   (the method's models of one half against the retrain models of the other
   half), beside the **finite-N floor**: retrain half against retrain half on
   the very same splits (:func:`~mnemonic_mu.algorithms.indistinguishability.forget_score_floor`).

The result is one JSON file (:func:`run_population`; the command that made it,
the settings, per method the scores, the floor, the cost in seconds and the
hardware).  :func:`render_docs` turns the committed
``docs/results/population/*.json`` into the block of docs/indistinguishability.md
between :data:`DOCS_START` and :data:`DOCS_END` (``mnemonic-mu population
--render-docs``); a test renders it again and compares, so no number there is
typed by hand.
"""

from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from .. import pipeline
from ..algorithms import indistinguishability as I
from ..algorithms.dataset import Dataset
from ..algorithms.methods import METHODS, UnlearnData, method_choices
from ..algorithms.metrics import check_forget_classes, forgetting_scores, predict_logits
from ..errors import ConfigError
from ..io.artifacts import atomic_write_text, write_json
from ..options import add_options, option
from ..paths import project_root
from ..runtime import environment, setup
from ..settings import Settings
from ..version import __version__
from .common import settings_from_args

ORIGINAL = "original"  # the untouched original: no unlearning, always scored
STEP = "mnemonic"  # the settings' own step (pipeline.forget_step)
DEFAULT_METHODS = (STEP, "mnemonic_paper", "mnemonic_matched", "finetune", "ssd")
DEFAULT_MODELS = 16  # models per population (the competition used 512)
MIN_MODELS = 6  # the floor splits the retrain population into halves of at least 3
REPEATS = 5  # seeded half splits of the floor and of the half-size scores
RESULTS_DIR = ("docs", "results", "population")  # the committed results, under the repository root
DOCS_PAGE = ("docs", "indistinguishability.md")
DOCS_START, DOCS_END = "<!-- population:start -->", "<!-- population:end -->"
SEED_RULE = (
    "model i of each population (i = 0 .. N-1) has seed settings.seed + i: its initial weights, codes and batch order"
)

# the settings the command line takes (the training recipe, the request, the step; where it runs)
POPULATION_OPTIONS = (
    "dataset",
    "data_root",
    "split_seed",
    "model",
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "cosine",
    "t_mix",
    "code_dist",
    "seed",
    "trainer",
    "forget_classes",
    "step",
    "multi",
    "lambda1",
    "lambda2",
    "device",
    "threads",
    "cache_dir",
    "use_cache",
)
_RUNTIME_OPTIONS = ("data_root", "device", "threads", "cache_dir", "use_cache")


# --------------------------------------------------------------------------
# The plan


def check_methods(methods: Iterable[str]) -> tuple[str, ...]:
    """The methods to score, ``original`` first (always scored), each once; one clear error
    for a name that is not ``original``, ``mnemonic`` or a registered method."""
    methods = tuple(methods)
    if any(not isinstance(m, str) for m in methods):
        raise ConfigError(f"methods must be names, got {methods!r}")
    if "retrain" in methods:
        raise ConfigError(
            "retrain is the reference population (N retrain models are always trained); leave it out of --methods"
        )
    allowed = (ORIGINAL, STEP) + method_choices()
    unknown = [m for m in methods if m not in allowed]
    if unknown:
        raise ConfigError(f"unknown method {unknown[0]!r}; choose from {', '.join(allowed)}")
    if len(set(methods)) != len(methods):
        raise ConfigError(f"list each method once, got {' '.join(methods)}")
    return (ORIGINAL,) + tuple(m for m in methods if m != ORIGINAL)


def population_seeds(s: Settings, n_models: int) -> tuple[int, ...]:
    """The seeds of the N models of each population: ``s.seed .. s.seed + N - 1`` (:data:`SEED_RULE`)."""
    if isinstance(n_models, bool) or not isinstance(n_models, (int, np.integer)):
        raise ConfigError(f"the number of models must be an integer, got {n_models!r}")
    if int(n_models) < MIN_MODELS:
        raise ConfigError(
            f"the number of models must be at least {MIN_MODELS} (the floor splits the retrain "
            f"population into two halves of at least 3), got {n_models}"
        )
    return tuple(s.seed + i for i in range(int(n_models)))


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(seeds)
    if any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 0 for x in seeds):
        raise ConfigError(f"seeds must be non-negative integers, got {list(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError("list each seed once: two models of one seed are the same model")
    if len(seeds) < MIN_MODELS:
        raise ConfigError(
            f"a population needs at least {MIN_MODELS} seeds (the floor splits the retrain "
            f"population into two halves of at least 3), got {len(seeds)}"
        )
    return tuple(int(x) for x in seeds)


def seed_settings(s: Settings, seed: int) -> Settings:
    """The request of ``s`` for the model of seed ``seed`` (a population needs no retrain band
    of its own: ``band_seeds``, where the settings have it, is emptied so no seed clashes)."""
    extra = {"band_seeds": ()} if "band_seeds" in Settings.names() else {}
    return s.replace(seed=int(seed), **extra)


def forget_examples(dataset: Dataset, forget_classes: Iterable[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The forget examples: the training examples of the forget classes (seen by every original,
    never by retrain), in the split's order, the same for every model of a population."""
    fc = check_forget_classes(forget_classes, dataset.num_classes)
    mask = torch.isin(dataset.y_train, torch.tensor(fc, dtype=dataset.y_train.dtype))
    if not bool(mask.any()):
        raise ConfigError(f"the training split holds no example of the forget classes {list(fc)}")
    return dataset.x_train[mask], dataset.y_train[mask]


def roles_for(methods: Iterable[str]) -> tuple[str, ...]:
    """The trained models the methods start from, plus the original and retrain."""
    need = {ORIGINAL, "retrain"} | {METHODS[m].input_model for m in methods if m in METHODS}
    return tuple(r for r in pipeline.ROLES if r in need)


# --------------------------------------------------------------------------
# Populations, one seed at a time


def unlearn(method: str, s: Settings, dataset: Dataset, models: dict, data: UnlearnData | None = None):
    """``(model, seconds)``: method ``method`` on the request of ``s`` (one seed).  ``original``
    returns the original itself (0 s); ``mnemonic`` is the settings' step (its median time,
    :func:`~mnemonic_mu.pipeline.forget_step`); any other name is a registered method
    (:func:`~mnemonic_mu.pipeline.run_method`, its own wall time)."""
    if method == ORIGINAL:
        return models[ORIGINAL].model, 0.0
    if method == STEP:
        original = models[ORIGINAL]
        done = pipeline.forget_step(s, original.model, original.codes, s.forget_classes)
        return done.model, float(done.seconds)
    result = pipeline.run_method(method, s, dataset, models, data)
    return result.model, float(result.seconds)


@torch.no_grad()
def _scores(model, x_forget, y_forget, x_test, y_test, forget_classes) -> tuple[np.ndarray, dict]:
    """One model's confidences on the forget examples and its accuracies (%)."""
    logits = predict_logits(model, x_forget).double()
    phi = I.logit_scaled_confidence(logits, y_forget.cpu().long())
    a_r, e_f = forgetting_scores(predict_logits(model, x_test), y_test.cpu(), forget_classes)
    forget_error = 100.0 * float((logits.argmax(1) != y_forget.cpu()).double().mean())
    return phi, {"test_A_R": a_r, "test_E_F": e_f, "forget_train_error": forget_error}


def collect_population(
    s: Settings,
    dataset: Dataset,
    seeds: Sequence[int],
    methods: Sequence[str],
    device=None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Train or load the two populations and unlearn every original with every method, one seed
    at a time (a seed's models are dropped once scored).

    Returns ``{"confidences": {name: (N, examples) array}, "accuracy": {name: [per model]},
    "seconds": {name: [per model]}, "trained": [per model and role], "wall": {...}}``, names
    being ``retrain`` and each method (``original`` included).
    """
    device = device or setup(s)
    fc = check_forget_classes(s.forget_classes, dataset.num_classes)
    methods = check_methods(methods)
    seeds = _check_seeds(seeds)
    x_forget, y_forget = forget_examples(dataset, fc)
    x_test, y_test = dataset.split("test")
    names = ("retrain",) + methods
    phi: dict[str, list[np.ndarray]] = {n: [] for n in names}
    acc: dict[str, list] = {n: [] for n in names}
    secs: dict[str, list[float]] = {n: [] for n in names}
    trained_log, wall = [], {"train": 0.0, "unlearn": 0.0, "confidences": 0.0}
    for i, seed in enumerate(seeds):
        si = seed_settings(s, seed)
        t0 = time.perf_counter()
        trained = pipeline.train_models(si, dataset, roles_for(methods), device=device, progress=progress)
        wall["train"] += time.perf_counter() - t0
        models = {role: ck for role, (ck, _) in trained.items()}
        for role, (ck, cached) in trained.items():
            trained_log.append(
                {
                    "seed": int(seed),
                    "role": role,
                    "from_cache": bool(cached),
                    "train_seconds": float(ck.config["train_seconds"]),
                    "key": ck.config["key"],
                }
            )
        data = UnlearnData.from_dataset(dataset, fc, si.train_config()) if set(methods) - {ORIGINAL, STEP} else None
        todo = [("retrain", models["retrain"].model, float(models["retrain"].config["train_seconds"]))]
        for m in methods:
            t0 = time.perf_counter()
            model, seconds = unlearn(m, si, dataset, models, data)
            wall["unlearn"] += time.perf_counter() - t0
            todo.append((m, model, seconds))
        t0 = time.perf_counter()
        for name, model, seconds in todo:
            p, a = _scores(model, x_forget, y_forget, x_test, y_test, fc)
            phi[name].append(p)
            acc[name].append(a)
            secs[name].append(seconds)
        wall["confidences"] += time.perf_counter() - t0
        if log:
            n_cached = sum(c for _, c in trained.values())
            log(
                f"seed {seed} ({i + 1}/{len(seeds)}): {len(trained)} models ({n_cached} from the cache), "
                f"{len(methods)} methods scored"
            )
    return {
        "confidences": {n: np.stack(v) for n, v in phi.items()},
        "accuracy": acc,
        "seconds": secs,
        "trained": trained_log,
        "wall": wall,
        "n_examples": int(len(y_forget)),
    }


# --------------------------------------------------------------------------
# Scores


def bucket_counts(epsilons, cap: float) -> dict:
    """How many examples fall in each of the scorer's buckets (:func:`~mnemonic_mu.algorithms.
    indistinguishability.bucket_points`): ``{"labels", "points", "counts"}``, the last bucket
    being "at or beyond the last bucket's end" (0 points)."""
    eps = np.asarray(epsilons, dtype=np.float64)
    w = I.BUCKET_WIDTH
    n = int(math.floor(cap / w + 1e-9))
    k = np.minimum(np.floor(eps / w), n).astype(int)
    labels = [f"[{_g(j * w)}, {_g((j + 1) * w)})" for j in range(n)] + [f">= {_g(n * w)}"]
    points = [2.0**-j for j in range(n)] + [0.0]
    return {"labels": labels, "points": points, "counts": [int((k == j).sum()) for j in range(n + 1)]}


def _g(x: float) -> str:
    return f"{x:g}"


def _summary(xs) -> dict:
    """Pooled statistics of a confidence array; for a ``(models, examples)`` array also the spread
    over models of each model's median (``median_sd_models``: how far one model's median moves
    from seed to seed)."""
    arr = np.asarray(xs, dtype=np.float64)
    flat = arr.ravel()
    out = {
        "mean": float(flat.mean()),
        "median": float(np.median(flat)),
        "p05": float(np.quantile(flat, 0.05)),
        "p95": float(np.quantile(flat, 0.95)),
        "min": float(flat.min()),
        "max": float(flat.max()),
    }
    if arr.ndim == 2 and len(arr) > 1:
        out["median_sd_models"] = float(np.median(arr, 1).std())
    return out


def _mean_std(xs) -> dict:
    xs = np.asarray([x for x in xs if x is not None and math.isfinite(x)], dtype=np.float64)
    if xs.size == 0:
        return {"mean": None, "std": None}
    return {"mean": float(xs.mean()), "std": float(xs.std())}


def score_method(unlearned: np.ndarray, retrain: np.ndarray, repeats: int = REPEATS, seed: int = 0) -> dict:
    """One method's scores against the retrain population (module doc, step 4).

    ``full``: N vs N models (the per-example epsilons summarised and bucketed, the forget
    score, the U-LiRA accuracy); ``half``: for each of ``repeats`` splits ``a, b =
    retrain_halves(N, seed + i)``, the method's models ``a`` against the retrain models ``b``
    (the floor's splits, so this is the number to read against :func:`floor`)."""
    u, r = np.asarray(unlearned), np.asarray(retrain)
    fs = I.forget_score(u, r)
    full = {
        "n_per_side": int(len(u)),
        "cap": fs["cap"],
        "forget_score": fs["score"],
        "epsilon": _summary(fs["epsilons"]),
        "buckets": bucket_counts(fs["epsilons"], fs["cap"]),
        "ulira_accuracy": I.ulira_accuracy(u, r, seed=seed)["accuracy"],
        "klom": I.klom(u, r)["value"],
    }
    scores, ulira, kloms = [], [], []
    for i in range(int(repeats)):
        a, b = I.retrain_halves(len(r), seed + i)
        scores.append(I.forget_score(u[a], r[b])["score"])
        ulira.append(I.ulira_accuracy(u[a], r[b], seed=seed + i)["accuracy"] if len(a) >= 4 else None)
        kloms.append(I.klom(u[a], r[b])["value"])
    h = len(r) // 2
    half = {
        "n_per_side": h,
        "cap": I.epsilon_cap(h, h),
        "forget_score": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "scores": scores,
        "ulira_accuracy": _mean_std(ulira),
        "klom": _mean_std(kloms),
    }
    return {"full": full, "half": half}


def floor(retrain: np.ndarray, repeats: int = REPEATS, seed: int = 0) -> dict:
    """The finite-N floor: retrain half against retrain half on the splits of :func:`score_method`
    (:func:`~mnemonic_mu.algorithms.indistinguishability.forget_score_floor`), with the epsilons
    of those splits pooled and bucketed and the U-LiRA accuracy of the same halves."""
    r = np.asarray(retrain)
    out = I.forget_score_floor(r, seed=seed, repeats=repeats)
    per_split, ulira, kloms = [], [], []
    for i in range(int(repeats)):
        a, b = I.retrain_halves(len(r), seed + i)
        per_split.append(I.per_example_epsilon(r[a], r[b]))
        ulira.append(I.ulira_accuracy(r[a], r[b], seed=seed + i)["accuracy"] if len(a) >= 4 else None)
        kloms.append(I.klom(r[a], r[b])["value"])
    eps = np.concatenate(per_split)
    return {
        "n_per_half": out["n_per_half"],
        "cap": out["cap"],
        "forget_score": out["score"],
        "std": out["std"],
        "scores": out["scores"],
        "epsilon": _summary(eps),
        "buckets": bucket_counts(eps, out["cap"]),
        "ulira_accuracy": _mean_std(ulira),
        "klom": _mean_std(kloms),
    }


# --------------------------------------------------------------------------
# The experiment


def run_population(
    s: Settings,
    n_models: int = DEFAULT_MODELS,
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: Sequence[int] | None = None,
    repeats: int = REPEATS,
    out: str | Path | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    keep_confidences: bool = False,
    full_floor: bool = False,
) -> dict:
    """The experiment of the module doc for the request of ``s`` (its ``forget_classes``).

    ``n_models`` models per population, seeds ``s.seed .. s.seed + n_models - 1`` unless
    ``seeds`` names them; ``methods`` besides ``original`` (always scored); ``repeats`` half
    splits for the floor and the half-size scores; ``out`` only names the output in the
    recorded command.  Returns the JSON-ready result (see docs/indistinguishability.md);
    ``keep_confidences`` adds the ``(N, examples)`` arrays under ``"confidences"`` (not JSON).
    ``full_floor`` trains N more retrain models (:func:`floor_seeds`) and scores the floor at the
    full size too, N retrains against the other N (``floor["full"]``): the number to read the
    methods' N-vs-N scores against.
    """
    start = time.perf_counter()
    methods = check_methods(methods)
    seeds = _check_seeds(population_seeds(s, n_models) if seeds is None else seeds)
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ConfigError(f"repeats must be a positive integer, got {repeats!r}")
    device = setup(s)
    dataset = pipeline.load_data(s)
    fc = check_forget_classes(s.forget_classes, dataset.num_classes)
    pop = collect_population(s, dataset, seeds, methods, device=device, progress=progress, log=log)
    t0 = time.perf_counter()
    r = pop["confidences"]["retrain"]
    rows = {}
    for name in methods:
        rows[name] = {
            "input_model": METHODS[name].input_model if name in METHODS else ORIGINAL,
            "confidence": _summary(pop["confidences"][name]),
            "accuracy": {k: _mean_std(a[k] for a in pop["accuracy"][name]) for k in pop["accuracy"][name][0]},
            "seconds_per_model": _mean_std(pop["seconds"][name]),
        } | score_method(pop["confidences"][name], r, repeats=repeats)
    fl = floor(r, repeats=repeats)
    extra: dict = {"models": 0, "from_cache": 0, "train_seconds": 0.0, "wall": 0.0}
    if full_floor:
        fl["full"], extra = full_size_floor(s, dataset, seeds, r, device, progress, log)
    score_seconds = time.perf_counter() - t0 - extra["wall"]  # the extra retrains count as training
    env = environment(device)
    trained = pop["trained"]
    result = {
        "command": population_command(s, len(seeds), methods, repeats, out, seeds, full_floor),
        "settings": s.results_dict(),
        "plan": {
            "n_models": len(seeds),
            "seeds": list(seeds),
            "seed_rule": SEED_RULE,
            "methods": list(methods),
            "repeats": int(repeats),
            "half_splits": "indistinguishability.retrain_halves(N, i), i = 0 .. repeats-1",
        },
        "forget_examples": {
            "split": "train",
            "classes": list(fc),
            "n": pop["n_examples"],
            "what": "the training examples of the forget classes: learned by every original, never seen by retrain",
        },
        "retrain": {
            "confidence": _summary(r),
            "accuracy": {k: _mean_std(a[k] for a in pop["accuracy"]["retrain"]) for k in pop["accuracy"]["retrain"][0]},
        },
        "methods": rows,
        "floor": fl,
        "cost": {
            "models_trained": len(trained) + extra["models"],
            "models_from_cache": sum(t["from_cache"] for t in trained) + extra["from_cache"],
            # the extra retrains of the full-size floor (0 without --full-floor), included above
            "floor_models": extra["models"],
            "floor_train_seconds": extra["train_seconds"],
            # each model's own training time, as recorded when it was trained (possibly by an earlier run)
            "train_seconds": float(sum(t["train_seconds"] for t in trained)) + extra["train_seconds"],
            "train_seconds_per_model": float(np.mean([t["train_seconds"] for t in trained])),
            "train_wall_seconds": pop["wall"]["train"] + extra["wall"],  # this run: training, or loading from the cache
            "unlearn_seconds": {m: float(sum(pop["seconds"][m])) for m in methods},  # each method's own time
            "unlearn_wall_seconds": pop["wall"]["unlearn"],
            "score_seconds": pop["wall"]["confidences"] + score_seconds,  # forward passes + the attacks
            "total_seconds": time.perf_counter() - start,
        },
        "hardware": {
            k: env.get(k) for k in ("processor", "cpu_count", "torch", "device", "torch_threads", "gpu") if k in env
        },
        "environment": env,
        "versions": {"package": __version__, "indistinguishability": I.VERSION},
    }
    if keep_confidences:
        result["confidences"] = pop["confidences"]
    return result


def floor_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """The seeds of the extra retrain models of the full-size floor: the N seeds after the
    population's largest (``max(seeds) + 1 .. max(seeds) + N``), so no model is shared."""
    top = max(seeds)
    return tuple(top + 1 + i for i in range(len(seeds)))


def full_size_floor(s: Settings, dataset: Dataset, seeds: Sequence[int], retrain: np.ndarray, device, progress, log):
    """``(floor, cost)``: N more retrain models (:func:`floor_seeds`, trained or loaded from the
    cache) against the population's N retrains, scored like a method at N vs N."""
    fc = check_forget_classes(s.forget_classes, dataset.num_classes)
    x_forget, y_forget = forget_examples(dataset, fc)
    t0 = time.perf_counter()
    extra_seeds = floor_seeds(seeds)
    phi, cost = [], {"models": 0, "from_cache": 0, "train_seconds": 0.0}
    for seed in extra_seeds:
        ck, cached = pipeline.train_models(
            seed_settings(s, seed), dataset, ("retrain",), device=device, progress=progress
        )["retrain"]
        phi.append(I.population_confidences([ck.model], x_forget, y_forget)[0])
        cost["models"] += 1
        cost["from_cache"] += int(cached)
        cost["train_seconds"] += float(ck.config["train_seconds"])
        if log:
            log(f"floor retrain seed {seed}: {'from the cache' if cached else 'trained'}")
    other = np.stack(phi)
    fs = I.forget_score(other, retrain)
    out = {
        "n_per_side": int(len(retrain)),
        "seeds": list(extra_seeds),
        "cap": fs["cap"],
        "forget_score": fs["score"],
        "epsilon": _summary(fs["epsilons"]),
        "ulira_accuracy": I.ulira_accuracy(other, retrain)["accuracy"],
        "klom": I.klom(other, retrain)["value"],
    }
    cost["wall"] = time.perf_counter() - t0
    return out, cost


def population_command(
    s: Settings,
    n_models: int,
    methods: Sequence[str],
    repeats: int = REPEATS,
    out: str | Path | None = None,
    seeds: Sequence[int] | None = None,
    full_floor: bool = False,
) -> str:
    """The ``mnemonic-mu population`` command that reproduces a run: the dataset, epochs and forget
    classes always, every other setting that differs from the laptop profile, the plan."""
    base = Settings.from_profile("laptop").to_dict()
    d = s.to_dict()
    words = ["mnemonic-mu", "population"]
    for name in POPULATION_OPTIONS:
        if name in _RUNTIME_OPTIONS or (d[name] == base[name] and name not in ("dataset", "epochs", "forget_classes")):
            continue
        value = d[name]
        flag = "--forget" if name == "forget_classes" else option(name)
        if isinstance(value, list):
            words += [flag, *map(str, value)]
        elif isinstance(value, bool):
            words.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            words += [flag, str(value)]
    words += ["--models", str(int(n_models))]
    listed = [m for m in methods if m != ORIGINAL]
    if tuple(listed) != DEFAULT_METHODS:
        words += ["--methods", *listed] if listed else ["--methods", "none"]
    if int(repeats) != REPEATS:
        words += ["--repeats", str(int(repeats))]
    if full_floor:
        words.append("--full-floor")
    if out is not None:
        path = Path(out).expanduser().resolve()
        try:
            path = path.relative_to(project_root())
        except ValueError:
            pass
        words += ["--out", str(path)]
    if seeds is not None and tuple(seeds) != tuple(s.seed + i for i in range(int(n_models))):
        words += [f"# seeds {' '.join(map(str, seeds))}, given to run_population(seeds=...)"]
    return " ".join(words)


# --------------------------------------------------------------------------
# The docs' table, generated from the committed results

LABELS = {ORIGINAL: "*original (no unlearning)*", STEP: "mnemonic (the settings' step)"}


def _f(x, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _klom(scores: dict) -> str:
    """KLoM's mean +- std over the splits, n/a for a result made before it was scored."""
    k = scores.get("klom")
    return "n/a" if k is None or k["mean"] is None else f"{_f(k['mean'])} +- {_f(k['std'])}"


def table(result: dict) -> str:
    """The main table of one result: a row per method, then the floor."""
    n = result["plan"]["n_models"]
    h = result["floor"]["n_per_half"]
    cap_full = next(iter(result["methods"].values()))["full"]["cap"]
    lines = [
        f"| method | forget score, {n} vs {n} (cap {_g(cap_full)}) | forget score, {h} vs {h} (cap "
        f"{_g(result['floor']['cap'])}), mean +- std over splits | median epsilon, {n} vs {n} | "
        f"U-LiRA accuracy, {n} vs {n} | U-LiRA accuracy, {h} vs {h} | KLoM p{_g(I.KLOM_PERCENTILE)}, {h} vs {h}, "
        f"mean +- std over splits | median phi | test A_R (%) | test E_F (%) | unlearning (s per model) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in result["methods"].items():
        full, half, acc = m["full"], m["half"], m["accuracy"]
        lines.append(
            f"| {LABELS.get(name, name)} | {_f(full['forget_score'])} | {_f(half['forget_score'])} +- "
            f"{_f(half['std'])} | {_f(full['epsilon']['median'], 2)} | {_f(full['ulira_accuracy'])} | "
            f"{_f(half['ulira_accuracy']['mean'])} | {_klom(half)} | {_f(m['confidence']['median'], 2)} | "
            f"{_f(acc['test_A_R']['mean'], 2)} | {_f(acc['test_E_F']['mean'], 2)} | "
            f"{_f(m['seconds_per_model']['mean'])} |"
        )
    fl, rt = result["floor"], result["retrain"]
    full = (
        f"**{_f(fl['full']['forget_score'])}** ({2 * n} retrains)"
        if fl.get("full")
        else f"n/a (needs {2 * n} retrain models: --full-floor)"
    )
    lines.append(
        f"| **floor: retrain vs retrain** | {full} | **{_f(fl['forget_score'])} +- "
        f"{_f(fl['std'])}** | {_f(fl['epsilon']['median'], 2)} ({h} vs {h}) | n/a | {_f(fl['ulira_accuracy']['mean'])} "
        f"| **{_klom(fl)}** | {_f(rt['confidence']['median'], 2)} | {_f(rt['accuracy']['test_A_R']['mean'], 2)} | "
        f"{_f(rt['accuracy']['test_E_F']['mean'], 2)} | n/a |"
    )
    return "\n".join(lines) + "\n"


def buckets_table(result: dict) -> str:
    """Share of the forget examples in each epsilon bucket, N vs N per method (the floor: its
    halves' buckets, pooled over the splits)."""
    full = next(iter(result["methods"].values()))["full"]
    first, cap = full["buckets"], full["cap"]
    fl = result["floor"]["buckets"]
    head = [
        "| epsilon bucket (nats) | points |" + "".join(f" {LABELS.get(m, m)} |" for m in result["methods"]),
        "|---|---|" + "---|" * len(result["methods"]),
    ]
    for j, (label, pts) in enumerate(zip(first["labels"], first["points"])):
        cells = []
        for m in result["methods"].values():
            b = m["full"]["buckets"]
            cells.append(f" {100 * b['counts'][j] / max(1, sum(b['counts'])):.1f} % |")
        head.append(f"| {label} | {_g(pts)} |" + "".join(cells))
    n, h = result["plan"]["n_models"], result["floor"]["n_per_half"]
    floor_line = ", ".join(
        f"{label}: {100 * c / max(1, sum(fl['counts'])):.1f} %" for label, c in zip(fl["labels"], fl["counts"])
    )
    return (
        "\n".join(head) + "\n\n"
        f"At {n} models per side the buckets end at the cap {_g(cap)}; the floor's halves "
        f"({h} vs {h}, cap {_g(result['floor']['cap'])}) put their epsilons in: {floor_line}.\n"
    )


def reading(result: dict) -> str:
    """The table read in words, from its numbers: which methods reach the floor at half size, and
    on which side of retrain's confidences each population sits."""
    fl, h = result["floor"], result["floor"]["n_per_half"]
    rows = {m: v for m, v in result["methods"].items() if m != ORIGINAL}
    inside = [m for m, v in rows.items() if v["half"]["forget_score"] >= fl["forget_score"] - fl["std"]]
    best = max(rows, key=lambda m: rows[m]["half"]["forget_score"]) if rows else None
    r_med = result["retrain"]["confidence"]["median"]
    above = [m for m, v in result["methods"].items() if v["confidence"]["median"] > r_med]
    below = [m for m, v in result["methods"].items() if v["confidence"]["median"] <= r_med]
    words = [
        f"Reading it: at {h} vs {h} models, methods within one std of the floor "
        f"({_f(fl['forget_score'])} - {_f(fl['std'])}): {', '.join(inside) or 'none'}"
    ]
    if best:
        words.append(f"; closest: {best} ({_f(rows[best]['half']['forget_score'])})")
    words.append(
        f". Median phi above retrain's ({_f(r_med, 2)}; the forget examples still look more like "
        f"class {', '.join(map(str, result['forget_examples']['classes']))} than under retrain): "
        f"{', '.join(above) or 'none'}; at or below it (pushed as far or further): "
        f"{', '.join(below) or 'none'}."
    )
    k_floor = (fl.get("klom") or {}).get("mean")
    kloms: dict[str, float] = {}
    for m, v in rows.items():
        k = (v["half"].get("klom") or {}).get("mean")
        if k is not None:
            kloms[m] = float(k)
    if k_floor is not None and kloms:
        near = [m for m, k in kloms.items() if k <= k_floor + fl["klom"]["std"]]
        lowest = min(kloms, key=kloms.__getitem__)
        words.append(
            f" KLoM p95 (lower is closer to retrain) within one std of retrain vs retrain's "
            f"({_f(k_floor)} + {_f(fl['klom']['std'])}): {', '.join(near) or 'none'}; "
            f"lowest: {lowest} ({_f(kloms[lowest])})."
        )
    words.append("\n")
    return "".join(words)


def _resolution(result: dict) -> str:
    n, h = result["plan"]["n_models"], result["floor"]["n_per_half"]
    parts = []
    for k in (n, h):
        cap = I.epsilon_cap(k, k)
        top = math.log((1 - I.DELTA) * k - 1)  # both error rates at 1/k: the largest finite epsilon
        parts.append(
            f"{k} vs {k}: error rates move in steps of 1/{k}, the largest epsilon short of a perfect "
            f"separation is log({k} - 1) = {top:.2f} nats, and a perfect separation gets the cap "
            f"{_g(cap)} (0 points)"
        )
    return "; ".join(parts) + "."


def render_result(result: dict, source: str) -> str:
    """One result's section of the docs block."""
    s, cost, hw, fx = result["settings"], result["cost"], result["hardware"], result["forget_examples"]
    methods = [m for m in result["methods"] if m != ORIGINAL]
    unlearn = ", ".join(f"{m} {_f(cost['unlearn_seconds'][m], 1)}" for m in methods)
    where = (
        f"{hw.get('cpu_count')} CPU cores ({hw.get('processor')}), {hw.get('torch_threads')} torch thread(s), "
        f"device {hw.get('device')}" + (f" ({hw['gpu']})" if hw.get("gpu") else "") + f", torch {hw.get('torch')}"
    )
    return "\n".join(
        [
            f"**{s['dataset']}, {s['model']}, {s['epochs']} epochs, {s['code_dist']} codes, step `{s['step']}`, forget "
            f"class(es) {', '.join(map(str, fx['classes']))}: {result['plan']['n_models']} originals and "
            f"{result['plan']['n_models']} retrain models (seeds {result['plan']['seeds'][0]}.."
            f"{result['plan']['seeds'][-1]}), {fx['n']} forget examples** (the forget classes' training examples). "
            f"Made by",
            "",
            "```bash",
            result["command"],
            "```",
            "",
            table(result),
            reading(result),
            buckets_table(result),
            f"Resolution at this N: {_resolution(result)}",
            "",
            f"Cost: {cost['models_trained']} models"
            + (f" ({cost['floor_models']} of them the full-size floor's retrains)" if cost.get("floor_models") else "")
            + f", {_f(cost['train_seconds'], 0)} s of training as recorded "
            f"when each was trained ({_f(cost['train_seconds_per_model'], 1)} s per model; "
            f"{cost['models_from_cache']} of them "
            f"loaded from the cache in the run that wrote the file, whose training-or-loading took "
            f"{_f(cost['train_wall_seconds'], 1)} s); unlearning, each method's own time summed over its "
            f"{result['plan']['n_models']} models: {unlearn} s; scoring (forward passes and every attack) "
            f"{_f(cost['score_seconds'], 1)} s; the whole run {_f(cost['total_seconds'] / 60, 1)} min. Measured on "
            f"{where}. Source: `{source}`.",
            "",
        ]
    )


def load_results(folder: Path) -> list[tuple[Path, dict]]:
    import json

    return [(p, json.loads(p.read_text())) for p in sorted(Path(folder).glob("*.json"))]


def summary_table(results: Sequence[dict], names: Sequence[str] | None = None) -> str:
    """Every committed population in one table: per result (dataset, forget classes) the floor and,
    for every method scored in any of them, its forget score at half size, its median phi and its
    KLoM at half size.  *(within)* marks a score within one std of the floor, a median phi within
    retrain's spread over models of its median, and a KLoM at most one std above retrain vs
    retrain's; the last row counts the marks (read from the files, never typed)."""
    methods: list[str] = []
    for r in results:
        methods += [m for m in r["methods"] if m != ORIGINAL and m not in methods]
    head = (
        "| population | floor at half size (retrain vs retrain): score; KLoM | median phi, retrain | "
        + " | ".join(methods)
        + " |"
    )
    lines = [head, "|---|---|---|" + "---|" * len(methods)]
    counts = {m: [0, 0, 0, 0, 0] for m in methods}  # score, median phi, KLoM within; scored; scored with KLoM
    mark = " (within)"
    for i, r in enumerate(results):
        fl, conf = r["floor"], r["retrain"]["confidence"]
        low = fl["forget_score"] - fl["std"]
        spread = conf.get("median_sd_models")
        k_floor = fl.get("klom") or {}
        k_high = k_floor["mean"] + k_floor["std"] if k_floor.get("mean") is not None else None
        cells = []
        for m in methods:
            v = r["methods"].get(m)
            if v is None:
                cells.append("-")
                continue
            score, med = v["half"]["forget_score"], v["confidence"]["median"]
            near = spread is not None and abs(med - conf["median"]) <= spread
            k = (v["half"].get("klom") or {}).get("mean")
            k_near = k is not None and k_high is not None and k <= k_high
            counts[m][0] += score >= low
            counts[m][1] += bool(near)
            counts[m][2] += bool(k_near)
            counts[m][3] += 1
            counts[m][4] += k is not None and k_high is not None
            cells.append(
                f"{_f(score)}{mark if score >= low else ''}; {_f(med, 2)}{mark if near else ''}; "
                f"{_f(k, 2)}{mark if k_near else ''}"
            )
        sd = f" +- {_f(spread, 2)}" if spread is not None else ""
        klom = f"{_f(k_floor.get('mean'), 2)} +- {_f(k_floor.get('std'), 2)}" if k_floor else "n/a"
        lines.append(
            f"| {r['settings']['dataset']}, class {', '.join(map(str, r['forget_examples']['classes']))} "
            f"(N={r['plan']['n_models']}{'; ' + names[i] if names else ''}) | "
            f"{_f(fl['forget_score'])} +- {_f(fl['std'])}; {klom} | "
            f"{_f(conf['median'], 2)}{sd} | " + " | ".join(cells) + " |"
        )
    lines.append(
        "| within, of the populations that scored it | | | "
        + " | ".join(f"score {a}/{n}, median phi {b}/{n}, KLoM {c}/{nk}" for a, b, c, n, nk in counts.values())
        + " |"
    )
    return "\n".join(lines) + "\n"


def render_block(root: Path | None = None) -> str:
    """The docs block (markers included) from every ``docs/results/population/*.json`` under ``root``."""
    root = Path(root) if root is not None else project_root()
    results = load_results(root.joinpath(*RESULTS_DIR))
    body = [
        "Generated by `mnemonic-mu population --render-docs` from the files in "
        "`docs/results/population/`; each names the command that made it.",
        "",
    ]
    if not results:
        body.append("(no results yet: run `mnemonic-mu population --out docs/results/population/NAME.json`)")
    else:
        body += [
            "**Every committed population at a glance.** Each cell: the method's forget score at half size "
            "(mean over the seeded splits), its median phi on the forget examples and its KLoM p95 at half "
            "size; *(within)*: the score is within one standard deviation of the floor, the median phi within "
            "retrain's spread over its models (the standard deviation of each retrain model's median phi), "
            "the KLoM at most one standard deviation above retrain vs retrain's. Each file's own section "
            "follows.",
            "",
            summary_table([r for _, r in results], [p.name for p, _ in results]),
        ]
    for path, result in results:
        body.append(render_result(result, path.relative_to(root).as_posix()))
    return f"{DOCS_START}\n" + "\n".join(body).rstrip() + f"\n{DOCS_END}"


def render_docs(root: Path | None = None) -> Path:
    """Rewrite the block of docs/indistinguishability.md between the markers."""
    root = Path(root) if root is not None else project_root()
    page = root.joinpath(*DOCS_PAGE)
    text = page.read_text()
    if DOCS_START not in text or DOCS_END not in text:
        raise ConfigError(f"{page} has no {DOCS_START} ... {DOCS_END} block for the population table")
    pattern = re.compile(re.escape(DOCS_START) + ".*?" + re.escape(DOCS_END), re.S)
    atomic_write_text(page, pattern.sub(lambda _: render_block(root), text, count=1))
    return page


def write_result(result: dict, out: Path) -> Path:
    """Write ``result`` (without in-memory arrays) as JSON, atomically."""
    write_json(out, {k: v for k, v in result.items() if k != "confidences"})
    return out


# --------------------------------------------------------------------------
# Command line


def add_subcommand(sub) -> None:
    p = sub.add_parser(
        "population",
        help="the per-example attack on populations of N originals and N retrain models (forget score, floor)",
        description="Train (or load cached) N originals and N retrain models (seeds SEED .. SEED+N-1), "
        "unlearn every original with every method, score each method's logit-scaled confidences on "
        "the forget examples (the forget classes' training examples) against retrain's: per-example "
        "epsilons, the NeurIPS 2023 forget score, U-LiRA accuracy and the finite-N floor (retrain "
        "halves); writes one JSON file.  docs/indistinguishability.md explains every number.",
    )
    p.add_argument("--profile", default="laptop", help="settings profile the options override (default laptop)")
    add_options(p, POPULATION_OPTIONS)
    p.add_argument(
        "--models",
        type=int,
        default=DEFAULT_MODELS,
        help=f"models per population, N >= {MIN_MODELS} (default {DEFAULT_MODELS})",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="M",
        help=f"methods scored besides the untouched original: {STEP} (the settings' step) or a "
        f"registered method; 'none' for the original alone (default {' '.join(DEFAULT_METHODS)})",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=REPEATS,
        help=f"seeded half splits for the floor and the half-size scores (default {REPEATS})",
    )
    p.add_argument(
        "--out", default=None, help="JSON output path (default reports/population/<dataset>-forget<C>-N<N>.json)"
    )
    p.add_argument(
        "--full-floor",
        action="store_true",
        help="train N more retrain models (the seeds after the population's) and score the floor at N vs N too",
    )
    p.add_argument("--progress", action="store_true", help="show training progress bars")
    p.add_argument(
        "--render-docs",
        action="store_true",
        help="only rewrite docs/indistinguishability.md's population block from docs/results/population/*.json",
    )
    p.set_defaults(func=_cmd_population)


def default_out(s: Settings, n_models: int) -> Path:
    return Path("reports/population") / f"{s.dataset}-forget{'-'.join(map(str, s.forget_classes))}-N{n_models}.json"


def _cmd_population(args) -> int:
    if args.render_docs:
        print(f"wrote {render_docs()}")
        return 0
    s = settings_from_args(args, POPULATION_OPTIONS)
    methods = [] if args.methods in (["none"], ["[]"]) else (args.methods or list(DEFAULT_METHODS))
    methods = check_methods(methods)
    population_seeds(s, args.models)  # checked before anything is trained
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    out = Path(args.out).expanduser() if args.out else default_out(s, args.models)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file path such as {out / 'population.json'}")
    result = run_population(
        s,
        args.models,
        methods,
        repeats=args.repeats,
        out=out,
        progress=args.progress,
        log=lambda line: print(line, file=sys.stderr, flush=True),
        full_floor=args.full_floor,
    )
    write_result(result, out)
    print(table(result), end="")
    c = result["cost"]
    print(
        f"training {c['train_seconds']:.0f} s as recorded ({c['models_from_cache']}/{c['models_trained']} from the "
        f"cache this run), unlearning {sum(c['unlearn_seconds'].values()):.1f} s, "
        f"scoring {c['score_seconds']:.1f} s, "
        f"wall {c['total_seconds']:.1f} s; wrote {out}"
    )
    return 0


__all__ = [
    "DEFAULT_METHODS",
    "DOCS_END",
    "DOCS_START",
    "MIN_MODELS",
    "SEED_RULE",
    "add_subcommand",
    "bucket_counts",
    "check_methods",
    "collect_population",
    "floor",
    "floor_seeds",
    "forget_examples",
    "full_size_floor",
    "population_command",
    "population_seeds",
    "render_block",
    "render_docs",
    "render_result",
    "run_population",
    "score_method",
    "table",
    "unlearn",
    "write_result",
]
