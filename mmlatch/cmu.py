"""Import the standard CMU-MOSI/MOSEI benchmark features into the mmpipe Parquet store.

Two sources, one output (one Parquet file per video + a labels table), so MMLatch trains on the
paper's inputs through exactly the code that trains on our own extracted features.

(a) CMU-MultimodalSDK computational sequences (.csd, HDF5): ``<root>/data/<video>/{features (n,d),
    intervals (n,2) seconds}`` and ``<root>/metadata``. The SDK recipe the MMLatch authors ran is
    reproduced: every sequence is averaged over each word's interval (rows overlapping it by more
    than the SDK's epsilon 1e-5 s, unweighted mean), words no row covers are imputed with zeros,
    non-finite values become 0, the "sp" pause tokens are dropped, and words are grouped into
    utterances by the label intervals (utterance id = row of the label in its video, the SDK's
    ``video[i]``; a word overlapping two segments belongs to both). Videos missing from any
    sequence are skipped, as the SDK's ``unify`` does. One deliberate simplification: every
    modality is assigned to segments by the *word's* interval (the SDK re-intersects each
    sequence's collapsed interval, which can leave modalities with different word counts; the
    authors then dropped such utterances).
(b) The widely used word-aligned pickles ``{train, valid, test: {text, audio, vision, labels, id}}``
    with arrays (N, 50, d) and labels (N,1,1) or (N,1). Zero rows padding the 50 steps are trimmed
    from both ends. Samples are grouped into videos by ``id`` when present, else one pseudo-video
    per sample. Pickles are read with an allow-list unpickler that can only rebuild numpy arrays.

(About 540 lines, on purpose: the two importers of the same releases, computational sequences
and aligned pickles, share their report, splits, label rows and store writing.)
"""

from __future__ import annotations

import ast
import json
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.errors import InputError
from core.files import digest
from core.records import Utterance, Word, WordFeatures
from mmlatch.labels import SPLIT_ALIASES, write_labels
from pipeline.schema import MODALITIES, FeatureSchema, ModalitySpec, StoreMetadata
from pipeline.store import feature_table, write_table

EPSILON = 1e-5  # the SDK's interval tolerance (10e-6)
PAUSE_TOKENS = {"sp"}
ROLES = ("words", "text", "audio", "vision", "labels")
Progress = Callable[[int, int], None] | None


# ------------------------------------------------------------------------------- reports, folds


@dataclass
class ImportReport:
    features: Path
    labels: Path
    videos: int = 0
    utterances: int = 0
    words: int = 0
    labelled: dict[str, int] = field(default_factory=dict)  # split -> utterances
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    schema: FeatureSchema | None = None

    def skip(self, reason: str, n: int = 1) -> None:
        if n:
            self.skipped[reason] = self.skipped.get(reason, 0) + n

    def summary(self) -> str:
        parts = [
            f"{self.videos} videos, {self.utterances} utterances, {self.words} words -> {self.features}",
            "labels: " + ", ".join(f"{k} {v}" for k, v in sorted(self.labelled.items())) + f" -> {self.labels}",
        ]
        if self.schema is not None:
            parts.append("dims: " + ", ".join(f"{m} {d}" for m, d in self.schema.dims.items()))
        if self.skipped:
            parts.append("skipped: " + ", ".join(f"{v} {k}" for k, v in sorted(self.skipped.items())))
        return "\n".join(parts)


