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
import json
import logging
import math
import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from core.config import ExtractConfig
from core.errors import InputError, MmpipeError, OutputError
from core.files import atomic_write, writable_folder
from pipeline.claims import ClaimedElsewhere
from pipeline.extract import extract_video
from pipeline.names import VIDEO_EXTENSIONS, output_path, shared_outputs, video_names

FAILURES_LOG = "failures.json"
MAX_BATCH_SIZE = 16  # videos per task: big enough to amortise task overhead, small enough to balance
BATCHES_PER_WORKER = 4  # aim for this many batches per worker so stragglers even out
STALE_TEMP_AGE_S = 3600.0  # a temp file this old belongs to a writer that died

log = logging.getLogger("mmpipe.backfill")
T = TypeVar("T")
BackfillProgress = Callable[["VideoOutcome", int, int], None]  # (outcome, done, total)
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
) -> tuple[list[Path], list["VideoOutcome"]]:
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


# --------------------------------------------------------------------------- outcomes, failures


_TRANSIENT_BUILTINS = (TimeoutError, ConnectionError, BlockingIOError, InterruptedError)


def is_transient(err: BaseException) -> bool:
    """Worth a retry: the video is fine but something around it hiccuped. Bad input never is."""
    if isinstance(err, MmpipeError):
        return bool(err.transient)
    return isinstance(err, _TRANSIENT_BUILTINS)


@dataclass
class Failure:
    """Why one video produced no features: enough to act on without reading a log."""

    video: str
    error_type: str
    message: str  # one line
    transient: bool = False

    @classmethod
    def from_exception(cls, video: str | os.PathLike, err: BaseException) -> "Failure":
        text = str(err).strip() or type(err).__name__
        line = text.splitlines()[0]
        path = getattr(err, "path", None)
        if path and line.startswith(f"{path}: "):  # the record names the video already
            line = line[len(path) + 2 :]
        if not isinstance(err, MmpipeError):
            line = f"internal error: {line}"
        return cls(str(video), type(err).__name__, line[:500], is_transient(err))


@dataclass
class VideoOutcome:
    video: str
    status: str  # "done" | "skipped" | "elsewhere" (another run has it) | "failed"
    output: str | None = None
    seconds: float = 0.0  # wall time spent on this video
    duration_s: float = 0.0  # media duration
    failure: Failure | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"


class TransientBatchError(MmpipeError):
    """Raised by a batch that hit transient errors, after finishing all its other videos, so an
    orchestrator can retry the batch (the finished videos are then skipped as up to date)."""

    transient = True

    def __init__(self, outcomes: list[VideoOutcome]):
        self.outcomes = outcomes
        bad = [o.failure for o in outcomes if o.failure is not None and o.failure.transient]
        first = bad[0].message if bad else "transient error"
        super().__init__(f"{len(bad)} video(s) hit a transient error, e.g. {first}")

    def __reduce__(self):  # survives pickling across process / Dask boundaries
        return (type(self), (self.outcomes,))


@dataclass
class BackfillReport:
    input_dir: str
    out_dir: str
    outcomes: list[VideoOutcome] = field(default_factory=list)
    wall_s: float = 0.0
    workers: int = 1
    runner: str = "direct"

    def _with(self, status: str) -> list[VideoOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def done(self) -> list[VideoOutcome]:
        return self._with("done")

    @property
    def skipped(self) -> list[VideoOutcome]:
        return self._with("skipped")

    @property
    def elsewhere(self) -> list[VideoOutcome]:
        """Videos another run sharing the output folder was extracting at the time."""
        return self._with("elsewhere")

    @property
    def failures(self) -> list[Failure]:
        return [o.failure for o in self.outcomes if o.failure is not None]

    @property
    def media_s(self) -> float:
        """Seconds of media extracted in this run (skipped videos cost nothing)."""
        return sum(o.duration_s for o in self.done)

    @property
    def videos_per_min(self) -> float:
        return 60.0 * len(self.done) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def realtime_factor(self) -> float:
        """Media seconds extracted per wall-clock second (above 1 = faster than real time)."""
        return self.media_s / self.wall_s if self.wall_s > 0 else 0.0

    def counts(self) -> dict[str, int]:
        return {
            "videos": len(self.outcomes),
            "done": len(self.done),
            "skipped": len(self.skipped),
            "elsewhere": len(self.elsewhere),
            "failed": len(self.failures),
        }

    def failure_rows(self) -> list[dict[str, Any]]:
        return [asdict(f) for f in self.failures]

    def summary_line(self) -> str:
        c = self.counts()
        elsewhere = f"{c['elsewhere']} in progress in another run, " if c["elsewhere"] else ""
        return (
            f"{c['videos']} videos: {c['done']} extracted, {c['skipped']} up to date, {elsewhere}"
            f"{c['failed']} failed in {self.wall_s:.1f}s "
            f"({self.videos_per_min:.1f} videos/min, {self.realtime_factor:.2f}x real time)"
        )

    def failures_table(self) -> str:
        return format_failures(self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_dir": self.input_dir,
            "out_dir": self.out_dir,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "runner": self.runner,
            "workers": self.workers,
            "wall_s": round(self.wall_s, 3),
            **self.counts(),
            "videos_per_min": round(self.videos_per_min, 3),
            "realtime_factor": round(self.realtime_factor, 3),
            "summary": self.summary_line(),
            "failures": self.failure_rows(),
        }


def format_failures(failures: Sequence[Failure]) -> str:
    """Plain-text table: video, error type, cause."""
    if not failures:
        return "no failures"
    rows = [("video", "error", "message")] + [(f.video, f.error_type, f.message) for f in failures]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}" for r in rows)


