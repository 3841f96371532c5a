"""Training data for the starter checkpoint: real human sentiment labels on text, made into
real-looking three-modality inputs by the real extractors.

No labelled video corpus can be had here, so the starter model learns from labelled *text*
(SST-5 movie-review sentences and the CMU-MOSI spoken-opinion transcripts) and every sentence is
turned into something that looks like an extracted video:

- text: the sentence's words through the real text extractor (contextual MiniLM vectors);
- audio: the sentence spoken by espeak-ng (in process, through ``libespeak-ng``; its word events
  give the word timings, so no aligner is needed), with a random voice, rate, pitch, gain and a
  little background noise, through the real acoustic extractor and ``pipeline.align``;
- vision: a random window of a random real face recording, through the real facial extractor,
  pooled over the sentence's word timings with ``pipeline.align.pool_to_words``.

The features therefore carry sentiment only in the words, while the model still sees real voice
and face statistics (and learns to tolerate them). Everything expensive is cached under
``cache_dir()/starter`` keyed by the sentence text and the extractor identities, so a rerun only
rebuilds what changed. The output is an ordinary feature store (same ``FeatureSchema`` as
``mmpipe extract`` writes with the default config) plus a labels table, so the ordinary trainer
reads it.

Label mapping: SST class c (0 very negative .. 4 very positive) -> score c - 2 in -2..+2. The
five classes are equal-width bins of the annotators' slider, so equal steps keep their order and
spacing; -2/+2 ("very" negative/positive) match CMU-MOSI's "negative/positive" grades rather than
its rarely used extremes (+-3, "strongly"), and with this mapping Acc5 is exactly SST-5 accuracy
and the non-zero binary accuracy is the standard SST-2 (neutral sentences dropped).
"""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from pipeline.errors import InputError, ModelError
from pipeline.records import Audio, FrameFeatures, Utterance, Word, WordFeatures

# Bump when synthesis changes (voices, padding, noise, timing rules): invalidates cached audio.
SYNTH_VERSION = "1"
# Bump when the per-sentence feature recipe changes beyond what the extractor identities cover.
FEATURES_VERSION = "1"

SST_SCORE = {0: -2.0, 1: -1.0, 2: 0.0, 3: 1.0, 4: 2.0}
LABEL_MAPPING = (
    "SST-5 class c (0 very negative .. 4 very positive) -> score c - 2 (-2, -1, 0, +1, +2); "
    "CMU-MOSI transcripts keep their own -3..+3 scores"
)

Progress = Callable[[str, int, int], None]


# ------------------------------------------------------------------------------------ samples


@dataclass(frozen=True)
class Phrase:
    """A labelled sub-phrase of a sentence: words [start, stop) of the sentence."""

    start: int
    stop: int
    score: float


@dataclass(frozen=True)
class Sample:
    """One labelled sentence, as words the way a transcript or recogniser would give them."""

    key: str  # stable id, e.g. "sst-train-00012" or "mosi-03bSnISJMiM_1"
    words: tuple[str, ...]
    score: float
    split: str  # train | valid | test
    source: str  # "sst" | "mosi"
    phrases: tuple[Phrase, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(self.words)


def parse_tree(line: str) -> tuple[list[str], list[tuple[int, int, int]]]:
    """A PTB-style sentiment tree -> its leaves and every node's (first_leaf, stop_leaf, label).

    Nodes come in post-order, so the root (the sentence's own label) is the last one.
    """
    tokens = re.findall(r"\(|\)|[^\s()]+", line)
    leaves: list[str] = []
    spans: list[tuple[int, int, int]] = []
    stack: list[tuple[int, int]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "(":
            if i + 1 >= len(tokens) or not tokens[i + 1].isdigit():
                raise ValueError(f"node without a numeric label at token {i}")
            stack.append((int(tokens[i + 1]), len(leaves)))
            i += 2
        elif tok == ")":
            if not stack:
                raise ValueError("unbalanced ')'")
            label, start = stack.pop()
            if len(leaves) == start:
                raise ValueError("node without words")
            spans.append((start, len(leaves), label))
            i += 1
        else:
            leaves.append(tok)
            i += 1
    if stack or not spans or spans[-1][:2] != (0, len(leaves)):
        raise ValueError("unbalanced tree")
    return leaves, spans


_UNESCAPE = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}",
             "``": '"', "''": '"', "`": "'"}
