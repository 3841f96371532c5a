"""Unusable output locations are found before any decoding, and every write failure is one line.

The read-only, immutable and full cases use a real filesystem: a small tmpfs mounted read-only
or nearly full, and ``chattr +i``; they need root and are skipped elsewhere.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import pipeline.media
import pipeline.store
from flows import cli
from tests.conftest import VIDEOS

CLIP = VIDEOS / "retalking_face_5.mp4"
TALK_TEXT = "bringing in reforms to tighten that regulation. And this latest crisis"


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if anything is decoded: the location must be refused before that."""

    def refuse(*args, **kwargs):
        raise AssertionError("media was decoded before the output location was checked")

    monkeypatch.setattr(pipeline.media, "probe", refuse)
    monkeypatch.setattr(pipeline.media, "decode_audio", refuse)


def run(capsys, *args: str) -> tuple[int, list[str]]:
    code = cli.main(list(args))
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def mounted_tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir(parents=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip() or 'not root'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.fixture
def read_only_folder(tmp_path) -> Iterator[Path]:
    yield from mounted_tmpfs(tmp_path / "ro", "ro,size=1m")


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    yield from mounted_tmpfs(tmp_path / "small", "size=1m")


@pytest.fixture
def immutable_folder(tmp_path) -> Iterator[Path]:
    folder = tmp_path / "immutable"
    folder.mkdir()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot make a folder immutable here (chattr +i needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


def test_out_is_an_existing_file(capsys, tmp_path, no_decoding):
    taken = tmp_path / "features"
    taken.write_text("not a folder")
    code, lines = run(capsys, "extract", str(CLIP), "--out", str(taken))
    assert code == 1 and lines == [f"mmpipe: error: {taken}: exists and is not a folder"]


def test_out_under_proc(capsys, no_decoding):
    code, lines = run(capsys, "extract", str(CLIP), "--out", "/proc/mmpipe/features")
    assert code == 1 and lines == ["mmpipe: error: /proc/mmpipe/features: cannot write here (No such file or directory)"]


def test_read_only_folder(capsys, read_only_folder, no_decoding):
    code, lines = run(capsys, "extract", str(CLIP), "--out", str(read_only_folder))
    assert code == 1 and lines == [f"mmpipe: error: {read_only_folder}: cannot write here (Read-only file system)"]


def test_immutable_folder(capsys, immutable_folder, no_decoding):
    code, lines = run(capsys, "extract", str(CLIP), "--out", str(immutable_folder / "features"))
    assert code == 1
    assert lines == [f"mmpipe: error: {immutable_folder / 'features'}: cannot write here (Operation not permitted)"]


def test_full_disk(capsys, small_disk, no_decoding):
    code, lines = run(capsys, "extract", str(CLIP), "--out", str(small_disk))
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith(f"mmpipe: error: {small_disk}: not enough free space (")
    assert not any(small_disk.iterdir())


def test_backfill_and_score_outputs_are_checked_before_any_work(capsys, tmp_path, no_decoding):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copyfile(CLIP, videos / "talk.mp4")
    code, lines = run(capsys, "backfill", str(videos), "--out", "/proc/mmpipe/features")
    assert code == 1 and lines == ["mmpipe: error: /proc/mmpipe/features: cannot write here (No such file or directory)"]
    code, lines = run(capsys, "score", str(videos / "talk.mp4"), "--out", "/proc/mmpipe/scores.csv")
    assert code == 1 and lines == ["mmpipe: error: /proc/mmpipe: cannot write here (No such file or directory)"]
    code, lines = run(capsys, "score", str(videos / "talk.mp4"), "--report", str(videos))
    assert code == 1 and lines == [f"mmpipe: error: {videos}: report must end in .html or .htm"]


def test_a_write_that_fails_after_the_work_is_one_line_and_leaves_nothing(capsys, tmp_path, monkeypatch):
    """The disk fills up while a video is extracted: the write fails with the system's cause,
    exit 1, and neither a torn file nor a temp file is left."""
    clip = tmp_path / "talk.mp4"
    shutil.copyfile(CLIP, clip)
    clip.with_suffix(".txt").write_text(TALK_TEXT)
    real_write = pipeline.store.pq.write_table

    def disk_fills_up(table, where, **kwargs):
        real_write(table.slice(0, 2), where, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pipeline.store.pq, "write_table", disk_fills_up)
    out = tmp_path / "out"
    code, lines = run(capsys, "extract", str(clip), "--out", str(out), "--face-fps", "5")
    assert code == 1
    assert lines == [f"mmpipe: error: {out / 'talk.parquet'}: cannot write (No space left on device)"]
    assert sorted(p.name for p in out.iterdir()) == []
