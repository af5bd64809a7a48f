"""Write the six stage notebooks (``python notebooks/_build.py [OUT_DIR]``).

The committed ``.ipynb`` files are the product; this script only keeps them
consistent: every notebook gets the imports cell, one ``parameters`` cell
built from :data:`mnemonic_mu.notebook_stages.NOTEBOOK_PARAMETERS` (defaults and
comments taken from :class:`mnemonic_mu.settings.Settings`, i.e. the laptop
profile) and the config cell that validates them.  Outputs are never written.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mnemonic_mu import notebook_stages as stages
from mnemonic_mu import settings

HERE = Path(__file__).resolve().parent
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE  # tests write a copy elsewhere and compare


def _field_comments() -> dict[str, str]:
    return settings.comments()


def _literal(value) -> str:
    return json.dumps(value) if isinstance(value, (str, list)) else repr(value)


def parameters_cell(notebook: str):
    defaults, comments = settings.Settings().to_dict(), _field_comments()
    lines = [f"{name} = {_literal(defaults[name])}  # {comments[name]}" for name in stages.NOTEBOOK_PARAMETERS[notebook]]
    cell = new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["parameters"]
    return cell


def config_cell(notebook: str, extra: str = ""):
    args = "\n".join(f"    {name}={name}," for name in stages.NOTEBOOK_PARAMETERS[notebook])
    body = f"cfg = Settings(\n{args}\n)\n"
    if notebook != "01_mnemonic_codes":
        body += "device = setup(cfg)\n"
    return new_code_cell(body + extra + "cfg")


def md(text: str):
    return new_markdown_cell(text.strip())


def code(text: str):
    return new_code_cell(text.strip())


IMPORT_PREFIX = """import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
"""

PARAMS_MD = md(
    """
## Parameters
The next cell holds this notebook's parameters (the `laptop` profile); `mnemonic-mu report`
replaces them. The cell after it validates them into a frozen `cfg`; every later cell reads `cfg`."""
)


def build(notebook: str, title_md: str, imports: str, body: list, extra_config: str = "") -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    imports = IMPORT_PREFIX + imports.strip()
    nb.cells = [md(title_md), code(imports), PARAMS_MD, parameters_cell(notebook), config_cell(notebook, extra_config)]
    nb.cells += body
    for cell in nb.cells:  # stable ids keep diffs small
        cell.pop("id", None)
    nb.nbformat, nb.nbformat_minor = 4, 4
    OUT.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, OUT / f"{notebook}.ipynb")


# --------------------------------------------------------------------------
# 01

build(
    "01_mnemonic_codes",
    """
# 01 · Mnemonic codes

**Stage 1 of 6.** Next: `02_training`.

A *mnemonic code* $\\xi_c$ is one random input per class $c$, drawn once before training and
kept with the model (METHOD.md §1). During training every drawn sample $(x, y)$ is replaced by
$\\xi_y$ with probability $t_\\text{mix}$, label unchanged (Algorithm 1), so the model learns the
mixture $p(x) = t_\\text{mix}\\, p_\\xi(x) + (1 - t_\\text{mix})\\, p_d(x)$. Later the codes are
the *only* thing forgetting needs: the Fisher information of code $\\xi_c$ stands in for the
Fisher of all training data of class $c$.

This notebook draws the codes, shows them next to real samples, shows a training batch after
replacement and measures the replacement rate. Its artifact (codes summary and the measured
rate) is what `02_training` checks its models against.""",
    """
import inspect

import matplotlib.pyplot as plt
import pandas as pd
import torch

from mnemonic_mu import notebook_stages as stages, pipeline, plots
from mnemonic_mu.algorithms.codes import generate_codes, replace_with_codes
from mnemonic_mu.settings import Settings""",
    [
        md("## The data\nInputs are in *model space* (after normalisation): the codes live in the same space."),
        code("data = pipeline.load_data(cfg)\ndata.summary()"),
        md(
            """
