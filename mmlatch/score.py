"""Score feature files with a trained checkpoint: per-utterance and per-video sentiment.

Scoring goes through the training data path (``UtteranceData`` -> stored normalisation ->
``DeviceData.collate`` -> ``inference.predict``), so a video scored on its own gets exactly the
numbers it would get inside a training or evaluation batch.

Scores are clipped to [-3, 3]. Labels: |score| < 0.5 is "neutral", score >= 0.5 "positive",
score <= -0.5 "negative" (half a point is the smallest step annotators' averages resolve).
A video's score is the mean of its utterance scores weighted by utterance duration.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import InputError, ModelError
from pipeline.schema import MODALITIES
from pipeline.report import NEUTRAL_BAND
from pipeline.store import atomic_write

from mmlatch.checkpoint import LoadedCheckpoint, load_checkpoint
from mmlatch.data import UtteranceData, read_feature_file
from mmlatch.inference import predict

TOP_DAMPED = 5


def sentiment_label(score: float) -> str:
    if score >= NEUTRAL_BAND:
        return "positive"
    if score <= -NEUTRAL_BAND:
        return "negative"
    return "neutral"


@dataclass
class ScoreResult:
    utterances: list[dict[str, Any]]  # video_id, utterance_id, start, end, text, n_words, score, label (+ masks)
    videos: list[dict[str, Any]]  # video_id, score, label, n_utterances, duration
    checkpoint: dict[str, Any] = field(default_factory=dict)  # where the model came from

    def write(self, path: str | Path, level: str = "utterances") -> Path:
        """Write the utterance (or video) table to ``.parquet`` or ``.csv``, atomically."""
        rows = {"utterances": self.utterances, "videos": self.videos}.get(level)
        if rows is None:
            raise ValueError(f"level must be 'utterances' or 'videos', not {level!r}")
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            table = pa.Table.from_pylist(rows) if rows else pa.table({})
            atomic_write(path, lambda tmp: pq.write_table(table, tmp))
        elif suffix == ".csv":
            columns = list(rows[0]) if rows else []

            def write_csv(tmp):
                with open(tmp, "w", newline="", encoding="utf-8") as fh:
                    w = csv.writer(fh)
                    w.writerow(columns)
                    for r in rows:
                        w.writerow([_csv_cell(r[c]) for c in columns])

            atomic_write(path, write_csv)
        else:
            raise InputError("output must end in .parquet or .csv", str(path))
        return path


def _csv_cell(value):
    if isinstance(value, (list, tuple)):
        return " ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return value


def mask_summary(gates: dict[str, np.ndarray], names: dict[str, list[str]]) -> dict[str, Any]:
    """What the top-down masks did to one utterance: mean gate per modality, per word of text,
    and the most damped input features (lowest mean gate over the utterance's words)."""
    out: dict[str, Any] = {}
    for m in MODALITIES:
        g = gates[m]  # (len, d_m)
        out[f"mask_{m}"] = float(g.mean())
    out["mask_text_per_word"] = [float(v) for v in gates["text"].mean(axis=1)]
    for m in MODALITIES:
        per_feature = gates[m].mean(axis=0)
        order = np.argsort(per_feature, kind="stable")[:TOP_DAMPED]
        out[f"damped_{m}"] = [names[m][i] for i in order]
    return out


def score_files(
    checkpoint: Path | LoadedCheckpoint,
    feature_files: Sequence[Path],
    batch_size: int = 256,
    device=None,
    with_masks: bool = False,
) -> ScoreResult:
    ckpt = checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_checkpoint(checkpoint, device=device)
    if not feature_files:
        raise InputError("no feature files to score")
    if with_masks and not ckpt.config.feedback:
        raise ModelError("this checkpoint has no top-down masks (trained without feedback)", str(ckpt.path))
    videos = []
    for path in feature_files:
        video = read_feature_file(path)
        problems = ckpt.schema.differences(video.meta.schema)
        if problems:
            raise ModelError(f"features do not fit the model {ckpt.path}: {'; '.join(problems)}", str(path))
        videos.append(video)
    data = UtteranceData.from_videos(videos)
    preds = predict(ckpt.model, data.normalised(ckpt.normalisation).on(ckpt.device),
                    batch_size=batch_size, with_masks=with_masks)
    scores = np.clip(preds.scores, -3.0, 3.0)
    names = {
        m: list(ckpt.schema.modalities[m].names) or [f"{m}_{i}" for i in range(ckpt.schema.modalities[m].dim)]
        for m in MODALITIES
    }

    utterances = []
    for k in range(len(data)):
        row = {
            "video_id": data.video_ids[k],
            "utterance_id": int(data.utterance_ids[k]),
            "start": float(data.starts[k]),
            "end": float(data.ends[k]),
            "text": " ".join(data.words[k]),
            "n_words": int(data.lengths[k]),
            "score": float(scores[k]),
            "label": sentiment_label(float(scores[k])),
        }
        if preds.masks is not None:
            row.update(mask_summary(preds.masks[k], names))
        utterances.append(row)
    about = {"path": str(ckpt.path), "created": ckpt.metadata.get("created"), "feedback": ckpt.config.feedback}
    return ScoreResult(utterances, video_rows(data, scores), about)


def video_rows(data: UtteranceData, scores: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    order: dict[str, list[int]] = {}
    for k, v in enumerate(data.video_ids):
        order.setdefault(v, []).append(k)
    for video_id, idx in order.items():
        durations = np.maximum(data.ends[idx] - data.starts[idx], 0.0)
        weights = durations if durations.sum() > 0 else np.ones(len(idx))
        score = float(np.average(scores[idx], weights=weights))
        meta = (data.video_meta or {}).get(video_id, {})
        duration = meta.get("duration_s") or float(data.ends[idx].max())
        rows.append({
            "video_id": video_id,
            "score": score,
            "label": sentiment_label(score),
            "n_utterances": len(idx),
            "duration": float(duration),
        })
    return rows
