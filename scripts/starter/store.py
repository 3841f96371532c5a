"""The starter build's output: the labelled sentences by role, grouped into pseudo-videos and
written as an ordinary feature store plus labels tables.

The starter model is trained by the ordinary trainer, which reads what ``mmpipe extract`` writes:
Parquet files of word rows per video and a labels table of (video, utterance, score, split). So
cached sentences are laid one after another on a pseudo-video's clock, a chunk of them per file,
with the same schema as a real extraction; a chunk whose inputs did not change is kept as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from core.errors import ModelError
from core.records import Utterance, Word, WordFeatures
from mmlatch.labels import write_labels
from pipeline.extract import feature_schema
from pipeline.schema import MODALITIES, FeatureSchema, StoreMetadata
from pipeline.store import feature_table, read_metadata, write_table
from scripts.starter.cache import FeatureKeys, Progress, SentenceCache
from scripts.starter.faces import FaceBank
from scripts.starter.keys import FEATURES_VERSION, digest, stable_seed
from scripts.starter.sst import Phrase, Sample, pick_phrases, read_mosi_text, read_sst


@dataclass
class Corpus:
    """The labelled sentences of one build, by role."""

    train: list[Sample]
    valid: list[Sample]  # model selection (SST dev)
    test: list[Sample]  # the reported figures (SST test)
    extra_eval: dict[str, list[Sample]] = field(default_factory=dict)  # e.g. MOSI valid: reported only

    def all(self) -> list[Sample]:
        out = self.train + self.valid + self.test
        for v in self.extra_eval.values():
            out += v
        return out


def _subset(samples: list[Sample], n: int | None, seed: int, tag: str) -> list[Sample]:
    if n is None or n >= len(samples):
        return samples
    rng = np.random.default_rng(stable_seed("subset", tag, seed))
    return [samples[i] for i in sorted(rng.choice(len(samples), size=n, replace=False))]


def load_corpus(sst_dir: str | Path, mosi_csv: str | Path | None, subset: int | None = None,
                seed: int = 0) -> Corpus:
    """SST train (+ MOSI train transcripts) to train, SST dev to select, SST test to report,
    MOSI valid transcripts as an extra, out-of-domain-style check on real spoken opinions.

    ``subset`` keeps that many training sentences (and a quarter as many of each other part,
    at least 8), drawn at random: a quick end-to-end run."""
    sst_dir = Path(sst_dir)
    train = read_sst(sst_dir / "train.txt", "train")
    valid = read_sst(sst_dir / "dev.txt", "valid")
    test = read_sst(sst_dir / "test.txt", "test")
    mosi_train, mosi_valid = [], []
    if mosi_csv is not None:
        mosi = read_mosi_text(mosi_csv, ("train", "valid"))
        mosi_train = [s for s in mosi if s.split == "train"]
        mosi_valid = [Sample(s.key, s.words, s.score, "test", s.source) for s in mosi if s.split == "valid"]
    if subset:
        other = max(8, subset // 4)
        n_mosi = min(len(mosi_train), subset // 8) if mosi_train else 0
        train = _subset(train, subset - n_mosi, seed, "train")
        mosi_train = _subset(mosi_train, n_mosi, seed, "mosi-train")
        valid, test = _subset(valid, other, seed, "valid"), _subset(test, other, seed, "test")
        mosi_valid = _subset(mosi_valid, other, seed, "mosi-valid") if mosi_valid else []
    extra = {"mosi_valid": mosi_valid} if mosi_valid else {}
    return Corpus(train + mosi_train, valid, test, extra)


@dataclass
class StoreBuild:
    features: Path  # the feature store folder
    labels: Path  # video_id, utterance_id, score, split (+ kind, source, sample)
    extra_labels: dict[str, Path]  # name -> labels table (split "test") of a report-only set
    counts: dict[str, int]
    chunks_written: int
    chunks_reused: int


def _chunks(samples: list[Sample], size: int) -> list[list[Sample]]:
    return [samples[i:i + size] for i in range(0, len(samples), size)]


def _write_labels(path: Path, rows: list[tuple]) -> None:
    """The labels table, with the starter's own columns (kind: sentence | phrase, source: sst |
    mosi, sample: e.g. sst-train-00012) beside the four the trainer reads, so a build can be
    checked sentence by sentence."""
    extra = {name: [str(r[k]) for r in rows] for k, name in enumerate(("kind", "source", "sample"), 4)}
    write_labels(path, [r[:4] for r in rows], extra)


def write_store(
    corpus: Corpus,
    cache: SentenceCache,
    faces: FaceBank,
    out_dir: str | Path,
    phrases: int = 0,
    min_phrase_words: int = 2,
    chunk_size: int = 256,
    progress: Progress | None = None,
) -> StoreBuild:
    """Group the cached sentences into pseudo-videos (one Parquet file per chunk of sentences,
    one utterance per sentence, plus up to ``phrases`` labelled sub-phrases per training SST
    sentence as extra utterances whose rows are the sentence's rows for that span, replayed on
    the clock after the sentences) and write the labels tables. A chunk whose file already records the same inputs is kept as it is."""
    out_dir = Path(out_dir)
    features = out_dir / "features"
    config = cache.config
    schema = feature_schema(config)
    face_id = digest(faces.names, [float(t.times[-1]) for t in faces.tracks], schema.to_dict())
    groups = _groups(corpus)
    rows: list[tuple] = []
    extra_rows: dict[str, list[tuple]] = {name: [] for name in corpus.extra_eval}
    extra_prefix = {f"eval-{name.replace('_', '-')}": name for name in corpus.extra_eval}
    written = reused = 0
    total = sum(len(_chunks(items, chunk_size)) for _, items, _ in groups)
    done = 0
    keep = set()
    for prefix, items, with_phrases in groups:
        for k, chunk in enumerate(_chunks(items, chunk_size)):
            video_id = f"starter-{prefix}-{k:04d}"
            path = features / f"{video_id}.parquet"
            keep.add(path.name)
            n_phrases = phrases if with_phrases else 0
            key = digest("chunk", FEATURES_VERSION, [_key_parts(cache.keys(s)) for s in chunk],
                         [s.score for s in chunk], face_id, n_phrases, min_phrase_words, cache.seed)
            utt_rows = _chunk_labels(chunk, video_id, n_phrases, min_phrase_words, cache.seed)
            if not _is_fresh(path, key):
                table = _chunk_table(chunk, video_id, key, cache, faces, schema, n_phrases, min_phrase_words)
                write_table(path, table)
                written += 1
            else:
                reused += 1
            if prefix in extra_prefix:
                extra_rows[extra_prefix[prefix]] += utt_rows
            else:
                rows += utt_rows
            done += 1
            if progress:
                progress("store", done, total)
    for stale in features.glob("*.parquet"):  # chunks of an earlier, larger build
        if stale.name not in keep:
            stale.unlink()
    labels = out_dir / "labels.parquet"
    _write_labels(labels, rows)
    extra_paths = {}
    for name, r in extra_rows.items():
        extra_paths[name] = out_dir / f"labels_{name}.parquet"
        _write_labels(extra_paths[name], r)
    return StoreBuild(features, labels, extra_paths, _counts(rows, extra_rows), written, reused)


def _groups(corpus: Corpus) -> list[tuple[str, list[Sample], bool]]:
    """(file name prefix, sentences, whether to add phrases) per part of the corpus: training
    sentences by source, then selection, test and the report-only sets."""
    groups: list[tuple[str, list[Sample], bool]] = []
    by_source: dict[str, list[Sample]] = {}
    for s in corpus.train:
        by_source.setdefault(f"train-{s.source}", []).append(s)
    for name, items in by_source.items():
        groups.append((name, items, True))
    groups += [("valid-sst", corpus.valid, False), ("test-sst", corpus.test, False)]
    for name, items in corpus.extra_eval.items():
        groups.append((f"eval-{name.replace('_', '-')}", items, False))
    return groups


def _is_fresh(path: Path, key: str) -> bool:
    """Whether the chunk file was written from the same inputs (an unreadable one is not)."""
    try:
        return path.exists() and read_metadata(path).video.get("feature_key") == key
    except Exception:
        return False


def _counts(rows: list[tuple], extra_rows: dict[str, list[tuple]]) -> dict[str, int]:
    """Utterances per split and kind (e.g. ``train_phrases``), and per report-only set."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[f"{r[3]}_{r[4]}s"] = counts.get(f"{r[3]}_{r[4]}s", 0) + 1
    for name, r in extra_rows.items():
        counts[name] = len(r)
    return counts


