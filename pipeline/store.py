"""Parquet feature store: write one video atomically, read it back as padded utterance arrays.

The files are plain Parquet (fixed-size float32 lists), readable by pandas, polars and duckdb
without mmpipe; this module only adds the padding/length bookkeeping the model wants.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.files import atomic_write
from core.records import Utterance, WordFaces, WordFeatures
from pipeline.schema import (
    METADATA_KEY,
    MODALITIES,
    StoreMetadata,
    arrow_schema,
    imputed_column,
)

SUFFIX = ".parquet"


def check_word_times(words: list[str], starts: np.ndarray, ends: np.ndarray) -> None:
    """The store's timing invariant, checked on every file written: finite times, every word
    ends no earlier than it starts, and within a video (rows in utterance then word order) no
    word starts before the one before it. A reader may then cut a video by time, or join words
    to frames with a sorted search, without re-sorting or second-guessing the rows."""
    if not (np.isfinite(starts).all() and np.isfinite(ends).all()):
        raise ValueError("word times contain non-finite values")
    if len(starts) == 0:
        return
    if (bad := np.flatnonzero(ends < starts)).size:
        i = int(bad[0])
        raise ValueError(f"word {i} ({words[i]!r}) ends at {ends[i]:.3f} s, before it starts at {starts[i]:.3f} s")
    if (back := np.flatnonzero(np.diff(starts) < 0)).size:
        i = int(back[0]) + 1
        raise ValueError(
            f"word times go backwards: word {i} ({words[i]!r}) starts at {starts[i]:.3f} s, before "
            f"word {i - 1} ({words[i - 1]!r}) at {starts[i - 1]:.3f} s"
        )


def feature_table(
    video_id: str,
    utterances: list[Utterance],
    features: dict[str, WordFeatures],
    meta: StoreMetadata,
    faces: WordFaces | None = None,
) -> pa.Table:
    """Build the per-word table; rows follow utterance then word order. Without ``faces`` (whose
    face each word shows) the face columns are null."""
    words = [(u.index, i, w) for u in utterances for i, w in enumerate(u.words)]
    n = len(words)
    schema = arrow_schema(meta)
    times = np.array([(w.start, w.end) for _, _, w in words], float).reshape(-1, 2)
    check_word_times([w.text for _, _, w in words], times[:, 0], times[:, 1])
    columns: dict[str, pa.Array] = {
        "video_id": pa.array([video_id] * n, pa.string()),
        "utterance_id": pa.array([u for u, _, _ in words], pa.int32()),
        "word_index": pa.array([i for _, i, _ in words], pa.int32()),
        "word": pa.array([w.text for _, _, w in words], pa.string()),
        "start": pa.array([w.start for _, _, w in words], pa.float64()),
        "end": pa.array([w.end for _, _, w in words], pa.float64()),
        "timing": pa.array([w.timing for _, _, w in words], pa.string()),
    }
    for m in MODALITIES:
        if m not in features:
            raise ValueError(f"no {m} features given")
        wf = features[m]
        dim = meta.schema.modalities[m].dim
        values = np.ascontiguousarray(wf.values, dtype=np.float32)
        if values.shape != (n, dim):
            raise ValueError(f"{m} features have shape {values.shape}, expected {(n, dim)}")
        if len(wf.imputed) != n:
            raise ValueError(f"{m} imputed flags have length {len(wf.imputed)}, expected {n}")
        if not np.isfinite(values).all():
            raise ValueError(f"{m} features contain non-finite values")
        columns[m] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), dim)
    for m in MODALITIES:
        columns[imputed_column(m)] = pa.array(np.asarray(features[m].imputed, bool), pa.bool_())
    columns.update(face_columns(faces, n))
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def face_columns(faces: WordFaces | None, n: int) -> dict[str, pa.Array]:
    """The per-word record of the speaker choice, or nulls when none was made."""
    if faces is None:
        return {
            "face_track": pa.nulls(n, pa.int32()),
            "faces_in_frame": pa.nulls(n, pa.int32()),
            "speaker_confidence": pa.nulls(n, pa.float32()),
            "face_box": pa.nulls(n, pa.list_(pa.float32(), 4)),
        }
    if not (len(faces.track) == len(faces.faces) == len(faces.confidence) == len(faces.boxes) == n):
        raise ValueError(f"face choices cover {len(faces.track)} words, expected {n}")
    boxes = np.ascontiguousarray(faces.boxes, dtype=np.float32).reshape(-1)
    return {
        "face_track": pa.array(np.asarray(faces.track, np.int32), pa.int32()),
        "faces_in_frame": pa.array(np.asarray(faces.faces, np.int32), pa.int32()),
        "speaker_confidence": pa.array(np.asarray(faces.confidence, np.float32), pa.float32()),
        "face_box": pa.FixedSizeListArray.from_arrays(pa.array(boxes, pa.float32()), 4),
    }


def write_table(path: str | os.PathLike, table: pa.Table) -> None:
    atomic_write(path, lambda tmp: pq.write_table(
        table, tmp, compression="zstd", use_dictionary=dictionary_columns(table)
    ))


def dictionary_columns(table: pa.Table) -> list[str]:
    """Columns worth dictionary encoding: the strings (words, timings). Feature vectors hardly
    repeat a value; trying a dictionary on them made files a third larger (10 minutes: 3.3 MB
    instead of 2.5), the write several times slower, and cost ~60 MB of memory for an hour."""
    return [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]


def read_metadata(path: str | os.PathLike) -> StoreMetadata:
    raw = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in raw:
        raise ValueError(f"{path}: not an mmpipe feature file (no '{METADATA_KEY.decode()}' metadata)")
    return StoreMetadata.from_json(raw[METADATA_KEY])


@dataclass
class VideoFeatures:
    """One video's features as padded per-utterance arrays."""

    video_id: str
    meta: StoreMetadata
    utterance_ids: np.ndarray  # (U,) int
    lengths: np.ndarray  # (U,) int: true number of words
    arrays: dict[str, np.ndarray]  # modality -> (U, T_max, D) float32, zero padded
    imputed: dict[str, np.ndarray]  # modality -> (U, T_max) bool
    words: list[list[str]]
    starts: list[np.ndarray]  # per utterance (len,) seconds
    ends: list[np.ndarray]
    # Per utterance: the face each word's vision features come from (-1 none) and its box;
    # None for files without a face record (imported features, files from older versions).
    face_tracks: list[np.ndarray] | None = None
    face_boxes: list[np.ndarray] | None = None
    face_confidence: list[np.ndarray] | None = None

    @property
    def utterance_spans(self) -> list[tuple[float, float]]:
        return [(float(s[0]), float(e[-1])) for s, e in zip(self.starts, self.ends)]


