"""``backfill``: a folder of videos -> a Parquet file for every video not yet done.

The work is ``pipeline.backfill.backfill`` (discovery, refused shared outputs, batching, the
failures log, the skip-if-done rule); this flow hands it a way to run the batches: Prefect tasks
on a thread / process-pool / Dask task runner, at most a window of them in flight, retried on
transient errors only, with a GPU slot per device, plus a table artifact of the failures. The
task runner's worker processes are tied to this run (``flows.lifetime``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.gpu import gpu_slot
from flows.lifetime import owned_processes
from flows.runtime import (
    EXTRACTION_TASK_OPTIONS,
    begin_run,
    make_task_runner,
    runner_label,
    shared_api_for_workers,
    submit_windowed,
)
from pipeline.backfill import IN_FLIGHT, Batch, backfill, outcomes_for_lost_batch
from pipeline.outcomes import FAILURES_LOG, BackfillReport, VideoOutcome

WINDOW_PER_WORKER = 2  # batch task runs in flight per worker: one running, one queued


@task(name="extract-batch", task_run_name="batch {batch.label}", **EXTRACTION_TASK_OPTIONS)
def extract_batch(batch: Batch) -> list[VideoOutcome]:
    begin_run()  # a process-pool or Dask worker's process: set up like the flow's
    logger = get_run_logger()
    outcomes = batch.run(guard=gpu_slot, raise_transient=True)
    for o in outcomes:
        if o.failure is not None:
            logger.warning("%s failed: %s", Path(o.video).name, o.failure.message)
        elif o.status == "elsewhere":
            logger.info("%s is being extracted by another run; left to it", Path(o.video).name)
        else:
            logger.info("%s %s in %.1fs", Path(o.video).name, o.status, o.seconds)
    return outcomes


def task_runner_batches(workers: int, dask: str | None):
    """Run batches as ``extract_batch`` tasks; a batch whose task failed for good (retries used
    up, a worker died) is recorded video by video, and the rest carries on."""

    def run(batches: Iterator[Batch]) -> Iterator[tuple[Batch, list[VideoOutcome]]]:
        logger = get_run_logger()
        with owned_processes(), shared_api_for_workers(), make_task_runner(workers, dask) as runner:
            window = WINDOW_PER_WORKER * max(1, workers)
            for batch, future in submit_windowed(runner, extract_batch, batches, lambda b: {"batch": b}, window):
                try:
                    outcomes = future.result()
                except Exception as err:  # retries used up or a worker died: record, go on
                    outcomes = outcomes_for_lost_batch(batch.videos, err)
                logger.info("batch %s finished", batch.label)
                yield batch, outcomes

    return run


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
    in_flight: int = IN_FLIGHT,
) -> dict[str, Any]:
    """Extract every video under ``input_dir`` whose features in ``out_dir`` are missing or stale.

    ``config``: extraction settings as sections or dotted keys ({"facial.fps": 5}).
    ``workers``: parallel batch tasks. ``dask``: "local" for a local Dask cluster of ``workers``
    processes, or the address of an existing scheduler. ``in_flight``: videos each worker
    extracts at once. Returns the run's counts and failures.
    """
    begin_run()
    logger = get_run_logger()
    report = backfill(
        input_dir, out_dir, config, patterns, workers, force=force, batch_size=batch_size,
        run_batches=task_runner_batches(workers, dask), runner=runner_label(workers, dask), in_flight=in_flight,
    )
    publish_report(report)
    logger.info("%s; failures log: %s", report.summary_line(), Path(out_dir) / FAILURES_LOG)
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
            f"| videos | extracted | up to date | in another run | failed | wall s | videos/min | x real time |\n"
            f"|---|---|---|---|---|---|---|---|\n"
            f"| {c['videos']} | {c['done']} | {c['skipped']} | {c['elsewhere']} | {c['failed']} | {report.wall_s:.1f} "
            f"| {report.videos_per_min:.1f} | {report.realtime_factor:.2f} |\n"
        ),
        description=report.summary_line(),
    )
