"""The one extractor contract (after lhotse's feature extractors: a config, a name, a dimension,
one ``extract`` call).

Two shapes of output exist because the modalities differ in what they look at:
- frame extractors (acoustic, facial) turn media into a time-stamped ``FrameFeatures`` track that
  ``pipeline.align`` later averages over each word;
- word extractors (text) turn the utterances straight into one vector per word.
Adding a modality or swapping a model touches one module and the config.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from pipeline.records import Audio, FrameFeatures, Utterance, VideoInfo


@dataclass
class Clip:
    """Everything an extractor may look at for one video."""

    path: str
    info: VideoInfo | None  # None for audio-only input
    audio: Audio | None  # None when the file has no audio track
    utterances: list[Utterance]


class Extractor(ABC):
    name: ClassVar[str]  # stored in the Parquet metadata, e.g. "librosa-acoustic"
    modality: ClassVar[str]  # "text" | "audio" | "vision": the Parquet column it fills
    version: ClassVar[str] = "1"  # bump when the features change meaning

    @property
    @abstractmethod
    def feature_names(self) -> list[str]: ...

    @property
    def feature_dim(self) -> int:
        return len(self.feature_names)

    def describe(self) -> dict:
        """What the store and checkpoints record about this extractor."""
        return {"extractor": self.name, "version": self.version, "dim": self.feature_dim}


class FrameExtractor(Extractor):
    @abstractmethod
    def extract(self, clip: Clip, progress=None) -> FrameFeatures:
        """Media -> time-stamped frames. ``progress(done, total)`` may be called on long inputs."""


class WordExtractor(Extractor):
    @abstractmethod
    def extract(self, clip: Clip, progress=None) -> np.ndarray:
        """Utterances -> (n_words, feature_dim) float32, words in utterance order."""
