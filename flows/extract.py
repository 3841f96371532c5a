"""``extract-video``: one video -> its Parquet feature file (``pipeline.extract.extract_video``)."""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from core.config import resolve_config
from flows.gpu import gpu_slot
from flows.runtime import EXTRACTION_TASK_OPTIONS, begin_run
from pipeline.extract import extract_video


@task(name="extract", **EXTRACTION_TASK_OPTIONS)
def extract_task(video: str, out_dir: str, config: dict, transcript: str | None, force: bool) -> dict[str, Any]:
    with gpu_slot():
        result = extract_video(video, out_dir, resolve_config(config), transcript, force=force)
    return {
        "video": result.video,
        "output": str(result.output),
        "video_id": result.video_id,
        "skipped": result.skipped,
        "summary": result.summary,
        "warnings": list(result.warnings),
    }


@flow(name="extract-video")
def extract_video_flow(
    video: str,
    out_dir: str = "features",
    config: dict[str, Any] | None = None,
    transcript: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Extract one video's word-aligned features; skipped when its output is already current.

    ``config``: extraction settings as sections or dotted keys ({"words.asr_model": "tiny.en"}).
    """
    begin_run()
    return extract_task(video, out_dir, resolve_config(config).to_dict(), transcript, force)
