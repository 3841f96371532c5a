"""`mmpipe score` end to end on real recordings: tables, JSON, files, the report, bad input.

Extraction is the slow part, so every test shares one feature cache (a cached video is reused,
exactly as for a user) and quick settings: Whisper tiny.en and faces at 5 fps. Until the starter
checkpoint exists, scoring uses a checkpoint of an untrained model built on the real features'
schema: every test except "positive beats negative" checks behaviour that needs no training.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import mmlatch.checkpoint
from core.config import ExtractConfig
from core.errors import ModelError
from flows import cli
from mmlatch.checkpoint import STARTER_DIR, load_checkpoint, save_checkpoint
from mmlatch.explain import explain_files
from mmlatch.model import MMLatch, ModelConfig
from pipeline.extract import extract_video
from pipeline.store import read_metadata, read_video
from tests.conftest import ROOT, VIDEOS
from tests.media_fixtures import espeak, mux
from tests.test_report import distinct_colours, screenshot

KATIE = VIDEOS / "WDA_KatieHill_000.mp4"
QUICK = ["--asr-model", "tiny.en", "--face-fps", "5"]
QUICK_CONFIG = ExtractConfig().with_overrides({"words.asr_model": "tiny.en", "facial.fps": 5.0})
POSITIVE = "I absolutely loved this movie, it was wonderful and brilliant."
NEGATIVE = "I hated this movie, it was terrible and boring."
STARTER = STARTER_DIR / "model.json"


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("score-features")


@pytest.fixture(scope="module")
def katie_features(features_dir) -> Path:
    result = extract_video(KATIE, features_dir, QUICK_CONFIG, by_content=True)  # as the score cache files it
    return result.output


def untrained_checkpoint(folder: Path, schema) -> Path:
    torch.manual_seed(0)
    d = schema.dims
    config = ModelConfig(text_dim=d["text"], audio_dim=d["audio"], vision_dim=d["vision"], hidden=32)
    return save_checkpoint(folder, MMLatch(config), config, schema, None,
                           {"description": "untrained model (tests only)"}, {})


@pytest.fixture(scope="module")
def checkpoint(katie_features, tmp_path_factory) -> Path:
    """The shipped starter model when it exists, else an untrained model on the real schema."""
    if STARTER.exists():
        return STARTER_DIR
    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt"), read_metadata(katie_features).schema)


def score(capsys, *args: str) -> tuple[int, str, str]:
    """Run `mmpipe score` in this process (models stay loaded between tests)."""
    code = cli.main(["score", *args])
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("mmpipe: error:")]


def assert_no_traceback(err: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, err


# ------------------------------------------------------------------------- real talking head


@pytest.mark.slow
def test_real_talking_head_json(capsys, katie_features, features_dir, checkpoint):
    code, out, err = score(capsys, str(KATIE), "--checkpoint", str(checkpoint),
                           "--features-dir", str(features_dir), "--json", *QUICK)
    assert code == 0, err
    result = json.loads(out)
    assert result["failures"] == [] and len(result["videos"]) == 1
    video = result["videos"][0]
    assert video["video_id"] == "WDA_KatieHill_000" and video["extraction"]["cached"] is True
    assert video["features"] == str(katie_features)
    utterances = video["utterances"]
    assert len(utterances) >= 1 and video["n_utterances"] == len(utterances)
    for u in utterances:
        assert math.isfinite(u["score"]) and -3 <= u["score"] <= 3
        assert u["label"] in ("positive", "neutral", "negative") and u["text"] and u["end"] > u["start"]
        assert u["label"] == ("positive" if u["score"] >= 0.5 else "negative" if u["score"] <= -0.5 else "neutral")
    # The video's score is the duration-weighted mean of its utterances'.
    w = np.array([u["end"] - u["start"] for u in utterances])
    assert video["score"] == pytest.approx(float(np.average([u["score"] for u in utterances], weights=w)), abs=1e-5)
    assert 7.5 < video["duration"] < 8.5
    assert video["warnings"] == []  # a face is on screen and the speech is real


@pytest.mark.slow
def test_table_and_output_files(capsys, katie_features, features_dir, checkpoint, tmp_path):
    code, out, err = score(capsys, str(KATIE), "--checkpoint", str(checkpoint), "--features-dir", str(features_dir),
                           "--out", str(tmp_path / "scores.csv"), *QUICK)
    assert code == 0, err
    assert "score" in out and "label" in out and "overall:" in out and "duration-weighted" in out
    data = read_video(katie_features)
    assert f"over {len(data.lengths)} utterance" in out
    import pandas as pd

    rows = pd.read_csv(tmp_path / "scores.csv")
    videos = pd.read_csv(tmp_path / "scores.videos.csv")
    assert len(rows) == len(data.lengths) and rows["score"].between(-3, 3).all()
    assert len(videos) == 1 and videos["video_id"][0] == "WDA_KatieHill_000"

    code, _, err = score(capsys, str(KATIE), "--checkpoint", str(checkpoint), "--features-dir", str(features_dir),
                         "--out", str(tmp_path / "scores.parquet"), *QUICK)
    assert code == 0, err
    table = pq.read_table(tmp_path / "scores.parquet").to_pandas()
    assert np.allclose(table["score"], rows["score"], atol=1e-4)
    assert pq.read_table(tmp_path / "scores.videos.parquet").num_rows == 1


@pytest.mark.slow
def test_report_shows_timeline_words_and_masks(capsys, katie_features, features_dir, checkpoint, tmp_path):
    report = tmp_path / "report.html"
    code, out, err = score(capsys, str(KATIE), "--checkpoint", str(checkpoint), "--features-dir", str(features_dir),
                           "--report", str(report), *QUICK)
    assert code == 0, err
    page = report.read_text()
    data = read_video(katie_features)
    assert page.count('class="utt"') == len(data.lengths)  # one transcript block per utterance
    assert page.count('class="w"') == int(data.lengths.sum())  # every word shaded
    assert "<svg" in page and "<script" not in page and "contribution" in page and "face damped" in page
    assert page.count("<tr><td class=\"num\">") == len(data.lengths)  # one mask row per utterance
    png = screenshot(report, tmp_path / "report.png", tmp_path)
    assert distinct_colours(png) > 200


def test_contributions_are_leave_one_word_out(katie_features, checkpoint):
    """Each word's contribution is exactly the model's score change when the word is removed."""
    loaded = load_checkpoint(checkpoint, device="cpu")
    explained = explain_files(loaded, [katie_features])
    data = read_video(katie_features)
    k = int(np.argmax(data.lengths))
    n, uid = int(data.lengths[k]), int(data.utterance_ids[k])
    contributions = explained[(data.video_id, uid)].contributions
    assert len(contributions) == n and all(c is not None and math.isfinite(c) for c in contributions)

    norm = loaded.normalisation
    x = {}
    for m in ("text", "audio", "vision"):
        flat = data.arrays[m][k, :n]
        if norm is not None:
            flat = norm.apply(flat.copy(), data.imputed[m][k, :n], m)
        x[m] = torch.from_numpy(np.ascontiguousarray(flat))[None]
    with torch.no_grad():
        full = loaded.model(x["text"], x["audio"], x["vision"], torch.tensor([n])).item()
        j = n // 2
        keep = [i for i in range(n) if i != j]
        without = loaded.model(*(x[m][:, keep] for m in ("text", "audio", "vision")), torch.tensor([n - 1])).item()
    assert contributions[j] == pytest.approx(full - without, abs=1e-4)
    masks = explained[(data.video_id, uid)]
    assert set(masks.damped) == {"text", "audio", "vision"} and all(0 <= v <= 1 for v in masks.damped.values())
    assert len(masks.top_damped["vision"]) == 5 and masks.top_damped["vision"][0][0] in data.meta.schema.modalities["vision"].names


# ------------------------------------------------------------------------------- sentiment


@pytest.fixture(scope="module")
def spoken_clips(tmp_path_factory) -> dict[str, Path]:
    """espeak-ng speech of a clearly positive and a clearly negative sentence on a real face."""
    folder = tmp_path_factory.mktemp("spoken")
    clips = {}
    for name, text in (("positive", POSITIVE), ("negative", NEGATIVE)):
        wav = espeak(text, folder / f"{name}.wav")
        clips[name] = mux(VIDEOS / "single_face.mp4", wav, folder / f"{name}.mp4")
    return clips


@pytest.mark.slow
@pytest.mark.skipif(not STARTER.exists(), reason="the starter checkpoint (mmlatch/starter/model.json) is not built yet")
def test_positive_sentence_scores_above_negative(capsys, spoken_clips, features_dir):
    # Default checkpoint (no --checkpoint): the installed starter model; both clips in one batch.
    code, out, err = score(capsys, str(spoken_clips["positive"]), str(spoken_clips["negative"]),
                           "--features-dir", str(features_dir), "--json", *QUICK)
    assert code == 0, err
    videos = {Path(v["video"]).stem: v for v in json.loads(out)["videos"]}
    heard = " ".join(u["text"] for u in videos["positive"]["utterances"]).lower()
    assert "loved" in heard and "wonderful" in heard  # the recogniser heard the sentence
    assert videos["positive"]["score"] > videos["negative"]["score"] + 1.0
    assert videos["positive"]["score"] > 0 > videos["negative"]["score"]
    assert videos["positive"]["warnings"] == [] and videos["negative"]["warnings"] == []


# ---------------------------------------------------------------------------------- checkpoint


def test_checkpoint_schema_check(katie_features, checkpoint, tmp_path, capsys, features_dir):
    schema = read_metadata(katie_features).schema
    loaded = load_checkpoint(checkpoint, expect_schema=schema)  # fits the real features
    assert loaded.schema.dims == schema.dims

    from tests.synthetic import synthetic_schema

    other = untrained_checkpoint(tmp_path / "other", synthetic_schema({"text": 16, "audio": 8, "vision": 6}))
    with pytest.raises(ModelError, match="features do not fit this model"):
        load_checkpoint(other, expect_schema=schema)
    code, out, err = score(capsys, str(KATIE), "--checkpoint", str(other), "--features-dir", str(features_dir), *QUICK)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and error_lines(err), err
    assert "do not fit this model" in err and "text has dim 384, model expects 16" in err
    assert_no_traceback(err)


def test_missing_checkpoints_are_one_line_errors(capsys, tmp_path, monkeypatch):
    code, _, err = score(capsys, str(KATIE), "--checkpoint", str(tmp_path / "nowhere"))
    assert code == 1 and "checkpoint not found" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setattr(mmlatch.checkpoint, "STARTER_DIR", tmp_path / "starter")
    code, _, err = score(capsys, str(KATIE))
    assert code == 1 and "no default model is installed" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------- bad input


def test_missing_file_via_the_real_command(tmp_path, checkpoint):
    missing = tmp_path / "missing.mp4"
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "score", str(missing), "--checkpoint", str(checkpoint)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == f"mmpipe: error: {missing}: file not found"


def test_corrupt_file_is_one_line(capsys, tmp_path, checkpoint, features_dir):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(KATIE.read_bytes()[:4000])  # a cut-off download
    code, out, err = score(capsys, str(corrupt), "--checkpoint", str(checkpoint), "--features-dir", str(features_dir))
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and error_lines(err)[0].startswith(f"mmpipe: error: {corrupt}:")
    assert_no_traceback(err)


def test_bad_output_suffix_fails_before_extraction(capsys, tmp_path, checkpoint):
    code, _, err = score(capsys, str(KATIE), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.xlsx"))
    assert code == 1 and "must end in .parquet or .csv" in err


@pytest.mark.slow
def test_folder_with_one_bad_file_scores_the_rest(capsys, tmp_path, katie_features, checkpoint, features_dir):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / KATIE.name).symlink_to(KATIE)
    (folder / "broken.mov").write_bytes(b"\x00\x00\x00\x18ftypqt  " + b"\x00" * 2000)
    (folder / "sub").mkdir()
    # another video with the same file name in a sub-folder (a copy in tmp, not in the repo)
    (folder / "sub" / KATIE.name).write_bytes((VIDEOS / "single_face.mp4").read_bytes())
    code, out, err = score(capsys, str(folder), "--checkpoint", str(checkpoint), "--features-dir", str(features_dir),
                           "--json", *QUICK)
    assert code == 1  # something failed...
    result = json.loads(out)
    assert [v["video_id"] for v in result["videos"]] == ["WDA_KatieHill_000"]  # ...and the rest was scored
    assert result["videos"][0]["extraction"]["cached"] is True
    failed = {Path(f["video"]).relative_to(folder).as_posix(): f["error"] for f in result["failures"]}
    assert set(failed) == {"broken.mov", f"sub/{KATIE.name}"}
    assert "same file name" in failed[f"sub/{KATIE.name}"]
    assert len(error_lines(err)) == 2 and all(str(folder) in line for line in error_lines(err))
    assert_no_traceback(err)


@pytest.mark.slow
def test_no_speech_is_a_clear_error(capsys, tmp_path, checkpoint, features_dir):
    silent = mux(VIDEOS / "single_face.mp4", np.zeros(32000, np.float32), tmp_path / "silent.mp4")
    code, out, err = score(capsys, str(silent), "--checkpoint", str(checkpoint), "--features-dir", str(features_dir),
                           *QUICK)
    assert code == 1 and out == ""
    assert error_lines(err) == [f"mmpipe: error: {silent}: no speech found (the audio is silent)"]
    assert_no_traceback(err)


@pytest.mark.slow
def test_no_face_scores_from_text_and_audio_with_a_warning(capsys, tmp_path, checkpoint, features_dir):
    wav = espeak(NEGATIVE, tmp_path / "speech.wav")
    clip = mux(VIDEOS / "no_face.mp4", wav, tmp_path / "no_face_speech.mp4")
    code, out, err = score(capsys, str(clip), "--checkpoint", str(checkpoint), "--features-dir", str(features_dir),
                           "--json", *QUICK)
    assert code == 0, err
    video = json.loads(out)["videos"][0]
    assert video["warnings"] == ["no face found: scored from text and audio only (facial input imputed)"]
    assert f"mmpipe: warning: {clip}: no face found: scored from text and audio" in err
    assert video["utterances"] and all(math.isfinite(u["score"]) for u in video["utterances"])
