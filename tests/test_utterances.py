"""Utterance splitting arithmetic: punctuation, segments, pauses, over-long utterances."""

from __future__ import annotations

import pytest

from core.config import WordsConfig
from core.records import Word
from pipeline.transcripts import transcript_from_text
from pipeline.utterances import split_utterances


def words_at(*spans: tuple[float, float]) -> list[Word]:
    return [Word(f"w{i}", s, e) for i, (s, e) in enumerate(spans)]


CFG = WordsConfig(utterance_gap_s=0.8, max_utterance_s=20.0)


def test_sentence_punctuation_wins_over_pauses():
    words = words_at((0, 0.5), (0.5, 1.0), (3.0, 3.5), (3.5, 4.0))  # 2 s pause after w1
    # punctuation after w2 only: the pause after w1 does not split
    utts = split_utterances(words, CFG, [False, False, True, False])
    assert [[w.text for w in u.words] for u in utts] == [["w0", "w1", "w2"], ["w3"]]
    assert [u.index for u in utts] == [0, 1]
    assert utts[0].start == 0 and utts[0].end == 3.5


def test_one_sentence_with_final_period_stays_whole():
    words = words_at((0, 0.5), (1.6, 2.0), (3.0, 3.5))  # long pauses, but one sentence
    assert len(split_utterances(words, CFG, [False, False, True])) == 1


def test_segment_ends_split_too():
    words = words_at((0, 1), (1, 2), (2, 3), (3, 4))
    utts = split_utterances(words, CFG, [False] * 4, [False, True, False, True])
    assert [len(u.words) for u in utts] == [2, 2]


def cuts_of(words, cfg) -> list[int]:
    """Index of the last word of each utterance."""
    ends, n = [], -1
    for u in split_utterances(words, cfg):
        n += len(u.words)
        ends.append(n)
    return ends


def test_pauses_only_when_text_gives_no_boundary():
    words = words_at((0, 0.5), (0.6, 1.0), (1.9, 2.2), (2.3, 2.6), (3.41, 4.0))
    # gaps: 0.1, 0.9 (> 0.8), 0.1, 0.81 (> 0.8)
    assert cuts_of(words, CFG) == [1, 3, 4]
    assert cuts_of(words, WordsConfig(utterance_gap_s=1.0)) == [4]


def test_long_utterance_split_at_longest_pause():
    # 30 words of 1 s back to back, with a 0.5 s pause after word 9 and 0.3 s after word 20
    spans, t = [], 0.0
    for i in range(30):
        spans.append((t, t + 1.0))
        t += 1.0 + (0.5 if i == 9 else 0.3 if i == 20 else 0.0)
    words = words_at(*spans)
    # 30.8 s in all: split at the longest pause -> 0-9 (10 s) and 10-29 (20.3 s)
    cuts = cuts_of(words, WordsConfig(utterance_gap_s=5.0, max_utterance_s=21.0))
    assert cuts == [9, 29]
    # with a 20 s limit the second part is too long as well and splits at its own pause
    cuts = cuts_of(words, WordsConfig(utterance_gap_s=5.0, max_utterance_s=20.0))
    assert cuts == [9, 20, 29]


def test_back_to_back_words_split_near_the_middle():
    words = words_at(*[(float(i), float(i + 1)) for i in range(10)])
    cuts = cuts_of(words, WordsConfig(max_utterance_s=6.0))
    assert cuts == [4, 9]
    assert all(words[b].end - words[a].start <= 6.0 for a, b in zip([0] + [c + 1 for c in cuts], cuts))


def test_transcript_object_gives_the_punctuation():
    script = transcript_from_text("Hello there. General Kenobi!")
    words = words_at((0, 1), (1, 2), (2, 3), (3, 4))
    assert [len(u.words) for u in split_utterances(words, CFG, script)] == [2, 2]


def test_edge_cases():
    assert split_utterances([], CFG) == []
    one = split_utterances(words_at((0, 1)), CFG)
    assert len(one) == 1 and one[0].text == "w0"
    with pytest.raises(ValueError):
        split_utterances(words_at((0, 1), (1, 2)), CFG, [True])
