"""CMU importers: SDK .csd sequences (written here in the SDK's HDF5 layout, plus the real
CMU-MOSI labels .csd) and the aligned pickles, into the Parquet store; bench/reproduce.py end to end."""

from __future__ import annotations

import csv
import importlib.util
import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from core.errors import InputError
from mmlatch.cmu import average_over_words, import_csd, import_pickle, read_folds
from mmlatch.data import load_dataset
from mmlatch.labels import read_labels
from pipeline.store import read_metadata, read_video, store_files

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def write_csd(path: Path, root: str, entries: dict[str, tuple[np.ndarray, np.ndarray]], dim_names=None) -> Path:
    """A computational sequence exactly as the SDK deploys it: <root>/data/<video>/{features,
    intervals} and <root>/metadata/<key> as one-element string datasets."""
    with h5py.File(path, "w") as f:
        g = f.create_group(root)
        data = g.create_group("data")
        for vid, (features, intervals) in entries.items():
            e = data.create_group(vid)
            e.create_dataset("features", data=features)
            e.create_dataset("intervals", data=np.asarray(intervals, np.float32))
        meta = g.create_group("metadata")
        strings = {"root name": json.dumps(root), "computational sequence version": "1.0",
                   "dimension names": json.dumps(dim_names or [])}
        for k, v in strings.items():
            meta.create_dataset(k, data=np.array([v.encode()], dtype=object), dtype=h5py.string_dtype())
    return path


def words_entry(words: list[tuple[str, float, float]]):
    feats = np.array([[w.encode()] for w, _, _ in words], dtype="S32")
    return feats, np.array([[s, e] for _, s, e in words])


def frames_entry(rng, start: float, end: float, rate: float, dim: int):
    t = np.arange(start, end, 1.0 / rate)
    return rng.normal(size=(len(t), dim)).astype(np.float32), np.stack([t, t + 1.0 / rate], 1)


