"""What the speech tests and ``bench/asr.py`` share: a recogniser that replays a result, and the
word error rate.

WER is counted by jiwer over the words as ``normalize_text`` gives them (lower case, no
punctuation, numbers as words), so "42%" heard as "forty-two percent" is no error: only words
heard differently count.
"""

from __future__ import annotations

from typing import Sequence

import jiwer

from core.records import Audio
from pipeline.asr import Transcription
from pipeline.spoken import normalize_text


class FixedRecogniser:
    """Hands back a transcription made earlier: re-runs the words stage (re-timing, utterance
    splitting) on one recognition result without decoding the audio again."""

    def __init__(self, result: Transcription):
        self.result = result

    def recognise(self, audio: Audio) -> Transcription:
        return self.result

    def describe(self) -> str:
        return self.result.model


def word_errors(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[int, int]:
    """(word edits, reference words) over pairs of texts: a set's WER is their quotient, and
    sets add up by summing both."""
    out = jiwer.process_words(
        [" ".join(normalize_text(text)) for text in references],
        [" ".join(normalize_text(text)) for text in hypotheses],
    )
    return out.substitutions + out.deletions + out.insertions, out.hits + out.substitutions + out.deletions


def word_error_rate(reference: str, hypothesis: str) -> float:
    edits, words = word_errors([reference], [hypothesis])
    return edits / max(1, words)
