"""Active-speaker choice: the arithmetic (identities, sync, smoothing) and two-shots of real
talking heads, where each word's face features must be the speaker's, never the listener's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.config import ExtractConfig, FacialConfig
from core.records import Audio, FaceTracks, FrameFeatures, Utterance, Word
from extractors.face_tracks import MAX_GAP_S, assign_identities, iou, landmark_box
from extractors.facial import FacialExtractor
from pipeline import media
from pipeline.extract import extract_video
from pipeline.pooling import pool_to_words
from pipeline.signal import audio_energy_db
from pipeline.speaker import (
    NOBODY,
    articulation,
    choose_speakers,
    pearson,
    smoothed,
    speaker_features,
    sync_scores,
)
from tests.conftest import SPEECH, VIDEOS
from tests.media_fixtures import blank, frames_at, load_audio, side_by_side, speech_words

# ----------------------------------------------------------------------------- identities


def test_landmark_box_is_the_extent_of_the_points_clipped_to_the_picture():
    points = np.array([[0.2, 0.3], [0.4, 0.1], [1.2, 0.5]])
    np.testing.assert_allclose(landmark_box(points), [0.2, 0.1, 1.0, 0.5])


def test_iou():
    box = np.array([0.0, 0.0, 0.2, 0.2])
    np.testing.assert_allclose(iou(box, [[0.0, 0.0, 0.2, 0.2], [0.1, 0.0, 0.3, 0.2], [0.5, 0.5, 0.6, 0.6]]),
                               [1.0, 1 / 3, 0.0])
    assert iou(box, [[0.3, 0.3, 0.3, 0.3]])[0] == 0.0  # an empty box overlaps nothing


def test_identities_follow_the_boxes_not_the_order_faces_are_reported_in():
    left, right = np.array([0.1, 0.2, 0.3, 0.6]), np.array([0.6, 0.2, 0.8, 0.6])
    times = np.arange(6) / 15.0
    # frame: 0 left+right, 1 right+left (reported the other way round), 2 right only,
    # 3 left moved a little + right, 4-5 right + a third face
    frame = np.array([0, 0, 1, 1, 2, 3, 3, 4, 4, 5, 5])
    third = np.array([0.4, 0.7, 0.5, 0.9])
    boxes = np.stack([left, right, right, left, right, left + 0.02, right, right, third, third, right])
    ids = assign_identities(frame, boxes, times)
    assert ids.tolist() == [0, 1, 1, 0, 1, 0, 1, 1, 2, 2, 1]
    # The same boxes, rows shuffled, give the same ids: only the boxes decide.
    perm = np.random.default_rng(0).permutation(len(frame))
    np.testing.assert_array_equal(assign_identities(frame[perm], boxes[perm], times), ids[perm])


def test_a_face_gone_longer_than_the_gap_comes_back_as_a_new_identity():
    box = np.array([0.1, 0.1, 0.4, 0.5])
    times = np.array([0.0, 0.1, 0.1 + MAX_GAP_S + 0.5])
    ids = assign_identities(np.array([0, 1, 2]), np.stack([box, box, box]), times)
    assert ids.tolist() == [0, 0, 1]
    assert assign_identities(np.zeros(0, np.int64), np.zeros((0, 4)), times).size == 0


# ----------------------------------------------------------------------------- sync arithmetic


def test_pearson_of_a_flat_series_is_zero():
    assert pearson(np.ones(10), np.arange(10.0)) == 0.0
    assert pearson(np.arange(10.0), 2 * np.arange(10.0) + 1) == pytest.approx(1.0)


def test_smoothing_counts_only_valid_frames():
    x = np.array([1.0, 100.0, 3.0, 5.0])
    valid = np.array([True, False, True, True])
    np.testing.assert_allclose(smoothed(x, valid, 3), [1.0, 2.0, 4.0, 4.0])


def test_articulation_is_unknown_where_the_face_was_missing_the_frame_before():
    mouth = np.array([[0.0, 0.0], [0.5, 0.1], [0.5, 0.1], [0.0, 0.0], [0.2, 0.0]])
    present = np.array([True, True, True, False, True])
    motion, valid = articulation(mouth, present, 3)
    assert valid.tolist() == [False, True, True, False, False]
    # the change 0 -> 1 (0.6) and 1 -> 2 (0), averaged over the known frames of each 3-frame span
    np.testing.assert_allclose(motion, [0.6, 0.3, 0.3, 0.0, 0.0])


def test_sync_scores_prefer_the_mouth_that_moves_with_the_sound():
    rng = np.random.default_rng(1)
    times = np.arange(150) / 15.0
    change = np.abs(rng.normal(size=150))
    motion = np.stack([change + 0.3 * rng.normal(size=150), np.abs(rng.normal(size=150))], axis=1)
    valid = np.ones((150, 2), bool)
    valid[:, 1] &= times < 3.0  # the second face leaves after 3 s
    scores = sync_scores(times, motion, valid, change, np.array([2.0, 5.0, 8.0]), window_s=2.0)
    assert (scores[:, 0] > 0.8).all()
    assert abs(scores[0, 1]) < 0.4
    assert np.isnan(scores[1:, 1]).all()  # seen in under half of those windows: no score


def test_the_choice_does_not_flicker_inside_an_utterance_but_follows_turns():
    # face 0 speaks utterance 0, face 1 utterance 1; one word of utterance 0 looks like face 1
    scores = np.array([[0.5, 0.0]] * 6 + [[0.5, 0.0]] * 4 + [[0.0, 0.5]] * 6)
    scores[3] = [0.0, 0.6]
    utterance = np.array([0] * 10 + [1] * 6)
    path, confidence = choose_speakers(scores, utterance, min_sync=0.1, penalty=1.0)
    assert path.tolist() == [0] * 10 + [1] * 6
    assert ((confidence > 0) & (confidence <= 1)).all()
    # without a switching cost, the odd word would switch
    assert choose_speakers(scores, utterance, 0.1, 0.0)[0][3] == 1


def test_nobody_is_chosen_when_no_face_moves_with_the_speech():
    scores = np.array([[0.02, -0.05], [0.0, 0.04], [np.nan, 0.01]])
    path, confidence = choose_speakers(scores, np.zeros(3, np.int64), min_sync=0.1, penalty=1.0)
    assert path.tolist() == [NOBODY] * 3
    assert (confidence > 0).all()
    empty_path, empty_conf = choose_speakers(np.zeros((0, 2)), np.zeros(0, np.int64), 0.1, 1.0)
    assert empty_path.size == 0 and empty_conf.size == 0


def test_a_single_face_track_is_pooled_exactly_as_before():
    rng = np.random.default_rng(2)
    times = np.arange(60) / 15.0
    names = ["bs_jawOpen", "face_present"]
    values = np.stack([rng.random(60), np.ones(60)], axis=1).astype(np.float32)
    present = times < 3.0
    values[~present] = 0.0
    faces = FaceTracks(frame=np.flatnonzero(present), track=np.zeros(present.sum(), np.int64),
                       boxes=np.tile(np.float32([0.2, 0.2, 0.6, 0.8]), (present.sum(), 1)),
                       values=values[present])
    track = FrameFeatures(times, values, present, names, faces)
    words = (Word("a", 0.5, 0.9), Word("b", 1.0, 1.4), Word("c", 3.2, 3.6))
    choice = speaker_features(track, None, [Utterance(0, words)], FacialConfig())
    plain = pool_to_words(FrameFeatures(times, values, present, names), list(words))
    assert choice.features.values.tobytes() == plain.values.tobytes()
    np.testing.assert_array_equal(choice.features.imputed, plain.imputed)
    assert choice.faces.track.tolist() == [0, 0, -1]
    assert choice.faces.faces.tolist() == [1, 1, 0]
    np.testing.assert_allclose(choice.faces.boxes[0], [0.2, 0.2, 0.6, 0.8])
    assert choice.summary["speaker_selection"] is False and choice.summary["max_in_frame"] == 1


# ----------------------------------------------------------------------------- real two-shots

A, B = "WDA_KatieHill_000.mp4", "retalking_face_1.mp4"  # two real talking heads with their own speech
C, D = "retalking_face_2.mp4", "retalking_face_5.mp4"  # and two more
FPS, HEIGHT = 25.0, 512
TURN_AT = 6  # seconds: where the soundtrack of the turn-taking clip passes from A to B


@dataclass
class Shot:
    path: Path
    track: FrameFeatures
    audio: Audio | None


@pytest.fixture(scope="module")
def extractor() -> FacialExtractor:
    return FacialExtractor()


@pytest.fixture(scope="module")
def shots(tmp_path_factory, extractor) -> dict[str, Shot]:
    """Two-shots of A and B (both orders, each one's own soundtrack, and a voice-over), and each
    face alone at its place in the same picture (the other half grey) as the reference."""
    folder = tmp_path_factory.mktemp("two_shots")
    seconds = 6.0
    faces = {p: frames_at(VIDEOS / p, FPS, seconds, HEIGHT) for p in (A, B)}
    sound = {p: load_audio(VIDEOS / p) for p in (A, B)}
    layouts = {
        "AB_says_A": (faces[A], faces[B], sound[A]), "AB_says_B": (faces[A], faces[B], sound[B]),
        "BA_says_A": (faces[B], faces[A], sound[A]), "BA_says_B": (faces[B], faces[A], sound[B]),
        "AB_voice_over": (faces[A], faces[B], load_audio(SPEECH / "RD_Radio31_000.wav")),

        "AB_no_sound": (faces[A], faces[B], None),
        "A_left": (faces[A], blank(faces[B]), None), "B_right": (blank(faces[A]), faces[B], None),
        "B_left": (faces[B], blank(faces[A]), None), "A_right": (blank(faces[B]), faces[A], None),
    }
    # A turn: A speaks for 6 s (B talks to someone else, soundless), then B speaks its first 6 s
    # again, now with its soundtrack (while A goes on talking soundlessly).
    a_long = frames_at(VIDEOS / A, FPS, 8.0, HEIGHT)
    n = int(TURN_AT * FPS)
    layouts["AB_turn"] = (a_long + a_long[: 2 * n - len(a_long)], faces[B][:n] * 2,
                          np.concatenate([sound[A][: TURN_AT * 16000], sound[B][: TURN_AT * 16000]]))
    out = {}
    for name, (left, right, audio) in layouts.items():
        length = len(left) / FPS
        path = side_by_side(left, right, audio, folder / f"{name}.mp4", seconds=length, height=HEIGHT, fps=FPS)
        info = media.probe(path)
        clip = media.video_clip(path, info, media.decode_audio(path, 16000) if audio is not None else None)
        out[name] = Shot(path, extractor.extract(clip), clip.audio)
    return out


def _row_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per word: correlation of the two 52-blendshape vectors."""
    a = a[:, :52] - a[:, :52].mean(axis=1, keepdims=True)
    b = b[:, :52] - b[:, :52].mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1) + 1e-12)


