"""A dataset is one entry of the registry (``mnemonic_mu.io.data.DATASETS``): a toy dataset added by
that entry alone (4 classes of 1x6x6 generated images) loads, is checked by the settings against its
own class count, runs in a sweep, lands in the sweep's and the results tables and in the CLI help;
docs/protocol.md's dataset table is the registry's, and no page keeps a hand-written list."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch

from mnemonic_mu import settings as settings_module
from mnemonic_mu.defaults import comments
from mnemonic_mu.drivers import results, sweep as S
from mnemonic_mu.drivers.cli import main
from mnemonic_mu.errors import ConfigError, DataError
from mnemonic_mu.io import data as D
from mnemonic_mu.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TOY = "toy4"


def _toy_loader(root: Path, download: bool, seed: int) -> D.Source:
    """4 classes of 1x6x6 prototypes plus noise, 80 per class (the synthetic helper's)."""
    return D.Source(*D.synthetic_pool(4, (1, 6, 6), 80, 0.3, seed))


TOY_SPEC = D.DatasetSpec(
    _toy_loader,
    "4 generated classes of 6x6 images",
    4,
    (1, 6, 6),
    "generated (`synthetic_pool`)",
    "the kit's (MIT)",
    offline=True,
)


@pytest.fixture()
def toy(monkeypatch):
    monkeypatch.setitem(D.DATASETS, TOY, TOY_SPEC)  # the one edit: a registry entry
    return TOY_SPEC


def test_a_toy_dataset_loads_through_its_entry(toy):
    ds = D.load_dataset(TOY, split_seed=3)
    assert ds.name == TOY and ds.num_classes == 4 and ds.input_shape == (1, 6, 6) and ds.augment == "none"
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (224, 32, 64)  # stratified 70 / 10 / 20 % of 320
    assert torch.bincount(ds.y_test).tolist() == [16] * 4
    x, y = D.synthetic_pool(4, (1, 6, 6), 80, 0.3, 3)  # the loader's pool, split by the kit
    assert torch.equal(ds.x_train, x[ds.train_index]) and torch.equal(ds.y_test, y[ds.test_index])
    assert toy.classes() == 4 and toy.shape() == (1, 6, 6) and toy.options == {}
    with pytest.raises(ConfigError, match=f"dataset '{TOY}' has no option 'num_classes'; it takes none"):
        D.load_dataset(TOY, num_classes=3)


def test_settings_check_forget_classes_against_the_registrys_class_count(toy):
    assert Settings(dataset=TOY, forget_classes=(3,)).forget_classes == (3,)
    with pytest.raises(
        ConfigError,
        match=f"^dataset '{TOY}': forget class 4 is outside this dataset's classes "
        r"0\.\.3$",
    ):
        Settings(dataset=TOY, forget_classes=(4,))
    with pytest.raises(ConfigError, match=r"cannot forget every class \(4\)"):
        Settings(dataset=TOY, forget_classes=(0, 1, 2, 3))
    # the other datasets: their own counts (synthetic: its num_classes option's default, what Settings loads)
    assert Settings(dataset="digits", forget_classes=(9,)).forget_classes == (9,)
    for name in ("digits", "synthetic"):
        with pytest.raises(ConfigError, match=f"dataset '{name}': forget class 10 is outside .* 0\\.\\.9"):
            Settings(dataset=name, forget_classes=(10,))
    # a sweep's default classes are every class of its dataset
    assert S.check_plan(Settings(dataset=TOY), None, (0,), 1)[0] == (0, 1, 2, 3)
    assert S.check_plan(Settings(dataset="digits"), None, (0,), 1)[0] == tuple(range(10))


def test_a_toy_dataset_added_by_one_registry_entry_reaches_the_sweep_results_and_cli(
    toy, tmp_path, monkeypatch, capsys
):
    s = Settings(
        dataset=TOY,
        epochs=10,
        batch_size=16,
        lr=0.02,
        threads=1,
        workers=1,
        baselines=(),
        band_seeds=(1000,),
        cache_dir=str(tmp_path / "cache"),
    )
    result = S.run_sweep(s, classes=(1,), seeds=(0,), out_dir=str(tmp_path / "sweep"))

    # the sweep's rows: the toy's settings, its 4 classes and its forget class in every row
    assert result["settings"]["dataset"] == TOY and result["classes"] == [1]
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {"original", "no_codes", "retrain", "mnemonic"}
    for row in result["rows"] + result["band_rows"]:
        assert row["forget_class"] == 1 and len(row["per_class_accuracy"]) == 4
        assert 0 <= row["A_R"] <= 100 and 0 <= row["E_F"] <= 100
    assert len(result["band_rows"]) == 1
    # the toy is learnable (its classes are separable): the original learned class 1, retrain never saw it
    assert rows["original"]["E_F"] <= 50 and rows["retrain"]["E_F"] >= 90

    # sweep.md names the dataset
    _, md = S.write_sweep(result, tmp_path / "sweep")
    assert f"dataset {TOY}," in md.read_text()

    # the results table (docs/results.md): its section, setup line and command
    summary = results.summarise_sweep(result, "toy")
    assert summary["settings"]["dataset"] == TOY and set(summary["methods"]) >= {"original", "mnemonic"}
    assert f"--dataset {TOY} " in summary["command"]
    assert "original" in results.band_table(summary)
    page = results.render_results([summary])
    assert "## toy" in page and f"\n{TOY}, mlp, 10 epochs," in page and f"--dataset {TOY} " in page

    # the CLI: the help of every command that takes --dataset lists it, and `datasets` shows it
    monkeypatch.setenv("COLUMNS", "1000")
    for command in ("sweep", "experiment"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        option = help_text[help_text.index("--dataset STR a dataset") :]
        listed = re.search(
            r"\(`mnemonic-mu datasets`, docs/protocol.md#datasets\): ([^(]*) \(default mnist5k\)", option
        )
        assert listed and listed.group(1).split(", ") == list(D.DATASETS), command
        assert listed.group(1).endswith(f"synthetic_pairs, {TOY}")
    assert main(["datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["dataset", "classes", "input", "data", "what"]
    assert [line.split()[:4] for line in lines if line.startswith(TOY)] == [[TOY, "4", "1x6x6", "offline"]]
    assert [line.split()[:3] for line in lines if line.startswith("synthetic ")] == [["synthetic", "10*", "1x8x8*"]]
    assert main(["datasets", "--markdown"]) == 0
    assert capsys.readouterr().out == D.markdown_table()


def test_the_table_shows_a_new_entry(toy):
    table = D.markdown_table()
    assert table.splitlines()[-1] == (
        f"| `{TOY}` | 4 generated classes of 6x6 images | 4 | 1x6x6 | stratified 70% / 10% / 20% train / val / test "
        "| yes | generated (`synthetic_pool`) | the kit's (MIT) |"
    )
    synthetic = next(line for line in table.splitlines() if line.startswith("| `synthetic` | "))
    assert "| option `num_classes` (default 10) | option `shape` (default 1x8x8) |" in synthetic
    assert D.markdown_table(["dataset", "classes"]).splitlines()[-1] == f"| `{TOY}` | 4 |"
    with pytest.raises(ConfigError, match="unknown column 'size'"):
        D.markdown_table(["dataset", "size"])


def test_docs_protocol_table_is_the_registrys_and_no_page_keeps_a_list():
    doc = (ROOT / "docs" / "protocol.md").read_text()
    block = doc.split(D.TABLE_START, 1)[1].split(D.TABLE_END, 1)[0]
    assert block == "\n" + D.markdown_table(), (
        "docs/protocol.md's dataset table is stale: put the output of `mnemonic-mu datasets --markdown` between "
        "its datasets markers"
    )
    names = list(D.DATASETS)
    # the settings' comment (CLI help, docs/settings.md), the README and the module docstring name no list of them
    assert not any(n in comments()["dataset"] for n in names)
    readme = (ROOT / "README.md").read_text()
    assert sum(f"`{n}`" in readme for n in names) <= 1, "the README lists datasets: point to docs/protocol.md"
    assert sum(f"``{n}``" in (D.__doc__ or "") for n in names) == 0
    # and the settings module's validation has no class count of its own
    assert "10**9" not in inspect.getsource(settings_module._validate)


def test_an_entry_is_checked():
    with pytest.raises(ConfigError, match="num_classes=None needs a loader option 'num_classes'"):
        D.DatasetSpec(_toy_loader, "d", None, (1, 6, 6), "s", "l", offline=True)
    with pytest.raises(ConfigError, match="input_shape=None needs a loader option 'shape'"):
        D.DatasetSpec(_toy_loader, "d", 4, None, "s", "l", offline=True)
    with pytest.raises(ConfigError, match="unknown augment 'mixup'"):
        D.DatasetSpec(_toy_loader, "d", 4, (1, 6, 6), "s", "l", offline=True, augment="mixup")


def test_a_loader_that_breaks_its_entry_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(D.DATASETS, "wrong shape", D.DatasetSpec(_toy_loader, "d", 4, (1, 8, 8), "s", "l", True))
    with pytest.raises(DataError, match=r"dataset 'wrong shape' has inputs of shape \(1, 6, 6\), not \(1, 8, 8\)"):
        D.load_dataset("wrong shape")
    monkeypatch.setitem(D.DATASETS, "few classes", D.DatasetSpec(_toy_loader, "d", 3, (1, 6, 6), "s", "l", True))
    with pytest.raises(DataError, match=r"dataset 'few classes' has labels outside 0\.\.2"):
        D.load_dataset("few classes")
    monkeypatch.setitem(
        D.DATASETS, "no test", D.DatasetSpec(_toy_loader, "d", 4, (1, 6, 6), "s", "l", True, test_split=True)
    )
    with pytest.raises(ConfigError, match="dataset 'no test': its loader's test split does not match"):
        D.load_dataset("no test")
    with pytest.raises(
        ConfigError,
        match="dataset 'synthetic' has no option 'size'; its options are num_classes, shape, n_per_class, noise",
    ):
        D.load_dataset("synthetic", size=3)
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'; choose one of mnist5k, digits"):
        D.load_dataset("imagenet")
