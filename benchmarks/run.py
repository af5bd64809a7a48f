"""Benchmark suite: ``make bench`` (or ``python benchmarks/run.py [--quick]``).

Measures, in one run and at a fixed torch thread count:

1. the forgetting step (code Fisher + perturbation + sign test), MLP and
   ResNet-18, with the batched, loop (and vmap) Fisher paths; CUDA too when
   a GPU is present;
2. the code Fisher f_F, f_R alone: loop vs vmap vs batched;
3. forgetting vs SSD vs retrain on the same model and data (mnist5k MLP,
   the paper's recipe);
4. one training epoch over the 60k MNIST training images: the kit's loop vs
   a per-item torchvision-style DataLoader pipeline;
5. the end-to-end laptop report (``mnemonic-mu report --profile laptop``);
6. the peak memory of each;
7. ensemble training: 12 MLPs trained as one computation
   (``mnemonic_mu.algorithms.ensemble.train_ensemble``) vs 12 sequential ``train_model``
   runs, with the arithmetic floor of those trainings on this machine;
8. distributed sweeps (``distributed``): a training-bound sweep on a Dask LocalCluster of
   2 workers vs 1, and the scheduler's cost per task over 1,000 trivial tasks.

Each item runs in its own child process (so its peak resident memory is its
own), with warm-up calls and several timed repetitions; figures are medians.
Writes ``reports/bench/bench.json`` and ``reports/bench/bench.md`` and prints
the table.  ``--quick`` uses fewer repetitions, scales a 10-epoch retrain to
the full recipe and skips the laptop report: for development only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (target, direction): "max" = the figure must not exceed it, "min" = must reach it
TARGETS = {
    "forget_ms_mlp_cpu": (10.0, "max"),
    "forget_ms_resnet18_cpu": (250.0, "max"),
    "forget_vs_ssd": (100.0, "min"),
    "forget_vs_retrain": (10_000.0, "min"),
    "forget_vs_ssd_mnist": (100.0, "min"),
    "forget_vs_retrain_mnist": (10_000.0, "min"),
    "epoch_vs_dataloader": (2.0, "min"),
    "laptop_report_s": (300.0, "max"),
    "forget_ms_resnet18_cuda": (30.0, "max"),
}


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="fewer repetitions, scaled retrain, no laptop report")
    p.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("OMP_NUM_THREADS", "2") or 2),
        help="torch threads for every item (default: OMP_NUM_THREADS, else 2)",
    )
    p.add_argument("--out", default=str(ROOT / "reports" / "bench"), help="output folder (default reports/bench)")
    p.add_argument("--only", nargs="+", default=None, help="run only these items (names as in bench.json)")
    p.add_argument("--skip", nargs="+", default=[], help="skip these items")
    p.add_argument("--no-report", action="store_true", help="skip the end-to-end laptop report")
    p.add_argument(
        "--retrain-epochs",
        type=int,
        default=None,
        help="measure this many retrain epochs and scale to the recipe's 200 (default: all 200; 10 with --quick)",
    )
    p.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        help="OMP_WAIT_POLICY of the items (default PASSIVE: idle OpenMP threads sleep instead of "
        "spinning, which keeps shared cores usable; one item is always also run with ACTIVE)",
    )
    p.add_argument(
        "--paper-scale",
        action="store_true",
        help="also time forgetting, SSD and retrain on full MNIST (the paper's scale; needs its IDX "
        "files under MNEMONIC_MU_MNIST_ROOT; the 200-epoch retrain takes about 8 min on 2 cores)",
    )
    p.add_argument(
        "--paper-retrain-epochs",
        type=int,
        default=None,
        help="with --paper-scale: measure this many full-MNIST retrain epochs and scale to 200 "
        "(flagged 'extrapolated' in bench.json; default: all 200)",
    )
    p.add_argument(
        "--write-scoring-docs",
        action="store_true",
        help="rewrite the generated scoring section of docs/performance.md from "
        "docs/results/bench/scoring.json and svc_subsample.json, then exit (runs nothing)",
    )
    p.add_argument(
        "--write-first-touch-docs",
        action="store_true",
        help="rewrite the generated first-touch section of docs/performance.md from "
        "docs/results/bench/first_touch.json (made by --only first_touch), then exit",
    )
    p.add_argument("--item", default=None, help=argparse.SUPPRESS)  # child process: run one item
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _child(args) -> int:
    """Run one item in this process and write its result as JSON."""
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from benchmarks.items import CUDA_ITEMS, ITEMS, PAPER_ITEMS, STUDY_ITEMS

    fn = (ITEMS | CUDA_ITEMS | PAPER_ITEMS | STUDY_ITEMS)[args.item]
    try:
        out = fn(args.quick)
    except Exception as exc:  # recorded, the suite goes on
        out = {"error": f"{type(exc).__name__}: {exc}"}
    out["threads"] = torch.get_num_threads()
    Path(args.result).write_text(json.dumps(out, indent=1))
    return 0


def _run_item(name: str, args) -> dict:
    result = Path(args.out) / f".{name}.json"
    result.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--item",
        name,
        "--result",
        str(result),
        "--threads",
        str(args.threads),
    ] + (["--quick"] if args.quick else [])
    env = os.environ | {
        "OMP_NUM_THREADS": str(args.threads),
        "PYTHONWARNINGS": "ignore",
        "OMP_WAIT_POLICY": "ACTIVE" if name.endswith("_spinwait") else args.omp_wait_policy,
    }
    if args.retrain_epochs:
        env["MNEMONIC_MU_BENCH_RETRAIN_EPOCHS"] = str(args.retrain_epochs)
    if args.paper_retrain_epochs:
        env["MNEMONIC_MU_BENCH_PAPER_RETRAIN_EPOCHS"] = str(args.paper_retrain_epochs)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not result.exists():
        return {"error": f"child exited {proc.returncode}: {(proc.stderr or proc.stdout)[-600:]}", "item_wall_s": wall}
    out = json.loads(result.read_text())
    result.unlink()
    out["item_wall_s"] = round(wall, 1)
    return out


def _median(items: dict, name: str, scale: float = 1.0):
    it = items.get(name) or {}
    return None if "median_s" not in it else it["median_s"] * scale


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def summarise(items: dict) -> tuple[dict, dict]:
    """figures (ms / s / MiB) and ratios from the items of one run."""

    def ms(n):
        return _median(items, n, 1e3)

    def s(n):
        return _median(items, n)

    fig = {
        "forget_ms_mlp_cpu": ms("forget_mlp_batched"),
        "forget_ms_mlp_cpu_loop": ms("forget_mlp_loop"),
        "forget_ms_mlp_cpu_spinwait": ms("forget_mlp_batched_spinwait"),
        "forget_ms_mlp_cpu_vmap": ms("forget_mlp_vmap"),
        "forget_ms_mlp_cpu_calibrated": ms("forget_mlp_calibrated"),
        "forget_ms_mlp_mnist_cpu": ms("forget_mlp_mnist"),
        "ssd_s_mlp_mnist_cpu": s("ssd_mlp_mnist"),
        "retrain_s_mlp_mnist_cpu": s("retrain_mlp_mnist"),
        "forget_ms_resnet18_cpu": ms("forget_resnet18_batched"),
        "forget_ms_resnet18_cpu_loop": ms("forget_resnet18_loop"),
        "forget_ms_mlp_cuda": ms("forget_mlp_cuda"),
        "forget_ms_resnet18_cuda": ms("forget_resnet18_cuda"),
        "fisher_ms_mlp_loop": ms("fisher_mlp_loop"),
        "fisher_ms_mlp_vmap": ms("fisher_mlp_vmap"),
        "fisher_ms_mlp_batched": ms("fisher_mlp_batched"),
        "fisher_ms_resnet18_loop": ms("fisher_resnet18_loop"),
        "fisher_ms_resnet18_vmap": ms("fisher_resnet18_vmap"),
        "fisher_ms_resnet18_batched": ms("fisher_resnet18_batched"),
        "ssd_s_mlp_cpu": s("ssd_mlp"),
        "ssd_fisher_s_mlp_cpu": s("ssd_fisher_mlp"),
        "ssd_generic_s_mlp_cpu": s("ssd_mlp_generic"),
        "retrain_s_mlp_cpu": s("retrain_mlp"),
        "epoch_s_mlp_cpu": s("epoch_kit"),
        "epoch_s_mlp_cpu_no_codes": s("epoch_kit_no_codes"),
        "epoch_s_mlp_cpu_dataloader": s("epoch_dataloader"),
        "laptop_report_s": s("laptop_report"),
        "ensemble_s_mlp12_cpu": s("ensemble_mlp12"),
        "sequential_s_mlp12_cpu": s("sequential_mlp12"),
        "dask_sweep_s_1worker": s("dask_sweep_1worker"),
        "dask_sweep_s_2workers": s("dask_sweep_2workers"),
        "dask_overhead_ms_per_task": (items.get("dask_executor_trivial_1000") or {}).get("overhead_ms_per_task"),
        "dask_bare_overhead_ms_per_task": (items.get("dask_bare_trivial_1000") or {}).get("overhead_ms_per_task"),
    }
    resnet, rate = items.get("forget_resnet18_batched") or {}, (items.get("matmul_rate") or {}).get("gflops_achieved")
    if "gflop" in resnet:
        fig["gflop_resnet18_step"] = resnet["gflop"]
        fig["gflops_resnet18_step"] = resnet["gflops_achieved"]
        fig["gflops_matmul_cpu"] = rate
        # the step's arithmetic at the machine's best matmul rate: a floor for this algorithm in fp32
        fig["floor_ms_resnet18_cpu"] = None if not rate else 1e3 * resnet["gflop"] / rate
    ens = items.get("ensemble_mlp12") or {}
    if "floor_s" in ens:
        fig["gflop_mlp12_training"] = ens["gflop"]
        fig["gflop_mlp12_training_ensemble"] = ens["gflop_ensemble"]
        fig["gflops_matmul_cpu_ensemble_item"] = ens["gflops_matmul"]
        # the 12 trainings' arithmetic at the machine's best matmul rate: a floor for either path
        fig["floor_s_mlp12_cpu"] = ens["floor_s"]
    if fig["epoch_s_mlp_cpu"] is not None:
        n_retain = 60_000 - 5_923  # MNIST training images not of class 0
        fig["retrain_s_mlp_full_mnist_estimated"] = 200 * fig["epoch_s_mlp_cpu"] * n_retain / 60_000
    for name, it in items.items():
        if "peak_rss_mb" in it:
            fig[f"peak_mb_{name}"] = it["peak_rss_mb"]
            fig[f"peak_extra_mb_{name}"] = it["peak_extra_mb"]
        if "cuda_peak_mb" in it:
            fig[f"cuda_peak_mb_{name}"] = it["cuda_peak_mb"]
    forget_s = s("forget_mlp_batched")
    rat = {
        "forget_vs_ssd": _ratio(s("ssd_mlp"), forget_s),
        "forget_vs_ssd_fisher_only": _ratio(s("ssd_fisher_mlp"), forget_s),
        "forget_vs_ssd_generic_fisher": _ratio(s("ssd_mlp_generic"), forget_s),
        "forget_vs_retrain": _ratio(s("retrain_mlp"), forget_s),
        "forget_vs_retrain_full_mnist_estimated": _ratio(fig.get("retrain_s_mlp_full_mnist_estimated"), forget_s),
        "epoch_vs_dataloader": _ratio(s("epoch_dataloader"), s("epoch_kit")),
        "code_training_overhead": _ratio(s("epoch_kit"), s("epoch_kit_no_codes")),
        "forget_mlp_loop_vs_batched": _ratio(s("forget_mlp_loop"), forget_s),
        "forget_mlp_spinwait_vs_passive": _ratio(s("forget_mlp_batched_spinwait"), forget_s),
        "forget_resnet18_loop_vs_batched": _ratio(s("forget_resnet18_loop"), s("forget_resnet18_batched")),
        "fisher_mlp_loop_vs_vmap": _ratio(s("fisher_mlp_loop"), s("fisher_mlp_vmap")),
        "fisher_mlp_loop_vs_batched": _ratio(s("fisher_mlp_loop"), s("fisher_mlp_batched")),
        "fisher_resnet18_loop_vs_vmap": _ratio(s("fisher_resnet18_loop"), s("fisher_resnet18_vmap")),
        "fisher_resnet18_loop_vs_batched": _ratio(s("fisher_resnet18_loop"), s("fisher_resnet18_batched")),
        # ensemble training (the paired, interleaved ratio from the item replaces this one)
        "ensemble_vs_sequential": _ratio(s("sequential_mlp12"), s("ensemble_mlp12")),
        "ensemble_vs_floor": _ratio(s("ensemble_mlp12"), fig.get("floor_s_mlp12_cpu")),
        # distributed sweeps: wall time of 1 Dask worker / 2 workers (the item's own figure replaces it)
        "dask_2_vs_1_workers_speedup": _ratio(s("dask_sweep_1worker"), s("dask_sweep_2workers")),
        # --paper-scale: the same comparison on full MNIST, one model, one run
        "forget_vs_ssd_mnist": _ratio(s("ssd_mlp_mnist"), s("forget_mlp_mnist")),
        "forget_vs_retrain_mnist": _ratio(s("retrain_mlp_mnist"), s("forget_mlp_mnist")),
    }
    return fig, rat


def targets(fig: dict, rat: dict) -> dict:
    out = {}
    for name, (target, kind) in TARGETS.items():
        value = fig.get(name, rat.get(name))
        met = None if value is None else (value <= target if kind == "max" else value >= target)
        out[name] = {"target": target, "kind": kind, "measured": value, "met": met}
    return out


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}{unit}"
    return f"{v:.3g}{unit}" if abs(v) < 10 else f"{v:.1f}{unit}"


def markdown(report: dict) -> str:
    hw, items, fig, rat = report["hardware"], report["items"], report["figures"], report["ratios"]
    lines = [
        f"# Benchmark ({'quick' if report['settings']['quick'] else 'full'} run, {report['settings']['date']})",
        "",
        f"Hardware: {hw['cpu_model']}, {hw['usable_cpus']} usable of {hw['logical_cpus']} logical CPUs, "
        f"{hw['memory_gb']} GiB RAM{', GPU ' + hw['gpu'] if hw.get('gpu') else ', no GPU'}; "
        f"torch {hw['torch']}, {hw['torch_threads']} torch threads; "
        f"load average {report['load']['start'][0]} at start, {report['load']['end'][0]} at end.",
        "",
        "| item | median | min | CPU-time median | reps | peak RSS MiB (+ over start) | what |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, it in items.items():
        if "median_s" not in it:
            lines.append(f"| {name} | n/a | | | | | {it.get('skipped') or it.get('error', '')[:120]} |")
            continue
        unit = (1e3, " ms") if it["median_s"] < 2 else (1.0, " s")
        lines.append(
            f"| {name} | {_fmt(it['median_s'] * unit[0], unit[1])} | {_fmt(it['min_s'] * unit[0], unit[1])} | "
            f"{_fmt(it['cpu_median_s'] * unit[0], unit[1]) if 'cpu_median_s' in it else ''} | {it['reps']} | "
            f"{_fmt(it['peak_rss_mb']) + ' (+' + _fmt(it['peak_extra_mb']) + ')' if 'peak_rss_mb' in it else ''} | "
            f"{it.get('what', '')} |"
        )
    lines += ["", "| ratio | value | target | met |", "|---|---|---|---|"]
    tg = report["targets"]
    for name, v in rat.items():
        t = tg.get(name)
        lines.append(
            f"| {name} | {_fmt(v, 'x')} | {'>= ' + _fmt(t['target'], 'x') if t else ''} | "
            f"{'' if not t else ('yes' if t['met'] else 'no' if t['met'] is not None else 'n/a')} |"
        )
    lines += ["", "| figure with a target | measured | target | met |", "|---|---|---|---|"]
    for name, t in tg.items():
        if name in fig:
            lines.append(
                f"| {name} | {_fmt(t['measured'])} | <= {_fmt(t['target'])} | "
                f"{'yes' if t['met'] else 'no' if t['met'] is not None else 'n/a'} |"
            )
    if fig.get("floor_ms_resnet18_cpu"):
        lines += [
            "",
            f"ResNet-18 step arithmetic: {fig['gflop_resnet18_step']:.1f} GFLOP "
            "(code Fisher and two sign-test "
            f"forwards), run at {fig['gflops_resnet18_step']:.1f} GFLOP/s; this machine's fp32 matmul rate is "
            f"{fig['gflops_matmul_cpu']:.1f} GFLOP/s, so this arithmetic alone needs about "
            f"{fig['floor_ms_resnet18_cpu']:.0f} ms here in fp32 even at the matmul rate.",
        ]
    if fig.get("floor_s_mlp12_cpu") and fig.get("ensemble_s_mlp12_cpu"):
        lines += [
            "",
            "Ensemble training: 12 MLPs trained as one computation in "
            f"{fig['ensemble_s_mlp12_cpu']:.1f} s vs "
            f"{fig['sequential_s_mlp12_cpu']:.1f} s for 12 sequential train_model runs "
            f"(ratio {rat.get('ensemble_vs_sequential') or float('nan'):.2f}x). Their arithmetic, "
            f"{fig['gflop_mlp12_training']:.0f} GFLOP ({fig['gflop_mlp12_training_ensemble']:.0f} counted in "
            f"the ensemble), needs {fig['floor_s_mlp12_cpu']:.1f} s at this machine's fp32 matmul rate of "
            f"{fig['gflops_matmul_cpu_ensemble_item']:.1f} GFLOP/s.",
        ]
    if fig.get("dask_sweep_s_2workers") and fig.get("dask_sweep_s_1worker"):
        lines += [
            "",
            "Distributed sweep (Dask LocalCluster, training-bound): "
            f"{fig['dask_sweep_s_1worker']:.1f} s on 1 "
            f"worker, {fig['dask_sweep_s_2workers']:.1f} s on 2 (speedup "
            f"{rat.get('dask_2_vs_1_workers_speedup') or float('nan'):.2f}x); Dask's cost per trivial task: "
            f"{fig.get('dask_overhead_ms_per_task') or float('nan'):.2f} ms through DaskExecutor.map, "
            f"{fig.get('dask_bare_overhead_ms_per_task') or float('nan'):.2f} ms through bare client.map.",
        ]
    if "resnet18_fp32" in items and "test_accuracy" in items["resnet18_fp32"]:
        lines += [
            "",
            "ResNet-18 on digits, test accuracy (%) / seconds per epoch: "
            + ", ".join(
                f"{k.removeprefix('resnet18_')} {items[k]['test_accuracy']:.1f} / {items[k]['median_s']:.2f} s"
                for k in ("resnet18_fp32", "resnet18_bf16", "resnet18_channels_last")
                if k in items
            ),
        ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = _parse(argv)
    if args.item:
        return _child(args)
    if args.write_first_touch_docs:
        from benchmarks.items import write_first_touch_docs

        print(f"[bench] wrote {write_first_touch_docs()}")
        return 0
    if args.write_scoring_docs:
        from benchmarks.items import write_scoring_docs

        print(f"[bench] wrote {write_scoring_docs()}")
        return 0
    import torch

    from benchmarks.common import hardware, load_average
    from benchmarks.items import CUDA_ITEMS, ITEMS, PAPER_ITEMS, STUDY_ITEMS

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(ITEMS) + (list(CUDA_ITEMS) if torch.cuda.is_available() else [])
    names += list(PAPER_ITEMS) if args.paper_scale else []
    names += [n for n in STUDY_ITEMS if args.only and n in args.only]  # studies run only when named
    if args.quick or args.no_report:
        args.skip = [*args.skip, "laptop_report"]
    if args.only:
        names = [n for n in names if n in args.only]
    start = time.perf_counter()
    report = {
        "settings": {
            "quick": args.quick,
            "threads": args.threads,
            "omp_wait_policy": args.omp_wait_policy,
            "retrain_epochs": args.retrain_epochs,
            "paper_scale": args.paper_scale,
            "paper_retrain_epochs": args.paper_retrain_epochs,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join([Path(sys.executable).name, "benchmarks/run.py", *(argv or sys.argv[1:])]),
        },
        "hardware": hardware(args.threads) | {"omp_wait_policy": args.omp_wait_policy},
        "load": {"start": load_average()},
        "items": {},
    }
    for name in names:
        if name in args.skip:
            report["items"][name] = {"skipped": "--quick" if args.quick and name == "laptop_report" else "skipped"}
            continue
        print(f"[bench] {name} ...", end=" ", flush=True)
        it = _run_item(name, args)
        if "variants" in it:  # one child measured several interleaved variants
            report["paired_ratios"] = report.get("paired_ratios", {}) | it.get("paired_ratios", {})
            report["items"].update(it["variants"])
            print(", ".join(f"{k} {v['median_s']:.2f} s" for k, v in it["variants"].items()), flush=True)
            continue
        report["items"][name] = it
        print(
            f"{it['median_s'] * 1e3:.1f} ms" if "median_s" in it else it.get("error") or it.get("skipped"), flush=True
        )
    report["load"]["end"] = load_average()
    report["suite_seconds"] = round(time.perf_counter() - start, 1)
    report["figures"], report["ratios"] = summarise(report["items"])
    report["ratios"].update(report.get("paired_ratios", {}))  # interleaved: the fairer ratio under load
    report["targets"] = targets(report["figures"], report["ratios"])
    (out_dir / "bench.json").write_text(json.dumps(report, indent=1))
    md = markdown(report)
    (out_dir / "bench.md").write_text(md)
    print(md)
    print(f"[bench] wrote {out_dir / 'bench.json'} and bench.md in {report['suite_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