## Drawing the codes
One tensor per class with the model's input shape, from a private seeded generator: the same
seed gives the same codes whatever else the program drew before. The paper draws from
$\\mathcal N(0, 1)$; this kit defaults to a uniform $[0, 1)$ draw (`code_dist = "uniform"`),
which covers the pixels' range: on MNIST it made the one-shot step forget every class and seed
measured, with retain accuracy at the retrain reference's (README, "Beyond the paper").
`code_dist = "normal"` is the paper's choice."""
        ),
        code("print(inspect.getsource(generate_codes))"),
        code(
            """
codes = {dist: generate_codes(data.num_classes, data.input_shape, dist, cfg.seed) for dist in ("normal", "uniform")}
pd.DataFrame(
    {dist: {"mean": float(c.mean()), "std": float(c.std()), "min": float(c.min()), "max": float(c.max())}
     for dist, c in codes.items()} | {"data": {"mean": float(data.x_train.mean()), "std": float(data.x_train.std()),
                                              "min": float(data.x_train.min()), "max": float(data.x_train.max())}}
).T.round(3)"""
        ),
        md(
            """
## Codes next to real samples
Top row: the first training sample of each class. Below: that class's normal and uniform code.
A code looks like noise to us; to the trained model it is an unmistakable example of its class."""
        ),
        code(
            """
first = torch.stack([data.x_train[data.y_train == c][0] for c in range(data.num_classes)])
rows = {"sample": first, "normal code": codes["normal"], "uniform code": codes["uniform"]}
fig, axes = plt.subplots(3, data.num_classes, figsize=(1.1 * data.num_classes, 3.6), squeeze=False)
for k, (axes_row, (label, images)) in enumerate(zip(axes, rows.items())):
    plots.image_grid(axes_row, images, titles=[f"class {c}" for c in range(data.num_classes)] if k == 0 else None)
    axes_row[0].set_ylabel(label, fontsize=8)
plots.savefig(fig, cfg, "01_mnemonic_codes_gallery")
plt.show()"""
        ),
        md("Pixel values: the normal codes spread far beyond the data's range; the uniform ones cover it."),
        code(
            """
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(data.x_train.flatten().numpy(), bins=60, density=True, alpha=0.5, label="data")
for dist, c in codes.items():
    ax.hist(c.flatten().numpy(), bins=60, density=True, alpha=0.5, label=f"{dist} codes")
ax.set_xlabel("input value")
ax.set_ylabel("density")
ax.legend()
plots.savefig(fig, cfg, "01_mnemonic_codes_values")
plt.show()"""
        ),
        md(
            """
## A training batch after replacement
Algorithm 1 tosses one coin per sample, afresh every epoch, *after* augmentation (codes are
never cropped or flipped). Replaced samples are framed in red."""
        ),
        code(
            """
gen = torch.Generator().manual_seed(cfg.seed)
batch = torch.randperm(len(data.y_train), generator=gen)[: cfg.batch_size]  # one random batch
x, y = data.x_train[batch], data.y_train[batch]
mixed, replaced = replace_with_codes(x, y, codes[cfg.code_dist], cfg.t_mix, gen)
show = torch.cat([torch.nonzero(replaced).flatten()[:6], torch.nonzero(~replaced).flatten()])[:16]
fig, axes = plt.subplots(1, len(show), figsize=(1.0 * len(show), 1.4), squeeze=False)
plots.image_grid(axes[0], mixed[show], titles=[f"y={int(y[i])}" for i in show])
for ax, i in zip(axes[0], show):
    if replaced[i]:
        for side in ax.spines.values():
            side.set(color="red", linewidth=3)
plots.savefig(fig, cfg, "01_mnemonic_codes_batch")
plt.show()
print(f"{int(replaced.sum())} of {len(y)} samples of this batch were replaced (t_mix = {cfg.t_mix})")"""
        ),
        md(
            """
## Measuring the replacement rate
The stage's artifact: the codes of this run and the replacement rate measured over ten
simulated epochs of coin tosses. It should match $t_\\text{mix}$ within about two standard
errors, in every class."""
        ),
        code(
            """
art = stages.compute_codes(cfg, data)
rep = art.result["replacement"]
print(f"measured {rep['measured']:.4f} vs t_mix {rep['t_mix']} (std error {rep['std_error']:.4f}, {rep['draws']} draws)")
print("artifact:", art.folder)"""
        ),
        code(
            """
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.bar(range(data.num_classes), rep["per_class"])
ax.axhline(cfg.t_mix, color="k", linestyle="--", label="t_mix")
ax.set_xlabel("class")
ax.set_ylabel("share replaced")
ax.legend()
plots.savefig(fig, cfg, "01_mnemonic_codes_rate")
plt.show()"""
        ),
        code(
            """
metrics_path = plots.write_metrics(cfg, "01_mnemonic_codes", {"key": art.key, **art.result})
assert abs(rep["measured"] - cfg.t_mix) < 5 * rep["std_error"] + 1e-9, "replacement rate far from t_mix\""""
        ),
        md(
            """
## Summary
* A mnemonic code is one fixed random input per class, drawn from its own seeded generator.
* Training replaces each drawn sample by its class's code with probability $t_\\text{mix}$; the
  measured rate above matches it.
* Codes must be stored with the model: the checkpoint keeps them (and they are a trigger for
  their class, so keep them private).

## Exercises
1. Draw the codes with two different seeds. How correlated are they? Why does that not matter?
2. Set `code_dist = "normal"` (the paper's codes) and rerun the whole sequence with
   `forget_classes = [4]`. Does forgetting still work, and what happens to A_R?
3. The paper's sweep says $t_\\text{mix} \\le 0.3$ costs under one point of accuracy. How many
   times is each code seen per epoch on this dataset at $t_\\text{mix} = 0.1$?
4. Why must the replacement come *after* augmentation?"""
        ),
    ],
)

