"""Methods x forget classes x seeds on one dataset: ``mnemonic-mu sweep``.

The sweep maps the pipeline (:mod:`mnemonic_mu.pipeline`) over requests:

1. train (or load from the cache) per seed the original (with codes) and the
   original-without-codes, and per (seed, class) the retrain reference - in
   parallel across processes (joblib);
2. per (seed, class), in parallel: every method of ``settings.baselines`` and
   the settings' own step (row ``mnemonic``), scored by
   :func:`mnemonic_mu.pipeline.score` like the references ``original``,
   ``no_codes`` and ``retrain``; each row is cached under a key of its request's
   settings and the versions of the code that made it, so a rerun after a change
   to one method recomputes that method's rows and keeps the others;
3. aggregate: mean +- std over every (seed, class) run and the worst class, as
   JSON (``sweep.json``) and markdown (``sweep.md``);
4. retrain's seed band (:mod:`mnemonic_mu.bands`): per forget class the retrain
   references of ``settings.band_seeds`` (trained once per class, shared by the
   requests of every seed), scored in each request against that request's retrain
   like a method; every row of the request is read against them ("inside" per
   metric), and each attack is checked for signal (does it tell the original
   from retrain at all?).  Retrain scores 0 against itself by definition on the
   distances, so this band, not 0, is how far an unlearned model can sit from
   retrain while being "as good as another retrain".

Gap to retrain: :func:`mnemonic_mu.algorithms.metrics.gap_to_retrain`.  The
``retrain`` row is the cached retrain reference itself; its time is its
recorded training time.  All other times are the method's own wall time
(hyperparameter search included) after a warm-up, with a fixed torch thread
count per worker.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import bands, pipeline
from ..algorithms.attacks import ATTACKS, distance_attacks
from ..algorithms.methods import SEES, UnlearnData, by_sees, row_sees
from ..algorithms.metrics import MIA_ATTACK, check_forget_classes, mean_t_interval
from ..algorithms.train import TrainConfig
from ..bands import metric_values
from ..errors import ConfigError
from ..io import store
from ..io.artifacts import atomic_write_text, write_json
from ..io.data import DATASETS
from ..options import add_options
from ..paths import resolve_path
from ..runtime import environment, setup
from ..settings import Settings, device_check_deferred
from .common import settings_from_args
from .executor import SCRIPT_SCHEDULER, make_executor, slurm_job_script

REFERENCES = pipeline.ROLES
# which way is better for each accuracy-side metric ("retrain" = closest to retrain's value)
GOOD = {"A_R": "high", "E_F": "high", "A_R_train": "high", "E_F_train": "high", "gap": "low", "seconds": "low"}

# The paper's full-MNIST numbers, forget class 0, 3 runs (docs/method.md): A_R / E_F.
PAPER_MNIST = {
    "mnemonic_tuned": (95.9, 100.0),
    "ssd": (96.9, 93.1),
    "fisher_forgetting": (94.1, 100.0),
}

# What each kind of row depends on, and its key: one definition, the pipeline's.
ROW_COMPONENTS, row_components, row_key = pipeline.ROW_COMPONENTS, pipeline.row_components, pipeline.row_key


def check_plan(s: Settings, classes, seeds, jobs: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The plan's classes (None: every class of the dataset, the registry's count) and seeds, checked."""
    classes = range(DATASETS[s.dataset].classes()) if classes is None else classes
    classes, seeds = tuple(int(c) for c in classes), tuple(int(x) for x in seeds)
    if not classes or not seeds:
        raise ConfigError("a sweep needs at least one forget class and one seed")
    if len(set(seeds)) != len(seeds) or len(set(classes)) != len(classes):
        raise ConfigError("list each seed and each class once")
    if int(jobs) < 1:
        raise ConfigError(f"jobs must be at least 1, got {jobs}")
    return classes, seeds


