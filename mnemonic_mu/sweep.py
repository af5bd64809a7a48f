"""Methods x forget classes x seeds on one dataset: ``mnemonic-mu sweep``.

Stages, each cached or parallel where it pays:

1. train (or load from the cache, :func:`mnemonic_mu.experiment.train_or_load`)
   per seed the original (with codes) and the original-without-codes, and per
   (seed, class) the retrain reference - in parallel across processes (joblib);
2. per (seed, class), in parallel: run every method on the request, evaluate
   A_R / E_F (test and train), every attack (:mod:`mnemonic_mu.attacks`), the
   gap to retrain, time and backward passes; the references ``original``,
   ``original-without-codes`` and ``retrain`` are scored the same way;
3. aggregate: mean +- std over every (seed, class) run and the worst class, as
   JSON (``sweep.json``) and markdown (``sweep.md``);
4. the retrain band of epsilon-vs-retrain: the same score between two retrain
   references of the same class trained with different seeds, for every
   ordered pair of seeds (:func:`retrain_band`).  Retrain scores 0 against
   itself by definition, so this, not 0, is how far an unlearned model can
   sit from retrain while being "as good as another retrain".

Gap to retrain (EVALUATION.md): the mean absolute difference to the retrain
model of the same (seed, class) over A_R, E_F, A_R_train, E_F_train and the
MIA score, all in %; the MIA score is confidence-SVC's MIA-efficacy (x100).

The ``retrain`` method row is the cached retrain reference itself; its time is
its recorded training time.  All other times are the method's own wall time
(hyperparameter search included) after a warm-up, with a fixed torch thread
count per worker.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from .artifacts import atomic_write_text, settings_key, write_json
from .attacks import ATTACKS, epsilon_vs_retrain, run_attacks, sample_statistics
from .cli import add_recipe_options
from .errors import ConfigError
from .experiment import ExperimentConfig, environment, load_experiment_data, resolve_device, set_threads, train_or_load
from .methods import INPUT_MODEL, METHODS, UnlearnData, unlearn
from .metrics import ACCURACY_METRICS, check_forget_classes, evaluate, gap_to_retrain

REFERENCES = ("original", "original-without-codes", "retrain")
# which way is better for each accuracy-side metric ("retrain" = closest to retrain's value)
GOOD = {"A_R": "high", "E_F": "high", "A_R_train": "high", "E_F_train": "high", "gap": "low", "seconds": "low"}

# The paper's full-MNIST numbers, forget class 0, 3 runs (METHOD.md section 6): A_R / E_F.
PAPER_MNIST = {
    "mnemonic": (95.9, 100.0),
    "ssd": (96.9, 93.1),
    "fisher_forgetting": (94.1, 100.0),
}


@dataclass(frozen=True)
class SweepConfig:
    """One sweep: the experiment recipe plus which methods, classes and seeds to run."""

    base: ExperimentConfig = field(default_factory=ExperimentConfig)  # dataset, model, recipe, cache
    methods: tuple[str, ...] = tuple(METHODS)  # registered method names
    classes: tuple[int, ...] = tuple(range(10))  # forget requests, one class each
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds (also seed codes, methods and attacks)
    jobs: int = 1  # worker processes (joblib); each uses base.threads torch threads (0 -> 1)
    probe_max_train: int = 2_000  # train samples drawn for the linear-probe attack
    out_dir: str = ""  # output folder ("" = reports/sweep/<dataset>-<key>)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        if not self.methods:
            raise ConfigError("name at least one method")
        if not self.classes or not self.seeds:
            raise ConfigError("a sweep needs at least one forget class and one seed")
        if len(set(self.seeds)) != len(self.seeds) or len(set(self.classes)) != len(self.classes):
            raise ConfigError("list each seed and each class once")
        if int(self.jobs) < 1:
            raise ConfigError(f"jobs must be at least 1, got {self.jobs}")
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))

    def key(self) -> str:
        d = self.to_dict()
        d.pop("jobs"), d.pop("out_dir")
        # where and how fast it runs does not change a row; nor does the multi-class mode
        # (every request of a sweep forgets one class)
        for k in ("device", "threads", "use_cache", "cache_dir", "data_root", "multi"):
            d["base"].pop(k, None)
        return settings_key(d)

    @classmethod
    def from_dict(cls, d: dict) -> "SweepConfig":
        """Inverse of :meth:`to_dict` (for example the ``config`` of a saved sweep.json)."""
        d = dict(d)
        base = dict(d.pop("base"))
        base["forget"] = tuple(base.get("forget", (0,)))
        return cls(base=ExperimentConfig(**base), **{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def folder(self) -> Path:
        return Path(self.out_dir) if self.out_dir else Path("reports/sweep") / f"{self.base.dataset}-{self.key()}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["base"] = self.base.to_dict()
        d["methods"], d["classes"], d["seeds"] = list(self.methods), list(self.classes), list(self.seeds)
        return d


# --------------------------------------------------------------------------
# Workers (run in separate processes; everything they need comes as arguments)

_DATA_CACHE: dict = {}


def _worker_setup(base: ExperimentConfig):
    set_threads(base.threads or 1)
    key = (base.dataset, base.data_root, base.split_seed)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_experiment_data(base)
    return _DATA_CACHE[key], resolve_device(base.device)


def _train_job(base: ExperimentConfig, kind: str, exclude: tuple[int, ...]) -> dict:
    dataset, device = _worker_setup(base)
    t_mix = 0.0 if kind == "no_codes" else None
    ck, cached = train_or_load(base, dataset, base.train_config(exclude=exclude, t_mix=t_mix), device)
    return {"kind": kind, "seed": base.seed, "exclude": list(exclude), "from_cache": cached,
            "train_seconds": ck.config["train_seconds"], "folder": str(ck.folder)}


def _scores(model, retrain_model, dataset, forget_classes, seed, probe_max_train) -> dict:
    ev = evaluate(model, dataset, forget_classes)
    row = {k: ev[k] for k in ACCURACY_METRICS}
    row["per_class_accuracy"] = ev["per_class_accuracy"]
    attacks = run_attacks(model, retrain_model, dataset, forget_classes, seed=seed, probe_max_train=probe_max_train)
    row["attacks"] = {name: {k: v for k, v in a.items() if k != "direction"} for name, a in attacks.items()}
    return row


def _request_job(cfg: SweepConfig, seed: int, cls: int) -> list[dict]:
    """Every method and reference on one (seed, forget class); returns one row each."""
    base = replace(cfg.base, seed=seed)
    dataset, device = _worker_setup(base)
    forget_classes = check_forget_classes([cls], dataset.num_classes)
    original, _ = train_or_load(base, dataset, base.train_config(), device)
    plain, _ = train_or_load(base, dataset, base.train_config(t_mix=0.0), device)
    ref, _ = train_or_load(base, dataset, base.train_config(exclude=forget_classes), device)
    inputs = {"original": original, "no_codes": plain}
    data = UnlearnData.from_dataset(dataset, forget_classes, base.train_config())
    common = {"seed": seed, "forget_class": cls}

    def score(model):
        return _scores(model, ref.model, dataset, forget_classes, seed, cfg.probe_max_train)

    rows = []
    ref_row = score(ref.model)
    n_retain = int(len(data.y_retain))
    for name, ck in (("original", original), ("original-without-codes", plain), ("retrain", ref)):
        row = ref_row if name == "retrain" else score(ck.model)
        rows.append(common | row | {
            "method": name, "reference": True, "seconds": float(ck.config["train_seconds"]),
            "backward_passes": int(ck.config["train"]["epochs"]) * (n_retain if name == "retrain" else len(dataset.y_train)),
            "gap": gap_to_retrain(row, ref_row), "chosen": {}, "info": {},
        })
    # warm-up, so the first timed method does not pay one-off allocations
    unlearn("mnemonic_paper", original.model, original.codes, forget_classes, None, seed=seed)
    for name in cfg.methods:
        if name == "retrain":
            continue  # the retrain row above is this method (cached reference, its training time)
        ck = inputs[INPUT_MODEL[name]]
        result = unlearn(name, ck.model, ck.codes, forget_classes, data, seed=seed)
        row = score(result.model)
        rows.append(common | row | {
            "method": name, "reference": False, "seconds": result.seconds,
            "backward_passes": result.backward_passes, "gap": gap_to_retrain(row, ref_row),
            "chosen": result.chosen, "info": {k: v for k, v in result.info.items() if k != "warnings"},
            "warnings": result.info.get("warnings", []),
        })
    return rows


def _request_job_cached(cfg: SweepConfig, seed: int, cls: int) -> list[dict]:
    """:func:`_request_job`, its rows kept in ``<out>/rows/`` (reused when the sweep config matches)."""
    path = cfg.folder() / "rows" / f"seed{seed}_class{cls}.json"
    if path.exists():
        try:
            saved = json.loads(path.read_text())
            if saved.get("key") == cfg.key():
                return saved["rows"]
        except (OSError, ValueError):
            pass  # unreadable: run again
    rows = _request_job(cfg, seed, cls)
    write_json(path, {"key": cfg.key(), "rows": rows})
    return rows


# --------------------------------------------------------------------------
# Driver


def _parallel(fn, jobs_args: list[tuple], n_jobs: int) -> list:
    if n_jobs <= 1 or len(jobs_args) <= 1:
        return [fn(*a) for a in jobs_args]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs, backend="loky")(delayed(fn)(*a) for a in jobs_args)


def run_sweep(cfg: SweepConfig) -> dict:
    """Run the sweep and return ``{"config", "environment", "rows", "summary", "timing"}``."""
    start = time.perf_counter()
    dataset = load_experiment_data(cfg.base)
    for c in cfg.classes:
        check_forget_classes([c], dataset.num_classes)
    # stage 1: trained models, longest first so the pool stays busy
    train_args = []
    for s in cfg.seeds:
        base = replace(cfg.base, seed=s)
        train_args += [(base, "original", ()), (base, "no_codes", ())]
        train_args += [(base, "retrain", (c,)) for c in cfg.classes]
    trained = _parallel(_train_job, train_args, cfg.jobs)
    t_train = time.perf_counter() - start
    # stage 2: one job per (seed, class); each writes its rows, so a killed sweep resumes
    parts = _parallel(_request_job_cached, [(cfg, s, c) for s in cfg.seeds for c in cfg.classes], cfg.jobs)
    rows = [r for part in parts for r in part]
    band = retrain_band(cfg, dataset)
    t_total = time.perf_counter() - start
    device = resolve_device(cfg.base.device)
    return {
        "config": cfg.to_dict(),
        "environment": environment(device) | {"torch_threads_per_worker": cfg.base.threads or 1, "jobs": cfg.jobs},
        "trained": trained,
        "rows": rows,
        "summary": summarise(rows, cfg.classes),
        "retrain_band": band,
        "timing": {"train_stage_seconds": t_train, "total_seconds": t_total},
    }


def retrain_band(cfg: SweepConfig, dataset) -> dict | None:
    """epsilon-vs-retrain between retrain references of one class trained with different seeds.

    For every class and ordered pair of seeds (s, s'): the score of retrain(s')
    against retrain(s) on the forget-test samples, the pairing every row of
    the sweep uses (unlearned model of seed s against retrain(s)).  Returns
    ``{"epsilon-vs-retrain": {"mean", "std", "n_pairs", "per_class"}}``, or
    ``None`` with fewer than two seeds.  Uses only the cached references.
    """
    if len(cfg.seeds) < 2:
        return None
    device = resolve_device(cfg.base.device)
    x_te, y_te = dataset.split("test")
    values: dict[int, list[float]] = {}
    for c in cfg.classes:
        mask = y_te == c
        conf = {}
        for s in cfg.seeds:
            base = replace(cfg.base, seed=s)
            ref, _ = train_or_load(base, dataset, base.train_config(exclude=(c,)), device)
            conf[s] = sample_statistics(ref.model, x_te[mask], y_te[mask])["logit_confidence"]
        values[c] = [epsilon_vs_retrain(conf[b], conf[a]) for a in cfg.seeds for b in cfg.seeds if a != b]
    flat = [v for vs in values.values() for v in vs]
    return {"epsilon-vs-retrain": {
        "mean": float(np.mean(flat)), "std": float(np.std(flat)), "n_pairs": len(flat),
        "per_class": {c: float(np.mean(v)) for c, v in values.items()},
    }}


def _metric_values(row: dict) -> dict[str, float]:
    out = {k: row[k] for k in ACCURACY_METRICS}
    out |= {name: a["value"] for name, a in row["attacks"].items()}
    out |= {"gap": row["gap"], "seconds": row["seconds"], "backward_passes": row["backward_passes"]}
    return {k: math.nan if v is None else float(v) for k, v in out.items()}  # JSON stores NaN as null


def summarise(rows: list[dict], classes: Iterable[int]) -> dict:
    """Per method: mean, std (over every seed x class run) and the worst class of each metric.

    Worst class: the class whose seed-mean is lowest (A_R, E_F), highest (gap,
    time) or, for attacks, farthest from retrain's seed-mean on the same class.
    """
    classes = list(classes)
    by_method: dict[str, list[dict]] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    retrain_cls = {c: [_metric_values(r) for r in by_method.get("retrain", []) if r["forget_class"] == c]
                   for c in classes}
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
                    per_class[c] = float(np.nanmean(cx))
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


def _worst(metric: str, per_class: dict[int, float], retrain_cls: dict) -> tuple[int | None, float]:
    finite = {c: v for c, v in per_class.items() if math.isfinite(v)}
    if not finite:
        return None, math.nan
    if GOOD.get(metric) == "high":
        c = min(finite, key=finite.get)
    elif GOOD.get(metric) == "low" or metric == "backward_passes" or metric == "epsilon-vs-retrain":
        c = max(finite, key=finite.get)
    else:  # attacks: distance to retrain's value on the same class
        def dist(c):
            ref = [v[metric] for v in retrain_cls.get(c, [])]
            return abs(finite[c] - float(np.mean(ref))) if ref else 0.0

        c = max(finite, key=dist)
    return int(c), float(finite[c])


# --------------------------------------------------------------------------
# Tables

_COLUMNS = [
    ("A_R", "A_R (%)", 1),
    ("E_F", "E_F (%)", 1),
    ("A_R_train", "A_R train (%)", 1),
    ("E_F_train", "E_F train (%)", 1),
    ("entropy-LR", "entropy-LR", 3),
    ("loss-LR-CV", "loss-LR-CV", 3),
    ("confidence-SVC", "confidence-SVC", 3),
    ("epsilon-vs-retrain", "epsilon-vs-retrain", 2),
    ("linear probe", "linear probe", 3),
    ("gap", "gap to retrain", 2),
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
    summary, cfg = result["summary"], result["config"]
    order = [m for m in REFERENCES if m in summary] + [m for m in summary if m not in REFERENCES]
    head = "| method | " + " | ".join(label for _, label, _ in _COLUMNS) + " | backward passes |"
    sep = "|" + "---|" * (len(_COLUMNS) + 2)
    lines = [f"Mean +- std over {len(cfg['seeds'])} seeds x {len(cfg['classes'])} forget classes "
             f"(dataset {cfg['base']['dataset']}, model {cfg['base']['model']}, {cfg['base']['epochs']} epochs):", "",
             head, sep]

    def rows(cell, passes: str) -> list[str]:
        out = []
        for m in order:
            e = summary[m]
            name = f"*{m}*" if e["reference"] else m
            cells = [cell(e[k], d) for k, _, d in _COLUMNS]
            out.append(f"| {name} | " + " | ".join(cells) + f" | {_fmt(e['backward_passes'][passes], 0)} |")
        return out

    lines += rows(lambda v, d: f"{_fmt(v['mean'], d)} +- {_fmt(v['std'], d)}", "mean")
    lines += ["", "Worst class (class: its mean over seeds; lowest A_R / E_F, highest gap / time / epsilon, "
              "attacks farthest from retrain's value):", "", head, sep]
    lines += rows(lambda v, d: f"{v['worst_class']}: {_fmt(v['worst'], d)}", "worst")
    lines += ["", "Directions: A_R higher is better, E_F 100 = forgotten (retrain's value is the target); "
              "gap to retrain = mean |difference| to retrain over A_R, E_F (test, train) and "
              "confidence-SVC x 100, lower is better."]
    lines += [f"- {a.name}: {a.direction}." for a in ATTACKS.values()]
    nulls = [r["attacks"]["epsilon-vs-retrain"].get("null") for r in result.get("rows", [])]
    nulls = [v for v in nulls if v is not None]
    if nulls:
        lines += [f"- epsilon-vs-retrain of two samples of one distribution at this sample size "
                  f"(finite-sample floor): {np.mean(nulls):.2f}."]
    band = (result.get("retrain_band") or {}).get("epsilon-vs-retrain")
    if band:
        lines += [f"- epsilon-vs-retrain of a retrain reference trained with another seed (the retrain band, "
                  f"{band['n_pairs']} ordered seed pairs): {band['mean']:.2f} +- {band['std']:.2f}."]
    if "retrain" in summary:
        rt = summary["retrain"]["seconds"]["mean"]
        ratios = ", ".join(f"{m} {summary[m]['seconds']['mean'] / rt:.2g}" for m in order
                           if not summary[m]["reference"] and rt > 0)
        lines += ["", f"Time as a fraction of retrain's training time (same run): {ratios}."]
    if "original" in summary and "original-without-codes" in summary:
        with_codes = summary["original"]["seconds"]["mean"]
        without = summary["original-without-codes"]["seconds"]["mean"]
        lines += [f"Training with codes took {with_codes:.1f} s against {without:.1f} s without "
                  f"(ratio {with_codes / without:.2f}; times recorded when each cached model was trained)."]
    if cfg["base"]["dataset"] in ("mnist", "mnist5k"):
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


def add_subcommand(sub) -> None:
    d = ExperimentConfig()
    p = sub.add_parser(
        "sweep",
        help="methods x forget classes x seeds on one dataset: mean +- std and worst class",
        description="Train (or load cached) originals, no-code models and retrain references, run every "
        "method on every forget class and seed, evaluate accuracy, the five attacks and the gap to "
        "retrain; writes sweep.json and sweep.md.",
    )
    add_recipe_options(p)
    a = p.add_argument
    a("--methods", nargs="+", default=["all"], help="method names or 'all' (default all)")
    a("--classes", type=int, nargs="+", default=list(range(10)), help="forget classes (default 0..9)")
    a("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    a("--jobs", type=int, default=1, help="worker processes (default 1)")
    a("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    a("--device", default=d.device, help="cpu | cuda | cuda:N | auto (default cpu)")
    a("--cache-dir", default=d.cache_dir, help="trained-model cache (default data/cache)")
    a("--probe-max-train", type=int, default=2_000, help="train samples for the linear probe (default 2000)")
    a("--out-dir", default="", help="output folder (default reports/sweep/<dataset>-<key>)")
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args) -> int:
    methods = tuple(METHODS) if args.methods == ["all"] else tuple(args.methods)
    base = ExperimentConfig(
        dataset=args.dataset, data_root=args.data_root, model=args.model, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        t_mix=args.t_mix, code_dist=args.code_dist,
        cosine=args.cosine, device=args.device, threads=args.threads, cache_dir=args.cache_dir,
    )
    cfg = SweepConfig(base=base, methods=methods, classes=tuple(args.classes), seeds=tuple(args.seeds),
                      jobs=args.jobs, probe_max_train=args.probe_max_train, out_dir=args.out_dir)
    result = run_sweep(cfg)
    js, md = write_sweep(result, cfg.folder())
    print(markdown_tables(result))
    print(f"wall time {result['timing']['total_seconds']:.1f} s; wrote {js} and {md}")
    return 0


__all__ = [
    "PAPER_MNIST",
    "REFERENCES",
    "SweepConfig",
    "add_subcommand",
    "gap_to_retrain",
    "markdown_tables",
    "run_sweep",
    "summarise",
    "write_sweep",
]
