"""Checkpoints: safetensors + JSON round trip, schema checks, and clear errors for broken files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from core.errors import ModelError
from mmlatch.checkpoint import load_checkpoint, save_checkpoint
from mmlatch.data import Normalisation
from mmlatch.model import MMLatch, ModelConfig
from pipeline.schema import FeatureSchema, ModalitySpec
from tests.synthetic import synthetic_schema

DIMS = {"text": 10, "audio": 6, "vision": 4}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig(text_dim=10, audio_dim=6, vision_dim=4, hidden=8, mask="linear")
    model = MMLatch(config)
    schema = synthetic_schema(DIMS)
    rng = np.random.default_rng(0)
    norm = Normalisation({m: rng.normal(size=d).astype(np.float32) for m, d in DIMS.items()},
                         {m: rng.uniform(0.5, 2, size=d).astype(np.float32) for m, d in DIMS.items()})
    path = save_checkpoint(tmp_path / "ckpt", model, config, schema, norm, {"videos": 3}, {"test": {"mae": 0.7}})
    return path, model, config, schema, norm


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 5, d, generator=g) for d in DIMS.values()], torch.tensor([5, 2, 4])


def test_round_trip_gives_identical_predictions(saved):
    path, model, config, schema, norm = saved
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "model.safetensors"]
    loaded = load_checkpoint(path, expect_schema=schema, device="cpu")
    assert not loaded.model.training
    assert loaded.config == config and loaded.schema == schema
    for m in DIMS:
        np.testing.assert_array_equal(loaded.normalisation.mean[m], norm.mean[m])
        np.testing.assert_array_equal(loaded.normalisation.std[m], norm.std[m])
    assert loaded.metadata["training"] == {"videos": 3} and loaded.metadata["metrics"]["test"]["mae"] == 0.7
    meta = json.loads((path / "model.json").read_text())
    assert meta["mmpipe_version"] and meta["feature_schema"]["modalities"]["audio"]["names"][0] == "audio_0"
    x, lengths = batch()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(*x, lengths), loaded.model(*x, lengths))
    # the .json / .safetensors file itself is accepted too
    assert torch.equal(load_checkpoint(path / "model.json").model(*x, lengths), loaded.model(*x, lengths))


def test_single_file_pair_naming(tmp_path):
    config = ModelConfig(text_dim=10, audio_dim=6, vision_dim=4, hidden=4, feedback=False)
    out = save_checkpoint(tmp_path / "best.safetensors", MMLatch(config), config, synthetic_schema(DIMS), None, {}, {})
    assert (tmp_path / "best.json").is_file() and out == tmp_path / "best.json"
    assert load_checkpoint(tmp_path / "best.json").normalisation is None


def test_schema_mismatch_is_a_clear_error(saved):
    path, *_ = saved
    other = synthetic_schema({**DIMS, "audio": 7})
    with pytest.raises(ModelError, match="features do not fit this model: audio has dim 7, model expects 6"):
        load_checkpoint(path, expect_schema=other)
    mods = dict(other.modalities)
    mods["audio"] = ModalitySpec("librosa-acoustic", "2", 6)
    with pytest.raises(ModelError, match="audio comes from librosa-acoustic v2"):
        load_checkpoint(path, expect_schema=FeatureSchema(mods))


def test_unreadable_checkpoints(saved, tmp_path):
    path, *_ = saved
    with pytest.raises(ModelError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nowhere")
    weights = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ModelError, match="model.safetensors is unreadable or corrupt"):
        load_checkpoint(path)
    (path / "model.safetensors").write_bytes(weights)
    meta = json.loads((path / "model.json").read_text())
    (path / "model.json").write_text(json.dumps({**meta, "model_config": {**meta["model_config"], "hidden": 9}}))
    with pytest.raises(ModelError, match="weights do not fit the model config"):
        load_checkpoint(path)  # strict loading: no silent partial load
    (path / "model.json").write_text(json.dumps({**meta, "model_config": {**meta["model_config"], "layers": 2}}))
    with pytest.raises(ModelError, match="malformed.*unknown model setting"):
        load_checkpoint(path)
    (path / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="not readable JSON"):
        load_checkpoint(path)
    (path / "model.json").unlink()
    with pytest.raises(ModelError, match="model.json is missing"):
        load_checkpoint(path)


def test_model_config_round_trips():
    c = ModelConfig(text_dim=3, mask_dropout_in_eval=True)
    assert ModelConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert dataclasses.asdict(c)["lengths_as_max"] is False
