"""The one progress type of mmpipe: ``progress(stage, done, total)``.

Every long-running call (extraction and each of its stages, a backfill, training) reports
through it, so one display serves them all (the CLI's bars, a flow's log) and a library caller
can pass any function or nothing.
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[[str, float, float], None]


def report(progress: Progress | None, stage: str, done: float, total: float) -> None:
    if progress is not None:
        progress(stage, done, total)