# --------------------------------------------------------------------------
# 02

build(
    "02_training",
    """
# 02 · Training with codes, without codes, and the retrain reference

**Stage 2 of 6.** Needs `01_mnemonic_codes`. Next: `03_fisher`, `04_unlearning`.

Three models, same recipe and seed protocol (EVALUATION.md, "Reference models"):

| model | training data | role |
|---|---|---|
| `original` | all classes, codes mixed in with $t_\\text{mix}$ | the model to unlearn |
| `no_codes` | all classes, $t_\\text{mix} = 0$ | shows what codes cost |
| `retrain` | remaining classes only, codes mixed in | the gold standard of forgetting |

Each model is cached under `data/cache/models/` by a hash of every setting that affects
training, so rerunning this notebook, or any later one, costs no training.""",
    """
import matplotlib.pyplot as plt
import pandas as pd

from mnemonic_mu import notebook_stages as stages, pipeline, plots
from mnemonic_mu.algorithms.metrics import predict_logits
from mnemonic_mu.runtime import setup
from mnemonic_mu.settings import Settings""",
    [
        md("## Inputs\nThe data and the artifact of `01_mnemonic_codes` for the same settings."),
        code(
            """
data = pipeline.load_data(cfg)
codes_stage = stages.load_stage(cfg, "01_mnemonic_codes")
print("codes artifact:", codes_stage.folder)"""
        ),
        md(
            """
## Train (or load) the three models
`compute_training` calls `train_or_load` for each recipe, checks that the original model's
codes are the codes of stage 01, and evaluates A_R and E_F on the test and train splits."""
        ),
        code(
            """
art = stages.compute_training(cfg, data)
models = art.result["models"]
pd.DataFrame.from_dict(
    {role: {"test acc": m["metrics"]["test_accuracy"], "A_R": m["metrics"]["A_R"], "E_F": m["metrics"]["E_F"],
            "replaced": m["replaced_fraction"], "train s": m["seconds"], "cached": m["from_cache"]}
     for role, m in models.items()},
    orient="index",
).round(3)"""
        ),
        md(
            """
## Learning curves
Training loss and validation accuracy per epoch (the validation split, never the test split).
The validation split holds every class, including the one `retrain` never saw: its curve
plateaus that class's share lower."""
        ),
        code(
            """
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.2))
for role, m in models.items():
    h = m["history"]
    ax_loss.plot(h["epoch"], h["loss"], label=role)
    ax_acc.plot(h["epoch"], h["val_acc"], label=role)
ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log")
ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)")
ax_acc.legend()
plots.savefig(fig, cfg, "02_training_curves")
plt.show()"""
        ),
        md(
            """
## What codes cost
Compare `original` with `no_codes` class by class. The retrain model never saw the forget
class, so its accuracy there is (close to) zero: that is what forgetting should reach."""
        ),
        code(
            """
fig, ax = plt.subplots(figsize=(8, 3))
plots.per_class_bars(ax, {role: m["metrics"]["per_class_accuracy"] for role, m in models.items()}, cfg.forget_classes)
plots.savefig(fig, cfg, "02_training_per_class")
plt.show()
cost = models["no_codes"]["metrics"]["test_accuracy"] - models["original"]["metrics"]["test_accuracy"]
print(f"test accuracy cost of the codes: {cost:+.2f} points (positive = codes cost accuracy)")"""
        ),
        md(
            """
## Did the model learn its codes?
The original model should classify each code as its class; the model trained without codes
has no reason to."""
        ),
        code(
            """
checkpoints = stages.load_models(cfg, art, device=device)
codes = checkpoints["original"].codes
pd.DataFrame(
    {role: predict_logits(ck.model, codes).argmax(1).tolist() for role, ck in checkpoints.items()},
    index=[f"code {c}" for c in range(len(codes))],
).T"""
        ),
        code(
            """
metrics_path = plots.write_metrics(cfg, "02_training", {
    "key": art.key,
    "models": {role: {k: v for k, v in m.items() if k != "history"} for role, m in models.items()},
    "code_cost_points": cost,
})"""
        ),
        md(
            """
## Summary
* The original model is trained with codes mixed into its data; the retrain reference never
  sees the forget classes; the no-codes model measures what the codes cost.
* Trained models are cached by their settings: later notebooks load them, never retrain them.
* The original model recognises its codes, which is what makes the code Fisher informative.

## Exercises
1. Raise `t_mix` to 0.8. How much accuracy do the codes cost now (the paper: MNIST A_R 91.1)?
2. Compare the training time of `retrain` with the forgetting time you will see in `04_unlearning`.
3. Train for 10 epochs only. Does the model still classify its codes correctly?"""
        ),
    ],
)

# --------------------------------------------------------------------------
# 03

