"""``mnemonic-mu results``: the docs' result tables, generated from sweep outputs.

::

    mnemonic-mu results [SWEEP_DIR ...] [--name NAME ...]

Each ``SWEEP_DIR`` (a folder holding a ``sweep.json``) becomes a small summary file
``docs/results/<name>.json``: the command that reproduces the sweep, its settings, and per
method the mean, std and worst class of each headline metric, the number of requests
forgotten and the distance of A_R to retrain's.  Then ``docs/results.md`` and the results
block of ``README.md`` are rewritten from every ``docs/results/*.json``.  No number in those
tables is typed by hand; a test renders them again from the committed JSON and compares.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from .. import bands
from ..algorithms.attacks import ATTACKS
from ..algorithms.baselines import Selection
from ..algorithms.methods import by_sees, row_sees, uses_selection
from ..errors import ConfigError
from ..io.artifacts import atomic_write_text, write_json
from ..options import option
from ..paths import project_root
from ..settings import Settings
from .sweep import PAPER_MNIST, SWEEP_OPTIONS

FORGOTTEN = 99.0  # E_F at or above which a request counts as forgotten
BAND_SLACK = 1.0  # a request keeps the remaining classes when A_R >= retrain's lowest A_R of its class - this
# the steps compared in the "every setting" table: (row, what it is)
STEPS = (
    ("original", "*original (no step: the input model)*"),
    ("mnemonic_paper", "paper step"),
    ("mnemonic_calibrated_v1", "calibrated step before the retain guard (v1)"),
    ("mnemonic", "calibrated step (the default)"),
    ("mnemonic_matched", "matched step (docs/matched.md)"),
)
OPTIONAL_STEPS = ("mnemonic_matched",)  # shown where the sweep scored it (sweeps made before it existed did not)
HEADLINE = ("A_R", "E_F", "gap", "seconds")
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
HEADLINE_RESULT = "mnist5k-laptop"  # the summary the README shows (else the first by name)


def command_of(result: dict) -> str:
    """The ``mnemonic-mu sweep`` command that reproduces ``result``'s settings (those that differ
    from the laptop profile, plus the methods, classes and seeds)."""
    base = Settings.from_profile("laptop").to_dict()
    s = base | result["settings"]  # a sweep made before a setting existed ran at its default
    words = ["mnemonic-mu", "sweep"]
    for name in SWEEP_OPTIONS:
        if name in ("cache_dir", "data_root", "device", "threads", "use_cache") or s[name] == base[name]:
            continue
        value = s[name]
        if isinstance(value, list):
            words += [option(name), *map(str, value)] if value else [option(name), "none"]
        elif isinstance(value, bool):
            words.append(option(name) if value else "--no-" + name.replace("_", "-"))
        else:
            words += [option(name), str(value)]
    words += ["--classes", *map(str, result["classes"]), "--seeds", *map(str, result["seeds"])]
    return " ".join(words)


def _finite(xs) -> list[float]:
    return [float(x) for x in xs if x is not None and math.isfinite(float(x))]


def summarise_sweep(result: dict, name: str) -> dict:
    """The committed summary of one sweep (see the module doc)."""
    rows = result["rows"]
    retrain = {(r["seed"], r["forget_class"]): r for r in rows if r["method"] == "retrain"}
    band = retrain_band_A_R(rows, result.get("band_rows"))
    original = {(r["seed"], r["forget_class"]): r["A_R"] for r in rows if r["method"] == "original"}

    def keeps(a_r: float, cls: int) -> bool:  # inside retrain's band of the class, with the slack
        return a_r >= band["per_class"][str(cls)]["min"] - BAND_SLACK

    methods: dict[str, dict] = {}
    for method, entry in result["summary"].items():
        mine = [r for r in rows if r["method"] == method]
        delta = [r["A_R"] - retrain[(r["seed"], r["forget_class"])]["A_R"] for r in mine]
        worst = int(np.argmin(delta))
        inside = [keeps(r["A_R"], r["forget_class"]) for r in mine]
        original_inside = [
            keeps(original.get((r["seed"], r["forget_class"]), math.inf), r["forget_class"]) for r in mine
        ]
        warned = [bool(r.get("warnings")) for r in mine]
        methods[method] = {
            "reference": entry["reference"],
            "n": len(mine),
            "forgotten": sum(r["E_F"] >= FORGOTTEN for r in mine),
            "inside_band": sum(inside),
            "warned": sum(warned),
            # the target of the calibrated step: forgotten and inside retrain's band (+ slack), or a warning
            "target_met": sum((r["E_F"] >= FORGOTTEN and i) or w for r, i, w in zip(mine, inside, warned)),
            # outside the band on a request where the input model (the original) was inside: the step's own damage
            "pushed_outside": sum((not i) and o and not w for i, o, w in zip(inside, original_inside, warned)),
            "A_R_minus_retrain": {
                "mean": float(np.mean(delta)),
                "worst": float(delta[worst]),
                "worst_request": {"seed": mine[worst]["seed"], "class": mine[worst]["forget_class"]},
            },
            **{m: {k: entry[m][k] for k in ("mean", "std", "worst", "worst_class")} for m in HEADLINE},
            # every band metric's mean, and the requests inside their own request's retrain band
            "metrics": {k: entry[k]["mean"] for k in bands.band_metrics() if k in entry},
            "inside": (result.get("bands") or {}).get("inside", {}).get(method, {}),
        }
        chosen = [(r.get("info") or {}).get("selection") for r in mine]
        if any(chosen):  # a method chosen by the selection rule: how often each tier chose
            methods[method]["selection"] = {tier: chosen.count(tier) for tier in Selection.TIERS.values()}
    env = result.get("environment", {})
    return {
        "name": name,
        "command": command_of(result),
        "settings": {k: v for k, v in result["settings"].items() if k not in ("cache_dir", "data_root", "run_dir")},
        "classes": result["classes"],
        "seeds": result["seeds"],
        "hardware": {k: env.get(k) for k in ("processor", "cpu_count", "torch", "device")}
        | {"jobs": env.get("jobs"), "torch_threads_per_worker": env.get("torch_threads_per_worker")},
        "wall_seconds": result.get("timing", {}).get("total_seconds"),
        "retrain_band_A_R": band,
        "bands": _band_summary(result.get("bands")),
        "methods": methods,
    }


def _band_summary(b: dict | None) -> dict | None:
    """What a summary keeps of a sweep's bands (:func:`mnemonic_mu.drivers.sweep.sweep_bands`)."""
    if not b:
        return None
    return {
        "rule": b["rule"],
        "n_band": b["n_band"],
        "n_requests": b["n_requests"],
        "stats": b.get("stats", {}),
        "expected_inside": b["expected_inside"],
        "tow_interval": b.get("tow_interval", {}),
        "signal": {
            a: {k: v[k] for k in ("no_signal", "classes_with_signal", "n_classes")} for a, v in b["signal"].items()
        },
    }


