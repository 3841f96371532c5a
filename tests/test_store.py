"""The Parquet feature store: round trip, readability without mmpipe, atomic writes, refusals."""

from __future__ import annotations

import json
import os
import stat

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.config import ExtractConfig
from core.errors import OutputError
from core.records import Utterance, Word, WordFaces, WordFeatures
from pipeline.schema import (
    FACE_COLUMNS,
    METADATA_KEY,
    MODALITIES,
    SCHEMA_VERSION,
    FeatureSchema,
    ModalitySpec,
    StoreMetadata,
    arrow_schema,
)
from pipeline.store import atomic_write, feature_table, read_metadata, read_video, store_files, write_table

DIMS = {"text": 4, "audio": 3, "vision": 2}

# The real JFK sentence (../shared/data/speech/jfk.txt) cut into two utterances of unequal length,
# so padding is exercised.
UTTERANCE_WORDS = [
    ["And", "so,", "my", "fellow", "Americans,"],
    ["ask", "not", "what", "your", "country", "can", "do", "for", "you,"],
]


def _schema(text_extractor: str = "hf:all-MiniLM-L6-v2", text_dim: int = DIMS["text"], version: str = "1") -> FeatureSchema:
    return FeatureSchema(
        modalities={
            "text": ModalitySpec(text_extractor, version, text_dim, tuple(f"text_{i}" for i in range(text_dim))),
            "audio": ModalitySpec("librosa-acoustic", "1", DIMS["audio"], ("f0", "rms", "mfcc_0")),
            "vision": ModalitySpec("mediapipe-face", "1", DIMS["vision"]),
        },
        config_hash=ExtractConfig().hash(),
    )


def _utterances() -> list[Utterance]:
    out, t = [], 0.25
    for u, words in enumerate(UTTERANCE_WORDS):
        ws = []
        for i, text in enumerate(words):
            ws.append(Word(text, t, t + 0.3, timing="aligned" if i % 3 else "interpolated", confidence=0.9))
            t += 0.35
        out.append(Utterance(u, tuple(ws)))
        t += 1.0
    return out


def _features(n: int, seed: int = 0) -> dict[str, WordFeatures]:
    rng = np.random.default_rng(seed)
    return {
        m: WordFeatures(rng.standard_normal((n, DIMS[m])).astype(np.float32), rng.random(n) < 0.3)
        for m in MODALITIES
    }


def _meta(schema: FeatureSchema | None = None) -> StoreMetadata:
    config = ExtractConfig()
    return StoreMetadata(
        schema=schema or _schema(),
        video={"video_id": "jfk", "path": "speech/jfk.flac", "sha256": "0" * 64, "duration_s": 11.0},
        config=config.to_dict(),
        summary={"words": 14, "utterances": 2},
    )


@pytest.fixture
def stored(tmp_path):
    utterances = _utterances()
    n = sum(len(u.words) for u in utterances)
    features = _features(n)
    path = tmp_path / "store" / "jfk.parquet"
    write_table(path, feature_table("jfk", utterances, features, _meta()))
    return path, utterances, features


def test_round_trip_gives_padded_arrays_equal_to_the_inputs(stored):
    path, utterances, features = stored
    vf = read_video(path)
    lengths = [len(u.words) for u in utterances]
    assert vf.video_id == "jfk"
    assert vf.utterance_ids.tolist() == [0, 1]
    assert vf.lengths.tolist() == lengths
    assert vf.words == UTTERANCE_WORDS
    offsets = np.cumsum([0] + lengths)
    for m in MODALITIES:
        assert vf.arrays[m].shape == (2, max(lengths), DIMS[m]) and vf.arrays[m].dtype == np.float32
        assert vf.imputed[m].shape == (2, max(lengths))
        for k, n in enumerate(lengths):
            np.testing.assert_array_equal(vf.arrays[m][k, :n], features[m].values[offsets[k] : offsets[k + 1]])
            np.testing.assert_array_equal(vf.imputed[m][k, :n], features[m].imputed[offsets[k] : offsets[k + 1]])
            assert not vf.arrays[m][k, n:].any() and not vf.imputed[m][k, n:].any()  # zero padding
    for k, u in enumerate(utterances):
        np.testing.assert_array_equal(vf.starts[k], [w.start for w in u.words])
        np.testing.assert_array_equal(vf.ends[k], [w.end for w in u.words])
    assert vf.utterance_spans == [(u.start, u.end) for u in utterances]

    meta = vf.meta
    assert meta.schema == _schema()
    assert meta.schema.config_hash == ExtractConfig().hash()
    assert meta.schema_version == SCHEMA_VERSION
    assert meta.video["sha256"] == "0" * 64 and meta.video["duration_s"] == 11.0
    assert ExtractConfig.from_dict(meta.config).hash() == ExtractConfig().hash()
    assert meta.summary == {"words": 14, "utterances": 2}
    assert read_metadata(path) == meta
    assert store_files(path.parent) == [path]