_OPENING = {"-LRB-", "-LSB-", "-LCB-", "``", "`", "$", "#"}
_CLITICS = {"n't", "'s", "'re", "'ve", "'ll", "'d", "'m"}
_SPOKEN_SYMBOLS = {"&", "+", "="}  # said aloud ("and", "plus", "equals"): words of their own


def _unescape(leaf: str) -> str:
    return _UNESCAPE.get(leaf, leaf.replace("\\/", "/").replace("\\*", "*"))


def detokenize(leaves: Sequence[str]) -> tuple[list[str], list[int]]:
    """Treebank tokens -> words as a transcript would spell them, and each leaf's word index.

    Clitics join their word ("does" + "n't" -> "doesn't"), punctuation sticks to the word before
    it and opening brackets/quotes to the word after it ("film," "(mostly)"), as recognisers and
    transcripts write them; every leaf still maps to one word, so labelled sub-phrases of the
    tree map to word spans.
    """
    words: list[str] = []
    owner: list[int] = [-1] * len(leaves)
    pending = ""  # opening punctuation waiting for its word
    pending_leaves: list[int] = []
    for i, leaf in enumerate(leaves):
        tok = _unescape(leaf)
        is_punct = not any(ch.isalnum() for ch in tok) and tok not in _SPOKEN_SYMBOLS
        if leaf in _OPENING or (is_punct and not words):
            pending += tok
            pending_leaves.append(i)
            continue
        if words and (leaf.lower() in _CLITICS or is_punct):
            words[-1] += tok
            owner[i] = len(words) - 1
            continue
        words.append(pending + tok)
        owner[i] = len(words) - 1
        for j in pending_leaves:
            owner[j] = len(words) - 1
        pending, pending_leaves = "", []
    if pending_leaves:  # opening marks with nothing after them
        if not words:
            raise ValueError("sentence has no words")
        words[-1] += pending
        for j in pending_leaves:
            owner[j] = len(words) - 1
    return words, owner


def _has_word(leaves: Sequence[str]) -> bool:
    return any(any(ch.isalnum() for ch in _unescape(leaf)) for leaf in leaves)


def sst_sample(line: str, key: str, split: str) -> Sample:
    """One treebank line -> a Sample with every distinct labelled sub-phrase as a word span."""
    leaves, spans = parse_tree(line)
    words, owner = detokenize(leaves)
    by_span: dict[tuple[int, int], float] = {}
    for start, stop, label in spans[:-1]:
        if not _has_word(leaves[start:stop]):
            continue  # a lone comma or quote is not a phrase anyone says
        a, b = owner[start], owner[stop - 1] + 1
        if b - a < len(words):
            by_span[(a, b)] = SST_SCORE[label]  # post-order: the widest node of a span wins
    phrases = tuple(Phrase(a, b, s) for (a, b), s in sorted(by_span.items()))
    return Sample(key, tuple(words), SST_SCORE[spans[-1][2]], split, "sst", phrases)


def read_sst(path: str | Path, split: str, prefix: str | None = None) -> list[Sample]:
    """All sentences of an SST tree file (train.txt, dev.txt, test.txt)."""
    path = Path(path)
    prefix = prefix or f"sst-{path.stem}"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise InputError(f"cannot read SST file ({err.strerror or err})", str(path)) from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(sst_sample(line, f"{prefix}-{n:05d}", split))
        except (ValueError, KeyError) as err:
            raise InputError(f"line {n} is not a sentiment tree ({err})", str(path)) from None
    if not out:
        raise InputError("no sentences in SST file", str(path))
    return out


