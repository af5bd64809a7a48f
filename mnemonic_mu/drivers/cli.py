"""Command line: ``mnemonic-mu experiment | sweep | report | results | population | settings | datasets``
(``python -m mnemonic_mu``); ``mnemonic-mu --help`` says what each does and ``mnemonic-mu COMMAND
--help`` lists its options.  :func:`build_parser` builds ``experiment``, ``report`` (one run,
or one per point of ``--grid``: :mod:`~mnemonic_mu.drivers.report` and
:mod:`~mnemonic_mu.drivers.grid`), ``settings`` and ``datasets`` here and takes the others from
their modules (each one's ``add_subcommand``); ``tests/test_links.py`` checks that the list above
names every command.  This module is the top of the drivers: none of them imports it.

Every option that is a setting is derived from :class:`~mnemonic_mu.settings.Settings`
(its name, type, help and default), over the chosen ``--profile``.  Every error
the kit raises on purpose is printed as one line (``mnemonic-mu: error: ...``)
with exit status 2; nothing prints a stack trace for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..algorithms.methods import row_sees
from ..algorithms.metrics import renamed_keys
from ..errors import ConfigError, MnemonicError
from ..io.artifacts import write_json
from ..io.data import DATASETS, markdown_table
from ..options import add_options, defaults_table
from ..overrides import parse_overrides
from ..pipeline import ROLES, load_data, plan, run_request
from ..settings import Settings
from ..version import __version__
from . import population, results, sweep
from .common import reports_root, settings_from_args
from .grid import parse_grid, run_grid
from .report import run_report

EXIT_USAGE = 2

# experiment: every setting but the notebook-only ones
EXPERIMENT_OPTIONS = tuple(
    n for n in Settings.names() if n not in ("fisher_samples", "fisher_repeats", "run_dir", "compute_upstream")
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line plus a pointer to --help."""

    def error(self, message: str):  # argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _experiment_parser(sub) -> None:
    p = sub.add_parser(
        "experiment",
        help="one forget request: the step beside retrain and its seed band (--compare: every method)",
        description="Train (or load) the original and the model retrained without the class, forget in one "
        "shot with the settings' step (codes only, no data), and score the step beside retrain and retrain's "
        "seed band (four more retrains with other seeds): the quick answer, about a minute on 2 CPU cores "
        "from an empty cache.  --compare adds the no-codes model and every baseline of `baselines`, with its "
        "cost printed before it starts.  Independent models and rows run in `workers` processes.  Writes one "
        "JSON file.  Defaults: the laptop profile (the paper's MNIST recipe on the embedded mnist5k data, "
        "40 epochs).",
    )
    p.add_argument("--profile", default="laptop", help="settings profile the options override (default laptop)")
    add_options(p, EXPERIMENT_OPTIONS)
    p.add_argument(
        "--compare",
        action="store_true",
        help="the full comparison: the no-codes model and every method of --baselines (default: all "
        "of them) beside the step; without it (and without --baselines) only the step is run",
    )
    p.add_argument("--out", default=None, help="JSON output path (default reports/experiments/<name>.json)")
    p.add_argument("--progress", action="store_true", help="show training progress bars")
    p.set_defaults(func=_cmd_experiment)


def experiment_name(s: Settings) -> str:
    mode = s.step + ("-joint" if s.step == "calibrated" and s.multi == "joint" and len(s.forget_classes) > 1 else "")
    return f"{s.dataset}_{s.model}_forget{'-'.join(map(str, s.forget_classes))}_seed{s.seed}_{mode}"


# What each row of the experiment's table is, for a reader who meets the kit here.
ROW_LABELS = {
    "original": "trained with codes: before",
    "no_codes": "the same recipe without codes",
    "retrain": "retrained without the class: the goal",
    "mnemonic": "the one-shot step (codes only, no data)",
}


def _row_label(name: str, row: dict) -> str:
    if name in ROW_LABELS:
        return ROW_LABELS[name]
    sees = row_sees(name)  # the method registry's
    return f"baseline (sees {'codes only' if sees == 'nothing' else sees})"


