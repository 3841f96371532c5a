"""Word timings in time order: kept recogniser timings fit between aligned words, and every
route out of the words stage (and every file the store writes) keeps starts non-decreasing."""

from __future__ import annotations

import numpy as np
import pytest

from core.records import Utterance, Word, WordFeatures
from pipeline.schema import MODALITIES, FeatureSchema, ModalitySpec, StoreMetadata
from pipeline.store import check_word_times, feature_table
from pipeline.words import _fit_between_aligned, in_time_order


def times(words: list[Word]) -> list[tuple[float, float]]:
    return [(round(w.start, 3), round(w.end, 3)) for w in words]


def test_kept_recogniser_word_yields_to_the_aligned_word_before_it():
    """Seen on real speech: "and" aligned 1.92-2.02 s, then "heaven" kept Whisper's 1.62-1.98 s."""
    words = [
        Word("and", 1.92, 2.02, "aligned"),
        Word("heaven", 1.62, 1.98, "asr", 0.9),
        Word("knows", 2.40, 2.70, "aligned"),
    ]
    fixed = _fit_between_aligned(words)
    assert times(fixed) == [(1.92, 2.02), (2.02, 2.02), (2.40, 2.70)]
    assert [w.timing for w in fixed] == ["aligned", "asr", "aligned"]
    assert fixed[1].confidence == 0.9


def test_kept_word_is_clamped_into_the_gap_and_aligned_words_are_untouched():
    words = [
        Word("one", 0.50, 0.80, "aligned"),
        Word("two", 0.70, 1.40, "asr"),  # overlaps both neighbours
        Word("three", 1.20, 1.50, "aligned"),
        Word("four", 1.40, 2.00, "asr"),  # runs on past the end: nothing to clamp it to
    ]
    fixed = _fit_between_aligned(words)
    assert times(fixed) == [(0.5, 0.8), (0.8, 1.2), (1.2, 1.5), (1.5, 2.0)]


def test_in_time_order_never_lets_starts_decrease():
    rng = np.random.default_rng(0)
    starts = np.sort(rng.uniform(0, 30, 200)) + rng.normal(0, 0.3, 200)  # jittered, some backwards
    words = [Word(f"w{i}", float(s), float(s + rng.uniform(-0.1, 0.5)), "asr") for i, s in enumerate(starts)]
    fixed = in_time_order(words)
    s = np.array([w.start for w in fixed])
    e = np.array([w.end for w in fixed])
    assert (np.diff(s) >= 0).all() and (e >= s).all()
    assert [w.text for w in fixed] == [w.text for w in words]
    check_word_times([w.text for w in fixed], s, e)  # what the store asserts on every write


def test_in_time_order_keeps_ordered_words_as_they_are():
    words = [Word("a", 0.0, 0.2), Word("b", 0.3, 0.5), Word("c", 0.5, 0.9)]
    assert in_time_order(words) == words


@pytest.mark.parametrize(
    "starts, ends, message",
    [
        ([0.0, 1.0, 0.9], [0.5, 1.2, 1.1], "word 2 ('c') starts at 0.900 s, before word 1 ('b') at 1.000 s"),
        ([0.0, 1.0], [0.5, 0.8], "word 1 ('b') ends at 0.800 s, before it starts at 1.000 s"),
        ([0.0, float("nan")], [0.5, 1.0], "non-finite"),
    ],
)
def test_the_store_refuses_times_that_go_backwards(tmp_path, starts, ends, message):
    words = tuple(Word(t, s, e) for t, s, e in zip("abc", starts, ends))
    schema = FeatureSchema({m: ModalitySpec("x", "1", 2) for m in MODALITIES})
    features = {m: WordFeatures(np.zeros((len(words), 2), np.float32), np.zeros(len(words), bool)) for m in MODALITIES}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        feature_table("v", [Utterance(0, words)], features, StoreMetadata(schema))
