"""The per-sentence cache of the starter build: synthesised speech, text vectors and word-pooled
acoustic vectors of every sentence, filled by a pool of worker processes.

Speaking and extracting 13,000 sentences takes about half an hour on two cores, while the rest
of a build takes a minute or two; so each sentence's results are kept on disk under a key made of
exactly what produced them (its words, its voice, the extractors' names, versions and settings),
and a rerun with the same data and extractors only trains. Workers are spawned, not forked:
torch and MediaPipe do not survive a fork well.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from core.config import ExtractConfig
from core.files import atomic_write
from core.records import Audio, Utterance, Word, WordFeatures
from extractors import extractor_for
from extractors.base import Clip
from pipeline.pooling import pool_to_words
from scripts.starter.keys import FEATURES_VERSION, SYNTH_VERSION, digest, stable_seed
from scripts.starter.speech import Speech, speak, voice_for
from scripts.starter.sst import Sample

# How a build stage reports: (stage name, items done, items in all).
Progress = Callable[[str, int, int], None]


def _npz_path(root: Path, kind: str, key: str) -> Path:
    return root / kind / key[:2] / f"{key}.npz"


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write a cache entry atomically, so a killed build never leaves a torn entry behind."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    atomic_write(path, write)


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
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

    def __init__(self, root: str | Path, config: ExtractConfig, seed: int = 0):
        self.root = Path(root)
        self.config: ExtractConfig = config
        self.seed = seed
        self._identity: tuple[str, str] | None = None

    def identities(self) -> tuple[str, str]:
        """(text, acoustic) extractor identities; loading the text model costs a few seconds."""
        if self._identity is None:
            text_ex, audio_ex = extractor_for("text", self.config), extractor_for("audio", self.config)
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
        cached = load_npz(path)
        sr = self.config.media.sample_rate
        if cached is not None and len(cached["starts"]) == len(sample.words):
            words = [Word(w, float(s), float(e), str(t)) for w, s, e, t in
                     zip(sample.words, cached["starts"], cached["ends"], cached["timing"])]
            return Speech(Audio(cached["audio"].astype(np.float32) / 32767.0, sr), words)
        speech = speak(sample.words, voice_for(sample.key, self.seed), sr, seed=stable_seed("noise", sample.key, self.seed))
        save_npz(
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
        text_ex, audio_ex = extractor_for("text", self.config), extractor_for("audio", self.config)
        todo = [s for s in samples if self.missing(s)]
        if not todo:
            return
        keys = [self.keys(s) for s in todo]
        speeches = [self.speech(s) for s in todo]
        need_text = [i for i, k in enumerate(keys) if not self.path("text", k.text).exists()]
        if need_text:
            utts = [Utterance(j, tuple(speeches[i].words)) for j, i in enumerate(need_text)]
            found = text_ex.extract(Clip("starter:text", None, None, utts))
            values, flags = np.asarray(found.values, np.float32), np.asarray(found.imputed, bool)
            pos = 0
            for i in need_text:
                n = len(todo[i].words)
                save_npz(self.path("text", keys[i].text), values=values[pos:pos + n], imputed=flags[pos:pos + n])
                pos += n
        for i, (sample, speech) in enumerate(zip(todo, speeches)):
            path = self.path("acoustic", keys[i].acoustic)
            if path.exists():
                continue
            clip = Clip(f"starter:{sample.key}", None, speech.audio, [Utterance(0, tuple(speech.words))])
            pooled = pool_to_words(audio_ex.extract(clip), speech.words)
            save_npz(path, values=pooled.values, imputed=pooled.imputed,
                      starts=np.array([w.start for w in speech.words]),
                      ends=np.array([w.end for w in speech.words]),
                      timing=np.array([w.timing for w in speech.words]),
                      duration=np.array(speech.audio.duration))

    def load(self, sample: Sample) -> tuple[list[Word], WordFeatures, WordFeatures, float] | None:
        """(words with timings, text features, acoustic features, clip duration), or None if not cached."""
        k = self.keys(sample)
        text = load_npz(self.path("text", k.text))
        acoustic = load_npz(self.path("acoustic", k.acoustic))
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
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(str(cache.root), cache.config.to_dict(), cache.seed, 1)) as pool:
            futures = [pool.submit(_worker_run, b) for b in batches]
            for fut in as_completed(futures):
                done += fut.result()
                if progress:
                    progress("features", done, len(samples))
    return {"sentences": len(samples), "computed": len(todo), "seconds": round(time.perf_counter() - t0, 1)}

