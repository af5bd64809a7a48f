"""How the calibrated step's rules and constants were chosen: on validation splits only.

    python benchmarks/calibration_study.py [--jobs 2] [--quick]

For every development setting below (datasets the kit ships or names, at recipes that make
the request easy or hard), for every seed and every forget class, the trained original
(the sweep's cached model) is unlearned by each candidate calibration of
:class:`mnemonic_mu.algorithms.forget.Calibration`, by today's step before this study
(``Calibration.v1()``) and by the paper's step.  Each result is scored on the
**validation split** against a data-side stand-in for retrain that needs no training:
the original with the forget class's logit removed (its accuracy on the remaining
classes).  A request is *good* when the validation E_F reaches 99 % and the validation
A_R is at most 1 point below that stand-in; *silent* when it is not good and the step gave
no warning.

The rule that picks the default: the candidate with the most good requests over all
settings, then the fewest silent ones, then the best worst-request A_R; on a tie the larger
``hidden_cap`` (more of the step in the layers below the output layer, the part that does
more than suppress one output row), then the smaller margin.  The test split is
never read.  Writes ``docs/results/calibration/validation.json`` and the tables of
``docs/calibration.md`` (between the ``study:start`` / ``study:end`` markers); a test
checks that ``Calibration()``'s defaults are the candidate this file chose.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import write_between  # noqa: E402

OUT = ROOT / "docs" / "results" / "calibration" / "validation.json"
DOC = ROOT / "docs" / "calibration.md"
START, END = "<!-- study:start -->", "<!-- study:end -->"
COMMAND = "python benchmarks/calibration_study.py --jobs 2"

# (name, profile, overrides, seeds): each a development setting, easy or hard
SETTINGS = [
    ("digits-ci", "ci", {}, (0, 1)),
    ("digits-20-epochs", "laptop", {"dataset": "digits", "epochs": 20}, (0, 1)),
    ("mnist5k-laptop", "laptop", {}, (0, 1, 2)),
    ("mnist5k-20-epochs", "laptop", {"epochs": 20}, (0, 1)),
    ("mnist5k-normal-codes", "laptop", {"epochs": 20, "code_dist": "normal"}, (0, 1)),
    ("mnist5k-5-epochs", "laptop", {"epochs": 5}, (0, 1)),
]
GOOD_EF, GOOD_DROP = 99.0, 1.0


def candidates() -> dict[str, dict]:
    """Calibration fields of every candidate, by name (``v1`` = the step before this study)."""
    out = {"v1": {"v1": True}, "rows-only": {"hidden_cap": math.inf, "margin": 2.0}}
    for cap in (0.25, 0.5, 1.0, math.inf):
        for margin in (2.0, 4.0, 8.0):
            out[f"cap{cap:g}-m{margin:g}"] = {"hidden_cap": cap, "margin": margin}
    return out


def calibration(fields: dict):
    from mnemonic_mu.algorithms.forget import Calibration

    fields = dict(fields)
    return Calibration.v1() if fields.pop("v1", False) else Calibration(**fields)


def _setting_job(args) -> dict:
    name, profile, overrides, seeds = args
    import torch

    from mnemonic_mu import pipeline
    from mnemonic_mu.algorithms.forget import forget
    from mnemonic_mu.settings import Settings

    torch.set_num_threads(1)
    s0 = Settings.from_profile(profile).replace(**overrides)
    dataset = pipeline.load_data(s0)
    x_val, y_val = dataset.split("val")
    cands = candidates()
    rows = []
    for seed in seeds:
        s = s0.replace(seed=seed)
        ck = pipeline.train_models(s, dataset, ("original",))["original"][0]
        model, codes = ck.model, ck.codes
        per_class = pipeline.code_fishers(model, codes)
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
        for c in range(len(codes)):
            remaining = y_val != c
            masked = logits.clone()
            masked[:, c] = -math.inf
            stand_in = 100.0 * float((masked.argmax(1)[remaining] == y_val[remaining]).float().mean())
            row = {"seed": seed, "class": c, "stand_in_A_R": stand_in, "steps": {}}
            runs = [(n, "calibrated", calibration(f)) for n, f in cands.items()] + [("paper", "paper", None)]
            for cand, step, cal in runs:
                new, rec = forget(
                    model, codes, [c], s.lambda1, s.lambda2, step=step, calibration=cal, per_class_fisher=per_class
                )
                new.eval()
                with torch.no_grad():
                    pred = new(x_val).argmax(1)
                row["steps"][cand] = {
                    "E_F": 100.0 * float((pred[~remaining] != c).float().mean()),
                    "dA": 100.0 * float((pred[remaining] == y_val[remaining]).float().mean()) - stand_in,
                    "scale": float(rec.scale),
                    "warned": bool(rec.warnings),
                }
            rows.append(row)
    return {"name": name, "profile": profile, "overrides": overrides, "seeds": list(seeds), "rows": rows}


def summarise(rows: list[dict], cand: str) -> dict:
    vals = [r["steps"][cand] for r in rows]
    good = [v["E_F"] >= GOOD_EF and v["dA"] >= -GOOD_DROP for v in vals]
    return {
        "n": len(vals),
        "forgotten": sum(v["E_F"] >= GOOD_EF for v in vals),
        "good": sum(good),
        "silent": sum(not g and not v["warned"] for g, v in zip(good, vals)),
        "warned": sum(v["warned"] for v in vals),
        "dA_mean": sum(v["dA"] for v in vals) / len(vals),
        "dA_worst": min(v["dA"] for v in vals),
    }


def choose(results: list[dict]) -> str:
    """The rule of the module doc, over the calibrated candidates (not v1, not the paper step)."""

    def total(cand):
        parts = [summarise(r["rows"], cand) for r in results]
        fields = candidates()[cand]
        return (
            sum(p["good"] for p in parts),
            -sum(p["silent"] for p in parts),
            min(p["dA_worst"] for p in parts),
            fields.get("hidden_cap", 0.0),
            -fields.get("margin", 0.0),
        )

    return max((c for c in candidates() if c != "v1"), key=total)


def markdown(doc: dict) -> str:
    chosen = doc["chosen"]
    show = ["paper", "v1", "rows-only", chosen]
    lines = [
        f"Made by `{COMMAND}` ({doc['minutes']:.1f} min on {doc['machine']}); source "
        "`docs/results/calibration/validation.json`. Validation split only; *good* = validation "
        f"E_F >= {GOOD_EF:g} and A_R at most {GOOD_DROP:g} point below the original with the forget "
        "logit removed; *silent* = not good and no warning.",
        "",
        f"Chosen by the rule (most good, then fewest silent, then best worst request; on a tie the larger "
        f"hidden_cap, then the smaller margin): **{chosen}** "
        f"= `Calibration({', '.join(f'{k}={v}' for k, v in doc['candidates'][chosen].items())})`.",
        "",
        "| setting | step | forgotten | good | silent | warned | A_R - stand-in, mean | worst |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["settings"]:
        for cand in show:
            p = r["summary"][cand]
            lines.append(
                f"| {r['name']} | {cand} | {p['forgotten']}/{p['n']} | {p['good']} | {p['silent']} | "
                f"{p['warned']} | {p['dA_mean']:+.2f} | {p['dA_worst']:+.2f} |"
            )
    lines += [
        "",
        "Every candidate, summed over the settings:",
        "",
        "| candidate | good | silent | worst request |",
        "|---|---|---|---|",
    ]
    for cand in list(doc["candidates"]) + ["paper"]:
        parts = [r["summary"][cand] for r in doc["settings"]]
        lines.append(
            f"| {cand} | {sum(p['good'] for p in parts)}/{sum(p['n'] for p in parts)} | "
            f"{sum(p['silent'] for p in parts)} | {min(p['dA_worst'] for p in parts):+.2f} |"
        )
    return "\n".join(lines)


def write_doc(doc: dict) -> None:
    write_between(DOC, START, END, markdown(doc))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--render", action="store_true", help="only rewrite docs/calibration.md from the JSON")
    args = p.parse_args(argv)
    if args.render:
        write_doc(json.loads(OUT.read_text()))
        return 0
    from joblib import Parallel, delayed

    start = time.perf_counter()
    results = Parallel(n_jobs=args.jobs)(delayed(_setting_job)(a) for a in SETTINGS)
    for r in results:
        r["summary"] = {c: summarise(r["rows"], c) for c in list(candidates()) + ["paper"]}
    doc = {
        "command": COMMAND,
        "minutes": (time.perf_counter() - start) / 60,
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), {args.jobs} job(s) x 1 thread",
        "rule": "most good requests, then fewest silent, then best worst-request A_R - stand-in; "
        "on a tie the larger hidden_cap, then the smaller margin",
        "candidates": candidates(),
        "chosen": choose(results),
        "settings": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    write_doc(doc)
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
