"""Split a word stream into utterances, the unit CMU-MOSEI labels (sentences, not whole videos).

Where a boundary comes from, in order of trust:
1. sentence punctuation (. ! ?) of the transcript or of Whisper's text, and Whisper's own segment
   ends (Whisper ends segments at sentence ends or clear pauses);
2. only when the text gives no boundary at all: pauses longer than ``utterance_gap_s``;
3. then any utterance longer than ``max_utterance_s`` is split at its longest pause, repeatedly,
   so the model never sees one endless "sentence" from an unpunctuated transcript.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from core.config import WordsConfig
from core.records import Utterance, Word

if TYPE_CHECKING:
    from pipeline.transcripts import Transcript


def _flags(values, n: int) -> list[bool]:
    if values is None:
        return [False] * n
    if hasattr(values, "tokens"):  # a Transcript whose tokens are these words, one to one
        values = [t.sentence_end for t in values.tokens()]
    if len(values) != n:
        raise ValueError(f"got {len(values)} boundary flags for {n} words")
    return [bool(v) for v in values]


def _split_long(words: Sequence[Word], first: int, stop: int, max_s: float) -> list[int]:
    """End indices for words[first:stop], splitting at the longest pause while too long."""
    if stop - first < 2 or words[stop - 1].end - words[first].start <= max_s:
        return [stop - 1]
    gaps = [words[i + 1].start - words[i].end for i in range(first, stop - 1)]
    # Longest pause; ties (e.g. back-to-back ASR words) go to the one nearest the middle.
    middle = (first + stop - 2) / 2
    k = max(range(len(gaps)), key=lambda j: (round(gaps[j], 3), -abs(first + j - middle)))
    cut = first + k
    return _split_long(words, first, cut + 1, max_s) + _split_long(words, cut + 1, stop, max_s)


def split_utterances(
    words: Sequence[Word],
    cfg: WordsConfig,
    sentence_ends: "Sequence[bool] | Transcript | None" = None,
    segment_ends: Sequence[bool] | None = None,
) -> list[Utterance]:
    """Group words (in time order) into numbered utterances; see the module doc for the rules.

    ``sentence_ends`` flags the words followed by . ! ? — or is the ``Transcript`` the words
    came from (one word per transcript token), whose punctuation is then used."""
    n = len(words)
    if n == 0:
        return []
    sent = _flags(sentence_ends, n)
    seg = _flags(segment_ends, n)
    ends = [a or b for a, b in zip(sent, seg)]
    if not any(sent) and not any(seg[:-1]):  # the text says nothing: fall back to pauses
        ends = [words[i + 1].start - words[i].end > cfg.utterance_gap_s for i in range(n - 1)] + [True]
    ends[-1] = True
    cuts: list[int] = []
    first = 0
    for i, end in enumerate(ends):
        if end:
            cuts.extend(_split_long(words, first, i + 1, cfg.max_utterance_s))
            first = i + 1
    out: list[Utterance] = []
    first = 0
    for end in cuts:
        out.append(Utterance(len(out), tuple(words[first : end + 1])))
        first = end + 1
    return out
