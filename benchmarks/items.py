"""The benchmark items: each sets up its inputs, then times one operation.

``ITEMS[name](quick)`` returns a dict with the timing (see
:func:`benchmarks.common.timed`) plus what was measured.  ``run.py`` runs
every item in its own child process, so each item's peak memory is its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from mnemonic_mu.algorithms.codes import generate_codes
from mnemonic_mu.io.data import Dataset, load_dataset
from mnemonic_mu.io.store import train_or_load
from mnemonic_mu.settings import Settings
from mnemonic_mu.algorithms.fisher import code_fisher_means
from mnemonic_mu.algorithms.forget import forget
from mnemonic_mu.algorithms.models import build_model
from mnemonic_mu.algorithms.train import TrainConfig, train_model

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
    cfg = Settings(dataset=dataset_name, data_root=MNIST_ROOT if dataset_name == "mnist" else str(ROOT / "data"),
                   model="mlp", epochs=MLP_EPOCHS, cache_dir=str(ROOT / "data/cache"))
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
    run = lambda: forget(model, codes, FORGET, 1e-3, 10.0, step=step, fisher_method=method)  # noqa: E731
    out = timed(run, **rep, sync=sync)
    _, record = run()
    out.update(fisher_method=method, step=step, sign=record.sign, scale=record.scale,
               backward_passes=record.backward_passes)
    return out


def forget_mlp(method: str, step: str = "paper", dataset_name: str = "mnist5k"):
    def item(quick: bool) -> dict:
        _, _, ck = paper_mlp(dataset_name)
        out = _forget_item(ck.model, ck.codes, method, _reps(quick, (3, 30), (2, 10)), step=step)
        return out | {"what": f"forget class 0, {dataset_name} MLP 784-1000-10 (200 epochs), {step} step, Fisher '{method}'"}

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
    return out | {"what": "fp32 2048x2048 matmul: the machine's attainable GFLOP/s",
                  "gflops_achieved": round(2 * 2048**3 / 1e9 / out["median_s"], 1)}


def forget_resnet18(method: str):
    def item(quick: bool) -> dict:
        model, codes = resnet18_cifar()
        out = _forget_item(model, codes, method, _reps(quick, (1, 5), (1, 2)))
        # the arithmetic the step needs, and the rate it ran at: a floor for this CPU
        gflop = _gflop(lambda: forget(model, codes, FORGET, 1e-3, 10.0, fisher_method=method))
        gflop_timed = gflop - _gflop(lambda: model(codes)) - _gflop(lambda: model(codes[:1]))  # untimed checks
        return out | {"what": f"forget class 0, ResNet-18 CIFAR stem, 10 codes 3x32x32, Fisher '{method}'",
                      "gflop": round(gflop_timed, 2), "gflops_achieved": round(gflop_timed / out["median_s"], 1)}

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

    cfg, dataset, ck = paper_mlp(dataset_name)
    data = UnlearnData.from_dataset(dataset, FORGET, cfg.train_config())
    out = timed(lambda: ssd(ck.model, ck.codes, FORGET, data), **_reps(quick, (1, 3), (1, 1)))
    res = ssd(ck.model, ck.codes, FORGET, data)
    return out | {
        "what": f"baselines.ssd (data Fisher on forget + all train data, alpha chosen on validation), {dataset_name} MLP",
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

    cfg, dataset, ck = paper_mlp()
    data = UnlearnData.from_dataset(dataset, FORGET, cfg.train_config())
    fisher.linear_fisher = lambda *a, **k: None  # force the generic path (this child process only)
    out = timed(lambda: baselines.ssd(ck.model, ck.codes, FORGET, data), warmup=0, reps=1)
    return out | {"what": "baselines.ssd with the generic vmap per-sample Fisher (as for non-Linear models), mnist5k MLP"}


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
    return out | {"what": "SSD's data Fishers only (fisher.sample_fisher on forget and all train data)",
                  "backward_passes": len(data.y_forget) + len(y_all)}


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
            "median_s": statistics.median(wall[k]), "min_s": min(wall[k]), "max_s": max(wall[k]),
            "cpu_median_s": statistics.median(cpu[k]), "reps": reps, "warmup": warmup,
            "load_before": load_before, "load_after": out["load_after"],
            "rss_before_mb": round(rss_before, 1), "peak_rss_mb": round(peak, 1),
            "peak_extra_mb": round(max(0.0, peak - rss_before), 1),
            "what": whats[k] + " (interleaved with the other epoch variants; memory shared)",
        }
    pair = lambda a, b: statistics.median(x / y for x, y in zip(wall[a], wall[b]))  # noqa: E731
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
    per_epoch = [_gflop(lambda c=c, cfg=cfg: train_model(build_model("mlp", ds.input_shape, 10, seed=cfg.seed), ds, c, cfg))
                 for c, cfg in (one_epoch[0], one_epoch[half])]
    gflop = ENSEMBLE_EPOCHS * half * sum(per_epoch)
    gflop_ensemble = ENSEMBLE_EPOCHS * _gflop(lambda: train_ensemble("mlp", ds, one_epoch))
    rate = matmul_rate(quick)["gflops_achieved"]
    floor = {"gflop": round(gflop, 1), "gflop_ensemble": round(gflop_ensemble, 1),
             "gflops_matmul": rate, "floor_s": gflop / rate}
    what = (f"{ENSEMBLE_K} MLPs 784-1000-10 on mnist5k ({half} seeds + their class-0 retrain references), "
            f"{ENSEMBLE_EPOCHS} epochs, batch 128, t_mix 0.1")
    whats = {"ensemble_mlp12": f"mnemonic_mu.algorithms.ensemble.train_ensemble, {what} (interleaved with the sequential runs)",
             "sequential_mlp12": f"{ENSEMBLE_K} sequential train_model runs, {what} (interleaved with the ensemble)"}
    out = {"variants": {}, "load_before": load_before, "load_after": load_after}
    for k in runs:
        out["variants"][k] = {
            "median_s": statistics.median(wall[k]), "min_s": min(wall[k]), "max_s": max(wall[k]),
            "cpu_median_s": statistics.median(cpu[k]), "reps": reps, "warmup": 1,
            "load_before": load_before, "load_after": load_after,
            "rss_before_mb": round(rss_before, 1), "peak_rss_mb": round(peak, 1),
            "peak_extra_mb": round(max(0.0, peak - rss_before), 1), "what": whats[k], **floor,
        }
    out["paired_ratios"] = {
        "ensemble_vs_sequential": statistics.median(
            s / e for s, e in zip(wall["sequential_mlp12"], wall["ensemble_mlp12"]))
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
    what = (f"mnemonic-mu sweep on a Dask LocalCluster, mnist5k MLP {DIST_EPOCHS} epochs, classes 0 1, seeds 0 1, "
            "baseline mnemonic_paper, probe_max_train 300, cold cache")
    runs: dict[int, list[dict]] = {1: [], 2: []}
    order = [1, 2] if quick else [1, 2, 2, 1]
    for workers in order:
        cache = Path(tempfile.mkdtemp(prefix="bench-dist-"))
        s = Settings(dataset="mnist5k", epochs=DIST_EPOCHS, threads=1, baselines=("mnemonic_paper",),
                     probe_max_train=300, cache_dir=str(cache / "cache"))
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
        runs[workers].append({"wall": wall, "cpu": cpu, "start": start_s, "timing": result["timing"],
                              "worker_peak": worker_peak, "load": load_average()})
    for workers, rs in runs.items():
        walls = [r["wall"] for r in rs]
        name = f"dask_sweep_{workers}worker{'s' if workers > 1 else ''}"
        out["variants"][name] = {
            "median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "cpu_median_s": statistics.median(r["cpu"] for r in rs), "reps": len(rs), "warmup": 0,
            "cluster_start_s": [round(r["start"], 2) for r in rs], "timing": [r["timing"] for r in rs],
            "load_after_each": [r["load"] for r in rs],
            "worker_peak_rss_mb": round(max(r["worker_peak"] for r in rs), 1),
            "what": f"{what}, {workers} worker{'s' if workers > 1 else ''} (client CPU time in cpu_median_s; "
            "peak RSS of the client process; worker_peak_rss_mb: the largest worker's)",
        }
    out["paired_ratios"]["dask_2_vs_1_workers_speedup"] = statistics.median(
        a["wall"] / b["wall"] for a, b in zip(runs[1], runs[2]))

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
    for name, times, how in (("loop_trivial_1000", loop, "a plain Python loop"),
                             ("dask_executor_trivial_1000", dask_map, "DaskExecutor.map (futures, as_completed, "
                              "gather, timings) on a LocalCluster of 2 workers"),
                             ("dask_bare_trivial_1000", bare, "bare client.map + client.gather on the same cluster")):
        out["variants"][name] = {
            "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "reps": reps,
            "warmup": 1, "what": f"{DIST_TRIVIAL} trivial tasks (abs) through {how}",
        }
    for k in ("dask_executor_trivial_1000", "dask_bare_trivial_1000"):  # Dask's time per task beyond the loop's
        v = out["variants"][k]
        v["overhead_ms_per_task"] = 1e3 * (v["median_s"] - statistics.median(loop)) / DIST_TRIVIAL
    load_after = load_average()
    for v in out["variants"].values():
        v |= {"load_before": load_before, "load_after": load_after, "rss_before_mb": round(rss_before, 1),
              "peak_rss_mb": round(peak, 1), "peak_extra_mb": round(max(0.0, peak - rss_before), 1)}
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
        "median_s": seconds, "min_s": seconds, "max_s": seconds, "reps": 1, "warmup": 0,
        "load_before": load_before, "load_after": load_average(),
        "peak_rss_mb": round(child_peak, 1), "peak_extra_mb": round(child_peak, 1), "rss_before_mb": 0.0,
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
            "median_s": seconds / epochs, "min_s": seconds / epochs, "reps": 1, "epochs": epochs, "device": device,
            "peak_rss_mb": round(peak_rss_mb(), 1), "peak_extra_mb": round(max(0.0, peak_rss_mb() - rss_before), 1),
            "test_accuracy": accuracy(model, *dataset.split("test")),
            "what": f"ResNet-18 on digits, {epochs} epochs, {name}: seconds per epoch and test accuracy (%)",
        }
    return {"variants": variants}


def scoring_mnist(quick: bool) -> dict:
    """What scoring one row of a request costs beside training one model, on full MNIST (54k
    train / 6k validation / 10k test, the kit's splits): ``evaluate`` and each attack of the suite,
    and one epoch of ``train_model``, each the median of ``reps`` runs (interleaved, no warm-up:
    each is seconds), on an original with codes and a retrain reference trained one epoch (attack
    cost depends on the data sizes, not on how well the models are trained).  The ratios compare
    scoring one row with training one model of the recipe: that epoch times 20 (the sweeps'
    full-MNIST recipe) or 200 (the paper's).  A request scores one row per reference and method."""
    import statistics

    from mnemonic_mu.algorithms.attacks import ATTACKS, run_attacks
    from mnemonic_mu.algorithms.metrics import evaluate

    from .common import peak_rss_mb, rss_mb

    reps = 1 if quick else 3
    dataset = load_dataset("mnist", MNIST_ROOT)
    codes = generate_codes(10, dataset.input_shape, "uniform", 0)
    load_before, rss_before = load_average(), rss_mb()
    wall: dict[str, list[float]] = {}

    def clock(name, fn):
        start = time.perf_counter()
        out = fn()
        wall.setdefault(name, []).append(time.perf_counter() - start)
        return out

    for _ in range(reps):
        models = {}
        for role, exclude in (("original", ()), ("retrain", tuple(FORGET))):
            m = build_model("mlp", dataset.input_shape, 10, seed=0)
            cfg = TrainConfig(epochs=1, t_mix=0.1 if role == "original" else 0.0, exclude_classes=exclude, seed=0)
            clock(f"train_epoch_{role}", lambda: train_model(m, dataset, codes, cfg))
            models[role] = m
        clock("evaluate", lambda: evaluate(models["original"], dataset, FORGET))
        for name in ATTACKS:
            clock(f"attack {name}", lambda: run_attacks(models["original"], models["retrain"], dataset, FORGET,
                                                       seed=0, attacks=[name]))
    med = {k: statistics.median(v) for k, v in wall.items()}
    epoch = med["train_epoch_original"]
    scoring = med["evaluate"] + sum(v for k, v in med.items() if k.startswith("attack "))
    out = {"variants": {}, "load_before": load_before, "load_after": load_average(),
           "n_train": len(dataset.y_train), "n_test": len(dataset.y_test)}
    for k, v in wall.items():
        out["variants"][f"scoring_{k.replace(' ', '_')}"] = {
            "median_s": med[k], "min_s": min(v), "max_s": max(v), "reps": reps, "warmup": 0,
            "rss_before_mb": round(rss_before, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "peak_extra_mb": round(max(0.0, peak_rss_mb() - rss_before), 1),
            "what": f"{k}, full MNIST request (forget class 0), MLP 784-1000-10 (interleaved; memory shared)",
        }
    out["paired_ratios"] = {
        "scoring_row_vs_training_20_epochs": scoring / (20 * epoch),
        "scoring_row_vs_training_200_epochs": scoring / (200 * epoch),
        "largest_attack_share": max(v for k, v in med.items() if k.startswith("attack ")) / scoring,
    }
    out["scoring_row_s"] = scoring
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
    "scoring_mnist": scoring_mnist,  # expands to scoring_* (one per attack, evaluate, one training epoch)
    "ssd_mlp_mnist": lambda quick: ssd_mlp(quick, "mnist"),
    "retrain_mlp_mnist": lambda quick: retrain_mlp(quick, "mnist"),
}