build(
    "03_fisher",
    """
# 03 · Fisher information from the codes

**Stage 3 of 6.** Needs `02_training`.

Eq. 6 of the paper: for each class $c$, one forward/backward pass of the cross-entropy on the
code $\\xi_c$ with label $c$ (eval mode, batch of one); the squared gradient is class $c$'s
diagonal Fisher. $f_F$ averages it over the forget classes, $f_R$ over the remaining ones.
Cost: $|C|$ backward passes, whatever the dataset size.

The claim to check (the paper's Fig. 5): the code Fisher is close to the **Oracle** Fisher, the
per-sample empirical Fisher over *all* training samples of the forget class, closer than a
Fisher estimated from a few real samples.""",
    """
import inspect

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from mnemonic_mu import notebook_stages as stages, pipeline, plots
from mnemonic_mu.algorithms.fisher import code_fisher
from mnemonic_mu.runtime import setup
from mnemonic_mu.settings import Settings""",
    [
        md("## Inputs\nThe original model of `02_training`, found by recomputing its key from the parameters."),
        code(
            """
data = pipeline.load_data(cfg)
training = stages.load_stage(cfg, "02_training")
original = stages.load_models(cfg, training, ("original",), device)["original"]
print("model:", original.folder)"""
        ),
        md("## The estimator\nThe library's code Fisher (the `vmap` path computes the same values in one call):"),
        code("print(inspect.getsource(code_fisher))"),
        md(
            """
## Code Fisher vs Oracle vs n real samples
`compute_fisher` computes the code Fisher, the Oracle Fisher on every training sample of the
forget classes, and Fishers of `n` random real samples (`fisher_repeats` draws each). Distances
are relative L2 distances after scaling each Fisher to unit sum (where the sensitivity lies,
not its size)."""
        ),
        code(
            """
art = stages.compute_fisher(cfg, data, original)
r = art.result
rows = {"code Fisher (forget codes)": [r["code_distance"]], "code Fisher (remaining codes)": [r["retain_code_distance"]]}
rows |= {f"{n} real samples": d for n, d in r["sample_distances"].items()}
pd.DataFrame({k: {"mean distance": np.mean(v), "std": np.std(v)} for k, v in rows.items()}).T.round(3)"""
        ),
        code(
            """
ns = [int(n) for n in r["sample_distances"]]
means = [np.mean(d) for d in r["sample_distances"].values()]
stds = [np.std(d) for d in r["sample_distances"].values()]
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.errorbar(ns, means, yerr=stds, marker="o", capsize=3, label="Fisher of n real samples")
ax.axhline(r["code_distance"], color="C1", linestyle="--", label=f"code Fisher ({r['code_backward_passes']} backward passes)")
ax.axhline(r["retain_code_distance"], color="C2", linestyle=":", label="remaining-class codes (control)")
ax.set(xscale="log", xlabel="n real samples of the forget class", ylabel="distance to the Oracle Fisher")
ax.legend(fontsize=8)
plots.savefig(fig, cfg, "03_fisher_approximation")
plt.show()
print(f"Oracle: {r['oracle_samples']} samples, {r['oracle_seconds']:.2f} s; code Fisher: {r['code_seconds'] * 1000:.1f} ms")"""
        ),
        md(
            """
## $\\eta$ per layer
$\\eta = f_F / f_R$ (Eq. 7) marks the parameters important to the forget class and unimportant
to the rest. Per layer, $\\alpha_l = \\min(\\lambda_1, \\lambda_2 / \\max_i \\eta_{l,i})$ bounds the step:
`max_change` is the largest change $\\alpha_l \\eta_{l,i}$ the step makes in that layer."""
        ),
        code(
            """
layers = pd.DataFrame(r["layers"]).T
layers[["numel", "eta_median", "eta_max", "alpha", "max_change"]]"""
        ),
        code(
            """
fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(layers)), 3))
ax.bar(range(len(layers)), np.log10(layers["eta_max"].astype(float)), label="log10 max eta")
ax.bar(range(len(layers)), np.log10(layers["eta_median"].astype(float).clip(lower=1e-30)), alpha=0.6, label="log10 median eta")
ax.set_xticks(range(len(layers)), layers.index, rotation=60, ha="right", fontsize=7)
ax.legend(fontsize=8)
plots.savefig(fig, cfg, "03_fisher_eta_layers")
plt.show()"""
        ),
        md(
            """
## Where the forget class lives (MLP only)
For the MLP, each first-layer weight connects a pixel to a hidden unit. Summing a Fisher over
the hidden units gives one value per pixel: an image of where the model looks for the class."""
        ),
        code(
            """
if cfg.model == "mlp":
    shape = data.input_shape
    maps = {
        "code Fisher f_F": art.extras["f_forget"]["fc1.weight"],
        "Oracle Fisher": art.extras["oracle"]["fc1.weight"],
        "eta = f_F / f_R": art.extras["eta"]["fc1.weight"],
    }
    fig, axes = plt.subplots(1, 3, figsize=(8, 3))
    for ax, (title, w) in zip(axes, maps.items()):
        img = w.sum(0).reshape(shape)[0] if len(shape) == 3 else w.sum(0).reshape(1, -1)
        ax.imshow(img.cpu().numpy(), cmap="magma")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    plots.savefig(fig, cfg, "03_fisher_first_layer")
    plt.show()
else:
    print(f"model {cfg.model}: first-layer weights are convolutions, no pixel map")"""
        ),
        code(
            """
metrics_path = plots.write_metrics(cfg, "03_fisher", {"key": art.key, **art.result})"""
        ),
        md(
            """
## Summary
* The code Fisher costs $|C|$ backward passes; the Oracle costs one per training sample of the
  forget class.
* Compare the dashed line with the curve: how many real samples does it take to beat the codes?
  The paper reports that the code Fisher is closer to the Oracle than a Fisher from 1,000 real
  samples; in this kit's laptop run (mnist5k, 40 epochs) it is about as close as one sample by
  this distance. Check where it lands in your run, and see Exercise 4.
* $\\eta$ is extremely uneven: a few parameters carry the forget class, which is why one step can
  remove it.

## Exercises
1. Compute the code Fisher with `method="vmap"` and check it equals the loop.
2. The Fisher of the *mini-batch* gradient (`minibatch_fisher`) is a different quantity. Add it to
   the plot for batch size 32: how far is it from the Oracle?
3. Rerun for another forget class (`forget_classes = [7]`). Does the approximation hold?
4. The distance used here weighs the largest entries most. Measure instead the overlap of the
   top 1% parameters of each Fisher with the top 1% of the Oracle. Does the ranking of code
   Fisher vs n samples change? Which measure matters for the step, which uses the ratio
   $f_F / f_R$?"""
        ),
    ],
)

