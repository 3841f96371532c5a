"""The MediaPipe facial extractor on real faces, face/no-face clips and a scene without a face."""

from __future__ import annotations

import zipfile

import mediapipe as mp
import numpy as np
import pytest

from core.config import FacialConfig
from core.errors import ModelError
from extractors.facial import BLENDSHAPES, FacialExtractor, close_quietly, face_geometry, head_pose
from extractors.landmarker_results import detect_for_video, from_result
from pipeline import media
from tests.conftest import SPEECH, VIDEOS
from tests.media_fixtures import frames_at


@pytest.fixture(scope="module")
def extractor() -> FacialExtractor:
    return FacialExtractor()


def run(extractor: FacialExtractor, name: str):
    path = VIDEOS / name
    info = media.probe(path)
    return info, extractor.extract(media.video_clip(path, info))


def col(track, name: str) -> np.ndarray:
    return track.values[:, track.names.index(name)]


def test_feature_layout(extractor):
    names = extractor.feature_names
    assert len(names) == len(set(names)) == extractor.feature_dim == len(BLENDSHAPES) + 3 + 4 + 1
    assert names[0] == "bs_neutral" and "bs_jawOpen" in names and names[-1] == "face_present"
    assert extractor.name == "mediapipe-facelandmarker"
    assert extractor.version.startswith("1+")  # carries the model file's digest


def test_talking_head(extractor):
    info, tr = run(extractor, "WDA_KatieHill_000.mp4")
    assert len(tr.times) == pytest.approx(info.duration * 15, abs=2)
    assert np.all(np.diff(tr.times) > 0)
    assert tr.present.mean() > 0.9
    face = tr.values[tr.present]
    blend = face[:, : len(BLENDSHAPES)]
    assert blend.min() >= 0.0 and blend.max() <= 1.0 and blend.max() > 0.3  # real expressions
    yaw, pitch, roll = (np.median(col(tr, n)[tr.present]) for n in ("head_yaw_deg", "head_pitch_deg", "head_roll_deg"))
    assert abs(yaw) < 25 and abs(pitch) < 25 and abs(roll) < 25  # an anchor facing the camera
    eyes = col(tr, "eye_open_left")[tr.present]
    assert 0.03 < np.median(eyes) < 0.3
    assert 0.3 < np.median(col(tr, "mouth_width")[tr.present]) < 1.0
    # speech moves the jaw: mouth opening varies over the clip
    assert np.ptp(col(tr, "mouth_open")[tr.present]) > 0.05
    assert np.all(col(tr, "face_present") == tr.present)


@pytest.mark.parametrize("name, face_first", [("face_noface.mov", True), ("noface_face.mov", False)])
def test_face_then_no_face_keeps_every_row(extractor, name, face_first):
    info, tr = run(extractor, name)
    # one row per sampled frame over the whole clip, also where there is no face
    assert len(tr.times) == pytest.approx(info.duration * 15, rel=0.1)
    assert tr.times[-1] > info.duration - 0.2
    assert np.all(np.diff(tr.times) > 0)
    half = len(tr.times) // 2
    first, second = tr.present[:half], tr.present[half:]
    with_face, without = (first, second) if face_first else (second, first)
    assert with_face.mean() > 0.5
    assert without.mean() == 0.0
    assert not tr.values[~tr.present].any()  # rows without a face are zeros


def test_scene_without_a_face(extractor):
    info, tr = run(extractor, "no_face.mp4")
    assert len(tr.times) == pytest.approx(info.duration * 15, abs=2)
    assert not tr.present.any() and not tr.values.any()


def test_audio_only_input_gives_an_empty_track(extractor):
    tr = extractor.extract(media.video_clip(SPEECH / "jfk.flac"))
    assert tr.values.shape == (0, extractor.feature_dim)
    assert tr.faces is not None and len(tr.faces.track) == 0  # a record of no faces, not a missing one


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = ry @ rx @ rz
    m[:3, 3] = [1.0, -2.0, -40.0]
    return m


@pytest.mark.parametrize("angles", [(0, 0, 0), (30, 0, 0), (0, -20, 0), (0, 0, 15), (-25, 10, -5)])
def test_head_pose_recovers_known_angles(angles):
    matrix = _rotation(*angles)
    assert head_pose(matrix) == pytest.approx(angles, abs=1e-6)
    scaled = matrix.copy()
    scaled[:3, :3] *= 1.7  # a scale in the transform does not change the angles
    assert head_pose(scaled) == pytest.approx(angles, abs=1e-6)


