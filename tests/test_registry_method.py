"""A method is one entry of the registry (``mnemonic_mu.algorithms.methods.METHODS``): a toy method
added by that entry alone lands in a sweep's rows and tables, in the results tables, on the report
page and in the CLI help, with the settings its entry names; docs/baselines.md's table and notebook
07's are the registry's."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
import torch

from mnemonic_mu import pipeline
from mnemonic_mu.algorithms import methods as M
from mnemonic_mu.algorithms.method_api import MethodResult, Timer, UnlearnData, need_data, val_score
from mnemonic_mu.drivers import pages, results, sweep as S
from mnemonic_mu.drivers.cli import main
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.io import store
from mnemonic_mu.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TOY = "toy_head"
LAST = list(M.METHODS)[-1]  # the registry's last method (the toy is added after it)


def _toy(model, codes, forget_classes, data=None, seed=0, *, offsets, lambda1):
    """Add each of ``offsets`` to the forget classes' output biases; keep the one with the best
    validation A_R + E_F.  ``lambda1`` is a setting it takes as its own (recorded, nothing else)."""
    data = need_data(TOY, data)
    search, best = [], None
    with Timer() as t:
        for offset in offsets:
            cand = copy.deepcopy(model)
            with torch.no_grad():
                cand.head.bias[list(forget_classes)] += offset
            score = val_score(cand, data, forget_classes)
            search.append({"offset": offset, "val_score": score})
            if best is None or score > best[0]:
                best = (score, cand, offset)
    assert best is not None
    return MethodResult(best[1], t.seconds, 1, {"offset": best[2], "lambda1": lambda1}, search)


def _anything(*args, **options):
    raise AssertionError("never called")


TOY_METHOD = M.Method(
    TOY,
    _toy,
    "validation split",
    "push the forget classes' output biases down",
    source="a test",
    grid={"offsets": (-1000.0, 0.0)},
    settings=("lambda1",),
    backward_passes="none",
)


@pytest.fixture()
def toy(monkeypatch):
    monkeypatch.setitem(M.METHODS, TOY, TOY_METHOD)  # the one edit: a registry entry
    return TOY_METHOD


@pytest.mark.slow  # a sweep: five digits models
def test_a_toy_method_added_by_one_registry_entry_reaches_every_table(toy, tmp_path, monkeypatch, capsys):
    assert Settings().baselines[-1] == TOY and Settings().baselines == M.baseline_names()  # the default: all
    s = Settings(
        dataset="digits",
        epochs=3,
        lr=0.05,
        threads=1,
        workers=1,
        baselines=(TOY,),
        band_seeds=(1000, 1001),
        lambda1=2e-3,
        probe_max_train=300,
        cache_dir=str(tmp_path / "cache"),
    )
    result = S.run_sweep(s, classes=(1,), seeds=(0,), out_dir=str(tmp_path / "sweep"))

    # the sweep's rows: the toy's row, from the model its entry names, with its own setting
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {"original", "no_codes", "retrain", "mnemonic", TOY}
    row = rows[TOY]
    assert row["input_model"] == "original" and row["chosen"] == {"offset": -1000.0, "lambda1": 2e-3}
    # lowering the forget class's logits forgets it and can only help the remaining classes, so the
    # first offset wins whatever the training did (first on ties)
    assert row["E_F"] == 100.0 and row["A_R"] >= rows["original"]["A_R"]
    # its cached rows are keyed by its entry's version
    assert pipeline.row_components(TOY)[-1] == f"method:{TOY}"
    assert store.versions(f"method:{TOY}")[f"method:{TOY}"] == toy.version
    assert result["summary"][TOY]["n_runs"] == 1 and TOY in result["bands"]["inside"]

    # sweep.md: the toy's rows with what it sees
    _, md = S.write_sweep(result, tmp_path / "sweep")
    text = md.read_text()
    assert len(re.findall(rf"^\| {TOY} \| validation split \| ", text, flags=re.M)) == 2  # mean and worst class
    assert "| mnemonic | nothing | " in text and "| *retrain* | retain samples | " in text

    # the results tables (docs/results.md): a row with what it sees, in the table and beside retrain's band
    summary = results.summarise_sweep(result, "toy")
    assert f"| {TOY} | validation split | 1/1 | " in results.table(summary)
    assert f"| {TOY} | validation split | " in results.band_table(summary)
    assert f"| {TOY} | validation split |" in results.render_results([summary])

    # the report page: a summary row with what it sees
    page = pages.index_html("run", "ci", s.to_dict(), {"methods": rows}, {}, 1.0, tmp_path)
    assert re.search(rf"<td>{TOY}</td><td>validation split</td>", page)

    # the CLI help of every command that takes --baselines names it in the default
    monkeypatch.setenv("COLUMNS", "1000")
    for command in ("sweep", "experiment"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        option = help_text[help_text.index("--baselines V [V ...] methods scored beside the mnemonic step") :]
        listed = re.search(r"\(default ([^)]*)\)", option)
        assert listed and listed.group(1) == " ".join(M.baseline_names()), command
        # the toy last, after the registered baselines (fisher_forgetting among them, methods appended after it)
        names = listed.group(1).split()
        assert names[-1] == TOY and names.index("fisher_forgetting") < len(names) - 1, command


def test_the_entrys_settings_reach_the_function(toy, tiny_trained, tiny_dataset, monkeypatch):
    model, codes = tiny_trained
    s = Settings(dataset="synthetic", forget_classes=(1,), lambda1=5e-3)
    models = {"original": SimpleNamespace(model=model, codes=codes)}
    result = pipeline.run_method(TOY, s, tiny_dataset, models)  # type: ignore[arg-type]
    assert result.chosen["lambda1"] == 5e-3 and [c["offset"] for c in result.search] == [-1000.0, 0.0]
    # options given by a caller override the entry's grid
    alone = M.unlearn(TOY, model, codes, [1], UnlearnData.from_dataset(tiny_dataset, [1]), lambda1=1.0, offsets=(-7.0,))
    assert alone.chosen == {"offset": -7.0, "lambda1": 1.0}
    # an entry naming a setting that does not exist: one clear error
    wrong = M.Method(TOY, _anything, "validation split", "d", settings=("lambda9",))
    monkeypatch.setitem(M.METHODS, TOY, wrong)
    with pytest.raises(ConfigError, match="method 'toy_head' takes the setting 'lambda9', which Settings does not"):
        pipeline.run_method(TOY, s, tiny_dataset, models)  # type: ignore[arg-type]


def test_an_unknown_method_is_one_clear_error(tiny_trained):
    model, codes = tiny_trained
    # the whole list, in registry order (mnemonic_tuned first, fisher_forgetting among them), so a
    # method appended to the registry keeps this test
    assert M.baseline_names()[0] == "mnemonic_tuned" and "fisher_forgetting" in M.baseline_names()
    with pytest.raises(
        ConfigError,
        match=f"unknown baseline 'lira'; choose from {re.escape(', '.join(M.method_choices()))} " r"\(or none\)",
    ):
        Settings(baselines=("finetune", "lira"))
    # an opt-in method (not among the default baselines) is still a choice
    opt_in = [n for n in M.method_choices() if not M.METHODS[n].default]
    assert opt_in and not set(opt_in) & set(Settings().baselines)
    assert Settings(baselines=tuple(opt_in)).baselines == tuple(opt_in)
    with pytest.raises(ConfigError, match="retrain is always the reference row"):
        Settings(baselines=("retrain",))
    assert list(M.METHODS)[0] == "mnemonic_tuned" and "fisher_forgetting" in M.METHODS
    with pytest.raises(ConfigError, match=f"unknown method 'lira'; choose one of {re.escape(', '.join(M.METHODS))}$"):
        M.unlearn("lira", model, codes, [0])
    with pytest.raises(ConfigError, match="unknown method 'lira'"):
        pipeline.run_method("lira", Settings(), None, {})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="sees must be one of nothing, validation split, forget samples"):
        M.Method("x", _toy, "the test split", "d")
    with pytest.raises(ConfigError, match="input_model must be one of original, no_codes"):
        M.Method("x", _toy, "nothing", "d", input_model="retrain")
    with pytest.raises(ConfigError, match="method 'x': its function takes no argument 'alphas'"):
        M.Method("x", _toy, "nothing", "d", grid={"alphas": (1.0,)})


def test_docs_baselines_table_is_the_registrys_and_notebook_07_shows_it():
    doc = (ROOT / "docs" / "baselines.md").read_text()
    block = doc.split(M.TABLE_START, 1)[1].split(M.TABLE_END, 1)[0]
    assert block == "\n" + M.markdown_table() + "\n" + M.sees_table(), (
        "docs/baselines.md's method table is stale: put the output of `python -c 'from mnemonic_mu.algorithms."
        'methods import markdown_table, sees_table; print(markdown_table() + "\\n" + sees_table(), end="")\'` '
        "between its methods markers"
    )
    cells = nbformat.read(ROOT / "notebooks" / "07_comparison.ipynb", as_version=4).cells
    assert any("markdown_table(" in c.source for c in cells if c.cell_type == "code")
    assert not any("| method |" in c.source for c in cells)  # no hand-kept copy


def test_the_table_shows_a_new_entry(toy):
    assert M.markdown_table().splitlines()[-1] == (
        f"| `{TOY}` | validation split | original | `offsets` {{-1000, 0}}; its settings `lambda1` | none | 1 | yes "
        "| push the forget classes' output biases down | a test |"
    )
    assert M.markdown_table(["method", "sees"]).splitlines()[-1] == f"| `{TOY}` | validation split |"
    with pytest.raises(ConfigError, match="unknown column 'good'"):
        M.markdown_table(["method", "good"])


def test_the_opt_in_methods_cost_what_the_docs_say():
    """docs/baselines.md: the opt-in methods' rows of the committed mnist5k-laptop sweep together
    take longer per request than the retrain reference (why they are not default baselines); every
    opt-in method is in that sweep."""
    result = (Path(__file__).resolve().parents[1] / "docs" / "results" / "mnist5k-laptop.json").read_text()
    methods = json.loads(result)["methods"]
    opt_in = [n for n in M.method_choices() if not M.METHODS[n].default]
    assert set(opt_in) <= set(methods)
    assert sum(methods[n]["seconds"]["mean"] for n in opt_in) > methods["retrain"]["seconds"]["mean"]
