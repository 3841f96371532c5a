"""Word pooling: hand-computed cases, a brute-force cross-check, and real GRID speech."""

from __future__ import annotations


import numpy as np
import pytest

from core.records import FrameFeatures, Word
from extractors.acoustic import AcousticExtractor
from pipeline import media
from pipeline.pooling import pool_to_words
from tests.conftest import DATA


def track(times, values, present=None, names=None) -> FrameFeatures:
    values = np.asarray(values, np.float32)
    values = values if values.ndim == 2 else values.reshape(len(times), -1)
    present = np.ones(len(times), bool) if present is None else np.asarray(present, bool)
    names = names or [f"f{i}" for i in range(values.shape[1])]
    return FrameFeatures(np.asarray(times, np.float64), values, present, names)


# five frames, 100 ms apart; column 0 = 1..5, column 1 = 10 x column 0
TIMES = [0.0, 0.1, 0.2, 0.3, 0.4]
VALUES = [[1, 10], [2, 20], [3, 30], [4, 40], [5, 50]]


def test_average_over_the_frames_inside_each_word():
    out = pool_to_words(track(TIMES, VALUES), [Word("a", 0.05, 0.25), Word("b", 0.0, 0.4), Word("c", 0.3, 0.3)])
    np.testing.assert_allclose(out.values, [[2.5, 25], [3, 30], [4, 40]])
    assert out.values.dtype == np.float32 and not out.imputed.any()


def test_frames_without_the_modality_are_left_out():
    out = pool_to_words(track(TIMES, VALUES, present=[1, 0, 1, 1, 1]), [Word("a", 0.0, 0.2)])
    np.testing.assert_allclose(out.values, [[2, 20]])  # (1 + 3) / 2, frame at 0.1 ignored


def test_word_shorter_than_a_frame_takes_the_nearest_present_frame():
    tr = track(TIMES, VALUES, present=[1, 1, 1, 1, 1])
    out = pool_to_words(tr, [Word("uh", 0.12, 0.14), Word("oh", 0.17, 0.18)])
    np.testing.assert_allclose(out.values, [[2, 20], [3, 30]])  # 0.1 is nearest, then 0.2
    tr = track(TIMES, VALUES, present=[1, 0, 1, 1, 1])
    out = pool_to_words(tr, [Word("uh", 0.12, 0.14)])
    np.testing.assert_allclose(out.values, [[3, 30]])  # 0.1 has no data: 0.2 is the nearest present
    assert not out.imputed.any()


def test_words_without_usable_frames_are_interpolated_from_neighbours_and_flagged():
    times = np.arange(30) / 10
    values = np.stack([np.arange(len(times)), np.ones(len(times))], axis=1)
    present = ~((times > 0.95) & (times < 2.05))  # modality missing from 1.0 s to 2.0 s
    words = [Word("a", 0.0, 0.2), Word("b", 1.2, 1.4), Word("c", 1.6, 1.8), Word("d", 2.4, 2.6)]
    out = pool_to_words(track(times, values, present), words)
    assert out.imputed.tolist() == [False, True, True, False]
    a, d = out.values[0, 0], out.values[3, 0]
    assert a == pytest.approx(1.0) and d == pytest.approx(25.0)
    # word midpoints 0.1, 1.3, 1.7, 2.5: linear in time between a and d
    assert out.values[1, 0] == pytest.approx(a + (d - a) * (1.3 - 0.1) / (2.5 - 0.1), rel=1e-5)
    assert out.values[2, 0] == pytest.approx(a + (d - a) * (1.7 - 0.1) / (2.5 - 0.1), rel=1e-5)


def test_imputation_at_the_edges_copies_the_nearest_real_word():
    times = np.arange(20) / 10
    values = np.arange(len(times), dtype=float)[:, None]
    present = (times > 0.45) & (times < 1.55)
    words = [Word("a", 0.0, 0.3), Word("b", 0.6, 0.8), Word("c", 1.0, 1.2), Word("d", 1.7, 1.9)]
    out = pool_to_words(track(times, values, present), words)
    assert out.imputed.tolist() == [True, False, False, True]
    np.testing.assert_allclose(out.values[:, 0], [7.0, 7.0, 11.0, 11.0])


def test_far_away_frames_are_not_borrowed():
    out = pool_to_words(track(TIMES, VALUES), [Word("late", 1.0, 1.01)])
    assert out.imputed.tolist() == [True]
    # no real word at all: the track's mean over present frames
    np.testing.assert_allclose(out.values, [[3, 30]])


