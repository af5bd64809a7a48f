"""Two defaults chosen on validation splits only: the baselines' selection rule and the code distribution.

    python benchmarks/validation_studies.py [--study selection|code_dist|all] [--jobs 2] [--render]

Both studies read the trained models the sweep caches (``mnemonic_mu.pipeline.train_models``;
missing ones are trained first) and score every model on the **validation split**; the test
split is never read.

**A. selection** (``docs/results/calibration/selection.json``, a section of
``docs/baselines.md``).  For the tuned baselines (``fisher_forgetting``, ``ssd``, ``neggrad``,
``neggrad_plus``), on every development setting below, every seed and every forget class,
every candidate of the method's grid is scored on two halves of the validation split
(stratified by class, fixed seed ``HALF_SEED``).  Each candidate rule of :func:`rules` chooses
on one half and is checked on the other (both ways round: a->b and b->a), against retrain's
A_R on the checking half.  A choice *collapses* when its A_R on the checking half is more than
``COLLAPSE`` points below retrain's; it *forgets* when its E_F there reaches 99 %.

The rule that picks the default (fixed before any number was seen): the fewest collapsed
choices over every (setting, method, direction), then the most forgotten, then the largest
mean A_R - retrain; on a tie the earlier rule of :func:`rules` (the current rule comes first).
A test checks that ``Selection()`` chooses, on every committed request, what the chosen rule
chooses.

**B. code_dist** (``docs/results/calibration/code_dist.json``, a section of
``docs/protocol.md``).  For both code distributions (``uniform``, the kit's default; ``normal``,
the paper's), on both settings below, every seed and class: the original trained with those
codes, unlearned by the calibrated step (the default) and by the paper's step at the settings'
lambdas; validation A_R, E_F and A_R minus the validation A_R of retrain (trained with the same
codes).  A request is *good* when its E_F reaches 99 % and its A_R is at most ``GOOD_DROP``
points below retrain's.  The decision (fixed before any number was seen): with the default step,
switch to ``normal`` only if it has more good requests than ``uniform`` summed over the
settings; on a tie, only if its mean A_R - retrain is larger; otherwise keep ``uniform``.
This script changes no default itself: it states the decision.
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
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT_SELECTION = ROOT / "docs" / "results" / "calibration" / "selection.json"
OUT_CODE_DIST = ROOT / "docs" / "results" / "calibration" / "code_dist.json"
DOC_SELECTION = ROOT / "docs" / "baselines.md"
DOC_CODE_DIST = ROOT / "docs" / "protocol.md"
MARKERS = {
    "selection": ("<!-- selection-study:start -->", "<!-- selection-study:end -->"),
    "code_dist": ("<!-- code-dist-study:start -->", "<!-- code-dist-study:end -->"),
}
COMMANDS = {
    "selection": "python benchmarks/validation_studies.py --study selection --jobs 2",
    "code_dist": "python benchmarks/validation_studies.py --study code_dist --jobs 2",
}

# (name, overrides of Settings(), seeds): the sweep's defaults (mnist5k, 40 epochs) and the digits recipe
SETTINGS = [
    ("mnist5k", {}, (0, 1, 2)),
    ("digits", {"dataset": "digits", "epochs": 30, "lr": 0.05}, (0, 1, 2)),
]
CLASSES = tuple(range(10))
METHODS = ("fisher_forgetting", "ssd", "neggrad", "neggrad_plus")
HALF_SEED = 0  # the validation split's halves
COLLAPSE = 10.0  # A_R points below retrain's (checking half) that count as a collapse
FORGOTTEN = 99.0  # E_F (%) that counts as forgotten (the kit's results count E_F >= 99)
GOOD_DROP = 2.0  # code_dist: A_R points below retrain's a good request may lose
DISTS = ("uniform", "normal")
STEPS = ("calibrated", "paper")
DIGITS = 3  # rounding of the stored scores


def _r(x: float) -> float:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), DIGITS)


# --------------------------------------------------------------------------
# Shared


_DATA: dict = {}


def _setup(overrides: dict):
    import torch

    from mnemonic_mu import pipeline
    from mnemonic_mu.settings import Settings

    torch.set_num_threads(1)
    s = Settings(**overrides)
    key = (s.dataset, s.split_seed)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = pipeline.load_data(s)
    return s, _DATA[key]


def halves(y_val, seed: int = HALF_SEED):
    """Boolean mask of half "a" of the validation split (the rest is "b"): per class, the first
    half (rounded down) of that class's samples in a seeded random order."""
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(len(y_val), generator=gen)
    in_a = torch.zeros(len(y_val), dtype=torch.bool)
    for c in torch.unique(y_val):
        idx = perm[y_val[perm] == c]
        in_a[idx[: len(idx) // 2]] = True
    return in_a


def _half_scores(logits, y, in_a, forget_classes) -> dict:
    from mnemonic_mu.algorithms.metrics import forgetting_scores

    out = {
        h: [_r(v) for v in forgetting_scores(logits[m], y[m], forget_classes)] for h, m in (("a", in_a), ("b", ~in_a))
    }
    return out | {"all": [_r(v) for v in forgetting_scores(logits, y, forget_classes)]}


def _seeds(seeds) -> str:
    return " ".join(map(str, seeds))


def _machine(jobs: int) -> str:
    return f"{os.cpu_count()} CPU cores ({platform.machine()}), {jobs} job(s) x 1 thread"


# --------------------------------------------------------------------------
# A. The selection rule: every candidate of every tuned baseline, on both halves


def _selection_job(args) -> dict:
    name, overrides, seed, cls = args
    from mnemonic_mu import pipeline
    from mnemonic_mu.algorithms import baselines as B
    from mnemonic_mu.algorithms.methods import UnlearnData, unlearn
    from mnemonic_mu.algorithms.metrics import predict_logits

    s0, dataset = _setup(overrides)
    s = s0.replace(seed=seed, forget_classes=(cls,))
    x_val, y_val = dataset.split("val")
    in_a = halves(y_val)
    trained = pipeline.train_models(s, dataset, ("original", "retrain"))
    original, retrain = trained["original"][0], trained["retrain"][0]
    row = {
        "setting": name,
        "seed": seed,
        "class": cls,
        "original": _half_scores(predict_logits(original.model, x_val), y_val, in_a, [cls]),
        "retrain": _half_scores(predict_logits(retrain.model, x_val), y_val, in_a, [cls]),
        "methods": {},
    }

    class Recording(B.Chooser):
        """The method's own chooser, also scoring each candidate on both halves."""

        def offer(self, model, params, keep_copy=False, **extra):
            extra["halves"] = _half_scores(predict_logits(model, x_val), y_val, in_a, [cls])
            super().offer(model, params, keep_copy, **extra)

    data = UnlearnData.from_dataset(dataset, [cls], s.train_config())
    for method in METHODS:
        with mock.patch.object(B, "Chooser", Recording):
            start = time.perf_counter()
            result = unlearn(method, original.model, original.codes, [cls], data, seed=seed)
            seconds = time.perf_counter() - start
        offered = [e for e in result.search if "halves" in e]
        keys = [k for k in offered[0] if k not in ("val_score", "val_A_R", "val_E_F", "tier", "halves", "dampened")]
        row["methods"][method] = {
            "params": keys,
            "candidates": [
                [e[k] for k in keys] + [*e["halves"]["a"], *e["halves"]["b"], *e["halves"]["all"]] for e in offered
            ],
            "diverged": len(result.search) - len(offered),
            "chosen_by_method": result.chosen,
            "seconds": round(seconds, 2),
        }
    return row


def _cands(row: dict, method: str, half: str) -> list[tuple[float, float]]:
    """(A_R, E_F) of every candidate of ``method`` on half ``half`` ("a", "b" or "all")."""
    m = row["methods"][method]
    off = len(m["params"]) + {"a": 0, "b": 2, "all": 4}[half]
    return [(nan(c[off]), nan(c[off + 1])) for c in m["candidates"]]


def nan(x):
    return float("nan") if x is None else float(x)


def rules() -> dict[str, dict]:
    """The candidate rules, by name: the selection tiers of ``Selection`` with another tier-1
    floor ("ratio": A_R >= r * original's; "best": A_R >= the best candidate's - d points;
    "drop": A_R >= original's - d points), and A_R + E_F for comparison.  The current rule first."""
    out = {"ratio-0.5": {"floor": "ratio", "value": 0.5}}
    for r in (0.8, 0.9, 0.95):
        out[f"ratio-{r:g}"] = {"floor": "ratio", "value": r}
    for d in (2.0, 5.0, 10.0):
        out[f"best-{d:g}"] = {"floor": "best", "value": d}
    for d in (2.0, 5.0):
        out[f"drop-{d:g}"] = {"floor": "drop", "value": d}
    out["sum"] = {"floor": "sum"}
    return out


def apply_rule(rule: dict, scores: list[tuple[float, float]], a_r_original: float) -> int:
    """Index of the candidate ``rule`` chooses among ``scores`` = [(A_R, E_F), ...] (NaN counts
    as 0, first on ties): tier 1 = forgotten (E_F >= ``Selection.target_e_f``) and A_R at or
    above the rule's floor, the largest A_R; then ``Selection``'s retain budget and least damage."""
    from mnemonic_mu.algorithms.baselines import Selection

    base = Selection()
    z = [tuple(0.0 if math.isnan(v) else float(v) for v in s) for s in scores]
    if rule["floor"] == "sum":
        return max(range(len(z)), key=lambda i: (z[i][0] + z[i][1], -i))
    floor = {
        "ratio": lambda: rule["value"] * a_r_original,
        "best": lambda: max(a for a, _ in z) - rule["value"],
        "drop": lambda: a_r_original - rule["value"],
    }[rule["floor"]]()

    def key(i):
        a, e = z[i]
        if e >= base.target_e_f and a >= floor:
            return (2, a, e)
        if a >= a_r_original - base.max_drop:
            return (1, e, a)
        return (0, a, e)

    return max(range(len(z)), key=lambda i: (key(i), -i))


def evaluate(rows: list[dict], rule: dict, method: str, choose_on: str) -> dict:
    """Choose on half ``choose_on`` with ``rule``, check on the other half against retrain."""
    check = "b" if choose_on == "a" else "a"
    d_a, forgotten, collapsed, good = [], 0, 0, 0
    for row in rows:
        i = apply_rule(rule, _cands(row, method, choose_on), row["original"][choose_on][0])
        a_r, e_f = _cands(row, method, check)[i]
        a_r, e_f = (0.0 if math.isnan(v) else v for v in (a_r, e_f))
        gap = a_r - row["retrain"][check][0]
        d_a.append(gap)
        forgotten += e_f >= FORGOTTEN
        collapsed += gap < -COLLAPSE
        good += e_f >= FORGOTTEN and gap >= -GOOD_DROP
    return {
        "n": len(rows),
        "forgotten": forgotten,
        "collapsed": collapsed,
        "good": good,
        "dA_mean": sum(d_a) / len(d_a),
        "dA_worst": min(d_a),
    }


def summarise_selection(rows: list[dict]) -> dict:
    """{rule: {setting: {method: {direction: evaluate(...)}}}}"""
    out = {}
    for rname, rule in rules().items():
        out[rname] = {}
        for setting, _, _ in SETTINGS:
            part = [r for r in rows if r["setting"] == setting]
            out[rname][setting] = {
                m: {f"{h}->{'b' if h == 'a' else 'a'}": evaluate(part, rule, m, h) for h in ("a", "b")} for m in METHODS
            }
    return out


def _total(summary: dict, rname: str) -> dict:
    parts = [
        d for per_setting in summary[rname].values() for per_method in per_setting.values() for d in per_method.values()
    ]
    n = sum(p["n"] for p in parts)
    return {
        "n": n,
        "forgotten": sum(p["forgotten"] for p in parts),
        "collapsed": sum(p["collapsed"] for p in parts),
        "good": sum(p["good"] for p in parts),
        "dA_mean": sum(p["dA_mean"] * p["n"] for p in parts) / n,
        "dA_worst": min(p["dA_worst"] for p in parts),
    }


def changed_choices(rows: list[dict], chosen: str, before: str = "ratio-0.5") -> dict:
    """{setting: {method: [requests whose choice on the whole validation split differs between
    rule ``before`` and rule ``chosen``, requests]}}: which methods' results the change moves."""
    out = {}
    for setting, _, _ in SETTINGS:
        part = [r for r in rows if r["setting"] == setting]
        out[setting] = {}
        for m in METHODS:
            picks = [
                (
                    apply_rule(rules()[before], _cands(r, m, "all"), r["original"]["all"][0]),
                    apply_rule(rules()[chosen], _cands(r, m, "all"), r["original"]["all"][0]),
                )
                for r in part
            ]
            out[setting][m] = [sum(a != b for a, b in picks), len(picks)]
    return out


def choose_rule(summary: dict) -> str:
    """The module doc's rule: fewest collapsed, then most forgotten, then largest mean A_R -
    retrain; on a tie the earlier rule (A_R + E_F is shown for comparison, never chosen)."""
    names = [n for n in rules() if n != "sum"]

    def key(n):
        t = _total(summary, n)
        return (-t["collapsed"], t["forgotten"], round(t["dA_mean"], 9), -names.index(n))

    return max(names, key=key)


def markdown_selection(doc: dict) -> str:
    summary, chosen = doc["summary"], doc["chosen"]
    n_req = len(doc["rows"])
    lines = [
        f"Made by `{doc['command']}` ({doc['minutes']:.1f} min on {doc['machine']}); source "
        "`docs/results/calibration/selection.json`. Validation split only: each rule chooses on one "
        f"half of it and is checked on the other half (both ways round), {n_req} requests "
        f"({', '.join(f'{n} x seeds {_seeds(seeds)} x 10 classes' for n, _, seeds in SETTINGS)}) "
        f"x {len(METHODS)} methods x 2 directions. *collapsed* = A_R more than {COLLAPSE:g} points below "
        f"retrain's; *forgotten* = E_F >= {FORGOTTEN:g}; *good* = forgotten and A_R at most {GOOD_DROP:g} "
        "points below retrain's; A_R - retrain on the checking half.",
        "",
        "Chosen by the rule (fewest collapsed, then most forgotten, then largest mean A_R - retrain; on a "
        f"tie the earlier rule): **{chosen}** ({_describe(doc['rules'][chosen])}).",
        "",
        "| rule | tier-1 floor | collapsed | forgotten | good | A_R - retrain, mean | worst |",
        "|---|---|---|---|---|---|---|",
    ]
    for rname, rule in doc["rules"].items():
        t = _total(summary, rname)
        mark = " (chosen)" if rname == chosen else (" (before)" if rname == "ratio-0.5" else "")
        lines.append(
            f"| {rname}{mark} | {_describe(rule)} | {t['collapsed']}/{t['n']} | {t['forgotten']} | "
            f"{t['good']} | {t['dA_mean']:+.2f} | {t['dA_worst']:+.2f} |"
        )
    lines += [
        "",
        f"Per setting and method, both directions summed: the rule before (ratio-0.5) and {chosen}; "
        "*changed* = requests whose choice on the whole validation split (what the method sees) differs "
        "between the two rules:",
        "",
        "| setting | method | changed | rule | collapsed | forgotten | good | A_R - retrain, mean | worst |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for setting, _, _ in SETTINGS:
        for m in METHODS:
            k, n_req = doc["changed"][setting][m]
            for rname in dict.fromkeys(("ratio-0.5", chosen)):
                ds = list(summary[rname][setting][m].values())
                n = sum(d["n"] for d in ds)
                lines.append(
                    f"| {setting} | {m} | {k}/{n_req} | {rname} | {sum(d['collapsed'] for d in ds)}/{n} | "
                    f"{sum(d['forgotten'] for d in ds)} | {sum(d['good'] for d in ds)} | "
                    f"{sum(d['dA_mean'] * d['n'] for d in ds) / n:+.2f} | {min(d['dA_worst'] for d in ds):+.2f} |"
                )
    return "\n".join(lines)


def _describe(rule: dict) -> str:
    f, v = rule["floor"], rule.get("value")
    if f == "sum":
        return "none: A_R + E_F"
    return {
        "ratio": f"A_R >= {v:g} x original's",
        "best": f"A_R >= best candidate's - {v:g}",
        "drop": f"A_R >= original's - {v:g}",
    }[f]


def run_selection(jobs: int) -> dict:
    from dataclasses import asdict

    from joblib import Parallel, delayed

    from mnemonic_mu.algorithms.baselines import Selection

    start = time.perf_counter()
    args = [(n, ov, seed, c) for n, ov, seeds in SETTINGS for seed in seeds for c in CLASSES]
    rows = Parallel(n_jobs=jobs)(delayed(_selection_job)(a) for a in args)
    summary = summarise_selection(rows)
    doc = {
        "command": COMMANDS["selection"],
        "minutes": (time.perf_counter() - start) / 60,
        "machine": _machine(jobs),
        "half_seed": HALF_SEED,
        "collapse": COLLAPSE,
        "forgotten": FORGOTTEN,
        "good_drop": GOOD_DROP,
        "criterion": "fewest collapsed, then most forgotten, then largest mean A_R - retrain; tie: earlier rule",
        # the rule the methods ran with (their "chosen_by_method", on the whole validation split); the
        # candidates, and so the study, do not depend on it
        "selection_in_force": asdict(Selection()),
        "settings": [{"name": n, "overrides": ov, "seeds": list(seeds)} for n, ov, seeds in SETTINGS],
        "rules": rules(),
        "chosen": choose_rule(summary),
        "summary": summary,
        "rows": rows,
    }
    return doc | {"changed": changed_choices(rows, doc["chosen"])}


# --------------------------------------------------------------------------
# B. The code distribution


def _code_dist_job(args) -> list[dict]:
    name, overrides, dist, seed = args
    import torch

    from mnemonic_mu import pipeline
    from mnemonic_mu.algorithms.forget import Calibration, forget
    from mnemonic_mu.algorithms.metrics import forgetting_scores, predict_logits

    s0, dataset = _setup(overrides)
    s = s0.replace(code_dist=dist, seed=seed)
    x_val, y_val = dataset.split("val")
    rows = []
    original = pipeline.train_models(s, dataset, ("original",))["original"][0]
    per_class = pipeline.code_fishers(original.model, original.codes)
    a_r_orig_all = forgetting_scores(predict_logits(original.model, x_val), y_val, [])[0]
    for c in CLASSES:
        sc = s.replace(forget_classes=(c,))
        retrain = pipeline.train_models(sc, dataset, ("retrain",))["retrain"][0]
        a_r_retrain = forgetting_scores(predict_logits(retrain.model, x_val), y_val, [c])[0]
        a_r_orig, e_f_orig = forgetting_scores(predict_logits(original.model, x_val), y_val, [c])
        row = {
            "setting": name,
            "code_dist": dist,
            "seed": seed,
            "class": c,
            "retrain_A_R": _r(a_r_retrain),
            "original_A_R": _r(a_r_orig),
            "original_E_F": _r(e_f_orig),
            "original_acc": _r(a_r_orig_all),
            "steps": {},
        }
        for step in STEPS:
            with torch.no_grad():
                new, rec = forget(
                    original.model,
                    original.codes,
                    [c],
                    s.lambda1,
                    s.lambda2,
                    step=step,
                    calibration=Calibration(multi=s.multi),
                    per_class_fisher=per_class,
                )
            a_r, e_f = forgetting_scores(predict_logits(new, x_val), y_val, [c])
            row["steps"][step] = {
                "A_R": _r(a_r),
                "E_F": _r(e_f),
                "dA": _r(a_r - a_r_retrain),
                "warned": bool(rec.warnings),
            }
        rows.append(row)
    return rows


def summarise_code_dist(rows: list[dict]) -> dict:
    """{setting: {dist: {step: counts and means}}}"""
    out = {}
    for setting, _, _ in SETTINGS:
        out[setting] = {}
        for dist in DISTS:
            part = [r for r in rows if r["setting"] == setting and r["code_dist"] == dist]
            out[setting][dist] = {
                "retrain_A_R_mean": sum(r["retrain_A_R"] for r in part) / len(part),
                "original_acc_mean": sum(r["original_acc"] for r in part) / len(part),
            }
            for step in STEPS:
                v = [r["steps"][step] for r in part]
                out[setting][dist][step] = {
                    "n": len(v),
                    "forgotten": sum(x["E_F"] >= FORGOTTEN for x in v),
                    "good": sum(x["E_F"] >= FORGOTTEN and x["dA"] >= -GOOD_DROP for x in v),
                    "warned": sum(x["warned"] for x in v),
                    "A_R_mean": sum(x["A_R"] for x in v) / len(v),
                    "E_F_mean": sum(x["E_F"] for x in v) / len(v),
                    "dA_mean": sum(x["dA"] for x in v) / len(v),
                    "dA_worst": min(x["dA"] for x in v),
                }
    return out


def _totals(summary: dict, dist: str, step: str) -> tuple[int, int, float]:
    """(good requests, requests, mean A_R - retrain) of ``dist`` and ``step`` over the settings."""
    parts = [summary[s][dist][step] for s in summary]
    n = sum(p["n"] for p in parts)
    return sum(p["good"] for p in parts), n, sum(p["dA_mean"] * p["n"] for p in parts) / n


def decide_code_dist(summary: dict) -> str:
    """The module doc's decision, on the default step (calibrated): "switch" or "keep"."""
    (g_u, _, d_u), (g_n, _, d_n) = _totals(summary, "uniform", "calibrated"), _totals(summary, "normal", "calibrated")
    return "switch" if g_n > g_u or (g_n == g_u and d_n > d_u) else "keep"


def markdown_code_dist(doc: dict) -> str:
    summary = doc["summary"]
    decision = doc["decision"]
    verdict = (
        "**switch the default to `normal`** (the paper's N(0,1) codes)"
        if decision == "switch"
        else "**keep `uniform`** (U[0,1) codes) as the default"
    )
    lines = [
        f"Made by `{doc['command']}` ({doc['minutes']:.1f} min on {doc['machine']}); source "
        "`docs/results/calibration/code_dist.json`. Validation split only; every class x seeds "
        f"{' '.join(map(str, SETTINGS[0][2]))}, lambdas (1e-3, 10); A_R - retrain = validation A_R minus "
        "the validation A_R of retrain trained with the same codes; *good* = E_F >= "
        f"{FORGOTTEN:g} and A_R at most {GOOD_DROP:g} points below retrain's.",
        "",
        "Decision (stated before the run: with the default step, calibrated, switch to `normal` only if it "
        "has more good requests summed over the settings, or as many and a larger mean A_R - retrain): "
        f"{verdict}.",
        "",
        "Summed over the settings: "
        + "; ".join(
            f"{step} step, "
            + ", ".join(
                f"{dist} {g} good of {n} (A_R - retrain {d:+.2f})"
                for dist, (g, n, d) in ((dist, _totals(summary, dist, step)) for dist in DISTS)
            )
            for step in STEPS
        )
        + ".",
        "",
        "| setting | codes | step | forgotten | good | warned | A_R | E_F | A_R - retrain, mean | worst | "
        "retrain A_R | original accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for setting in summary:
        for dist in DISTS:
            d = summary[setting][dist]
            for step in STEPS:
                p = d[step]
                lines.append(
                    f"| {setting} | {dist} | {step} | {p['forgotten']}/{p['n']} | {p['good']} | "
                    f"{p['warned']} | {p['A_R_mean']:.2f} | {p['E_F_mean']:.2f} | {p['dA_mean']:+.2f} | "
                    f"{p['dA_worst']:+.2f} | {d['retrain_A_R_mean']:.2f} | {d['original_acc_mean']:.2f} |"
                )
    return "\n".join(lines)


def run_code_dist(jobs: int) -> dict:
    from joblib import Parallel, delayed

    start = time.perf_counter()
    # mnist5k first (longest) so the pool stays busy
    args = [(n, ov, dist, seed) for n, ov, seeds in SETTINGS for dist in DISTS for seed in seeds]
    rows = [r for part in Parallel(n_jobs=jobs)(delayed(_code_dist_job)(a) for a in args) for r in part]
    summary = summarise_code_dist(rows)
    return {
        "command": COMMANDS["code_dist"],
        "minutes": (time.perf_counter() - start) / 60,
        "machine": _machine(jobs),
        "forgotten": FORGOTTEN,
        "good_drop": GOOD_DROP,
        "criterion": "default step (calibrated): switch to normal only with more good requests summed over the "
        "settings, or as many and a larger mean A_R - retrain; else keep uniform",
        "settings": [{"name": n, "overrides": ov, "seeds": list(seeds)} for n, ov, seeds in SETTINGS],
        "summary": summary,
        "decision": decide_code_dist(summary),
        "rows": rows,
    }


# --------------------------------------------------------------------------


STUDIES = {
    "selection": (OUT_SELECTION, DOC_SELECTION, markdown_selection, run_selection),
    "code_dist": (OUT_CODE_DIST, DOC_CODE_DIST, markdown_code_dist, run_code_dist),
}


def write_doc(study: str, doc: dict) -> None:
    _, path, markdown, _ = STUDIES[study]
    start, end = MARKERS[study]
    text = path.read_text()
    a, b = text.index(start) + len(start), text.index(end)
    path.write_text(text[:a] + "\n" + markdown(doc) + "\n" + text[b:])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", choices=("selection", "code_dist", "all"), default="all")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--render", action="store_true", help="only rewrite the docs' sections from the JSON files")
    args = p.parse_args(argv)
    for study in ("selection", "code_dist") if args.study == "all" else (args.study,):
        out, _, markdown, run = STUDIES[study]
        if args.render:
            write_doc(study, json.loads(out.read_text()))
            continue
        doc = run(args.jobs)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
        write_doc(study, doc)
        print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