CASES = [  # clip, speaker's reference, listener's reference, the speaker's side
    ("AB_says_A", "A_left", "B_right", "left"),
    ("AB_says_B", "B_right", "A_left", "right"),
    ("BA_says_A", "A_right", "B_left", "right"),
    ("BA_says_B", "B_left", "A_right", "left"),
]


def check_speaker(shots: dict[str, Shot], clip: str, speaker: str, listener: str, side: str) -> None:
    """Each word's face features match the speaker's own (the speaker alone at the same place
    in the picture): per-word correlation of the 52 blendshapes >= 0.9 on >= 90 % of words, and
    closer to the speaker's than to the listener's on >= 90 %."""
    shot = shots[clip]
    assert shot.track.faces.multi and shot.track.faces.per_frame(len(shot.track.times)).max() == 2
    utterances = speech_words(shot.audio)
    words = [w for u in utterances for w in u.words]
    assert len(words) >= 10
    choice = speaker_features(shot.track, audio_energy_db(shot.audio), utterances, FacialConfig())
    spoken = ~choice.features.imputed
    assert spoken.mean() >= 0.9
    # one identity, on the speaker's side of the picture
    chosen = choice.faces.track[spoken]
    assert (chosen == np.bincount(chosen).argmax()).mean() >= 0.9
    centre = 0.5 * (choice.faces.boxes[spoken, 0] + choice.faces.boxes[spoken, 2])
    assert ((centre < 0.5) if side == "left" else (centre > 0.5)).mean() >= 0.9
    assert (choice.faces.faces[spoken] == 2).all()
    own = pool_to_words(shots[speaker].track, words).values
    other = pool_to_words(shots[listener].track, words).values
    to_speaker = _row_correlation(choice.features.values, own)
    to_listener = _row_correlation(choice.features.values, other)
    print(f"{clip}: {len(words)} words, r(speaker) median {np.median(to_speaker):.3f}, "
          f">=0.9 on {np.mean(to_speaker >= 0.9):.0%}; r(listener) median {np.median(to_listener):.3f}; "
          f"confidence {choice.faces.confidence.mean():.2f}")
    assert np.mean(to_speaker >= 0.9) >= 0.9
    assert np.mean(to_speaker > to_listener) >= 0.9
    assert choice.summary["speaker_selection"] and choice.summary["max_in_frame"] == 2


