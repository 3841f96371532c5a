"""Words with timings for one audio track, grouped into utterances.

Two routes, one result (``list[Utterance]`` of ``Word`` with seconds):
- a transcript is known: force-align it with pocketsphinx (exact to ~15 ms on clean speech);
- no transcript: recognise with the configured recogniser (Whisper by default), then re-time
  Whisper's words by force-aligning Whisper's own text, because Whisper's word starts run early
  (~0.2 s on ``truth16k``). A word keeps Whisper's timing where the aligner could not place it or
  moved it by more than ``realign_max_shift_s`` (then the aligner is the one more likely wrong).

Silence, or speech nobody can hear, is ``NoSpeechError``: an ``InputError`` the extract stage
may turn into "no words" with a warning instead of a failure.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Union

import numpy as np

from core.config import WordsConfig
from core.errors import InputError
from core.files import digest
from core.records import Audio, Utterance, Word
from pipeline.asr import Recogniser, Transcription, make_recogniser
from pipeline.forced_alignment import Anchor, default_aligner
from pipeline.media import is_silent
from pipeline.spoken import Token, tokenize
from pipeline.transcripts import Transcript, read_transcript, transcript_from_text
from pipeline.utterances import split_utterances

log = logging.getLogger(__name__)

# A transcript is a parsed Transcript, a path to a transcript file, or the text itself (str).
TranscriptSource = Union[Transcript, "os.PathLike[str]", str, None]

class NoSpeechError(InputError):
    """The audio holds no speech (silent, or nothing recognisable)."""


@dataclass
class WordsResult:
    """What the words stage found: timed words in utterances, and what it knows of the language."""

    utterances: list[Utterance]
    language: str | None = None  # the language transcribed in; None for a given transcript
    language_probability: float | None = None  # the detector's certainty, when it chose the language
    warnings: list[str] = field(default_factory=list)  # one line each, for the file's summary
    device: str = "cpu"  # where the words were recognised ("cuda:0:float16"); alignment is on the CPU


def load_transcript(transcript: TranscriptSource) -> Transcript | None:
    """Transcript object from what the caller has: a path (os.PathLike) is read as a file, a
    plain ``str`` is taken as the transcript text itself."""
    if transcript is None or isinstance(transcript, Transcript):
        return transcript
    if isinstance(transcript, os.PathLike):
        return read_transcript(transcript)
    return transcript_from_text(str(transcript))


def words_for(
    audio: Audio,
    cfg: WordsConfig,
    transcript: TranscriptSource = None,
    *,
    source: str | None = None,
    recogniser: Recogniser | None = None,
) -> WordsResult:
    """Utterances with timed words; ``source`` (the video path) only names the file in errors."""
    if audio is None or len(audio.samples) == 0:
        raise NoSpeechError("no speech found: the audio track is empty", source)
    if is_silent(audio):
        raise NoSpeechError("no speech found: the audio is silent", source)
    parsed = load_transcript(transcript)
    if parsed is not None:
        return WordsResult(_from_transcript(audio, cfg, parsed))
    rec = recogniser or make_recogniser(cfg)
    try:
        transcription = rec.recognise(audio)
    except InputError as err:  # the recogniser's verdict on the input (another language)
        raise type(err)(str(err), source) from None
    if not transcription.words:
        raise NoSpeechError("no speech found: the recogniser heard no words", source)
    return WordsResult(_from_recognition(audio, cfg, transcription), transcription.language,
                       transcription.language_probability, list(transcription.warnings),
                       getattr(rec, "device", "cpu"))


def _from_transcript(audio: Audio, cfg: WordsConfig, transcript: Transcript) -> list[Utterance]:
    tokens = transcript.tokens()
    anchors = _cue_anchors(transcript, tokens)
    words = in_time_order(default_aligner().align(audio, tokens, anchors or None))
    sentence_ends = [t.sentence_end for t in tokens]
    # Subtitle cues often break mid-sentence: use them only when the text has no punctuation.
    cue_ends = None
    if anchors and not any(sentence_ends[:-1]):
        cue_ends = [False] * len(tokens)
        for a in anchors:
            cue_ends[a.stop - 1] = True
    return split_utterances(words, cfg, sentence_ends, cue_ends)


def _cue_anchors(transcript: Transcript, tokens: list[Token]) -> list[Anchor]:
    anchors: list[Anchor] = []
    i = 0
    while i < len(tokens):
        cue = tokens[i].cue
        j = i
        while j < len(tokens) and tokens[j].cue == cue:
            j += 1
        if cue is not None:
            c = transcript.cues[cue]
            anchors.append(Anchor(c.start, c.end, i, j))
        i = j
    return anchors


@dataclass
class _AsrToken:
    token: Token
    asr: Word  # the recogniser's timing for this token
    segment: int


def _asr_tokens(transcription: Transcription) -> list[_AsrToken]:
    """Recognised words as transcript tokens ("F2," -> display "F2", spoken "f two")."""
    out: list[_AsrToken] = []
    for si, seg in enumerate(transcription.segments):
        for w in seg.words:
            toks = tokenize(w.text)
            if not toks:
                if out and any(ch in w.text for ch in ".!?") and out[-1].segment == si:
                    prev = out[-1].token
                    out[-1].token = Token(prev.text, prev.spoken, True, prev.cue)
                continue
            step = (w.end - w.start) / len(toks)  # "and/or" -> two tokens share the time
            for k, tok in enumerate(toks):
                end = w.end if k == len(toks) - 1 else w.start + (k + 1) * step
                timing = Word(tok.text, w.start + k * step, end, "asr", w.confidence)
                out.append(_AsrToken(tok, timing, si))
    return out


def _from_recognition(audio: Audio, cfg: WordsConfig, transcription: Transcription) -> list[Utterance]:
    items = _asr_tokens(transcription)
    if not items:
        raise NoSpeechError("no speech found: the recogniser heard no words")
    words = [it.asr for it in items]
    realign = cfg.realign and not transcription.model.startswith("pocketsphinx") and transcription.language == "en"
    words = _realign(audio, cfg, items) if realign else in_time_order(words)
    sentence_ends = [it.token.sentence_end for it in items]
    segment_ends = [i + 1 == len(items) or items[i + 1].segment != it.segment for i, it in enumerate(items)]
    return split_utterances(words, cfg, sentence_ends, segment_ends)


def _realign(audio: Audio, cfg: WordsConfig, items: list[_AsrToken]) -> list[Word]:
    tokens = [it.token for it in items]
    anchors: list[Anchor] = []
    for i, it in enumerate(items):
        if anchors and items[anchors[-1].first].segment == it.segment:
            a = anchors[-1]
            anchors[-1] = Anchor(a.start, it.asr.end, a.first, i + 1)
        else:
            anchors.append(Anchor(it.asr.start, it.asr.end, i, i + 1))
    aligned = default_aligner().align(audio, tokens, anchors)
    out: list[Word] = []
    kept = 0
    for it, al in zip(items, aligned):
        asr = it.asr
        if al.timing == "aligned" and _disagreement(asr, al) <= cfg.realign_max_shift_s:
            out.append(Word(asr.text, al.start, al.end, "aligned", asr.confidence))
        else:
            out.append(asr)
            kept += 1
    if kept:
        log.info("realign: kept the recogniser's timing for %d of %d words", kept, len(out))
    return _fit_between_aligned(out)


def _disagreement(asr: Word, aligned: Word) -> float:
    """How far (s) the aligned word sticks out of the recogniser's span for it. Whisper's words
    run back to back, so a word after a pause *starts* early in Whisper's timing; an aligned word
    inside Whisper's span agrees with it, one outside it by seconds is a misalignment."""
    return max(0.0, asr.start - aligned.start, aligned.end - asr.end)


