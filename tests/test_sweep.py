"""A tiny sweep end to end: rows for every method and reference, the summary, the tables, the CLI.

The sweeps are slow tests; the checks of a plan and the band arithmetic on hand-made rows are fast."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mnemonic_mu.algorithms.attacks import ATTACKS, epsilon_vs_retrain, sample_statistics
from mnemonic_mu.drivers import sweep as S
from mnemonic_mu.drivers.cli import main
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.settings import Settings

METHODS = ("mnemonic_paper", "finetune", "ssd", "ours_with_data")
ROWS = {"mnemonic", *METHODS, *S.REFERENCES}


def _tiny_settings(tmp) -> Settings:
    return Settings(
        dataset="digits",
        epochs=3,
        lr=0.05,
        threads=1,
        cache_dir=str(tmp / "cache"),
        baselines=METHODS,
        probe_max_train=300,
    )


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    s = _tiny_settings(tmp)
    result = S.run_sweep(s, classes=(0, 1), seeds=(0,), out_dir=str(tmp / "out"))
    return s, result


@pytest.mark.slow  # the tiny sweep: two classes, four baselines, band retrains
def test_rows_and_summary(tiny_sweep):
    s, result = tiny_sweep
    names = {r["method"] for r in result["rows"]}
    assert names == ROWS
    assert len(result["rows"]) == 2 * len(ROWS)
    for r in result["rows"]:
        assert set(r["attacks"]) == set(ATTACKS)
        assert r["gap"] >= 0 and r["seconds"] > 0
    retrain = [r for r in result["rows"] if r["method"] == "retrain"]
    assert all(r["gap"] == 0 and r["attacks"]["epsilon-vs-retrain"]["value"] == 0 for r in retrain)
    summary = result["summary"]["mnemonic_paper"]
    assert summary["n_runs"] == 2
    for metric in ("A_R", "E_F", "A_R_train", "E_F_train", "gap", "seconds", *ATTACKS):
        assert {"mean", "std", "worst_class", "worst"} <= set(summary[metric])
    assert summary["A_R"]["worst"] == min(summary["A_R"]["per_class"].values())
    # the settings' own step is a row too, with its record
    step = [r for r in result["rows"] if r["method"] == "mnemonic"]
    assert all(r["step"] == s.step and r["backward_passes"] == 10 for r in step)
    assert all(t["kind"] in ("original", "no_codes", "retrain") for t in result["trained"])


@pytest.mark.slow  # the tiny sweep
def test_tables_and_files(tiny_sweep, tmp_path):
    s, result = tiny_sweep
    js, md = S.write_sweep(result, tmp_path)
    text = md.read_text()
    for name in (*ATTACKS, "gap to retrain", "ssd", "*retrain*", "Worst class"):
        assert name in text
    assert json.loads(js.read_text())["summary"]["ssd"]["n_runs"] == 2


def test_bad_config():
    with pytest.raises(ConfigError, match="unknown baseline 'nope'"):
        Settings(baselines=("nope",))
    with pytest.raises(ConfigError, match="retrain is always"):
        Settings(baselines=("retrain",))
    with pytest.raises(ConfigError):
        S.check_plan(Settings(), classes=(0,), seeds=(), jobs=1)
    with pytest.raises(ConfigError):
        S.check_plan(Settings(), classes=(1, 1), seeds=(0,), jobs=1)


@pytest.mark.slow  # a sweep in two processes, then its models again
def test_cli_sweep_parallel(tmp_path, capsys):
    rc = main(
        [
            "sweep",
            "--dataset",
            "digits",
            "--epochs",
            "2",
            "--baselines",
            "mnemonic_paper",
            "--classes",
            "3",
            "--seeds",
            "0",
            "1",
            "--jobs",
            "2",
            "--probe-max-train",
            "300",
            "--band-seeds",
            "1000",
            "1001",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out-dir",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 0
    out = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert out["summary"]["mnemonic_paper"]["n_runs"] == 2
    printed = capsys.readouterr().out
    assert "wall time" in printed
    # the band: retrain references of the band seeds, each scored against the request's retrain, recomputed here
    from mnemonic_mu import pipeline

    base = Settings(dataset="digits", epochs=2, cache_dir=str(tmp_path / "cache"), forget_classes=(3,))
    data = pipeline.load_data(base)
    x, y = data.split("test")
    conf = {}
    for seed in (0, 1000, 1001):
        ref, cached = pipeline.train_models(base.replace(seed=seed, band_seeds=()), data, ("retrain",))["retrain"]
        assert cached
        conf[seed] = sample_statistics(ref.model, x[y == 3], y[y == 3])["logit_confidence"]
    band = {r["band_seed"]: r for r in out["band_rows"] if r["seed"] == 0}
    assert sorted(band) == [1000, 1001] and len(out["band_rows"]) == 4  # 2 band seeds x 2 requests
    for b in (1000, 1001):
        assert band[b]["attacks"]["epsilon-vs-retrain"]["value"] == pytest.approx(epsilon_vs_retrain(conf[b], conf[0]))
        assert band[b]["attacks"]["epsilon-vs-retrain"]["value"] > 0  # another seed's retrain is not the same model
    # both requests (seeds 0 and 1) share the band models of class 3: the same A_R
    seed_1 = {r["band_seed"]: r["A_R"] for r in out["band_rows"] if r["seed"] == 1}
    assert seed_1 == {b: r["A_R"] for b, r in band.items()}
    assert out["bands"]["n_band"] == 2 and out["bands"]["inside"]["retrain"]["gap"] == {"inside": 2, "n": 2}
    assert "Inside retrain's seed band" in printed and "2 band references per request" in printed
    assert main(["sweep", "--baselines", "nope"]) == 2


@pytest.mark.slow  # the tiny sweep, then again from disk
def test_resume_reuses_rows(tiny_sweep):
    s, result = tiny_sweep
    folder = S.sweep_folder(s, (0, 1), (0,), result["folder"])
    files = sorted(p.relative_to(folder / "rows").as_posix() for p in (folder / "rows").rglob("*.json"))
    bands = {f"band{b}" for b in s.band_seeds}
    assert files == sorted(f"seed0_class{c}/{m}.json" for c in (0, 1) for m in ROWS | bands)
    # one seed, and still a band: the retrain references of the band seeds, per request
    assert len(result["band_rows"]) == 2 * len(s.band_seeds) and result["bands"]["n_band"] == len(s.band_seeds)
    again = S.run_sweep(s, classes=(0, 1), seeds=(0,), out_dir=result["folder"])  # every row on disk
    assert [(r["method"], r["gap"]) for r in again["rows"]] == [(r["method"], r["gap"]) for r in result["rows"]]
    assert again["summary"]["ssd"]["A_R"]["mean"] == pytest.approx(result["summary"]["ssd"]["A_R"]["mean"])


@pytest.mark.slow  # the tiny sweep, then three more passes
def test_algorithm_version_bump_recomputes_only_the_affected_rows(tiny_sweep, monkeypatch):
    """Rows are keyed by the code that made them: bump finetune's version and only its rows are redone."""
    from mnemonic_mu import pipeline
    from mnemonic_mu.algorithms import methods

    s, result = tiny_sweep
    calls = []
    real = pipeline.run_method
    monkeypatch.setattr(pipeline, "run_method", lambda name, *a, **k: calls.append(name) or real(name, *a, **k))
    S.run_sweep(s, classes=(0, 1), seeds=(0,), out_dir=result["folder"])
    assert calls == []  # nothing changed: every row reused
    bumped = dataclasses.replace(methods.METHODS["finetune"], version=methods.METHODS["finetune"].version + 1)
    monkeypatch.setitem(methods.METHODS, "finetune", bumped)
    again = S.run_sweep(s, classes=(0, 1), seeds=(0,), out_dir=result["folder"])
    assert calls == ["finetune", "finetune"]  # one request per class, finetune alone
    # the recomputed rows carry the same numbers (the code did not really change) ...
    old = {(r["method"], r["forget_class"]): r for r in result["rows"]}
    for r in again["rows"]:
        assert r["A_R"] == old[(r["method"], r["forget_class"])]["A_R"]
    # ... and a bump of a shared component (the attacks) recomputes every row
    from mnemonic_mu.algorithms import attacks

    calls.clear()
    monkeypatch.setattr(attacks, "VERSION", attacks.VERSION + 1)
    S.run_sweep(s, classes=(0, 1), seeds=(0,), out_dir=result["folder"])
    assert sorted(calls) == sorted(list(METHODS) * 2)


