"""The labels table: which utterance has which gold sentiment score, and in which split.

CSV or Parquet with columns ``video_id, utterance_id, score, split``; scores in [-3, 3]; split
one of train / valid / test (dev, val, validation also read as valid). One reader and one
writer with one set of types (string, int32 like the store's ``utterance_id``, float32, string),
for every producer of labels: the CMU importer, the starter-model builder, tests. A producer may
add columns of its own (the starter builder records where each sentence came from); readers
ignore them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.errors import InputError
from core.files import atomic_write

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"train": "train", "valid": "valid", "dev": "valid", "val": "valid", "validation": "valid", "test": "test"}
LABEL_COLUMNS = ("video_id", "utterance_id", "score", "split")
LABEL_SCHEMA = pa.schema([
    pa.field("video_id", pa.string()), pa.field("utterance_id", pa.int32()),
    pa.field("score", pa.float32()), pa.field("split", pa.string()),
])


@dataclass
class LabelTable:
    video_id: list[str]
    utterance_id: np.ndarray  # (N,) int64
    score: np.ndarray  # (N,) float32 in [-3, 3]
    split: list[str]  # train | valid | test

    def __len__(self) -> int:
        return len(self.video_id)

    def lookup(self) -> dict[tuple[str, int], tuple[float, str]]:
        return {
            (v, int(u)): (float(s), sp)
            for v, u, s, sp in zip(self.video_id, self.utterance_id, self.score, self.split)
        }


def read_labels(path: str | Path) -> LabelTable:
    """Read and validate a labels table; any problem is an ``InputError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("labels file not found", str(path))
    try:
        if path.suffix.lower() == ".parquet":
            table = pq.read_table(path)
        else:
            table = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types={"video_id": pa.string(), "split": pa.string()}
                ),
            )
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"cannot read labels table ({str(exc).splitlines()[0]})", str(path)) from None
    missing = [c for c in LABEL_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(
            f"labels table lacks column(s) {', '.join(missing)} (needs {', '.join(LABEL_COLUMNS)})", str(path)
        )
    try:
        video_id = [str(v) for v in table.column("video_id").cast(pa.string()).to_pylist()]
        utterance_id = np.asarray(table.column("utterance_id").cast(pa.int64()).to_numpy(zero_copy_only=False))
        score = np.asarray(table.column("score").cast(pa.float64()).to_numpy(zero_copy_only=False), np.float64)
        raw_split = table.column("split").cast(pa.string()).to_pylist()
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise InputError(f"labels table has a malformed column ({str(exc).splitlines()[0]})", str(path)) from None
    if not np.isfinite(score).all():
        raise InputError(f"{int((~np.isfinite(score)).sum())} label score(s) are missing or not finite", str(path))
    outside = np.abs(score) > 3 + 1e-6
    if outside.any():
        k = int(np.argmax(outside))
        raise InputError(
            f"{int(outside.sum())} score(s) outside [-3, 3], e.g. {score[k]:g} for {video_id[k]}/{utterance_id[k]}",
            str(path),
        )
    split = []
    for s in raw_split:
        key = (s or "").strip().lower()
        if key not in SPLIT_ALIASES:
            raise InputError(f"unknown split {s!r} (use train, valid or test)", str(path))
        split.append(SPLIT_ALIASES[key])
    seen: set[tuple[str, int]] = set()
    for v, u in zip(video_id, utterance_id):
        if (v, int(u)) in seen:
            raise InputError(f"utterance {v}/{int(u)} is labelled twice", str(path))
        seen.add((v, int(u)))
    return LabelTable(video_id, utterance_id.astype(np.int64), score.astype(np.float32), split)


def write_labels(
    path: str | Path, rows: Iterable[tuple[str, int, float, str]], extra: dict[str, list[str]] | None = None
) -> Path:
    """Write ``(video_id, utterance_id, score, split)`` rows as CSV or Parquet (by suffix), with
    the columns and types ``read_labels`` reads, atomically; ``extra`` adds text columns."""
    path = Path(path)
    rows = list(rows)
    columns = list(zip(*rows)) if rows else [[], [], [], []]
    table = pa.Table.from_arrays(
        [pa.array([str(v) for v in columns[0]], pa.string()), pa.array(columns[1], pa.int32()),
         pa.array(columns[2], pa.float32()), pa.array(columns[3], pa.string())],
        schema=LABEL_SCHEMA,
    )
    for name, values in (extra or {}).items():
        table = table.append_column(pa.field(name, pa.string()), pa.array(values, pa.string()))
    if path.suffix.lower() == ".parquet":
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))
        return path

    def write_csv(tmp: str) -> None:  # plain, unquoted CSV that reads well in any tool
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(table.column_names)
            for v, u, s, sp, *more in zip(*(c.to_pylist() for c in table.columns)):
                out.writerow((v, u, f"{s:.6g}", sp, *more))

    atomic_write(path, write_csv)
    return path
