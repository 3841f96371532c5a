"""The face bank of the starter build: facial features of real face recordings, from which each
sentence gets a random window.

The training sentences have no video, yet the model must learn to live with what the real facial
extractor gives on real faces (blinks, head turns, frames with no face). So a few real recordings
are run through that extractor once (and cached), and every sentence gets a reproducible random
window of one of them, pooled over its word timings exactly as ``mmpipe extract`` pools them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from core.config import ExtractConfig
from core.errors import InputError
from core.records import FrameFeatures, Word, WordFeatures
from extractors import FrameExtractor, extractor_for
from pipeline.extract import content_hash
from pipeline.media import video_clip
from pipeline.pooling import pool_to_words
from scripts.starter.cache import Progress, load_npz, save_npz
from scripts.starter.keys import digest


@dataclass
class FaceBank:
    """Face tracks of real recordings, each extracted once (and cached), to cut windows from."""

    names: list[str]
    tracks: list[FrameFeatures]

    @classmethod
    def build(cls, videos: Sequence[str | Path], config: ExtractConfig, cache_root: str | Path,
              progress: Progress | None = None) -> "FaceBank":
        face_ex = extractor_for("vision", config)
        identity = digest(face_ex.name, face_ex.version, config.facial.__dict__)
        names, tracks = [], []
        for n, video in enumerate(videos):
            video = Path(video)
            track = _face_track(video, face_ex, identity, Path(cache_root))
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
        k = int(rng.integers(len(self.tracks)))
        track = _pingpong(self.tracks[k], duration)
        span = float(track.times[-1] - track.times[0])
        offset = float(track.times[0] + rng.uniform(0.0, max(span - duration, 0.0)))
        shifted = FrameFeatures(track.times - offset, track.values, track.present, track.names)
        return pool_to_words(shifted, words), self.names[k], offset


def _face_track(video: Path, face_ex: FrameExtractor, identity: str, cache_root: Path) -> FrameFeatures:
    """The recording's face track, from the cache when the same file went through the same
    extractor and settings before; extracting one costs seconds to minutes."""
    path = cache_root / "faces" / f"{video.stem}-{digest(content_hash(video), identity)}.npz"
    cached = load_npz(path)
    if cached is not None:
        return FrameFeatures(cached["times"], cached["values"].astype(np.float32),
                             cached["present"].astype(bool), [str(x) for x in cached["names"]])
    track = face_ex.extract(video_clip(video))
    save_npz(path, times=track.times, values=track.values, present=track.present, names=np.array(track.names))
    return track


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