# --------------------------------------------------------------------------
# 04

build(
    "04_unlearning",
    """
# 04 · One-shot unlearning

**Stage 4 of 6.** Needs `02_training`. Next: `05_membership_evaluation`.

The step (Eq. 5, 7 and Algorithm 2): $w \\leftarrow w \\pm \\alpha_l \\eta_l$ with
$\\eta = f_F / f_R$ from the codes and, per layer, $\\alpha_l = \\min(\\lambda_1, \\lambda_2 / \\max_i \\eta_{l,i})$.
One sign for the whole model, chosen by the larger A_R + E_F **on the codes alone**. No data,
no optimisation loop.

The paper chose $(\\lambda_1, \\lambda_2)$ by a grid search on the test set; this kit sweeps the
same grid on the **validation** split (the paper's Figs. 6-7) and never tunes on the test set.
With `tune_lambdas = False` the step uses the given pair and the sweep is only shown.""",
    """
import inspect

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mnemonic_mu import notebook_stages as stages, pipeline, plots
from mnemonic_mu.algorithms.forget import fisher_ratio, layer_alphas
from mnemonic_mu.runtime import setup
from mnemonic_mu.settings import Settings""",
    [
        md("## Inputs"),
        code(
            """
data = pipeline.load_data(cfg)
training = stages.load_stage(cfg, "02_training")
original = stages.load_models(cfg, training, ("original",), device)["original"]"""
        ),
        md("## The step's two formulas\n$\\eta$ with its guards, and the per-layer $\\alpha$:"),
        code("print(inspect.getsource(fisher_ratio))\nprint(inspect.getsource(layer_alphas))"),
        md(
            """
## Sweep, choose, forget
`compute_unlearning` computes the code Fisher once, sweeps the grid on the validation split,
then runs the step (after a warm-up, median of three timed runs) and evaluates it."""
        ),
        code(
            """
art = stages.compute_unlearning(cfg, data, original)
r = art.result
print(f"lambda1 = {r['lambda1']:g}, lambda2 = {r['lambda2']:g} (from {r['lambdas_from']}); "
      f"validation best: {r['validation_best']}")
for warning in r["record"]["warnings"]:
    print("WARNING:", warning)"""
        ),
        md(
            """
## The sign test
Both candidates scored on the codes: A_R = share of remaining codes still predicted right,
E_F = share of forget codes now predicted wrong. A *tie* (both signs equally good on the
codes) is a known weakness; the record says so when it happens."""
        ),
        code(
            """
scores = pd.DataFrame(r["record"]["code_scores"]).T
scores["chosen"] = scores.index == r["record"]["sign"]
print("sign test tied:", r["record"]["sign_tie"])
scores.round(3)"""
        ),
        md("## Before and after\nThe unlearned model next to the original and the retrain reference (test and train splits, %)."),
        code(
            """
retrain = training.result["models"]["retrain"]["metrics"]
cols = ["A_R", "E_F", "A_R_train", "E_F_train"]
pd.DataFrame({"original": r["before"], "mnemonic (unlearned)": r["after"], "retrain": retrain}).T[cols].astype(float).round(2)"""
        ),
        code(
            """
fig, ax = plt.subplots(figsize=(8, 3))
plots.per_class_bars(ax, {"original": r["before"]["per_class_accuracy"], "unlearned": r["after"]["per_class_accuracy"],
                          "retrain": retrain["per_class_accuracy"]}, cfg.forget_classes)
plots.savefig(fig, cfg, "04_unlearning_per_class")
plt.show()"""
        ),
        md(
            """
## Every class, both steps
One request is one number. The paper's fixed lambdas fail on some classes (the forget code
stays correctly classified, often with a tied sign test); this kit's **calibrated** step
(`step = "calibrated"`, codes only: grow the step until every forget code is as confidently
wrong as it was right, the forget class is suppressed on the other codes too, and every
remaining code keeps its class) fixes most of them. Here each class is forgotten in turn from
the same model (20 one-shot steps, no training); the seeds and the retrain reference for every
class are in `07_comparison`."""
        ),
        code(
            """
every = pd.DataFrame(plots.every_class(original.model, original.codes, data, r["lambda1"], r["lambda2"]))
fig, axes = plt.subplots(1, 2, figsize=(12, 3), layout="constrained")
for ax, metric in zip(axes, ("E_F", "A_R")):
    every.pivot(index="class", columns="step", values=metric).plot.bar(ax=ax, rot=0)
    ax.set(ylabel=f"test {metric} (%)", ylim=(0, 105), title=f"{metric} when forgetting each class")
axes[1].axhline(r["before"]["test_accuracy"], color="k", lw=0.8, ls="--", label="original test acc.")
axes[1].legend(fontsize=8)
plots.savefig(fig, cfg, "04_unlearning_every_class")
plt.show()
every.groupby("step")[["forgotten", "sign_tie", "warnings"]].sum()"""
        ),
        md(
            """
## The lambda sweep (validation split)
Left and middle: validation A_R and E_F over the grid. Right: A_R + E_F along each axis
through the chosen pair (the paper's Figs. 6-7)."""
        ),
        code(
            """
sw = r["sweep"]
a_r, e_f = np.array(sw["A_R"]), np.array(sw["E_F"])
fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), layout="constrained")
for ax, values, title in ((axes[0], a_r, "validation A_R (%)"), (axes[1], e_f, "validation E_F (%)")):
    im = ax.imshow(values, vmin=0, vmax=100, cmap="viridis", origin="lower")
    ax.set_xticks(range(len(sw["lambda2_grid"])), [f"{v:g}" for v in sw["lambda2_grid"]])
    ax.set_yticks(range(len(sw["lambda1_grid"])), [f"{v:g}" for v in sw["lambda1_grid"]])
    ax.set(xlabel="lambda2", ylabel="lambda1", title=title)
    fig.colorbar(im, ax=ax)
i = int(np.argmin(np.abs(np.log10(sw["lambda1_grid"]) - np.log10(r["lambda1"]))))
j = int(np.argmin(np.abs(np.log10(sw["lambda2_grid"]) - np.log10(r["lambda2"]))))
axes[2].plot(sw["lambda1_grid"], (a_r + e_f)[:, j], marker="o", label=f"lambda1 (lambda2 = {sw['lambda2_grid'][j]:g})")
axes[2].plot(sw["lambda2_grid"], (a_r + e_f)[i, :], marker="s", label=f"lambda2 (lambda1 = {sw['lambda1_grid'][i]:g})")
axes[2].set(xscale="log", xlabel="lambda", ylabel="validation A_R + E_F")
axes[2].legend(fontsize=8)
plots.savefig(fig, cfg, "04_unlearning_lambda_sweep")
plt.show()"""
        ),
        md(
            """
## Time
The forgetting step alone (code Fisher + both candidates + sign test), after a warm-up, against
the same run's training of the retrain reference. Ratios are what to quote; seconds only with
the hardware named (`meta.json` of the artifact records it)."""
        ),
        code(
            """
models = training.result["models"]
times = {"forget (mnemonic)": r["forget_seconds"], "retrain": models["retrain"]["seconds"],
         "train original": models["original"]["seconds"], "train without codes": models["no_codes"]["seconds"]}
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.barh(list(times), list(times.values()))
ax.set(xscale="log", xlabel="seconds (log)")
plots.savefig(fig, cfg, "04_unlearning_time")
plt.show()
print(f"{r['backward_passes']} backward passes; retrain takes {times['retrain'] / times['forget (mnemonic)']:.0f}x "
      f"the forgetting step; codes change training time by "
      f"{100 * (times['train original'] / times['train without codes'] - 1):+.0f}%")"""
        ),
        code(
            """
metrics_path = plots.write_metrics(cfg, "04_unlearning", {"key": art.key, "every_class": every.to_dict("records"),
                                                           **{k: v for k, v in r.items() if k != "confusion_matrix"}})"""
        ),
        md(
            """
## Summary
* One closed-form step from $|C|$ backward passes on the codes forgets the class; no data used.
* The sign test and the lambdas need no data either; the validation sweep shows how sensitive
  the result is to them. The test split is only used for the final numbers.
* Watch the warnings: with fixed lambdas some requests are not forgotten or the sign test ties.

## Exercises
1. This run used `step = "calibrated"` (the kit's default and its extension: the step size is
   grown on the codes alone until the forget codes are misclassified). Set `step = "paper"`
   (the paper's fixed lambdas) and compare A_R and E_F.
2. Set `tune_lambdas = True`. Which pair does the validation split choose, and does it change
   the test numbers?
3. Forget two classes at once (`forget_classes = [0, 1]`): the paper calls it hard. Why? With
   the calibrated step the kit takes one calibrated step per class in turn (each along its own
   $f_c / f_R$, every Fisher from the same $|C|$ backward passes) and `r["record"]["parts"]`
   lists each class's sign and scale. Compare A_R with `step = "paper"`."""
        ),
    ],
)