def experiment_lines(result: dict) -> list[str]:
    """The table ``mnemonic-mu experiment`` prints, from its JSON result (the README's quick
    start is this text for the committed result, checked by a test; a result written before a
    metric's rename reads under the new name)."""
    s, rows, band = (renamed_keys(result)[k] for k in ("settings", "rows", "band"))
    m = rows["mnemonic"]
    classes = ", ".join(map(str, s["forget_classes"]))
    lines = [
        f"{s['dataset']}, {s['model']}, {s['epochs']} epochs, seed {s['seed']}: forget class {classes} with the "
        f"{s['step']} step",
        "",
    ]
    head = f"{'row':22s} {'what it is':40s} {'A_R':>6s} {'E_F':>7s} {'gap':>6s} {'ToW':>6s}"
    lines.append(head + ("  inside retrain's band" if band else ""))
    for name, row in rows.items():
        gap, tow = row["gap"], row["tow"]
        flags = (band or {}).get("inside", {}).get(name, {})
        lines.append(
            f"{name:22s} {_row_label(name, row):40s} {row['A_R']:6.2f} {row['E_F']:7.2f} "
            f"{'   n/a' if gap is None else f'{gap:6.2f}'} {'   n/a' if tow is None else f'{tow:6.3f}'}"
            + (f"  {sum(flags.values())}/{len(flags)} metrics" if band else "")
        )
    if band:
        a_r, e_f = band["stats"]["A_R"], band["stats"]["E_F"]
        what = f"{len(band['seeds'])} retrains with other seeds"
        lines.append(
            f"{'retrain band':22s} {what:40s} A_R {a_r['min']:.2f}..{a_r['max']:.2f}, "
            f"E_F {e_f['min']:.2f}..{e_f['max']:.2f}"
        )
    lines += [
        "",
        "A_R: test accuracy on the remaining classes (%, higher is better); E_F: test error on the forgotten "
        "class (%, 100 = forgotten)",
        "gap: mean distance to retrain over four accuracies and one attack (0 = retrain); ToW: Tug-of-War "
        "(1 = retrain)",
    ]
    if band:
        seeds = ", ".join(map(str, band["seeds"]))
        lines.append(
            f"inside: how many of a row's metrics lie in retrain's band (retrains with seeds {seeds}); "
            "another retrain lands inside on most"
        )
        quiet = [a for a, v in band["signal"].items() if v["no_signal"]]
        if quiet:
            lines.append(f"no signal here (the original sits inside retrain's band): {', '.join(quiet)}")
    lines.append("definitions: docs/glossary.md")
    retrain_s = rows["retrain"].get("seconds")
    cost = (
        f"; retraining took {retrain_s:.1f} s ({retrain_s / m['forget_seconds']:.0f}x)"
        if retrain_s and m["forget_seconds"]
        else ""
    )
    lines.append(
        f"the step: {m['step']}{'' if m['multi'] == 'single' else ' ' + m['multi']}, sign {m['sign']}"
        f"{', TIE' if m['sign_tie'] else ''}, scale {m['scale']:.3g}, {1000 * m['forget_seconds']:.1f} ms, "
        f"{m['backward_passes']} backward passes{cost}"
    )
    lines += [f"warning : {w}" for w in m["warnings"]]
    return lines


def _timings_key(s: Settings) -> str:
    return f"{s.dataset}/{s.model}/{s.epochs} epochs/{s.trainer}/{s.device}"


def load_timings(s: Settings) -> dict:
    """What this machine measured for this recipe on earlier runs (``<cache_dir>/timings.json``):
    seconds to train one model, to score one row, and each method's own seconds."""
    path = s.cache_path / "timings.json"
    try:
        return json.loads(path.read_text()).get(_timings_key(s), {})
    except (OSError, ValueError):
        return {}