def _fit_between_aligned(words: list[Word]) -> list[Word]:
    """Place every word that kept the recogniser's timing inside the gap its aligned neighbours
    leave. Whisper's times run early after pauses, so a kept word can start before the aligned
    word in front of it ("and" aligned 1.92-2.02 s, then "heaven" from Whisper 1.62-1.98 s);
    the aligned times are the exact ones, so the kept word yields: it is clamped to start no
    earlier than the previous aligned word ends and to end no later than the next one starts."""
    out = list(words)
    aligned = [i for i, w in enumerate(out) if w.timing == "aligned"]
    for i, w in enumerate(out):
        if w.timing == "aligned":
            continue
        k = bisect.bisect(aligned, i)  # aligned[k - 1] < i < aligned[k]
        lo = out[aligned[k - 1]].end if k > 0 else -np.inf
        hi = out[aligned[k]].start if k < len(aligned) else np.inf
        if hi < lo:
            hi = lo
        start = float(np.clip(w.start, lo, hi))
        end = float(np.clip(max(w.end, start), start, hi))
        out[i] = Word(w.text, start, end, w.timing, w.confidence)
    return in_time_order(out)


def in_time_order(words: list[Word]) -> list[Word]:
    """The store's invariant for any word list, whatever produced it: starts never decrease and
    no word ends before it starts (a word that would start before its predecessor starts with
    it instead; an earlier word that runs into the next one ends where the next begins)."""
    out: list[Word] = []
    for w in words:
        start = max(w.start, out[-1].start) if out else w.start
        end = max(w.end, start)
        if out and out[-1].end > start and out[-1].start < start:
            prev = out[-1]
            out[-1] = Word(prev.text, prev.start, start, prev.timing, prev.confidence)
        out.append(w if (start, end) == (w.start, w.end) else Word(w.text, start, end, w.timing, w.confidence))
    return out


def words_stage_id(cfg: WordsConfig, transcript: TranscriptSource = None) -> str:
    """What decides this stage's output, for feature cache keys: the transcript's hash or the
    recogniser's identity (model name + weights hash + settings), plus aligner and splitting
    settings. Changing the ASR model or a setting changes the key, so features are re-extracted."""
    split = f"gap={cfg.utterance_gap_s}:max={cfg.max_utterance_s}"
    aligner = default_aligner().version
    parsed = load_transcript(transcript)
    if parsed is not None:
        blob = json.dumps([parsed.text, [(c.start, c.end, c.text) for c in parsed.cues]])
        return f"transcript@{digest(blob)[:16]}|{aligner}|{split}"
    rec = make_recogniser(cfg)
    realign = f"realign={int(cfg.realign)}:shift={cfg.realign_max_shift_s}"
    return f"{rec.describe()}|{aligner}:{realign}|{split}"