# --------------------------------------------------------------------------
# 05

build(
    "05_membership_evaluation",
    """
# 05 · Membership evaluation

**Stage 5 of 6.** Needs `04_unlearning`. Next: `06_report`.

A forgotten class should not just be misclassified: the model should behave on it as if it had
never trained on it, like the retrain reference. This notebook compares the per-sample
statistics the attacks use, then runs the five attacks of EVALUATION.md, each beside retrain.
The paper's own check (train vs test loss of the forget class) is at chance even before
forgetting, so it shows nothing; the attacks below do not have that blind spot.

| attack | reports | direction |
|---|---|---|
| entropy-LR | share of D_f predicted member | lower = more forgotten; target = retrain |
| loss-LR-CV | CV accuracy telling D_f from forget-test | target = retrain; 0.5 = cannot tell |
| confidence-SVC | share of D_f predicted non-member | higher = more forgotten; target = retrain |
| epsilon-vs-retrain | best epsilon telling the model from retrain | 0 = indistinguishable |
| linear probe | forget-test accuracy of a probe on features | target = retrain |

Shares and accuracies are fractions in [0, 1]; epsilon is a log-ratio (0 = indistinguishable).""",
    """
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mnemonic_mu import notebook_stages as stages, pipeline, plots
from mnemonic_mu.algorithms.attacks import sample_statistics
from mnemonic_mu.runtime import setup
from mnemonic_mu.settings import Settings""",
    [
        md("## Inputs and attacks\n`compute_membership` loads the four models (original, unlearned, retrain, and the model trained without codes) and runs the attacks."),
        code(
            """
data = pipeline.load_data(cfg)
art = stages.compute_membership(cfg, data)
models = art.extras["models"]
attacks = art.result["attacks"]
print("attacks module available:", attacks is not None)"""
        ),
        md(
            """
## Distributions
Loss, softmax entropy and true-class confidence on retain-train (D_r), forget-train (D_f),
retain-test and forget-test. After forgetting, the forget curves should look like retrain's."""
        ),
        code(
            """
groups = stages.sample_groups(data, cfg.forget_classes)
stats = {role: {g: sample_statistics(m, *xy) for g, xy in groups.items()} for role, m in models.items()}
features = ("loss", "entropy", "confidence")
fig, axes = plt.subplots(len(features), len(models), figsize=(4 * len(models), 2.6 * len(features)), squeeze=False)
for col, role in enumerate(models):
    for row, feat in enumerate(features):
        ax = axes[row, col]
        shown = {g: np.log10(v[feat] + 1e-8) if feat != "confidence" else v[feat] for g, v in stats[role].items()}
        bins = np.histogram_bin_edges(np.concatenate(list(shown.values())), bins=40)  # shared by the groups
        for g, v in shown.items():
            ax.hist(v, bins=bins, density=True, histtype="step", label=g)
        ax.set_xlabel(f"log10 {feat}" if feat != "confidence" else feat, fontsize=8)
        if row == 0:
            ax.set_title(role)
axes[0, 0].legend(fontsize=7)
fig.tight_layout()
plots.savefig(fig, cfg, "05_membership_distributions")
plt.show()"""
        ),
        code(
            """
pd.DataFrame({(role, g): {f: float(np.mean(v[f])) for f in features} for role in stats for g, v in stats[role].items()}).T.round(3)"""
        ),
        md("## The five attacks\nEach row beside the retrain reference: the target is retrain's value, not an extreme."),
        code(
            """
table = pd.DataFrame({role: {name: a["value"] for name, a in res.items()} for role, res in attacks.items()})
table["direction"] = [a["direction"] for a in attacks["retrain"].values()]
table"""
        ),
        code(
            """
values = table.drop(columns="direction").astype(float)
fig, ax = plt.subplots(figsize=(8, 3))
values.plot.bar(ax=ax, rot=0)
ax.set_ylabel("attack value")
ax.legend(fontsize=8)
plots.savefig(fig, cfg, "05_membership_attacks")
plt.show()"""
        ),
        code(
            """
metrics_path = plots.write_metrics(cfg, "05_membership_evaluation", {"key": art.key, **art.result})"""
        ),
        md(
            """
## Summary
* Read each attack against retrain's value: a method is good when it is indistinguishable from
  retrain, not when a score is extreme.
* The linear probe asks whether the class was removed from the features or only hidden at the
  head: a high probe accuracy with E_F = 100 means "hidden".

## Exercises
1. Why is the paper's train-vs-test loss check at chance even for the original model?
2. Which attacks move after forgetting, and which stay where the original was? What does that
   say about where the step acts (compare `03_fisher`'s $\\eta$ per layer)?
3. Rerun with `step = "paper"` (the paper's fixed-lambda step): does the unlearned model move closer to
   retrain, or further from it?"""
        ),
    ],
)

