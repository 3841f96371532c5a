"""Metrics of a trained checkpoint on one split of a labelled feature store."""

from __future__ import annotations

from pathlib import Path

from core.errors import InputError, ModelError
from mmlatch.checkpoint import LoadedCheckpoint, load_checkpoint
from mmlatch.data import load_dataset
from mmlatch.inference import predict
from mmlatch.labels import SPLIT_ALIASES, SPLITS
from mmlatch.metrics import format_table, regression_metrics


def evaluate(
    checkpoint: Path | LoadedCheckpoint,
    features: Path,
    labels: Path,
    split: str = "test",
    batch_size: int = 256,
    device=None,
) -> dict[str, float]:
    """Metrics (see ``mmlatch.metrics``) plus ``n``, the number of utterances scored."""
    split = SPLIT_ALIASES.get(split.lower(), split)
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r} (use train, valid or test)")
    ckpt = checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_checkpoint(checkpoint, device=device)
    data = load_dataset(features, labels, require=())
    problems = ckpt.schema.differences(data.schema)
    if problems:
        raise ModelError(f"features in {features} do not fit this model: {'; '.join(problems)}", str(ckpt.path))
    indices = data.split_indices(split)
    if len(indices) == 0:
        raise InputError(f"no labelled utterance of the {split!r} split has features in {features}", str(labels))
    device_data = data.normalised(ckpt.normalisation).on(ckpt.device)
    scores = predict(ckpt.model, device_data, indices, batch_size).scores
    metrics = regression_metrics(scores, data.labels[indices])
    metrics["n"] = float(len(indices))
    return metrics


def evaluation_table(metrics: dict[str, float], split: str = "test", title: str | None = None) -> str:
    n = int(metrics.get("n", 0))
    return format_table({f"{split} (n={n})": metrics}, title=title)
