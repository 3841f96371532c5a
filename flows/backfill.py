"""``backfill``: a folder of videos -> a Parquet file for every video not yet done.

Wraps ``pipeline.batch``: discovery, batching, failure records and the skip-if-done rule all
live there (``pipeline.batch.backfill`` is the same job without Prefect). This flow adds a
bounded window of batch tasks on a thread / process-pool / Dask task runner, retries for
transient errors only, a GPU slot per device, and a table artifact of the failures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.gpu import gpu_slot
from flows.lifetime import owned_processes
from flows.runtime import (
    EXTRACTION_TASK_OPTIONS,
    make_task_runner,
    runner_label,
    shared_api_for_workers,
    submit_windowed,
)
from pipeline.batch import (
    BackfillReport,
    VideoOutcome,
    claim_outputs,
    discover_videos,
    make_batches,
    outcomes_for_lost_batch,
    plan_batch_size,
    process_batch,
    resolve_config,
    sweep_stale_temp_files,
    write_failures_log,
)
from pipeline.config import ExtractConfig
from pipeline.files import writable_folder

WINDOW_PER_WORKER = 2  # batch task runs in flight per worker: one running, one queued


@task(name="extract-batch", task_run_name="batch {label}", **EXTRACTION_TASK_OPTIONS)
def extract_batch(
    videos: list[str], out_dir: str, config: dict, root: str, force: bool = False, label: str = ""
) -> list[VideoOutcome]:
    logger = get_run_logger()
    outcomes = process_batch(
        videos, out_dir, ExtractConfig.from_dict(config), root, force, guard=gpu_slot, raise_transient=True
    )
    for o in outcomes:
        if o.failure is not None:
            logger.warning("%s failed: %s", Path(o.video).name, o.failure.message)
        elif o.status == "elsewhere":
            logger.info("%s is being extracted by another run; left to it", Path(o.video).name)
        else:
            logger.info("%s %s in %.1fs", Path(o.video).name, o.status, o.seconds)
    return outcomes


@flow(name="backfill", log_prints=True)
def backfill_flow(
    input_dir: str,
    out_dir: str = "features",
    patterns: list[str] | str | None = None,
    config: dict[str, Any] | None = None,
    workers: int = 1,
    dask: str | None = None,
    force: bool = False,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Extract every video under ``input_dir`` whose features in ``out_dir`` are missing or stale.

    ``config``: extraction settings as sections or dotted keys ({"facial.fps": 5}).
    ``workers``: parallel batch tasks. ``dask``: "local" for a local Dask cluster of ``workers``
    processes, or the address of an existing scheduler. Returns the run's counts and failures.
    """
    logger = get_run_logger()
    t0 = time.perf_counter()
    cfg = resolve_config(config)
    videos = discover_videos(input_dir, patterns, exclude=[out_dir])
    writable_folder(out_dir)
    sweep_stale_temp_files(out_dir)
    videos, clashing = claim_outputs(videos, out_dir, input_dir)
    batches = make_batches([str(v) for v in videos], batch_size or plan_batch_size(len(videos), workers))
    report = BackfillReport(str(input_dir), str(out_dir), workers=workers, runner=runner_label(workers, dask),
                            outcomes=clashing)
    logger.info("%d videos in %d batches on %s", len(videos), len(batches), report.runner)

    if batches:
        numbered = list(enumerate(batches, 1))

        def parameters(item: tuple[int, list[str]]) -> dict[str, Any]:
            n, batch = item
            first = Path(batch[0]).name + (f" +{len(batch) - 1}" if len(batch) > 1 else "")
            return {
                "videos": batch, "out_dir": str(out_dir), "config": cfg.to_dict(),
                "root": str(input_dir), "force": force, "label": f"{n}/{len(batches)} {first}",
            }

        # owned_processes: the pool's or local cluster's workers end with this process, also
        # when the flow runs under a Prefect worker or `mmpipe serve` rather than the CLI.
        with owned_processes(), shared_api_for_workers(), make_task_runner(workers, dask) as runner:
            for (n, batch), future in submit_windowed(
                runner, extract_batch, numbered, parameters, WINDOW_PER_WORKER * max(1, workers)
            ):
                try:
                    outcomes = future.result()
                except Exception as err:  # retries used up or a worker died: record, go on
                    outcomes = outcomes_for_lost_batch(batch, err)
                report.outcomes.extend(outcomes)
                logger.info("batch %d/%d finished (%d/%d videos)", n, len(batches), len(report.outcomes), len(videos) + len(clashing))

    report.wall_s = time.perf_counter() - t0
    log_path = write_failures_log(report)
    publish_report(report)
    logger.info("%s; failures log: %s", report.summary_line(), log_path)
    return report.to_dict()


def publish_report(report: BackfillReport) -> None:
    """The failure table (video, error, cause) as the run's artifact, plus a one-glance summary."""
    rows = report.failure_rows() or [{"video": "", "error_type": "", "message": "no failures", "transient": False}]
    create_table_artifact(
        table=rows,
        key="backfill-failures",
        description=f"Backfill of {report.input_dir}: {report.summary_line()}",
    )
    c = report.counts()
    create_markdown_artifact(
        key="backfill-summary",
        markdown=(
            f"### Backfill of `{report.input_dir}` -> `{report.out_dir}`\n\n"
            f"| videos | extracted | up to date | failed | wall s | videos/min | x real time |\n"
            f"|---|---|---|---|---|---|---|\n"
            f"| {c['videos']} | {c['done']} | {c['skipped']} | {c['failed']} | {report.wall_s:.1f} "
            f"| {report.videos_per_min:.1f} | {report.realtime_factor:.2f} |\n"
        ),
        description=report.summary_line(),
    )