@pytest.mark.slow  # the tiny sweep
def test_sweep_key(tiny_sweep):
    s, result = tiny_sweep
    assert Settings(**result["settings"]) == s
    assert result["key"] == S.sweep_key(s, (0, 1), (0,))


def test_sweep_key_ignores_what_cannot_change_a_row(tmp_path):
    s = _tiny_settings(tmp_path)
    key = S.sweep_key(s, (0, 1), (0,))
    # single-class requests only: the multi-class mode must not invalidate finished rows
    assert S.sweep_key(s.replace(multi="joint"), (0, 1), (0,)) == key
    assert S.sweep_key(s.replace(epochs=s.epochs + 1), (0, 1), (0,)) != key
    assert S.sweep_key(s.replace(threads=2, device="cpu"), (0, 1), (0,)) == key


@pytest.mark.slow  # executes notebook 07 twice
def test_notebook_07_runs_then_loads_the_finished_sweep(tmp_path):
    """notebooks/07_comparison.ipynb through papermill on a tiny sweep: it writes the
    metrics of every method, and a second execution loads the sweep instead of rerunning it."""
    import nbformat
    import papermill as pm

    from mnemonic_mu.drivers.report import notebook_dir

    params = {
        "profile": "ci",
        "baselines": ["mnemonic_calibrated", "finetune"],
        "classes": [0],
        "seeds": [0],
        "jobs": 1,
        "out_dir": str(tmp_path / "out"),
        "overrides": {"epochs": 20, "probe_max_train": 300, "cache_dir": str(tmp_path / "cache")},
    }
    outputs = []
    for i in range(2):
        out = tmp_path / f"07-{i}.ipynb"
        pm.execute_notebook(
            str(notebook_dir() / "07_comparison.ipynb"),
            str(out),
            parameters=params,
            cwd=str(tmp_path),
            progress_bar=False,
            kernel_name="python3",
        )
        outputs.append(
            "".join(o.get("text", "") for c in nbformat.read(out, 4).cells if c.cell_type == "code" for o in c.outputs)
        )
    assert "loaded " not in outputs[0] and "loaded " in outputs[1]
    metrics = json.loads((tmp_path / "out" / "07_comparison_metrics.json").read_text())
    assert set(metrics) == {"mnemonic", "mnemonic_calibrated", "finetune", *S.REFERENCES}
    for name, row in metrics.items():
        assert 0 <= row["A_R"] <= 100 and 0 <= row["E_F"] <= 100 and set(ATTACKS) <= set(row), name
    assert metrics["retrain"]["E_F"] == 100.0 and metrics["retrain"]["gap"] == 0
    assert metrics["original"]["E_F"] < 20 and metrics["finetune"]["E_F"] > metrics["original"]["E_F"]
    # the notebook's metrics are the sweep's own numbers
    summary = json.loads(next((tmp_path / "out").rglob("sweep.json")).read_text())["summary"]
    for name, row in metrics.items():
        assert row["A_R"] == summary[name]["A_R"]["mean"] and row["worst_gap"] == summary[name]["gap"]["worst"]
    for fig in ("ar_ef", "gap_time", "ef_per_class"):
        assert (tmp_path / "out" / f"07_comparison_{fig}.png").stat().st_size > 1000