def make_csd_set(folder: Path, videos: dict[str, dict], dims=(6, 5, 4), seed=0) -> Path:
    """videos: id -> {"words": [(w, s, e)], "segments": [(s, e, score)]}; frames cover the words."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    words, glove, covarep, facet, labels = {}, {}, {}, {}, {}
    for vid, v in videos.items():
        words[vid] = words_entry(v["words"])
        glove[vid] = (rng.normal(size=(len(v["words"]), dims[0])).astype(np.float32), words[vid][1])
        end = max(e for _, _, e in v["words"]) + 0.5
        covarep[vid] = frames_entry(rng, 0.0, end, 100.0, dims[1])
        facet[vid] = frames_entry(rng, 0.0, end, 30.0, dims[2])
        labels[vid] = (np.array([[s] for *_, s in v["segments"]], np.float32),
                       np.array([[a, b] for a, b, _ in v["segments"]]))
    write_csd(folder / "CMU_TEST_TimestampedWords.csd", "words", words)
    write_csd(folder / "CMU_TEST_TimestampedWordVectors.csd", "glove_vectors", glove)
    write_csd(folder / "CMU_TEST_COVAREP.csd", "COVAREP", covarep, [f"cov{i}" for i in range(dims[1])])
    write_csd(folder / "CMU_TEST_VisualFacet42.csd", "FACET 4.2", facet)
    write_csd(folder / "CMU_TEST_Labels.csd", "All Labels", labels)
    return folder


def synthetic_videos(n: int, rng) -> dict[str, dict]:
    vocab = ["good", "bad", "movie", "really", "not", "great", "plot", "sp"]
    out = {}
    for k in range(n):
        t, words, segments = 0.0, [], []
        for _ in range(3):
            s0 = t
            for _ in range(int(rng.integers(4, 9))):
                w = vocab[int(rng.integers(len(vocab)))]
                words.append((w, round(t, 3), round(t + 0.3, 3)))
                t += 0.35
            segments.append((s0, t, float(np.round(rng.uniform(-3, 3), 2))))
            t += 0.4
        out[f"vid{k:02d}"] = {"words": words, "segments": segments}
    return out


def test_average_over_words_follows_the_sdk_rule():
    frames = np.array([[0.0, 0.1], [0.1, 0.2], [0.2, 0.3], [0.3, 0.4], [0.9, 1.0]])
    feats = np.array([[1.0], [2.0], [4.0], [np.inf], [7.0]])
    words = np.array([[0.05, 0.2], [0.2, 0.2 + 5e-6], [0.5, 0.8], [0.2, 0.4]])
    values, imputed = average_over_words(words, frames, feats)
    assert values[0, 0] == pytest.approx(1.5)  # frames 0 and 1; frame 2 touches only at 0.2
    assert imputed.tolist() == [False, True, True, False]  # overlap below 1e-5 s is no overlap
    assert values[1, 0] == 0 and values[2, 0] == 0  # zero imputation
    assert values[3, 0] == 0  # mean with an inf is non-finite -> 0


def test_import_csd_writes_store_and_labels(tmp_path):
    rng = np.random.default_rng(1)
    videos = synthetic_videos(3, rng)
    videos["vid00"]["words"].append(("late", 99.0, 99.0))  # zero-length word: dropped like the SDK
    folder = make_csd_set(tmp_path / "csd", videos)
    with h5py.File(folder / "CMU_TEST_COVAREP.csd", "a") as f:  # a NaN frame and a video missing elsewhere
        f["COVAREP/data/vid01/features"][0, :] = np.nan
        e = f["COVAREP/data"].create_group("orphan")
        e.create_dataset("features", data=np.zeros((2, 5), np.float32))
        e.create_dataset("intervals", data=np.array([[0, 1], [1, 2]], np.float32))
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps({"train": ["vid00", "vid01"], "dev": ["vid02"]}))
    report = import_csd(folder, tmp_path / "store", tmp_path / "labels.csv", "mosei", folds)

    assert report.videos == 3 and report.skipped["videos missing from some sequence"] == 1
    n_sp = sum(w == "sp" for v in videos.values() for w, _, _ in v["words"])
    assert report.skipped.get("pause tokens (sp)", 0) == n_sp
    files = store_files(tmp_path / "store")
    assert [f.stem for f in files] == ["vid00", "vid01", "vid02"]
    meta = read_metadata(files[0])
    assert meta.schema.dims == {"text": 6, "audio": 5, "vision": 4}
    assert meta.schema.modalities["audio"].names[0] == "cov0"  # SDK "dimension names" kept
    v = read_video(files[1])
    assert np.isfinite(v.arrays["audio"]).all()
    for k, seg in enumerate(videos["vid01"]["segments"]):
        expect = [w for w, s, e in videos["vid01"]["words"] if w != "sp" and s < seg[1] and e > seg[0]]
        assert v.words[k] == expect
    # GloVe rows coincide with the words: the aligned text vector is the word's own vector
    with h5py.File(folder / "CMU_TEST_TimestampedWordVectors.csd") as f:
        raw = f["glove_vectors/data/vid01/features"][()]
    first_real = next(i for i, (w, _, _) in enumerate(videos["vid01"]["words"]) if w != "sp")
    np.testing.assert_allclose(v.arrays["text"][0, 0], raw[first_real], rtol=1e-6)

    labels = read_labels(tmp_path / "labels.csv")
    assert sorted(set(labels.split)) == ["train", "valid"]
    assert len(labels) == 9
    expect = {("vid02", i): s for i, (_, _, s) in enumerate(videos["vid02"]["segments"])}
    got = {(v_, int(u)): float(s) for v_, u, s in zip(labels.video_id, labels.utterance_id, labels.score)}
    for key, s in expect.items():
        assert got[key] == pytest.approx(s, abs=1e-5)


def test_import_csd_needs_folds_and_all_sequences(tmp_path):
    folder = make_csd_set(tmp_path / "csd", synthetic_videos(1, np.random.default_rng(0)))
    with pytest.raises(InputError, match="folds"):
        import_csd(folder, tmp_path / "s", tmp_path / "l.csv")
    (folder / "CMU_TEST_VisualFacet42.csd").unlink()
    with pytest.raises(InputError, match="missing .csd sequence.*vision"):
        import_csd(folder, tmp_path / "s", tmp_path / "l.csv", folds={"vid00": "train"})
    (folder / "CMU_TEST_Facet.csd").write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match="not a readable .csd"):
        import_csd(folder, tmp_path / "s", tmp_path / "l.csv", folds={"vid00": "train"})


def test_real_mosi_labels_csd_segments_real_videos(tmp_path, data_dir):
    """The official CMU_MOSI_Opinion_Labels.csd drives segmentation; labels and folds must match
    mosi_labels.csv (utterance id = segment - 1)."""
    real = data_dir / "mosi" / "CMU_MOSI_Opinion_Labels.csd"
    truth = list(csv.DictReader(open(data_dir / "mosi" / "mosi_labels.csv")))
    picks = ["03bSnISJMiM", "1DmNV9C1hbY"]
    with h5py.File(real) as f:
        segs = {v: f[f"Opinion Segment Labels/data/{v}/intervals"][()] for v in picks}
    rng = np.random.default_rng(0)
    words, glove, cov, fac = {}, {}, {}, {}
    for v, iv in segs.items():
        ws = []
        for s, e in iv:  # three words inside every real segment
            step = (e - s) / 3
            ws += [(f"w{j}", float(s + j * step + 0.01), float(s + (j + 1) * step - 0.01)) for j in range(3)]
        words[v] = words_entry(ws)
        glove[v] = (rng.normal(size=(len(ws), 3)).astype(np.float32), words[v][1])
        cov[v] = frames_entry(rng, 0.0, float(iv[:, 1].max()) + 1, 100.0, 2)
        fac[v] = frames_entry(rng, 0.0, float(iv[:, 1].max()) + 1, 30.0, 2)
    files = {
        "words": write_csd(tmp_path / "w.csd", "words", words),
        "text": write_csd(tmp_path / "g.csd", "glove", glove),
        "audio": write_csd(tmp_path / "c.csd", "covarep", cov),
        "vision": write_csd(tmp_path / "f.csd", "facet", fac),
        "labels": real,
    }
    report = import_csd(files, tmp_path / "store", tmp_path / "labels.parquet", "mosi",
                        data_dir / "mosi" / "mosi_labels.csv")
    assert report.videos == 2
    assert report.skipped["videos missing from some sequence"] == 91
    labels = read_labels(tmp_path / "labels.parquet")
    expect = {(r["video_id"], int(r["segment"]) - 1): (float(r["sentiment"]), r["split"]) for r in truth
              if r["video_id"] in picks}
    got = {(v, int(u)): (float(s), sp) for v, u, s, sp in zip(labels.video_id, labels.utterance_id, labels.score,
                                                               labels.split)}
    assert got.keys() == expect.keys()
    for key, (score, split) in expect.items():
        assert got[key][0] == pytest.approx(score, abs=1e-4) and got[key][1] == split
    data = load_dataset(tmp_path / "store", tmp_path / "labels.parquet", require=())
    assert set(data.lengths.tolist()) == {3}


def test_read_folds_formats(tmp_path):
    py = tmp_path / "cmu_mosei_std_folds.py"
    py.write_text("standard_train_fold=['a', 'b']\nstandard_valid_fold=['c']\nstandard_test_fold=['d']\n"
                  "import os\nos.system('touch PWNED')\n")
    assert read_folds(py) == {"a": "train", "b": "train", "c": "valid", "d": "test"}
    assert not (tmp_path / "PWNED").exists()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": ["a"], "test": ["a"]}))
    with pytest.raises(InputError, match="two splits"):
        read_folds(bad)


def test_import_aligned_pickle(tmp_path):
    rng = np.random.default_rng(0)

    def split(n, ids):
        x = {m: np.zeros((n, 10, d), np.float32) for m, d in (("text", 6), ("audio", 3), ("vision", 2))}
        lengths = rng.integers(1, 11, n)
        for i, L in enumerate(lengths):
            for m in x:
                x[m][i, 10 - L:] = rng.normal(size=(L, x[m].shape[2]))  # left padded, like the SDK tensors
        x["audio"][0, -1, 0] = -np.inf  # COVAREP's infamous -inf
        x["labels"] = rng.uniform(-3, 3, (n, 1, 1)).astype(np.float32)
        if ids is not None:
            x["id"] = np.array(ids, dtype=object)
        return x, lengths

    train, lt = split(4, [["v1", "0.0", "2.0"], ["v1", "2.5", "4.0"], ["v2", "1", "2"], ["v3", "0", "1"]])
    valid, lv = split(2, [["v4", "0", "1"], ["v4", "1", "3"]])
    test, ls = split(1, [["v5", "0", "1"]])
    path = tmp_path / "aligned.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"train": train, "valid": valid, "test": test}, fh)
    report = import_pickle(path, tmp_path / "store", tmp_path / "labels.csv")
    assert report.videos == 5 and report.utterances == 7
    v1 = read_video(tmp_path / "store" / "v1.parquet")
    assert v1.lengths.tolist() == lt[:2].tolist()
    np.testing.assert_allclose(v1.arrays["text"][1, : lt[1]], train["text"][1, 10 - lt[1]:])
    assert v1.starts[1][0] == pytest.approx(2.5) and v1.ends[1][-1] == pytest.approx(4.0)
    assert np.isfinite(v1.arrays["audio"]).all()
    labels = read_labels(tmp_path / "labels.csv")
    assert labels.split.count("valid") == 2 and labels.split.count("test") == 1
    assert float(labels.score[0]) == pytest.approx(float(train["labels"][0, 0, 0]), abs=1e-5)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    evil = tmp_path / "evil.pkl"
    with open(evil, "wb") as fh:
        pickle.dump({"train": {"text": Evil()}}, fh)
    with pytest.raises(InputError, match="refusing to load builtins.print"):
        import_pickle(evil, tmp_path / "s2", tmp_path / "l2.csv")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reproduce_script_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(3)
    videos = synthetic_videos(8, rng)
    folder = make_csd_set(tmp_path / "csd", videos)
    names = sorted(videos)
    (tmp_path / "folds.json").write_text(json.dumps({"train": names[:4], "valid": names[4:6], "test": names[6:]}))
    reproduce = load_script("reproduce")
    rc = reproduce.main(["--csd", str(folder), "--folds", str(tmp_path / "folds.json"), "--work", str(tmp_path / "w"),
                         "--seeds", "2", "--epochs", "2", "--hidden", "8", "--device", "cpu", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "MMLatch (ours)" in out and "late fusion (ours)" in out and "MulT (published)" in out
    assert "51.8" in out and "±" in out and "MMLatch - baseline" in out
    assert (tmp_path / "w" / "MMLatch" / "model.json").is_file()
    assert json.loads((tmp_path / "w" / "late_fusion" / "model.json").read_text())["model_config"]["feedback"] is False
