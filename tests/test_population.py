"""`mnemonic-mu population`: the per-example attack on populations of models (docs/indistinguishability.md).

Fast tests run on the synthetic data (a few epochs, N = 6: seconds); the committed
result and its docs table are checked without a kernel; the notebook run is slow.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from mnemonic_mu.algorithms import indistinguishability as I
from mnemonic_mu.drivers import population as P
from mnemonic_mu.drivers.cli import build_parser, main
from mnemonic_mu.drivers.common import settings_from_args
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "docs" / "results" / "population" / "mnist5k.json"


def _settings(tmp_path, **changes) -> Settings:
    return Settings(dataset="synthetic", epochs=10, lr=0.05, cache_dir=str(tmp_path / "cache"), **changes)


@pytest.fixture(scope="module")
def synthetic_result(tmp_path_factory):
    """A real population run: 6 originals and 6 retrain models on synthetic data, the step only."""
    tmp = tmp_path_factory.mktemp("population")
    return P.run_population(_settings(tmp), 6, ("mnemonic",), keep_confidences=True)


def test_the_untouched_original_scores_far_below_the_floor(synthetic_result):
    res = synthetic_result
    original, fl = res["methods"]["original"], res["floor"]
    # every original trained on the forget examples, no retrain model did: perfectly separated
    assert original["full"]["forget_score"] == 0.0
    assert original["full"]["epsilon"]["min"] == original["full"]["cap"] == I.epsilon_cap(6, 6) == 2.0
    assert original["full"]["ulira_accuracy"] == 1.0
    assert original["half"]["forget_score"] <= fl["forget_score"] - 0.25
    assert original["confidence"]["median"] > res["retrain"]["confidence"]["median"] + 5
    # the floor: halves of 3, retrain against itself; below 1 (finite N) but well above 0
    assert fl["n_per_half"] == 3 and fl["cap"] == I.epsilon_cap(3, 3) == 1.0
    assert 0.25 <= fl["forget_score"] < 1.0 and len(fl["scores"]) == P.REPEATS
    assert res["retrain"]["accuracy"]["test_E_F"]["mean"] == 100.0  # never saw the class


def test_the_result_is_what_its_confidences_give(synthetic_result, tmp_path):
    res = synthetic_result
    phi = res["confidences"]
    n = res["forget_examples"]["n"]
    assert res["forget_examples"]["split"] == "train" and n == 42  # synthetic: 42 training examples of class 0
    assert set(phi) == {"retrain", "original", "mnemonic"} and all(a.shape == (6, n) for a in phi.values())
    assert res["plan"]["seeds"] == [0, 1, 2, 3, 4, 5] and res["plan"]["methods"] == ["original", "mnemonic"]
    for name in ("original", "mnemonic"):
        m = res["methods"][name]
        assert m["full"]["forget_score"] == I.forget_score(phi[name], phi["retrain"])["score"]
        b = m["full"]["buckets"]
        assert sum(b["counts"]) == n
        assert np.isclose(np.dot(b["counts"], b["points"]) / n, m["full"]["forget_score"])
        a, r = I.retrain_halves(6, 0)
        assert m["half"]["scores"][0] == I.forget_score(phi[name][a], phi["retrain"][r])["score"]
    assert res["floor"]["forget_score"] == I.forget_score_floor(phi["retrain"], repeats=P.REPEATS)["score"]
    # the floor is the half-size score of a method whose models are the retrain models themselves
    same = P.score_method(phi["retrain"], phi["retrain"])
    assert same["half"]["scores"] == res["floor"]["scores"] and same["full"]["forget_score"] == 1.0
    c = res["cost"]
    assert c["models_trained"] == 12 and c["train_seconds"] > 0 and c["score_seconds"] > 0
    assert c["unlearn_seconds"]["original"] == 0.0 and c["unlearn_seconds"]["mnemonic"] > 0
    assert res["hardware"]["device"] == "cpu" and res["command"].startswith("mnemonic-mu population ")
    out = P.write_result(res, tmp_path / "x.json")
    assert json.loads(out.read_text())["methods"]["original"]["full"]["forget_score"] == 0.0  # arrays left out
    # KLoM: the statistic of its module on the same arrays, at N vs N, per half split and for the floor
    assert res["methods"]["original"]["full"]["klom"] == I.klom(phi["original"], phi["retrain"])["value"]
    a, r = I.retrain_halves(6, 0)
    splits = [I.klom(phi["mnemonic"][a], phi["retrain"][r])["value"]]
    assert res["methods"]["mnemonic"]["half"]["klom"]["mean"] == pytest.approx(
        np.mean(
            splits
            + [
                I.klom(phi["mnemonic"][x], phi["retrain"][y])["value"]
                for x, y in (I.retrain_halves(6, i) for i in range(1, P.REPEATS))
            ]
        )
    )
    # the untouched original is separated from retrain on every example (forget score 0): its margins
    # and retrain's never share a bin, so each example's KL is log(1 / eps) minus the entropy of its
    # 6 margins' bins, at least log(1 / eps) - log(6)
    assert res["methods"]["original"]["full"]["klom"] >= math.log(1 / I.KLOM_EPS) - math.log(6)
    assert "| KLoM p95, 3 vs 3, mean +- std over splits |" in P.table(res)


def test_the_recorded_command_reproduces_the_settings(tmp_path):
    s = _settings(tmp_path, forget_classes=(3,), code_dist="normal")
    cmd = P.population_command(s, 8, ("original", "mnemonic", "finetune"), out=tmp_path / "r.json")
    words = cmd.split()
    assert words[:2] == ["mnemonic-mu", "population"]
    for w in (
        "--dataset",
        "synthetic",
        "--epochs",
        "10",
        "--lr",
        "0.05",
        "--forget",
        "3",
        "--code-dist",
        "normal",
        "--models",
        "8",
        "--methods",
        "mnemonic",
        "finetune",
    ):
        assert w in words, w
    args = build_parser().parse_args(words[1:])
    again = settings_from_args(args, P.POPULATION_OPTIONS)
    assert again.results_dict() == s.results_dict() and args.models == 8 and args.methods == ["mnemonic", "finetune"]
    assert "--methods" not in P.population_command(s, 16, ("original",) + P.DEFAULT_METHODS)


def test_bad_plans_are_refused_with_one_message(tmp_path):
    s = _settings(tmp_path)
    with pytest.raises(ConfigError, match="at least 6"):
        P.population_seeds(s, 4)
    with pytest.raises(ConfigError, match="each seed once"):
        P.run_population(s, seeds=[0, 0, 1, 2, 3, 4])
    with pytest.raises(ConfigError, match="retrain is the reference population"):
        P.check_methods(["retrain"])
    with pytest.raises(ConfigError, match="unknown method 'bogus'"):
        P.check_methods(["mnemonic", "bogus"])
    assert P.check_methods(["ssd", "original"]) == ("original", "ssd")
    with pytest.raises(ConfigError, match="repeats"):
        P.run_population(s, 6, repeats=0)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--models", "3"], "the number of models must be at least 6"),
        (["--methods", "retrain"], "retrain is the reference population"),
        (["--methods", "mnemonic", "nope"], "unknown method 'nope'"),
        (["--forget", "12"], "forget class"),
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--repeats", "0"], "--repeats must be at least 1"),
        (["--out", "{tmp}"], "is a folder"),
        (["--dataset", "imagenet"], "unknown dataset"),
    ],
)
def test_cli_bad_input_gives_one_clear_line(argv, match, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = main(
        ["population", "--dataset", "synthetic", "--epochs", "2", "--cache-dir", str(tmp_path / "cache"), *argv]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("mnemonic-mu: error: ") and re.search(match, err), err
    assert not (tmp_path / "cache" / "models").exists()  # refused before anything is trained


def test_cli_run_writes_the_json_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "pop.json"
    code = main(
        [
            "population",
            "--dataset",
            "synthetic",
            "--epochs",
            "10",
            "--lr",
            "0.05",
            "--models",
            "6",
            "--methods",
            "none",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr()
    assert code == 0
    res = json.loads(out.read_text())
    assert list(res["methods"]) == ["original"] and res["plan"]["n_models"] == 6
    assert "--methods none" in res["command"] and f"--out {out}" in res["command"]
    assert "| *original (no unlearning)* | 0.000 |" in text.out and f"wrote {out}" in text.out
    assert "seed 5 (6/6)" in text.err


def test_render_docs_replaces_only_its_block(tmp_path, synthetic_result):
    root = tmp_path / "repo"
    (root / "docs" / "results" / "population").mkdir(parents=True)
    P.write_result(synthetic_result, root / "docs" / "results" / "population" / "synthetic.json")
    page = root / "docs" / "indistinguishability.md"
    page.write_text(f"# x\n\nbefore\n\n{P.DOCS_START}\nold\n{P.DOCS_END}\n\nafter\n")
    P.render_docs(root)
    text = page.read_text()
    assert "old" not in text and text.startswith("# x\n\nbefore\n") and text.endswith("\n\nafter\n")
    assert synthetic_result["command"] in text and "`docs/results/population/synthetic.json`" in text
    assert "| **floor: retrain vs retrain** |" in text
    page.write_text("# no markers\n")
    with pytest.raises(ConfigError, match="no <!-- population:start -->"):
        P.render_docs(root)


def test_the_docs_table_is_what_the_committed_result_gives():
    text = (ROOT / "docs" / "indistinguishability.md").read_text()
    assert P.render_block(ROOT) in text, (
        "docs/indistinguishability.md's population block is stale: run `mnemonic-mu population --render-docs`"
    )
    res = json.loads(COMMITTED.read_text())
    assert res["command"].startswith("mnemonic-mu population ")
    assert "--out docs/results/population/mnist5k.json" in res["command"]
    assert res["settings"]["dataset"] == "mnist5k" and res["settings"]["forget_classes"] == [0]
    assert res["plan"]["n_models"] == 16 and res["plan"]["seeds"] == list(range(16))
    assert set(res["methods"]) >= {"original", "mnemonic", "mnemonic_paper", "finetune", "ssd"}
    assert res["methods"]["original"]["full"]["forget_score"] < res["floor"]["forget_score"]
    for m in res["methods"].values():
        assert 0 <= m["full"]["forget_score"] <= 1
        assert sum(m["full"]["buckets"]["counts"]) == res["forget_examples"]["n"]
    assert res["cost"]["models_trained"] == 32 and res["hardware"]["cpu_count"] >= 1


@pytest.mark.slow
def test_notebook_09_runs_and_writes_its_scores(tmp_path):
    """notebooks/09_per_example_attack.ipynb through papermill on digits (the ci profile), 6 seeds:
    every cell runs, the epsilon by hand is the library's, the original scores below the floor."""
    import papermill as pm

    out = tmp_path / "09.ipynb"
    pm.execute_notebook(
        str(ROOT / "notebooks" / "09_per_example_attack.ipynb"),
        str(out),
        cwd=str(ROOT / "notebooks"),
        progress_bar=False,
        kernel_name="python3",
        parameters={
            "profile": "ci",
            "epochs": 10,
            "seeds": [0, 1, 2, 3, 4, 5],
            "overrides": {"cache_dir": str(tmp_path / "cache"), "run_dir": str(tmp_path / "run")},
        },
    )
    m = json.loads((tmp_path / "run" / "metrics" / "09_per_example_attack.json").read_text())
    assert m["dataset"] == "digits" and m["n_models"] == 6 and m["cap"] == 2.0
    assert m["example_epsilon"] == pytest.approx(m["example_epsilon_by_hand"])
    assert m["forget_score"]["original"] == 0.0 and m["half"]["original"] < m["floor"]
    assert 0 <= m["forget_score"]["unlearned"] <= 1
    assert m["methods"]["mnemonic"] == pytest.approx(m["forget_score"]["unlearned"])
    pop = json.loads((tmp_path / "run" / "metrics" / "09_per_example_attack_population.json").read_text())
    assert pop["plan"]["seeds"] == [0, 1, 2, 3, 4, 5] and pop["floor"]["forget_score"] == pytest.approx(m["floor"])
    for fig in ("one_example", "epsilons", "floor"):
        assert (tmp_path / "run" / "figures" / f"09_per_example_attack_{fig}.png").stat().st_size > 1000
    text = "".join(o.get("text", "") for c in nbformat.read(out, 4).cells if c.cell_type == "code" for o in c.outputs)
    assert "digits, 10 epochs" in text and "forget examples (training split), N = 6" in text
    # section 6: the target and the matched step, measured on the same populations
    tgt = m["target"]
    assert tgt["retrain_forget_logit"] < 0 and tgt["sd_over_examples"] >= 0 and tgt["sd_over_seeds"] > 0
    assert tgt["retrain_top_class"] != 0 and 0 < tgt["retrain_top_share"] <= 1
    assert tgt["median_phi"]["retrain"] < tgt["median_phi"]["original"]  # retrain does not predict the class
    assert tgt["median_phi"]["matched"] < tgt["median_phi"]["original"]
    assert "retrain's forget logit:" in text and "matched step's median phi" in text
    assert m["methods"]["mnemonic_matched"] == pytest.approx(pop["methods"]["mnemonic_matched"]["full"]["forget_score"])
    assert (tmp_path / "run" / "figures" / "09_per_example_attack_target.png").stat().st_size > 1000