def _key_parts(keys: FeatureKeys) -> list[str]:
    return [keys.synth, keys.text, keys.acoustic]


def _phrases_for(sample: Sample, n_phrases: int, min_words: int, seed: int) -> list[Phrase]:
    rng = np.random.default_rng(stable_seed("phrases", sample.key, seed))
    return pick_phrases(sample, n_phrases, min_words, rng)


def _chunk_labels(chunk: list[Sample], video_id: str, n_phrases: int, min_words: int, seed: int) -> list[tuple]:
    rows = [(video_id, j, s.score, s.split, "sentence", s.source, s.key) for j, s in enumerate(chunk)]
    u = len(chunk)
    for s in chunk:
        for p in _phrases_for(s, n_phrases, min_words, seed):
            rows.append((video_id, u, p.score, s.split, "phrase", s.source, s.key))
            u += 1
    return rows


def _chunk_table(chunk: list[Sample], video_id: str, key: str, cache: SentenceCache, faces: FaceBank,
                 schema: FeatureSchema, n_phrases: int, min_words: int) -> pa.Table:
    """One pseudo-video's Parquet table: its sentences, then their sampled sub-phrases."""
    utterances: list[Utterance] = []
    feats: dict[str, list[WordFeatures]] = {m: [] for m in MODALITIES}
    sentence_rows = []  # per sentence: (words, {m: WordFeatures})
    clock = 0.0
    sources = []
    for j, sample in enumerate(chunk):
        loaded = cache.load(sample)
        if loaded is None:
            raise ModelError(f"features of {sample.key} are not in the cache (run fill_cache first)")
        words, text, acoustic, duration = loaded
        rng = np.random.default_rng(stable_seed("face", sample.key, cache.seed))
        vision, face_name, offset = faces.window(words, duration, rng)
        sources.append([face_name, round(offset, 3)])
        # Sentences follow each other on the pseudo-video's clock, like utterances of a video.
        timed = tuple(Word(w.text, round(w.start + clock, 4), round(w.end + clock, 4), w.timing) for w in words)
        clock += duration
        utterances.append(Utterance(j, timed))
        per = {"text": text, "audio": acoustic, "vision": vision}
        for m in MODALITIES:
            feats[m].append(per[m])
        sentence_rows.append((timed, per))
    u = len(chunk)
    for sample, (timed, per) in zip(chunk, sentence_rows):
        for p in _phrases_for(sample, n_phrases, min_words, cache.seed):
            replayed = _replay(timed[p.start:p.stop], clock)
            clock = max(w.end for w in replayed)
            utterances.append(Utterance(u, replayed))
            for m in MODALITIES:
                feats[m].append(WordFeatures(per[m].values[p.start:p.stop], per[m].imputed[p.start:p.stop]))
            u += 1
    merged = {m: WordFeatures(np.concatenate([f.values for f in feats[m]]),
                              np.concatenate([f.imputed for f in feats[m]])) for m in MODALITIES}
    n_words = sum(len(x.words) for x in utterances)
    meta = StoreMetadata(
        schema=schema,
        video={
            "video_id": video_id,
            "path": f"starter:{video_id}",
            "sha256": key,
            "feature_key": key,
            "duration_s": round(clock, 3),
            "transcript": None,
            "synthetic": "labelled text spoken by espeak-ng, faces from windows of real recordings",
            "sentences": [s.key for s in chunk],
            "face_windows": sources,
        },
        config=cache.config.to_dict(),
        summary={
            "words": n_words,
            "utterances": len(utterances),
            "sentences": len(chunk),
            "phrases": len(utterances) - len(chunk),
            "words_imputed": {m: int(merged[m].imputed.sum()) for m in MODALITIES},
        },
    )
    return feature_table(video_id, utterances, merged, meta)


def _replay(words: Sequence[Word], clock: float) -> tuple[Word, ...]:
    """A phrase's words said again from ``clock`` on: the store keeps a video's word starts in
    time order, so a phrase after the sentences cannot keep its sentence's times."""
    shift = clock - words[0].start
    return tuple(Word(w.text, round(w.start + shift, 4), round(w.end + shift, 4), w.timing) for w in words)