def read_mosi_text(path: str | Path, splits: Iterable[str] = ("train",)) -> list[Sample]:
    """CMU-MOSI transcripts with their -3..+3 labels (``segment_id,split,sentiment,text``)."""
    path = Path(path)
    wanted = set(splits)
    out = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                split = {"dev": "valid", "val": "valid"}.get(row["split"], row["split"])
                words = tuple(row["text"].split())
                if split not in wanted or not words:
                    continue
                score = float(np.clip(float(row["sentiment"]), -3.0, 3.0))
                out.append(Sample(f"mosi-{row['segment_id']}", words, score, split, "mosi"))
    except OSError as err:
        raise InputError(f"cannot read MOSI transcripts ({err.strerror or err})", str(path)) from None
    except (KeyError, ValueError) as err:
        raise InputError(f"not a MOSI transcript table ({type(err).__name__}: {err})", str(path)) from None
    return out


def pick_phrases(sample: Sample, k: int, min_words: int, rng: np.random.Generator) -> list[Phrase]:
    """Up to ``k`` labelled sub-phrases of at least ``min_words`` words, drawn at random."""
    cands = [p for p in sample.phrases if p.stop - p.start >= min_words]
    if k <= 0 or not cands:
        return []
    idx = rng.choice(len(cands), size=min(k, len(cands)), replace=False)
    return [cands[i] for i in sorted(idx)]


def stable_seed(*parts: object) -> int:
    """A seed from text, the same in every process (``hash()`` is salted per process)."""
    blob = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little")


def digest(*parts: object, n: int = 20) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


# --------------------------------------------------------------------------- speech synthesis


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
    import librosa

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


# ------------------------------------------------------------------------------------- caching


def _npz_path(root: Path, kind: str, key: str) -> Path:
    return root / kind / key[:2] / f"{key}.npz"


def _save_npz(path: Path, **arrays) -> None:
    from pipeline.store import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    atomic_write(path, write)