def test_face_record_round_trips_and_is_null_without_one(stored, tmp_path):
    path, utterances, features = stored
    assert read_video(path).face_tracks is None  # no record given: null columns
    assert pq.read_table(path, columns=["face_track"]).column(0).null_count == 14
    n = 14
    faces = WordFaces(
        track=np.array([0] * 7 + [1] * 6 + [-1], np.int32), faces=np.full(n, 2, np.int32),
        confidence=np.linspace(0, 1, n).astype(np.float32),
        boxes=np.tile(np.array([0.1, 0.2, 0.4, 0.8], np.float32), (n, 1)),
    )
    other = tmp_path / "faces.parquet"
    write_table(other, feature_table("jfk", utterances, features, _meta(), faces))
    vf = read_video(other)
    split = len(utterances[0].words)
    assert [t.tolist() for t in vf.face_tracks] == [faces.track[:split].tolist(), faces.track[split:].tolist()]
    np.testing.assert_allclose(vf.face_boxes[1][0], [0.1, 0.2, 0.4, 0.8])
    table = pq.read_table(other, columns=list(FACE_COLUMNS))
    assert table.column("faces_in_frame").to_pylist() == [2] * n
    np.testing.assert_allclose(table.column("speaker_confidence").to_numpy(), faces.confidence)
    with pytest.raises(ValueError, match="face choices cover"):
        feature_table("jfk", utterances, features, _meta(), WordFaces(faces.track[:3], faces.faces[:3],
                                                                      faces.confidence[:3], faces.boxes[:3]))


def test_reader_restores_utterance_order_of_rows_written_by_other_tools(stored, tmp_path):
    path, _, _ = stored
    table = pq.read_table(path)
    shuffled = table.take(pa.array(np.random.default_rng(1).permutation(table.num_rows)))
    other = tmp_path / "shuffled.parquet"
    pq.write_table(shuffled, other)
    a, b = read_video(path), read_video(other)
    assert b.words == a.words
    for m in MODALITIES:
        np.testing.assert_array_equal(b.arrays[m], a.arrays[m])
        np.testing.assert_array_equal(b.imputed[m], a.imputed[m])


def test_video_without_words_round_trips(tmp_path):
    features = {m: WordFeatures(np.zeros((0, DIMS[m]), np.float32), np.zeros(0, bool)) for m in MODALITIES}
    path = tmp_path / "silent.parquet"
    write_table(path, feature_table("silent", [], features, _meta()))
    vf = read_video(path)
    assert vf.lengths.tolist() == [] and vf.arrays["text"].shape == (0, 0, DIMS["text"])


def test_pandas_reads_the_file_without_mmpipe(stored):
    path, utterances, features = stored
    df = pd.read_parquet(path)
    assert list(df.columns) == [f.name for f in arrow_schema(_meta())]
    assert len(df) == sum(len(u.words) for u in utterances)
    assert df["word"].tolist() == [w for ws in UTTERANCE_WORDS for w in ws]
    np.testing.assert_array_equal(np.stack(df["text"].to_numpy()), features["text"].values)
    assert df["audio_imputed"].dtype == bool