@pytest.mark.slow  # two sweeps of one class
def test_attacks_setting_scores_only_the_named_attacks(tmp_path):
    """attacks=() scores accuracies only (a steps-only sweep of a large dataset); the default is
    every attack of the suite, and an unknown name or a report without them is refused."""
    from mnemonic_mu.algorithms.attacks import ATTACKS
    from mnemonic_mu.drivers.report import resolve_parameters

    assert Settings().attacks == tuple(ATTACKS)
    s = Settings(dataset="digits", epochs=3, lr=0.05, baselines=(), attacks=(), cache_dir=str(tmp_path / "cache"))
    result = S.run_sweep(s, classes=(1,), seeds=(0,), out_dir=str(tmp_path / "sweep"))
    assert result["rows"] and all(r["attacks"] == {} for r in result["rows"])
    _, md = S.write_sweep(result, tmp_path / "sweep")
    text = md.read_text()
    assert "| A_R (%) |" in text and "entropy-LR" not in text and "linear probe" not in text
    assert Settings.from_profile("ci", attacks="none").attacks == ()
    s2 = s.replace(attacks=("linear probe",))
    rows = S.run_sweep(s2, classes=(1,), seeds=(0,), out_dir=str(tmp_path / "sweep2"))["rows"]
    assert all(set(r["attacks"]) == {"linear probe"} for r in rows)
    with pytest.raises(ConfigError, match="unknown attack 'lira'"):
        Settings(attacks=("lira",))
    with pytest.raises(ConfigError, match="the report scores every attack"):
        resolve_parameters("ci", {"attacks": ["linear probe"]}, {}, tmp_path)


