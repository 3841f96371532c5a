"""``score``: videos (or an existing feature store) + a checkpoint -> per-utterance and per-video
scores in Parquet/CSV, with the per-video table as an artifact.

The work is ``mmlatch.score``: ``score_videos`` for videos (the same path as ``mmpipe score``:
extraction cached by content, one batched scoring pass), ``score_files`` for a store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from core.config import resolve_config
from core.errors import InputError
from flows.gpu import gpu_slot
from flows.runtime import begin_run
from mmlatch.checkpoint import default_checkpoint
from mmlatch.score import ScoreResult, score_files, score_videos
from pipeline.store import store_files

ARTIFACT_ROWS = 500  # the UI table stays readable; the full scores are in the output file


@flow(name="score")
def score_flow(
    checkpoint: str | None = None,
    out: str = "scores.parquet",
    features: str | None = None,
    videos: str | None = None,
    features_dir: str | None = None,
    config: dict[str, Any] | None = None,
    batch_size: int = 256,
    device: str | None = None,
) -> dict[str, Any]:
    """Score a folder or file of ``videos`` (features extracted and cached in ``features_dir``,
    default: mmpipe's cache) or a feature store (``features``: a folder or one Parquet file),
    with ``checkpoint`` (default: the starter model installed with mmpipe). ``out`` (.parquet or
    .csv) gets one row per utterance; per-video scores go beside it (``scores.videos.parquet``)."""
    begin_run()
    logger = get_run_logger()
    if (features is None) == (videos is None):
        raise InputError("give either features (a feature store) or videos (a video or a folder of videos)")
    failures: list[dict[str, str]] = []
    extraction: dict[str, int] | None = None
    with gpu_slot():
        if videos is not None:
            run = score_videos([videos], checkpoint, features_dir, resolve_config(config), batch_size=batch_size,
                               device=device, on_failure=lambda v: logger.warning("%s", v.error))
            failures = [{"video": v.video, "error": v.error or ""} for v in run.failures]
            cached = sum(bool(v.extraction.get("cached")) for v in run.scored)
            extraction = {"videos": len(run.videos), "extracted": len(run.scored) - cached, "cached": cached,
                          "failed": len(failures)}
            if run.result is None:
                raise InputError(f"no video could be scored ({len(failures)} failed)", videos)
            result: ScoreResult = run.result
        else:
            files = store_files(features)
            if not files:
                raise InputError("no feature files (*.parquet) found", str(features))
            result = score_files(Path(checkpoint or default_checkpoint()), files, batch_size=batch_size, device=device)
    utterances_out, videos_out = result.write_tables(out)
    create_table_artifact(
        table=result.videos[:ARTIFACT_ROWS],
        key="score-videos",
        description=f"{len(result.videos)} videos, {len(result.utterances)} utterances scored -> {out}",
    )
    logger.info("%d utterances of %d videos scored -> %s", len(result.utterances), len(result.videos), out)
    return {
        "output": str(utterances_out),
        "videos_output": str(videos_out),
        "videos": len(result.videos),
        "utterances": len(result.utterances),
        "extraction": extraction,
        "failed": len(failures),
        "failures": failures,
    }
