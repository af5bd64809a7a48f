import json

import pytest
import torch

from mnemonic_mu.algorithms.codes import generate_codes
from mnemonic_mu.algorithms.metrics import accuracy, evaluate
from mnemonic_mu.algorithms.models import build_model
from mnemonic_mu.algorithms.train import TrainConfig, train_model
from mnemonic_mu.errors import CheckpointError, ConfigError
from mnemonic_mu.io.checkpoint import CODES_FILE, MODEL_FILE, load_checkpoint, save_checkpoint


def _config(ds):
    return {"model": "mlp", "input_shape": list(ds.input_shape), "num_classes": ds.num_classes, "dataset": ds.name}


def test_checkpoint_round_trip_and_tamper_detection(tmp_path, tiny_trained, tiny_dataset):
    model, codes = tiny_trained
    folder = save_checkpoint(tmp_path / "ck", model, codes, _config(tiny_dataset), {"train": tiny_dataset.train_index})
    ck = load_checkpoint(folder, expect={"dataset": "synthetic"})
    for (n, a), b in zip(model.state_dict().items(), ck.model.state_dict().values()):
        assert torch.equal(a, b), n
    assert torch.equal(ck.codes, codes)
    assert torch.equal(ck.splits["train"], tiny_dataset.train_index)
    assert (folder / CODES_FILE).stat().st_mode & 0o777 == 0o600
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {MODEL_FILE, CODES_FILE}

    with pytest.raises(CheckpointError, match="dataset"):
        load_checkpoint(folder, expect={"dataset": "mnist"})
    # flip one byte of the weights: the sha256 check must refuse the file
    blob = bytearray((folder / MODEL_FILE).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (folder / MODEL_FILE).write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(folder)


def test_training_is_deterministic_and_learns(tiny_dataset):
    def run():
        codes = generate_codes(4, tiny_dataset.input_shape, "uniform", seed=1)
        m = build_model("mlp", tiny_dataset.input_shape, 4, seed=1)
        res = train_model(m, tiny_dataset, codes, TrainConfig(epochs=10, batch_size=32, lr=0.01, t_mix=0.3, seed=1))
        return m, res

    (m1, r1), (m2, r2) = run(), run()
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert r1.history["loss"] == r2.history["loss"]
    assert r1.history["loss"][-1] < r1.history["loss"][0]
    assert abs(r1.replaced_fraction - 0.3) < 0.08
    assert evaluate(m1, tiny_dataset, [0])["test_accuracy"] > 60


def test_retrain_reference_never_sees_excluded_class(tiny_dataset):
    codes = generate_codes(4, tiny_dataset.input_shape, "normal", seed=0)
    m = build_model("mlp", tiny_dataset.input_shape, 4, seed=0)
    cfg = TrainConfig(epochs=15, batch_size=32, lr=0.05, t_mix=0.1, exclude_classes=(2,))
    res = train_model(m, tiny_dataset, codes, cfg)
    assert res.n_train == int((tiny_dataset.y_train != 2).sum())
    ev = evaluate(m, tiny_dataset, [2])
    assert ev["E_F"] == 100.0 and ev["A_R"] > 80


def test_cnn_and_resnet_train_step(tiny_dataset):
    for name in ("cnn", "resnet18"):
        m = build_model(name, (1, 8, 8), 4, seed=0)
        codes = generate_codes(4, (1, 8, 8), "normal", 0)
        res = train_model(m, tiny_dataset, codes, TrainConfig(epochs=1, batch_size=64, t_mix=0.3, eval_every=0))
        assert len(res.history["loss"]) == 1 and res.history["loss"][0] > 0


@pytest.mark.parametrize("kw", [dict(epochs=0), dict(t_mix=1.5), dict(lr=0.0), dict(batch_size=0)])
def test_train_config_validation(kw):
    with pytest.raises(ConfigError):
        TrainConfig(**kw)


def test_bf16_and_channels_last_are_options_with_their_own_keys(tiny_dataset):
    """Each option is tested by what it guarantees, never by where a long run ends up (40 epochs
    at lr 0.1 on a tiny set end tens of points apart from one CPU to the next):

    * channels_last changes the memory layout only: the same weights up to rounding;
    * bf16 autocast rounds the forward pass: its first updates are fp32's within bf16's
      precision, and on an easy problem it learns with a wide margin;
    * both are part of the model's key, and the keys of fp32 models did not change.

    How close bf16 comes to fp32's accuracy after a full run is measured on real data by the
    benchmark item `precision` (docs/performance.md), not asserted here."""
    from mnemonic_mu.io import store
    from mnemonic_mu.settings import Settings

    codes = generate_codes(tiny_dataset.num_classes, tiny_dataset.input_shape, "uniform", seed=0)

    def run(model_name, epochs, lr=0.05, **extra):
        cfg = TrainConfig(epochs=epochs, batch_size=32, lr=lr, t_mix=0.1, seed=0, eval_every=0, **extra)
        model = build_model(model_name, tiny_dataset.input_shape, tiny_dataset.num_classes, seed=0)
        start = [p.detach().clone() for p in model.parameters()]
        result = train_model(model, tiny_dataset, codes, cfg)
        step = torch.cat([(p.detach() - p0).flatten() for p, p0 in zip(model.parameters(), start)])
        return cfg, model, result, step

    # channels_last: 2 epochs (16 SGD steps), the same weights as the default layout
    cfg_fp32, plain, _, _ = run("cnn", 2)
    cfg_last, last, _, _ = run("cnn", 2, channels_last=True)
    for (n, a), b in zip(plain.state_dict().items(), last.state_dict().values()):
        torch.testing.assert_close(a, b.contiguous(), rtol=1e-3, atol=1e-5, msg=n)
    # bf16, one epoch (8 steps): the weights moved as fp32's did, within bf16's rounding (8 bits
    # of mantissa, relative error about 0.4 % per operation; measured 1.5-3 % over 8 steps on
    # seeds 0-2); a bf16 run that ignored autocast would give exactly 0, a broken one about 1
    _, _, _, step32 = run("cnn", 1)
    cfg_bf16, _, _, step16 = run("cnn", 1, precision="bf16")
    rel = float((step16 - step32).norm() / step32.norm())
    assert 1e-4 < rel < 0.1, rel
    # bf16 learns an easy problem (MLP, 10 epochs; chance is 25 %): measured 95.8-100 % on
    # seeds 0-5 at 1 and 2 threads, the loss falling to a tenth to a fifth of its start
    _, model16, res16, _ = run("mlp", 10, precision="bf16")
    assert accuracy(model16, *tiny_dataset.split("test")) > 80
    assert res16.history["loss"][-1] < 0.5 * res16.history["loss"][0], res16.history["loss"]
    s = Settings(dataset="synthetic", model="cnn")
    cfgs = {"fp32": cfg_fp32, "channels_last": cfg_last, "bf16": cfg_bf16}
    keys = {name: store.model_key(s, tiny_dataset, cfg) for name, cfg in cfgs.items()}
    assert len(set(keys.values())) == 3
    assert "precision" not in cfg_fp32.to_dict() and "channels_last" not in cfg_fp32.to_dict()  # fp32 keys kept
    with pytest.raises(ConfigError, match="ensemble"):
        Settings(trainer="ensemble", precision="bf16")