def test_the_reading_names_the_methods_near_retrains_klom():
    """The generated reading: a method within one std of retrain-vs-retrain's KLoM is named, the
    lowest is named with its value, and a result without KLoM gets no KLoM sentence."""
    floor = {"forget_score": 0.3, "std": 0.05, "n_per_half": 8, "klom": {"mean": 9.0, "std": 0.5}}
    methods = {
        P.ORIGINAL: {"half": {"forget_score": 0.0, "klom": {"mean": 11.5}}, "confidence": {"median": 3.0}},
        "near": {"half": {"forget_score": 0.1, "klom": {"mean": 9.4}}, "confidence": {"median": -9.0}},
        "far": {"half": {"forget_score": 0.2, "klom": {"mean": 10.2}}, "confidence": {"median": -20.0}},
    }
    result = {
        "floor": floor,
        "methods": methods,
        "retrain": {"confidence": {"median": -13.0}},
        "forget_examples": {"classes": [0]},
    }
    text = P.reading(result)
    assert "within one std of retrain vs retrain's (9.000 + 0.500): near; lowest: near (9.400)." in text
    assert "closest: far (0.200)" in text  # the forget score's reading is unchanged
    methods["near"]["half"]["klom"]["mean"] = 9.6
    assert "within one std of retrain vs retrain's (9.000 + 0.500): none; lowest: near (9.600)." in P.reading(result)
    for m in methods.values():
        m["half"].pop("klom")
    assert "KLoM" not in P.reading(result | {"floor": floor | {"klom": {"mean": None, "std": None}}})


