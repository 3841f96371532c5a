"""train() end to end on a small real Parquet store, then evaluate, score and the CLI commands."""

from __future__ import annotations

import argparse
import shutil

import numpy as np
import pytest

from core.errors import InputError, MmpipeError, ModelError
from flows.cli.model import register
from mmlatch.checkpoint import load_checkpoint
from mmlatch.data import load_dataset
from mmlatch.evaluate import evaluate
from mmlatch.score import score_files, sentiment_label
from mmlatch.train import TrainConfig, train
from pipeline.store import store_files
from tests.synthetic import write_synthetic_store

DIMS = {"text": 10, "audio": 6, "vision": 4}
FAST = dict(epochs=3, hidden=8, batch_size=8, quiet=True, device="cpu")


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    features, labels = write_synthetic_store(root, n_videos=10, utterances_per_video=4, dims=DIMS, mean_words=6)
    return root, features, labels


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    _, features, labels = store
    out = tmp_path_factory.mktemp("ckpt") / "model"
    logs = []
    report = train(features, labels, out, TrainConfig(seeds=(0, 1), normalise=True, **FAST), progress=logs.append)
    return report, logs


def test_train_end_to_end(trained, store):
    report, logs = trained
    assert len(report.per_seed) == 2 and report.best_seed in (0, 1)
    assert len(logs) == 6 and logs[0].line().startswith("seed 0  epoch   1/3")
    assert set(report.summary) == {"valid", "test"}
    mae_mean, mae_sd = report.summary["test"]["mae"]
    assert mae_mean == pytest.approx(np.mean([r.test["mae"] for r in report.per_seed]))
    assert mae_sd == pytest.approx(np.std([r.test["mae"] for r in report.per_seed], ddof=1))
    table = report.table()
    assert "2 seeds" in table and "Acc2 (non-zero)" in table and "±" in table
    ckpt = load_checkpoint(report.checkpoint)
    assert ckpt.config.hidden == 8 and ckpt.config.feedback and ckpt.normalisation is not None
    assert ckpt.metadata["training"]["seed"] == report.best_seed
    assert ckpt.metadata["training"]["utterances"] == report.counts
    best = next(r for r in report.per_seed if r.seed == report.best_seed)
    assert best.valid["mae"] == min(r.valid["mae"] for r in report.per_seed)
    # the checkpoint reproduces the reported test metrics through the evaluate path
    _, features, labels = store
    metrics = evaluate(report.checkpoint, features, labels, "test", device="cpu")
    assert metrics["mae"] == pytest.approx(best.test["mae"], rel=1e-5)
    assert metrics["n"] == report.counts["test"]


def test_training_is_deterministic_on_cpu(store, tmp_path):
    _, features, labels = store
    a = train(features, labels, tmp_path / "a", TrainConfig(**{**FAST, "epochs": 2}))
    b = train(features, labels, tmp_path / "b", TrainConfig(**{**FAST, "epochs": 2}))
    assert a.per_seed[0].valid == b.per_seed[0].valid and a.per_seed[0].test == b.per_seed[0].test


