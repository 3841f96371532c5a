"""What a batch run made of each video: the outcome records, the failures table and log, and
which errors are worth a retry.

A backfill never stops for one bad video: each becomes a ``VideoOutcome`` (done, up to date,
left to another run, or failed with a one-line ``Failure``), the run's ``BackfillReport`` counts
them, and the failures go into ``failures.json`` beside the features, rewritten each run.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from core.errors import InputError, MmpipeError
from core.files import atomic_write

FAILURES_LOG = "failures.json"


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
