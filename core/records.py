"""Typed records that travel between the stages (in the spirit of whisperX's ``schema.py``).

Time is explicit everywhere: every frame-level matrix carries its own timestamps, so no modality
is ever indexed by frame number alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds from the start of the media
    end: float
    # How the timing was obtained: "aligned" (forced alignment), "asr" (recogniser's own),
    # "interpolated" (between aligned neighbours, e.g. a word the aligner could not place).
    timing: str = "aligned"
    confidence: float | None = None


@dataclass(frozen=True)
class Utterance:
    index: int
    words: tuple[Word, ...]

    @property
    def start(self) -> float:
        return self.words[0].start

    @property
    def end(self) -> float:
        return self.words[-1].end

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


@dataclass
class Audio:
    samples: np.ndarray  # (n,) float32 mono in [-1, 1]
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / float(self.sample_rate)


@dataclass(frozen=True)
class VideoInfo:
    path: str
    duration: float  # seconds (container duration, else last frame time)
    fps: float  # nominal; real timestamps come from the decoder
    width: int
    height: int
    frame_count: int
    has_audio: bool
    video_codec: str = ""
    audio_codec: str = ""


@dataclass
class FrameFeatures:
    """A frame-level feature track: one row per analysis frame, with its own timestamp."""

    times: np.ndarray  # (t,) float64 seconds, centre of each frame, increasing
    values: np.ndarray  # (t, d) float32; rows where present is False are not meaningful
    present: np.ndarray  # (t,) bool: False where the modality is missing (no face, etc.)
    names: list[str] = field(default_factory=list)  # d feature names

    def __post_init__(self) -> None:
        assert self.values.ndim == 2 and len(self.times) == len(self.values) == len(self.present)

    @property
    def dim(self) -> int:
        return self.values.shape[1]


@dataclass
class WordFeatures:
    """Per-word matrix for one modality after word alignment (never NaN)."""

    values: np.ndarray  # (n_words, d) float32
    imputed: np.ndarray  # (n_words,) bool: True where no real frame covered the word
