"""The frames word pooling reads (core.spans): the arithmetic, the promise that pooling over only
those frames gives the very same word features, and the face track of a real talking head
landmarked only there."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import FacialConfig
from core.records import FrameFeatures, Utterance, Word
from core.spans import covered_s, inside, nearest_reach, read_spans
from extractors.facial import BLENDSHAPES, GEOMETRY, POSE, FacialExtractor
from pipeline import media
from pipeline.pooling import pool_to_words
from tests.conftest import VIDEOS


def test_spans_are_the_words_merged_and_short_words_reach_out():
    period = 1 / 15
    starts = np.array([0.5, 0.9, 1.0, 3.0, 2.0])
    ends = np.array([0.8, 1.1, 1.4, 3.05, 2.5])  # the 3.0 word is shorter than two frames
    spans = read_spans(starts, ends, period)
    reach = nearest_reach(period)
    assert reach == 0.25
    np.testing.assert_allclose(spans, [[0.5, 0.8], [0.9, 1.4], [2.0, 2.5], [3.0 - reach, 3.05 + reach]])
    assert inside(spans, 0.5) and inside(spans, 1.4) and inside(spans, 2.8)
    assert not inside(spans, 0.85) and not inside(spans, 0.1) and not inside(spans, 3.4)
    assert covered_s(spans, 3.1) == pytest.approx(0.3 + 0.5 + 0.5 + 0.35)
    assert read_spans(np.zeros(0), np.zeros(0), period).shape == (0, 2)
    assert nearest_reach(0.2) == 0.4  # a slow video: two of its frame periods


@pytest.mark.parametrize("seed", range(20))
def test_pooling_over_only_the_read_frames_gives_the_same_words(seed):
    """Random words over a jittered 15 fps track with gaps in face presence: dropping every frame
    outside the spans changes no word's features, flags or coverage, bit for bit."""
    rng = np.random.default_rng(seed)
    period = 1 / 15
    # frames nearest each instant of a 25 fps source, as the decoder chooses them
    source = np.arange(0, 20, 1 / 25)
    times = np.unique(source[np.abs(source[:, None] - np.arange(0, 20, period)[None]).argmin(axis=0)])
    values = rng.normal(size=(len(times), 3)).astype(np.float32)
    present = rng.random(len(times)) > 0.3
    names = ["a", "b", "face_present"]
    track = FrameFeatures(times, values, present, names)
    n = 40
    starts = np.sort(rng.uniform(0, 19.5, n))
    lengths = np.where(rng.random(n) < 0.3, rng.uniform(0, 0.1, n), rng.uniform(0.1, 0.6, n))
    words = [Word(f"w{i}", float(s), float(s + d)) for i, (s, d) in enumerate(zip(starts, lengths))]
    spans = read_spans(starts, starts + lengths, period)
    kept = np.array([inside(spans, t) for t in times])
    assert 0 < kept.sum() < len(times)
    few = FrameFeatures(times[kept], values[kept], present[kept], names)
    full, part = pool_to_words(track, words), pool_to_words(few, words)
    np.testing.assert_array_equal(full.values, part.values)
    np.testing.assert_array_equal(full.imputed, part.imputed)


@pytest.mark.slow
def test_a_talking_head_landmarked_only_where_its_words_are():
    """Real talking head, words where its speech is: only frames inside the spans get a row, and
    each word's features stay within tracking noise of landmarking every frame."""
    path = VIDEOS / "WDA_KatieHill_000.mp4"
    info = media.probe(path)
    words = [Word(f"w{i}", s, s + 0.3) for i, s in enumerate(np.arange(0.2, 7.6, 0.45))]  # pauses of 0.15 s
    words += [Word("a", 7.7, 7.72)]  # shorter than a frame
    utterances = [Utterance(0, tuple(words))]

    def track(frames: str):
        ex = FacialExtractor(FacialConfig(frames=frames))
        clip = media.video_clip(path, info)
        clip.utterances = utterances
        return ex.extract(clip)

    every, some = track("all"), track("words")
    spans = read_spans(np.array([w.start for w in words]), np.array([w.end for w in words]), 1 / 15)
    expect = np.array([inside(spans, t) for t in every.times])
    np.testing.assert_array_equal(some.times, every.times[expect])
    assert 0.5 < len(some.times) / len(every.times) < 0.9
    a, b = pool_to_words(every, words).values, pool_to_words(some, words).values
    for group in (range(len(BLENDSHAPES)), range(len(BLENDSHAPES), len(BLENDSHAPES) + len(POSE)),
                  range(len(BLENDSHAPES) + len(POSE), len(BLENDSHAPES) + len(POSE) + len(GEOMETRY))):
        cols = [c for c in group if a[:, c].std() > 1e-3]
        r = np.median([np.corrcoef(a[:, c], b[:, c])[0, 1] for c in cols])
        assert r > 0.97, (group, r)
