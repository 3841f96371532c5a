"""Outcome records of a batch run: one-line failures, which errors are retried, and records
that survive the trip to a worker process and back."""

from __future__ import annotations

import pickle

from core.errors import InputError, TransientError
from pipeline.backfill import outcomes_for_lost_batch
from pipeline.outcomes import Failure, TransientBatchError, VideoOutcome, is_transient


def test_failure_records_are_one_line_and_classified():
    err = InputError("not a readable media file\n(details)", "/v/broken.mp4")
    f = Failure.from_exception("/v/broken.mp4", err)
    assert (f.error_type, f.message, f.transient) == ("InputError", "not a readable media file", False)
    t = Failure.from_exception("/v/a.mp4", TransientError("disk busy"))
    assert t.transient and is_transient(TransientError("x")) and is_transient(TimeoutError())
    boom = Failure.from_exception("/v/a.mp4", RuntimeError("kaboom\ntraceback..."))
    assert boom.message == "internal error: kaboom" and not boom.transient
    assert not is_transient(ValueError("bad"))


def test_transient_batch_error_survives_pickling_with_its_outcomes():
    outcomes = [
        VideoOutcome("a.mp4", "done", "out/a.parquet", 1.0, 4.0),
        VideoOutcome("b.mp4", "failed", failure=Failure("b.mp4", "TransientError", "disk busy", True)),
    ]
    err = pickle.loads(pickle.dumps(TransientBatchError(outcomes)))
    assert err.transient and [o.status for o in err.outcomes] == ["done", "failed"]
    assert outcomes_for_lost_batch(["a.mp4", "b.mp4"], err) == outcomes
    lost = outcomes_for_lost_batch(["c.mp4"], RuntimeError("worker died"))
    assert lost[0].failure.message == "internal error: worker died"
