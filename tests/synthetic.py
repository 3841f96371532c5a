"""Synthetic but learnable feature stores, for benchmarks and smoke tests of the model half.

Each utterance has a hidden sentiment s in [-3, 3]; every word's features are Gaussian noise plus
s times a fixed direction per modality (text carries the clearest signal, audio and vision
weaker ones), so the label really is a function of the inputs and a working model learns it.
Utterance lengths follow a log-normal shaped like CMU-MOSEI's word counts (median ~20 words,
long tail). Files are written through the real store API, so they are ordinary mmpipe stores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.records import Utterance, Word, WordFeatures
from mmlatch.data import UtteranceData
from mmlatch.labels import write_labels
from pipeline.schema import MODALITIES, FeatureSchema, ModalitySpec, StoreMetadata
from pipeline.store import feature_table, write_table

CMU_DIMS = {"text": 300, "audio": 74, "vision": 35}
SIGNAL = {"text": 1.0, "audio": 0.5, "vision": 0.3}


def synthetic_schema(dims: dict[str, int]) -> FeatureSchema:
    return FeatureSchema(
        modalities={
            m: ModalitySpec(f"synthetic-{m}", "1", int(dims[m]), tuple(f"{m}_{i}" for i in range(int(dims[m]))))
            for m in MODALITIES
        },
        config_hash="synthetic",
    )


def mosei_like_lengths(rng: np.random.Generator, n: int, max_len: int = 150) -> np.ndarray:
    return np.clip(np.round(rng.lognormal(np.log(20.0), 0.6, size=n)), 2, max_len).astype(np.int64)


def _directions(dims: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(10_000 + seed)
    out = {}
    for m in MODALITIES:
        u = rng.normal(size=dims[m])
        out[m] = (u / np.linalg.norm(u) * np.sqrt(dims[m]) * SIGNAL[m] / 3.0).astype(np.float32)
    return out


def _utterance_features(rng, n_words: int, s: float, directions) -> dict[str, np.ndarray]:
    return {
        m: (rng.normal(size=(n_words, len(directions[m]))) + s * directions[m]).astype(np.float32)
        for m in MODALITIES
    }


def assign_splits(n_videos: int, rng: np.random.Generator, ratios=(0.7, 0.15, 0.15)) -> list[str]:
    """Video-level folds, like the CMU standard folds (no video in two splits)."""
    n_valid = max(1, int(round(ratios[1] * n_videos)))
    n_test = max(1, int(round(ratios[2] * n_videos))) if ratios[2] > 0 else 0
    splits = ["valid"] * n_valid + ["test"] * n_test
    splits += ["train"] * (n_videos - len(splits))
    return [splits[k] for k in rng.permutation(n_videos)]


def write_synthetic_store(
    root: str | Path,
    n_videos: int = 12,
    utterances_per_video: int = 5,
    dims: dict[str, int] | None = None,
    seed: int = 0,
    mean_words: float | None = None,
    max_words: int = 150,
) -> tuple[Path, Path]:
    """Write ``root/features/*.parquet`` and ``root/labels.csv``; returns (features dir, labels)."""
    dims = dict(dims or CMU_DIMS)
    rng = np.random.default_rng(seed)
    directions = _directions(dims, seed)
    schema = synthetic_schema(dims)
    root = Path(root)
    features = root / "features"
    splits = assign_splits(n_videos, rng)
    rows = []
    for v in range(n_videos):
        video_id = f"synth{v:04d}"
        if mean_words is None:
            lengths = mosei_like_lengths(rng, utterances_per_video, max_words)
        else:
            lengths = np.clip(rng.poisson(mean_words, utterances_per_video), 1, max_words)
        utterances, feats = [], {m: [] for m in MODALITIES}
        t = 0.0
        for u, n in enumerate(lengths):
            s = float(rng.uniform(-3, 3))
            words = []
            for i in range(int(n)):
                words.append(Word(f"w{i}", round(t, 3), round(t + 0.25, 3), "aligned", None))
                t += 0.3
            t += 0.5
            utterances.append(Utterance(u, tuple(words)))
            x = _utterance_features(rng, int(n), s, directions)
            for m in MODALITIES:
                feats[m].append(x[m])
            rows.append((video_id, u, round(s, 4), splits[v]))
        meta = StoreMetadata(schema=schema, video={"video_id": video_id, "path": f"{video_id}.mp4", "duration_s": round(t, 3)})
        wf = {m: WordFeatures(np.concatenate(feats[m]), np.zeros(int(lengths.sum()), bool)) for m in MODALITIES}
        write_table(features / f"{video_id}.parquet", feature_table(video_id, utterances, wf, meta))
    labels = write_labels(root / "labels.csv", rows)
    return features, labels


def synthetic_dataset(n_utterances: int, dims: dict[str, int] | None = None, seed: int = 0,
                      utterances_per_video: int = 7, max_words: int = 150) -> UtteranceData:
    """The same data in memory (no files): for throughput benchmarks at CMU-MOSEI size."""
    dims = dict(dims or CMU_DIMS)
    rng = np.random.default_rng(seed)
    directions = _directions(dims, seed)
    lengths = mosei_like_lengths(rng, n_utterances, max_words)
    scores = rng.uniform(-3, 3, n_utterances).astype(np.float32)
    total = int(lengths.sum())
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    word_score = np.repeat(scores, lengths)[:, None]
    flat = {
        m: (rng.standard_normal((total, dims[m]), dtype=np.float32) + word_score * directions[m]).astype(np.float32)
        for m in MODALITIES
    }
    n_videos = -(-n_utterances // utterances_per_video)
    video_split = assign_splits(n_videos, rng)
    video_of = np.arange(n_utterances) // utterances_per_video
    return UtteranceData(
        schema=synthetic_schema(dims),
        flat=flat,
        imputed={m: np.zeros(total, bool) for m in MODALITIES},
        offsets=offsets,
        lengths=lengths,
        video_ids=[f"synth{v:05d}" for v in video_of],
        utterance_ids=np.arange(n_utterances) % utterances_per_video,
        words=[[f"w{i}" for i in range(int(n))] for n in lengths],
        starts=np.zeros(n_utterances),
        ends=lengths * 0.3,
        labels=scores,
        splits=np.asarray([video_split[v] for v in video_of]),
    )