# --------------------------------------------------------------------------
# 06

build(
    "06_report",
    """
# 06 · Report

**Stage 6 of 6.** Needs `02_training`, `04_unlearning` and `05_membership_evaluation`.

The page to read first: one table comparing the original model, the unlearned model and the
retrain reference (and the baseline methods of `mnemonic_mu.algorithms.methods`, when the kit has them),
the key figures, and the settings of this run. Accuracies are percentages on the test split
(`_train`: on the training split); **gap to retrain** is the mean absolute difference to
retrain over A_R, E_F, A_R_train, E_F_train and the MIA score (confidence-SVC "MIA-efficacy"
x 100; lower is better). Every method also gets the five attacks of `05_membership_evaluation`,
each against the same retrain reference.""",
    """
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Image, display

from mnemonic_mu import notebook_stages as stages, pipeline, plots
from mnemonic_mu.runtime import setup
from mnemonic_mu.settings import Settings""",
    [
        md(
            """
## The summary
`compute_report` collects the results of stages 02, 04 and 05 and runs the baselines named in
`baselines` from the same trained models (each chooses its hyperparameters on the validation
split; their time includes that search). It becomes `metrics/summary.json` of the run; the
report's index page shows the same table."""
        ),
        code(
            """
art = stages.compute_report(cfg)
summary = art.result
metrics_path = plots.write_metrics(cfg, "summary", summary)
plots.summary_table(summary)"""
        ),
        code(
            """
for name, row in summary["methods"].items():
    for warning in row.get("warnings", []):
        print(f"{name}: WARNING: {warning}")
m = summary["methods"]["mnemonic"]
print(f"mnemonic: {m['backward_passes']} backward passes, {m['forget_seconds'] * 1000:.1f} ms, "
      f"lambda1={m['lambda1']:g}, lambda2={m['lambda2']:g}, step={m['step']}, sign {m['sign']}")"""
        ),
        md(
            """
### Every attack, every method
Rows are methods, columns the five attacks (fractions, epsilon a log-ratio). Read each
column against the `retrain` row: entropy-LR lower = more forgotten, confidence-SVC higher =
more forgotten, loss-LR-CV and the linear probe target retrain's value, epsilon-vs-retrain
0 = indistinguishable from retrain."""
        ),
        code("plots.attack_table(summary)"),
        md("## Key figures"),
        code(
            """
table = plots.summary_table(summary)
fig, ax = plt.subplots(figsize=(7, 3))
table[["A_R", "E_F"]].plot.bar(ax=ax, rot=0)
ax.set_ylabel("%")
ax.set_ylim(0, 105)
plots.savefig(fig, cfg, "06_report_methods")
plt.show()"""
        ),
        code(
            """
for name in ("04_unlearning_per_class", "03_fisher_approximation", "05_membership_attacks"):
    path = cfg.run_path / "figures" / f"{name}.png"
    if path.is_file():
        print(name)
        display(Image(filename=str(path)))"""
        ),
        md("## Settings of this run\nThe parameters and the key of every stage artifact (under `cache_dir/stages/`)."),
        code(
            """
keys = {stage: stages.stage_key(cfg, stage) for stage in stages.NOTEBOOKS[:-1]}
metrics_path = plots.write_metrics(cfg, "06_report", {"config": cfg.to_dict(), "stage_keys": keys})
pd.Series(cfg.to_dict() | {f"key {s}": k for s, k in keys.items()}, dtype=object).to_frame("value")"""
        ),
        md(
            """
## Summary
* Compare every method with **retrain**, not with extremes: the gap column says how far each is.
* The mnemonic method's time is the forgetting step alone; retrain's is a full training run.
* Where the sign test tied or a forget code survived, a warning is printed above.

## Exercises
1. Run `mnemonic-mu report -p forget_classes=[3] --run forget3` and compare the two reports.
2. Run three seeds (`-p seed=1`, `-p seed=2`) and report mean ± std of A_R and E_F.
3. Which baseline (if present) comes closest to retrain, and at what cost in time?"""
        ),
    ],
)