def check_voice_over(shot: Shot, label: str) -> None:
    """Unrelated speech over two talking faces: nobody visible speaks it, so the words' face
    features are imputed and flagged instead of taken from a face."""
    utterances = speech_words(shot.audio)
    choice = speaker_features(shot.track, audio_energy_db(shot.audio), utterances, FacialConfig())
    print(f"{label}: {len(choice.faces.track)} words, {np.mean(choice.faces.track == NOBODY):.0%} without a speaker")
    assert len(choice.faces.track) >= 10
    assert np.mean(choice.faces.track == NOBODY) >= 0.9
    assert np.array_equal(choice.features.imputed, choice.faces.track == NOBODY)
    assert (choice.features.values[choice.features.imputed, -1] == 0).all()  # face_present: no speaker's face
    assert choice.summary["words_without_speaker"] == int((choice.faces.track == NOBODY).sum())


@pytest.mark.slow
@pytest.mark.parametrize("clip, speaker, listener, side", CASES)
def test_two_shot_words_take_the_speakers_face(shots, clip, speaker, listener, side):
    check_speaker(shots, clip, speaker, listener, side)


@pytest.fixture(scope="module")
def other_pair(tmp_path_factory, extractor) -> dict[str, Shot]:
    """A second pair of real talking heads (C left, D right): each speaking, a voice-over, and
    each face alone at its place."""
    folder = tmp_path_factory.mktemp("other_pair")
    seconds = 4.8
    c, d = (frames_at(VIDEOS / p, FPS, seconds, HEIGHT) for p in (C, D))
    layouts = {
        "CD_says_C": (c, d, load_audio(VIDEOS / C)), "CD_says_D": (c, d, load_audio(VIDEOS / D)),
        "CD_voice_over": (c, d, load_audio(SPEECH / "RD_Radio34_002.wav")),
        "C_left": (c, blank(d), None), "D_right": (blank(c), d, None),
    }
    out = {}
    for name, (left, right, audio) in layouts.items():
        path = side_by_side(left, right, audio, folder / f"{name}.mp4", seconds=seconds, height=HEIGHT, fps=FPS)
        clip = media.video_clip(path, media.probe(path), media.decode_audio(path, 16000) if audio is not None else None)
        out[name] = Shot(path, extractor.extract(clip), clip.audio)
    return out