def save_timings(s: Settings, result: dict) -> None:
    """Keep this run's measured unit costs for the next run's estimate (see :func:`load_timings`)."""
    timing, rows = result["timing"], result["rows"]
    path = s.cache_path / "timings.json"
    try:
        every = json.loads(path.read_text())
    except (OSError, ValueError):
        every = {}
    mine = every.setdefault(_timings_key(s), {})
    workers = timing["workers"]
    if timing["trained"]:
        mine["train"] = timing["train_seconds"] * min(workers, timing["trained"]) / timing["trained"]
    mine["score"] = timing["score_seconds"] * min(workers, timing["rows"]) / timing["rows"]
    for name in result["settings"]["baselines"]:
        mine[f"method:{name}"] = rows[name]["seconds"]
    write_json(path, every)


def plan_line(s: Settings, work: dict, timings: dict, compare: bool) -> str:
    """What the run will do and, from this machine's earlier timings, about how long it takes."""
    cached = len(work["models"]) - work["to_train"]
    what = (
        f"train {work['to_train']} model(s) ({cached} in the cache), "
        + (f"run {len(work['baselines'])} baseline(s), " if work["baselines"] else "")
        + f"score {work['rows']} rows in {work['workers']} process(es)"
    )
    unknown = [n for n in ("train", "score") if n not in timings and (n == "score" or work["to_train"])]
    unknown += [b for b in work["baselines"] if f"method:{b}" not in timings]
    if unknown:
        guess = f"no timing of {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''} on this machine yet"
    else:
        cpu = (
            work["to_train"] * timings.get("train", 0)
            + work["rows"] * timings["score"]
            + sum(timings[f"method:{b}"] for b in work["baselines"])
        )
        guess = f"about {cpu / work['workers']:.0f} s on this machine (from its earlier runs)"
    return f"{'the full comparison' if compare else 'quick run'}: {what}; {guess}"


def _cmd_experiment(args) -> int:
    s = settings_from_args(args, EXPERIMENT_OPTIONS)
    quick = not args.compare and args.baselines is None
    if quick:
        s = s.replace(baselines=())
    roles = ("original", "retrain") if quick or not s.baselines else ROLES
    name = experiment_name(s)
    out = Path(args.out) if args.out else Path("reports/experiments") / f"{name}.json"
    if out.is_dir():  # checked before training, not after
        raise ConfigError(f"--out {out} is a folder; give a file path such as {out / (name + '.json')}")
    work = plan(s, load_data(s), roles)
    print(plan_line(s, work, load_timings(s), args.compare), flush=True)
    result = run_request(s, progress=args.progress, roles=roles, bar=None)
    write_json(out, result)
    save_timings(s, result)
    lines = experiment_lines(result)
    if quick:
        lines.append(
            "every method side by side: add --compare (the no-codes model and "
            f"{len(Settings().baselines)} baselines; its cost is printed before it starts)"
        )
    lines.append(f"wrote {out} in {result['total_seconds']:.0f} s")
    print("\n".join(lines))
    return 0


