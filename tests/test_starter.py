"""The starter checkpoint: SST parsing and label mapping, espeak-ng word timings, the cached
build of a real feature store, the training script end to end, and the shipped checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.config import ExtractConfig
from core.errors import InputError
from core.records import FrameFeatures
from pipeline.extract import feature_schema
from scripts.starter.cache import SentenceCache, fill_cache
from scripts.starter.faces import FaceBank, _pingpong
from scripts.starter.speech import speak, voice_for
from scripts.starter.sst import LABEL_MAPPING, SST_SCORE, detokenize, parse_tree, read_mosi_text, read_sst, sst_sample
from scripts.starter.store import load_corpus, write_store
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[1]
SST_DEV = DATA / "sst" / "dev.txt"


def dev_line(n: int) -> str:
    return SST_DEV.read_text(encoding="utf-8").splitlines()[n - 1]


def test_tree_leaves_and_root_label_of_real_sst_line():
    leaves, spans = parse_tree(dev_line(1))
    assert leaves[:3] == ["It", "'s", "a"] and leaves[-1] == "."
    assert spans[-1] == (0, len(leaves), 3)  # root last: the sentence's own label
    assert all(0 <= a < b <= len(leaves) for a, b, _ in spans)


def test_detokenize_joins_clitics_and_punctuation_like_a_transcript():
    words, owner = detokenize(["And", "if", "you", "'re", "not", "-LRB-", "really", "-RRB-", "moved", ",", "ca", "n't", "."])
    assert words == ["And", "if", "you're", "not", "(really)", "moved,", "can't."]
    assert owner == [0, 1, 2, 2, 3, 4, 4, 4, 5, 5, 6, 6, 6]
    with pytest.raises(ValueError):
        detokenize([",", "."])


def test_sst_sample_maps_classes_and_phrase_spans():
    s = sst_sample(dev_line(2), "k", "valid")  # "No one goes unindicted here, which is probably for the best."
    assert s.words[3:5] == ("unindicted", "here,") and s.score == 0.0
    spans = {(p.start, p.stop): p.score for p in s.phrases}
    # (1 (2 (2 unindicted) (2 here)) (2 ,)): the wider node (with the comma) labels the span
    assert spans[(3, 5)] == -1.0
    assert spans[(0, 1)] == -1.0 and spans[(0, 2)] == 0.0  # (2 (1 No) (2 one))
    assert (0, len(s.words)) not in spans  # the sentence itself is not a phrase
    assert SST_SCORE == {0: -2.0, 1: -1.0, 2: 0.0, 3: 1.0, 4: 2.0} and "c - 2" in LABEL_MAPPING


def test_real_sst_and_mosi_files_read_completely(tmp_path):
    dev = read_sst(SST_DEV, "valid")
    assert len(dev) == 1101 and {s.score for s in dev} == {-2.0, -1.0, 0.0, 1.0, 2.0}
    mosi = read_mosi_text(DATA / "mosi" / "mosi_text_trainval.csv", ("train", "valid"))
    assert {s.split for s in mosi} == {"train", "valid"} and all(-3 <= s.score <= 3 for s in mosi)
    bad = tmp_path / "bad.txt"
    bad.write_text("(3 (2 unbalanced)\n")
    with pytest.raises(InputError, match="line 1"):
        read_sst(bad, "train")


def test_espeak_word_timings_follow_the_speech():
    words = ("It's", "a", "lovely", "film,", "with", "lovely", "performances.")
    speech = speak(words, voice_for("timing-test"))
    x, sr = speech.audio.floats[:], speech.audio.sample_rate
    starts = np.array([w.start for w in speech.words])
    ends = np.array([w.end for w in speech.words])
    assert [w.text for w in speech.words] == list(words)
    assert np.all(np.diff(starts) > 0) and np.all(ends > starts) and ends[-1] <= speech.audio.duration
    assert sum(w.timing == "aligned" for w in speech.words) >= len(words) - 2

    def rms(a, b):
        seg = x[int(a * sr):int(b * sr)]
        return float(np.sqrt(np.mean(seg**2))) if len(seg) else 0.0

    # Speech is inside the words: the lead-in silence is far quieter than any word.
    lead = rms(0.0, starts[0] - 0.02)
    assert all(rms(w.start, w.end) > 10 * lead for w in speech.words if w.end - w.start > 0.05)


def test_pingpong_covers_a_sentence_longer_than_the_video():
    times = np.arange(10) * 0.1 + 0.5
    values = np.arange(10, dtype=np.float32)[:, None]
    track = FrameFeatures(times, values, np.ones(10, bool), ["x"])
    long = _pingpong(track, 3.5)
    assert long.times[0] == pytest.approx(0.5) and long.times[-1] - long.times[0] >= 3.5
    assert np.all(np.diff(long.times) > 0)
    # forwards then backwards: no jump cut at the turn
    assert long.values[9, 0] == 9 and long.values[10, 0] == 9 and long.values[11, 0] == 8
    assert _pingpong(track, 0.5) is track


@pytest.mark.slow
def test_training_script_end_to_end_on_a_subset(tmp_path):
    """scripts/train_starter.py on 40 sentences and one short face clip: a real store with the
    schema of `mmpipe extract`, a checkpoint that loads with its schema check, described in its
    JSON; a rerun reuses every cached sentence and chunk."""
    import importlib.util

    from mmlatch.checkpoint import load_checkpoint
    from pipeline.store import read_metadata, store_files

    spec = importlib.util.spec_from_file_location("train_starter", ROOT / "scripts" / "train_starter.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    face = DATA / "videos" / "single_face.mp4"
    out, cache = tmp_path / "ck", tmp_path / "cache"
    rc = script.main(["--subset", "40", "--epochs", "2", "--out", str(out), "--cache", str(cache),
                      "--videos", str(face), "--workers", "1", "--phrases", "2", "--quiet"])
    assert rc == 0

    config = ExtractConfig()
    expected = feature_schema(config)
    files = store_files(cache / "build" / "features")
    assert len(files) >= 4
    for f in files:
        meta = read_metadata(f)
        assert meta.schema.differences(expected) == [] and meta.schema.config_hash == config.hash()

    ck = load_checkpoint(out, expect_schema=expected)
    training, metrics = ck.metadata["training"], ck.metadata["metrics"]
    assert training["label_mapping"] == LABEL_MAPPING and "words only" in training["limit"]
    assert training["data"]["sst_train_sentences"] + training["data"]["mosi_train_transcripts"] == 40
    assert training["data"]["utterances"]["train_phrases"] > 0
    for part in ("sst_test", "sst_dev", "mosi_valid"):
        assert 0.0 <= metrics[part]["binary_accuracy_nonneutral"] <= 1.0 and metrics[part]["n"] >= 8
    assert np.isfinite(metrics["sst_test"]["mae"])

    # Everything is cached: the same corpus needs no extraction and rewrites no chunk.
    corpus = load_corpus(DATA / "sst", DATA / "mosi" / "mosi_text_trainval.csv", 40, 0)
    sentence_cache = SentenceCache(cache, config)
    assert fill_cache(sentence_cache, corpus.all())["computed"] == 0
    faces = FaceBank.build([face], config, cache)
    build = write_store(corpus, sentence_cache, faces, cache / "build", phrases=2, min_phrase_words=3)
    assert build.chunks_written == 0 and build.chunks_reused == len(files)


def test_training_script_rejects_a_missing_face_video(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_starter", ROOT / "scripts" / "train_starter.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rc = script.main(["--subset", "8", "--out", str(tmp_path / "ck"), "--cache", str(tmp_path / "c"),
                      "--videos", str(tmp_path / "nope.mp4"), "--quiet"])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.mp4" in err[0] and "not found" in err[0]


def test_shipped_starter_checkpoint_loads_and_states_what_it_knows():
    from mmlatch.checkpoint import load_checkpoint

    folder = ROOT / "mmlatch" / "starter"
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 15 * 2**20
    ck = load_checkpoint(folder, expect_schema=feature_schema(ExtractConfig()))
    meta = json.loads((folder / "model.json").read_text())
    assert meta["training"]["label_mapping"] == LABEL_MAPPING
    assert "mmpipe train" in meta["training"]["limit"]
    assert meta["metrics"]["sst_test"]["n"] == 2210
    assert meta["metrics"]["sst_test"]["binary_accuracy_nonneutral"] >= 0.80
    assert ck.normalisation is not None
