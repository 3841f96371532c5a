"""pipeline.backfill without Prefect: discovery, batching, failure records, the direct backfill."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.errors import InputError
from pipeline.backfill import (
    backfill,
    discover_videos,
    make_batches,
    plan_batch_size,
    sweep_stale_temp_files,
)
from pipeline.outcomes import (
    FAILURES_LOG,
    read_failures_log,
)
from pipeline.store import read_metadata, read_video, store_files
from tests.conftest import VIDEOS

# Settings that keep extraction quick; every clip below has a transcript sidecar, so no ASR runs.
FAST = {"words.asr_model": "tiny.en", "facial.fps": 5.0}
TALK_TEXT = "bringing in reforms to tighten that regulation. And this latest crisis"


def make_clip_dir(root: Path, talk_copies: int = 0) -> Path:
    """Copies of real clips with transcript sidecars, one in a sub-folder under a name that is
    also used at the top, plus a truncated (corrupt) video. Returns the folder."""
    clips = root / "clips"
    (clips / "sub").mkdir(parents=True)
    shutil.copyfile(VIDEOS / "retalking_face_5.mp4", clips / "retalking_face_5.mp4")
    (clips / "retalking_face_5.txt").write_text(TALK_TEXT)
    shutil.copyfile(VIDEOS / "single_face.mp4", clips / "single_face.mp4")
    (clips / "single_face.txt").write_text("A face looks at the camera.")
    shutil.copyfile(VIDEOS / "no_face.mp4", clips / "sub" / "single_face.mp4")  # same name, other folder
    (clips / "sub" / "single_face.txt").write_text("Nobody is here.")
    (clips / "broken.mp4").write_bytes((VIDEOS / "retalking_face_1.mp4").read_bytes()[:40_000])
    for i in range(talk_copies):
        shutil.copyfile(VIDEOS / "retalking_face_5.mp4", clips / f"talk_{i:02d}.mp4")
        (clips / f"talk_{i:02d}.txt").write_text(TALK_TEXT)
    return clips


GOOD = {"retalking_face_5.parquet", "single_face.parquet", "sub/single_face.parquet"}


def outputs(out_dir: Path) -> set[str]:
    return {p.relative_to(out_dir).as_posix() for p in store_files(out_dir)}


# --------------------------------------------------------------------------- discovery


def test_discovery_is_recursive_sorted_and_skips_hidden_sidecars_and_output(tmp_path):
    for rel in ["a.mp4", "B.MOV", "x/c.mkv", "x/y/d.webm", "x/notes.txt", "a.txt", ".hidden.mp4",
                ".cache/e.mp4", "out/f.mp4"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in discover_videos(tmp_path, exclude=[tmp_path / "out"])]
    assert found == ["B.MOV", "a.mp4", "x/c.mkv", "x/y/d.webm"]
    # A name pattern matches at any depth (case-insensitive); a pattern with a slash is a path.
    by_name = discover_videos(tmp_path, ["*.mkv", "*.mov"], exclude=[tmp_path / "out"])
    assert [p.name for p in by_name] == ["B.MOV", "c.mkv"]
    assert discover_videos(tmp_path, "*.mkv") == [tmp_path / "x" / "c.mkv"]  # one pattern as text
    by_path = discover_videos(tmp_path, ["x/*/*.webm"])
    assert [p.name for p in by_path] == ["d.webm"]


def test_discovery_rejects_missing_or_non_folder_input(tmp_path):
    with pytest.raises(InputError, match="input folder not found"):
        discover_videos(tmp_path / "nope")
    (tmp_path / "file.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="is not a folder"):
        discover_videos(tmp_path / "file.mp4")


def test_batches_bound_task_count_and_balance_workers():
    assert plan_batch_size(3, 1) == 1
    assert plan_batch_size(20, 2) == 3  # 7 batches: several per worker
    assert plan_batch_size(10_000, 4) == 16  # thousands of videos -> 625 tasks, not 10 000
    assert plan_batch_size(0, 2) == 1
    items = list(range(7))
    assert make_batches(items, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError):
        make_batches(items, 0)


# --------------------------------------------------------------------------- failures


def test_sweep_removes_only_old_temp_files(tmp_path):
    old, young = tmp_path / ".a.parquet.x1.tmp", tmp_path / ".b.parquet.x2.tmp"
    old.write_bytes(b"torn"), young.write_bytes(b"being written")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert sweep_stale_temp_files(tmp_path) == 1
    assert not old.exists() and young.exists()


# --------------------------------------------------------------------------- the direct backfill


@pytest.mark.slow
def test_direct_backfill_extracts_records_failures_and_skips_on_rerun(tmp_path):
    clips = make_clip_dir(tmp_path)
    out = tmp_path / "features"
    seen = []
    report = backfill(clips, out, FAST, progress=lambda o, done, total: seen.append((o.status, done, total)))
    assert outputs(out) == GOOD  # sub-folders mirrored: the two single_face clips both kept
    assert report.counts() == {"videos": 4, "done": 3, "skipped": 0, "elsewhere": 0, "failed": 1}
    assert [d for _, d, _ in seen] == [1, 2, 3, 4] and {t for _, _, t in seen} == {4}
    (failure,) = report.failures
    assert failure.video.endswith("broken.mp4") and failure.error_type == "InputError"
    assert "\n" not in failure.message and failure.message
    log = read_failures_log(out)
    assert log["failed"] == 1 and log["failures"][0]["video"].endswith("broken.mp4")
    assert report.media_s > 10 and report.realtime_factor > 0
    for path in store_files(out):
        assert pq.read_table(path).num_rows == sum(read_video(path).lengths)
    assert read_metadata(out / "sub" / "single_face.parquet").video["path"].endswith("sub/single_face.mp4")

    mtimes = {p: p.stat().st_mtime_ns for p in store_files(out)}
    # Re-run in a pool of two spawned processes: nothing is recomputed, files are untouched.
    again = backfill(clips, out, FAST, workers=2, batch_size=1)
    assert again.counts() == {"videos": 4, "done": 0, "skipped": 3, "elsewhere": 0, "failed": 1}
    assert {p: p.stat().st_mtime_ns for p in store_files(out)} == mtimes
    assert json.loads((out / FAILURES_LOG).read_text())["skipped"] == 3


@pytest.mark.slow
def test_videos_in_flight_give_the_same_files_as_one_at_a_time(tmp_path):
    """Two videos extracted at once in one process (speech of one beside the faces of the
    other): every column and the metadata of every file are those of a one-at-a-time run, and
    the report lists the videos in the same order."""
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("WDA_KatieHill_000.mp4", "retalking_face_5.mp4", "desk_woman_stockmarket_9s.mp4"):
        shutil.copyfile(VIDEOS / name, clips / name)  # no transcripts: recognised words
    one = backfill(clips, tmp_path / "one", FAST, in_flight=1)
    two = backfill(clips, tmp_path / "two", FAST, in_flight=2, batch_size=3)
    assert one.counts()["done"] == two.counts()["done"] == 3
    assert [o.video for o in one.outcomes] == [o.video for o in two.outcomes]
    for name in outputs(tmp_path / "one"):
        a, b = pq.read_table(tmp_path / "one" / name), pq.read_table(tmp_path / "two" / name)
        for column in a.column_names:
            assert a.column(column).equals(b.column(column)), (name, column)
        assert a.schema.metadata == b.schema.metadata


def test_in_flight_must_be_positive(tmp_path):
    with pytest.raises(InputError, match="in_flight must be at least 1"):
        backfill(tmp_path, tmp_path / "out", FAST, in_flight=0)