def _load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """A cached entry, or None when absent or unreadable (a torn file is simply recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError):
        return None
    except Exception:  # zipfile.BadZipFile and friends
        return None


@dataclass(frozen=True)
class FeatureKeys:
    """Cache keys of one sentence: they change exactly when its features would."""

    synth: str
    text: str
    acoustic: str


class SentenceCache:
    """Per-sentence cache under ``root``: synthesised speech (16-bit audio + word timings), text
    vectors and word-pooled acoustic vectors, each keyed by the sentence text plus the identity
    (name, version, settings) of whatever produced it."""

    def __init__(self, root: str | Path, config, seed: int = 0):
        from pipeline.config import ExtractConfig

        self.root = Path(root)
        self.config: ExtractConfig = config
        self.seed = seed
        self._identity: tuple[str, str] | None = None

    def identities(self) -> tuple[str, str]:
        """(text, acoustic) extractor identities; loading the text model costs a few seconds."""
        if self._identity is None:
            from pipeline.extract import get_extractors

            text_ex, audio_ex, _ = get_extractors(self.config)
            self._identity = (
                digest(text_ex.name, text_ex.version, self.config.text.__dict__),
                digest(audio_ex.name, audio_ex.version, self.config.acoustic.__dict__,
                       self.config.media.__dict__),
            )
        return self._identity

    def keys(self, sample: Sample) -> FeatureKeys:
        text_id, acoustic_id = self.identities()
        synth = digest("synth", SYNTH_VERSION, sample.words, voice_for(sample.key, self.seed).__dict__,
                       self.config.media.sample_rate)
        return FeatureKeys(
            synth=synth,
            text=digest("text", FEATURES_VERSION, sample.words, text_id),
            acoustic=digest("acoustic", FEATURES_VERSION, synth, acoustic_id),
        )

    def path(self, kind: str, key: str) -> Path:
        return _npz_path(self.root, kind, key)

    def missing(self, sample: Sample) -> bool:
        k = self.keys(sample)
        return not (self.path("text", k.text).exists() and self.path("acoustic", k.acoustic).exists())

    def speech(self, sample: Sample) -> Speech:
        """The sentence's synthesised speech, from the cache or espeak-ng (then cached)."""
        key = self.keys(sample).synth
        path = self.path("speech", key)
        cached = _load_npz(path)
        sr = self.config.media.sample_rate
        if cached is not None and len(cached["starts"]) == len(sample.words):
            words = [Word(w, float(s), float(e), str(t)) for w, s, e, t in
                     zip(sample.words, cached["starts"], cached["ends"], cached["timing"])]
            return Speech(Audio(cached["audio"].astype(np.float32) / 32767.0, sr), words)
        speech = speak(sample.words, voice_for(sample.key, self.seed), sr, seed=stable_seed("noise", sample.key, self.seed))
        _save_npz(
            path,
            audio=np.round(speech.audio.samples * 32767.0).astype(np.int16),
            starts=np.array([w.start for w in speech.words]),
            ends=np.array([w.end for w in speech.words]),
            timing=np.array([w.timing for w in speech.words]),
        )
        # What later runs read back (16-bit), so a first run and a rerun give the same features.
        quantised = np.round(speech.audio.samples * 32767.0).astype(np.int16).astype(np.float32) / 32767.0
        return Speech(Audio(quantised, sr), speech.words)

    def compute(self, samples: Sequence[Sample]) -> None:
        """Fill the cache for ``samples`` with the real extractors (text batched over them)."""
        from extractors.base import Clip
        from pipeline.align import pool_to_words
        from pipeline.extract import get_extractors

        text_ex, audio_ex, _ = get_extractors(self.config)
        todo = [s for s in samples if self.missing(s)]
        if not todo:
            return
        keys = [self.keys(s) for s in todo]
        speeches = [self.speech(s) for s in todo]
        need_text = [i for i, k in enumerate(keys) if not self.path("text", k.text).exists()]
        if need_text:
            utts = [Utterance(j, tuple(speeches[i].words)) for j, i in enumerate(need_text)]
            values, flags = text_ex.extract_with_flags(Clip("starter:text", None, None, utts))
            values, flags = np.asarray(values, np.float32), np.asarray(flags, bool)
            pos = 0
            for i in need_text:
                n = len(todo[i].words)
                _save_npz(self.path("text", keys[i].text), values=values[pos:pos + n], imputed=flags[pos:pos + n])
                pos += n
        for i, (sample, speech) in enumerate(zip(todo, speeches)):
            path = self.path("acoustic", keys[i].acoustic)
            if path.exists():
                continue
            clip = Clip(f"starter:{sample.key}", None, speech.audio, [Utterance(0, tuple(speech.words))])
            pooled = pool_to_words(audio_ex.extract(clip), speech.words)
            _save_npz(path, values=pooled.values, imputed=pooled.imputed,
                      starts=np.array([w.start for w in speech.words]),
                      ends=np.array([w.end for w in speech.words]),
                      timing=np.array([w.timing for w in speech.words]),
                      duration=np.array(speech.audio.duration))

    def load(self, sample: Sample) -> tuple[list[Word], WordFeatures, WordFeatures, float] | None:
        """(words with timings, text features, acoustic features, clip duration), or None if not cached."""
        k = self.keys(sample)
        text = _load_npz(self.path("text", k.text))
        acoustic = _load_npz(self.path("acoustic", k.acoustic))
        if text is None or acoustic is None or len(text["values"]) != len(sample.words):
            return None
        words = [Word(w, float(s), float(e), str(t)) for w, s, e, t in
                 zip(sample.words, acoustic["starts"], acoustic["ends"], acoustic["timing"])]
        return (
            words,
            WordFeatures(text["values"].astype(np.float32), text["imputed"].astype(bool)),
            WordFeatures(acoustic["values"].astype(np.float32), acoustic["imputed"].astype(bool)),
            float(acoustic["duration"]),
        )


