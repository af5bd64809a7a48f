"""What each stage notebook computes and keeps, built from the pipeline's stages.

Stage graph (an arrow = "reads the result of")::

    01_mnemonic_codes -> 02_training -> 03_fisher
                                     -> 04_unlearning -> 05_membership_evaluation
    06_report reads 02_training, 04_unlearning and 05_membership_evaluation

Every stage writes one folder ``<cache_dir>/stages/<stage>-<key>/`` through
:func:`mnemonic_mu.io.store.save_result`.  ``key`` hashes the stage's own
settings, the versions of the algorithms it runs and the keys of its upstream
stages (:func:`stage_key`), so a notebook finds its input by recomputing the key
from its parameters, never from a hard-coded path, and a result made by older
code is never reused.  Asking for a stage that was not computed runs that stage's ``compute_*``
function on the spot and says so in one logged line (``compute_upstream``, on by
default, so a notebook whose parameters changed still runs from "Run all");
with ``compute_upstream = False`` it raises :class:`StageOrderError` naming the
notebook to run first.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

import numpy as np
import torch

from . import pipeline
from .algorithms.attacks import sample_statistics
from .algorithms.codes import replace_with_codes
from .algorithms.dataset import Dataset
from .algorithms.fisher import data_fisher, fisher_distance, mean_fisher
from .algorithms.forget import fisher_ratio, layer_alphas
from .algorithms.methods import UnlearnData
from .algorithms.metrics import check_forget_classes, evaluate
from .bands import request_band
from .errors import CheckpointError, StageOrderError
from .io import store
from .io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .runtime import environment, setup
from .settings import Settings

LOG = logging.getLogger(__name__)

NOTEBOOKS = ("01_mnemonic_codes", "02_training", "03_fisher", "04_unlearning", "05_membership_evaluation", "06_report")

UPSTREAM: dict[str, tuple[str, ...]] = {
    "01_mnemonic_codes": (),
    "02_training": ("01_mnemonic_codes",),
    "03_fisher": ("02_training",),
    "04_unlearning": ("02_training",),
    "05_membership_evaluation": ("04_unlearning",),
    "06_report": ("02_training", "04_unlearning", "05_membership_evaluation"),
}

# The settings that change a stage's result (device, threads and paths do not) ...
STAGE_SETTINGS: dict[str, tuple[str, ...]] = {
    "01_mnemonic_codes": ("dataset", "split_seed", "code_dist", "seed", "t_mix", "batch_size"),
    "02_training": (
        "model",
        "epochs",
        "lr",
        "momentum",
        "weight_decay",
        "cosine",
        "trainer",
        "precision",
        "channels_last",
        "forget_classes",
        "band_seeds",
    ),
    "03_fisher": ("fisher_samples", "fisher_repeats", "lambda1", "lambda2"),
    "04_unlearning": ("lambda1", "lambda2", "step", "multi", "lambda1_grid", "lambda2_grid", "tune_lambdas"),
    "05_membership_evaluation": ("probe_max_train",),
    "06_report": ("baselines",),
}
# ... and the algorithms whose code does (their VERSION is part of the key).
STAGE_COMPONENTS: dict[str, tuple[str, ...]] = {
    "01_mnemonic_codes": ("data", "codes"),
    "02_training": ("train", "ensemble", "evaluate"),
    "03_fisher": ("fisher", "forget"),
    "04_unlearning": ("fisher", "forget", "evaluate"),
    "05_membership_evaluation": ("evaluate", "attacks", "divergence"),
    "06_report": ("evaluate", "attacks", "divergence"),
}
# --------------------------------------------------------------------------
# Keys and results


def _components(stage: str, s: Settings) -> tuple[str, ...]:
    comps = STAGE_COMPONENTS[stage]
    if stage == "06_report":
        comps += tuple(f"method:{m}" for m in s.baselines)
    return comps


def stage_key(s: Settings, stage: str) -> str:
    """The stage's settings and algorithm versions, chained to its upstream keys."""
    upstream = "+".join(stage_key(s, up) for up in UPSTREAM[stage]) or None
    own = {"stage": stage} | {n: s.to_dict()[n] for n in STAGE_SETTINGS[stage]}
    return store.key_of(own, _components(stage, s), upstream)


def stage_dir(s: Settings, stage: str):
    return s.cache_path / "stages" / f"{stage}-{stage_key(s, stage)}"


