"""The benchmark items: each sets up its inputs, then times one operation.

``ITEMS[name](quick)`` returns a dict with the timing (see
:func:`benchmarks.common.timed`) plus what was measured.  ``run.py`` runs
every item in its own child process, so each item's peak memory is its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from mnemonic_mu import pipeline
from mnemonic_mu.algorithms.codes import generate_codes
from mnemonic_mu.algorithms.dataset import Dataset
from mnemonic_mu.algorithms.fisher import code_fisher_means
from mnemonic_mu.algorithms.forget import forget
from mnemonic_mu.algorithms.models import build_model
from mnemonic_mu.algorithms.train import TrainConfig, train_model
from mnemonic_mu.io.data import load_dataset
from mnemonic_mu.io.store import train_or_load
from mnemonic_mu.settings import Settings

from .common import load_average, timed

ROOT = Path(__file__).resolve().parents[1]
FORGET = [0]  # the paper's forget class
MLP_EPOCHS = 200  # the paper's MNIST recipe (the original and the retrain reference)
MNIST_ROOT = os.environ.get("MNEMONIC_MU_MNIST_ROOT", "/root/datasets")  # torchvision root with MNIST/raw


def _reps(quick: bool, full: tuple[int, int], fast: tuple[int, int]) -> dict:
    warmup, reps = fast if quick else full
    return {"warmup": warmup, "reps": reps}


# --------------------------------------------------------------------------
# Models


def paper_mlp(dataset_name: str = "mnist5k"):
    """The paper's MNIST recipe (MLP, 200 epochs, seed 0) on the embedded mnist5k
    data, or with ``"mnist"`` on full MNIST under ``MNEMONIC_MU_MNIST_ROOT`` (the
    paper's scale; trained once, about 8 min on 2 cores, then cached):
    (cfg, dataset, checkpoint)."""
    cfg = Settings(
        dataset=dataset_name,
        data_root=MNIST_ROOT if dataset_name == "mnist" else str(ROOT / "data"),
        model="mlp",
        epochs=MLP_EPOCHS,
        cache_dir=str(ROOT / "data/cache"),
    )
    dataset = load_dataset(dataset_name, cfg.data_path, split_seed=cfg.split_seed)
    ck, _ = train_or_load(cfg, dataset, cfg.train_config(), torch.device("cpu"))
    return cfg, dataset, ck


def resnet18_cifar(device: str = "cpu"):
    """ResNet-18 (CIFAR stem) with non-trivial BatchNorm statistics, and its 10 codes.

    The cost of the forgetting step does not depend on what the weights
    learned, so an untrained network stands in for a CIFAR-10 model (no
    CIFAR-10 offline here, and training it on 2 cores takes hours).
    """
    model = build_model("resnet18", (3, 32, 32), 10, seed=0)
    gen = torch.Generator().manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, 3, 32, 32, generator=gen) * 1.5 + 0.2)
    model.eval()
    return model.to(device), generate_codes(10, (3, 32, 32), "normal", seed=0).to(device)


# --------------------------------------------------------------------------
# 1-2. Forgetting step and code Fisher


def _forget_item(model, codes, method: str, rep: dict, sync=None, step: str = "paper") -> dict:
    def run():
        return forget(model, codes, FORGET, 1e-3, 10.0, step=step, fisher_method=method)

    out = timed(run, **rep, sync=sync)
    _, record = run()
    out.update(
        fisher_method=method, step=step, sign=record.sign, scale=record.scale, backward_passes=record.backward_passes
    )
    return out


def forget_mlp(method: str, step: str = "paper", dataset_name: str = "mnist5k"):
    def item(quick: bool) -> dict:
        _, _, ck = paper_mlp(dataset_name)
        out = _forget_item(ck.model, ck.codes, method, _reps(quick, (3, 30), (2, 10)), step=step)
        return out | {
            "what": f"forget class 0, {dataset_name} MLP 784-1000-10 (200 epochs), {step} step, Fisher '{method}'"
        }

    return item


def _gflop(fn) -> float:
    """Floating-point operations of one call of ``fn`` (torch's FLOP counter: matmuls and
    convolutions, forward and backward), in GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


def matmul_rate(quick: bool) -> dict:
    """The attainable fp32 rate of this machine: a 2048 x 2048 matmul (2 * 2048^3 FLOP)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    out = timed(lambda: a @ b, **_reps(quick, (2, 10), (1, 3)))
    return out | {
        "what": "fp32 2048x2048 matmul: the machine's attainable GFLOP/s",
        "gflops_achieved": round(2 * 2048**3 / 1e9 / out["median_s"], 1),
    }


def forget_resnet18(method: str):
    def item(quick: bool) -> dict:
        model, codes = resnet18_cifar()
        out = _forget_item(model, codes, method, _reps(quick, (1, 5), (1, 2)))
        # the arithmetic the step needs, and the rate it ran at: a floor for this CPU
        gflop = _gflop(lambda: forget(model, codes, FORGET, 1e-3, 10.0, fisher_method=method))
        gflop_timed = gflop - _gflop(lambda: model(codes)) - _gflop(lambda: model(codes[:1]))  # untimed checks
        return out | {
            "what": f"forget class 0, ResNet-18 CIFAR stem, 10 codes 3x32x32, Fisher '{method}'",
            "gflop": round(gflop_timed, 2),
            "gflops_achieved": round(gflop_timed / out["median_s"], 1),
        }

    return item


def forget_cuda(model_name: str):
    """The same step on CUDA (only run when a GPU is present; not exercised on the CPU machine)."""

    def item(quick: bool) -> dict:
        dev = torch.device("cuda")
        if model_name == "mlp":
            _, _, ck = paper_mlp()
            model, codes = ck.model.to(dev), ck.codes.to(dev)
        else:
            model, codes = resnet18_cifar("cuda")
        torch.cuda.reset_peak_memory_stats()
        out = _forget_item(model, codes, "batched", _reps(quick, (5, 30), (2, 10)), sync=torch.cuda.synchronize)
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return out | {"what": f"forget class 0, {model_name}, CUDA, Fisher 'batched'"}

    return item


def fisher(model_name: str, method: str):
    """f_F and f_R of Eq. 6 from the 10 codes (the Fisher part of the step)."""

    def item(quick: bool) -> dict:
        if model_name == "mlp":
            _, _, ck = paper_mlp()
            model, codes = ck.model, ck.codes
            rep = _reps(quick, (3, 20), (2, 5))
        else:
            model, codes = resnet18_cifar()
            rep = _reps(quick, (1, 2) if method == "vmap" else (1, 5), (1, 1) if method == "vmap" else (1, 2))
        groups = [FORGET, [c for c in range(len(codes)) if c not in FORGET]]
        out = timed(lambda: code_fisher_means(model, codes, groups, method), **rep)
        return out | {"what": f"f_F, f_R from 10 codes, {model_name}, '{method}'", "backward_passes": len(codes)}

    return item


# --------------------------------------------------------------------------
# 3. SSD and retrain on the same model and data


def ssd_mlp(quick: bool, dataset_name: str = "mnist5k") -> dict:
    from mnemonic_mu.algorithms.baselines import ssd
    from mnemonic_mu.algorithms.method_api import UnlearnData
    from mnemonic_mu.algorithms.methods import METHODS

    cfg, dataset, ck = paper_mlp(dataset_name)
    data = UnlearnData.from_dataset(dataset, FORGET, cfg.train_config())
    grid = METHODS["ssd"].grid  # the registry's grid, as the sweep runs it
    out = timed(lambda: ssd(ck.model, ck.codes, FORGET, data, **grid), **_reps(quick, (1, 3), (1, 1)))
    res = ssd(ck.model, ck.codes, FORGET, data, **grid)
    return out | {
        "what": "baselines.ssd (data Fisher on forget + all train data, alpha chosen on validation), "
        f"{dataset_name} MLP",
        "backward_passes": res.backward_passes,
        "chosen": res.chosen,
    }


def ssd_mlp_generic(quick: bool) -> dict:
    """SSD with the generic per-sample Fisher (torch.func vmap, :func:`mnemonic_mu.algorithms.fisher.data_fisher`).

    ``baselines.ssd`` uses a factorised exact Fisher for all-Linear models (one
    batched backward per 512 samples); any other model takes this path.
    """
    from mnemonic_mu.algorithms import baselines, fisher
    from mnemonic_mu.algorithms.method_api import UnlearnData
    from mnemonic_mu.algorithms.methods import METHODS

    cfg, dataset, ck = paper_mlp()
    data = UnlearnData.from_dataset(dataset, FORGET, cfg.train_config())
    fisher.linear_fisher = lambda *a, **k: None  # force the generic path (this child process only)
    out = timed(lambda: baselines.ssd(ck.model, ck.codes, FORGET, data, **METHODS["ssd"].grid), warmup=0, reps=1)
    return out | {
        "what": "baselines.ssd with the generic vmap per-sample Fisher (as for non-Linear models), mnist5k MLP"
    }


def ssd_fisher_mlp(quick: bool) -> dict:
    """SSD's dominant cost alone: the per-sample data Fishers it needs (no selection)."""
    from mnemonic_mu.algorithms.fisher import sample_fisher
    from mnemonic_mu.algorithms.method_api import UnlearnData

    cfg, dataset, ck = paper_mlp()
    data = UnlearnData.from_dataset(dataset, FORGET, cfg.train_config())
    x_all = torch.cat([data.x_retain, data.x_forget])
    y_all = torch.cat([data.y_retain, data.y_forget])

    def run():
        sample_fisher(ck.model, data.x_forget, data.y_forget)
        sample_fisher(ck.model, x_all, y_all)

    out = timed(run, **_reps(quick, (1, 5), (1, 2)))
    return out | {
        "what": "SSD's data Fishers only (fisher.sample_fisher on forget and all train data)",
        "backward_passes": len(data.y_forget) + len(y_all),
    }


def retrain_mlp(quick: bool, dataset_name: str = "mnist5k") -> dict:
    """Retrain from scratch on the retain data, the original's recipe.

    ``MNEMONIC_MU_BENCH_RETRAIN_EPOCHS`` (``--retrain-epochs``; on full MNIST
    ``MNEMONIC_MU_BENCH_PAPER_RETRAIN_EPOCHS``, ``--paper-retrain-epochs``)
    measures fewer epochs and scales the time to the recipe's (flagged ``extrapolated``);
    ``--quick`` measures 10.
    """
    from mnemonic_mu.algorithms.baselines import retrain
    from mnemonic_mu.algorithms.method_api import UnlearnData

    cfg, dataset, ck = paper_mlp(dataset_name)
    train_cfg = cfg.train_config()
    var = "MNEMONIC_MU_BENCH_PAPER_RETRAIN_EPOCHS" if dataset_name == "mnist" else "MNEMONIC_MU_BENCH_RETRAIN_EPOCHS"
    epochs = int(os.environ.get(var) or (10 if quick else train_cfg.epochs))
    epochs = min(epochs, train_cfg.epochs)
    data = UnlearnData.from_dataset(dataset, FORGET, replace(train_cfg, epochs=epochs))
    out = timed(lambda: retrain(ck.model, ck.codes, FORGET, data), warmup=0, reps=1)
    scale = train_cfg.epochs / epochs
    for k in ("median_s", "min_s", "max_s", "cpu_median_s"):
        out[k] *= scale
    return out | {
        "what": f"methods.retrain, {dataset_name} MLP, {train_cfg.epochs} epochs"
        + (f" ({epochs} epochs measured, time scaled x{scale:g})" if scale != 1 else ""),
        "epochs_measured": epochs,
        "extrapolated": scale != 1,
    }


# --------------------------------------------------------------------------
# 4. One training epoch: kit loop vs per-item DataLoader


def _mnist60k():
    """The 60,000 official MNIST training images as uint8 and as the kit's float tensors."""
    from mnemonic_mu.io.data import read_idx  # the kit's own IDX reader (raw or .gz)

    raw = Path(MNIST_ROOT) / "MNIST" / "raw"

    def find(stem: str) -> Path:
        for path in (raw / stem, raw / f"{stem}.gz"):
            if path.is_file():
                return path
        raise FileNotFoundError(f"{stem} not found in {raw}; set MNEMONIC_MU_MNIST_ROOT to a torchvision data root")

    images = torch.from_numpy(read_idx(find("train-images-idx3-ubyte")).copy())
    labels = torch.from_numpy(read_idx(find("train-labels-idx1-ubyte")).astype("int64"))
    return images, labels


def _kit_dataset(images: torch.Tensor, labels: torch.Tensor) -> Dataset:
    x = (images.float() / 255.0).unsqueeze(1)  # the same values as load_dataset("mnist") gives
    idx = torch.arange(len(labels))
    return Dataset("mnist60k", x, labels, x[:10], labels[:10], x[:10], labels[:10], 10, idx, idx[:10], idx[:10])


def epochs(quick: bool) -> dict:
    """One epoch three ways, interleaved (kit with codes, kit without, per-item DataLoader).

    The variants take turns within each repetition, in a rotating order, so
    a change in the machine's load hits all of them alike; the ratios are
    medians of the per-repetition ratios.  Peak memory is shared by the
    three (one process).
    """
    import statistics

    from .common import load_average, peak_rss_mb, rss_mb
    from .pipelines import MNISTItems, dataloader_epoch, make_loader, make_optimizer

    images, labels = _mnist60k()
    ds = _kit_dataset(images, labels)
    codes = generate_codes(10, (1, 28, 28), "normal", seed=0)
    cfg = TrainConfig(epochs=1, t_mix=0.1, eval_every=0)
    cfg0 = replace(cfg, t_mix=0.0)
    kit, kit0, ref = (build_model("mlp", (1, 28, 28), 10, seed=0) for _ in range(3))
    gen = torch.Generator().manual_seed(0)
    loader = make_loader(MNISTItems(images, labels), cfg.batch_size, gen, num_workers=0)
    opt = make_optimizer(ref, cfg)
    runs = {
        "epoch_kit": lambda: train_model(kit, ds, codes, cfg),
        "epoch_kit_no_codes": lambda: train_model(kit0, ds, codes, cfg0),
        "epoch_dataloader": lambda: dataloader_epoch(ref, loader, codes, opt, cfg.t_mix, gen),
    }
    warmup, reps = (1, 1) if quick else (1, 3)
    rss_before = rss_mb()
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    load_before = load_average()
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    names = list(runs)
    for r in range(reps):
        for k in names[r % 3 :] + names[: r % 3]:
            t0, c0 = time.perf_counter(), time.process_time()
            runs[k]()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    peak = peak_rss_mb()
    whats = {
        "epoch_kit": "train_model, one epoch, 60k MNIST, MLP, batch 128, t_mix 0.1",
        "epoch_kit_no_codes": "train_model, one epoch, 60k MNIST, MLP, batch 128, t_mix 0 (no codes)",
        "epoch_dataloader": "per-item torchvision-style pipeline (uint8 -> PIL -> ToTensor, DataLoader, "
        "0 workers), one epoch, 60k MNIST, MLP, batch 128, t_mix 0.1",
    }
    out = {"variants": {}, "load_before": load_before, "load_after": load_average(), "n": len(labels)}
    for k in runs:
        out["variants"][k] = {
            "median_s": statistics.median(wall[k]),
            "min_s": min(wall[k]),
            "max_s": max(wall[k]),
            "cpu_median_s": statistics.median(cpu[k]),
            "reps": reps,
            "warmup": warmup,
            "load_before": load_before,
            "load_after": out["load_after"],
            "rss_before_mb": round(rss_before, 1),
            "peak_rss_mb": round(peak, 1),
            "peak_extra_mb": round(max(0.0, peak - rss_before), 1),
            "what": whats[k] + " (interleaved with the other epoch variants; memory shared)",
        }

    def pair(a, b):
        return statistics.median(x / y for x, y in zip(wall[a], wall[b]))

    out["paired_ratios"] = {
        "epoch_vs_dataloader": pair("epoch_dataloader", "epoch_kit"),
        "code_training_overhead": pair("epoch_kit", "epoch_kit_no_codes"),
    }
    return out


# --------------------------------------------------------------------------
# 4b. Ensemble training: K models as one computation vs K train_model runs

ENSEMBLE_K = 12  # 6 originals (seeds 0-5) + their 6 retrain references (class 0 left out)
ENSEMBLE_EPOCHS = 3


def ensemble(quick: bool) -> dict:
    """K = 12 MLPs 784-1000-10 on mnist5k, a few epochs: ``train_ensemble`` vs 12
    sequential ``train_model`` runs with the same members, interleaved in one process.

    Also the arithmetic floor: the FLOPs of the 12 trainings (torch's FLOP
    counter over one ``train_model`` epoch of each kind of member, times the
    epochs; the ensemble's own count is recorded to show it does the same
    arithmetic) divided by this machine's fp32 matmul rate measured here.
    """
    import statistics

    from mnemonic_mu.algorithms.ensemble import train_ensemble

    from .common import peak_rss_mb, rss_mb

    ds = load_dataset("mnist5k")
    half = ENSEMBLE_K // 2
    base = TrainConfig(epochs=ENSEMBLE_EPOCHS, t_mix=0.1)
    members = [(generate_codes(10, ds.input_shape, "normal", seed=s), replace(base, seed=s)) for s in range(half)]
    members += [(codes, replace(cfg, exclude_classes=tuple(FORGET))) for codes, cfg in members]

    def sequential():
        for codes, cfg in members:
            train_model(build_model("mlp", ds.input_shape, ds.num_classes, seed=cfg.seed), ds, codes, cfg)

    runs = {"ensemble_mlp12": lambda: train_ensemble("mlp", ds, members), "sequential_mlp12": sequential}
    # warm-up: one-time costs of both paths (torch.func set-up, first matmuls)
    small = [(c, replace(cfg, epochs=1)) for c, cfg in members[:2]]
    train_ensemble("mlp", ds, small)
    train_model(build_model("mlp", ds.input_shape, 10, seed=0), ds, *small[0])
    reps = 1 if quick else 2
    rss_before = rss_mb()
    load_before = load_average()
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    names = list(runs)
    for r in range(reps):
        for k in names[r % 2 :] + names[: r % 2]:
            t0, c0 = time.perf_counter(), time.process_time()
            runs[k]()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    peak = peak_rss_mb()
    load_after = load_average()

    # arithmetic floor: FLOPs of all 12 trainings at the machine's fp32 matmul rate
    one_epoch = [(c, replace(cfg, epochs=1)) for c, cfg in members]
    per_epoch = [
        _gflop(lambda c=c, cfg=cfg: train_model(build_model("mlp", ds.input_shape, 10, seed=cfg.seed), ds, c, cfg))
        for c, cfg in (one_epoch[0], one_epoch[half])
    ]
    gflop = ENSEMBLE_EPOCHS * half * sum(per_epoch)
    gflop_ensemble = ENSEMBLE_EPOCHS * _gflop(lambda: train_ensemble("mlp", ds, one_epoch))
    rate = matmul_rate(quick)["gflops_achieved"]
    floor = {
        "gflop": round(gflop, 1),
        "gflop_ensemble": round(gflop_ensemble, 1),
        "gflops_matmul": rate,
        "floor_s": gflop / rate,
    }
    what = (
        f"{ENSEMBLE_K} MLPs 784-1000-10 on mnist5k ({half} seeds + their class-0 retrain references), "
        f"{ENSEMBLE_EPOCHS} epochs, batch 128, t_mix 0.1"
    )
    whats = {
        "ensemble_mlp12": f"mnemonic_mu.algorithms.ensemble.train_ensemble, {what} "
        "(interleaved with the sequential runs)",
        "sequential_mlp12": f"{ENSEMBLE_K} sequential train_model runs, {what} (interleaved with the ensemble)",
    }
    out = {"variants": {}, "load_before": load_before, "load_after": load_after}
    for k in runs:
        out["variants"][k] = {
            "median_s": statistics.median(wall[k]),
            "min_s": min(wall[k]),
            "max_s": max(wall[k]),
            "cpu_median_s": statistics.median(cpu[k]),
            "reps": reps,
            "warmup": 1,
            "load_before": load_before,
            "load_after": load_after,
            "rss_before_mb": round(rss_before, 1),
            "peak_rss_mb": round(peak, 1),
            "peak_extra_mb": round(max(0.0, peak - rss_before), 1),
            "what": whats[k],
            **floor,
        }
    out["paired_ratios"] = {
        "ensemble_vs_sequential": statistics.median(
            s / e for s, e in zip(wall["sequential_mlp12"], wall["ensemble_mlp12"])
        )
    }
    return out


# --------------------------------------------------------------------------
# 4c. Distributed sweeps: a LocalCluster of 2 workers vs 1, and Dask's cost per task

DIST_EPOCHS = 12  # mnist5k MLP epochs: training dominates the sweep (see the timing split in bench.json)
DIST_TRIVIAL = 1000  # trivial tasks for the per-task overhead


def _worker_peak_rss_mb() -> float:
    """Peak resident size of the process running this (a Dask worker), MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def distributed(quick: bool) -> dict:
    """(a) A training-bound sweep (mnist5k MLP, ``DIST_EPOCHS`` epochs, classes 0 1, seeds 0 1,
    baseline mnemonic_paper: 8 models to train, 4 requests to score) on a Dask LocalCluster of
    1 and of 2 single-threaded workers, each run from a cold cache and a fresh cluster; the wall
    time of ``run_sweep`` (cluster start-up excluded, recorded apart) and the executor's timing
    split.  The two sizes take turns (1, 2 then 2, 1; one pair with ``quick``) and the speedup is
    the median of the pairs' ratios, so a burst of load on a shared machine hits both sides.
    (b) ``DaskExecutor.map`` (and bare ``client.map`` + ``gather``) over ``DIST_TRIVIAL`` trivial
    tasks on 2 workers vs a plain loop: the scheduler's cost per task.
    """
    import statistics

    from mnemonic_mu.drivers.executor import DaskExecutor
    from mnemonic_mu.drivers.sweep import run_sweep

    from .common import peak_rss_mb, rss_mb

    rss_before = rss_mb()
    load_before = load_average()
    out: dict = {"variants": {}, "paired_ratios": {}}
    what = (
        f"mnemonic-mu sweep on a Dask LocalCluster, mnist5k MLP {DIST_EPOCHS} epochs, classes 0 1, seeds 0 1, "
        "baseline mnemonic_paper, probe_max_train 300, cold cache"
    )
    runs: dict[int, list[dict]] = {1: [], 2: []}
    order = [1, 2] if quick else [1, 2, 2, 1]
    for workers in order:
        cache = Path(tempfile.mkdtemp(prefix="bench-dist-"))
        s = Settings(
            dataset="mnist5k",
            epochs=DIST_EPOCHS,
            threads=1,
            baselines=("mnemonic_paper",),
            probe_max_train=300,
            cache_dir=str(cache / "cache"),
        )
        t0 = time.perf_counter()
        ex = DaskExecutor(workers, progress=False, worker_resources={})
        start_s = time.perf_counter() - t0
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            result = run_sweep(s, (0, 1), (0, 1), workers, out_dir=str(cache / "out"), executor=ex)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            worker_peak = max(ex.client.run(_worker_peak_rss_mb).values())
        finally:
            ex.close()
            shutil.rmtree(cache, ignore_errors=True)
        runs[workers].append(
            {
                "wall": wall,
                "cpu": cpu,
                "start": start_s,
                "timing": result["timing"],
                "worker_peak": worker_peak,
                "load": load_average(),
            }
        )
    for workers, rs in runs.items():
        walls = [r["wall"] for r in rs]
        name = f"dask_sweep_{workers}worker{'s' if workers > 1 else ''}"
        out["variants"][name] = {
            "median_s": statistics.median(walls),
            "min_s": min(walls),
            "max_s": max(walls),
            "cpu_median_s": statistics.median(r["cpu"] for r in rs),
            "reps": len(rs),
            "warmup": 0,
            "cluster_start_s": [round(r["start"], 2) for r in rs],
            "timing": [r["timing"] for r in rs],
            "load_after_each": [r["load"] for r in rs],
            "worker_peak_rss_mb": round(max(r["worker_peak"] for r in rs), 1),
            "what": f"{what}, {workers} worker{'s' if workers > 1 else ''} (client CPU time in cpu_median_s; "
            "peak RSS of the client process; worker_peak_rss_mb: the largest worker's)",
        }
    out["paired_ratios"]["dask_2_vs_1_workers_speedup"] = statistics.median(
        a["wall"] / b["wall"] for a, b in zip(runs[1], runs[2])
    )

    # (b) per-task cost: 1,000 trivial tasks
    reps = 2 if quick else 3
    args = [(i,) for i in range(DIST_TRIVIAL)]
    loop, dask_map, bare = [], [], []
    with DaskExecutor(2, progress=False, worker_resources={}) as ex:
        ex.map(abs, args[:20], "warmup")
        ex.client.gather(ex.client.map(abs, range(20), pure=False))
        for _ in range(reps):
            t0 = time.perf_counter()
            [abs(*a) for a in args]
            loop.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ex.map(abs, args, "trivial")
            dask_map.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ex.client.gather(ex.client.map(abs, range(DIST_TRIVIAL), pure=False))
            bare.append(time.perf_counter() - t0)
    peak = peak_rss_mb()
    for name, times, how in (
        ("loop_trivial_1000", loop, "a plain Python loop"),
        (
            "dask_executor_trivial_1000",
            dask_map,
            "DaskExecutor.map (futures, as_completed, gather, timings) on a LocalCluster of 2 workers",
        ),
        ("dask_bare_trivial_1000", bare, "bare client.map + client.gather on the same cluster"),
    ):
        out["variants"][name] = {
            "median_s": statistics.median(times),
            "min_s": min(times),
            "max_s": max(times),
            "reps": reps,
            "warmup": 1,
            "what": f"{DIST_TRIVIAL} trivial tasks (abs) through {how}",
        }
    for k in ("dask_executor_trivial_1000", "dask_bare_trivial_1000"):  # Dask's time per task beyond the loop's
        v = out["variants"][k]
        v["overhead_ms_per_task"] = 1e3 * (v["median_s"] - statistics.median(loop)) / DIST_TRIVIAL
    load_after = load_average()
    for v in out["variants"].values():
        v |= {
            "load_before": load_before,
            "load_after": load_after,
            "rss_before_mb": round(rss_before, 1),
            "peak_rss_mb": round(peak, 1),
            "peak_extra_mb": round(max(0.0, peak - rss_before), 1),
        }
    return out


# --------------------------------------------------------------------------
# 5. End-to-end laptop report


def laptop_report(quick: bool) -> dict:
    """``mnemonic-mu report --profile laptop`` from a cold cache (every model trained)."""
    out_dir = ROOT / "reports" / "bench" / "laptop_report"
    shutil.rmtree(out_dir, ignore_errors=True)
    cache = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    exe = Path(sys.executable).with_name("mnemonic-mu")
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "mnemonic_mu"])]
    cmd += ["report", "--profile", "laptop", "--reports-dir", str(out_dir), "-p", f"cache_dir={cache}"]
    env = os.environ | {"OMP_NUM_THREADS": str(torch.get_num_threads())}
    load_before = load_average()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    shutil.rmtree(cache, ignore_errors=True)
    import resource

    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out = {
        "median_s": seconds,
        "min_s": seconds,
        "max_s": seconds,
        "reps": 1,
        "warmup": 0,
        "load_before": load_before,
        "load_after": load_average(),
        "peak_rss_mb": round(child_peak, 1),
        "peak_extra_mb": round(child_peak, 1),
        "rss_before_mb": 0.0,
        "what": "mnemonic-mu report --profile laptop, cold model cache, "
        f"OMP_NUM_THREADS={torch.get_num_threads()} (peak = largest child process)",
        "command": " ".join(cmd),
        "returncode": proc.returncode,
    }
    if proc.returncode != 0:
        out["error"] = (proc.stderr or proc.stdout)[-800:]
    params = out_dir / "laptop" / "params.yaml"
    if params.exists():  # the profile as it stood for this run (epochs, threads ...)
        import yaml

        out["profile_parameters"] = {
            k: v for k, v in (yaml.safe_load(params.read_text()).get("parameters") or {}).items() if k != "cache_dir"
        }
    return out


# --------------------------------------------------------------------------
# The first ten minutes: the README's quick start and `make report`, from an empty cache

FIRST_TOUCH_REPS = 3
FIRST_TOUCH_TARGETS = {"quickstart": 90, "report": 120}  # seconds on 2 cores from an empty cache (the issue's)


def _kit_command(*args: str) -> list[str]:
    """``mnemonic-mu ARGS`` with the environment's entry point (else ``python -m mnemonic_mu``)."""
    exe = Path(sys.executable).with_name("mnemonic-mu")
    return [str(exe), *args] if exe.exists() else [sys.executable, "-m", "mnemonic_mu", *args]


def _children_cpu_seconds() -> float:
    """User + system CPU seconds of every finished child process of this one, and theirs in turn
    (the command's worker processes and notebook kernels, once reaped)."""
    import resource

    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def first_touch(quick: bool) -> dict:
    """What a newcomer waits for, each run from its own empty cache with the kit's defaults
    (one torch thread per process, ``workers`` one per core): the README's quick-start command
    ``mnemonic-mu experiment --forget 0`` and ``make report`` (``mnemonic-mu report --profile
    laptop``), alternating, ``FIRST_TOUCH_REPS`` times each (1 with --quick); medians."""
    reps = 1 if quick else FIRST_TOUCH_REPS
    runs: dict[str, list[dict]] = {"quickstart": [], "report": []}
    work = Path(tempfile.mkdtemp(prefix="bench-first-touch-"))
    try:
        for rep in range(reps):
            for name in runs:
                cache = work / f"cache-{name}-{rep}"
                if name == "quickstart":
                    cmd = _kit_command(
                        "experiment",
                        "--forget",
                        "0",
                        "--cache-dir",
                        str(cache),
                        "--out",
                        str(work / f"quickstart-{rep}.json"),
                    )
                else:
                    cmd = _kit_command(
                        "report",
                        "--profile",
                        "laptop",
                        "--reports-dir",
                        str(work / f"reports-{rep}"),
                        "-p",
                        f"cache_dir={cache}",
                    )
                load_before = load_average()
                cpu_before = _children_cpu_seconds()
                start = time.perf_counter()
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                seconds = time.perf_counter() - start
                run = {
                    "seconds": round(seconds, 1),
                    "returncode": proc.returncode,
                    "load_before": load_before,
                    "load_after": load_average(),
                    "cpu_seconds": round(_children_cpu_seconds() - cpu_before, 1),
                }
                if proc.returncode != 0:
                    run["error"] = (proc.stderr or proc.stdout)[-800:]
                elif name == "report":
                    timing = json.loads((work / f"reports-{rep}" / "laptop" / "metrics" / "run.json").read_text())
                    run["notebooks"] = {k: round(v, 1) for k, v in timing["notebooks"].items()}
                runs[name].append(run)
                shutil.rmtree(cache, ignore_errors=True)
        # the first quick start's own output: the README shows it (docs/results/experiments/quickstart.json)
        keep = ROOT / "reports" / "bench" / "quickstart.json"
        keep.parent.mkdir(parents=True, exist_ok=True)
        if (work / "quickstart-0.json").is_file():
            shutil.copyfile(work / "quickstart-0.json", keep)
        work_parts = _report_work(work / "cache-parts")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    variants = {}
    for name, rs in runs.items():
        secs = sorted(r["seconds"] for r in rs)
        variants[f"first_touch_{name}"] = {
            "median_s": secs[len(secs) // 2],
            "min_s": secs[0],
            "max_s": secs[-1],
            "reps": len(secs),
            "runs": rs,
            "what": (
                "mnemonic-mu experiment --forget 0" if name == "quickstart" else "mnemonic-mu report --profile laptop"
            )
            + ", each run from an empty cache",
        }
    variants["first_touch_report"]["work_parts"] = work_parts
    return {"variants": variants}


def _report_work(cache: Path) -> dict:
    """The report's computed-ahead work (:func:`mnemonic_mu.pipeline.prefetch_phases`) done one
    piece at a time in this one process, from an empty cache: seconds per model, per reference row
    and per baseline, each timed alone (what the report's worker processes share out)."""
    s = Settings(cache_dir=str(cache))
    group = {"train": "models", "references": "rows", "baselines": "baselines"}  # prefetch's phase labels
    parts: dict[str, dict[str, float]] = {name: {} for name in group.values()}
    pipeline.load_data(s)  # the data's own preparation is not a part
    for label, fn, tasks in pipeline.prefetch_phases(s):
        for args in tasks:
            start = time.perf_counter()
            fn(*args)
            parts[group[label]][" ".join(map(str, args[1:]))] = round(time.perf_counter() - start, 1)
    return parts


# --------------------------------------------------------------------------
# bf16 autocast and channels_last: the effect on accuracy, measured


def precision(quick: bool) -> dict:
    """ResNet-18 (CIFAR stem) trained with codes on scikit-learn's digits (real 8x8 images, offline)
    three ways: fp32, bf16 autocast, channels_last; the test accuracy of each and its seconds per
    epoch, on this machine's device.  The options exist for the GPU; this item measures what
    they do to accuracy instead of assuming it (on a CPU the timings say little)."""
    from mnemonic_mu.algorithms.metrics import accuracy

    from .common import peak_rss_mb, rss_mb

    rss_before = rss_mb()
    dataset = load_dataset("digits", split_seed=0)
    codes = generate_codes(dataset.num_classes, dataset.input_shape, "uniform", seed=0)
    epochs = 4 if quick else 15
    device = "cuda" if torch.cuda.is_available() else "cpu"
    variants = {}
    for name, extra in (("fp32", {}), ("bf16", {"precision": "bf16"}), ("channels_last", {"channels_last": True})):
        cfg = TrainConfig(epochs=epochs, batch_size=128, lr=0.05, t_mix=0.1, seed=0, eval_every=0, **extra)
        model = build_model("resnet18", dataset.input_shape, dataset.num_classes, seed=0)
        start = time.perf_counter()
        train_model(model, dataset, codes, cfg, device=device)
        seconds = time.perf_counter() - start
        variants[f"resnet18_{name}"] = {
            "median_s": seconds / epochs,
            "min_s": seconds / epochs,
            "reps": 1,
            "epochs": epochs,
            "device": device,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "peak_extra_mb": round(max(0.0, peak_rss_mb() - rss_before), 1),
            "test_accuracy": accuracy(model, *dataset.split("test")),
            "what": f"ResNet-18 on digits, {epochs} epochs, {name}: seconds per epoch and test accuracy (%)",
        }
    return {"variants": variants}


SCORING_EPOCHS = 20  # the sweeps' full-MNIST recipe
SCORING_BASELINES = ("mnemonic_paper", "finetune", "ssd")  # methods scored beside the references and the step


def _scoring_request():
    """The full-MNIST request of ``scoring_mnist`` (class 0, seed 0, 20 epochs) and its models:
    ``(settings, dataset, retrain model, {row: model})``, the rows being the references, the
    step, ``SCORING_BASELINES`` and, where ``Settings`` has ``band_seeds``, one ``band_<seed>``
    row per band reference (trained once, then cached)."""
    from mnemonic_mu import pipeline
    from mnemonic_mu.algorithms.methods import UnlearnData

    s = Settings(
        dataset="mnist",
        data_root=MNIST_ROOT,
        epochs=SCORING_EPOCHS,
        forget_classes=tuple(FORGET),
        seed=0,
        baselines=SCORING_BASELINES,
        cache_dir=str(ROOT / "data/cache"),
        threads=torch.get_num_threads(),
    )
    cpu = torch.device("cpu")
    dataset = pipeline.load_data(s)
    models = {role: ck for role, (ck, _) in pipeline.train_models(s, dataset, device=cpu).items()}
    rows = {role: ck.model for role, ck in models.items()}
    original = models["original"]
    rows["mnemonic"] = pipeline.forget_step(s, original.model, original.codes, s.forget_classes, repeats=1).model
    data = UnlearnData.from_dataset(dataset, s.forget_classes, s.train_config())
    for name in s.baselines:
        rows[name] = pipeline.run_method(name, s, dataset, models, data).model
    band_seeds = tuple(getattr(s, "band_seeds", ()) or ())
    if band_seeds:
        if hasattr(pipeline, "train_band"):
            band = {b: ck for b, (ck, _) in pipeline.train_band(s, dataset, cpu).items()}
        else:
            band = {
                b: pipeline.train_models(s.replace(seed=b, band_seeds=()), dataset, ("retrain",), cpu)["retrain"][0]
                for b in band_seeds
            }
        rows |= {f"band_{b}": ck.model for b, ck in band.items()}
    return s, dataset, models["retrain"].model, rows


def scoring_mnist(quick: bool) -> dict:
    """What scoring one request costs beside training one model, on full MNIST (54k train / 6k
    validation / 10k test, the kit's splits), forget class 0, seed 0, the sweeps' 20-epoch recipe.

    Each repetition, interleaved so both sides see the same load: train one model of the
    recipe (the original: MLP, codes at t_mix 0.1, ``SCORING_EPOCHS`` epochs, ``train_model``
    from fresh weights); score the request, ``pipeline.score(model, retrain, dataset,
    settings)`` once per row (original, no_codes, retrain, the step, ``SCORING_BASELINES`` and
    the band references when ``Settings`` has ``band_seeds``); and the parts of a row on the
    original and the retrain model: ``evaluate``, ``run_attacks`` with all attacks, and each
    attack alone (``run_attacks(attacks=[name])``, which includes the per-sample statistics
    every attack shares; ``statistics`` times those alone).  Figures are medians over
    repetitions; the request's scoring is the sum of its rows' medians.  ``--quick``: one
    repetition and a 2-epoch training scaled to the recipe (flagged ``extrapolated``)."""
    import statistics

    from mnemonic_mu import pipeline
    from mnemonic_mu.algorithms import attacks as A
    from mnemonic_mu.algorithms.metrics import evaluate
    from mnemonic_mu.algorithms.train import train_model

    from .common import peak_rss_mb, rss_mb

    reps = 1 if quick else 3
    s, dataset, retrain, rows = _scoring_request()
    epochs = 2 if quick else s.epochs
    x_tr, y_tr = dataset.split("train")
    x_te, y_te = dataset.split("test")
    load_before, rss_before = load_average(), rss_mb()
    wall: dict[str, list[float]] = {}

    def clock(name, fn):
        start = time.perf_counter()
        out = fn()
        wall.setdefault(name, []).append(time.perf_counter() - start)
        return out

    for _ in range(reps):
        model = build_model(s.model, dataset.input_shape, dataset.num_classes, seed=s.seed)
        codes = generate_codes(dataset.num_classes, dataset.input_shape, s.code_dist, s.seed)
        clock("train_model", lambda: train_model(model, dataset, codes, replace(s.train_config(), epochs=epochs)))
        for row, m in rows.items():
            clock(f"score {row}", lambda: pipeline.score(m, retrain, dataset, s))
        for role in ("original", "retrain"):
            m = rows[role]
            clock(f"{role}: evaluate", lambda: evaluate(m, dataset, s.forget_classes))
            clock(
                f"{role}: statistics", lambda: (A.sample_statistics(m, x_tr, y_tr), A.sample_statistics(m, x_te, y_te))
            )
            clock(
                f"{role}: run_attacks",
                lambda: A.run_attacks(
                    m, retrain, dataset, s.forget_classes, seed=s.seed, probe_max_train=s.probe_max_train
                ),
            )
            for name in A.ATTACKS:
                clock(
                    f"{role}: attack {name}",
                    lambda: A.run_attacks(
                        m,
                        retrain,
                        dataset,
                        s.forget_classes,
                        seed=s.seed,
                        attacks=[name],
                        probe_max_train=s.probe_max_train,
                    ),
                )
    med = {k: statistics.median(v) for k, v in wall.items()}
    scale = s.epochs / epochs
    training = med["train_model"] * scale
    request = sum(med[f"score {row}"] for row in rows)
    common = {
        "reps": reps,
        "warmup": 0,
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_extra_mb": round(max(0.0, peak_rss_mb() - rss_before), 1),
    }
    variants = {}
    for k, v in wall.items():
        f = scale if k == "train_model" else 1.0
        variants[f"scoring_{k.replace(': ', '_').replace(' ', '_')}"] = common | {
            "median_s": med[k] * f,
            "min_s": min(v) * f,
            "max_s": max(v) * f,
            "what": (
                f"train_model, one model of the recipe ({s.epochs} epochs, codes"
                + (f"; {epochs} measured, time scaled x{scale:g}" if scale != 1 else "")
                + ")"
            )
            if k == "train_model"
            else f"{k}, full MNIST request (forget class 0, seed 0), MLP 784-1000-10",
        }
    variants["scoring_train_model"]["extrapolated"] = scale != 1
    variants["scoring_request"] = common | {
        "median_s": request,
        "min_s": sum(min(wall[f"score {r}"]) for r in rows),
        "max_s": sum(max(wall[f"score {r}"]) for r in rows),
        "rows": list(rows),
        "n_rows": len(rows),
        "band_seeds": list(getattr(s, "band_seeds", ()) or ()),
        "attacks_version": A.VERSION,
        "svc_max_per_side": A.SVC_MAX_PER_SIDE,
        "n_train": len(y_tr),
        "n_test": len(y_te),
        "load_before": load_before,
        "load_after": load_average(),
        "what": f"pipeline.score of every row of the request ({len(rows)} rows), sum of the rows' medians",
    }
    row_s = [med[f"score {r}"] for r in rows]
    return {
        "variants": variants,
        "paired_ratios": {
            "scoring_request_vs_training_one_model": request / training,
            "scoring_row_median_vs_training_one_model": statistics.median(row_s) / training,
        },
    }


SVC_STUDY_SIZES = (500, 1000, 2000, 3000, 5000)  # candidate per-side caps of the confidence-SVC
SVC_STUDY_SEEDS = (0, 1, 2, 3, 4)  # subsample seeds (the attack's seed argument)


def _request_models(s: Settings) -> tuple[Dataset, dict]:
    """The original, no-codes, unlearned (the settings' one-shot step) and retrain models of
    the request of ``s`` (trained once, then loaded from the cache)."""
    from mnemonic_mu import pipeline

    dataset = pipeline.load_data(s)
    trained = pipeline.train_models(s, dataset, device=torch.device("cpu"))
    original = trained["original"][0]
    unlearned = pipeline.forget_step(s, original.model, original.codes, s.forget_classes, repeats=1)
    return dataset, {
        "original": original.model,
        "no_codes": trained["no_codes"][0].model,
        "unlearned": unlearned.model,
        "retrain": trained["retrain"][0].model,
    }


def svc_subsample(quick: bool) -> dict:
    """The confidence-SVC with at most n samples per side against the recipe without a cap
    (attacks.VERSION 1: all of D_t, |D_t| samples of D_r), on the original, no-codes,
    unlearned and retrain models of one request (forget class 0, seed 0) of mnist5k (the
    kit's default recipe) and full MNIST (20 epochs, the sweeps' recipe), with C rescaled
    (``rescaled``, the kit's) and without (``plain``).  For each model, cap n and subsample
    seed k: the value, |value(n, k) - value(no cap, k)| (the same seed also draws D_r in the
    uncapped recipe), the seed-to-seed spread (population std over the seeds) of both, and the
    fit's median seconds.  The kit's cap (``attacks.SVC_MAX_PER_SIDE``) is the largest candidate
    that keeps scoring a request under training one model (``scoring_mnist``); this study
    measures what it costs in value.  Not part of the suite: ``run.py --only svc_subsample``."""
    import statistics

    import numpy as np

    from mnemonic_mu.algorithms.attacks import SVC_MAX_PER_SIDE, confidence_svc, sample_statistics

    seeds = SVC_STUDY_SEEDS[:2] if quick else SVC_STUDY_SEEDS
    out: dict = {"sizes": list(SVC_STUDY_SIZES), "seeds": list(seeds), "kit_cap": SVC_MAX_PER_SIDE, "datasets": {}}
    for name, extra in (
        ("mnist5k", {"data_root": str(ROOT / "data")}),
        ("mnist", {"data_root": MNIST_ROOT, "epochs": 20}),
    ):
        s = Settings(dataset=name, forget_classes=tuple(FORGET), seed=0, cache_dir=str(ROOT / "data/cache"), **extra)
        dataset, models = _request_models(s)
        x_tr, y_tr = dataset.split("train")
        x_te, y_te = dataset.split("test")
        f_tr = torch.isin(y_tr, torch.tensor(FORGET)).numpy()
        d = out["datasets"][name] = {
            "epochs": s.epochs,
            "n_retain": int((~f_tr).sum()),
            "n_test": len(y_te),
            "n_forget": int(f_tr.sum()),
            "models": {},
        }
        for role, model in models.items():
            conf_tr = sample_statistics(model, x_tr, y_tr)["confidence"]
            conf_te = sample_statistics(model, x_te, y_te)["confidence"]
            args = (conf_tr[~f_tr], conf_te, conf_tr[f_tr])

            def run(cap, seed, rescale=True):
                start = time.perf_counter()
                value = confidence_svc(*args, seed=seed, max_per_side=cap, rescale=rescale)
                return value, time.perf_counter() - start

            full = [run(0, k) for k in seeds]
            ref = [v for v, _ in full]
            m = d["models"][role] = {
                "no_cap": {
                    "values": ref,
                    "mean": float(np.mean(ref)),
                    "spread": float(np.std(ref)),
                    "fit_s": statistics.median(t for _, t in full),
                }
            }
            for variant in ("rescaled", "plain"):
                caps = m[variant] = {}
                for n in SVC_STUDY_SIZES:
                    if n >= len(y_te):  # the cap does not bite: the recipe is the uncapped one
                        continue
                    sub = [run(n, k, variant == "rescaled") for k in seeds]
                    vals = [v for v, _ in sub]
                    diff = [abs(v - f) for v, f in zip(vals, ref)]
                    caps[str(n)] = {
                        "values": vals,
                        "spread": float(np.std(vals)),
                        "mean_abs_diff": float(np.mean(diff)),
                        "max_abs_diff": float(np.max(diff)),
                        "bias": float(np.mean(vals) - np.mean(ref)),
                        "fit_s": statistics.median(t for _, t in sub),
                    }
            print(
                name,
                role,
                "no cap",
                np.round(ref, 4),
                {v: {n: round(c["mean_abs_diff"], 4) for n, c in m[v].items()} for v in ("rescaled", "plain")},
                flush=True,
            )
    return out


ITEMS = {
    "forget_mlp_batched": forget_mlp("batched"),
    "forget_mlp_batched_spinwait": forget_mlp("batched"),  # run with OMP_WAIT_POLICY=ACTIVE (see run.py)
    "forget_mlp_loop": forget_mlp("loop"),
    "forget_mlp_vmap": forget_mlp("vmap"),
    "forget_mlp_calibrated": forget_mlp("batched", step="calibrated"),  # the kit's extension (not timed by the issue)
    "matmul_rate": matmul_rate,
    "forget_resnet18_batched": forget_resnet18("batched"),
    "forget_resnet18_loop": forget_resnet18("loop"),
    "fisher_mlp_loop": fisher("mlp", "loop"),
    "fisher_mlp_vmap": fisher("mlp", "vmap"),
    "fisher_mlp_batched": fisher("mlp", "batched"),
    "fisher_resnet18_loop": fisher("resnet18", "loop"),
    "fisher_resnet18_vmap": fisher("resnet18", "vmap"),
    "fisher_resnet18_batched": fisher("resnet18", "batched"),
    "ssd_mlp": ssd_mlp,
    "ssd_fisher_mlp": ssd_fisher_mlp,
    "ssd_mlp_generic": ssd_mlp_generic,
    "retrain_mlp": retrain_mlp,
    "epochs": epochs,  # expands to epoch_kit, epoch_kit_no_codes, epoch_dataloader
    "ensemble": ensemble,  # expands to ensemble_mlp12, sequential_mlp12
    "distributed": distributed,  # expands to dask_sweep_1worker, dask_sweep_2workers, *_trivial_1000
    "precision": precision,  # expands to resnet18_fp32, resnet18_bf16, resnet18_channels_last
    "laptop_report": laptop_report,
}
CUDA_ITEMS = {"forget_mlp_cuda": forget_cuda("mlp"), "forget_resnet18_cuda": forget_cuda("resnet18")}
# --paper-scale: item 3 on full MNIST (54,000 training images), the paper's own comparison;
# needs the MNIST IDX files under MNEMONIC_MU_MNIST_ROOT and a 200-epoch retrain (minutes)
PAPER_ITEMS = {
    "forget_mlp_mnist": forget_mlp("batched", dataset_name="mnist"),
    "scoring_mnist": scoring_mnist,  # expands to scoring_* (training one model, each row's score, each attack)
    "ssd_mlp_mnist": lambda quick: ssd_mlp(quick, "mnist"),
    "retrain_mlp_mnist": lambda quick: retrain_mlp(quick, "mnist"),
}
# studies: run only when named (``run.py --only NAME``); their output is not a timing
STUDY_ITEMS = {
    "svc_subsample": svc_subsample,  # the confidence-SVC's per-side cap vs no cap
    "first_touch": first_touch,
}  # the quick start and `make report` from an empty cache, 3 times each


# --------------------------------------------------------------------------
# The generated scoring section of docs/performance.md

SCORING_DOCS = ROOT / "docs" / "performance.md"
SCORING_MARKERS = ("<!-- scoring:start -->", "<!-- scoring:end -->")
SCORING_SOURCES = {
    "scoring": ROOT / "docs/results/bench/scoring.json",  # scoring_mnist, the kit's attacks
    "before": ROOT / "docs/results/bench/scoring-attacks-v1.json",  # the item before attacks.VERSION 2
    "study": ROOT / "docs/results/bench/svc_subsample.json",  # svc_subsample
}


def _hw(report: dict) -> str:
    hw = report["hardware"]
    return (
        f"{hw['cpu_model']}, {hw['usable_cpus']} usable of {hw['logical_cpus']} logical CPUs, "
        f"{hw['memory_gb']} GiB, "
        f"torch {hw['torch']}, {hw['torch_threads']} torch thread(s), load average {report['load']['start'][0]} "
        f"at start and {report['load']['end'][0]} at end"
    )


def scoring_section(scoring: dict, before: dict | None, study: dict | None) -> str:
    """The Markdown between the scoring markers of docs/performance.md, from the bench.json of
    ``scoring_mnist`` (``scoring``), that of the item before attacks.VERSION 2 (``before``) and
    that of ``svc_subsample`` (``study``); every number comes from them."""
    import statistics

    items, ratios = scoring["items"], scoring.get("ratios", {})
    req = items["scoring_request"]
    train = items["scoring_train_model"]

    def s(k):
        return items[k]["median_s"]

    rows = req["rows"]
    lines = [
        f"Made by `{scoring['settings']['command']}` ({scoring['settings']['date']}; {_hw(scoring)}); "
        f"source `docs/results/bench/scoring.json`. attacks.VERSION {req['attacks_version']}, "
        f"confidence-SVC capped at {req['svc_max_per_side']:,} per side; {req['n_train']:,} train and "
        f"{req['n_test']:,} test images; medians of {req['reps']} interleaved repetitions.",
        "",
        f"**Scoring one request ({req['n_rows']} rows) takes {req['median_s']:.1f} s; training one model of the recipe "
        f"takes {train['median_s']:.1f} s: ratio "
        f"{ratios.get('scoring_request_vs_training_one_model', float('nan')):.2f}** "
        f"(target: at most 1).",
        "",
        "| row | `pipeline.score` (s) |",
        "|---|---|",
        *[f"| {r} | {s('scoring_score_' + r):.2f} |" for r in rows],
        f"| **request (sum)** | **{req['median_s']:.2f}** |",
        f"| training one model of the recipe | {train['median_s']:.2f} |",
        "",
        f"Training: {train['what']}.",
        "",
        "The parts of one row, on the original and on the retrain model. *Alone* is `run_attacks(attacks=[name])`, "
        "which includes the per-sample statistics that every attack shares (the model's forward over train and "
        "test, timed by themselves as *statistics*); *own* is alone minus statistics (< 0.05: within the timing noise "
        "of the statistics).",
        "",
        "| part | original, alone (s) | own (s) | retrain, alone (s) | own (s) |"
        + (" original, attacks.VERSION 1, alone (s) |" if before else ""),
        "|---|---|---|---|---|" + ("---|" if before else ""),
    ]
    old = (before or {}).get("items", {})
    parts = [
        ("evaluate", "evaluate", "scoring_evaluate"),
        ("statistics", "statistics", None),
        ("all five attacks (`run_attacks`)", "run_attacks", None),
    ]
    parts += [
        (name, f"attack_{name.replace(' ', '_')}", f"scoring_attack_{name.replace(' ', '_')}")
        for name in ("entropy-LR", "loss-LR-CV", "confidence-SVC", "epsilon-vs-retrain", "linear probe")
    ]
    for label, key, old_key in parts:
        cells = []
        for role in ("original", "retrain"):
            alone = s(f"scoring_{role}_{key}")
            own = alone - s(f"scoring_{role}_statistics") if key.startswith("attack_") else None
            cells += [f"{alone:.2f}", "" if own is None else "< 0.05" if own < 0.05 else f"{own:.2f}"]
        if before:
            cells.append(f"{old[old_key]['median_s']:.2f}" if old_key in old else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if before:
        lines += [
            "",
            f"The last column is `{before['settings']['command']}` ({before['settings']['date']}; "
            f"{_hw(before)}; `docs/results/bench/scoring-attacks-v1.json`): the item then timed each attack "
            "alone in the same way, on models trained one epoch.",
        ]
    if study:
        st = study["items"]["svc_subsample"]
        cap = str(st["kit_cap"])
        lines += [
            "",
            f"**The confidence-SVC cap and its effect on the value.** Made by `{study['settings']['command']}` "
            f"({study['settings']['date']}; {_hw(study)}); source `docs/results/bench/svc_subsample.json`. "
            f"Per model: the value without a cap (attacks.VERSION 1), mean and seed-to-seed spread (std over "
            f"subsample seeds {', '.join(map(str, st['seeds']))}); with the kit's cap of {int(cap):,} per side: "
            "the mean |capped - uncapped| (same seed), the spread and the mean difference (bias); "
            "then the mean |difference| at every candidate cap, with C rescaled (the kit's) and with C = 3. "
            "Fit seconds are medians over the seeds.",
            "",
            "| data | model | uncapped: mean | spread | fit (s) | "
            f"cap {int(cap):,}: mean abs diff | spread | bias | fit (s) | "
            "mean abs diff by cap, C rescaled | same, C = 3 |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, d in st["datasets"].items():
            for role, m in d["models"].items():
                nc, k = m["no_cap"], m["rescaled"].get(cap)

                def by(v, m=m):
                    return (
                        ", ".join(f"{int(n):,}: {c['mean_abs_diff']:.4f}" for n, c in m[v].items())
                        or "cap above n_test"
                    )

                kit = (
                    f"{k['mean_abs_diff']:.4f} | {k['spread']:.4f} | {k['bias']:+.4f} | {k['fit_s']:.2f}"
                    if k
                    else "= uncapped | | | "
                )
                lines.append(
                    f"| {name} ({d['epochs']} ep., n_test {d['n_test']:,}) | {role} | {nc['mean']:.4f} | "
                    f"{nc['spread']:.4f} | {nc['fit_s']:.2f} | {kit} | {by('rescaled')} | {by('plain')} |"
                )
        spreads = [
            (m["no_cap"]["spread"], name, role) for name, d in st["datasets"].items() for role, m in d["models"].items()
        ]
        capped = [
            (m["rescaled"][cap]["mean_abs_diff"], name, role)
            for name, d in st["datasets"].items()
            for role, m in d["models"].items()
            if cap in m["rescaled"]
        ]
        top, worst = max(spreads), max(capped) if capped else None
        mn = st["datasets"].get("mnist", {}).get("models", {})
        fits = {
            n: statistics.mean(m["rescaled"][n]["fit_s"] for m in mn.values() if n in m["rescaled"])
            for n in map(str, st["sizes"])
            if mn and all(n in m["rescaled"] for m in mn.values())
        }
        if cap in fits:
            lines += [
                "",
                "Cost of the other caps, projected from this request's scoring: the request plus its "
                f"{req['n_rows']} rows times the difference in fit seconds (full MNIST, mean over the models "
                "above) from the kit's cap: "
                + ", ".join(
                    f"{int(n):,}: {(req['median_s'] + req['n_rows'] * (f - fits[cap])) / train['median_s']:.2f}"
                    for n, f in fits.items()
                )
                + " of training one model.",
            ]
        lines += [
            "",
            f"Largest seed-to-seed spread of the uncapped recipe: {top[0]:.4f} ({top[1]} {top[2]}). "
            + (
                f"Largest mean |capped - uncapped| at the kit's cap: {worst[0]:.4f} ({worst[1]} {worst[2]}), "
                f"{100 * worst[0]:.2f} points of MIA-efficacy, {20 * worst[0]:.2f} points of `gap` "
                "(one of its five terms)."
                if worst
                else ""
            ),
        ]
    return "\n".join(lines)


FIRST_TOUCH_SOURCE = ROOT / "docs/results/bench/first_touch.json"
FIRST_TOUCH_MARKERS = ("<!-- first-touch:start -->", "<!-- first-touch:end -->")


def first_touch_section(report: dict) -> str:
    """The Markdown between the first-touch markers of docs/performance.md, every number from
    the bench.json of ``first_touch`` (``docs/results/bench/first_touch.json``)."""
    items = report["items"]
    quick, rep = items["first_touch_quickstart"], items["first_touch_report"]

    def runs(it):
        return ", ".join(f"{r['seconds']:.0f}" for r in it["runs"])

    notebooks = rep["runs"][0].get("notebooks", {})
    lines = [
        f"Made by `{report['settings']['command']}` ({report['settings']['date']}; {_hw(report)}); source "
        "`docs/results/bench/first_touch.json`. Each run starts from its own empty cache; the two commands "
        f"alternate, {quick['reps']} runs each.",
        "",
        "| command | median (s) | runs (s) | target (s) | met |",
        "|---|---|---|---|---|",
        f"| `mnemonic-mu experiment --forget 0` (README quick start) | {quick['median_s']:.0f} | {runs(quick)} | "
        f"{FIRST_TOUCH_TARGETS['quickstart']} | "
        f"{'yes' if quick['median_s'] <= FIRST_TOUCH_TARGETS['quickstart'] else 'no'} |",
        f"| `make report` (`mnemonic-mu report --profile laptop`) | {rep['median_s']:.0f} | {runs(rep)} | "
        f"{FIRST_TOUCH_TARGETS['report']} | {'yes' if rep['median_s'] <= FIRST_TOUCH_TARGETS['report'] else 'no'} |",
    ]
    cpu = {
        name: sorted(r["cpu_seconds"] for r in it["runs"] if "cpu_seconds" in r)
        for name, it in (("quickstart", quick), ("report", rep))
    }
    if all(cpu.values()):
        cores = report["hardware"]["usable_cpus"]
        median = {name: v[len(v) // 2] for name, v in cpu.items()}
        lines += [
            "",
            "CPU work per run (user + system seconds of the command, its worker processes and its "
            f"notebook kernels, median): quick start {median['quickstart']:.0f} CPU-s, `make report` "
            f"{median['report']:.0f} CPU-s. On {cores} cores no schedule finishes sooner than the CPU work "
            f"divided by {cores}: {median['quickstart'] / cores:.0f} s and {median['report'] / cores:.0f} s.",
        ]
    parts = rep.get("work_parts")
    if parts:
        total = {group: sum(v.values()) for group, v in parts.items()}
        slowest = max(parts["baselines"], key=parts["baselines"].get)
        lines += [
            "",
            "Where that work goes: the report's models, rows and baselines done one at a time in one "
            f"process take {sum(total.values()):.0f} s: training the {len(parts['models'])} models "
            f"{total['models']:.0f} s, scoring the {len(parts['rows'])} reference rows {total['rows']:.0f} s, "
            f"the {len(parts['baselines'])} baselines {total['baselines']:.0f} s (the slowest, {slowest}, "
            f"{parts['baselines'][slowest]:.0f} s). The rest is the six notebooks' own cells, kernels and "
            "HTML.",
        ]
    if notebooks:
        lines += [
            "",
            "The report's first run, seconds per notebook (03 runs beside 04; the models, the references' "
            "rows and the baselines are computed ahead in worker processes meanwhile, so a notebook's time "
            "includes waiting for them): " + ", ".join(f"{k} {v:.0f}" for k, v in notebooks.items()) + ".",
        ]
    return "\n".join(lines)


def _write_section(path: Path, markers: tuple[str, str], body: str) -> Path:
    import re

    text = path.read_text()
    start, end = markers
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start} ... {end} block")
    block = f"{start}\n{body}\n{end}"
    path.write_text(re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S))
    return path


QUICKSTART_SOURCE = ROOT / "docs/results/experiments/quickstart.json"
QUICKSTART_MARKERS = ("<!-- quickstart:start -->", "<!-- quickstart:end -->")


def readme_quickstart(result: dict, report: dict) -> str:
    """The README's quick-start output block: what ``mnemonic-mu experiment --forget 0`` printed
    for the committed ``result`` (``docs/results/experiments/quickstart.json``), and how long the
    command takes from an empty cache by the committed ``first_touch`` ``report``."""
    from mnemonic_mu.drivers.cli import experiment_lines

    hw, quick = report["hardware"], report["items"]["first_touch_quickstart"]
    return "\n".join(
        [
            f"What it printed (`docs/results/experiments/quickstart.json`); from an empty cache it takes "
            f"{quick['median_s']:.0f} s (median of {quick['reps']}) on {hw['usable_cpus']} CPU cores "
            f"({hw['cpu_model']}), "
            "most of it training the six models ([docs/performance.md](docs/performance.md#the-first-ten-minutes-the-"
            "quick-start-and-make-report-from-an-empty-cache)):",
            "",
            "```",
            *experiment_lines(result),
            "```",
        ]
    )


def write_first_touch_docs(path: Path = SCORING_DOCS, readme: Path = ROOT / "README.md") -> Path:
    """Replace the first-touch block of docs/performance.md by :func:`first_touch_section` and the
    README's quick-start block by :func:`readme_quickstart`, from the committed sources
    (``python benchmarks/run.py --write-first-touch-docs``)."""
    report = json.loads(FIRST_TOUCH_SOURCE.read_text())
    _write_section(readme, QUICKSTART_MARKERS, readme_quickstart(json.loads(QUICKSTART_SOURCE.read_text()), report))
    return _write_section(path, FIRST_TOUCH_MARKERS, first_touch_section(report))


def write_scoring_docs(path: Path = SCORING_DOCS) -> Path:
    """Replace the block between ``SCORING_MARKERS`` in ``path`` by :func:`scoring_section`
    of the committed sources (``python benchmarks/run.py --write-scoring-docs``)."""
    import json

    def load(p):
        return json.loads(p.read_text()) if p.exists() else None

    body = scoring_section(
        load(SCORING_SOURCES["scoring"]), load(SCORING_SOURCES["before"]), load(SCORING_SOURCES["study"])
    )
    return _write_section(path, SCORING_MARKERS, body)
