"""The docs' result tables are generated from committed summaries, never typed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mnemonic_mu.drivers import results as R, sweep as S
from mnemonic_mu.drivers.pages import summary_rows
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_committed_tables_are_what_the_committed_summaries_give():
    summaries = R.load_summaries(ROOT / "docs" / "results")
    assert summaries, "docs/results/ holds no summary"
    assert (ROOT / "docs" / "results.md").read_text() == R.render_results(summaries), (
        "docs/results.md is stale: run `mnemonic-mu results`"
    )
    readme = (ROOT / "README.md").read_text()
    assert R.readme_block(summaries) in readme, "README.md's results table is stale: run `mnemonic-mu results`"
    for summary in summaries:
        assert summary["command"].startswith("mnemonic-mu sweep ")
        for method, m in summary["methods"].items():
            assert 0 <= m["forgotten"] <= m["n"] and 0 <= m["A_R"]["mean"] <= 100, method
        assert summary["methods"]["retrain"]["A_R_minus_retrain"]["mean"] == 0


@pytest.mark.slow  # a sweep of two classes
def test_summary_of_a_real_sweep_and_its_command(tmp_path):
    s = Settings(
        dataset="digits",
        epochs=3,
        lr=0.05,
        baselines=("mnemonic_paper",),
        probe_max_train=300,
        cache_dir=str(tmp_path / "cache"),
    )
    result = S.run_sweep(s, classes=(0, 3), seeds=(0,), out_dir=str(tmp_path / "sweep"))
    S.write_sweep(result, tmp_path / "sweep")
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text(f"# x\n\n{R.README_START}\nold\n{R.README_END}\n\nend\n")
    out = R.collect(tmp_path / "sweep", "digits-tiny", root)
    summary = json.loads(out.read_text())
    rows = [r for r in result["rows"] if r["method"] == "mnemonic_paper"]
    retrain = {r["forget_class"]: r["A_R"] for r in result["rows"] if r["method"] == "retrain"}
    m = summary["methods"]["mnemonic_paper"]
    assert m["n"] == 2 and m["forgotten"] == sum(r["E_F"] >= 99 for r in rows)
    deltas = [r["A_R"] - retrain[r["forget_class"]] for r in rows]
    assert m["A_R_minus_retrain"]["mean"] == pytest.approx(sum(deltas) / 2)
    assert m["A_R_minus_retrain"]["worst"] == pytest.approx(min(deltas))
    # the command reproduces the settings: the options that differ from the laptop profile
    words = summary["command"].split()
    assert words[:2] == ["mnemonic-mu", "sweep"]
    for option in (
        "--dataset",
        "digits",
        "--epochs",
        "3",
        "--lr",
        "0.05",
        "--baselines",
        "mnemonic_paper",
        "--probe-max-train",
        "300",
        "--classes",
        "0",
        "--seeds",
    ):
        assert option in words, option
    md, readme = R.write_all(root)
    text = readme.read_text()
    assert "old" not in text and text.endswith("\nend\n") and "| mnemonic_paper |" in text
    assert "## digits-tiny" in md.read_text() and summary["command"] in md.read_text()
    with pytest.raises(ConfigError, match="no sweep.json"):
        R.collect(tmp_path, "x", root)
    assert re.search(r"forgotten \(E_F >= 99\)", R.table(summary))


def test_the_readme_quick_start_output_is_its_committed_json():
    """The README's quick-start block is generated, never typed: exactly what `mnemonic-mu experiment
    --forget 0` prints for the committed result, and the time the committed first_touch benchmark
    measured (regenerate with `python benchmarks/run.py --write-first-touch-docs`)."""
    import sys

    sys.path.insert(0, str(ROOT))  # the benchmarks/ helpers
    from benchmarks.items import (
        FIRST_TOUCH_SOURCE,
        QUICKSTART_MARKERS,
        QUICKSTART_SOURCE,
        SCORING_DOCS,
        first_touch_section,
        readme_quickstart,
    )

    readme = (ROOT / "README.md").read_text()
    start, end = QUICKSTART_MARKERS
    block = readme[readme.index(start) + len(start) : readme.index(end)].strip("\n")
    result = json.loads(QUICKSTART_SOURCE.read_text())
    assert block == readme_quickstart(result, json.loads(FIRST_TOUCH_SOURCE.read_text()))
    # and that result is the quick start's: class 0 of mnist5k, the step beside retrain and its band
    assert result["settings"]["forget_classes"] == [0] and result["settings"]["dataset"] == "mnist5k"
    assert list(result["rows"]) == ["original", "retrain", "mnemonic"] and len(result["band_rows"]) == 4
    assert result["timing"]["trained"] == 6  # from an empty cache
    bench = json.loads(FIRST_TOUCH_SOURCE.read_text())
    assert first_touch_section(bench) in SCORING_DOCS.read_text(), "docs/performance.md: --write-first-touch-docs"
    assert all(r["returncode"] == 0 for item in bench["items"].values() for r in item["runs"])


def _row(method, seed, cls, a_r, e_f, warnings=()):
    return {"method": method, "seed": seed, "forget_class": cls, "A_R": a_r, "E_F": e_f, "warnings": list(warnings)}


def test_retrain_band_and_the_steps_table_on_hand_made_rows():
    """Band = per class min/max/spread of retrain's A_R over seeds; inside = A_R >= min - 1."""
    rows = [
        _row("retrain", 0, 0, 90.0, 100.0),
        _row("retrain", 1, 0, 91.5, 100.0),
        _row("retrain", 0, 1, 80.0, 100.0),
        _row("retrain", 1, 1, 80.5, 100.0),
    ]
    band = R.retrain_band_A_R(rows)
    assert band["per_class"]["0"] == {"min": 90.0, "max": 91.5, "spread": 1.5, "n_seeds": 2}
    assert band["spread_mean"] == pytest.approx(1.0) and band["spread_max"] == pytest.approx(1.5)
    step_rows = {
        # inside (89.0 >= 90 - 1), forgotten | outside (88.9), forgotten, silent | outside but warned
        "mnemonic": [
            _row("mnemonic", 0, 0, 89.0, 100.0),
            _row("mnemonic", 1, 0, 88.9, 100.0),
            _row("mnemonic", 0, 1, 70.0, 100.0, ["w"]),
            _row("mnemonic", 1, 1, 81.0, 98.0),
        ],
    }
    for name in ("original", "mnemonic_paper", "mnemonic_calibrated_v1"):
        step_rows[name] = [_row(name, r["seed"], r["forget_class"], r["A_R"], r["E_F"]) for r in rows]
    all_rows = rows + [r for rs in step_rows.values() for r in rs]
    summary_entry = {"reference": False, **{m: {"mean": 0, "std": 0, "worst": 0, "worst_class": 0} for m in R.HEADLINE}}
    result = {
        "rows": all_rows,
        "summary": {m: summary_entry for m in ("retrain", *step_rows)},
        "settings": Settings().to_dict(),
        "classes": [0, 1],
        "seeds": [0, 1],
    }
    summary = R.summarise_sweep(result, "hand-made")
    m = summary["methods"]["mnemonic"]
    assert (m["forgotten"], m["inside_band"], m["warned"], m["target_met"]) == (3, 2, 1, 2)
    assert summary["methods"]["mnemonic_paper"]["target_met"] == 4  # retrain's own rows: all inside
    table = R.steps_table([summary])
    assert "| hand-made | calibrated step (the default) | 3/4 | 2/4 | 1 | 2/4 |" in table
    assert "| 1.00 / 1.50 |" in table
    assert R.steps_table([{**summary, "methods": {"mnemonic": m}}]).count("\n") == 2  # needs every step
    line = R.worst_case_line([summary])
    assert "(1 sweeps, 4 requests) the default step forgot 3/4" in line and "on 2/4" in line
    assert m["pushed_outside"] == 1 and "took 1 request(s) outside" in line  # (1, 0): 88.9 < 89, original inside
    assert "worst request is -10.00 points" in line and "seed 0, class 1" in line


@pytest.mark.slow
def test_the_readme_python_lines_run_and_forget(capsys):
    """The README's few lines of Python run as they stand and the step forgets class 0 (E_F 100
    on every one of the 30 mnist5k requests of docs/results.md: E_F >= 99 holds with margin)."""
    readme = (ROOT / "README.md").read_text()
    quick = readme[readme.index("## Quick start") : readme.index("## Notebooks")]
    (code,) = re.findall(r"```python\n(.*?)```", quick, flags=re.S)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    m = re.fullmatch(r"A_R (\d+\.\d\d)  E_F (\d+\.\d\d)  \((\d+) backward passes\)\n", printed)
    assert m, printed
    a_r, e_f, passes = float(m[1]), float(m[2]), int(m[3])
    assert e_f >= 99 and 50 < a_r <= 100 and passes == 10


def test_the_table_groups_methods_by_what_they_see_and_counts_fallbacks():
    """Issue 25: the methods grouped by what they see (least data first, the step first among the
    data-free ones), and a row says on how many requests its selection rule fell back."""
    seeds = [(0, 0), (1, 0), (0, 1)]
    rows = [
        _row(m, s, c, 90.0, 100.0)
        for m in ("retrain", "ssd", "finetune", "mnemonic_paper", "mnemonic")
        for s, c in seeds
    ]
    tiers = iter(["target", "retain budget", "least damage"])
    for r in rows:
        if r["method"] == "ssd":  # the rule's tier, as baselines._Chooser.info() records it
            r["info"] = {"selection": next(tiers)}
    entry = {m: {"mean": 0, "std": 0, "worst": 0, "worst_class": 0} for m in R.HEADLINE}
    result = {
        "rows": rows,
        "summary": {
            m: {"reference": m == "retrain", **entry}
            for m in ("retrain", "ssd", "finetune", "mnemonic_paper", "mnemonic")
        },
        "settings": Settings().to_dict(),
        "classes": [0, 1],
        "seeds": [0, 1],
    }
    summary = R.summarise_sweep(result, "grouped")
    assert summary["methods"]["ssd"]["selection"] == {"target": 1, "retain budget": 1, "least damage": 1}
    assert "selection" not in summary["methods"]["finetune"]  # chosen by A_R + E_F, not by the rule
    # references, then nothing (the step first), then retain samples, then forget and retain samples
    assert R.method_order(summary["methods"]) == ["retrain", "mnemonic", "mnemonic_paper", "finetune", "ssd"]
    lines = R.table(summary).splitlines()
    assert lines[0].endswith("| time (s) | selection fell back |")
    assert [line.split(" | ")[0] for line in lines[2:]] == [
        "| *retrain*",
        "| mnemonic",
        "| mnemonic_paper",
        "| finetune",
        "| ssd",
    ]
    assert lines[-1].endswith("| 2/3 (retain budget 1, least damage 1) |")
    assert lines[-2].endswith("| - |") and lines[2].endswith("| - |")
    old = {**summary["methods"]["ssd"]}
    del old["selection"]
    assert R.fallback_cell("ssd", old) == "n/a" and R.fallback_cell("finetune", old) == "-"  # made before the tally


def test_the_report_page_lists_methods_grouped_by_what_they_see():
    """The run page's summary table: the trained models and retrain first, in their order, then
    every method by what it sees (the least data first; the kit's step first among those that see
    nothing), whatever order the summary holds them in."""
    order = [
        "ssd",
        "original",
        "finetune",
        "zero_shot_emmn",
        "retrain",
        "jit",
        "no_codes",
        "mnemonic_paper",
        "mnemonic",
    ]
    names = [name for name, _ in summary_rows({"methods": {n: {} for n in order}})]
    assert names == [
        "original",
        "no_codes",
        "retrain",
        "mnemonic",
        "zero_shot_emmn",
        "mnemonic_paper",
        "jit",
        "finetune",
        "ssd",
    ]
