"""``train``: features + labels -> an MMLatch checkpoint, with the metric table as an artifact
(``mmlatch.train.train``)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from core.errors import InputError
from flows.gpu import gpu_slot
from flows.runtime import begin_run
from mmlatch.train import TrainConfig, train


def train_config(values: dict[str, Any] | None) -> TrainConfig:
    """Flow parameters arrive as JSON: map them onto ``TrainConfig`` and name unknown keys."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"unknown training setting(s): {', '.join(unknown)}")
    if "seeds" in values:
        seeds = values["seeds"]
        values["seeds"] = tuple(int(s) for s in (seeds if isinstance(seeds, (list, tuple)) else [seeds]))
    return TrainConfig(**values)


def _finite(value) -> float | None:
    """NaN (e.g. a correlation over constant predictions) is no JSON: show it as empty."""
    return round(float(value), 4) if value is not None and math.isfinite(float(value)) else None


def metric_rows(summary: dict[str, dict[str, tuple[float, float]]]) -> list[dict[str, Any]]:
    """split -> metric -> (mean, sd) as table rows, one per split and metric."""
    return [
        {"split": split, "metric": metric, "mean": _finite(m), "sd": _finite(s)}
        for split, metrics in summary.items()
        for metric, (m, s) in metrics.items()
    ]


@flow(name="train")
def train_flow(
    features: str,
    labels: str,
    out: str = "model",
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train MMLatch on a feature store and a labels CSV; ``config`` holds TrainConfig fields
    ({"epochs": 20, "seeds": [0, 1, 2]})."""
    begin_run()
    cfg = train_config(config)
    with gpu_slot():
        report = train(Path(features), Path(labels), Path(out), cfg)
    create_table_artifact(
        table=metric_rows(report.summary), key="train-metrics", description=f"checkpoint {report.checkpoint}"
    )
    create_markdown_artifact(markdown=f"```\n{report.table()}\n```", key="train-report")
    return {
        "checkpoint": str(report.checkpoint),
        "best_seed": report.best_seed,
        "device": report.device,
        "counts": report.counts,
        "metrics": metric_rows(report.summary),
    }
