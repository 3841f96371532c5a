"""A folder of videos -> Parquet: discovery, batching, failure records, the one backfill.

Everything here is plain Python: ``backfill`` runs from a script as it is, and the Prefect
``backfill`` flow (``flows/backfill.py``) calls the same function, handing it a way to run the
batches as tasks (retries, artifacts, process-pool and Dask task runners).

Incremental and resumable by construction: ``extract_video`` skips a video whose Parquet file
already records the same content hash and feature key, and that file only ever appears through
an atomic rename. So the output folder is its own manifest: a run that is killed half-way leaves
only complete files (plus hidden temp files that nothing reads), and the next run redoes exactly
the videos that have no complete, current output, with no orchestration state needed.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from core.config import ExtractConfig, resolve_config
from core.errors import InputError, OutputError
from core.files import writable_folder
from pipeline.claims import ClaimedElsewhere
from pipeline.extract import extract_video
from pipeline.names import VIDEO_EXTENSIONS, output_path, shared_outputs, video_names
from pipeline.outcomes import (
    BackfillReport,
    Failure,
    TransientBatchError,
    VideoOutcome,
    write_failures_log,
)

# Videos a worker extracts at once: while one video's face track runs, the next one's speech is
# recognised, so a 2-core machine has both cores busy across videos. Each video's features are
# the same whatever runs beside it; memory is that of two extractions.
IN_FLIGHT = 2
MAX_BATCH_SIZE = 16  # videos per task: big enough to amortise task overhead, small enough to balance
BATCHES_PER_WORKER = 4  # aim for this many batches per worker so stragglers even out
STALE_TEMP_AGE_S = 3600.0  # a temp file this old belongs to a writer that died

log = logging.getLogger("mmpipe.backfill")
T = TypeVar("T")
BackfillProgress = Callable[[VideoOutcome, int, int], None]  # (outcome, done, total)
Guard = Callable[[], AbstractContextManager]


# --------------------------------------------------------------------------- discovery, batches


def discover_videos(
    input_dir: str | os.PathLike,
    patterns: Sequence[str] | str | None = None,
    exclude: Iterable[str | os.PathLike] = (),
) -> list[Path]:
    """Video files under ``input_dir`` (recursive), sorted so batches are reproducible.

    Without patterns every file with a common video extension is taken. A pattern without a
    slash matches file names at any depth (``*.mp4``); one with a slash matches the path relative
    to ``input_dir`` (``2024/*/*.mov``). Hidden files and folders and the ``exclude`` folders
    (the output folder when it lies inside the input) are skipped.
    """
    root = check_input_dir(input_dir)
    if isinstance(patterns, str):
        patterns = [patterns]
    excluded = {Path(p).resolve() for p in exclude}
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and (here / d).resolve() not in excluded
        )
        for name in filenames:
            if name.startswith("."):
                continue
            path = here / name
            rel = path.relative_to(root).as_posix()
            if _selected(name, rel, patterns):
                found.append(path)
    return sorted(found)


def check_input_dir(input_dir: str | os.PathLike) -> Path:
    root = Path(input_dir)
    if not root.exists():
        raise InputError("input folder not found", str(root))
    if not root.is_dir():
        raise InputError("is not a folder", str(root))
    return root


def _selected(name: str, rel: str, patterns: Sequence[str] | None) -> bool:
    if not patterns:
        return Path(name).suffix.lower() in VIDEO_EXTENSIONS
    for pattern in patterns:
        if "/" in pattern:
            target, pattern = rel, pattern.removeprefix("./")
        else:
            target = name
        if fnmatch.fnmatchcase(target.lower(), pattern.lower()):  # .MP4 is an .mp4 too
            return True
    return False


def claim_outputs(
    videos: Sequence[Path], out_dir: str | os.PathLike, root: str | os.PathLike | None
) -> tuple[list[Path], list[VideoOutcome]]:
    """Split ``videos`` into those with an output file of their own and those that would share
    one with another input (recorded as failures before any work: nothing is overwritten)."""
    names = video_names(videos)
    outputs = {v: output_path(v, out_dir, root, names[v]) for v in videos}
    clashing: list[VideoOutcome] = []
    for out, group in shared_outputs(outputs):
        for video in group:
            others = ", ".join(str(v) for v in group if v != video)
            err = OutputError(f"would write the same file {out} as {others}; give them separate output folders",
                              str(video))
            clashing.append(VideoOutcome(str(video), "failed", failure=Failure.from_exception(video, err)))
    taken = {Path(o.video) for o in clashing}
    return [v for v in videos if v not in taken], clashing


def plan_batch_size(n_items: int, workers: int, max_size: int = MAX_BATCH_SIZE) -> int:
    """Batches small enough that every worker gets several (load balance), never above max_size
    (so one task never holds hours of work) and never below one."""
    if n_items <= 0:
        return 1
    return max(1, min(max_size, math.ceil(n_items / (max(1, workers) * BATCHES_PER_WORKER))))


def make_batches(items: Sequence[T], batch_size: int) -> list[list[T]]:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    return [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


def sweep_stale_temp_files(out_dir: str | os.PathLike, older_than_s: float = STALE_TEMP_AGE_S) -> int:
    """Delete hidden temp files left by writers killed mid-write. Only old ones: a young temp
    file may belong to a backfill running right now on the same folder."""
    root = Path(out_dir)
    if not root.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for path in root.rglob(".*.tmp"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


# --------------------------------------------------------------------------- the work itself


def process_video(
    video: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: ExtractConfig | None = None,
    root: str | os.PathLike | None = None,
    force: bool = False,
    guard: Guard | None = None,
) -> VideoOutcome:
    """Extract one video and never raise for a bad one: the failure becomes part of the outcome
    so the rest of the batch carries on. ``guard`` wraps the call (a GPU slot in the flows)."""
    t0 = time.perf_counter()
    try:
        with (guard or nullcontext)():
            result = extract_video(video, out_dir, config, force=force, root=root)
    except ClaimedElsewhere:
        return VideoOutcome(str(video), "elsewhere", seconds=time.perf_counter() - t0)
    except Exception as err:  # noqa: BLE001 - one bad video must not stop the batch
        return VideoOutcome(str(video), "failed", seconds=time.perf_counter() - t0,
                            failure=Failure.from_exception(video, err))
    return VideoOutcome(
        str(video),
        "skipped" if result.skipped else "done",
        output=str(result.output),
        seconds=time.perf_counter() - t0,
        duration_s=float(result.summary.get("duration_s") or 0.0),
    )


def process_batch(
    videos: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    config: ExtractConfig | None = None,
    root: str | os.PathLike | None = None,
    force: bool = False,
    guard: Guard | None = None,
    raise_transient: bool = False,
    in_flight: int = 1,
) -> list[VideoOutcome]:
    """One batch in this process (models loaded once), ``in_flight`` videos at a time, outcomes
    in the batch's order. With ``raise_transient`` a batch that hit transient errors raises
    ``TransientBatchError`` at the end so the caller can retry it."""

    def one(video: str | os.PathLike) -> VideoOutcome:
        return process_video(video, out_dir, config, root, force, guard)

    if in_flight > 1 and len(videos) > 1:
        with ThreadPoolExecutor(min(in_flight, len(videos)), thread_name_prefix="mmpipe-video") as pool:
            outcomes = list(pool.map(one, videos))
    else:
        outcomes = [one(v) for v in videos]
    if raise_transient and any(o.failure is not None and o.failure.transient for o in outcomes):
        raise TransientBatchError(outcomes)
    return outcomes


def outcomes_for_lost_batch(videos: Sequence[str | os.PathLike], err: BaseException) -> list[VideoOutcome]:
    """When a whole batch dies (worker crash, retries used up), each of its videos is recorded."""
    if isinstance(err, TransientBatchError):
        return err.outcomes
    return [VideoOutcome(str(v), "failed", failure=Failure.from_exception(v, err)) for v in videos]


@dataclass(frozen=True)
class Batch:
    """Videos one task extracts, one after another in one process (models loaded once)."""

    videos: tuple[str, ...]
    out_dir: str
    config: dict[str, Any]  # ExtractConfig.to_dict(): plain data, so it pickles to any worker
    root: str
    force: bool = False
    number: int = 1
    of: int = 1
    in_flight: int = 1  # videos extracted at once (see IN_FLIGHT)

    @property
    def label(self) -> str:
        first = Path(self.videos[0]).name + (f" +{len(self.videos) - 1}" if len(self.videos) > 1 else "")
        return f"{self.number}/{self.of} {first}"

    def run(self, guard: Guard | None = None, raise_transient: bool = False) -> list[VideoOutcome]:
        return process_batch(self.videos, self.out_dir, ExtractConfig.from_dict(self.config), self.root,
                             self.force, guard, raise_transient, self.in_flight)


# How batches are run: given them in order, yield each with its outcomes as it finishes. The
# default runs them here, one after another; the ``backfill`` flow runs them as Prefect tasks on
# a thread, process-pool or Dask task runner.
BatchRunner = Callable[[Iterator[Batch]], Iterator[tuple[Batch, list[VideoOutcome]]]]


def run_here(batches: Iterator[Batch]) -> Iterator[tuple[Batch, list[VideoOutcome]]]:
    for batch in batches:
        yield batch, batch.run()


def backfill(
    input_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: ExtractConfig | dict | None = None,
    patterns: Sequence[str] | str | None = None,
    workers: int = 1,
    progress: BackfillProgress | None = None,
    force: bool = False,
    batch_size: int | None = None,
    run_batches: BatchRunner = run_here,
    runner: str = "in-process",
    in_flight: int = IN_FLIGHT,
) -> BackfillReport:
    """Extract every video under ``input_dir`` that has no current output in ``out_dir``.

    The one backfill: discovery, refused shared outputs, batches sized for ``workers``, the
    report and the failures log live here; ``run_batches`` decides where batches run (each
    extracting ``in_flight`` videos at a time). Failures are recorded, never raised.
    """
    if in_flight < 1:
        raise InputError(f"in_flight must be at least 1, got {in_flight}")
    t0 = time.perf_counter()
    config = resolve_config(config)
    videos = discover_videos(input_dir, patterns, exclude=[out_dir])
    writable_folder(out_dir)
    sweep_stale_temp_files(out_dir)
    videos, clashing = claim_outputs(videos, out_dir, input_dir)
    groups = make_batches([str(v) for v in videos], batch_size or plan_batch_size(len(videos), workers))
    batches = [
        Batch(tuple(g), str(out_dir), config.to_dict(), str(input_dir), force, n, len(groups), in_flight)
        for n, g in enumerate(groups, 1)
    ]
    report = BackfillReport(str(input_dir), str(out_dir), workers=max(1, workers), runner=runner, outcomes=clashing)
    total = len(videos) + len(clashing)
    log.info("%d videos in %d batches on %s", total, len(batches), runner)
    if batches:
        for batch, outcomes in run_batches(iter(batches)):
            for o in outcomes:
                report.outcomes.append(o)
                if progress:
                    progress(o, len(report.outcomes), total)
    report.wall_s = time.perf_counter() - t0
    write_failures_log(report)
    return report