def sweep_key(s: Settings, classes, seeds) -> str:
    """The key of a sweep's folder: its recipe, methods, classes and seeds (not where or how fast
    it runs, nor the multi-class mode: every request of a sweep forgets one class)."""
    d = {k: v for k, v in s.results_dict().items() if k not in ("seed", "forget_classes", "multi")}
    return store.key_of(d | {"classes": list(classes), "seeds": list(seeds)}, ())


def sweep_folder(s: Settings, classes, seeds, out_dir: str = "") -> Path:
    # the default lies under the repository's reports/ (like the cache under its data/), wherever it runs from
    return Path(out_dir) if out_dir else resolve_path("reports/sweep") / f"{s.dataset}-{sweep_key(s, classes, seeds)}"


# --------------------------------------------------------------------------
# Workers (run in separate processes; everything they need comes as arguments)

_DATA_CACHE: dict = {}


def _worker_setup(s: Settings):
    device = setup(s)
    key = (s.dataset, s.data_root, s.split_seed)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = pipeline.load_data(s)
    return _DATA_CACHE[key], device


def _train_job(s: Settings, kind: str) -> dict:
    dataset, device = _worker_setup(s)
    ((ck, cached),) = pipeline.train_models(s, dataset, (kind,), device).values()
    return _trained_entry(kind, s.seed, ck, cached)


def _trained_entry(kind: str, seed: int, ck, cached: bool) -> dict:
    """What a sweep records of one trained (or loaded) model."""
    return {
        "kind": kind,
        "seed": seed,
        "exclude": ck.config["train"]["exclude_classes"],
        "from_cache": cached,
        "train_seconds": ck.config["train_seconds"],
        "folder": str(ck.folder),
    }


def _train_seed_job(s: Settings, classes: tuple[int, ...], retrain_only: bool = False) -> list[dict]:
    """Every model of one seed (original, no-codes, a retrain per class; a band seed: the
    retrains only) in one task, so that ``trainer="ensemble"`` trains them as one computation."""
    dataset, device = _worker_setup(s)
    recipe = pipeline.recipes(s, ())
    cfgs: dict[tuple[str, tuple[int, ...]], TrainConfig] = {}
    if not retrain_only:
        cfgs |= {("original", ()): recipe["original"], ("no_codes", ()): recipe["no_codes"]}
    cfgs |= {("retrain", (c,)): s.train_config(exclude=(c,)) for c in classes}
    trained = store.train_many(s, dataset, cfgs, device)
    return [_trained_entry(kind, s.seed, ck, cached) for (kind, _), (ck, cached) in trained.items()]


def request_rows(s: Settings, folder: Path) -> list[dict]:
    """Every reference, the settings' step and every baseline on the request of ``s``
    (one seed, one forget class); rows already on disk under the same key are reused."""
    dataset, device = _worker_setup(s)
    forget_classes = check_forget_classes(s.forget_classes, dataset.num_classes)
    (cls,) = forget_classes
    common = {"seed": s.seed, "forget_class": cls}
    models: dict = {}

    def model(role):
        if role not in models:
            models[role] = pipeline.train_models(s, dataset, (role,), device)[role][0]
        return models[role]

    def cached(method, compute):
        path = folder / "rows" / f"seed{s.seed}_class{cls}" / f"{method}.json"
        rows, _ = store.cached_rows(
            path, row_key(s, method), lambda: [common | compute() | {"method": method}], s.use_cache
        )
        return rows[0]

    data = {}

    def unlearn_data():
        if "d" not in data:
            data["d"] = UnlearnData.from_dataset(dataset, forget_classes, s.train_config())
        return data["d"]

    out = []
    for role in REFERENCES:

        def ref(role=role):
            ck = model(role)
            return (
                pipeline.score(ck.model, model("retrain").model, dataset, s)
                | pipeline.reference_row(ck, dataset)
                | {"reference": True}
            )

        out.append(cached(role, ref))

    def step():
        ck = model("original")
        done = pipeline.forget_step(s, ck.model, ck.codes, forget_classes)
        return (
            pipeline.score(done.model, model("retrain").model, dataset, s)
            | pipeline.record_row(done.record, done.seconds)
            | {"reference": False}
        )

    out.append(cached("mnemonic", step))
    for name in s.baselines:

        def method(name=name):
            for role in ("original", "no_codes", "retrain"):
                model(role)
            return pipeline.score_method(name, s, dataset, models, unlearn_data()) | {"reference": False}

        out.append(cached(name, method))
    band = []
    for b in s.band_seeds:  # the band references, each scored against this request's retrain like a method

        def band_row(b=b):
            ck, _ = pipeline.train_band_reference(s, dataset, b, device)
            return pipeline.band_row(s, ck, model("retrain").model, dataset) | {
                "reference": True,
                "band": True,
                "band_seed": b,
            }

        band.append(cached(f"band{b}", band_row))
    retrain = next(r for r in out if r["method"] == "retrain")
    for r in out + band:
        compared = pipeline.compare_to_retrain(r, retrain)
        r["gap"], r["tow"] = compared["gap"], compared["tow"]
    return out + band