def test_the_full_size_floor_scores_n_more_retrains_against_the_population(tmp_path):
    """--full-floor: N more retrain models (the seeds after the population's), N vs N against the
    population's retrains, scored by the same function as a method; the cost and the command say so."""
    from mnemonic_mu import pipeline

    s = _settings(tmp_path)
    res = P.run_population(s, 6, ("mnemonic",), keep_confidences=True, full_floor=True)
    full = res["floor"]["full"]
    assert P.floor_seeds(range(6)) == (6, 7, 8, 9, 10, 11) and full["seeds"] == [6, 7, 8, 9, 10, 11]
    dataset = pipeline.load_data(s)
    x, y = P.forget_examples(dataset, [0])
    extra = [
        pipeline.train_models(P.seed_settings(s, seed), dataset, ("retrain",))["retrain"][0].model
        for seed in full["seeds"]
    ]  # from the cache the run filled
    other = I.population_confidences(extra, x, y)
    assert full["forget_score"] == pytest.approx(I.forget_score(other, res["confidences"]["retrain"])["score"])
    assert full["n_per_side"] == 6 and full["cap"] == I.epsilon_cap(6, 6)
    assert 0 < full["forget_score"] <= 1 and res["methods"]["original"]["full"]["forget_score"] < full["forget_score"]
    assert res["cost"]["floor_models"] == 6 and res["cost"]["models_trained"] == 18
    c = res["cost"]  # the extra retrains count once, as training: the parts never add up past the whole
    assert c["train_wall_seconds"] + c["unlearn_wall_seconds"] + c["score_seconds"] <= c["total_seconds"] + 1e-6
    assert res["command"].endswith("--full-floor")
    assert f"| **floor: retrain vs retrain** | **{full['forget_score']:.3f}** (12 retrains) |" in P.table(res)
    plain = P.run_population(s, 6, ("mnemonic",))
    assert "full" not in plain["floor"] and "n/a (needs 12 retrain models: --full-floor)" in P.table(plain)


