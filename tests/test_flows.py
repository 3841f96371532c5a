"""The Prefect flows in ephemeral mode (no server): backfill outputs, skips, failure artifact,
transient-only retries, resume after SIGKILL, the Dask runner, GPU slots, train and score."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("prefect")

from prefect import flow, task  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import (  # noqa: E402
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

import flows.backfill as fb  # noqa: E402
import pipeline.backfill as backfill_module  # noqa: E402
from core.config import cache_dir  # noqa: E402
from core.errors import InputError, TransientError  # noqa: E402
from flows.backfill import backfill_flow  # noqa: E402
from flows.cli import main  # noqa: E402
from flows.gpu import gpu_slot, limit_name  # noqa: E402
from flows.runtime import retry_if_transient  # noqa: E402
from pipeline.outcomes import FAILURES_LOG  # noqa: E402
from pipeline.store import read_video, store_files  # noqa: E402
from tests.conftest import ROOT, VIDEOS  # noqa: E402
from tests.test_backfill import FAST, GOOD, make_clip_dir, outputs  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def prefect_api():
    """A temporary Prefect API with its own database for this module, started once: the same
    kind of temporary server ephemeral mode starts, but drained and stopped cleanly here rather
    than at interpreter exit (where it would log into pytest's closed capture stream)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


def run_artifacts(flow_run_id) -> dict[str, object]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def run_task_runs(flow_run_id) -> list:
    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def table(artifact) -> list[dict]:
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


@pytest.mark.slow
def test_backfill_flow_outputs_failure_artifact_and_skip_on_rerun(tmp_path):
    clips = make_clip_dir(tmp_path)
    out = tmp_path / "features"
    state = backfill_flow(str(clips), str(out), config=FAST, return_state=True)
    assert state.is_completed()  # one corrupt video does not fail the run
    result = state.result()
    assert outputs(out) == GOOD
    assert (result["videos"], result["done"], result["skipped"], result["failed"]) == (4, 3, 0, 1)
    run_id = state.state_details.flow_run_id
    # One batch task per video here (4 videos, 1 worker); all finished Completed.
    runs = run_task_runs(run_id)
    assert len(runs) == 4 and all(r.state.is_completed() for r in runs)
    artifacts = run_artifacts(run_id)
    (row,) = table(artifacts["backfill-failures"])
    assert row["video"].endswith("broken.mp4") and row["error_type"] == "InputError"
    assert row["message"] and "\n" not in row["message"]
    assert "1 failed" in artifacts["backfill-summary"].description
    assert json.loads((out / FAILURES_LOG).read_text())["failures"][0]["message"] == row["message"]

    mtimes = {p: p.stat().st_mtime_ns for p in store_files(out)}
    again = backfill_flow(str(clips), str(out), config=FAST)
    assert (again["done"], again["skipped"], again["failed"]) == (0, 3, 1)
    assert {p: p.stat().st_mtime_ns for p in store_files(out)} == mtimes


def test_only_transient_errors_are_retried(tmp_path, monkeypatch):
    clips = make_clip_dir(tmp_path)
    (clips / "sub" / "single_face.mp4").unlink()
    (clips / "retalking_face_5.mp4").unlink()
    real = backfill_module.extract_video
    calls: dict[str, int] = {}

    def flaky_once(video, *args, **kwargs):
        """The real extraction, behind a share that drops out on the first attempt."""
        name = Path(video).name
        calls[name] = calls.get(name, 0) + 1
        if name == "single_face.mp4" and calls[name] == 1:
            raise TransientError("network share unavailable", str(video))
        return real(video, *args, **kwargs)

    monkeypatch.setattr(backfill_module, "extract_video", flaky_once)
    monkeypatch.setattr(fb, "extract_batch", fb.extract_batch.with_options(retry_delay_seconds=0))
    result = backfill_flow(str(clips), str(tmp_path / "out"), config=FAST)
    assert calls == {"broken.mp4": 1, "single_face.mp4": 2}  # corrupt: once; transient: retried
    assert (result["done"], result["failed"]) == (1, 1)
    assert result["failures"][0]["error_type"] == "InputError"


def test_retry_condition_reads_the_exception():
    from prefect.states import Completed, Failed

    assert retry_if_transient(None, None, Failed(data=TransientError("busy")))
    assert retry_if_transient(None, None, Failed(data=TimeoutError("slow")))
    assert not retry_if_transient(None, None, Failed(data=InputError("corrupt", "x.mp4")))
    assert not retry_if_transient(None, None, Completed(data=1))


@pytest.mark.slow
def test_killed_backfill_resumes_without_duplicates_or_torn_files(tmp_path):
    clips = make_clip_dir(tmp_path, talk_copies=6)
    out = tmp_path / "features"
    good = len(GOOD) + 6
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # ephemeral mode
    # Its own Prefect home, in folders that do not exist yet, as in a fresh checkout (a CI run
    # once failed here: Prefect makes its home without parents, so its database could not open).
    env["PREFECT_HOME"] = str(tmp_path / "fresh" / "prefect-home")
    cmd = [sys.executable, "-m", "flows.cli", "backfill", str(clips), "--out", str(out), "--workers", "2",
           "--face-fps", "5", "--asr-model", "tiny.en", "--quiet"]  # a process pool, killed with its workers
    log = tmp_path / "killed_run.log"
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                                stdout=log_fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not (out.exists() and store_files(out)):
            assert proc.poll() is None, f"backfill exited before writing anything:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no output within 240 s"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):  # already gone: the assertion above says why
            os.killpg(proc.pid, signal.SIGKILL)  # the run and everything it started, like a crash
        proc.wait(timeout=30)
    before = {p: p.stat().st_mtime_ns for p in store_files(out)}
    assert 1 <= len(before) < good, "the run was not killed half-way"
    for path in before:  # whatever is visible is complete
        assert pq.read_table(path).num_rows > 0

    result = backfill_flow(str(clips), str(out), config=FAST)
    assert (result["skipped"], result["done"], result["failed"]) == (len(before), good - len(before), 1)
    assert outputs(out) == GOOD | {f"talk_{i:02d}.parquet" for i in range(6)}  # each once
    for path in store_files(out):
        assert read_video(path).lengths.sum() > 0
    assert {p: p.stat().st_mtime_ns for p in before} == before  # finished work was not redone
    assert not [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")
                and p.suffix not in (".parquet", ".json")]