def test_face_geometry_is_relative_to_the_eye_distance():
    points = np.zeros((478, 2))
    points[33], points[263] = (100, 100), (200, 100)  # eyes 100 px apart
    points[159], points[145] = (130, 95), (130, 105)  # right eye 10 px open
    points[386], points[374] = (170, 96), (170, 104)  # left eye 8 px open
    points[13], points[14] = (150, 160), (150, 190)  # mouth 30 px open
    points[61], points[291] = (120, 175), (180, 175)  # mouth 60 px wide
    assert face_geometry(points) == pytest.approx((0.08, 0.10, 0.30, 0.60))
    assert face_geometry(points * 3) == pytest.approx((0.08, 0.10, 0.30, 0.60))


def test_bad_model_paths_raise_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        FacialExtractor(FacialConfig(model_path=str(tmp_path / "missing.task")))
    text = tmp_path / "notes.task"
    text.write_text("not a model")
    with pytest.raises(ModelError, match="not a MediaPipe"):
        FacialExtractor(FacialConfig(model_path=str(text)))
    junk = tmp_path / "junk.task"
    with zipfile.ZipFile(junk, "w") as zf:
        zf.writestr("readme.txt", "a zip, but no model inside")
    with pytest.raises(ModelError, match="cannot load") as err:
        FacialExtractor(FacialConfig(model_path=str(junk)))
    assert str(junk) in str(err.value) and "\n" not in str(err.value)


def test_one_or_two_landmarker_streams_see_the_same_faces(extractor):
    """Alternate frames go to two tracking landmarkers in parallel: same frames, same face
    flags, and expressions within tracking noise of one landmarker seeing every frame."""
    _, one = run(FacialExtractor(FacialConfig(streams=1)), "face_noface.mov")
    assert extractor.config.streams == 2
    _, two = run(extractor, "face_noface.mov")
    np.testing.assert_array_equal(one.times, two.times)
    np.testing.assert_array_equal(one.present, two.present)
    both = one.present & two.present
    assert both.sum() > 20
    assert np.abs(one.values[both, :52] - two.values[both, :52]).mean() < 0.03
    assert np.abs(col(one, "head_yaw_deg")[both] - col(two, "head_yaw_deg")[both]).mean() < 1.0


def test_a_failing_landmarker_stream_stops_the_video_with_one_error(extractor, monkeypatch):
    calls = []

    def fails_on_third(self, landmarker, rgb, stamp_ms, t, path, first):
        calls.append(stamp_ms)
        if len(calls) == 3:
            raise ModelError("simulated landmarker failure", path=path)
        return None

    monkeypatch.setattr(FacialExtractor, "_detect", fails_on_third)
    with pytest.raises(ModelError, match="simulated"):
        run(extractor, "WDA_KatieHill_000.mp4")
    assert len(calls) < 40  # stopped soon, not after the whole video


def test_results_read_from_c_equal_mediapipes_own_objects_bit_for_bit(extractor):
    """The landmarker's C result is read with numpy instead of MediaPipe's per-landmark Python
    objects: on real frames, one face and two (a two-shot of real talking heads), every number
    and every feature row is the same."""
    one_face = frames_at(VIDEOS / "WDA_KatieHill_000.mp4", 15, 1.0, 256)
    two_faces = [np.ascontiguousarray(np.hstack([a, b])) for a, b in zip(
        one_face, frames_at(VIDEOS / "retalking_face_2.mp4", 15, 1.0, 256))]
    seen = 0
    for frames, faces in ((one_face, 1), (two_faces, 2)):
        ours, theirs = extractor._create(faces), extractor._create(faces)
        try:
            for i, rgb in enumerate(frames):
                image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
                a = detect_for_video(ours, image, 67 * i)
                b = from_result(theirs.detect_for_video(image, 67 * i))
                assert len(a) == len(b)
                for fa, fb in zip(a, b):
                    assert fa.points.dtype == np.float32 and fa.points.shape == (478, 2)
                    np.testing.assert_array_equal(fa.points, fb.points)
                    np.testing.assert_array_equal(fa.scores, fb.scores)
                    np.testing.assert_array_equal(fa.matrix, fb.matrix)
                    assert fa.names == fb.names == BLENDSHAPES
                w, h = rgb.shape[1], rgb.shape[0]
                for (ra, boxa), (rb, boxb) in zip(extractor._faces(a, w, h), extractor._faces(b, w, h)):
                    np.testing.assert_array_equal(ra, rb)
                    np.testing.assert_array_equal(boxa, boxb)
                seen += len(a)
        finally:
            close_quietly(ours)
            close_quietly(theirs)
    assert seen >= 15 + 2 * 12  # faces found in (nearly) every frame, both faces of the two-shot