def test_polars_reads_vectors_as_fixed_size_arrays(stored):
    path, _, features = stored
    df = pl.read_parquet(path)
    assert df.schema["text"] == pl.Array(pl.Float32, DIMS["text"])
    assert df.schema["vision"] == pl.Array(pl.Float32, DIMS["vision"])
    assert df.schema["utterance_id"] == pl.Int32 and df.schema["start"] == pl.Float64
    np.testing.assert_array_equal(df["audio"].to_numpy(), features["audio"].values)


def test_duckdb_queries_the_file_without_mmpipe(stored):
    path, utterances, features = stored
    rows = duckdb.sql(
        f"select utterance_id, count(*) as n, min(start) as t0 from '{path}' group by utterance_id order by 1"
    ).fetchall()
    assert [(u, n) for u, n, _ in rows] == [(u.index, len(u.words)) for u in utterances]
    assert [t0 for _, _, t0 in rows] == pytest.approx([u.start for u in utterances])
    first = duckdb.sql(
        f"select word, text[1], vision from '{path}' where utterance_id = 1 and word_index = 0"
    ).fetchall()[0]
    k = len(utterances[0].words)
    assert first[0] == "ask"
    assert first[1] == pytest.approx(float(features["text"].values[k, 0]))
    assert first[2] == pytest.approx(features["vision"].values[k].tolist())


def test_metadata_json_is_readable_with_plain_pyarrow(stored):
    path, _, _ = stored
    raw = pq.read_schema(path).metadata[b"mmpipe"]
    data = json.loads(raw)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["config_hash"] == ExtractConfig().hash()
    assert data["modalities"]["text"] == {
        "extractor": "hf:all-MiniLM-L6-v2", "version": "1", "dim": 4,
        "names": ["text_0", "text_1", "text_2", "text_3"],
    }
    assert data["video"]["video_id"] == "jfk"
    assert data["config"]["text"]["max_tokens"] == ExtractConfig().text.max_tokens


def test_golden_output_schema():
    """The exact columns and Arrow types documented in pipeline/schema.py, in order."""
    schema = arrow_schema(_meta())
    expected = [
        ("video_id", pa.string()),
        ("utterance_id", pa.int32()),
        ("word_index", pa.int32()),
        ("word", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("timing", pa.string()),
        ("text", pa.list_(pa.float32(), 4)),
        ("audio", pa.list_(pa.float32(), 3)),
        ("vision", pa.list_(pa.float32(), 2)),
        ("text_imputed", pa.bool_()),
        ("audio_imputed", pa.bool_()),
        ("vision_imputed", pa.bool_()),
        ("face_track", pa.int32()),
        ("faces_in_frame", pa.int32()),
        ("speaker_confidence", pa.float32()),
        ("face_box", pa.list_(pa.float32(), 4)),
    ]
    assert [(f.name, f.type) for f in schema] == expected
    # Only the face record may be null (features imported without one).
    assert all(not f.nullable for f in schema if f.name not in FACE_COLUMNS)
    assert all(schema.field(c).nullable for c in FACE_COLUMNS)
    assert set(schema.metadata) == {METADATA_KEY}


def test_file_on_disk_has_the_golden_schema(stored):
    path, _, _ = stored
    on_disk = pq.read_schema(path)
    assert on_disk.remove_metadata().equals(arrow_schema(_meta()).remove_metadata())


# ----------------------------------------------------------------------------- atomic writes


def _half_write_then_fail(tmp: str) -> None:
    with open(tmp, "wb") as fh:
        fh.write(b"PAR1" + b"\0" * 4096)
    raise OSError("disk full (simulated)")


def test_failed_write_keeps_the_older_file_and_leaves_no_temp(stored):
    path, _, _ = stored
    before = path.read_bytes()
    with pytest.raises(OutputError, match=f"{path}: cannot write \\(disk full \\(simulated\\)\\)"):
        atomic_write(path, _half_write_then_fail)
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == [path.name]
    read_video(path)  # still a valid feature file


def test_failed_first_write_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "new.parquet"
    with pytest.raises(OutputError):
        atomic_write(target, _half_write_then_fail)
    assert not target.exists() and os.listdir(target.parent) == []


def test_failed_parquet_write_keeps_the_older_file(stored, monkeypatch):
    """A crash inside pyarrow's writer (after it wrote part of the file) changes nothing."""
    path, utterances, _ = stored
    before = path.read_bytes()
    real_write = pq.write_table

    def crashing_write(table, where, **kwargs):
        real_write(table.slice(0, 3), where, **kwargs)
        raise RuntimeError("writer crashed (simulated)")

    monkeypatch.setattr(pq, "write_table", crashing_write)
    n = sum(len(u.words) for u in utterances)
    with pytest.raises(RuntimeError, match="simulated"):
        write_table(path, feature_table("jfk", utterances, _features(n, seed=7), _meta()))
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == [path.name]


def test_written_files_get_the_usual_permissions(stored):
    path, _, _ = stored
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features_are_refused(bad, tmp_path):
    utterances = _utterances()
    features = _features(sum(len(u.words) for u in utterances))
    features["audio"].values[3, 1] = bad
    with pytest.raises(ValueError, match="audio features contain non-finite"):
        feature_table("jfk", utterances, features, _meta())


def test_wrong_feature_dim_is_refused():
    utterances = _utterances()
    n = sum(len(u.words) for u in utterances)
    features = _features(n)
    features["vision"] = WordFeatures(np.zeros((n, DIMS["vision"] + 1), np.float32), np.zeros(n, bool))
    with pytest.raises(ValueError, match=r"vision features have shape \(14, 3\), expected \(14, 2\)"):
        feature_table("jfk", utterances, features, _meta())


def test_wrong_number_of_word_rows_is_refused():
    utterances = _utterances()
    n = sum(len(u.words) for u in utterances)
    features = _features(n)
    features["text"] = WordFeatures(features["text"].values[:-1], features["text"].imputed[:-1])
    with pytest.raises(ValueError, match="text features have shape"):
        feature_table("jfk", utterances, features, _meta())


def test_file_without_mmpipe_metadata_is_refused(tmp_path):
    path = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), path)
    with pytest.raises(ValueError, match="not an mmpipe feature file"):
        read_video(path)


