"""Runs sharing an output folder split the work; a crashed run's claim blocks nobody."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pipeline.claims import ClaimedElsewhere, claim, claim_path
from pipeline.store import read_metadata, store_files
from tests.conftest import ROOT, VIDEOS

TALK_TEXT = "bringing in reforms to tighten that regulation. And this latest crisis"


def test_a_held_claim_sends_others_away_and_is_gone_after_release(tmp_path):
    out = tmp_path / "clip.parquet"
    with claim(out, "clip.mp4"):
        record = json.loads(claim_path(out).read_text())
        assert record["pid"] == os.getpid() and record["video"] == "clip.mp4"
        with pytest.raises(ClaimedElsewhere, match=rf"clip2.mp4: being extracted into the same folder by pid {os.getpid()}"):
            with claim(out, "clip2.mp4"):
                pass
    assert not claim_path(out).exists()
    with claim(out, "clip.mp4"):  # free again
        pass


def test_the_claim_of_a_killed_process_blocks_nobody(tmp_path):
    out = tmp_path / "clip.parquet"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pipeline.claims import claim\n"
         f"with claim({str(out)!r}, 'clip.mp4'):\n    print('held', flush=True); time.sleep(600)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ClaimedElsewhere, match=f"pid {holder.pid}"):
            with claim(out, "clip.mp4"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert claim_path(out).exists()  # left behind by the dead holder ...
    with claim(out, "clip.mp4"):  # ... and taken over at once
        pass


BACKFILL = (
    "import json, sys\n"
    "from pipeline.backfill import backfill\n"
    "r = backfill(sys.argv[1], sys.argv[2], {'facial.fps': 5.0})\n"
    "print(json.dumps({o.video: o.status for o in r.outcomes}))\n"
)


@pytest.mark.slow
def test_two_concurrent_backfills_extract_every_video_once(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(6):
        shutil.copyfile(VIDEOS / "retalking_face_5.mp4", clips / f"talk_{i}.mp4")
        (clips / f"talk_{i}.txt").write_text(TALK_TEXT)
    out = tmp_path / "features"
    runs = [
        subprocess.Popen([sys.executable, "-c", BACKFILL, str(clips), str(out)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    videos = sorted(str(p) for p in clips.glob("*.mp4"))
    extracted = [v for r in results for v, status in r.items() if status == "done"]
    assert sorted(extracted) == videos  # each video extracted by exactly one of the runs
    for r in results:
        assert set(r) == set(videos) and set(r.values()) <= {"done", "skipped", "elsewhere"}
    assert len(store_files(out)) == 6
    assert not list(out.glob(".*.claim"))


@pytest.mark.slow
def test_a_backfill_killed_mid_video_leaves_a_claim_the_next_run_takes_over(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copyfile(VIDEOS / "retalking_face_5.mp4", clips / "talk.mp4")
    (clips / "talk.txt").write_text(TALK_TEXT)
    out = tmp_path / "features"
    victim = subprocess.Popen([sys.executable, "-c", BACKFILL, str(clips), str(out)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not claim_path(out / "talk.parquet").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert claim_path(out / "talk.parquet").exists() and not store_files(out)
    proc = subprocess.run([sys.executable, "-c", BACKFILL, str(clips), str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {str(clips / "talk.mp4"): "done"}
    assert read_metadata(out / "talk.parquet").video["video_id"] == "talk"