def save_stage(s: Settings, stage: str, result: dict, device="cpu", seconds=None, write_payload=None) -> store.Result:
    config = {
        "settings": {n: s.to_dict()[n] for n in STAGE_SETTINGS[stage]},
        "versions": store.versions(*_components(stage, s)),
        "upstream": {up: stage_key(s, up) for up in UPSTREAM[stage]},
        "config": s.to_dict(),
    }
    return store.save_result(
        stage_dir(s, stage),
        stage,
        stage_key(s, stage),
        result,
        config,
        environment(torch.device(device)),
        seconds,
        write_payload,
    )


def load_stage(s: Settings, stage: str) -> store.Result:
    """The stage's result for these settings; see the module doc for a missing one."""
    folder = stage_dir(s, stage)
    if not folder.is_dir():
        if s.compute_upstream:
            LOG.warning(
                "stage %s has no result for these settings (key %s): computing it here, as notebooks/%s.ipynb would",
                stage,
                stage_key(s, stage),
                stage,
            )
            return COMPUTE[stage](s)
        raise StageOrderError(
            f"no result of stage {stage} for these settings (key {stage_key(s, stage)}): "
            f"run notebooks/{stage}.ipynb first with the same parameters, or set compute_upstream = True"
        )
    return store.load_result(folder, stage, stage_key(s, stage))


# --------------------------------------------------------------------------
# 01: codes


def measure_replacement(
    dataset: Dataset, codes, t_mix: float, batch_size: int, epochs: int = 10, seed: int = 0
) -> dict:
    """Share of training draws replaced by codes over ``epochs`` simulated epochs (Algorithm 1):
    the measured rate, its binomial standard error and the rate per class."""
    gen = torch.Generator().manual_seed(int(seed))
    x, y = dataset.x_train, dataset.y_train
    hits, draws = torch.zeros(dataset.num_classes), torch.zeros(dataset.num_classes)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            yb = y[perm[i : i + batch_size]]
            _, mask = replace_with_codes(x[perm[i : i + batch_size]], yb, codes, t_mix, gen)
            hits += torch.bincount(yb[mask], minlength=dataset.num_classes).float()
            draws += torch.bincount(yb, minlength=dataset.num_classes).float()
    return {
        "t_mix": t_mix,
        "measured": float(hits.sum() / draws.sum()),
        "std_error": math.sqrt(t_mix * (1 - t_mix) / float(draws.sum())),
        "draws": int(draws.sum()),
        "per_class": (hits / draws.clamp_min(1)).tolist(),
    }


def compute_codes(s: Settings, dataset: Dataset | None = None) -> store.Result:
    """Stage 01: draw the codes and measure the replacement rate."""
    start = time.perf_counter()
    dataset = dataset or pipeline.load_data(s)
    codes = pipeline.make_codes(s, dataset)
    result = {
        "code_dist": s.code_dist,
        "num_classes": dataset.num_classes,
        "input_shape": list(dataset.input_shape),
        "codes_sha256": hashlib.sha256(codes.numpy().tobytes()).hexdigest(),
        "code_stats": {"mean": float(codes.mean()), "std": float(codes.std())},
        "data_stats": {"mean": float(dataset.x_train.mean()), "std": float(dataset.x_train.std())},
        "replacement": measure_replacement(dataset, codes, s.t_mix, s.batch_size, seed=s.seed),
        "dataset": dataset.summary(),
    }
    art = save_stage(s, "01_mnemonic_codes", result, seconds=time.perf_counter() - start)
    art.extras["codes"] = codes
    return art


# --------------------------------------------------------------------------
# 02: training


def brief(ev: dict) -> dict:
    """The accuracy metrics kept in a stage result (percent)."""
    keep = ("A_R", "E_F", "A_R_train", "E_F_train", "test_accuracy", "per_class_accuracy")
    return {k: ev[k] for k in keep if k in ev}