@pytest.mark.slow
def test_another_pair_of_faces(other_pair):
    """The same criteria on two other speakers, so the settings are not those of one pair."""
    check_speaker(other_pair, "CD_says_C", "C_left", "D_right", "left")
    check_speaker(other_pair, "CD_says_D", "D_right", "C_left", "right")
    check_voice_over(other_pair["CD_voice_over"], "other pair, voice-over")


@pytest.mark.slow
def test_the_choice_follows_a_turn_from_one_face_to_the_other(shots):
    """A speaks (left) for 6 s, then B (right) for 6 s, each face talking all along: words take
    A's face before the turn and B's after it (allowing the smoothing a second either side)."""
    shot = shots["AB_turn"]
    utterances = speech_words(shot.audio)
    words = [w for u in utterances for w in u.words]
    choice = speaker_features(shot.track, audio_energy_db(shot.audio), utterances, FacialConfig())
    centre = 0.5 * (choice.faces.boxes[:, 0] + choice.faces.boxes[:, 2])
    side = np.where(choice.faces.track == NOBODY, "none", np.where(centre < 0.5, "left", "right"))
    mids = np.array([0.5 * (w.start + w.end) for w in words])
    expected = np.where(mids < TURN_AT, "left", "right")
    clear = np.abs(mids - TURN_AT) > 1.0
    print(f"turn: {len(words)} words, {np.mean(side[clear] == expected[clear]):.0%} of those over 1 s from the turn "
          f"on the speaking face; sides {''.join(s[0] for s in side)}")
    assert clear.sum() >= 8
    assert np.mean(side[clear] == expected[clear]) >= 0.9


@pytest.mark.slow
def test_voice_over_two_shot_takes_no_face(shots):
    check_voice_over(shots["AB_voice_over"], "voice-over")


