"""One output per input: store names, the same-stem rule, and refused collisions, on real clips."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.config import ExtractConfig
from core.errors import OutputError
from flows import cli
from pipeline.backfill import backfill
from pipeline.extract import extract_video
from pipeline.names import output_path, safe_name, shared_outputs, video_name, video_names
from pipeline.store import read_metadata, store_files
from tests.conftest import VIDEOS

FAST = {"facial.fps": 5.0}
CONFIG = ExtractConfig().with_overrides(FAST)
TALK_TEXT = "bringing in reforms to tighten that regulation. And this latest crisis"
# The cases that once overwrote each other: same stem, space vs underscore, two non-Latin names.
COLLIDING = ["clip.mp4", "clip.mov", "a b.mp4", "a_b.mp4", "名前.mp4", "日本.mp4"]
EXPECTED = {"clip.mp4", "clip.mov", "a b", "a_b", "名前", "日本"}


def touch(folder: Path, *names: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return [folder / n for n in names]


def test_names_keep_the_stem_and_take_the_extension_only_beside_a_same_stem_sibling(tmp_path):
    videos = touch(tmp_path, *COLLIDING, "notes.txt", "clip.txt")[: len(COLLIDING)]
    assert set(video_names(videos).values()) == EXPECTED
    # A lone clip keeps its plain stem; the sidecar transcript is not a sibling video.
    alone = touch(tmp_path / "alone", "clip.mp4", "clip.srt")[0]
    assert video_name(alone) == "clip"
    # The name reads the folder, not the run: the same file gets the same name either way.
    assert video_name(tmp_path / "clip.mov") == video_names(videos)[tmp_path / "clip.mov"]


def test_unsafe_characters_are_replaced_and_the_name_stays_unique():
    assert safe_name("名前 (final), v2") == "名前 (final), v2"
    a, b = safe_name("what?"), safe_name("what*")
    assert a.startswith("what_~") and b.startswith("what_~") and a != b
    assert safe_name(".hidden").startswith("_hidden~")
    assert len(safe_name("x" * 400).encode()) < 220


def test_shared_outputs_lists_inputs_that_would_write_one_file(tmp_path):
    a, b = touch(tmp_path / "a", "clip.mp4")[0], touch(tmp_path / "b", "clip.mp4")[0]
    outputs = {v: output_path(v, tmp_path / "out") for v in (a, b)}
    assert shared_outputs(outputs) == [(tmp_path / "out" / "clip.parquet", [a, b])]
    # Mirroring the sub-folders below a common root keeps them apart.
    assert shared_outputs({v: output_path(v, tmp_path / "out", tmp_path) for v in (a, b)}) == []


@pytest.fixture(scope="module")
def colliding_folder(tmp_path_factory) -> Path:
    """Copies of one real talking-head clip under the names that used to collide."""
    folder = tmp_path_factory.mktemp("names") / "clips"
    folder.mkdir()
    for name in COLLIDING:
        shutil.copyfile(VIDEOS / "retalking_face_5.mp4", folder / name)
        (folder / name).with_suffix(".txt").write_text(TALK_TEXT)
    return folder


@pytest.mark.slow
def test_backfill_writes_one_file_per_video_and_reruns_nothing(colliding_folder, tmp_path):
    out = tmp_path / "features"
    report = backfill(colliding_folder, out, FAST)
    assert report.counts() == {"videos": 6, "done": 6, "skipped": 0, "elsewhere": 0, "failed": 0}
    files = store_files(out)
    assert {p.name.removesuffix(".parquet") for p in files} == EXPECTED
    for path in files:  # each file holds its own video, under its own id
        meta = read_metadata(path)
        assert Path(meta.video["path"]).name in COLLIDING
        assert set(pq.read_table(path, columns=["video_id"]).column(0).to_pylist()) == {meta.video["video_id"]}
        assert meta.video["video_id"] == path.name.removesuffix(".parquet")
    again = backfill(colliding_folder, out, FAST)
    assert again.counts()["skipped"] == 6 and again.counts()["done"] == 0


def test_extract_refuses_two_inputs_with_one_output_before_any_work(tmp_path, capsys):
    a = tmp_path / "a" / "clip.mp4"
    b = tmp_path / "b" / "clip.mp4"
    for v in (a, b):
        v.parent.mkdir()
        shutil.copyfile(VIDEOS / "retalking_face_5.mp4", v)
    out = tmp_path / "out"
    code = cli.main(["extract", str(a), str(b), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines() == [f"mmpipe: error: {a} and {b} would all write {out / 'clip.parquet'}; "
                                        "extract them into separate --out folders"]
    assert not list(out.iterdir())


@pytest.mark.slow
def test_a_file_holding_another_videos_features_is_not_replaced(tmp_path):
    a = tmp_path / "a" / "clip.mp4"
    b = tmp_path / "b" / "clip.mp4"
    for src, v in ((VIDEOS / "retalking_face_5.mp4", a), (VIDEOS / "retalking_face_1.mp4", b)):
        v.parent.mkdir()
        shutil.copyfile(src, v)
        v.with_suffix(".txt").write_text(TALK_TEXT)
    out = tmp_path / "out"
    first = extract_video(a, out, CONFIG)
    before = first.output.read_bytes()
    with pytest.raises(OutputError, match="already holds the features of another video"):
        extract_video(b, out, CONFIG)
    assert first.output.read_bytes() == before
    # The score cache files videos by content, so both live side by side there.
    cache = tmp_path / "cache"
    one = extract_video(a, cache, CONFIG, by_content=True).output
    two = extract_video(b, cache, CONFIG, by_content=True).output
    assert one != two and one.name == two.name == "clip.parquet"
