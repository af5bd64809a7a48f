"""Command line: ``mnemonic-mu experiment | sweep | report | settings | datasets`` (``python -m mnemonic_mu``).

Every option that is a setting is derived from :class:`~mnemonic_mu.settings.Settings`
(its name, type, help and default), over the chosen ``--profile``.  Every error
the kit raises on purpose is printed as one line (``mnemonic-mu: error: ...``)
with exit status 2; nothing prints a stack trace for bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError, MnemonicError
from ..settings import Settings, add_options, from_args, load_profile

EXIT_USAGE = 2

# experiment: every setting but the notebook-only ones
EXPERIMENT_OPTIONS = tuple(
    n for n in Settings.names() if n not in ("fisher_samples", "fisher_repeats", "run_dir", "compute_upstream")
)
PATH_SETTINGS = ("data_root", "cache_dir", "run_dir")  # given on the command line: relative to the caller's folder


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line plus a pointer to --help."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def settings_from_args(args, names) -> Settings:
    """Profile, then the options given (paths given here are relative to the working directory)."""
    for name in PATH_SETTINGS:
        if getattr(args, name, None):
            setattr(args, name, str(Path(getattr(args, name)).expanduser().resolve()))
    return from_args(args, names, base=load_profile(args.profile))


def _experiment_parser(sub) -> None:
    p = sub.add_parser(
        "experiment",
        help="one forget request through the whole pipeline: train or load, forget, score, baselines",
        description="Train (or load) the original, no-codes and retrain models, forget in one shot with "
        "the settings' step, score every model (accuracies, five attacks, gap to retrain) and every "
        "baseline; writes one JSON file.  Defaults: the laptop profile (the paper's MNIST recipe on the "
        "embedded mnist5k data, 40 epochs).",
    )
    p.add_argument("--profile", default="laptop", help="settings profile the options override (default laptop)")
    add_options(p, EXPERIMENT_OPTIONS)
    p.add_argument("--out", default=None, help="JSON output path (default reports/experiments/<name>.json)")
    p.add_argument("--progress", action="store_true", help="show training progress bars")
    p.set_defaults(func=_cmd_experiment)


def experiment_name(s: Settings) -> str:
    mode = s.step + ("-joint" if s.step == "calibrated" and s.multi == "joint" and len(s.forget_classes) > 1 else "")
    return f"{s.dataset}_{s.model}_forget{'-'.join(map(str, s.forget_classes))}_seed{s.seed}_{mode}"


def _cmd_experiment(args) -> int:
    from ..io.artifacts import write_json
    from ..pipeline import run_request

    s = settings_from_args(args, EXPERIMENT_OPTIONS)
    name = experiment_name(s)
    out = Path(args.out) if args.out else Path("reports/experiments") / f"{name}.json"
    if out.is_dir():  # checked before training, not after
        raise ConfigError(f"--out {out} is a folder; give a file path such as {out / (name + '.json')}")
    result = run_request(s, progress=args.progress)
    write_json(out, result)
    rows = result["rows"]
    m = rows["mnemonic"]
    band = result["band"]
    lines = [f"{'method':22s} {'A_R':>6s} {'E_F':>6s} {'gap':>6s} {'ToW':>6s}" + ("  inside retrain's band" if band else "")]
    for method, row in rows.items():
        gap, tow = row["gap_to_retrain"], row["tow"]
        flags = (band or {}).get("inside", {}).get(method, {})
        lines.append(f"{method:22s} {row['A_R']:6.2f} {row['E_F']:6.2f} {'   n/a' if gap is None else f'{gap:6.2f}'} "
                     f"{'   n/a' if tow is None else f'{tow:6.3f}'}" + (f"  {sum(flags.values())}/{len(flags)} metrics" if band else ""))
    if band:
        a_r = band["stats"]["A_R"]
        lines.append(f"retrain band: {len(band['seeds'])} retrain references (seeds {', '.join(map(str, band['seeds']))}), "
                     f"A_R {a_r['min']:.2f}..{a_r['max']:.2f}")
        quiet = [a for a, v in band["signal"].items() if v["no_signal"]]
        if quiet:
            lines.append(f"no signal here (the original sits inside retrain's band): {', '.join(quiet)}")
    lines.append(
        f"mnemonic: step {m['step']}{'' if m['multi'] == 'single' else ' ' + m['multi']}, sign {m['sign']}"
        f"{', TIE' if m['sign_tie'] else ''}, scale {m['scale']:.3g}, {1000 * m['forget_seconds']:.1f} ms, "
        f"{m['backward_passes']} backward passes"
    )
    lines += [f"warning : {w}" for w in m["warnings"]]
    lines.append(f"wrote {out}")
    print("\n".join(lines))
    return 0


def _cmd_datasets(args) -> int:
    from ..io.data import DATASETS

    for name, text in DATASETS.items():
        print(f"{name:14s} {text}")
    return 0


def _cmd_settings(args) -> int:
    from ..settings import defaults_table

    if args.profile:
        s = Settings.from_profile(args.profile)
        for name, value in s.to_dict().items():
            print(f"{name} = {value!r}")
    else:
        print(defaults_table(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from . import population, report, results, sweep

    parser = _Parser(prog="mnemonic-mu", description="One-shot unlearning with mnemonic codes.")
    parser.add_argument("--version", action="version", version=f"mnemonic-mu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _experiment_parser(sub)
    sweep.add_subcommand(sub)
    report.add_subcommand(sub)
    results.add_subcommand(sub)
    population.add_subcommand(sub)
    st = sub.add_parser("settings", help="the table of settings and defaults (or a profile's values)")
    st.add_argument("--profile", default=None, help="print this profile's resolved settings instead")
    st.set_defaults(func=_cmd_settings)
    ds = sub.add_parser("datasets", help="list the datasets the kit can load")
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


__all__ = ["EXPERIMENT_OPTIONS", "build_parser", "main", "settings_from_args"]


if __name__ == "__main__":
    raise SystemExit(main())
