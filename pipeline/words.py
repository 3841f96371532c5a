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

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Union


from pipeline.aligner import Anchor, default_aligner
from pipeline.asr import Recogniser, Transcription, make_recogniser
from pipeline.config import WordsConfig
from pipeline.errors import InputError
from pipeline.media import peak_amplitude
from pipeline.records import Audio, Utterance, Word
from pipeline.transcripts import Token, Transcript, read_transcript, tokenize, transcript_from_text
from pipeline.utterances import split_utterances

log = logging.getLogger(__name__)

# A transcript is a parsed Transcript, a path to a .txt/.srt/.vtt file, or the text itself (str).
TranscriptSource = Union[Transcript, "os.PathLike[str]", str, None]

SILENCE_PEAK = 1e-4  # about -80 dBFS: digital silence, nothing to align or recognise


class NoSpeechError(InputError):
    """The audio holds no speech (silent, or nothing recognisable)."""


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
) -> list[Utterance]:
    """Utterances with timed words; ``source`` (the video path) only names the file in errors."""
    if audio is None or len(audio.samples) == 0:
        raise NoSpeechError("no speech found: the audio track is empty", source)
    if peak_amplitude(audio.samples) < SILENCE_PEAK:
        raise NoSpeechError("no speech found: the audio is silent", source)
    parsed = load_transcript(transcript)
    if parsed is not None:
        return _from_transcript(audio, cfg, parsed)
    rec = recogniser or make_recogniser(cfg)
    transcription = rec.recognise(audio)
    if not transcription.words:
        raise NoSpeechError("no speech found: the recogniser heard no words", source)
    return _from_recognition(audio, cfg, transcription)


def _from_transcript(audio: Audio, cfg: WordsConfig, transcript: Transcript) -> list[Utterance]:
    tokens = transcript.tokens()
    anchors = _cue_anchors(transcript, tokens)
    words = default_aligner().align(audio, tokens, anchors or None)
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
    if realign:
        words = _realign(audio, cfg, items)
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
    return _no_overlaps(out)


def _disagreement(asr: Word, aligned: Word) -> float:
    """How far (s) the aligned word sticks out of the recogniser's span for it. Whisper's words
    run back to back, so a word after a pause *starts* early in Whisper's timing; an aligned word
    inside Whisper's span agrees with it, one outside it by seconds is a misalignment."""
    return max(0.0, asr.start - aligned.start, aligned.end - asr.end)


def _no_overlaps(words: list[Word]) -> list[Word]:
    """Where a kept ASR timing overlaps an aligned neighbour, end the earlier word where the next
    begins (words stay in order and never run into each other)."""
    out = list(words)
    for i in range(1, len(out)):
        prev, cur = out[i - 1], out[i]
        if prev.end > cur.start and prev.start < cur.start:
            out[i - 1] = Word(prev.text, prev.start, cur.start, prev.timing, prev.confidence)
    return out


def words_stage_id(cfg: WordsConfig, transcript: TranscriptSource = None) -> str:
    """What decides this stage's output, for feature cache keys: the transcript's hash or the
    recogniser's identity (model name + weights hash + settings), plus aligner and splitting
    settings. Changing the ASR model or a setting changes the key, so features are re-extracted."""
    from pipeline.aligner import default_aligner as _aligner

    split = f"gap={cfg.utterance_gap_s}:max={cfg.max_utterance_s}"
    aligner = _aligner().version
    parsed = load_transcript(transcript)
    if parsed is not None:
        blob = json.dumps([parsed.text, [(c.start, c.end, c.text) for c in parsed.cues]])
        return f"transcript@{hashlib.sha256(blob.encode()).hexdigest()[:16]}|{aligner}|{split}"
    rec = make_recogniser(cfg)
    realign = f"realign={int(cfg.realign)}:shift={cfg.realign_max_shift_s}"
    return f"{rec.describe()}|{aligner}:{realign}|{split}"
