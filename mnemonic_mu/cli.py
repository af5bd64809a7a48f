"""Command line: ``mnemonic-mu experiment | datasets`` (``python -m mnemonic_mu``).

Every error the kit raises on purpose is printed as one line
(``mnemonic-mu: error: ...``) with exit status 2; nothing prints a stack
trace for bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import MnemonicError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line plus a pointer to --help."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_recipe_options(p: argparse.ArgumentParser) -> None:
    """The data and training-recipe options shared by ``experiment`` and ``sweep``
    (named after :class:`~mnemonic_mu.experiment.ExperimentConfig` fields)."""
    from .experiment import ExperimentConfig

    d = ExperimentConfig()
    a = p.add_argument
    a("--dataset", default=d.dataset, help=f"dataset name (default {d.dataset})")
    a("--data-root", default=d.data_root, help="torchvision data root (default ./data)")
    a("--model", default=d.model, help="mlp | cnn | resnet18 (default mlp)")
    a("--epochs", type=int, default=d.epochs, help=f"training epochs (default {d.epochs})")
    a("--batch-size", type=int, default=d.batch_size, help=f"batch size (default {d.batch_size})")
    a("--lr", type=float, default=d.lr, help=f"SGD learning rate (default {d.lr})")
    a("--momentum", type=float, default=d.momentum, help=f"SGD momentum (default {d.momentum})")
    a("--weight-decay", type=float, default=d.weight_decay, help=f"weight decay (default {d.weight_decay})")
    a("--cosine", action="store_true", help="cosine learning-rate schedule")
    a("--t-mix", type=float, default=d.t_mix, help=f"code replacement probability (default {d.t_mix})")
    a("--code-dist", default=d.code_dist, help="uniform U[0,1) (default: forgets every class measured, see README) | normal (the paper's N(0,1))")


def _experiment_parser(sub) -> None:
    from .experiment import ExperimentConfig

    d = ExperimentConfig()
    p = sub.add_parser(
        "experiment",
        help="train (or load) a model with codes, forget classes in one shot, evaluate",
        description="Train -> forget -> evaluate; writes one JSON file. Defaults: the paper's "
        "MNIST setting on the embedded mnist5k data.",
    )
    add_recipe_options(p)
    a = p.add_argument
    a("--download", action="store_true", help="allow downloading a missing dataset")
    a("--forget", type=int, nargs="+", default=list(d.forget), help="class(es) to forget (default 0)")
    a("--seed", type=int, default=d.seed, help="training and code seed (default 0)")
    a("--split-seed", type=int, default=d.split_seed, help="seed of the data split (default 0)")
    a("--lambda1", type=float, default=d.lambda1, help=f"Eq. 5 lambda1 (default {d.lambda1})")
    a("--lambda2", type=float, default=d.lambda2, help=f"Eq. 5 lambda2 (default {d.lambda2})")
    a("--step", default=d.step, help="paper | calibrated (default %(default)s)")
    a("--multi", default=d.multi,
      help="several --forget classes with the calibrated step: sequential (one step per class) | joint "
           "(default %(default)s)")
    a("--device", default=d.device, help="cpu | cuda | cuda:N | auto (default cpu)")
    a("--threads", type=int, default=0, help="torch threads (default: OMP_NUM_THREADS or torch's)")
    a("--cache-dir", default=d.cache_dir, help="trained-model cache (default data/cache)")
    a("--no-cache", action="store_true", help="train again even if a cached model matches")
    a("--no-retrain", action="store_true", help="skip the retrain-from-scratch reference")
    a("--no-codes-baseline", action="store_true", help="also train the same recipe with t_mix = 0")
    a("--out", default=None, help="JSON output path (default reports/experiments/<name>.json)")
    a("--progress", action="store_true", help="show training progress bars")
    p.set_defaults(func=_cmd_experiment)


def _cmd_experiment(args) -> int:
    from .artifacts import write_json
    from .errors import ConfigError
    from .experiment import ExperimentConfig, run_experiment

    # option names are the config's field names (dashes for underscores), except three switches
    negated = {"use_cache": not args.no_cache, "retrain": not args.no_retrain, "no_codes": args.no_codes_baseline}
    given = {f: getattr(args, f) for f in ExperimentConfig.field_names() if f not in negated}
    cfg = ExperimentConfig(**(given | negated | {"forget": tuple(args.forget)}))
    mode = cfg.step + ("-joint" if cfg.step == "calibrated" and cfg.multi == "joint" and len(cfg.forget) > 1 else "")
    name = f"{cfg.dataset}_{cfg.model}_forget{'-'.join(map(str, cfg.forget))}_seed{cfg.seed}_{mode}"
    out = Path(args.out) if args.out else Path("reports/experiments") / f"{name}.json"
    if out.is_dir():  # checked before training, not after
        raise ConfigError(f"--out {out} is a folder; give a file path such as {out / (name + '.json')}")
    result = run_experiment(cfg, progress=args.progress)
    write_json(out, result)
    o, m = result["original"], result["mnemonic"]
    lines = [
        f"original : test acc {o['test_accuracy']:.2f}  A_R {o['A_R']:.2f}  E_F {o['E_F']:.2f}",
        f"mnemonic : A_R {m['A_R']:.2f}  E_F {m['E_F']:.2f}  (step {m['step']}"
        f"{'' if m['multi'] == 'single' else ' ' + m['multi']}, sign {m['sign']}"
        f"{', TIE' if m['sign_tie'] else ''}, {1000 * m['forget_seconds']:.1f} ms, "
        f"{m['backward_passes']} backward passes)",
    ]
    if "retrain" in result:
        r = result["retrain"]
        lines.append(f"retrain  : A_R {r['A_R']:.2f}  E_F {r['E_F']:.2f}")
    lines += [f"warning  : {w}" for w in m["warnings"]]
    lines.append(f"wrote {out}")
    print("\n".join(lines))
    return 0


def _cmd_datasets(args) -> int:
    from .data import DATASETS

    for name, text in DATASETS.items():
        print(f"{name:14s} {text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mnemonic-mu", description="One-shot unlearning with mnemonic codes.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"mnemonic-mu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _experiment_parser(sub)
    ds = sub.add_parser("datasets", help="list the datasets the kit can load")
    ds.set_defaults(func=_cmd_datasets)
    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return parser


# Further subcommands (report, sweep, bench ...) register themselves here: each
# is a function taking the subparsers object.
_EXTRA_COMMANDS: list = []


def _register_optional_commands() -> None:
    import importlib

    for module in ("report", "sweep"):
        try:
            mod = importlib.import_module(f"mnemonic_mu.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mnemonic_mu.{module}":
                raise
            continue
        if mod.add_subcommand not in _EXTRA_COMMANDS:  # main() may run twice in one process
            _EXTRA_COMMANDS.append(mod.add_subcommand)


def main(argv: list[str] | None = None) -> int:
    _register_optional_commands()
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


if __name__ == "__main__":
    raise SystemExit(main())