def _report_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="run the six stage notebooks (01-06) with papermill and write an HTML report",
        description="Execute notebooks/01..06 with papermill and write reports/<run>/ (executed "
        "notebooks, HTML pages, index.html, figures/, metrics/, params.yaml) and the gallery "
        "reports/index.html.  With --grid, one such run per point of the grid's Cartesian product.",
    )
    p.add_argument("--profile", default="laptop", help="ci | laptop (default) | paper")
    p.add_argument(
        "--run",
        default=None,
        help="name of the run folder under reports/ (default: the profile); "
        "with --grid, the prefix of every run's name",
    )
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a notebook parameter (repeatable), e.g. -p epochs=5 -p forget_classes=[3]",
    )
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=[V1,V2]",
        help="run every combination of these values as its own run (repeatable; values are a YAML list, "
        "a list setting takes a list of lists: --grid forget_classes=[[1],[3]] --grid seed=[0,1]); "
        "a run already finished with the same settings is not redone",
    )
    p.add_argument("--jobs", type=int, default=1, help="grid runs at once (default 1)")
    p.add_argument("--reports-dir", default=None, help="where run folders go (default: <repo>/reports)")
    p.add_argument("--notebooks", default=None, help="folder of the stage notebooks (default: the repo's)")
    p.add_argument("--progress", action="store_true", help="show papermill's cell progress")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    if args.grid:
        results = run_grid(
            profile=args.profile,
            grid=parse_grid(args.grid),
            overrides=parse_overrides(args.param),
            jobs=args.jobs,
            run=args.run,
            reports_dir=args.reports_dir,
            notebooks=args.notebooks,
        )
        for r in results:
            secs = "-" if r["seconds"] is None or r["status"] == "skipped" else f"{r['seconds']:.0f} s"
            print(f"{r['status']:8s} {r['run']:40s} {secs:>6s}  {r['index'] or r['error']}")
        done = sum(r["status"] == "done" for r in results)
        skipped = sum(r["status"] == "skipped" for r in results)
        failed = sum(r["status"] == "failed" for r in results)
        print(
            f"{len(results)} runs: {done} ran, {skipped} already done, {failed} failed; "
            f"gallery: {reports_root(args.reports_dir) / 'index.html'}"
        )
        return 1 if failed else 0
    index = run_report(
        profile=args.profile,
        run=args.run,
        overrides=parse_overrides(args.param),
        reports_dir=args.reports_dir,
        notebooks=args.notebooks,
        progress=args.progress,
    )
    run = json.loads((index.parent / "metrics" / "run.json").read_text())
    print(f"report written in {run['seconds']:.0f} s: {index}")
    print(f"gallery: {index.parent.parent / 'index.html'}")
    return 0


def _cmd_datasets(args) -> int:
    if args.markdown:
        print(markdown_table(), end="")
        return 0

    def optional(value, fixed) -> str:  # a value set by an option of the dataset is its default, starred
        return value + ("*" if fixed is None else "")

    rows = [("dataset", "classes", "input", "data", "what")]
    rows += [
        (
            name,
            optional(str(d.classes()), d.num_classes),
            optional("x".join(map(str, d.shape())), d.input_shape),
            "offline" if d.offline else "files",
            d.description,
        )
        for name, d in DATASETS.items()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[4])
    print(
        "*: an option of the dataset, its default shown; files: under --data-root, or --download; "
        "sources and licences: docs/protocol.md#datasets"
    )
    return 0


def _cmd_settings(args) -> int:
    if args.profile:
        s = Settings.from_profile(args.profile)
        for name, value in s.to_dict().items():
            print(f"{name} = {value!r}")
    else:
        print(defaults_table(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mnemonic-mu", description="One-shot unlearning with mnemonic codes.")
    parser.add_argument("--version", action="version", version=f"mnemonic-mu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _experiment_parser(sub)
    sweep.add_subcommand(sub)
    _report_parser(sub)
    results.add_subcommand(sub)
    population.add_subcommand(sub)
    st = sub.add_parser("settings", help="the table of settings and defaults (or a profile's values)")
    st.add_argument("--profile", default=None, help="print this profile's resolved settings instead")
    st.set_defaults(func=_cmd_settings)
    ds = sub.add_parser("datasets", help="list the datasets the kit can load (the registry)")
    ds.add_argument(
        "--markdown",
        action="store_true",
        help="print docs/protocol.md's table: classes, input, split, source and licence of each",
    )
    ds.set_defaults(func=_cmd_datasets)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except MnemonicError as exc:
        print(f"mnemonic-mu: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # an unwritable --out or --cache-dir, a full disk ...
        print(f"mnemonic-mu: error: {exc}; check the path, its permissions and free space", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mnemonic-mu: interrupted; completed artifacts are intact", file=sys.stderr)
        return 130


__all__ = ["EXPERIMENT_OPTIONS", "build_parser", "main"]


if __name__ == "__main__":
    raise SystemExit(main())