def test_scoring_a_video_alone_equals_scoring_it_in_a_batch(trained, store, tmp_path):
    report, _ = trained
    _, features, _ = store
    files = store_files(features)
    ckpt = load_checkpoint(report.checkpoint, device="cpu")
    together = score_files(ckpt, files, batch_size=7)
    alone = [row for f in files for row in score_files(ckpt, [f]).utterances]
    assert [r["utterance_id"] for r in together.utterances] == [r["utterance_id"] for r in alone]
    np.testing.assert_allclose([r["score"] for r in together.utterances], [r["score"] for r in alone],
                               rtol=1e-5, atol=1e-6)
    row = together.utterances[0]
    assert set(row) >= {"video_id", "utterance_id", "start", "end", "text", "n_words", "score", "label"}
    assert -3 <= row["score"] <= 3 and row["label"] == sentiment_label(row["score"])
    v = together.videos[0]
    mine = [r for r in together.utterances if r["video_id"] == v["video_id"]]
    w = np.array([r["end"] - r["start"] for r in mine])
    assert v["score"] == pytest.approx(np.average([r["score"] for r in mine], weights=w))
    assert v["n_utterances"] == len(mine) and v["duration"] > 0
    # scores are what the evaluate path computes (same normalisation, padding and batching)
    labelled = load_dataset(store[1], store[2], require=())
    by_key = {(r["video_id"], r["utterance_id"]): r["score"] for r in together.utterances}
    test = labelled.split_indices("test")
    mae = np.mean([abs(by_key[(labelled.video_ids[k], int(labelled.utterance_ids[k]))] - labelled.labels[k]) for k in test])
    best = next(r for r in report.per_seed if r.seed == report.best_seed)
    assert mae == pytest.approx(best.test["mae"], rel=1e-4)

    masked = score_files(ckpt, files[:1], with_masks=True)
    r = masked.utterances[0]
    assert 0 < r["mask_text"] < 1 and len(r["mask_text_per_word"]) == r["n_words"]
    assert len(r["damped_audio"]) == 5 and all(n.startswith("audio_") for n in r["damped_audio"])
    masked.write(tmp_path / "u.parquet")
    together.write(tmp_path / "v.csv", level="videos")
    import pyarrow.parquet as pq
    assert pq.read_table(tmp_path / "u.parquet").num_rows == len(masked.utterances)
    assert (tmp_path / "v.csv").read_text().splitlines()[0] == "video_id,score,label,n_utterances,duration"
    with pytest.raises(InputError, match=".parquet or .csv"):
        together.write(tmp_path / "x.txt")


def test_scoring_rejects_features_of_another_schema(trained, tmp_path):
    report, _ = trained
    other, _ = write_synthetic_store(tmp_path, n_videos=3, utterances_per_video=1,
                                     dims={**DIMS, "vision": 5}, mean_words=3)
    with pytest.raises(ModelError, match="vision has dim 5, model expects 4"):
        score_files(report.checkpoint, store_files(other))


def test_store_errors_and_a_missing_split(store, tmp_path):
    root, features, labels = store
    mixed = tmp_path / "mixed"
    shutil.copytree(features, mixed)
    odd, _ = write_synthetic_store(tmp_path / "odd", n_videos=3, utterances_per_video=1,
                                   dims={**DIMS, "audio": 3}, mean_words=3)
    shutil.copy(store_files(odd)[0], mixed / "zzz.parquet")
    with pytest.raises(InputError, match="zzz.parquet: feature schema differs.*audio has dim 3"):
        load_dataset(mixed, labels)
    (mixed / "zzz.parquet").write_bytes(b"PAR1 broken")
    with pytest.raises(InputError, match="zzz.parquet: unreadable feature file"):
        load_dataset(mixed, labels)
    rows = labels.read_text().splitlines()
    only_train = tmp_path / "train_only.csv"
    only_train.write_text("\n".join(r for r in rows if not r.endswith(",valid")))
    with pytest.raises(InputError, match="'valid' split"):
        train(features, only_train, tmp_path / "never", TrainConfig(**FAST))


def test_cli_commands(store, tmp_path, capsys):
    _, features, labels = store
    parser = argparse.ArgumentParser(prog="mmpipe")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", "--features", str(features), "--labels", str(labels), "--out", str(tmp_path / "m"),
                              "--epochs", "1", "--hidden", "4", "--no-feedback", "--device", "cpu", "--quiet"])
    assert args.func(args) == 0
    assert "MAE" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "m").config.feedback is False
    args = parser.parse_args(["evaluate", "--checkpoint", str(tmp_path / "m"), "--features", str(features),
                              "--labels", str(labels), "--split", "valid", "--device", "cpu"])
    assert args.func(args) == 0
    assert "valid (n=" in capsys.readouterr().out
    args = parser.parse_args(["import-cmu", "--csd", str(tmp_path), "--out", str(tmp_path / "s"),
                              "--labels-out", str(tmp_path / "l.csv")])
    with pytest.raises(MmpipeError, match="folds"):
        args.func(args)