def read_folds(path: str | Path) -> dict[str, str]:
    """video_id -> train | valid | test, from a CSV/Parquet (video_id, split), a JSON
    {"train": [...], "valid": [...], "test": [...]}, or the SDK's ``cmu_mosei_std_folds.py``
    (read as literals, never executed)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("folds file not found", str(path))
    lists: dict[str, list] = {}
    try:
        if path.suffix == ".json":
            lists = json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".py":
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    m = re.fullmatch(r"standard_(train|valid|test)_fold", node.targets[0].id)
                    if m:
                        lists[m.group(1)] = ast.literal_eval(node.value)
        else:
            table = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(
                path, convert_options=pacsv.ConvertOptions(column_types={"video_id": pa.string()}))
            if "video_id" not in table.column_names or "split" not in table.column_names:
                raise InputError("folds table needs columns video_id and split", str(path))
            for v, s in zip(table.column("video_id").to_pylist(), table.column("split").to_pylist()):
                lists.setdefault(str(s), []).append(str(v))
    except InputError:
        raise
    except (ValueError, SyntaxError, OSError, pa.ArrowException) as exc:
        raise InputError(f"cannot read folds ({str(exc).splitlines()[0]})", str(path)) from None
    if not isinstance(lists, dict) or not lists:
        raise InputError("no folds found (expected train/valid/test video lists)", str(path))
    folds: dict[str, str] = {}
    for split, videos in lists.items():
        key = SPLIT_ALIASES.get(str(split).strip().lower())
        if key is None:
            raise InputError(f"unknown split {split!r} in folds", str(path))
        for v in videos:
            if folds.setdefault(str(v), key) != key:
                raise InputError(f"video {v} is in two splits", str(path))
    return folds


# ----------------------------------------------------------------------------- .csd sequences


class CsdSequence:
    """One computational sequence file, read one video at a time (MOSEI's files are gigabytes)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.h5 = h5py.File(self.path, "r")
        except (OSError, ValueError) as exc:
            raise InputError(f"not a readable .csd (HDF5) file ({str(exc).splitlines()[0]})", str(self.path)) from None
        roots = [k for k in self.h5.keys() if isinstance(self.h5[k], h5py.Group) and "data" in self.h5[k]]
        if not roots:
            self.h5.close()
            raise InputError("no computational sequence in file (expected <root>/data/<video>/...)", str(self.path))
        self.root = roots[0]
        self.data = self.h5[self.root]["data"]
        self.metadata = self._read_metadata()
        self.video_ids = set(self.data.keys())
        bracketed = [v for v in list(self.video_ids)[:50] if "[" in v]
        if bracketed:
            raise InputError(
                f"sequence is already aligned (entries like {bracketed[0]!r}); give the raw video-level .csd files",
                str(self.path),
            )

    def _read_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        group = self.h5[self.root].get("metadata")
        if group is None:
            return meta
        items = list(group.attrs.items())
        if isinstance(group, h5py.Group):
            items += [(k, group[k][()]) for k in group.keys() if isinstance(group[k], h5py.Dataset)]
        for key, value in items:
            if isinstance(value, np.ndarray) and value.size >= 1:
                value = value.reshape(-1)[0]
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    pass
            meta[key] = value
        return meta

    def read(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            group = self.data[video_id]
            intervals = np.asarray(group["intervals"][()], np.float64)
            features = group["features"][()]
        except (KeyError, OSError, ValueError) as exc:
            raise InputError(f"entry {video_id!r} is unreadable ({exc})", str(self.path)) from None
        if features.ndim == 1:
            features = features[:, None]
        if intervals.ndim != 2 or intervals.shape[1] != 2 or len(intervals) != len(features):
            raise InputError(
                f"entry {video_id!r}: intervals {intervals.shape} do not match features {features.shape}", str(self.path)
            )
        return intervals, features

    @property
    def dim(self) -> int:
        for v in self.data:
            return int(self.data[v]["features"].shape[1]) if self.data[v]["features"].ndim == 2 else 1
        raise InputError("sequence has no entries", str(self.path))

    def feature_names(self, prefix: str) -> tuple[str, ...]:
        names = self.metadata.get("dimension names")
        if isinstance(names, list) and len(names) == self.dim and all(isinstance(n, str) for n in names):
            return tuple(names)
        return tuple(f"{prefix}_{i}" for i in range(self.dim))

    def version(self) -> str:
        return str(self.metadata.get("computational sequence version", "1"))

    def close(self) -> None:
        self.h5.close()


# File-name patterns of the SDK's standard sequences (CMU_MOSEI_TimestampedWordVectors.csd, ...).
ROLE_PATTERNS = {
    "text": re.compile(r"wordvector|glove", re.I),
    "words": re.compile(r"words", re.I),
    "audio": re.compile(r"covarep", re.I),
    "vision": re.compile(r"facet", re.I),
    "labels": re.compile(r"label", re.I),
}


def find_csd_files(folder: str | Path) -> dict[str, Path]:
    """Role -> file for a folder of SDK .csd files (words, text=GloVe, audio=COVAREP, vision=FACET, labels)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder of .csd files", str(folder))
    files = sorted(folder.glob("*.csd"))
    found: dict[str, Path] = {}
    for path in files:
        for role in ("text", "words", "audio", "vision", "labels"):  # vectors before words
            if ROLE_PATTERNS[role].search(path.name):
                if role in found:
                    raise InputError(f"two candidate {role} sequences: {found[role].name} and {path.name}", str(folder))
                found[role] = path
                break
    missing = [r for r in ROLES if r not in found]
    if missing:
        raise InputError(
            f"missing .csd sequence(s) for {', '.join(missing)} (found: {', '.join(p.name for p in files) or 'none'}); "
            "names must contain Words, WordVectors, COVAREP, Facet and Labels",
            str(folder),
        )
    return found


def average_over_words(word_intervals: np.ndarray, intervals: np.ndarray, features: np.ndarray,
                       eps: float = EPSILON) -> tuple[np.ndarray, np.ndarray]:
    """The SDK's word alignment: the unweighted mean of the rows overlapping each word by more
    than ``eps``; (W,d) values, zeros where no row overlaps, and (W,) True there (imputed)."""
    order = np.argsort(intervals[:, 0], kind="stable")
    starts, ends = intervals[order, 0], intervals[order, 1]
    feats = np.asarray(features, np.float64)[order]
    reach = np.maximum.accumulate(ends) if len(ends) else ends  # monotone bound on the ends so far
    out = np.zeros((len(word_intervals), feats.shape[1]), np.float64)
    imputed = np.ones(len(word_intervals), bool)
    for w, (r0, r1) in enumerate(word_intervals):
        hi = int(np.searchsorted(starts, r1 + eps, "left"))  # rows starting before the word ends
        lo = int(np.searchsorted(reach, r0 - eps, "right"))  # rows before lo all end before it starts
        if lo >= hi:
            continue
        s, e = starts[lo:hi], ends[lo:hi]
        keep = (e > r0 - eps) & (np.minimum(e, r1) - np.maximum(s, r0) > eps)
        if keep.any():
            out[w] = feats[lo:hi][keep].mean(axis=0)
            imputed[w] = False
    out[~np.isfinite(out)] = 0.0
    return out.astype(np.float32), imputed


def segment_words(word_intervals: np.ndarray, segments: np.ndarray, eps: float = EPSILON) -> list[np.ndarray | None]:
    """Word indices in each label segment (overlap > eps); None for a zero-length segment."""
    out: list[np.ndarray | None] = []
    s, e = word_intervals[:, 0], word_intervals[:, 1]
    for r0, r1 in segments:
        if abs(r1 - r0) < eps:
            out.append(None)
            continue
        hit = (s < r1 + eps) & (e > r0 - eps) & (np.minimum(e, r1) - np.maximum(s, r0) > eps)
        out.append(np.flatnonzero(hit))
    return out


def _decode_words(features: np.ndarray) -> list[str]:
    col = features[:, 0] if features.ndim == 2 else features
    return [w.decode("utf-8", "replace") if isinstance(w, bytes) else str(w) for w in col]


def _file_name(video_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", video_id) + ".parquet"


def import_csd(
    csd: str | Path | dict[str, Path],
    out: str | Path,
    labels_out: str | Path,
    dataset: str = "mosei",
    folds: str | Path | dict[str, str] | None = None,
    progress: Progress = None,
) -> ImportReport:
    """Import SDK sequences (a folder, or role -> file) into ``out`` + the labels table ``labels_out``."""
    if folds is None:
        raise InputError(
            f"{dataset}: a folds file is needed to assign videos to train/valid/test "
            "(CSV with video_id,split; JSON lists; or the SDK's cmu_mosei_std_folds.py)"
        )
    fold_of = folds if isinstance(folds, dict) else read_folds(folds)
    files = csd if isinstance(csd, dict) else find_csd_files(csd)
    seqs: dict[str, CsdSequence] = {}
    try:
        for role in ROLES:
            seqs[role] = CsdSequence(files[role])
        return _import_sequences(seqs, Path(out), Path(labels_out), dataset, fold_of, progress)
    finally:
        for s in seqs.values():
            s.close()


def _import_sequences(seqs: dict[str, CsdSequence], out: Path, labels_out: Path, dataset: str,
                      fold_of: dict[str, str], progress: Progress) -> ImportReport:
    names = {"text": "glove", "audio": "covarep", "vision": "facet"}
    schema = FeatureSchema(
        modalities={
            m: ModalitySpec(f"cmu-{names[m]}", seqs[m].version(), seqs[m].dim, seqs[m].feature_names(names[m]))
            for m in MODALITIES
        },
        config_hash=_config_hash({"importer": "cmu-csd", **{r: seqs[r].root for r in ROLES}}),
    )
    config = {"importer": "cmu-csd", "dataset": dataset, "epsilon": EPSILON, "pause_tokens": sorted(PAUSE_TOKENS),
              "sequences": {r: {"file": seqs[r].path.name, "root": seqs[r].root} for r in ROLES}}
    report = ImportReport(out, labels_out, schema=schema)
    shared = set.intersection(*(s.video_ids for s in seqs.values()))
    everywhere = set.union(*(s.video_ids for s in seqs.values()))
    if everywhere - shared:
        report.skip("videos missing from some sequence", len(everywhere - shared))
    rows: list[tuple[str, int, float, str]] = []
    videos = sorted(shared)
    for k, video_id in enumerate(videos):
        rows.extend(_import_video(video_id, seqs, schema, config, dataset, fold_of, out, report))
        if progress:
            progress(k + 1, len(videos))
    return _finish(report, labels_out, rows)


def _import_video(video_id, seqs, schema, config, dataset, fold_of, out: Path, report: ImportReport):
    word_iv, word_feat = seqs["words"].read(video_id)
    order = np.argsort(word_iv[:, 0], kind="stable")
    decoded = _decode_words(word_feat)
    word_iv, words = word_iv[order], [decoded[i] for i in order]
    timed = np.isfinite(word_iv).all(axis=1)
    report.skip("words without finite times", int((~timed).sum()))
    nonzero = timed & (np.abs(word_iv[:, 1] - word_iv[:, 0]) >= EPSILON)  # the SDK skips zero-length words
    aligned, imputed = {}, {}
    for m in MODALITIES:
        iv, feat = seqs[m].read(video_id)
        if feat.shape[1] != schema.modalities[m].dim:
            raise InputError(f"entry {video_id!r} has {feat.shape[1]} features, others have {schema.modalities[m].dim}",
                             str(seqs[m].path))
        aligned[m], imputed[m] = average_over_words(word_iv, iv, feat)
    keep = nonzero & np.array([w.strip().lower() not in PAUSE_TOKENS for w in words], bool)
    report.skip("pause tokens (sp)", int(np.sum(nonzero) - np.sum(keep)))
    kept = np.flatnonzero(keep)
    seg_iv, seg_feat = seqs["labels"].read(video_id)
    scores = np.nan_to_num(np.asarray(seg_feat[:, 0], np.float64), nan=0.0, posinf=3.0, neginf=-3.0)
    utterances, rows_of = [], []
    for i, hit in enumerate(segment_words(word_iv[kept], seg_iv)):
        if hit is None or len(hit) == 0:
            report.skip("segments without words")
            continue
        idx = kept[hit]
        utterances.append(Utterance(i, tuple(Word(words[j], float(word_iv[j, 0]), float(word_iv[j, 1]), "imported")
                                             for j in idx)))
        rows_of.append(idx)
    if not utterances:
        report.skip("videos without labelled words")
        return []
    all_rows = np.concatenate(rows_of)
    features = {m: WordFeatures(aligned[m][all_rows], imputed[m][all_rows]) for m in MODALITIES}
    duration = float(max(word_iv[:, 1].max(initial=0.0), seg_iv[:, 1].max(initial=0.0)))
    meta = StoreMetadata(
        schema=schema,
        video={"video_id": video_id, "source": "CMU-MultimodalSDK", "dataset": dataset, "duration_s": duration},
        config=config,
        summary={"utterances": len(utterances), "words": int(len(all_rows)),
                 "imputed": {m: int(imputed[m][all_rows].sum()) for m in MODALITIES}},
    )
    try:
        table = feature_table(video_id, utterances, features, meta)
    except ValueError as exc:
        raise InputError(f"entry {video_id!r} cannot be stored ({exc})", str(seqs["words"].path)) from None
    write_table(out / _file_name(video_id), table)
    report.videos += 1
    report.utterances += len(utterances)
    report.words += int(len(all_rows))
    split = fold_of.get(video_id)
    if split is None:
        report.skip("videos in no fold (features written, not labelled)")
        return []
    return [(video_id, u.index, float(np.clip(scores[u.index], -3, 3)), split) for u in utterances]


def _config_hash(data: dict) -> str:
    return digest(json.dumps(data, sort_keys=True))[:16]


def _finish(report, labels_out, rows):
    """Write the labels table and count labelled utterances per split."""
    write_labels(labels_out, rows)
    for _, _, _, split in rows:
        report.labelled[split] = report.labelled.get(split, 0) + 1
    return report


# ------------------------------------------------------------------------------ aligned pickles


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, strings and numpy arrays; refuses every other global (no code runs)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_aligned_pickle(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    path = Path(path)
    if not path.is_file():
        raise InputError("pickle file not found", str(path))
    try:
        with open(path, "rb") as fh:
            data = _ArrayUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise InputError(f"not a readable aligned-features pickle ({exc})", str(path)) from None
    if not isinstance(data, dict):
        raise InputError("pickle does not hold a dict of splits", str(path))
    splits = {}
    for key, value in data.items():
        split = SPLIT_ALIASES.get(str(key).lower())
        if split is None:
            continue
        if not isinstance(value, dict):
            raise InputError(f"split {key!r} is not a dict of arrays", str(path))
        missing = [k for k in ("text", "audio", "vision", "labels") if k not in value]
        if missing:
            raise InputError(f"split {key!r} lacks {', '.join(missing)}", str(path))
        splits[split] = value
    if not splits:
        raise InputError("pickle has no train/valid/test split", str(path))
    return splits


def _sample_id(raw) -> tuple[str, float | None, float | None]:
    """Video id and (when the id row carries them) segment start/end seconds."""
    if isinstance(raw, np.ndarray) and raw.ndim > 0:
        items = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in raw.reshape(-1)]
    else:
        items = [raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)]
    times: list[float | None] = [None, None]
    for k in (1, 2):
        try:
            times[k - 1] = float(items[k])
        except (IndexError, ValueError):
            pass
    video_id = re.sub(r"\[\d+\]$", "", items[0])  # "video[3]" names a segment of "video"
    return video_id, times[0], times[1]


def trim_padding(x: dict[str, np.ndarray]) -> slice:
    """Rows that are zero in every modality at either end are padding; keep at least one row."""
    empty = np.all([np.all(x[m] == 0, axis=1) for m in MODALITIES], axis=0)
    real = np.flatnonzero(~empty)
    if len(real) == 0:
        return slice(len(empty) - 1, len(empty))
    return slice(int(real[0]), int(real[-1]) + 1)


def import_pickle(path: str | Path, out: str | Path, labels_out: str | Path, dataset: str = "mosei",
                  progress: Progress = None) -> ImportReport:
    splits = load_aligned_pickle(path)
    out, labels_out = Path(out), Path(labels_out)
    first = next(iter(splits.values()))
    dims = {}
    for m in MODALITIES:
        arr = np.asarray(first[m])
        if arr.ndim != 3:
            raise InputError(f"{m} arrays must be (N, steps, dim), got {arr.shape}", str(path))
        dims[m] = int(arr.shape[2])
    schema = FeatureSchema(
        modalities={m: ModalitySpec(f"aligned-pickle-{m}", "1", dims[m], tuple(f"{m}_{i}" for i in range(dims[m])))
                    for m in MODALITIES},
        config_hash=_config_hash({"importer": "aligned-pickle", "dims": dims}),
    )
    report = ImportReport(out, labels_out, schema=schema)
    samples: dict[str, list[tuple[str, int, dict[str, np.ndarray], float, float | None, float | None]]] = {}
    for split, block in splits.items():
        arrays = {m: np.asarray(block[m]) for m in MODALITIES}
        n = len(arrays["text"])
        for m in MODALITIES:
            if arrays[m].ndim != 3 or arrays[m].shape[2] != dims[m] or len(arrays[m]) != n:
                raise InputError(f"{split}/{m} has shape {arrays[m].shape}, expected ({n}, steps, {dims[m]})", str(path))
        labels = np.asarray(block["labels"], np.float64).reshape(n, -1)[:, 0]
        ids = block.get("id")
        for i in range(n):
            video_id, start, end = _sample_id(ids[i]) if ids is not None else (f"{split}_{i:05d}", None, None)
            x = {m: np.nan_to_num(arrays[m][i].astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0) for m in MODALITIES}
            score = float(np.clip(np.nan_to_num(labels[i]), -3, 3))
            samples.setdefault(video_id, []).append((split, i, x, score, start, end))
    rows = []
    config = {"importer": "aligned-pickle", "dataset": dataset, "file": Path(path).name}
    for k, (video_id, items) in enumerate(sorted(samples.items())):
        utterances, feats = [], {m: [] for m in MODALITIES}
        t = 0.0
        for u, (split, _, x, score, start, end) in enumerate(items):
            keep = trim_padding(x)
            n_words = keep.stop - keep.start
            report.skip("padding rows trimmed", int(len(x["text"]) - n_words))
            t0 = start if start is not None else t
            step = ((end - start) / n_words) if (start is not None and end is not None and end > start) else 1.0
            words = tuple(Word("", t0 + j * step, t0 + (j + 1) * step, "imported") for j in range(n_words))
            t = words[-1].end + 1.0
            utterances.append(Utterance(u, words))
            for m in MODALITIES:
                feats[m].append(x[m][keep])
            rows.append((video_id, u, score, split))
        features = {m: WordFeatures(np.concatenate(feats[m]), np.zeros(sum(len(f) for f in feats[m]), bool))
                    for m in MODALITIES}
        meta = StoreMetadata(
            schema=schema,
            video={"video_id": video_id, "source": "aligned pickle", "dataset": dataset,
                   "duration_s": float(max(w.end for u in utterances for w in u.words))},
            config=config,
            summary={"utterances": len(utterances), "words": int(len(features["text"].values))},
        )
        write_table(out / _file_name(video_id), feature_table(video_id, utterances, features, meta))
        report.videos += 1
        report.utterances += len(utterances)
        report.words += int(len(features["text"].values))
        if progress:
            progress(k + 1, len(samples))
    return _finish(report, labels_out, rows)