def test_other_schema_version_is_refused(stored, tmp_path):
    path, _, _ = stored
    table = pq.read_table(path)
    data = json.loads(table.schema.metadata[METADATA_KEY])
    data["schema_version"] = SCHEMA_VERSION + 1
    future = tmp_path / "future.parquet"
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(data).encode()}), future)
    with pytest.raises(ValueError, match=f"schema version {SCHEMA_VERSION + 1}"):
        read_metadata(future)


# ----------------------------------------------------------------------------- FeatureSchema


def test_feature_schema_differences_name_dims_and_extractors():
    model = _schema()
    assert model.differences(_schema()) == []
    assert model.differences(_schema(text_dim=8))[0] == "text has dim 8, model expects 4"
    assert model.differences(_schema(text_extractor="glove:6B-50d")) == [
        "text comes from glove:6B-50d v1, model expects hf:all-MiniLM-L6-v2 v1"
    ]
    both = model.differences(_schema(text_extractor="glove:6B-50d", text_dim=50))
    assert both[:2] == [
        "text has dim 50, model expects 4",
        "text comes from glove:6B-50d v1, model expects hf:all-MiniLM-L6-v2 v1",
    ]
    assert model.differences(_schema(version="2")) == [
        "text comes from hf:all-MiniLM-L6-v2 v2, model expects hf:all-MiniLM-L6-v2 v1"
    ]


def test_feature_schema_reports_renamed_features():
    model = _schema()
    renamed = FeatureSchema(
        modalities={**model.modalities, "text": ModalitySpec("hf:all-MiniLM-L6-v2", "1", 4, ("a", "b", "c", "d"))},
        config_hash=model.config_hash,
    )
    assert model.differences(renamed) == ["text feature names differ from the model's"]


def test_feature_schema_dict_round_trip_and_validation():
    schema = _schema()
    assert FeatureSchema.from_dict(json.loads(json.dumps(schema.to_dict()))) == schema
    partial = schema.to_dict()
    del partial["modalities"]["vision"]
    with pytest.raises(ValueError, match="lacks modalities: vision"):
        FeatureSchema.from_dict(partial)
    with pytest.raises(ValueError, match="3 names for dim 4"):
        ModalitySpec("x", "1", 4, ("a", "b", "c"))