def read_video(path: str | os.PathLike) -> VideoFeatures:
    meta = read_metadata(path)
    table = pq.read_table(path)
    table = table.sort_by([("utterance_id", "ascending"), ("word_index", "ascending")])
    utt = table.column("utterance_id").to_numpy()
    ids, starts_idx, lengths = np.unique(utt, return_index=True, return_counts=True)
    t_max = int(lengths.max()) if len(lengths) else 0
    arrays, imputed = {}, {}
    for m in MODALITIES:
        dim = meta.schema.modalities[m].dim
        flat = table.column(m).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        flat = flat.astype(np.float32, copy=False).reshape(-1, dim)
        imp = table.column(imputed_column(m)).to_numpy(zero_copy_only=False)
        out = np.zeros((len(ids), t_max, dim), np.float32)
        out_imp = np.zeros((len(ids), t_max), bool)
        for k, (s, n) in enumerate(zip(starts_idx, lengths)):
            out[k, :n] = flat[s : s + n]
            out_imp[k, :n] = imp[s : s + n]
        arrays[m], imputed[m] = out, out_imp
    words_col = table.column("word").to_pylist()
    start_col = table.column("start").to_numpy()
    end_col = table.column("end").to_numpy()
    video_ids = table.column("video_id").to_pylist()
    face_tracks = face_boxes = face_confidence = None
    if "face_track" in table.column_names and table.column("face_track").null_count < table.num_rows:
        track_col = table.column("face_track").fill_null(-1).to_numpy()
        conf_col = table.column("speaker_confidence").fill_null(0.0).to_numpy()
        box_col = table.column("face_box").combine_chunks()
        box_col = np.nan_to_num(box_col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)).reshape(-1, 4) \
            if box_col.null_count == 0 else np.zeros((table.num_rows, 4), np.float32)
        face_tracks = [track_col[s : s + n] for s, n in zip(starts_idx, lengths)]
        face_boxes = [box_col[s : s + n] for s, n in zip(starts_idx, lengths)]
        face_confidence = [conf_col[s : s + n] for s, n in zip(starts_idx, lengths)]
    return VideoFeatures(
        video_id=video_ids[0] if video_ids else meta.video.get("video_id", Path(path).stem),
        meta=meta,
        utterance_ids=ids.astype(np.int64),
        lengths=lengths.astype(np.int64),
        arrays=arrays,
        imputed=imputed,
        words=[words_col[s : s + n] for s, n in zip(starts_idx, lengths)],
        starts=[start_col[s : s + n] for s, n in zip(starts_idx, lengths)],
        ends=[end_col[s : s + n] for s, n in zip(starts_idx, lengths)],
        face_tracks=face_tracks,
        face_boxes=face_boxes,
        face_confidence=face_confidence,
    )


def store_files(root: str | os.PathLike) -> list[Path]:
    """Feature files under a store directory (or the file itself), in a stable order."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob(f"*{SUFFIX}") if not p.name.startswith("."))


def iter_store(root: str | os.PathLike) -> Iterator[VideoFeatures]:
    for path in store_files(root):
        yield read_video(path)
