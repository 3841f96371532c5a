"""The one extractor contract, the one the pipeline calls (after lhotse's feature extractors: a
config, a name, a dimension, one ``extract`` call).

An extractor is built from its config section and sees only the ``Clip`` it is given: the
video's facts, its audio, its words, and its frames on request (``clip.frames(fps, max_width)``;
the pipeline decides how they are decoded). It returns its features with their flags:

- frame extractors (acoustic, facial) give a time-stamped ``FrameFeatures`` track whose
  ``present`` flags say where the modality was there (a face found, audio at all); the pipeline
  averages it over each word. Most need no words and start as soon as the video is open; one
  whose frames are dear may set ``needs_words`` and compute only the frames the pooling reads
  (``core.spans``), and the pipeline runs it as soon as the words are known;
- word extractors (text) give ``WordFeatures``: one vector per word with ``imputed`` flags
  (words that got a stand-in vector). They wait for the words.

Extractors are found through the registry in ``extractors/__init__.py``, keyed by modality.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from core.progress import Progress
from core.records import Audio, FrameFeatures, Utterance, VideoInfo, Word, WordFeatures

# (fps, max_width[, wanted]) -> (seconds, RGB uint8 H x W x 3) for the frame nearest each instant
# k / fps; with ``wanted(seconds)`` given, the frames it rejects come without a picture (None).
FrameSource = Callable[..., Iterator[tuple[float, np.ndarray | None]]]


@dataclass
class Clip:
    """Everything an extractor may look at for one video."""

    path: str  # names the video in messages; extractors never open it themselves
    info: VideoInfo | None  # None without a container (synthesised speech)
    audio: Audio | None  # None when the file has no audio track
    utterances: list[Utterance] = field(default_factory=list)
    frames: FrameSource | None = None  # None for audio-only input

    @property
    def has_video(self) -> bool:
        """False for audio-only input (no frames, no picture size)."""
        return self.frames is not None and self.info is not None and self.info.frame_count > 0 and self.info.width > 0

    @property
    def words(self) -> list[Word]:
        return [w for u in self.utterances for w in u.words]

    @property
    def duration(self) -> float:
        if self.info is not None and self.info.duration:
            return float(self.info.duration)
        return self.audio.duration if self.audio is not None else 0.0


class Extractor(ABC):
    modality: ClassVar[str]  # the Parquet column it fills: "text" | "audio" | "vision"
    needs_words: bool = False  # waits for the words stage (word extractors; see the module doc)
    name: str  # stored in the Parquet metadata, e.g. "librosa-acoustic"
    version: str = "1"  # changes when the features change meaning (model digests included)
    device: str = "cpu"  # where it computes ("cuda" for a model on a GPU): recorded in the summary
    # The warning recorded when a clip has none of this modality at all (e.g. no face in view).
    absent_warning: ClassVar[str | None] = None

    @property
    @abstractmethod
    def feature_names(self) -> list[str]: ...

    @property
    def feature_dim(self) -> int:
        return len(self.feature_names)

    def warm_up(self) -> None:
        """Pay the first call's one-time costs (compiling, loading) before the first video, so
        the pipeline can do it beside speech recognition. Nothing by default."""

    @abstractmethod
    def extract(self, clip: Clip, progress: Progress | None = None) -> FrameFeatures | WordFeatures:
        """The clip's features with their flags; ``progress(modality, done, total)`` on long inputs."""


class FrameExtractor(Extractor):
    @abstractmethod
    def extract(self, clip: Clip, progress: Progress | None = None) -> FrameFeatures: ...


class WordExtractor(Extractor):
    needs_words = True

    @abstractmethod
    def extract(self, clip: Clip, progress: Progress | None = None) -> WordFeatures:
        """One vector per word of ``clip.utterances``, in utterance order."""