# --------------------------------------------------------------------------
# Driver


def run_sweep(
    s: Settings,
    classes: Iterable[int] | None = None,
    seeds: Iterable[int] = (0, 1, 2),
    jobs: int = 1,
    out_dir: str = "",
    executor=None,
) -> dict:
    """Run the sweep and return ``{"settings", "classes", "seeds", "environment", "rows", "summary", "timing"}``;
    ``classes`` None: every class of the dataset.

    ``executor`` (:mod:`mnemonic_mu.drivers.executor`) runs the independent tasks; the
    default is this machine's processes with ``jobs`` workers.
    """
    classes, seeds = check_plan(s, classes, seeds, jobs)
    own = executor is None
    executor = executor or make_executor("local", jobs)
    start = time.perf_counter()
    dataset = pipeline.load_data(s)
    for c in classes:
        check_forget_classes([c], dataset.num_classes)
    folder = sweep_folder(s, classes, seeds, out_dir).resolve()  # one path for workers started elsewhere
    requests = [s.replace(seed=seed, forget_classes=(c,)) for seed in seeds for c in classes]
    # stage 1: trained models, longest first so the pool stays busy
    train_args = []
    for seed in seeds:
        first = s.replace(seed=seed, forget_classes=(classes[0],))
        train_args += [(first, "original"), (first, "no_codes")]
        train_args += [(r, "retrain") for r in requests if r.seed == seed]
    # the band references: one retrain per (band seed, class), shared by every seed's requests
    band_args = [
        (pipeline.band_request(s.replace(forget_classes=(c,)), b), "retrain") for b in s.band_seeds for c in classes
    ]
    try:
        if s.trainer == "ensemble":  # one task per seed: its models train as one computation
            per_seed = executor.map(
                _train_seed_job,
                [(s.replace(seed=seed), classes) for seed in seeds]
                + [(pipeline.band_request(s, b), classes, True) for b in s.band_seeds],
                "train",
            )
            trained = [t for part in per_seed for t in part]
        else:
            trained = executor.map(_train_job, train_args + band_args, "train")
        t_train = time.perf_counter() - start
        # stage 2: one task per (seed, class); each writes its rows, so a killed sweep resumes
        parts = executor.map(request_rows, [(r, folder) for r in requests], "score")
    finally:
        if own:
            executor.close()
    rows = [r for part in parts for r in part if not r.get("band")]
    band_rows = [r for part in parts for r in part if r.get("band")]
    device = setup(s)
    return {
        "settings": s.to_dict(),
        "classes": list(classes),
        "seeds": list(seeds),
        "key": sweep_key(s, classes, seeds),
        "folder": str(folder),
        "environment": environment(device)
        | {"torch_threads_per_worker": s.threads or 1, "jobs": jobs, "executor": executor.describe()},
        "trained": trained,
        "rows": rows,
        "band_rows": band_rows,
        "summary": summarise(rows, classes),
        "bands": sweep_bands(rows, band_rows),
        # the executor's split: queueing (start on the worker - submit), training and scoring task time
        "timing": {
            "train_stage_seconds": t_train,
            "total_seconds": time.perf_counter() - start,
            **(executor.timing_split() if hasattr(executor, "timing_split") else {}),
        },
    }


