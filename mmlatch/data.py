"""The Parquet feature store + a labels table -> padded batches with true lengths.

Every utterance's words are kept unpadded, concatenated per modality into one (W, d) matrix with
an offset per utterance. A batch is cut out of those matrices by index arithmetic and padded to the
longest utterance *of that batch* only. The same ``collate`` serves training, evaluation and
scoring, so a video scored alone goes through exactly the path it would take in training (and the
model ignores padding, so batch company does not change a score either).

With a device given, the matrices are uploaded once and batches are gathered on the device: a
training step moves only the batch's row indices and lengths.

Labels come from ``mmlatch.labels``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from core.errors import InputError
from mmlatch.labels import LabelTable, read_labels
from pipeline.schema import MODALITIES, FeatureSchema
from pipeline.store import VideoFeatures, read_video, store_files

# ---------------------------------------------------------------------------------- normalisation


@dataclass
class Normalisation:
    """Per-feature standardisation fitted on the training words that real input covered.

    Imputed words (no face, no audio) carry zeros that are not measurements: they are left out of
    the fit and set to 0 after standardising, i.e. to the training mean.
    """

    mean: dict[str, np.ndarray]  # modality -> (d,) float32
    std: dict[str, np.ndarray]

    @classmethod
    def fit(cls, data: "UtteranceData", indices: np.ndarray) -> "Normalisation":
        rows = data.word_rows(indices)
        mean, std = {}, {}
        for m in MODALITIES:
            real = rows[~data.imputed[m][rows]]
            x = data.flat[m][real].astype(np.float64) if real.size else np.zeros((1, data.flat[m].shape[1]))
            mu, sd = x.mean(axis=0), x.std(axis=0)
            sd[~(sd > 1e-6)] = 1.0
            mean[m], std[m] = mu.astype(np.float32), sd.astype(np.float32)
        return cls(mean, std)

    def apply(self, flat: np.ndarray, imputed: np.ndarray, modality: str) -> np.ndarray:
        out = (flat - self.mean[modality]) / self.std[modality]
        out[imputed] = 0.0
        return out.astype(np.float32, copy=False)

    def to_dict(self) -> dict:
        return {m: {"mean": self.mean[m].tolist(), "std": self.std[m].tolist()} for m in MODALITIES}

    @classmethod
    def from_dict(cls, data: dict) -> "Normalisation":
        mean = {m: np.asarray(data[m]["mean"], np.float32) for m in MODALITIES}
        std = {m: np.asarray(data[m]["std"], np.float32) for m in MODALITIES}
        for m in MODALITIES:
            if mean[m].shape != std[m].shape or not (std[m] > 0).all():
                raise ValueError(f"bad normalisation statistics for {m}")
        return cls(mean, std)


# ------------------------------------------------------------------------------------ utterances


@dataclass
class Batch:
    text: torch.Tensor  # (B,T,d_t) on the device
    audio: torch.Tensor  # (B,T,d_a)
    vision: torch.Tensor  # (B,T,d_v)
    lengths: torch.Tensor  # (B,) int64 on the CPU (packing needs them there; no device sync)
    labels: torch.Tensor  # (B,) float32 on the device, NaN where unlabelled
    index: np.ndarray  # (B,) rows of the UtteranceData


@dataclass
class UtteranceData:
    """All utterances of a set of videos; words concatenated per modality (no padding stored)."""

    schema: FeatureSchema
    flat: dict[str, np.ndarray]  # modality -> (W, d) float32
    imputed: dict[str, np.ndarray]  # modality -> (W,) bool
    offsets: np.ndarray  # (N,) int64: first word row of each utterance
    lengths: np.ndarray  # (N,) int64
    video_ids: list[str]
    utterance_ids: np.ndarray  # (N,) int64
    words: list[list[str]]
    starts: np.ndarray  # (N,) seconds: first word start
    ends: np.ndarray  # (N,) seconds: last word end
    labels: np.ndarray  # (N,) float32, NaN where unlabelled
    splits: np.ndarray  # (N,) str, "" where unlabelled
    normalisation: Normalisation | None = None
    video_meta: dict[str, dict] | None = None  # video_id -> store metadata "video" section
    unmatched_labels: int = 0  # labels whose utterance has no features (e.g. failed extraction)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def dims(self) -> dict[str, int]:
        return {m: self.flat[m].shape[1] for m in MODALITIES}

    def split_indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    def word_rows(self, indices: np.ndarray) -> np.ndarray:
        """Word rows of the given utterances, concatenated."""
        if len(indices) == 0:
            return np.zeros(0, np.int64)
        return np.concatenate([np.arange(o, o + n) for o, n in zip(self.offsets[indices], self.lengths[indices])])

    @classmethod
    def from_videos(cls, videos: Sequence[VideoFeatures], labels: LabelTable | None = None,
                    labelled_only: bool = False) -> "UtteranceData":
        if not videos:
            raise InputError("no feature files to read")
        schema = videos[0].meta.schema
        lookup = labels.lookup() if labels is not None else {}
        parts: dict[str, list[np.ndarray]] = {m: [] for m in MODALITIES}
        imp: dict[str, list[np.ndarray]] = {m: [] for m in MODALITIES}
        lengths, vids, uids, words, starts, ends, scores, splits = [], [], [], [], [], [], [], []
        for v in videos:
            for k, (uid, n) in enumerate(zip(v.utterance_ids, v.lengths)):
                label = lookup.get((v.video_id, int(uid)))
                if labelled_only and label is None:
                    continue
                n = int(n)
                for m in MODALITIES:
                    parts[m].append(v.arrays[m][k, :n])
                    imp[m].append(v.imputed[m][k, :n])
                lengths.append(n)
                vids.append(v.video_id)
                uids.append(int(uid))
                words.append(list(v.words[k]))
                starts.append(float(v.starts[k][0]))
                ends.append(float(v.ends[k][-1]))
                scores.append(label[0] if label else np.nan)
                splits.append(label[1] if label else "")
        if not lengths:
            raise InputError("no utterances matched the labels" if labelled_only else "the feature files hold no words")
        lengths_arr = np.asarray(lengths, np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths_arr)[:-1]]).astype(np.int64)
        return cls(
            schema=schema,
            flat={m: np.ascontiguousarray(np.concatenate(parts[m]), np.float32) for m in MODALITIES},
            imputed={m: np.concatenate(imp[m]).astype(bool) for m in MODALITIES},
            offsets=offsets,
            lengths=lengths_arr,
            video_ids=vids,
            utterance_ids=np.asarray(uids, np.int64),
            words=words,
            starts=np.asarray(starts, np.float64),
            ends=np.asarray(ends, np.float64),
            labels=np.asarray(scores, np.float32),
            splits=np.asarray(splits, dtype=object).astype(str),
            video_meta={v.video_id: dict(v.meta.video) for v in videos},
        )

    def normalised(self, norm: Normalisation | None) -> "UtteranceData":
        """A copy with ``norm`` applied to every word (None: unchanged). Must precede collate."""
        if norm is None:
            return self
        for m in MODALITIES:
            if norm.mean[m].shape != (self.flat[m].shape[1],):
                raise InputError(f"normalisation for {m} has {norm.mean[m].shape[0]} features, data has {self.flat[m].shape[1]}")
        flat = {m: norm.apply(self.flat[m], self.imputed[m], m) for m in MODALITIES}
        return dataclasses.replace(self, flat=flat, normalisation=norm)

    def on(self, device: torch.device | str | None = None) -> "DeviceData":
        return DeviceData(self, torch.device(device or "cpu"))


class DeviceData:
    """The word matrices on one device, ready to be cut into padded batches there."""

    def __init__(self, data: UtteranceData, device: torch.device):
        self.data = data
        self.device = device
        self.flat = {m: torch.from_numpy(data.flat[m]).to(device) for m in MODALITIES}
        self.offsets = torch.from_numpy(data.offsets).to(device)
        self.lengths = torch.from_numpy(data.lengths).to(device)
        self.labels = torch.from_numpy(data.labels).to(device)

    def collate(self, indices: np.ndarray) -> Batch:
        """Utterances ``indices`` -> one batch padded with zeros to its own longest utterance."""
        indices = np.asarray(indices, np.int64)
        lengths = torch.from_numpy(self.data.lengths[indices])  # (B,) CPU
        t = int(lengths.max())
        idx = torch.from_numpy(indices).to(self.device, non_blocking=True)
        steps = torch.arange(t, device=self.device)
        valid = steps[None, :] < self.lengths[idx][:, None]  # (B,T)
        rows = torch.where(valid, self.offsets[idx][:, None] + steps[None, :], 0)  # (B,T)
        x = {m: self.flat[m][rows] * valid[..., None] for m in MODALITIES}  # (B,T,d_m), zero padded
        return Batch(x["text"], x["audio"], x["vision"], lengths, self.labels[idx], indices)


# -------------------------------------------------------------------------------------- batching


def sorted_batches(indices: np.ndarray, lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Evaluation order: by length, so each batch pads as little as possible."""
    order = np.asarray(indices)[np.argsort(lengths[indices], kind="stable")]
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def bucket_batches(indices: np.ndarray, lengths: np.ndarray, batch_size: int,
                   rng: np.random.Generator, bucket: int = 50) -> list[np.ndarray]:
    """Training order: shuffle, sort within buckets of ``bucket`` batches by length, shuffle batches.

    Batches stay random in content (the gradient is not biased towards a length) while padding
    shrinks to a few words per batch.
    """
    perm = rng.permutation(np.asarray(indices))
    batches = []
    size = batch_size * bucket
    for i in range(0, len(perm), size):
        chunk = perm[i : i + size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    return [batches[k] for k in rng.permutation(len(batches))]


# --------------------------------------------------------------------------------------- loading


def read_store(features: str | Path) -> list[VideoFeatures]:
    """Read every feature file under ``features``; all must share one FeatureSchema."""
    features = Path(features)
    if not features.exists():
        raise InputError("feature store not found", str(features))
    files = store_files(features)
    if not files:
        raise InputError("no feature files (*.parquet) in the store", str(features))
    videos: list[VideoFeatures] = []
    for path in files:
        video = read_feature_file(path)
        if videos:
            check_same_schema(videos[0].meta.schema, video.meta.schema, path, files[0])
        videos.append(video)
    return videos


def read_feature_file(path: str | Path) -> VideoFeatures:
    try:
        video = read_video(path)
    except Exception as exc:  # pyarrow, JSON and schema errors all mean: unusable file
        raise InputError(f"unreadable feature file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})", str(path)) from None
    if len(video.lengths) == 0:
        raise InputError("feature file holds no words", str(path))
    return video


def check_same_schema(first: FeatureSchema, other: FeatureSchema, path: Path, first_path: Path) -> None:
    problems = first.differences(other)
    if not problems and first.config_hash != other.config_hash:
        problems = [f"extraction config {other.config_hash or '?'} differs from {first.config_hash or '?'}"]
    if problems:
        raise InputError(
            f"feature schema differs from {Path(first_path).name}: {'; '.join(problems)} "
            "(all files of a store must come from the same extractors and settings)",
            str(path),
        )


def load_dataset(features: str | Path, labels: str | Path,
                 require: Sequence[str] = ("train", "valid")) -> UtteranceData:
    """Labelled utterances of a store; the ``require``d splits must not be empty."""
    table = read_labels(labels)
    data = UtteranceData.from_videos(read_store(features), table, labelled_only=True)
    data.unmatched_labels = len(table) - len(data)
    for split in require:
        if not (data.splits == split).any():
            raise InputError(f"no labelled utterance of the {split!r} split has features in {features}", str(labels))
    return data
