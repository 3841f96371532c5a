"""Sentences spoken by espeak-ng, with word timings from the synthesiser itself.

The starter's audio features must come from real-sounding speech whose word timings are exact,
or the acoustic vectors would be pooled over the wrong stretches. Calling ``libespeak-ng``
through ctypes (rather than the ``espeak-ng`` command) gives whole sentences with natural
prosody *and* espeak's own word events, so no aligner is needed; each sentence gets a random but
reproducible voice, so the model has no single speaker to latch onto.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass
from typing import Sequence

import librosa
import numpy as np

from core.errors import ModelError
from core.records import Audio, Word
from scripts.starter.keys import stable_seed


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position in the text
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of the synthesised audio
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_EVENT_WORD, _EVENT_END_OF_LIST = 1, 0
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8, _POS_CHARACTER = 1, 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class Espeak:
    """espeak-ng in this process through its C library: whole sentences (natural prosody) with
    the synthesiser's own word events, so word timings come for free and exactly.

    The library keeps global state, so there is one instance per process and calls are locked.
    """

    _instance: "Espeak | None" = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError as err:
            raise ModelError(
                f"espeak-ng library not found ({err}); install the Debian package espeak-ng"
            ) from None
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.sample_rate = int(self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, 0))
        if self.sample_rate <= 0:
            raise ModelError("espeak-ng failed to initialise (missing espeak-ng-data?)")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> "Espeak":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _on_audio(self, wav, n, events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_END_OF_LIST:
            if events[i].type == _EVENT_WORD:
                self._events.append((events[i].text_position, events[i].audio_position))
            i += 1
        return 0

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int = 50
                   ) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """int16 samples at ``sample_rate`` and the word events as (char offset, start ms)."""
        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ModelError(f"espeak-ng has no voice {voice!r}")
            for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range),
                                 (_PARAM_VOLUME, 100)):
                self.lib.espeak_SetParameter(param, int(value), 0)
            self._chunks, self._events = [], []
            data = text.encode("utf-8") + b"\0"
            err = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            if err != 0:
                raise ModelError(f"espeak-ng could not synthesise the text (error {err})")
            samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            # espeak counts characters (not bytes) from 1; we index from 0.
            return samples, [(pos - 1, ms) for pos, ms in self._events]


@dataclass(frozen=True)
class Voice:
    name: str  # espeak voice + variant, e.g. "en-us+f3"
    rate: int  # words per minute
    pitch: int  # 0..99
    pitch_range: int  # 0..99
    lead_s: float  # silence (noise) before the first word
    tail_s: float
    gain: float  # peak level of the speech
    noise_dbfs: float  # level of the background noise


_LANGS = ("en-us", "en-us", "en", "en-gb-x-rp", "en-gb-scotland")  # "en" is British English
_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")


def voice_for(key: str, seed: int = 0) -> Voice:
    """A random but reproducible speaker for one sentence: no single voice for the model to
    latch onto."""
    rng = np.random.default_rng(stable_seed("voice", key, seed))
    return Voice(
        name=f"{_LANGS[rng.integers(len(_LANGS))]}+{_VARIANTS[rng.integers(len(_VARIANTS))]}",
        rate=int(rng.integers(150, 206)),
        pitch=int(rng.integers(30, 71)),
        pitch_range=int(rng.integers(30, 81)),
        lead_s=float(rng.uniform(0.15, 0.5)),
        tail_s=float(rng.uniform(0.15, 0.5)),
        gain=float(rng.uniform(0.25, 0.9)),
        noise_dbfs=float(rng.uniform(-60.0, -42.0)),
    )


def _word_offsets(words: Sequence[str]) -> list[tuple[int, int]]:
    out, pos = [], 0
    for w in words:
        out.append((pos, pos + len(w)))
        pos += len(w) + 1
    return out


def _frame_rms(x: np.ndarray, hop: int) -> np.ndarray:
    n = len(x) // hop
    if n == 0:
        return np.zeros(0)
    frames = x[: n * hop].astype(np.float64).reshape(n, hop)
    return np.sqrt((frames**2).mean(axis=1))


def word_timings(
    words: Sequence[str], events: Sequence[tuple[int, int]], samples: np.ndarray, sample_rate: int
) -> list[Word]:
    """Word [start, end] in seconds of the synthesised audio from espeak's word events.

    A word starts at its first event; a word espeak merged into a neighbour (it happens around
    dashes and numbers) shares that neighbour's interval, split by character count, and is marked
    ``interpolated``. A word ends where the next one starts, minus the pause after it (the trailing
    frames below -35 dB of the loudest frame).
    """
    n = len(words)
    offsets = _word_offsets(words)
    starts: list[float | None] = [None] * n
    for char, ms in events:
        for i, (a, b) in enumerate(offsets):
            if a <= char < b:
                t = ms / 1000.0
                if starts[i] is None or t < starts[i]:
                    starts[i] = t
                break
    hop = max(1, sample_rate // 100)
    rms = _frame_rms(samples, hop)
    loud = np.flatnonzero(rms > (rms.max() if len(rms) else 0.0) * 10 ** (-35 / 20)) if len(rms) else []
    speech_end = (loud[-1] + 1) * hop / sample_rate if len(loud) else len(samples) / sample_rate
    speech_start = loud[0] * hop / sample_rate if len(loud) else 0.0
    # Starts must increase; an event out of order (rare) is treated as missing.
    last = -1.0
    for i in range(n):
        if starts[i] is not None and starts[i] <= last:
            starts[i] = None
        if starts[i] is not None:
            last = starts[i]
    known = [i for i in range(n) if starts[i] is not None]
    timing = ["aligned" if s is not None else "interpolated" for s in starts]
    if not known:
        starts[0], known = speech_start, [0]
        timing[0] = "interpolated"
    if known[0] != 0:  # words before the first event share the span up to it
        known_first = known[0]
        _spread(starts, words, -1, known_first, speech_start, starts[known_first])
    for a, b in zip(known, known[1:] + [n]):
        if b - a > 1:
            end = starts[b] if b < n else speech_end
            _spread(starts, words, a, b, starts[a], end)
    out = []
    for i in range(n):
        start = float(starts[i])
        nxt = float(starts[i + 1]) if i + 1 < n else speech_end
        end = max(nxt, start + 0.02)
        a, b = int(start * sample_rate / hop), int(np.ceil(end * sample_rate / hop))
        seg = rms[a:b]
        if len(seg):
            voiced = np.flatnonzero(seg > rms.max() * 10 ** (-35 / 20))
            if len(voiced):
                end = min(end, (a + voiced[-1] + 1) * hop / sample_rate)
        end = max(end, start + 0.02)
        out.append(Word(words[i], round(start, 4), round(float(end), 4), timing=timing[i]))
    return out


def _spread(starts: list, words: Sequence[str], a: int, b: int, t0: float, t1: float) -> None:
    """Share [t0, t1) among words a..b-1 (a may be -1: nothing before) by character count."""
    idx = list(range(max(a, 0), b))
    lens = np.array([max(len(words[i]), 1) for i in idx], float)
    cum = np.concatenate([[0.0], np.cumsum(lens)[:-1]]) / lens.sum()
    for i, frac in zip(idx, cum):
        if i != a or starts[i] is None:
            starts[i] = t0 + frac * (t1 - t0)


@dataclass
class Speech:
    audio: Audio
    words: list[Word]


def speak(words: Sequence[str], voice: Voice, sample_rate: int = 16000, seed: int = 0) -> Speech:
    """Say the words with espeak-ng as one sentence; audio at ``sample_rate`` with the voice's
    padding, gain and background noise, and the word timings on that audio's clock."""
    engine = Espeak.get()
    raw, events = engine.synthesize(" ".join(words), voice.name, voice.rate, voice.pitch, voice.pitch_range)
    if len(raw) == 0:
        raise ModelError(f"espeak-ng produced no audio for {' '.join(words)[:60]!r}")
    timed = word_timings(words, events, raw, engine.sample_rate)
    x = raw.astype(np.float32) / 32768.0
    if engine.sample_rate != sample_rate:
        x = librosa.resample(x, orig_sr=engine.sample_rate, target_sr=sample_rate, res_type="soxr_mq")
    peak = float(np.abs(x).max()) or 1.0
    x = x * (voice.gain / peak)
    lead, tail = int(voice.lead_s * sample_rate), int(voice.tail_s * sample_rate)
    x = np.concatenate([np.zeros(lead, np.float32), x, np.zeros(tail, np.float32)])
    rng = np.random.default_rng(seed)
    x = x + rng.standard_normal(len(x)).astype(np.float32) * np.float32(10 ** (voice.noise_dbfs / 20))
    x = np.clip(x, -1.0, 1.0).astype(np.float32)
    shifted = [Word(w.text, round(w.start + voice.lead_s, 4), round(w.end + voice.lead_s, 4), w.timing)
               for w in timed]
    return Speech(Audio(x, sample_rate), shifted)

