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


PCM_SCALE = 32767.0  # full scale of 16-bit samples: float 1.0 is int16 32767
_CONVERT_BLOCK = 1 << 20  # samples converted at a time: no whole-signal float temporaries


def pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as int16 (clipped, truncated toward zero: the conversion
    pocketsphinx's input has always had)."""
    out = np.empty(len(samples), np.int16)
    for at in range(0, len(samples), _CONVERT_BLOCK):
        part = samples[at : at + _CONVERT_BLOCK]
        out[at : at + len(part)] = (np.clip(part, -1.0, 1.0) * PCM_SCALE).astype(np.int16)
    return out


class FloatSamples:
    """Read-only float32 view of int16 samples, made a slice at a time: ``len(view)`` and
    ``view[a:b]`` (values in [-1, 1]), so a stage reading blocks never holds a float copy of
    the whole signal."""

    def __init__(self, pcm: np.ndarray):
        self.pcm = pcm  # (n,) int16

    def __len__(self) -> int:
        return len(self.pcm)

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("FloatSamples supports contiguous slices only")
        return self.pcm[key].astype(np.float32) / np.float32(PCM_SCALE)


@dataclass
class Audio:
    """Mono audio held as 16-bit samples.

    Half float32's memory (an hour at 16 kHz: 115 MB instead of 230 MB, the largest buffer an
    extraction keeps), as much precision as the sources (16-bit PCM, or lossy codecs far below
    it), and exactly the samples pocketsphinx reads. Stages that compute in floats read
    ``floats`` a block at a time. Float samples given here (in [-1, 1]) are converted.
    """

    samples: np.ndarray  # (n,) int16 mono
    sample_rate: int

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples).reshape(-1)
        self.samples = samples if samples.dtype == np.int16 else pcm16(samples)

    @property
    def floats(self) -> FloatSamples:
        return FloatSamples(self.samples)

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
class FaceTracks:
    """Every face found in the sampled frames of a video, one row per face and frame.

    Kept sparse (a row per detection, not a frame x face grid) because faces come and go: an
    hour of a talk show may hold dozens of identities, most of them absent most of the time.
    """

    frame: np.ndarray  # (n,) int64: row of the frame track (its ``times``) the face was seen in
    track: np.ndarray  # (n,) int64: identity of the face, stable across frames (0, 1, ... by first appearance)
    boxes: np.ndarray  # (n, 4) float32: x0, y0, x1, y1 of its landmarks, as fractions of the picture
    values: np.ndarray  # (n, d) float32: its features, in the frame track's layout
    # True once landmarking looked for several faces (a second face was seen in the picture);
    # False: one face at a time, exactly the single-face path.
    multi: bool = False

    def __post_init__(self) -> None:
        assert len(self.frame) == len(self.track) == len(self.boxes) == len(self.values)

    def per_frame(self, n_frames: int) -> np.ndarray:
        """(n_frames,) int: how many faces each frame held."""
        return np.bincount(np.asarray(self.frame, np.int64), minlength=n_frames)[:n_frames]

    @property
    def ids(self) -> list[int]:
        return [int(i) for i in np.unique(self.track)]


@dataclass
class WordFaces:
    """Whose face each word's vision features come from (``pipeline.speaker``)."""

    track: np.ndarray  # (n_words,) int32: chosen face's track id; -1 for none (no face, or none speaking)
    faces: np.ndarray  # (n_words,) int32: most faces seen in one frame during the word
    confidence: np.ndarray  # (n_words,) float32 in [0, 1]: how clearly the choice won
    boxes: np.ndarray  # (n_words, 4) float32: the chosen face's mean box (zeros for none)


@dataclass
class FrameFeatures:
    """A frame-level feature track: one row per analysis frame, with its own timestamp."""

    times: np.ndarray  # (t,) float64 seconds, centre of each frame, increasing
    values: np.ndarray  # (t, d) float32; rows where present is False are not meaningful
    present: np.ndarray  # (t,) bool: False where the modality is missing (no face, etc.)
    names: list[str] = field(default_factory=list)  # d feature names
    # Every face found, for tracks that can hold more than one (the facial track); None otherwise.
    faces: FaceTracks | None = None

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