def _metric_values(row: dict) -> dict[str, float]:
    return metric_values(row) | {
        "seconds": float(row["seconds"]),
        "backward_passes": float(row["backward_passes"]),
    }  # JSON stores NaN as null


def summarise(rows: list[dict], classes: Iterable[int]) -> dict:
    """Per method: mean, std (over every seed x class run) and the worst class of each metric.

    Worst class: the class whose seed-mean is lowest (A_R, E_F), highest (gap,
    time) or, for attacks, farthest from retrain's seed-mean on the same class.
    """
    classes = list(classes)
    by_method: dict[str, list[dict]] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    retrain_cls = {
        c: [_metric_values(r) for r in by_method.get("retrain", []) if r["forget_class"] == c] for c in classes
    }
    summary = {}
    for method, mrows in by_method.items():
        vals = [_metric_values(r) for r in mrows]
        entry: dict = {"n_runs": len(vals), "reference": bool(mrows[0]["reference"])}
        for metric in vals[0]:
            xs = np.array([v[metric] for v in vals], dtype=float)
            per_class = {}
            for c in classes:
                cx = [v[metric] for v, r in zip(vals, mrows) if r["forget_class"] == c]
                if cx:
                    per_class[c] = float(np.nanmean(cx)) if np.isfinite(cx).any() else math.nan
            worst = _worst(metric, per_class, retrain_cls)
            entry[metric] = {
                "mean": float(np.nanmean(xs)) if np.isfinite(xs).any() else math.nan,
                "std": float(np.nanstd(xs)) if np.isfinite(xs).any() else math.nan,
                "worst_class": worst[0],
                "worst": worst[1],
                "per_class": per_class,
            }
        summary[method] = entry
    return summary


def sweep_bands(rows: list[dict], band_rows: list[dict]) -> dict | None:
    """Retrain's seed band over the sweep (:func:`mnemonic_mu.bands.aggregate`): per method and
    metric the requests inside their band, per attack whether it has signal here; plus
    Tug-of-War's mean and 95 % Student-t interval over seeds (each seed's mean over classes).
    ``None`` without band seeds."""
    requests: dict[tuple[int, int], tuple[dict, dict[str, dict], dict[int, dict]]] = {}
    for r in rows:
        requests.setdefault(
            (r["seed"], r["forget_class"]),
            ({"seed": r["seed"], "forget_class": r["forget_class"]}, {}, {}),
        )[1][r["method"]] = r
    for r in band_rows:
        requests[(r["seed"], r["forget_class"])][2][r["band_seed"]] = r
    out = bands.aggregate(list(requests.values()))
    if out is None:
        return None
    tow: dict[str, dict] = {}
    for method in {r["method"] for r in rows}:
        per_seed: dict[int, list[float]] = {}
        for r in rows:
            if r["method"] == method and r.get("tow") is not None:
                per_seed.setdefault(r["seed"], []).append(r["tow"])
        if per_seed:
            tow[method] = mean_t_interval([float(np.mean(v)) for v in per_seed.values()])
    out["tow_interval"] = tow
    # the band pooled over every request: what the tables show beside the means
    out["stats"] = bands.band_stats(band_rows)
    return out


