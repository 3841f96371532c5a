"""Self-describing, pickle-free checkpoints: ``model.safetensors`` + ``model.json``.

The JSON says everything needed to use the weights correctly: the model config (to rebuild the
network), the FeatureSchema of the training features (names, dims, extractor versions, config
hash: compared with the features to score), the normalisation statistics, what data it was
trained on, the metrics it reached and the mmpipe version. Loading is strict (every tensor must
match by name and shape); anything wrong is a one-line ``ModelError``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import core
from core.errors import ModelError
from core.files import atomic_write
from mmlatch.data import Normalisation
from mmlatch.inference import resolve_device
from mmlatch.model import MMLatch, ModelConfig
from pipeline.schema import FeatureSchema

STARTER_DIR = Path(__file__).resolve().parent / "starter"  # the model installed with mmpipe
FORMAT = "mmpipe-mmlatch"
FORMAT_VERSION = 1
WEIGHTS, META = "model.safetensors", "model.json"


def default_checkpoint() -> Path:
    """The starter model installed with the package (``mmlatch/starter/``)."""
    if not (STARTER_DIR / "model.json").is_file() or not (STARTER_DIR / "model.safetensors").is_file():
        raise ModelError(
            "no default model is installed (mmlatch/starter/ has no model.json + model.safetensors); "
            "pass --checkpoint DIR, or train one with `mmpipe train`"
        )
    return STARTER_DIR


@dataclass
class LoadedCheckpoint:
    model: MMLatch  # in eval mode, on the requested device
    config: ModelConfig
    schema: FeatureSchema
    normalisation: Normalisation | None
    metadata: dict[str, Any] = field(default_factory=dict)  # training, metrics, version, created
    path: Path | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def checkpoint_paths(dir_or_path: str | Path) -> tuple[Path, Path]:
    """A directory holds model.safetensors + model.json; ``x.safetensors`` / ``x.json`` pair up."""
    p = Path(dir_or_path)
    if p.suffix in (".safetensors", ".json"):
        return p.with_suffix(".safetensors"), p.with_suffix(".json")
    return p / WEIGHTS, p / META


def save_checkpoint(
    dir_or_path: str | Path,
    model: MMLatch,
    model_config: ModelConfig,
    feature_schema: FeatureSchema,
    normalisation: Normalisation | None,
    training: dict[str, Any],
    metrics: dict[str, Any],
) -> Path:
    """Write weights then JSON, each atomically; returns the checkpoint location (dir or .json)."""
    weights_path, meta_path = checkpoint_paths(dir_or_path)
    dims = model_config.dims
    if dims != feature_schema.dims:
        raise ModelError(f"model input sizes {dims} do not match the feature schema {feature_schema.dims}")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mmpipe_version": core.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model_config": model_config.to_dict(),
        "feature_schema": feature_schema.to_dict(),
        "normalisation": normalisation.to_dict() if normalisation is not None else None,
        "training": training,
        "metrics": metrics,
    }
    text = json.dumps(meta, indent=1, sort_keys=True, allow_nan=True)
    atomic_write(weights_path, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    atomic_write(meta_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return meta_path.parent if meta_path.name == META else meta_path


def load_checkpoint(
    path: str | Path,
    expect_schema: FeatureSchema | None = None,
    device: str | torch.device | None = None,
) -> LoadedCheckpoint:
    weights_path, meta_path = checkpoint_paths(path)
    where = str(path)
    if not Path(path).exists():
        raise ModelError("checkpoint not found", where)
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise ModelError(f"checkpoint is incomplete: {p.name} is missing", where)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{meta_path.name} is not readable JSON ({exc})", where) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{meta_path.name} is not an mmpipe MMLatch checkpoint", where)
    if int(meta.get("format_version", -1)) > FORMAT_VERSION:
        raise ModelError(
            f"checkpoint format v{meta.get('format_version')} is newer than this mmpipe reads (v{FORMAT_VERSION})", where
        )
    try:
        config = ModelConfig.from_dict(meta["model_config"])
        schema = FeatureSchema.from_dict(meta["feature_schema"])
        norm = Normalisation.from_dict(meta["normalisation"]) if meta.get("normalisation") else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{meta_path.name} is malformed ({type(exc).__name__}: {exc})", where) from None
    if config.dims != schema.dims:
        raise ModelError(f"model input sizes {config.dims} disagree with its feature schema {schema.dims}", where)
    if norm is not None and any(norm.mean[m].shape != (d,) for m, d in schema.dims.items()):
        raise ModelError("normalisation statistics do not match the feature dims", where)
    if expect_schema is not None:
        problems = schema.differences(expect_schema)
        if problems:
            raise ModelError(f"features do not fit this model: {'; '.join(problems)}", where)

    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{weights_path.name} is unreadable or corrupt ({str(exc).splitlines()[0]})", where) from None
    model = MMLatch(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise ModelError(f"weights do not fit the model config ({detail[:300]})", where) from None
    model.to(resolve_device(device)).eval()
    metadata = {k: meta.get(k) for k in ("training", "metrics", "mmpipe_version", "created", "format_version")}
    return LoadedCheckpoint(model, config, schema, norm, metadata, Path(path))