def _band_row(method, seed, cls, a_r, attacks, band_seed=None):
    row = {
        "method": method,
        "seed": seed,
        "forget_class": cls,
        "A_R": a_r,
        "E_F": 100.0,
        "A_R_train": a_r,
        "E_F_train": 100.0,
        "attacks": {k: {"value": v} for k, v in attacks.items()},
        "gap": 0.0,
        "tow": 1.0,
        "seconds": 0.0,
        "backward_passes": 1,
        "reference": method != "m",
    }
    return row | ({"band": True, "band_seed": band_seed} if band_seed is not None else {})


def test_sweep_bands_read_each_request_against_its_band_and_flag_an_attack_without_signal():
    """Band of request (a, c) = min..max over the band references scored in that request; an
    attack whose original and band values overlap on every class is marked no_signal."""
    rows, band_rows = [], []
    for seed in (0, 1, 2):
        rows.append(_band_row("retrain", seed, 0, 90.0 + seed, {"linear probe": 0.5, "entropy-LR": 0.0}))
        # the original: far from retrain on entropy-LR (signal), the same on the linear probe (none)
        rows.append(_band_row("original", seed, 0, 90.0, {"linear probe": 0.51, "entropy-LR": 0.9}))
        for b, a_r in ((1000, 90.0), (1001, 92.0)):
            band_rows.append(
                _band_row(
                    f"band{b}", seed, 0, a_r, {"linear probe": 0.5 + 0.02 * (b - 1000), "entropy-LR": 0.01}, band_seed=b
                )
            )
    rows.append(_band_row("m", 0, 0, 91.5, {"linear probe": 0.9, "entropy-LR": 0.0}))  # inside on A_R
    rows.append(_band_row("m", 1, 0, 89.5, {"linear probe": 0.51, "entropy-LR": 0.0}))  # below the band
    rows.append(_band_row("m", 2, 0, 92.0, {"linear probe": 0.5, "entropy-LR": 0.5}))  # on its edge: inside
    bands = S.sweep_bands(rows, band_rows)
    m = bands["inside"]["m"]
    assert m["A_R"] == {"inside": 2, "n": 3} and m["linear probe"] == {"inside": 2, "n": 3}
    assert m["entropy-LR"] == {"inside": 0, "n": 3}  # band 0.01..0.01
    assert bands["inside"]["retrain"]["A_R"] == {"inside": 3, "n": 3}  # 90, 91, 92 all lie in 90..92
    assert bands["signal"]["linear probe"]["no_signal"] and not bands["signal"]["entropy-LR"]["no_signal"]
    assert bands["signal"]["entropy-LR"]["classes_with_signal"] == 1 and bands["n_band"] == 2
    assert S.sweep_bands(rows, []) is None  # no band seeds: no band
    md = S.markdown_tables(
        {
            "summary": S.summarise(rows, [0]),
            "settings": Settings().to_dict(),
            "seeds": [0, 1, 2],
            "classes": [0],
            "rows": rows,
            "bands": bands,
        }
    )
    assert "- linear probe: **no signal here**" in md and "| m | 2/3 |" in md


def test_sweep_tables_list_methods_grouped_by_what_they_see():
    """sweep.md: the references first, then the methods by what they see (the least data first),
    whatever order the rows came in."""
    names = ("ssd", "retrain", "finetune", "mnemonic_paper", "original", "jit", "mnemonic")
    rows = [_band_row(name, 0, 0, 90.0, {"entropy-LR": 0.1}) | {"reference": name in S.REFERENCES} for name in names]
    md = S.markdown_tables(
        {
            "summary": S.summarise(rows, [0]),
            "settings": Settings().to_dict(),
            "seeds": [0],
            "classes": [0],
            "rows": rows,
        }
    )
    table = md.split("\n\n")[1].splitlines()[2:]
    names = [line.split(" | ")[0].lstrip("| ") for line in table]
    assert names == ["*original*", "*retrain*", "mnemonic", "mnemonic_paper", "jit", "finetune", "ssd"]