def _worst(metric: str, per_class: dict[int, float], retrain_cls: dict) -> tuple[int | None, float]:
    finite = {c: v for c, v in per_class.items() if math.isfinite(v)}
    if not finite:
        return None, math.nan
    if GOOD.get(metric) == "high":
        c = min(finite, key=lambda k: finite[k])
    elif GOOD.get(metric) == "low" or metric == "backward_passes" or metric in distance_attacks():
        c = max(finite, key=lambda k: finite[k])
    else:  # attacks: distance to retrain's value on the same class

        def dist(c):
            ref = [v[metric] for v in retrain_cls.get(c, [])]
            return abs(finite[c] - float(np.mean(ref))) if ref else 0.0

        c = max(finite, key=dist)
    return int(c), float(finite[c])


# --------------------------------------------------------------------------
# Tables


def _columns() -> list[tuple[str, str, int]]:
    """The tables' ``(metric, header, decimals)``: the accuracies, every attack of the registry, then the rest."""
    return [
        ("A_R", "A_R (%)", 1),
        ("E_F", "E_F (%)", 1),
        ("A_R_train", "A_R train (%)", 1),
        ("E_F_train", "E_F train (%)", 1),
        *((a.name, a.name, a.digits) for a in ATTACKS.values()),
        ("gap", "gap to retrain", 2),
        ("tow", "ToW", 3),
        ("js_forget", "JS forget", 3),
        ("activation_forget", "act. dist. forget", 3),
        ("seconds", "time (s)", 3),
    ]