@pytest.mark.slow
def test_two_shot_faces_are_the_same_every_run(shots, extractor):
    """Same bytes, same faces: identities, boxes and features bit-identical in a second run
    (two landmarker threads, a fresh extractor), so nothing depends on thread timing."""
    shot = shots["BA_says_B"]
    again = FacialExtractor().extract(media.video_clip(shot.path, media.probe(shot.path)))
    first = shot.track.faces
    for name in ("frame", "track", "boxes", "values"):
        assert getattr(first, name).tobytes() == getattr(again.faces, name).tobytes(), name
    utterances = speech_words(shot.audio)
    a = speaker_features(shot.track, audio_energy_db(shot.audio), utterances, FacialConfig())
    b = speaker_features(again, audio_energy_db(shot.audio), utterances, FacialConfig())
    assert a.features.values.tobytes() == b.features.values.tobytes()
    assert a.faces.track.tolist() == b.faces.track.tolist() and a.summary == b.summary


@pytest.mark.slow
def test_a_face_alone_in_a_wide_picture_stays_on_the_single_face_path(shots):
    for name in ("A_left", "B_right"):
        faces = shots[name].track.faces
        assert not faces.multi and faces.ids == [0]


@pytest.mark.parametrize("name", ["WDA_KatieHill_000.mp4", "retalking_face_1.mp4", "desk_woman_stockmarket_9s.mp4"])
def test_single_face_clips_give_the_same_features_as_one_face_tracking(extractor, name):
    """Looking for a second face changes nothing when there is none: the features are those of
    the one-face landmarker (``max_faces=1``, no detector), bit for bit."""
    path = VIDEOS / name
    info = media.probe(path)
    searched = extractor.extract(media.video_clip(path, info))
    plain = FacialExtractor(FacialConfig(max_faces=1)).extract(media.video_clip(path, info))
    assert not searched.faces.multi and searched.faces.ids == [0]
    assert searched.values.tobytes() == plain.values.tobytes()
    np.testing.assert_array_equal(searched.present, plain.present)
    np.testing.assert_array_equal(searched.times, plain.times)


@pytest.mark.slow
def test_extraction_records_the_speakers_face_per_word(shots, tmp_path):
    """``extract_video`` on a two-shot (Whisper's words): the Parquet rows say whose face each
    word shows, and the summary accounts for the faces and the choice."""
    result = extract_video(shots["AB_says_B"].path, tmp_path)
    faces = result.summary["faces"]
    assert faces["speaker_selection"] is True and faces["max_in_frame"] == 2
    assert sorted(faces["tracks"]) == ["0", "1"]
    table = pq.read_table(result.output).to_pydict()
    n = len(table["word"])
    assert n >= 8
    track = np.array(table["face_track"])
    right = int(np.argmax([faces["tracks"][k]["box"][0] for k in ("0", "1")]))  # B is on the right
    assert np.mean(track == right) >= 0.8
    assert (np.array(table["faces_in_frame"]) == 2).all()
    conf = np.array(table["speaker_confidence"])
    assert ((conf >= 0) & (conf <= 1)).all()
    boxes = np.array(table["face_box"])
    assert (0.5 * (boxes[track == right, 0] + boxes[track == right, 2]) > 0.5).all()
    assert faces["tracks"][str(right)]["words"] == int((track == right).sum())


@pytest.mark.slow
def test_two_faces_and_no_soundtrack_impute_with_one_warning(shots, tmp_path):
    """A two-shot without audio, words from a transcript: nothing tells who speaks, so the face
    features are imputed and flagged, with a warning that says why, not a traceback."""
    video = tmp_path / "two_shot_silent.mp4"
    video.write_bytes(shots["AB_no_sound"].path.read_bytes())
    (tmp_path / "two_shot_silent.txt").write_text("We talked about the film for a while and then went home.")
    result = extract_video(video, tmp_path / "out", ExtractConfig().with_overrides({"facial.fps": 10.0}))
    assert result.summary["faces"]["speaker_selection"] is True
    assert any("no speech to tell who speaks" in w for w in result.warnings), result.warnings
    table = pq.read_table(result.output, columns=["vision_imputed", "face_track", "faces_in_frame"]).to_pydict()
    assert all(table["vision_imputed"]) and set(table["face_track"]) == {-1}
    assert set(table["faces_in_frame"]) == {2}