def compute_training(s: Settings, dataset: Dataset | None = None, progress: bool = False) -> store.Result:
    """Stage 02: the original model (with codes), the same without codes, and retrain (``models``);
    and the retrain references of ``s.band_seeds``, retrain's seed band (``band``)."""
    start = time.perf_counter()
    device = setup(s)
    dataset = dataset or pipeline.load_data(s)
    codes_art = load_stage(s, "01_mnemonic_codes")
    forget_classes = check_forget_classes(s.forget_classes, dataset.num_classes)
    trained = pipeline.train_models(s, dataset, device=device, progress=progress)
    expected = pipeline.make_codes(s, dataset)
    models, checkpoints = {}, {}
    for role, (ck, cached) in trained.items():
        if role == "original" and not torch.equal(ck.codes.cpu(), expected):
            raise CheckpointError(f"the codes in {ck.folder} are not the codes of stage 01; delete it")
        checkpoints[role] = ck
        models[role] = pipeline.reference_row(ck, dataset) | {
            "from_cache": cached,
            "history": ck.history,
            "metrics": brief(evaluate(ck.model, dataset, forget_classes)),
        }
    band = {}
    for b, (ck, cached) in pipeline.train_band(s, dataset, device, progress).items():  # retrain's seed band
        checkpoints[band_role(b)] = ck
        band[band_role(b)] = pipeline.reference_row(ck, dataset) | {
            "from_cache": cached,
            "band_seed": b,
            "metrics": brief(evaluate(ck.model, dataset, forget_classes)),
        }
    result = {"codes_key": codes_art.key, "forget_classes": list(forget_classes), "models": models, "band": band}
    art = save_stage(s, "02_training", result, device, time.perf_counter() - start)
    art.extras["checkpoints"] = checkpoints
    return art


def band_role(band_seed: int) -> str:
    """Stage 02's name of the band reference of ``band_seed`` (:func:`mnemonic_mu.pipeline.train_band`)."""
    return f"band{band_seed}"


def load_models(s: Settings, training: store.Result, roles=pipeline.ROLES, device="cpu") -> dict[str, Checkpoint]:
    """The checkpoints stage 02 recorded, verified against their keys."""
    if "checkpoints" in training.extras:
        return {r: training.extras["checkpoints"][r] for r in roles}
    out = {}
    for role in roles:
        entry = training.result["models"].get(role) or training.result.get("band", {})[role]
        try:
            out[role] = load_checkpoint(entry["checkpoint"], expect={"key": entry["key"]}, device=device)
        except CheckpointError as exc:
            raise StageOrderError(f"{exc} (run notebooks/02_training.ipynb again)") from None
    return out


def forget_mask(y: torch.Tensor, forget_classes) -> torch.Tensor:
    return torch.isin(y, torch.tensor(list(forget_classes), dtype=y.dtype))


# --------------------------------------------------------------------------
# 03: the code Fisher against the Oracle Fisher


def compute_fisher(s: Settings, dataset: Dataset | None = None, original: Checkpoint | None = None) -> store.Result:
    """Stage 03: code Fisher vs Oracle Fisher vs Fisher of n real samples (the paper's Fig. 5).

    The Oracle is the per-sample empirical Fisher over all training samples of
    the forget classes; distances are :func:`fisher_distance` to it.
    """
    start = time.perf_counter()
    device = setup(s)
    dataset = dataset or pipeline.load_data(s)
    if original is None:
        original = load_models(s, load_stage(s, "02_training"), ("original",), device)["original"]
    model, codes = original.model, original.codes.to(device)
    forget_classes = check_forget_classes(s.forget_classes, dataset.num_classes)
    retain_classes = [c for c in range(dataset.num_classes) if c not in forget_classes]

    t0 = time.perf_counter()
    per_class = pipeline.code_fishers(model, codes)
    code_seconds = time.perf_counter() - t0
    f_forget = mean_fisher(per_class[c] for c in forget_classes)
    f_retain = mean_fisher(per_class[c] for c in retain_classes)

    x, y = dataset.split("train")
    m = forget_mask(y, forget_classes)
    xf, yf = x[m], y[m]
    t0 = time.perf_counter()
    oracle = data_fisher(model, xf, yf, chunk_size=64)
    oracle_seconds = time.perf_counter() - t0

    gen = torch.Generator().manual_seed(s.seed)
    sample_distances: dict[str, list[float]] = {}
    for n in s.fisher_samples:
        if n >= len(yf):
            continue
        ds = []
        for _ in range(s.fisher_repeats):
            idx = torch.randperm(len(yf), generator=gen)[:n]
            ds.append(fisher_distance(data_fisher(model, xf[idx], yf[idx], chunk_size=64), oracle))
        sample_distances[str(n)] = ds

    eta = fisher_ratio(f_forget, f_retain)
    alpha = layer_alphas(eta, s.lambda1, s.lambda2)
    layers = {
        name: {
            "numel": e.numel(),
            "eta_max": float(e.max()),
            "eta_median": float(e.median()),
            "alpha": alpha[name],
            "max_change": float((alpha[name] * e).max()),
        }
        for name, e in eta.items()
    }
    result = {
        "forget_classes": list(forget_classes),
        "oracle_samples": len(yf),
        "code_distance": fisher_distance(f_forget, oracle),
        "retain_code_distance": fisher_distance(f_retain, oracle),
        "sample_distances": sample_distances,
        "code_backward_passes": len(per_class),
        "code_seconds": code_seconds,
        "oracle_seconds": oracle_seconds,
        "layers": layers,
    }
    art = save_stage(s, "03_fisher", result, device, time.perf_counter() - start)
    art.extras.update(per_class=per_class, f_forget=f_forget, f_retain=f_retain, oracle=oracle, eta=eta)
    return art