def _fmt(x: float, digits: int) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def markdown_tables(result: dict) -> str:
    """Two markdown tables (mean +- std; worst class) plus the direction of every column."""
    summary, cfg = result["summary"], result["settings"]
    order = by_sees(summary)  # the references, then by what a method sees
    columns = [c for c in _columns() if all(c[0] in summary[m] for m in order)]  # attacks not scored: left out
    head = "| method | sees | " + " | ".join(label for _, label, _ in columns) + " | backward passes |"
    sep = "|" + "---|" * (len(columns) + 3)
    lines = [
        f"Mean +- std over {len(result['seeds'])} seeds x {len(result['classes'])} forget classes "
        f"(dataset {cfg['dataset']}, model {cfg['model']}, {cfg['epochs']} epochs, codes {cfg['code_dist']}, "
        f"step {cfg['step']}):",
        "",
        head,
        sep,
    ]

    def rows(cell, passes: str) -> list[str]:
        out = []
        for m in order:
            e = summary[m]
            name = f"*{m}*" if e["reference"] else m
            cells = [cell(e[k], d) for k, _, d in columns]
            out.append(
                f"| {name} | {row_sees(m)} | " + " | ".join(cells) + f" | {_fmt(e['backward_passes'][passes], 0)} |"
            )
        return out

    lines += rows(lambda v, d: f"{_fmt(v['mean'], d)} +- {_fmt(v['std'], d)}", "mean")
    highest = " / ".join(["gap", "time", *distance_attacks()])
    lines += [
        "",
        f"Worst class (class: its mean over seeds; lowest A_R / E_F, highest {highest}, "
        "other attacks farthest from retrain's value):",
        "",
        head,
        sep,
    ]
    lines += rows(lambda v, d: f"{v['worst_class']}: {_fmt(v['worst'], d)}", "worst")
    lines += [
        "",
        "Sees: what the method reads of the request's data (the registry's, "
        "mnemonic_mu/algorithms/methods.py): "
        + "; ".join(f"*{k}*, {v}" for k, v in SEES.items())
        + "; a method with a grid also reads the validation split, none the test split.",
    ]
    lines += [
        "",
        "Directions: A_R higher is better, E_F 100 = forgotten (retrain's value is the target); "
        "gap to retrain = mean |difference| to retrain over A_R, E_F (test, train) and "
        f"{MIA_ATTACK} x 100, lower is better.",
    ]
    lines += [f"- {a.name}: {a.direction}." for a in ATTACKS.values() if any(a.name == c[0] for c in columns)]
    bb = result.get("bands")
    if bb:
        metrics = [m for m in bands.band_metrics() if any(m in e for e in bb["inside"].values())]
        two, one = bands.expected_inside("A_R", bb["n_band"]), bands.expected_inside("gap", bb["n_band"])
        lines += [
            "",
            f"Inside retrain's seed band ({bands.RULE}; {bb['n_band']} band references per request; "
            f"requests inside / scored).  Another retrain of the recipe lands inside with probability "
            f"{two:.2f} (two-sided) or {one:.2f} (one-sided): the *retrain* row checks that on the data.",
            "",
            "| method | " + " | ".join(metrics) + " |",
            "|" + "---|" * (len(metrics) + 1),
        ]
        stats = bb.get("stats", {})
        lines.append(
            "| *band (pooled)* | "
            + " | ".join(
                f"{_fmt(stats[k]['mean'], 3)} +- {_fmt(stats[k]['std'], 3)} "
                f"[{_fmt(stats[k]['min'], 3)}..{_fmt(stats[k]['max'], 3)}]"
                if k in stats
                else "n/a"
                for k in metrics
            )
            + " |"
        )
        for m in order:
            e = bb["inside"].get(m, {})
            lines.append(
                f"| {m} | " + " | ".join(f"{e[k]['inside']}/{e[k]['n']}" if k in e else "n/a" for k in metrics) + " |"
            )
        for attack, sig in bb["signal"].items():
            verdict = (
                "**no signal here**: it cannot tell the original from retrain on this setup"
                if sig["no_signal"]
                else f"separates the original from retrain on {sig['classes_with_signal']}/{sig['n_classes']} classes"
            )
            lines.append(f"- {attack}: {verdict}.")
        tow = bb.get("tow_interval", {})
        if tow:
            lines += [
                "",
                "ToW (1 = retrain's accuracies on forget, retain and test sets), mean and 95 % interval "
                "over seeds: "
                + ", ".join(
                    f"{m} {_fmt(tow[m]['mean'], 3)} [{_fmt(tow[m]['low'], 3)}, {_fmt(tow[m]['high'], 3)}]"
                    for m in order
                    if m in tow
                )
                + ".",
            ]
    for a in ATTACKS.values():  # what else each attack reports, as a mean over the rows
        for extra, meaning in a.extras.items():
            found = ((r["attacks"].get(a.name) or {}).get(extra) for r in result.get("rows", []))
            xs = [float(v) for v in found if v is not None]
            if xs:
                lines.append(f"- {a.name} `{extra}`, {meaning}, mean over the rows: {np.mean(xs):.{a.digits}f}.")
    if "retrain" in summary:
        rt = summary["retrain"]["seconds"]["mean"]
        ratios = ", ".join(
            f"{m} {summary[m]['seconds']['mean'] / rt:.2g}" for m in order if not summary[m]["reference"] and rt > 0
        )
        lines += ["", f"Time as a fraction of retrain's training time (same run): {ratios}."]
    if "original" in summary and "no_codes" in summary:
        with_codes = summary["original"]["seconds"]["mean"]
        without = summary["no_codes"]["seconds"]["mean"]
        lines += [
            f"Training with codes took {with_codes:.1f} s against {without:.1f} s without "
            f"(ratio {with_codes / without:.2f}; times recorded when each cached model was trained)."
        ]
    if cfg["dataset"] in ("mnist", "mnist5k"):
        paper = ", ".join(f"{m} {a:.1f} / {f:.1f}" for m, (a, f) in PAPER_MNIST.items())
        lines += ["", f"Paper (full MNIST, 200 epochs, forget class 0, test-set-tuned lambdas), A_R / E_F: {paper}."]
    return "\n".join(lines) + "\n"


def write_sweep(result: dict, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "sweep.json", result)
    atomic_write_text(folder / "sweep.md", markdown_tables(result))
    return folder / "sweep.json", folder / "sweep.md"