def retrain_band_A_R(rows: list[dict], band_rows: list[dict] | None = None) -> dict:
    """Retrain's own seed-to-seed band of A_R: per forget class the min, max and spread
    (max - min) of the band references' A_R (each band seed's retrain of that class, once;
    without band rows: the sweep's own retrain references over its seeds); and the mean and
    largest spread over classes (0 with one seed)."""
    if band_rows:  # one model per (band seed, class), whichever request scored it
        refs = [r for _, r in sorted({(r["band_seed"], r["forget_class"]): r for r in band_rows}.items())]
    else:
        refs = [r for r in rows if r["method"] == "retrain"]
    per: dict[str, list[float]] = {}
    for r in refs:
        per.setdefault(str(r["forget_class"]), []).append(float(r["A_R"]))
    classes = {c: {"min": min(v), "max": max(v), "spread": max(v) - min(v), "n_seeds": len(v)} for c, v in per.items()}
    spreads = [v["spread"] for v in classes.values()]
    return {"per_class": classes, "spread_mean": float(np.mean(spreads)), "spread_max": float(np.max(spreads))}


def _f(x, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def method_order(methods: dict) -> list[str]:
    """The rows of a table: the references first, then the methods grouped by what they see
    (:func:`~mnemonic_mu.algorithms.methods.by_sees`)."""
    return by_sees(methods)


def fallback_cell(method: str, m: dict) -> str:
    """How often the selection rule (:class:`~mnemonic_mu.algorithms.baselines.Selection`) fell
    back from its first tier for ``method`` (its summary ``m``), e.g. ``3/20 (retain budget 2,
    least damage 1)``; "-" for a method the rule does not choose, "n/a" for a summary made
    before the tally was kept."""
    tally = m.get("selection")
    if tally is None:
        return "n/a" if uses_selection(method) else "-"
    first, *rest = Selection.TIERS.values()
    fell = {tier: tally.get(tier, 0) for tier in rest}
    total = sum(fell.values())
    detail = ", ".join(f"{tier} {k}" for tier, k in fell.items() if k)
    return f"{total}/{sum(tally.values())}" + (f" ({detail})" if detail else "")


def table(summary: dict) -> str:
    """One markdown table of a summary: a row per method, references first, then the methods
    grouped by what they see (:func:`method_order`)."""
    head = (
        "| method | sees | forgotten (E_F >= 99) | A_R (%) | E_F (%) | A_R - retrain, mean "
        "| A_R - retrain, worst request | gap to retrain | time (s) | selection fell back |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for method in method_order(summary["methods"]):
        m = summary["methods"][method]
        d = m["A_R_minus_retrain"]
        worst = f"{_f(d['worst'])} (seed {d['worst_request']['seed']}, class {d['worst_request']['class']})"
        lines.append(
            f"| {'*' + method + '*' if m['reference'] else method} | {row_sees(method)} | {m['forgotten']}/{m['n']} "
            f"| {_f(m['A_R']['mean'])} +- {_f(m['A_R']['std'])} | {_f(m['E_F']['mean'])} +- {_f(m['E_F']['std'])} "
            f"| {_f(d['mean'])} | {worst} | {_f(m['gap']['mean'])} | {_f(m['seconds']['mean'], 3)} "
            f"| {fallback_cell(method, m)} |"
        )
    return "\n".join(lines) + "\n"


def band_columns() -> tuple[tuple[str, int], ...]:
    """``(metric, decimals)`` of :func:`band_table`: the accuracies, every attack of the registry, then the rest."""
    return (
        ("A_R", 1),
        ("E_F", 1),
        ("A_R_train", 1),
        ("E_F_train", 1),
        *((a.name, a.digits) for a in ATTACKS.values()),
        ("gap", 2),
        ("tow", 3),
        ("js_forget", 3),
        ("js_retain", 3),
        ("activation_forget", 3),
        ("activation_retain", 3),
    )


def band_table(summary: dict) -> str:
    """Every metric of every method beside retrain's band: the method's mean over requests and
    how many requests lie inside their own band; the band's pooled mean +- std and min..max; an
    attack without signal on this setup is marked in its header.  Empty without a band."""
    b = summary.get("bands")
    if not b:
        return ""
    methods = summary["methods"]
    cols = [
        (k, d) for k, d in band_columns() if k in b["stats"] and any(k in m.get("inside", {}) for m in methods.values())
    ]
    quiet = {a for a, v in b["signal"].items() if v["no_signal"]}
    head = (
        "| method | sees | " + " | ".join(k + (" (**no signal here**)" if k in quiet else "") for k, _ in cols) + " |"
    )
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    st = b["stats"]
    lines.append(
        f"| *retrain band* | {row_sees('retrain')} | "
        + " | ".join(
            f"{_f(st[k]['mean'], d)} +- {_f(st[k]['std'], d)} [{_f(st[k]['min'], d)}..{_f(st[k]['max'], d)}]"
            for k, d in cols
        )
        + " |"
    )
    order = [(name, methods[name]) for name in method_order(methods)]
    for name, m in order:
        cells = []
        for k, d in cols:
            c = m.get("inside", {}).get(k)
            cells.append(f"{_f(m['metrics'].get(k), d)} ({c['inside']}/{c['n']})" if c else _f(m["metrics"].get(k), d))
        shown = "*" + name + "*" if m["reference"] else name
        lines.append(f"| {shown} | {row_sees(name)} | " + " | ".join(cells) + " |")
    two, one = bands.expected_inside("A_R", b["n_band"]), bands.expected_inside("gap", b["n_band"])
    tow = b.get("tow_interval", {})
    tow_line = ", ".join(
        f"{name} {_f(tow[name]['mean'], 3)} [{_f(tow[name]['low'], 3)}, {_f(tow[name]['high'], 3)}]"
        for name, _ in order
        if name in tow
    )
    return (
        "\n".join(lines) + "\n\n"
        f"Cells: the method's mean over the {b['n_requests']} requests (requests inside their own request's band / "
        f"scored). The band: {b['n_band']} retrain references per request, trained with the band seeds (never the "
        f"request's seed) and scored against the request's retrain like a method; the row *retrain band* pools "
        f"them over every request. {b['rule'][0].upper() + b['rule'][1:]}. Another retrain of the recipe is "
        f"inside with probability {two:.2f} on a two-sided metric and {one:.2f} on a one-sided one; the *retrain* "
        "row (the request's own retrain, scored like every method) checks that. An attack is marked **no signal "
        "here** when the original's values and the band's overlap on every forget class: its numbers cannot say "
        "whether a class was forgotten on this setup. ToW mean and 95 % Student-t interval over seeds: "
        f"{tow_line}.\n"
    )


def paper_line(summary: dict) -> str:
    """The paper's full-MNIST numbers (docs/method.md) beside a full-MNIST summary's methods that have them."""
    if summary["settings"].get("dataset") != "mnist":
        return ""
    here = [(name, PAPER_MNIST[name]) for name in PAPER_MNIST if name in summary["methods"]]
    if not here:
        return ""
    ms = summary["methods"]
    return (
        "The paper's full-MNIST numbers (200 epochs, forget class 0, its lambdas tuned on the test split; "
        "docs/method.md), A_R / E_F, beside this sweep's means: "
        + "; ".join(
            f"{name} paper {a:.1f} / {f:.1f}, here {_f(ms[name]['A_R']['mean'], 1)} / {_f(ms[name]['E_F']['mean'], 1)}"
            for name, (a, f) in here
        )
        + "."
    )


def _setup_line(summary: dict) -> str:
    s = summary["settings"]
    return (
        f"{s['dataset']}, {s['model']}, {s['epochs']} epochs, codes {s['code_dist']}, step `{s['step']}` "
        f"(row `mnemonic`), {len(summary['seeds'])} seeds x {len(summary['classes'])} forget classes, "
        f"each request against its own retrain reference"
    )


def render_results(summaries: list[dict]) -> str:
    """docs/results.md from the committed summaries."""
    out = [
        "# Results",
        "",
        "Generated by `mnemonic-mu results` from the summary files in `docs/results/`; each section names",
        "the command that made its sweep. Rerun the command, then `mnemonic-mu results <its sweep folder>`",
        "to refresh a section. Definitions: [protocol.md](protocol.md). Italic rows are the references;",
        "*sees* is what a method reads of the request's data, from the method registry",
        "([baselines.md](baselines.md#every-method-the-registry)); the methods are grouped by it, the least data",
        "first. *Selection fell back*: on how many requests the selection rule",
        "([baselines.md](baselines.md#choosing-a-candidate-the-selection-rule)) found no candidate that",
        "forgot while keeping 95 % of the original's validation A_R and took its retain-budget or",
        "least-damage tier instead (n/a: a summary made before the tally was kept; - : a method the rule",
        "does not choose).",
        "A sweep with band seeds also shows every metric of every method beside retrain's seed band: retrain",
        "references trained with other seeds, scored against each request's retrain like a method",
        "([evaluation.md](evaluation.md#retrains-seed-band-and-attacks-without-signal)).",
        "",
    ]
    steps = steps_table(summaries)
    if steps.count("\n") > 2:
        out += [
            "## The calibrated step on every setting",
            "",
            "Every sweep below that scored the three steps: the paper's, the calibrated step before the "
            "retain guard (`mnemonic_calibrated_v1`) and the default calibrated step (row `mnemonic`), and "
            "where the sweep scored it the matched step (`mnemonic_matched`, [matched.md](matched.md)). "
            f"A request is inside retrain's band when its A_R is at least the lowest A_R of the band's "
            f"retrain references of its class (their own seeds; a sweep without band seeds: its own "
            f"retrain references over its seeds), minus {BAND_SLACK:g} point; the target is "
            "every request forgotten and inside, or warned. The band column is retrain's own seed-to-seed "
            "spread of A_R (max - min over seeds, per class). The original's row is the model every step "
            "starts from: a request it already misses (an original far below retrain) no data-free step "
            "can be expected to bring inside; *pushed outside the band* counts the requests a step took "
            "outside although the original was inside, with no warning: the damage the step itself did. "
            "*JS-forget inside retrain's seed band*: on how many requests the Jensen-Shannon divergence of the "
            "step's outputs from retrain's on the forget class's test examples is inside the band of retrain "
            "references of other seeds ([evaluation.md](evaluation.md#retrains-seed-band-and-attacks-without-signal); "
            "n/a: a sweep without band seeds): whether the forget class's outputs look like retrain's, not "
            "only its argmax. "
            "Why the step changed and how its constants were chosen (validation splits only): "
            "[calibration.md](calibration.md).",
            "",
            steps,
        ]
    for summary in summaries:
        hw = summary["hardware"]
        out += [
            f"## {summary['name']}",
            "",
            _setup_line(summary) + ".",
            "",
            "```bash",
            summary["command"],
            "```",
            "",
            table(summary),
            *([paper, ""] if (paper := paper_line(summary)) else []),
            *(["Every metric beside retrain's seed band:", "", band_table(summary)] if summary.get("bands") else []),
            f"Measured on {hw.get('cpu_count')} CPU cores ({hw.get('processor')}), torch {hw.get('torch')}, "
            f"{hw.get('jobs')} worker(s) x {hw.get('torch_threads_per_worker')} thread; its last run took "
            f"{_f((summary.get('wall_seconds') or 0) / 60, 1)} min (models and rows already in the cache are "
            f"loaded, not recomputed; each row's time is its own). "
            f"Source: `docs/results/{summary['name']}.json`.",
            "",
        ]
    return "\n".join(out)


def _scores_every_step(summary: dict) -> bool:
    """The summary has retrain's band and a row for every step of :data:`STEPS` (but the optional ones)."""
    return bool(summary.get("retrain_band_A_R")) and all(
        name in summary["methods"] for name, _ in STEPS if name not in OPTIONAL_STEPS
    )


def _js_inside(m: dict) -> str:
    """Requests whose JS divergence to retrain on the forget class is inside retrain's seed band
    (n/a: a sweep without band seeds)."""
    js = m.get("inside", {}).get("js_forget")
    return f"{js['inside']}/{js['n']}" if js else "n/a"


def steps_table(summaries: list[dict]) -> str:
    """Paper step, v1 and the default calibrated step on every summary that has all three."""
    head = (
        "| setting | step | forgotten (E_F >= 99) | A_R inside retrain's band + 1 | warned | target met "
        "| pushed outside the band | A_R - retrain, mean | A_R - retrain, worst request "
        "| retrain's A_R band (spread, mean / max) | JS-forget inside retrain's seed band |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for summary in filter(_scores_every_step, summaries):
        methods, band = summary["methods"], summary["retrain_band_A_R"]
        for name, what in STEPS:
            if name not in methods:
                continue
            m = methods[name]
            d = m["A_R_minus_retrain"]
            lines.append(
                f"| {summary['name']} | {what} | {m['forgotten']}/{m['n']} | {m['inside_band']}/{m['n']} "
                f"| {m['warned']} | {m['target_met']}/{m['n']} | {m.get('pushed_outside', 0)} "
                f"| {_f(d['mean'])} | {_f(d['worst'])} "
                f"(seed {d['worst_request']['seed']}, class {d['worst_request']['class']}) "
                f"| {_f(band['spread_mean'])} / {_f(band['spread_max'])} | {_js_inside(m)} |"
            )
    return "\n".join(lines) + "\n"


def readme_block(summaries: list[dict]) -> str:
    """The README's one headline table: :data:`HEADLINE_RESULT`, else the first summary by name."""
    if not summaries:
        return f"{README_START}\n(no results yet: run `mnemonic-mu results SWEEP_DIR`)\n{README_END}"
    first = next((x for x in summaries if x["name"] == HEADLINE_RESULT), summaries[0])
    return (
        f"{README_START}\n{_setup_line(first)} ([docs/results.md](docs/results.md); generated by "
        f"`mnemonic-mu results` from `docs/results/{first['name']}.json`, made by `{first['command']}`):\n\n"
        f"{table(first)}\n{band_line(first)}{worst_case_line(summaries)}\n{README_END}"
    )


def band_line(summary: dict) -> str:
    """One generated sentence on retrain's seed band of a summary (empty without a band)."""
    b = summary.get("bands")
    if not b:
        return ""
    m, r = (
        summary["methods"].get("mnemonic", {}).get("inside", {}),
        summary["methods"].get("retrain", {}).get("inside", {}),
    )
    if "A_R" not in m or "A_R" not in r:
        return ""
    quiet = [a for a, v in b["signal"].items() if v["no_signal"]]
    return (
        f"Against retrain's seed band ({b['n_band']} retrain references of other seeds per request, every metric "
        f"in [docs/results.md](docs/results.md)): the default step's A_R is inside on "
        f"{m['A_R']['inside']}/{m['A_R']['n']} requests, retrain's own on {r['A_R']['inside']}/{r['A_R']['n']} "
        f"(expected for another retrain: "
        f"{bands.expected_inside('A_R', b['n_band']):.2f}); attacks with no signal on this setup: "
        f"{', '.join(quiet) if quiet else 'none'}.\n\n"
    )


def worst_case_line(summaries: list[dict]) -> str:
    """The default step's worst request over every committed setting that scored it beside the
    other steps, and how many requests met the target (generated, for the README's claims)."""
    scored = list(filter(_scores_every_step, summaries))
    if not scored:
        return ""
    worst = min(scored, key=lambda x: x["methods"]["mnemonic"]["A_R_minus_retrain"]["worst"])
    w = worst["methods"]["mnemonic"]
    n = sum(x["methods"]["mnemonic"]["n"] for x in scored)
    met = sum(x["methods"]["mnemonic"]["target_met"] for x in scored)
    forgotten = sum(x["methods"]["mnemonic"]["forgotten"] for x in scored)
    pushed = sum(x["methods"]["mnemonic"].get("pushed_outside", 0) for x in scored)
    d = w["A_R_minus_retrain"]
    return (
        f"Over every setting of [docs/results.md](docs/results.md#the-calibrated-step-on-every-setting) "
        f"({len(scored)} sweeps, {n} requests) the default step forgot {forgotten}/{n} requests and met the "
        f"target (forgotten with A_R inside retrain's seed band + 1 point, or a warning) on {met}/{n}; it "
        f"took {pushed} request(s) outside the band that the original was inside. Its worst request is "
        f"{_f(d['worst'])} points of A_R below retrain ({worst['name']}, seed {d['worst_request']['seed']}, "
        f"class {d['worst_request']['class']}).\n"
    )


def load_summaries(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def write_all(root: Path) -> tuple[Path, Path]:
    """Rewrite docs/results.md and README.md's results block from docs/results/*.json."""
    summaries = load_summaries(root / "docs" / "results")
    atomic_write_text(root / "docs" / "results.md", render_results(summaries))
    readme = root / "README.md"
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise ConfigError(f"README.md has no {README_START} ... {README_END} block for the results table")
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.S)
    atomic_write_text(readme, pattern.sub(lambda _: readme_block(summaries), text))
    return root / "docs" / "results.md", readme


def collect(sweep_dir: Path, name: str, root: Path) -> Path:
    path = Path(sweep_dir) / "sweep.json"
    if not path.is_file():
        raise ConfigError(f"{sweep_dir} holds no sweep.json; give the folder a `mnemonic-mu sweep` wrote")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"result name {name!r} may only hold letters, digits, '.', '_' and '-'")
    out = root / "docs" / "results" / f"{name}.json"
    write_json(out, summarise_sweep(json.loads(path.read_text()), name))
    return out


def add_subcommand(sub) -> None:
    p = sub.add_parser(
        "results",
        help="write docs/results.md (and README's table) from sweep outputs",
        description="Summarise sweep folders into docs/results/<name>.json, then rewrite "
        "docs/results.md and README.md's results block from every docs/results/*.json.",
    )
    p.add_argument("sweeps", nargs="*", help="sweep output folders (holding sweep.json)")
    p.add_argument("--name", nargs="*", default=None, help="one result name per folder (default: the folder's name)")
    p.set_defaults(func=_cmd_results)


def _cmd_results(args) -> int:
    root = project_root()
    names = args.name or [Path(d).resolve().name for d in args.sweeps]
    if len(names) != len(args.sweeps):
        raise ConfigError(f"{len(args.sweeps)} sweep folders but {len(names)} names; give one name per folder")
    for folder, name in zip(args.sweeps, names):
        print(f"wrote {collect(Path(folder), name, root)}")
    for path in write_all(root):
        print(f"wrote {path}")
    return 0


__all__ = [
    "band_columns",
    "band_line",
    "fallback_cell",
    "method_order",
    "band_table",
    "collect",
    "command_of",
    "readme_block",
    "render_results",
    "retrain_band_A_R",
    "steps_table",
    "summarise_sweep",
    "table",
    "worst_case_line",
    "write_all",
]