@pytest.mark.slow
def test_cli_backfill_on_a_two_worker_dask_cluster(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", os.environ.get("PREFECT_LOGGING_LEVEL", "INFO"))
    clips = make_clip_dir(tmp_path)
    out = tmp_path / "features"
    rc = main(["backfill", str(clips), "--out", str(out), "--workers", "2", "--dask",
               "--face-fps", "5", "--asr-model", "tiny.en", "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 1  # one video failed
    assert "4 videos: 3 extracted, 0 up to date, 1 failed" in printed
    assert "broken.mp4" in printed and "InputError" in printed
    assert outputs(out) == GOOD
    log = json.loads((out / FAILURES_LOG).read_text())
    assert log["runner"] == "dask-local x2" and log["done"] == 3


@task
def gpu_step(key: str, seconds: float) -> tuple[float, float, str | None]:
    with gpu_slot(key) as held:
        start = time.monotonic()
        time.sleep(seconds)
        return start, time.monotonic(), held


@flow
def two_gpu_steps(key: str) -> list:
    with ThreadPoolTaskRunner(max_workers=2) as runner:
        futures = [runner.submit(gpu_step, {"key": key, "seconds": 0.6}) for _ in range(2)]
        return [f.result() for f in futures]


def test_gpu_steps_take_turns_on_one_device_and_cpu_needs_no_slot():
    key = f"test-{uuid.uuid4().hex[:8]}"
    (a0, a1, held), (b0, b1, _) = sorted(two_gpu_steps(key))
    assert held == limit_name(key)
    assert b0 >= a1 - 0.05, "the second GPU step started while the first held the device"
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit_name(key)).limit == 1
    with gpu_slot(None) as none:  # no device: a no-op, no server involved
        assert none is None


def test_train_and_score_flows_publish_artifacts(tmp_path):
    from flows.score import score_flow
    from flows.train import train_flow
    from tests.synthetic import write_synthetic_store

    features, labels = write_synthetic_store(tmp_path / "syn", n_videos=8, utterances_per_video=3, max_words=12)
    state = train_flow(str(features), str(labels), str(tmp_path / "model"),
                       config={"epochs": 1, "hidden": 16, "quiet": True, "seeds": [0]}, return_state=True)
    trained = state.result()
    metrics = table(run_artifacts(state.state_details.flow_run_id)["train-metrics"])
    assert {r["split"] for r in metrics} >= {"valid"} and any(r["metric"] == "mae" for r in metrics)

    state = score_flow(trained["checkpoint"], out=str(tmp_path / "scores.csv"), features=str(features),
                       return_state=True)
    scored = state.result()
    assert scored["videos"] == 8 and scored["utterances"] == 24
    assert len((tmp_path / "scores.csv").read_text().splitlines()) == 25
    assert len((tmp_path / "scores.videos.csv").read_text().splitlines()) == 9
    rows = table(run_artifacts(state.state_details.flow_run_id)["score-videos"])
    assert len(rows) == 8 and all(-3 <= r["score"] <= 3 for r in rows)


@pytest.mark.slow
def test_score_flow_extracts_videos_first_with_a_model_trained_on_them(tmp_path):
    from flows.score import score_flow
    from flows.train import train_flow

    clips = make_clip_dir(tmp_path)
    shutil.rmtree(clips / "sub")
    (clips / "broken.mp4").unlink()
    shutil.copyfile(VIDEOS / "no_face.mp4", clips / "no_face.mp4")
    (clips / "no_face.txt").write_text("Nobody is here.")
    features = tmp_path / "features"
    backfill_flow(str(clips), str(features), config=FAST)
    labels = tmp_path / "labels.csv"
    rows = ["video_id,utterance_id,score,split"]
    for path, split in zip(sorted(store_files(features)), ("test", "train", "valid")):
        data = read_video(path)
        rows += [f"{data.video_id},{u},{0.5 * k - 1},{split}" for k, u in enumerate(data.utterance_ids)]
    labels.write_text("\n".join(rows) + "\n")
    trained = train_flow(str(features), str(labels), str(tmp_path / "model"),
                         config={"epochs": 1, "hidden": 8, "quiet": True})

    from_store = score_flow(trained["checkpoint"], out=str(tmp_path / "store.parquet"), features=str(features))
    assert from_store["extraction"] is None and from_store["utterances"] == len(rows) - 1

    cache = tmp_path / "cache"
    state = score_flow(trained["checkpoint"], out=str(tmp_path / "scores.parquet"), videos=str(clips),
                       features_dir=str(cache), config=FAST, return_state=True)
    scored = state.result()
    assert scored["extraction"] == {"videos": 3, "extracted": 3, "cached": 0, "failed": 0}
    utterances = pq.read_table(tmp_path / "scores.parquet").to_pylist()
    assert len(utterances) == scored["utterances"] == len(rows) - 1
    videos = pq.read_table(tmp_path / "scores.videos.parquet").to_pylist()
    assert sorted(v["video_id"] for v in videos) == ["no_face", "retalking_face_5", "single_face"]
    # The same videos' features, backfilled or extracted on the way, give the same scores.
    stored = pq.read_table(tmp_path / "store.parquet").to_pylist()
    key = lambda r: (r["video_id"], r["utterance_id"])  # noqa: E731
    assert [r["score"] for r in sorted(utterances, key=key)] == [r["score"] for r in sorted(stored, key=key)]
    again = score_flow(trained["checkpoint"], out=str(tmp_path / "again.parquet"), videos=str(clips),
                       features_dir=str(cache), config=FAST)
    assert again["extraction"] == {"videos": 3, "extracted": 0, "cached": 3, "failed": 0}


def test_expected_errors_fail_the_flow_in_one_line_and_others_keep_their_traceback(tmp_path, monkeypatch):
    import logging

    from flows.extract import extract_video_flow
    from flows.runtime import ExpectedErrorsInOneLine

    # A work pool's worker starts the flow in a process of its own, without the CLI's set-up:
    # the flow does it itself.
    for name in ("NUMBA_CACHE_DIR", "GLOG_minloglevel"):
        monkeypatch.delenv(name)
    with pytest.raises(InputError, match="file not found"):
        extract_video_flow(str(tmp_path / "missing.mp4"), str(tmp_path / "o"))
    assert os.environ["NUMBA_CACHE_DIR"] == str(cache_dir() / "numba") and os.environ["GLOG_minloglevel"] == "2"
    keep = ExpectedErrorsInOneLine()
    for err, traceback_kept in ((InputError("corrupt", "x.mp4"), False), (RuntimeError("bug"), True)):
        record = logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "failed", None,
                                   (type(err), err, None))
        assert keep.filter(record) and (record.exc_info is not None) == traceback_kept
    assert any(isinstance(f, ExpectedErrorsInOneLine) for f in logging.getLogger("prefect.task_runs").filters)


def test_train_flow_names_unknown_settings(tmp_path):
    from flows.train import train_config

    with pytest.raises(InputError, match="unknown training setting"):
        train_config({"epochz": 3})
    assert train_config({"seeds": [1, 2]}).seeds == (1, 2)


def test_cli_flow_commands_list_and_reject_bad_parameters(tmp_path, capsys):
    assert main(["flow", "list"]) == 0
    listed = capsys.readouterr().out
    for name in ("extract-video(", "backfill(", "train(", "score("):
        assert name in listed
    assert main(["flow", "run", "backfill", "--param", "input_dirr=x"]) == 1
    assert "has no parameter(s) input_dirr" in capsys.readouterr().err
    assert main(["flow", "run", "nope"]) == 1
    assert "unknown flow 'nope'" in capsys.readouterr().err
    assert main(["backfill", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    assert "input folder not found" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_flow_run_extract_video(tmp_path, capsys):
    clips = make_clip_dir(tmp_path)
    rc = main(["flow", "run", "extract-video", "--param", f"video={clips / 'single_face.mp4'}",
               "--param", f"out_dir={tmp_path / 'o'}", "--param", "config=" + json.dumps(FAST), "--quiet"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["output"].endswith("single_face.parquet") and not result["skipped"]
