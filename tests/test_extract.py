"""End to end: real recordings -> `mmpipe extract` -> Parquet a user can open anywhere."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.config import ExtractConfig
from extractors import extractor_for
from flows import cli
from pipeline.extract import content_hash, extract_video, feature_key, find_transcript, stored_features
from pipeline.schema import MODALITIES
from pipeline.store import read_metadata, read_video
from pipeline.transcripts import read_transcript
from tests.conftest import ROOT, SPEECH, VIDEOS
from tests.media_fixtures import GERMAN, espeak, mux

HARVARD_TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It's easy to tell the depth of a well. Four hours of steady work faced us."
)
# Quick settings for clips whose words come from a transcript: the ASR model is never loaded.
FAST = ExtractConfig().with_overrides({"facial.fps": 10.0})


def is_up_to_date(video: Path, out_path: Path, config: ExtractConfig) -> bool:
    """Whether extraction would skip the video: its file records this content and feature key."""
    path = find_transcript(Path(video), None)
    key = feature_key(config, read_transcript(path) if path else None)
    return stored_features(Path(out_path), content_hash(video), key) is not None


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def harvard_face(tmp_path_factory) -> Path:
    """Real read speech (Harvard sentences) on a real talking-face video, with its transcript."""
    folder = tmp_path_factory.mktemp("harvard")
    clip = mux(VIDEOS / "retalking_face_5.mp4", SPEECH / "harvard_list1_16k.wav", folder / "harvard_face.mp4")
    (folder / "harvard_face.txt").write_text(HARVARD_TEXT)  # sidecar transcript
    return clip


def test_transcript_sidecar_gives_aligned_words_and_all_modalities(harvard_face, tmp_path):
    result = extract_video(harvard_face, tmp_path, FAST)
    assert not result.skipped
    data = read_video(result.output)
    # Four sentences in the transcript -> four utterances, every word present.
    assert len(data.lengths) == 4
    assert sum(len(w) for w in data.words) == len(HARVARD_TEXT.split())
    assert data.words[0][:3] == ["the", "birch", "canoe"] or data.words[0][:3] == ["The", "birch", "canoe"]
    for m in MODALITIES:
        assert np.isfinite(data.arrays[m]).all()
    spec = data.meta.schema.modalities
    assert spec["text"].dim == 384 and spec["audio"].dim > 20 and spec["vision"].dim > 52
    # Real speech: the sentences follow each other in time, inside the 10.8 s recording.
    spans = data.utterance_spans
    assert all(a[1] <= b[0] + 0.05 for a, b in zip(spans, spans[1:]))
    assert 0 <= spans[0][0] < 1.5 and 8.0 < spans[-1][1] <= 11.0
    # The face is on screen throughout.
    assert result.summary["face_coverage"] > 0.9
    assert not data.imputed["vision"].any()
    assert data.meta.video["transcript"].endswith("harvard_face.txt")
    # One face: every word shows it (track 0), with no speaker choice to make.
    assert all((t == 0).all() for t in data.face_tracks)
    faces = result.summary["faces"]
    assert faces["speaker_selection"] is False and faces["max_in_frame"] == 1 and list(faces["tracks"]) == ["0"]


def test_unchanged_video_is_skipped_and_config_change_reextracts(harvard_face, tmp_path):
    first = extract_video(harvard_face, tmp_path, FAST)
    mtime = first.output.stat().st_mtime_ns
    again = extract_video(harvard_face, tmp_path, FAST)
    assert again.skipped and again.output.stat().st_mtime_ns == mtime
    assert is_up_to_date(harvard_face, first.output, FAST)
    changed = FAST.with_overrides({"facial.fps": 5.0})
    assert not is_up_to_date(harvard_face, first.output, changed)
    # With a transcript the recogniser is irrelevant: changing it must not re-extract.
    assert is_up_to_date(harvard_face, first.output, FAST.with_overrides({"words.asr_model": "tiny.en"}))
    redo = extract_video(harvard_face, tmp_path, changed)
    assert not redo.skipped and read_metadata(redo.output).config["facial"]["fps"] == 5.0


@pytest.mark.slow
def test_real_talking_head_with_speech_recognition(tmp_path):
    """The real talking-head clip, no transcript: Whisper words, real face, real voice."""
    result = extract_video(VIDEOS / "WDA_KatieHill_000.mp4", tmp_path)
    data = read_video(result.output)
    n_words = int(data.lengths.sum())
    assert n_words >= 10, data.words
    assert result.summary["face_coverage"] > 0.9
    timings = pq.read_table(result.output, columns=["timing"]).column("timing").to_pylist()
    assert set(timings) <= {"aligned", "asr", "interpolated"}
    assert np.isfinite(data.arrays["audio"]).all()
    # ASR settings are recorded, so a different recogniser means different features.
    meta = read_metadata(result.output)
    assert meta.config["words"]["asr_model"] == "auto"
    assert meta.video["words_stage"].startswith("whisper:tiny.en@")  # English: the English model
    assert result.summary["devices"] == {"words": "cpu:int8", "text": "cpu", "audio": "cpu", "vision": "cpu"}
    assert not is_up_to_date(result.video, result.output, ExtractConfig().with_overrides({"words.asr_model": "base"}))


def test_no_face_keeps_rows_and_flags_vision(tmp_path):
    clip = mux(VIDEOS / "no_face.mp4", SPEECH / "jfk.flac", tmp_path / "noface_speech.mp4", seconds=11.0)
    (tmp_path / "noface_speech.txt").write_text(
        "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
    )
    result = extract_video(clip, tmp_path / "out", FAST)
    assert any("no face" in w for w in result.warnings)
    data = read_video(result.output)
    assert data.imputed["vision"][0, : data.lengths[0]].all()
    assert np.isfinite(data.arrays["vision"]).all()
    assert not data.imputed["audio"][0, : data.lengths[0]].all()


def test_cli_audio_only_recording_warns_and_exits_cleanly(tmp_path):
    """A real speech recording with no picture (its sidecar transcript sits beside it): features
    with the face flagged missing, a one-line warning, and no traceback at interpreter exit (a
    face model loaded but never used once printed one from MediaPipe's shut-down executor)."""
    audio = tmp_path / "jfk.flac"
    audio.write_bytes((SPEECH / "jfk.flac").read_bytes())
    (tmp_path / "jfk.txt").write_text((SPEECH / "jfk.txt").read_text())
    proc = run_cli("extract", str(audio), "--out", str(tmp_path / "out"), "--face-fps", "5")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert "no face found" in proc.stderr
    data = read_video(tmp_path / "out" / "jfk.parquet")
    assert data.lengths.sum() == 22 and data.imputed["vision"][0, :22].all()


def in_process(capsys, *args: str) -> tuple[int, str, list[str]]:
    """`mmpipe ARGS` in this process (models stay loaded): exit code, stdout, stderr lines."""
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def test_cli_extract_json_summary(harvard_face, tmp_path, capsys):
    code, out, err = in_process(capsys, "extract", str(harvard_face), "--out", str(tmp_path), "--json", "--face-fps", "10")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["utterances"] == 4 and summary["words"] == len(HARVARD_TEXT.split())
    assert set(summary["stages_s"]) >= {"decode", "words", "text", "audio", "vision", "write"}
    assert Path(summary["output"]).exists()


BAD_INPUTS = {
    "missing": lambda d: d / "does_not_exist.mp4",
    "directory": lambda d: d,
    "not_a_video": lambda d: _write(d / "notes.mp4", b"this is not a video file\n" * 20),
    "zero_length": lambda d: _write(d / "empty.mp4", b""),
    "truncated": lambda d: _write(d / "cut.mp4", (VIDEOS / "WDA_KatieHill_000.mp4").read_bytes()[:40_000]),
    "no_audio": lambda d: VIDEOS / "carphone_noaudio.mp4",
    "silent_audio": lambda d: VIDEOS / "WolfgangLanger_Pexels.mp4",
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_clear_line_and_nonzero_exit(case, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    video = BAD_INPUTS[case](src)
    out = tmp_path / "out"
    code, _, lines = in_process(capsys, "extract", str(video), "--out", str(out))
    assert code == 1, (case, lines)
    assert len(lines) == 1 and lines[0].startswith("mmpipe: error: "), lines
    assert Path(video).name in lines[0]
    # Nothing half-written is left behind.
    assert not out.exists() or not any(out.rglob("*"))


def test_unreadable_transcript(harvard_face, tmp_path, capsys):
    bad = _write(tmp_path / "bad.srt", b"\xff\xfe\x00\x00\x89PNG binary junk")
    code, _, lines = in_process(capsys, "extract", str(harvard_face), "--transcript", str(bad), "--out", str(tmp_path / "o"))
    assert code == 1 and len(lines) == 1 and "bad.srt" in lines[0]


def test_silent_audio_with_transcript_is_usable_with_audio_flagged(tmp_path):
    clip = tmp_path / "silent.mp4"
    clip.write_bytes((VIDEOS / "WolfgangLanger_Pexels.mp4").read_bytes())
    (tmp_path / "silent.txt").write_text("I am looking at the camera without saying a word.")
    result = extract_video(clip, tmp_path / "out", FAST)
    assert any("silent" in w for w in result.warnings)
    data = read_video(result.output)
    assert data.imputed["audio"].sum() == data.lengths.sum()
    assert result.summary["face_coverage"] > 0.5
    assert set(pq.read_table(result.output).column("timing").to_pylist()) == {"interpolated"}


@pytest.mark.parametrize("container", ["mkv", "avi"])
def test_other_containers(container, tmp_path):
    codec = "mpeg4" if container == "avi" else "libx264"
    clip = mux(VIDEOS / "single_face.mp4", SPEECH / "jfk.flac", tmp_path / f"jfk.{container}", seconds=11.0, video_codec=codec)
    (tmp_path / "jfk.txt").write_text("And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country.")
    result = extract_video(clip, tmp_path / "out", FAST.with_overrides({"facial.fps": 5.0}))
    data = read_video(result.output)
    assert int(data.lengths.sum()) == 22
    idx = data.words[0].index("americans") if "americans" in data.words[0] else [w.lower().strip(",") for w in data.words[0]].index("americans")
    assert data.starts[0][idx] < 1.8


def test_models_load_once_per_config_section():
    """Changing the face sampling rate builds a new face extractor but reuses the loaded text
    model and acoustic extractor (each section of the config has its own model cache)."""
    def get_extractors(config):
        return tuple(extractor_for(m, config) for m in ("text", "audio", "vision"))

    a = get_extractors(FAST)
    b = get_extractors(FAST.with_overrides({"facial.fps": 3.0}))
    assert a[0] is b[0] and a[1] is b[1] and a[2] is not b[2]
    assert get_extractors(FAST)[2] is a[2]


@pytest.mark.parametrize("frames", ["all", "words"])
def test_a_failed_words_stage_stops_the_face_track_early(tmp_path, monkeypatch, frames):
    """When recognition fails, the error comes back without waiting for the rest of the face
    track (which, landmarking only the words' frames, has not even started), and no file is
    written."""
    import pipeline.extract as extract_module
    from extractors.facial import FacialExtractor
    from pipeline.words import NoSpeechError

    seen = []
    real_detect = FacialExtractor._detect

    def counting_detect(self, *args, **kwargs):
        seen.append(1)
        return real_detect(self, *args, **kwargs)

    def no_words(*args, **kwargs):
        deadline = time.monotonic() + (120 if frames == "all" else 3)
        while len(seen) < 60 and time.monotonic() < deadline:  # the face track is well under way
            time.sleep(0.01)
        raise NoSpeechError("nothing recognised")

    monkeypatch.setattr(FacialExtractor, "_detect", counting_detect)
    monkeypatch.setattr(extract_module, "words_for", no_words)
    # Real speech on a real 19 s face video: 285 face frames at 15 fps.
    video = mux(VIDEOS / "WolfgangLanger_Pexels.mp4", SPEECH / "jfk.flac", tmp_path / "talk.mp4", seconds=19.0)
    out = tmp_path / "out"
    with pytest.raises(NoSpeechError, match="no speech found in the audio"):
        extract_video(video, out, FAST.with_overrides({"facial.fps": 15.0, "facial.frames": frames}), force=True)
    if frames == "all":
        assert 60 <= len(seen) < 200
    else:
        assert seen == []
    assert not out.exists() or not list(out.iterdir())


@pytest.mark.slow
def test_same_bytes_give_bit_identical_columns_whatever_ran_before(tmp_path):
    """Clip A, then clip B, then A again in one process, and A in a fresh process: every column
    of A's file is the same to the bit. Recognised words re-timed by the aligner are the path
    that once drifted (by up to 30 ms) with the aligner's state from the previous video."""
    settings = {"words.asr_model": "tiny.en", "facial.fps": 5.0}
    config = ExtractConfig().with_overrides(settings)
    a = tmp_path / "a" / "clip_a.mp4"
    b = tmp_path / "b" / "clip_b.mp4"
    # The talking head is a clip whose timings moved with that state; B is any other speech.
    for src, dst in ((VIDEOS / "WDA_KatieHill_000.mp4", a), (VIDEOS / "desk_woman_stockmarket_9s.mp4", b)):
        dst.parent.mkdir()
        dst.write_bytes(src.read_bytes())
    first = extract_video(a, tmp_path / "run1", config).output
    extract_video(b, tmp_path / "run1", config)
    again = extract_video(a, tmp_path / "run2", config).output
    proc = run_cli("extract", str(a), "--out", str(tmp_path / "fresh"), "--asr-model", "tiny.en", "--face-fps", "5")
    assert proc.returncode == 0, proc.stderr
    fresh = tmp_path / "fresh" / first.name
    tables = [pq.read_table(p) for p in (first, again, fresh)]
    assert tables[0].num_rows >= 8
    assert {"aligned"} <= set(tables[0].column("timing").to_pylist())
    for other in tables[1:]:
        for name in tables[0].column_names:
            assert tables[0].column(name).equals(other.column(name)), name
        assert tables[0].schema.metadata == other.schema.metadata


@pytest.mark.slow
def test_german_talking_head_is_refused_in_english_and_flagged_in_auto(tmp_path, capsys):
    """German speech on a real face: with the default English settings one clear error (not a
    file of English-sounding words); with --language auto a German transcript, and the file's
    summary and the CLI say the English-only text model cannot score it reliably."""
    speech = espeak(GERMAN, tmp_path / "de.wav", voice="de")
    clip = mux(VIDEOS / "retalking_face_2.mp4", speech, tmp_path / "interview.mp4")
    out = tmp_path / "out"
    code = cli.main(["extract", str(clip), "--out", str(out), "--face-fps", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith(f"mmpipe: error: {clip}: the speech is in German (de, p=0.9")
    assert not list(out.glob("*.parquet"))

    code = cli.main(["extract", str(clip), "--out", str(out), "--face-fps", "5", "--language", "auto"])
    err = capsys.readouterr().err
    assert code == 0 and "transcribed as de, but the default text model" in err
    meta = read_metadata(out / "interview.parquet")
    assert meta.summary["language"] == {"expected": "auto", "transcribed": "de", "probability": pytest.approx(1, abs=0.1)}
    assert any("English-only" in w for w in meta.summary["warnings"])
