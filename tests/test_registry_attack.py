"""An attack is one entry of the registry (``mnemonic_mu.algorithms.attacks.ATTACKS``): a toy attack
added by that entry alone is run by default, lands in a sweep's rows and tables, in the results
table, on the report pages and in the CLI help; the docs' and notebook 05's tables are the registry's."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from mnemonic_mu import pipeline
from mnemonic_mu.algorithms import attacks as A
from mnemonic_mu.drivers import pages, results, sweep as S
from mnemonic_mu.drivers.cli import main
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.runtime import setup
from mnemonic_mu.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TOY = "toy loss"


def _toy(seen: A.AttackInput) -> dict[str, float]:
    """The mean per-sample loss of D_f, and how many samples D_f has."""
    return {"value": float(np.mean(seen.train["loss"][seen.forget_train])), "n": float(seen.forget_train.sum())}


TOY_ATTACK = A.Attack(
    TOY,
    "higher = more forgotten; target = retrain's value",
    "mean per-sample cross-entropy of $D_f$",
    _toy,
    "mean loss on $D_f$",
    digits=4,
    extras={"n": "the number of samples of $D_f$"},
)


@pytest.fixture()
def toy(monkeypatch):
    monkeypatch.setitem(A.ATTACKS, TOY, TOY_ATTACK)  # the one edit: a registry entry
    return TOY_ATTACK


def test_a_toy_attack_added_by_one_registry_entry_reaches_every_table(toy, tmp_path, monkeypatch, capsys):
    s = Settings(
        dataset="digits",
        epochs=3,
        lr=0.05,
        threads=1,
        workers=1,
        baselines=(),
        band_seeds=(1000, 1001),
        probe_max_train=300,
        cache_dir=str(tmp_path / "cache"),
    )
    assert s.attacks[-1] == TOY and Settings().attacks == tuple(A.ATTACKS)  # the default is every registered attack
    result = S.run_sweep(s, classes=(1,), seeds=(0,), out_dir=str(tmp_path / "sweep"))

    # the sweep's rows: every row (band references too) carries the toy's value and its extra
    for row in result["rows"] + result["band_rows"]:
        entry = row["attacks"][TOY]
        assert entry["direction"] == toy.direction and entry["std"] is None and entry["n"] > 0
        assert np.isfinite(entry["value"]) and entry["value"] > 0
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {"original", "no_codes", "retrain", "mnemonic"}
    # retrain never saw class 1: its loss there is far above the original's, which trained on it
    assert rows["retrain"]["attacks"][TOY]["value"] > 2 * rows["original"]["attacks"][TOY]["value"]
    # the value is the recipe's: recomputed from the cached original
    data = pipeline.load_data(s)
    request = s.replace(forget_classes=(1,))
    original = pipeline.train_models(request, data, ("original",), setup(request))["original"][0].model
    x, y = data.split("train")
    forget = (y == 1).numpy()
    expected = float(np.mean(A.sample_statistics(original, x, y)["loss"][forget]))
    assert rows["original"]["attacks"][TOY]["value"] == expected
    assert rows["original"]["attacks"][TOY]["n"] == forget.sum()
    # summary, band and signal: the toy is a band metric like the others
    assert {"mean", "std", "worst_class", "worst"} <= set(result["summary"]["original"][TOY])
    assert result["bands"]["stats"][TOY]["n"] == 2 and TOY in result["bands"]["signal"]

    # sweep.md: a column with the registry's 4 decimals, its direction and its extra
    _, md = S.write_sweep(result, tmp_path / "sweep")
    text = md.read_text()
    head = next(line for line in text.splitlines() if line.startswith("| method |"))
    assert f"| {TOY} |" in head
    assert f"{result['summary']['original'][TOY]['mean']:.4f} +- " in text
    assert f"- {TOY}: {toy.direction}." in text
    assert f"- {TOY} `n`, the number of samples of $D_f$, mean over the rows: {float(forget.sum()):.4f}." in text

    # the results table (docs/results.md): a column beside retrain's band
    summary = results.summarise_sweep(result, "toy")
    table = results.band_table(summary)
    assert TOY in table.splitlines()[0]
    assert f"{summary['methods']['original']['metrics'][TOY]:.4f} (" in table
    assert TOY in results.render_results([summary])

    # the report pages: read with the registry's decimals
    status, why = pages.attack_status({"methods": rows}, "mnemonic", TOY)
    assert status in ("inside", "outside") and f"of retrain's {rows['retrain']['attacks'][TOY]['value']:.4f}" in why

    # the CLI help of every command that takes --attacks lists it in the default
    monkeypatch.setenv("COLUMNS", "1000")
    for command in ("sweep", "experiment"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        option = help_text[help_text.index("--attacks V [V ...] attacks scored per row") :]
        listed = re.search(r"\(default ([^)]*)\)", option)
        assert listed and listed.group(1).endswith("linear probe toy loss"), command


def test_docs_protocol_table_is_the_registrys_and_notebook_05_prints_it():
    doc = (ROOT / "docs" / "protocol.md").read_text()
    block = doc.split(A.TABLE_START, 1)[1].split(A.TABLE_END, 1)[0]
    assert block == "\n" + A.markdown_table(), (
        "docs/protocol.md's attack table is stale: put the output of `python -c 'from mnemonic_mu.algorithms."
        'attacks import markdown_table; print(markdown_table(), end="")\'` between its attacks markers'
    )
    cells = nbformat.read(ROOT / "notebooks" / "05_membership_evaluation.ipynb", as_version=4).cells
    assert any("markdown_table(" in c.source for c in cells if c.cell_type == "code")
    assert not any("| attack |" in c.source for c in cells if c.cell_type == "markdown")  # no hand-kept copy


def test_the_table_shows_a_new_entry(toy):
    assert f"| `{TOY}` | mean per-sample cross-entropy of $D_f$ | mean loss on $D_f$ | " in A.markdown_table()
    assert A.markdown_table(["attack", "direction"]).splitlines()[-1] == (
        f"| `{TOY}` | {toy.direction}; also reports `n`: the number of samples of $D_f$ |"
    )
    with pytest.raises(ConfigError, match="unknown column 'good'"):
        A.markdown_table(["attack", "good"])


def test_an_unknown_attack_is_one_clear_error():
    with pytest.raises(ConfigError, match="unknown attack 'lira'; choose from entropy-LR, .*linear probe"):
        A.run_attacks(None, None, None, [0], attacks=["lira"])
    with pytest.raises(ConfigError, match="unknown attack 'lira'"):
        Settings(attacks=("entropy-LR", "lira"))
    with pytest.raises(ConfigError, match="scale must be one of fraction, nats"):
        A.Attack("x", "d", "r", _toy, "v", scale="percent")