# --------------------------------------------------------------------------
# Command line


SWEEP_OPTIONS = (
    "dataset",
    "data_root",
    "model",
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "cosine",
    "t_mix",
    "code_dist",
    "trainer",
    "step",
    "lambda1",
    "lambda2",
    "baselines",
    "probe_max_train",
    "attacks",
    "band_seeds",
    "device",
    "threads",
    "cache_dir",
    "use_cache",
)


def add_subcommand(sub) -> None:
    import argparse

    p = sub.add_parser(
        "sweep",
        help="methods x forget classes x seeds on one dataset: mean +- std and worst class",
        description="Train (or load cached) originals, no-code models and retrain references, run the "
        "settings' step and every baseline on every forget class and seed, score accuracy, the attacks "
        "(every attack of the registry unless --attacks names some) and the gap to retrain; writes sweep.json "
        "and sweep.md.",
    )
    p.add_argument("--profile", default="laptop", help="settings profile the options override (default laptop)")
    add_options(p, SWEEP_OPTIONS)
    a = p.add_argument
    a("--classes", type=int, nargs="+", default=None, help="forget classes (default: every class of the dataset)")
    a("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    a(
        "--jobs",
        type=int,
        default=1,
        help="worker processes (default 1); --backend dask without a scheduler: "
        "the LocalCluster's workers; --backend slurm: the SLURM jobs (one worker each)",
    )
    a("--out-dir", default="", help="output folder (default reports/sweep/<dataset>-<key>)")
    g = p.add_argument_group("where the tasks run (docs/distributed.md)")
    g.add_argument(
        "--backend",
        choices=("local", "dask", "slurm"),
        default=None,
        help="local: this machine's processes (the default without --scheduler); dask: a dask.distributed "
        "cluster (--scheduler, else a LocalCluster of --jobs workers); slurm: --jobs SLURM jobs via "
        "dask-jobqueue",
    )
    g.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="connect to this Dask scheduler (implies --backend dask): tcp://HOST:8786, tls://HOST:8786 "
        "or the file of `dask scheduler --scheduler-file` (default: Dask's scheduler-address setting / "
        "DASK_SCHEDULER_ADDRESS with --backend dask, else a LocalCluster)",
    )
    g.add_argument(
        "--connect-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="dask: seconds to try reaching the scheduler before giving up (default: Dask's "
        "distributed.comm.timeouts.connect if you set it, else 5)",
    )
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="slurm: print the worker job script and exit; starts "
        "nothing, and previews a GPU job from a machine without one",
    )
    g.add_argument(
        "--retries",
        type=int,
        default=None,
        help="dask, slurm: reruns of a task that raised (default 2; a dead worker's tasks are "
        "rescheduled by Dask anyway)",
    )
    g.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="dask, slurm: progress bar on stderr (default: when stderr is a terminal)",
    )
    g.add_argument("--worker-memory", default=None, help="slurm: memory per worker job (default 4GB)")
    g.add_argument("--walltime", default=None, help="slurm: wall time per worker job (default 02:00:00)")
    g.add_argument("--queue", default=None, help="slurm: partition (-p)")
    g.add_argument("--account", default=None, help="slurm: account (-A)")
    g.add_argument(
        "--gpu-workers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="slurm: each job asks for one GPU and its worker advertises the Dask resource GPU=1 "
        "(default: when --device is cuda)",
    )
    p.set_defaults(func=_cmd_sweep)


def _backend(args) -> str:
    """The backend: ``--backend``, else ``dask`` with ``--scheduler``, else ``local``."""
    if args.scheduler and args.backend in ("local", "slurm"):
        raise ConfigError(
            f"--scheduler connects to a running Dask scheduler (it implies --backend dask) but "
            f"--backend {args.backend} "
            + (
                "starts its own scheduler and SLURM workers"
                if args.backend == "slurm"
                else "runs on this machine's processes"
            )
            + ": drop --scheduler or --backend"
        )
    return args.backend or ("dask" if args.scheduler else "local")


