"""``score``: features (or videos, extracted first) + a checkpoint -> per-utterance and
per-video scores in Parquet/CSV, with the per-video table as an artifact
(``mmlatch.score.score_files``; videos go through the ``backfill`` flow first)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.backfill import backfill_flow
from flows.gpu import gpu_slot
from pipeline.errors import InputError
from pipeline.store import store_files

ARTIFACT_ROWS = 500  # the UI table stays readable; the full scores are in the output file


def videos_path(out: str | Path) -> Path:
    """Per-video scores go beside the per-utterance file: scores.parquet -> scores.videos.parquet."""
    out = Path(out)
    return out.with_name(f"{out.stem}.videos{out.suffix}")


@flow(name="score")
def score_flow(
    checkpoint: str | None = None,
    out: str = "scores.parquet",
    features: str | None = None,
    videos: str | None = None,
    features_dir: str | None = None,
    config: dict[str, Any] | None = None,
    workers: int = 1,
    batch_size: int = 256,
    device: str | None = None,
) -> dict[str, Any]:
    """Score a feature store (``features``: a folder or one Parquet file) or a folder of
    ``videos``, which are first backfilled into ``features_dir`` (default: next to ``out``),
    with ``checkpoint`` (default: the starter model installed with mmpipe).
    ``out`` (.parquet or .csv) gets one row per utterance; per-video scores go beside it
    (``scores.videos.parquet``)."""
    from mmlatch.score import score_files

    logger = get_run_logger()
    if (features is None) == (videos is None):
        raise InputError("give either features (a feature store) or videos (a folder to extract first)")
    extraction = None
    if videos is not None:
        features = features_dir or str(Path(out).parent / "features")
        extraction = backfill_flow(videos, features, config=config, workers=workers)
    files = store_files(features)
    if not files:
        raise InputError("no feature files (*.parquet) found", str(features))
    if checkpoint is None:
        from mmlatch.score_command import default_checkpoint

        checkpoint = str(default_checkpoint())
    with gpu_slot():
        result = score_files(Path(checkpoint), files, batch_size=batch_size, device=device)
    utterances_out = result.write(Path(out), level="utterances")
    videos_out = result.write(videos_path(out), level="videos")
    rows = list(result.videos)
    create_table_artifact(
        table=rows[:ARTIFACT_ROWS],
        key="score-videos",
        description=f"{len(rows)} videos, {len(result.utterances)} utterances scored -> {out}",
    )
    logger.info("%d utterances of %d videos scored -> %s", len(result.utterances), len(rows), out)
    return {
        "output": str(utterances_out),
        "videos_output": str(videos_out),
        "videos": len(rows),
        "utterances": len(result.utterances),
        "extraction": extraction,
    }
