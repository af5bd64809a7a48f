"""store.save_trained: a model trained by hand (02_training's written-out cell) is kept under its
key, so the library loads it instead of training it again."""

from __future__ import annotations

import pytest
import torch

from mnemonic_mu import build_model, train_model
from mnemonic_mu.errors import CheckpointError
from mnemonic_mu.io import store
from mnemonic_mu.settings import Settings


def test_a_model_trained_by_hand_is_loaded_not_trained_again(tmp_path):
    cfg = Settings(dataset="synthetic", epochs=2, cache_dir=str(tmp_path))
    data = store.load_data(cfg)
    recipe = cfg.train_config()
    codes = store.generate_codes(data.num_classes, data.input_shape, cfg.code_dist, cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes, seed=cfg.seed)
    result = train_model(model, data, codes, recipe)
    assert not store.is_cached(cfg, data, recipe)
    saved = store.save_trained(cfg, data, recipe, model, codes, result)
    assert saved.config["key"] == store.model_key(cfg, data, recipe) and store.is_cached(cfg, data, recipe)
    loaded, from_cache = store.train_or_load(cfg, data, recipe, torch.device("cpu"))
    assert from_cache
    for (name, a), b in zip(loaded.model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(loaded.codes, codes) and loaded.config["train_seconds"] == result.seconds
    # an ensemble's key promises an ensemble's rounding: a model trained alone is not stored under it
    with pytest.raises(CheckpointError, match="trained alone"):
        store.save_trained(cfg.replace(trainer="ensemble"), data, recipe, model, codes, result)