# ---- worker processes (spawned: torch and MediaPipe do not survive fork well)

_worker_cache: SentenceCache | None = None


def _worker_init(root: str, config_dict: dict, seed: int, threads: int) -> None:
    global _worker_cache
    import torch

    from pipeline.config import ExtractConfig

    torch.set_num_threads(threads)
    _worker_cache = SentenceCache(root, ExtractConfig.from_dict(config_dict), seed)


def _worker_run(samples: list[Sample]) -> int:
    assert _worker_cache is not None
    _worker_cache.compute(samples)
    return len(samples)


def fill_cache(
    cache: SentenceCache,
    samples: Sequence[Sample],
    workers: int = 1,
    batch: int = 64,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Compute every sentence's text and acoustic features that the cache lacks; returns counts
    and the seconds spent. ``workers`` > 1 spreads batches over processes (one thread each)."""
    t0 = time.perf_counter()
    todo = [s for s in samples if cache.missing(s)]
    done = len(samples) - len(todo)
    if progress:
        progress("features", done, len(samples))
    batches = [todo[i:i + batch] for i in range(0, len(todo), batch)]
    if workers <= 1 or len(batches) <= 1:
        for b in batches:
            cache.compute(b)
            done += len(b)
            if progress:
                progress("features", done, len(samples))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(str(cache.root), cache.config.to_dict(), cache.seed, 1)) as pool:
            futures = [pool.submit(_worker_run, b) for b in batches]
            for fut in as_completed(futures):
                done += fut.result()
                if progress:
                    progress("features", done, len(samples))
    return {"sentences": len(samples), "computed": len(todo), "seconds": round(time.perf_counter() - t0, 1)}


# -------------------------------------------------------------------------------------- faces


@dataclass
class FaceBank:
    """Face tracks of real recordings, each extracted once (and cached), to cut windows from."""

    names: list[str]
    tracks: list[FrameFeatures]

    @classmethod
    def build(cls, videos: Sequence[str | Path], config, cache_root: str | Path,
              progress: Progress | None = None) -> "FaceBank":
        from extractors.base import Clip
        from pipeline.extract import content_hash, get_extractors
        from pipeline.media import probe

        _, _, face_ex = get_extractors(config)
        identity = digest(face_ex.name, face_ex.version, config.facial.__dict__)
        names, tracks = [], []
        for n, video in enumerate(videos):
            video = Path(video)
            path = Path(cache_root) / "faces" / f"{video.stem}-{digest(content_hash(video), identity)}.npz"
            cached = _load_npz(path)
            if cached is None:
                info = probe(video)
                track = face_ex.extract(Clip(str(video), info, None, []))
                _save_npz(path, times=track.times, values=track.values, present=track.present,
                          names=np.array(track.names))
            else:
                track = FrameFeatures(cached["times"], cached["values"].astype(np.float32),
                                      cached["present"].astype(bool), [str(x) for x in cached["names"]])
            if len(track.times) < 2:
                raise InputError("face recording has fewer than two frames", str(video))
            names.append(video.name)
            tracks.append(track)
            if progress:
                progress("faces", n + 1, len(videos))
        return cls(names, tracks)

    def window(self, words: Sequence[Word], duration: float, rng: np.random.Generator
               ) -> tuple[WordFeatures, str, float]:
        """Facial features for a sentence: a random window of a random recording laid under the
        sentence's words, pooled with the real ``pool_to_words``. Recordings shorter than the
        sentence are played forwards and backwards (no jump cut) until long enough."""
        from pipeline.align import pool_to_words

        k = int(rng.integers(len(self.tracks)))
        track = _pingpong(self.tracks[k], duration)
        span = float(track.times[-1] - track.times[0])
        offset = float(track.times[0] + rng.uniform(0.0, max(span - duration, 0.0)))
        shifted = FrameFeatures(track.times - offset, track.values, track.present, track.names)
        return pool_to_words(shifted, words), self.names[k], offset


def _pingpong(track: FrameFeatures, duration: float) -> FrameFeatures:
    """The track repeated forwards, backwards, forwards ... until it spans ``duration``."""
    times = track.times - track.times[0]
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.04
    period = float(times[-1]) + step
    if period >= duration:
        return track
    parts_t, parts_v, parts_p = [], [], []
    start, forward = 0.0, True
    while start < duration + step:
        t = times if forward else (times[-1] - times[::-1])
        sel = slice(None) if forward else slice(None, None, -1)
        parts_t.append(start + t)
        parts_v.append(track.values[sel])
        parts_p.append(track.present[sel])
        start += period
        forward = not forward
    return FrameFeatures(np.concatenate(parts_t) + track.times[0], np.concatenate(parts_v),
                         np.concatenate(parts_p), track.names)


# ------------------------------------------------------------------------------ sample choice


@dataclass
class Corpus:
    """The labelled sentences of one build, by role."""

    train: list[Sample]
    valid: list[Sample]  # model selection (SST dev)
    test: list[Sample]  # the reported figures (SST test)
    extra_eval: dict[str, list[Sample]] = field(default_factory=dict)  # e.g. MOSI valid: reported only

    def all(self) -> list[Sample]:
        out = self.train + self.valid + self.test
        for v in self.extra_eval.values():
            out += v
        return out


def _subset(samples: list[Sample], n: int | None, seed: int, tag: str) -> list[Sample]:
    if n is None or n >= len(samples):
        return samples
    rng = np.random.default_rng(stable_seed("subset", tag, seed))
    return [samples[i] for i in sorted(rng.choice(len(samples), size=n, replace=False))]


def load_corpus(sst_dir: str | Path, mosi_csv: str | Path | None, subset: int | None = None,
                seed: int = 0) -> Corpus:
    """SST train (+ MOSI train transcripts) to train, SST dev to select, SST test to report,
    MOSI valid transcripts as an extra, out-of-domain-style check on real spoken opinions.

    ``subset`` keeps that many training sentences (and a quarter as many of each other part,
    at least 8), drawn at random: a quick end-to-end run."""
    sst_dir = Path(sst_dir)
    train = read_sst(sst_dir / "train.txt", "train")
    valid = read_sst(sst_dir / "dev.txt", "valid")
    test = read_sst(sst_dir / "test.txt", "test")
    mosi_train, mosi_valid = [], []
    if mosi_csv is not None:
        mosi = read_mosi_text(mosi_csv, ("train", "valid"))
        mosi_train = [s for s in mosi if s.split == "train"]
        mosi_valid = [Sample(s.key, s.words, s.score, "test", s.source) for s in mosi if s.split == "valid"]
    if subset:
        other = max(8, subset // 4)
        n_mosi = min(len(mosi_train), subset // 8) if mosi_train else 0
        train = _subset(train, subset - n_mosi, seed, "train")
        mosi_train = _subset(mosi_train, n_mosi, seed, "mosi-train")
        valid, test = _subset(valid, other, seed, "valid"), _subset(test, other, seed, "test")
        mosi_valid = _subset(mosi_valid, other, seed, "mosi-valid") if mosi_valid else []
    extra = {"mosi_valid": mosi_valid} if mosi_valid else {}
    return Corpus(train + mosi_train, valid, test, extra)


# ---------------------------------------------------------------------------------- the store


@dataclass
class StoreBuild:
    features: Path  # the feature store folder
    labels: Path  # video_id, utterance_id, score, split (+ kind, source, sample)
    extra_labels: dict[str, Path]  # name -> labels table (split "test") of a report-only set
    counts: dict[str, int]
    chunks_written: int
    chunks_reused: int


def _chunks(samples: list[Sample], size: int) -> list[list[Sample]]:
    return [samples[i:i + size] for i in range(0, len(samples), size)]


def _write_labels(path: Path, rows: list[tuple]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.store import atomic_write

    cols = list(zip(*rows)) if rows else [[]] * 7
    table = pa.table({
        "video_id": pa.array(cols[0], pa.string()),
        "utterance_id": pa.array(cols[1], pa.int32()),
        "score": pa.array(cols[2], pa.float32()),
        "split": pa.array(cols[3], pa.string()),
        "kind": pa.array(cols[4], pa.string()),  # sentence | phrase
        "source": pa.array(cols[5], pa.string()),  # sst | mosi
        "sample": pa.array(cols[6], pa.string()),  # e.g. sst-train-00012
    })
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def write_store(
    corpus: Corpus,
    cache: SentenceCache,
    faces: FaceBank,
    out_dir: str | Path,
    phrases: int = 0,
    min_phrase_words: int = 2,
    chunk_size: int = 256,
    progress: Progress | None = None,
) -> StoreBuild:
    """Group the cached sentences into pseudo-videos (one Parquet file per chunk of sentences,
    one utterance per sentence, plus up to ``phrases`` labelled sub-phrases per training SST
    sentence as extra utterances whose rows are the sentence's rows for that span) and write the
    labels tables. A chunk whose file already records the same inputs is kept as it is."""
    from pipeline.store import read_metadata, write_table

    out_dir = Path(out_dir)
    features = out_dir / "features"
    config = cache.config
    from pipeline.extract import feature_schema

    schema = feature_schema(config)
    face_id = digest(faces.names, [float(t.times[-1]) for t in faces.tracks], schema.to_dict())
    groups: list[tuple[str, list[Sample], bool]] = []  # (prefix, samples, add phrases)
    by_source: dict[str, list[Sample]] = {}
    for s in corpus.train:
        by_source.setdefault(f"train-{s.source}", []).append(s)
    for name, items in by_source.items():
        groups.append((name, items, True))
    groups += [("valid-sst", corpus.valid, False), ("test-sst", corpus.test, False)]
    for name, items in corpus.extra_eval.items():
        groups.append((f"eval-{name.replace('_', '-')}", items, False))

    rows: list[tuple] = []
    extra_rows: dict[str, list[tuple]] = {name: [] for name in corpus.extra_eval}
    extra_prefix = {f"eval-{name.replace('_', '-')}": name for name in corpus.extra_eval}
    written = reused = 0
    total = sum(len(_chunks(items, chunk_size)) for _, items, _ in groups)
    done = 0
    keep = set()
    for prefix, items, with_phrases in groups:
        for k, chunk in enumerate(_chunks(items, chunk_size)):
            video_id = f"starter-{prefix}-{k:04d}"
            path = features / f"{video_id}.parquet"
            keep.add(path.name)
            n_phrases = phrases if with_phrases else 0
            key = digest("chunk", FEATURES_VERSION, [_key_parts(cache.keys(s)) for s in chunk],
                         [s.score for s in chunk], face_id, n_phrases, min_phrase_words, cache.seed)
            fresh = False
            try:
                fresh = path.exists() and read_metadata(path).video.get("feature_key") == key
            except Exception:
                fresh = False
            utt_rows = _chunk_labels(chunk, video_id, n_phrases, min_phrase_words, cache.seed)
            if not fresh:
                table = _chunk_table(chunk, video_id, key, cache, faces, schema, n_phrases, min_phrase_words)
                write_table(path, table)
                written += 1
            else:
                reused += 1
            if prefix in extra_prefix:
                extra_rows[extra_prefix[prefix]] += utt_rows
            else:
                rows += utt_rows
            done += 1
            if progress:
                progress("store", done, total)
    for stale in features.glob("*.parquet"):  # chunks of an earlier, larger build
        if stale.name not in keep:
            stale.unlink()
    labels = out_dir / "labels.parquet"
    _write_labels(labels, rows)
    extra_paths = {}
    for name, r in extra_rows.items():
        extra_paths[name] = out_dir / f"labels_{name}.parquet"
        _write_labels(extra_paths[name], r)
    counts: dict[str, int] = {}
    for r in rows:
        counts[f"{r[3]}_{r[4]}s"] = counts.get(f"{r[3]}_{r[4]}s", 0) + 1
    for name, r in extra_rows.items():
        counts[name] = len(r)
    return StoreBuild(features, labels, extra_paths, counts, written, reused)


def _key_parts(keys: FeatureKeys) -> list[str]:
    return [keys.synth, keys.text, keys.acoustic]


def _phrases_for(sample: Sample, n_phrases: int, min_words: int, seed: int) -> list[Phrase]:
    rng = np.random.default_rng(stable_seed("phrases", sample.key, seed))
    return pick_phrases(sample, n_phrases, min_words, rng)


def _chunk_labels(chunk: list[Sample], video_id: str, n_phrases: int, min_words: int, seed: int) -> list[tuple]:
    rows = [(video_id, j, s.score, s.split, "sentence", s.source, s.key) for j, s in enumerate(chunk)]
    u = len(chunk)
    for s in chunk:
        for p in _phrases_for(s, n_phrases, min_words, seed):
            rows.append((video_id, u, p.score, s.split, "phrase", s.source, s.key))
            u += 1
    return rows


def _chunk_table(chunk: list[Sample], video_id: str, key: str, cache: SentenceCache, faces: FaceBank,
                 schema, n_phrases: int, min_words: int):
    """One pseudo-video's Parquet table: its sentences, then their sampled sub-phrases."""
    from pipeline.schema import MODALITIES, StoreMetadata
    from pipeline.store import feature_table

    utterances: list[Utterance] = []
    feats: dict[str, list[WordFeatures]] = {m: [] for m in MODALITIES}
    sentence_rows = []  # per sentence: (words, {m: WordFeatures})
    clock = 0.0
    sources = []
    for j, sample in enumerate(chunk):
        loaded = cache.load(sample)
        if loaded is None:
            raise ModelError(f"features of {sample.key} are not in the cache (run fill_cache first)")
        words, text, acoustic, duration = loaded
        rng = np.random.default_rng(stable_seed("face", sample.key, cache.seed))
        vision, face_name, offset = faces.window(words, duration, rng)
        sources.append([face_name, round(offset, 3)])
        # Sentences follow each other on the pseudo-video's clock, like utterances of a video.
        timed = tuple(Word(w.text, round(w.start + clock, 4), round(w.end + clock, 4), w.timing) for w in words)
        clock += duration
        utterances.append(Utterance(j, timed))
        per = {"text": text, "audio": acoustic, "vision": vision}
        for m in MODALITIES:
            feats[m].append(per[m])
        sentence_rows.append((timed, per))
    u = len(chunk)
    for sample, (timed, per) in zip(chunk, sentence_rows):
        for p in _phrases_for(sample, n_phrases, min_words, cache.seed):
            utterances.append(Utterance(u, timed[p.start:p.stop]))
            for m in MODALITIES:
                feats[m].append(WordFeatures(per[m].values[p.start:p.stop], per[m].imputed[p.start:p.stop]))
            u += 1
    merged = {m: WordFeatures(np.concatenate([f.values for f in feats[m]]),
                              np.concatenate([f.imputed for f in feats[m]])) for m in MODALITIES}
    n_words = sum(len(x.words) for x in utterances)
    meta = StoreMetadata(
        schema=schema,
        video={
            "video_id": video_id,
            "path": f"starter:{video_id}",
            "sha256": key,
            "feature_key": key,
            "duration_s": round(clock, 3),
            "transcript": None,
            "synthetic": "labelled text spoken by espeak-ng, faces from windows of real recordings",
            "sentences": [s.key for s in chunk],
            "face_windows": sources,
        },
        config=cache.config.to_dict(),
        summary={
            "words": n_words,
            "utterances": len(utterances),
            "sentences": len(chunk),
            "phrases": len(utterances) - len(chunk),
            "words_imputed": {m: int(merged[m].imputed.sum()) for m in MODALITIES},
        },
    )
    return feature_table(video_id, utterances, merged, meta)