# --------------------------------------------------------------------------
# 04: the one-shot step


def compute_unlearning(s: Settings, dataset: Dataset | None = None, original: Checkpoint | None = None) -> store.Result:
    """Stage 04: the validation sweep of (lambda1, lambda2), the one-shot step, its evaluation.

    The unlearned model is saved as a checkpoint inside the stage folder.
    """
    start = time.perf_counter()
    device = setup(s)
    dataset = dataset or pipeline.load_data(s)
    training = load_stage(s, "02_training")
    if original is None:
        original = load_models(s, training, ("original",), device)["original"]
    model, codes = original.model, original.codes.to(device)
    forget_classes = check_forget_classes(s.forget_classes, dataset.num_classes)

    per_class = pipeline.code_fishers(model, codes)
    sweep = pipeline.lambda_sweep(s, model, codes, dataset, forget_classes, per_class)
    l1_best, l2_best, _ = pipeline.best_lambdas(sweep)
    lambdas = (l1_best, l2_best) if s.tune_lambdas else (s.lambda1, s.lambda2)
    done = pipeline.forget_step(s, model, codes, forget_classes, per_class, lambdas)
    after = evaluate(done.model, dataset, forget_classes)
    result = {
        "forget_classes": list(forget_classes),
        "lambda1": lambdas[0],
        "lambda2": lambdas[1],
        "lambdas_from": "validation sweep" if s.tune_lambdas else "parameters",
        "validation_best": {"lambda1": l1_best, "lambda2": l2_best},
        "step": s.step,
        "record": done.record.to_dict() | {"seconds": done.seconds},
        "row": pipeline.record_row(done.record, done.seconds),
        "forget_seconds": done.seconds,
        "backward_passes": done.record.backward_passes,
        "before": training.result["models"]["original"]["metrics"],
        "after": brief(after),
        "confusion_matrix": after["confusion_matrix"],
        "sweep": sweep,
    }

    def write_model(tmp) -> None:
        save_checkpoint(
            tmp / "model",
            done.model,
            original.codes,
            original.config | {"unlearned": True, "forget_classes": list(forget_classes)},
            original.splits,
        )

    art = save_stage(s, "04_unlearning", result, device, time.perf_counter() - start, write_model)
    art.extras.update(model=done.model, record=done.record, per_class=per_class)
    return art


def load_unlearned(unlearning: store.Result, device="cpu") -> torch.nn.Module:
    if "model" in unlearning.extras:
        return unlearning.extras["model"]
    return load_checkpoint(unlearning.folder / "model", device=device).model


# --------------------------------------------------------------------------
# 05: membership evaluation


def sample_groups(dataset: Dataset, forget_classes) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """retain-train (D_r), forget-train (D_f), retain-test and forget-test."""
    out = {}
    for split in ("train", "test"):
        x, y = dataset.split(split)
        m = forget_mask(y, forget_classes)
        out[f"retain-{split}"] = (x[~m], y[~m])
        out[f"forget-{split}"] = (x[m], y[m])
    return out


MEMBERSHIP_ROLES = ("original", "mnemonic", "retrain", "no_codes")