def cluster_line(info: dict) -> str:
    """The sweep's line on its workers (``executor.describe()``): how many, and the lost ones."""
    lost, again = info.get("lost_workers", []), info.get("rescheduled_tasks", 0)
    if not lost:
        return f"workers: {info['workers']} seen, none lost"
    return (
        f"workers: {info['workers']} seen, {len(lost)} lost during the sweep ({', '.join(lost)}); "
        f"Dask rescheduled the {again} task(s) they held on the other workers (results unaffected: every task "
        "is idempotent)"
    )


def _cmd_sweep(args) -> int:
    backend = _backend(args)
    slurm = {"memory": args.worker_memory, "walltime": args.walltime, "queue": args.queue, "account": args.account}
    slurm = {k: v for k, v in slurm.items() if v is not None}
    if backend != "slurm" and (slurm or args.gpu_workers is not None or args.dry_run):
        raise ConfigError(
            "--worker-memory, --walltime, --queue, --account, --gpu-workers and --dry-run need --backend slurm"
        )
    if backend == "local" and (args.retries is not None or args.progress is not None):
        raise ConfigError("--retries and --progress need --backend dask or slurm")
    if backend != "dask" and args.connect_timeout is not None:
        raise ConfigError("--connect-timeout needs --backend dask (it bounds the wait for a scheduler's address)")
    if args.dry_run:  # a preview: starts nothing, and the job's GPU need not be on this machine
        with device_check_deferred():
            s = settings_from_args(args, SWEEP_OPTIONS)
        gpu = args.gpu_workers if args.gpu_workers is not None else str(s.device).startswith("cuda")
        print(slurm_job_script(gpu=gpu, **slurm), end="")
        print(
            f"# {args.jobs} such job(s), one Dask worker each; {SCRIPT_SCHEDULER} stands for this machine's "
            "scheduler address, which a real run fills in"
        )
        return 0
    s = settings_from_args(args, SWEEP_OPTIONS)
    gpu = args.gpu_workers if args.gpu_workers is not None else str(s.device).startswith("cuda")
    options: dict = {}
    if backend in ("dask", "slurm"):
        options = {"retries": 2 if args.retries is None else args.retries, "progress": args.progress}
    if backend == "dask":
        options |= {"scheduler": args.scheduler, "connect_timeout": args.connect_timeout}
    if backend == "slurm":
        options |= slurm | {"gpu": gpu or None}
    executor = make_executor(backend, args.jobs, **options)
    try:
        info = executor.describe()
        if backend != "local":
            link = f"dashboard {info['dashboard']}" if info.get("dashboard") else "no dashboard (install bokeh)"
            print(f"Dask scheduler {info['scheduler']} ({info['cluster']}), {link}", flush=True)
        # workers elsewhere see one path
        out_dir = str(Path(args.out_dir).expanduser().resolve()) if args.out_dir else ""
        result = run_sweep(s, args.classes, args.seeds, args.jobs, out_dir, executor=executor)
    finally:
        executor.close()
    js, md = write_sweep(result, Path(result["folder"]))
    print(markdown_tables(result))
    t = result["timing"]
    print(f"wall time {t['total_seconds']:.1f} s; wrote {js} and {md}")
    if "queue_seconds" in t:
        print(
            f"task time summed over workers: queueing {t['queue_seconds']:.1f} s, training "
            f"{t.get('train_seconds', 0.0):.1f} s, scoring {t.get('score_seconds', 0.0):.1f} s"
        )
    if backend != "local":
        print(cluster_line(result["environment"]["executor"]))
    return 0


__all__ = [
    "PAPER_MNIST",
    "REFERENCES",
    "add_subcommand",
    "cluster_line",
    "markdown_tables",
    "request_rows",
    "row_key",
    "run_sweep",
    "summarise",
    "write_sweep",
]