def test_the_glance_table_marks_and_counts_from_hand_made_results():
    """summary_table: a score within one std of the floor, a median phi within retrain's spread
    and a KLoM at most one std above the floor's are marked; the last row counts the marks."""

    def result(dataset, score, med, klom):
        return {
            "settings": {"dataset": dataset},
            "forget_examples": {"classes": [0]},
            "plan": {"n_models": 16},
            "floor": {"forget_score": 0.3, "std": 0.1, "klom": {"mean": 9.0, "std": 0.5}},
            "retrain": {"confidence": {"median": -13.0, "median_sd_models": 0.4}},
            "methods": {
                P.ORIGINAL: {"half": {"forget_score": 0.0}, "confidence": {"median": 3.0}},
                "m": {"half": {"forget_score": score, "klom": {"mean": klom}}, "confidence": {"median": med}},
            },
        }

    # inside on all three | outside on all three (0.19 < 0.2, 0.41 from the median, 9.51 > 9.5)
    text = P.summary_table([result("a", 0.2, -13.39, 9.5), result("b", 0.19, -12.59, 9.51)], ["a.json", "b.json"])
    assert "| a, class 0 (N=16; a.json) | 0.300 +- 0.100; 9.00 +- 0.50 | -13.00 +- 0.40 |" in text
    assert "0.200 (within); -13.39 (within); 9.50 (within) |" in text
    assert "0.190; -12.59; 9.51 |" in text
    assert text.rstrip().endswith("| score 1/2, median phi 1/2, KLoM 1/2 |")