def compute_membership(s: Settings, dataset: Dataset | None = None) -> store.Result:
    """Stage 05: per-sample loss / entropy / confidence summaries of every group, and
    :func:`mnemonic_mu.pipeline.score` (accuracies and every attack) for the
    original, unlearned, retrain and no-codes models."""
    start = time.perf_counter()
    device = setup(s)
    dataset = dataset or pipeline.load_data(s)
    forget_classes = check_forget_classes(s.forget_classes, dataset.num_classes)
    band_roles = [band_role(b) for b in s.band_seeds]
    checkpoints = load_models(s, load_stage(s, "02_training"), ("original", "retrain", "no_codes", *band_roles), device)
    models = {role: checkpoints[role].model for role in ("original", "retrain", "no_codes")}
    models["mnemonic"] = load_unlearned(load_stage(s, "04_unlearning"), device)
    groups = sample_groups(dataset, forget_classes)
    keep = ("loss", "entropy", "confidence")
    distributions = {
        role: {
            group: {
                k: {"mean": float(v.mean()), "median": float(np.median(v))}
                for k, v in sample_statistics(models[role], *xy).items()
                if k in keep
            }
            for group, xy in groups.items()
        }
        for role in MEMBERSHIP_ROLES
    }
    # the references' and band references' rows are kept by the pipeline (a report computes them
    # ahead, in parallel: pipeline.prefetch); the step's model is this run's own
    scores = {
        role: pipeline.score(models[role], models["retrain"], dataset, s)
        if role == "mnemonic"
        else pipeline.reference_score(s, role)
        for role in MEMBERSHIP_ROLES
    }
    attacks = {role: row["attacks"] for role, row in scores.items()}
    band_scores = {b: pipeline.reference_score(s, band_role(b)) for b in s.band_seeds}
    result = {
        "forget_classes": list(forget_classes),
        "distributions": distributions,
        "attacks": attacks,
        "scores": scores,
        "band_scores": band_scores,
    }
    art = save_stage(s, "05_membership_evaluation", result, device, time.perf_counter() - start)
    art.extras["models"] = models
    return art


# --------------------------------------------------------------------------
# 06: the summary, with every baseline


def compute_report(s: Settings, dataset: Dataset | None = None) -> store.Result:
    """Stage 06: ``metrics/summary.json``: dataset, forget classes, seed and, per method, the
    scores of :func:`mnemonic_mu.pipeline.score`, times and ``gap``; the
    baselines of ``s.baselines`` are run and scored here (saved, so a rerun is instant)."""
    start = time.perf_counter()
    device = setup(s)
    dataset = dataset or pipeline.load_data(s)
    training = load_stage(s, "02_training")
    unlearning = load_stage(s, "04_unlearning").result
    membership = load_stage(s, "05_membership_evaluation").result
    scores = membership["scores"]
    rows = {role: dict(scores[role]) | dict(training.result["models"][role]) for role in pipeline.ROLES}
    for row in rows.values():
        row.pop("history", None)
        row.pop("metrics", None)
    rows["mnemonic"] = dict(scores["mnemonic"]) | unlearning["row"]
    if s.baselines:
        forget_classes = check_forget_classes(s.forget_classes, dataset.num_classes)
        data = UnlearnData.from_dataset(dataset, forget_classes, s.train_config())
        for name in s.baselines:
            rows[name] = pipeline.method_score(s, name, data)  # kept by the pipeline (see compute_membership)
    pipeline.add_gaps(rows)
    band_rows = {
        int(b): dict(row) | dict(training.result["band"][band_role(int(b))])
        for b, row in membership.get("band_scores", {}).items()
    }
    for row in band_rows.values():
        row.pop("metrics", None)
    band = request_band(rows, pipeline.add_gaps(band_rows, rows["retrain"]))
    for attack, sig in (band or {}).get("signal", {}).items():  # every row says when its attack cannot tell
        for row in rows.values():
            if attack in (row.get("attacks") or {}):
                row["attacks"][attack]["no_signal"] = sig["no_signal"]
    summary = {
        "dataset": s.dataset,
        "model": s.model,
        "forget_classes": list(s.forget_classes),
        "seed": s.seed,
        "units": "percent",
        "methods": rows,
        "band_rows": band_rows,
        "band": band,
    }
    return save_stage(s, "06_report", summary, device, time.perf_counter() - start)


COMPUTE = {
    "01_mnemonic_codes": compute_codes,
    "02_training": compute_training,
    "03_fisher": compute_fisher,
    "04_unlearning": compute_unlearning,
    "05_membership_evaluation": compute_membership,
    "06_report": compute_report,
}


__all__ = [
    "COMPUTE",
    "NOTEBOOKS",
    "STAGE_SETTINGS",
    "band_role",
    "UPSTREAM",
    "compute_codes",
    "compute_fisher",
    "compute_membership",
    "compute_report",
    "compute_training",
    "compute_unlearning",
    "load_models",
    "load_stage",
    "load_unlearned",
    "measure_replacement",
    "sample_groups",
    "save_stage",
    "stage_dir",
    "stage_key",
]