def write_failures_log(report: BackfillReport, out_dir: str | os.PathLike | None = None) -> Path:
    """The run's failures (and counts) as JSON in the output folder, rewritten every run so a
    video that failed before and now succeeds drops off the list."""
    path = Path(out_dir or report.out_dir) / FAILURES_LOG
    text = json.dumps(report.to_dict(), indent=2)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def read_failures_log(out_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(out_dir) / FAILURES_LOG
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("no failures log (has a backfill run here?)", str(path)) from None


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


# --------------------------------------------------------------------------- config parameters


def resolve_config(value: ExtractConfig | dict | str | os.PathLike | None) -> ExtractConfig:
    """Accept the forms a flow parameter or CLI can carry: a config, a JSON file, a nested dict
    of sections, or dotted overrides such as ``{"facial.fps": 5}`` (both may be mixed)."""
    if value is None:
        return ExtractConfig()
    if isinstance(value, ExtractConfig):
        return value
    try:
        if isinstance(value, (str, os.PathLike)):
            try:
                value = json.loads(Path(value).read_text())
            except FileNotFoundError:
                raise InputError("config file not found", str(value)) from None
        if not isinstance(value, dict):
            raise InputError(f"config must be a JSON object, got {type(value).__name__}")
        nested = {k: v for k, v in value.items() if "." not in k}
        dotted = {k: v for k, v in value.items() if "." in k}
        return ExtractConfig.from_dict(nested).with_overrides(dotted)
    except (ValueError, TypeError) as err:
        raise InputError(f"bad extraction config: {err}") from None


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
) -> list[VideoOutcome]:
    """One batch, one video after another (models stay loaded in this process). With
    ``raise_transient`` a batch that hit transient errors raises ``TransientBatchError`` at the
    end so the caller can retry it."""
    outcomes = [process_video(v, out_dir, config, root, force, guard) for v in videos]
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

    @property
    def label(self) -> str:
        first = Path(self.videos[0]).name + (f" +{len(self.videos) - 1}" if len(self.videos) > 1 else "")
        return f"{self.number}/{self.of} {first}"

    def run(self, guard: Guard | None = None, raise_transient: bool = False) -> list[VideoOutcome]:
        return process_batch(self.videos, self.out_dir, ExtractConfig.from_dict(self.config), self.root,
                             self.force, guard, raise_transient)


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
) -> BackfillReport:
    """Extract every video under ``input_dir`` that has no current output in ``out_dir``.

    The one backfill: discovery, refused shared outputs, batches sized for ``workers``, the
    report and the failures log live here; ``run_batches`` decides where batches run. Failures
    are recorded, never raised.
    """
    t0 = time.perf_counter()
    config = resolve_config(config)
    videos = discover_videos(input_dir, patterns, exclude=[out_dir])
    writable_folder(out_dir)
    sweep_stale_temp_files(out_dir)
    videos, clashing = claim_outputs(videos, out_dir, input_dir)
    groups = make_batches([str(v) for v in videos], batch_size or plan_batch_size(len(videos), workers))
    batches = [
        Batch(tuple(g), str(out_dir), config.to_dict(), str(input_dir), force, n, len(groups))
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