def test_missing_modality_gives_zeros_and_flags_never_nan():
    words = [Word("a", 0.0, 0.5), Word("b", 0.6, 0.9)]
    empty = pool_to_words(track([], np.zeros((0, 3))), words)
    assert empty.values.shape == (2, 3) and not empty.values.any() and empty.imputed.all()
    absent = pool_to_words(track(TIMES, VALUES, present=[0] * 5), words)
    assert not absent.values.any() and absent.imputed.all()
    bad = pool_to_words(track(TIMES, [[np.nan, 1], [np.inf, 2], [1, 3], [1, 4], [1, 5]]), words)
    assert np.isfinite(bad.values).all()
    none = pool_to_words(track(TIMES, VALUES), [])
    assert none.values.shape == (0, 2) and none.imputed.shape == (0,)


def test_coverage_columns_give_the_fraction_of_the_word_with_the_modality():
    names = ["smile", "face_present"]
    values = [[0.2, 1], [0.0, 0], [0.0, 0], [0.0, 0], [0.6, 1]]
    tr = track(TIMES, values, present=[1, 0, 0, 0, 1], names=names)
    out = pool_to_words(tr, [Word("a", 0.0, 0.35), Word("b", 0.15, 0.35), Word("c", 0.38, 0.45)])
    np.testing.assert_allclose(out.values[:, 1], [0.25, 0.0, 1.0])
    assert out.values[0, 0] == pytest.approx(0.2)  # only the present frame counts for "smile"
    assert out.imputed.tolist() == [False, True, False]


def test_matches_a_brute_force_loop_on_random_overlapping_unsorted_words():
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.005, 0.05, 2000))  # irregular frame times
    values = rng.normal(size=(len(times), 4))
    present = rng.random(len(times)) > 0.3
    starts = rng.uniform(0, times[-1], 300)
    words = [Word("w", s, s + d) for s, d in zip(starts, rng.uniform(0.05, 0.8, 300))]
    out = pool_to_words(track(times, values, present), words)
    for k, w in enumerate(words):
        inside = (times >= w.start) & (times <= w.end)
        if (inside & present).any():
            np.testing.assert_allclose(out.values[k], values[inside & present].mean(axis=0), rtol=1e-5, atol=1e-6)
            assert not out.imputed[k]


def test_an_hour_of_frames_is_pooled_in_one_pass():
    """An hour at a 10 ms hop, 10,000 words: every word the mean of its present frames (a few
    checked one by one). Its speed is measured by the benchmarks, not here."""
    rng = np.random.default_rng(1)
    n_frames, n_words = 360_000, 10_000  # 1 h at a 10 ms hop
    times, values, present = np.arange(n_frames) * 0.01, rng.random((n_frames, 48)), rng.random(n_frames) > 0.1
    starts = np.sort(rng.uniform(0, 3599, n_words))
    words = [Word("w", s, s + 0.3) for s in starts]
    out = pool_to_words(track(times, values, present), words)
    assert out.values.shape == (n_words, 48) and np.isfinite(out.values).all()
    for k in rng.choice(n_words, 5, replace=False):
        inside = (times >= words[k].start) & (times <= words[k].end) & present
        np.testing.assert_allclose(out.values[k], values[inside].mean(axis=0), rtol=1e-5, atol=1e-6)


def test_real_grid_speech_pooled_onto_the_corpus_word_alignment():
    clip = DATA / "grid" / "id2_vcd_swwp2s.mpg"
    rows = [line.split() for line in (DATA / "grid" / "swwp2s.align").read_text().split("\n") if line.strip()]
    words = [Word(w, int(a) / 25000, int(b) / 25000) for a, b, w in rows]
    audio = media.decode_audio(clip)
    ex = AcousticExtractor()
    acoustic = ex.extract(media.video_clip(clip, audio=audio))
    out = pool_to_words(acoustic, words)
    assert out.values.shape == (len(words), ex.feature_dim) and not out.imputed.any()
    rms = out.values[:, ex.feature_names.index("rms_db")]
    spoken = np.array([w.text != "sil" for w in words])
    assert spoken.sum() >= 5 and (~spoken).sum() >= 1
    assert rms[spoken].min() > rms[~spoken].max()  # every word is louder than the silences
    voiced = out.values[:, ex.feature_names.index("voiced")]
    assert voiced[spoken].mean() > voiced[~spoken].mean()
