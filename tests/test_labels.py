"""The one labels table: written and read back with one set of types, in CSV and Parquet, with a
producer's own extra columns; every malformed table is one error naming the file."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.errors import InputError
from mmlatch.labels import LABEL_SCHEMA, read_labels, write_labels

ROWS = [("clip", 0, 1.5, "train"), ("clip", 1, -2.25, "valid"), ("名前", 0, 0.0, "test")]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_then_read_gives_the_same_rows(tmp_path, suffix):
    path = write_labels(tmp_path / f"labels{suffix}", ROWS, {"source": ["a", "b", "c"]})
    labels = read_labels(path)
    assert labels.video_id == ["clip", "clip", "名前"] and labels.split == ["train", "valid", "test"]
    np.testing.assert_array_equal(labels.utterance_id, [0, 1, 0])
    np.testing.assert_allclose(labels.score, [1.5, -2.25, 0.0])
    if suffix == ".parquet":
        schema = pq.read_schema(path)
        assert [schema.field(f.name).type for f in LABEL_SCHEMA] == [f.type for f in LABEL_SCHEMA]
        assert schema.names == [*LABEL_SCHEMA.names, "source"]
    else:
        assert path.read_text().splitlines()[:2] == ["video_id,utterance_id,score,split,source", "clip,0,1.5,train,a"]


def test_malformed_tables_are_one_error_naming_the_file(tmp_path):
    header = "video_id,utterance_id,score,split"
    cases = {
        "video_id,utterance_id,score\nx,0,1.0\n": "lacks column.*split",
        f"{header}\nv,0,4.5,train\n": "outside \\[-3, 3\\]",
        f"{header}\nv,0,1,holdout\n": "unknown split 'holdout'",
        f"{header}\nv,0,1,train\nv,0,2,test\n": "labelled twice",
        f"{header}\nv,0,,train\n": "missing or not finite",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(InputError, match=f"{bad}: .*{message}"):
            read_labels(bad)
    with pytest.raises(InputError, match="labels file not found"):
        read_labels(tmp_path / "none.csv")
    # dev, val and validation all mean the validation split
    (tmp_path / "dev.csv").write_text(f"{header}\nv,0,1,dev\nv,1,1,VAL\nv,2,1,validation\n")
    assert read_labels(tmp_path / "dev.csv").split == ["valid"] * 3
