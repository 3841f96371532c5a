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
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.config import ExtractConfig, cache_dir
from core.errors import InputError, MmpipeError, ModelError
from core.files import MIN_FREE_BYTES, atomic_write, writable_folder
from mmlatch.checkpoint import LoadedCheckpoint, default_checkpoint, load_checkpoint
from mmlatch.data import UtteranceData, read_feature_file
from mmlatch.explain import UtteranceExplanation, explain_files, mask_summary
from mmlatch.inference import predict
from pipeline.backfill import discover_videos
from pipeline.extract import extract_video
from pipeline.names import video_name
from pipeline.schema import MODALITIES
from pipeline.store import read_metadata

# |score| below this is "neutral" (half a point is the smallest step annotators' averages
# resolve); the report's colours use the same band.
NEUTRAL_BAND = 0.5
# progress_for(video) -> a context manager yielding extract_video's progress callback
ProgressFactory = Callable[[Path], Any]



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

    def write_tables(self, out: str | Path) -> tuple[Path, Path]:
        """Utterance scores to ``out``, video scores beside it (``videos_table_path``)."""
        return self.write(out, "utterances"), self.write(videos_table_path(out), "videos")


def videos_table_path(out: str | Path) -> Path:
    """Per-video scores go beside the per-utterance file: scores.csv -> scores.videos.csv."""
    out = Path(out)
    return out.with_name(f"{out.stem}.videos{out.suffix}")


def _csv_cell(value):
    if isinstance(value, (list, tuple)):
        return " ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return value


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


# ------------------------------------------------------------------------------ scoring videos


def default_features_dir() -> Path:
    return cache_dir() / "features"


def expand_inputs(inputs: Sequence[str | Path], exclude: Sequence[Path] = ()) -> list[Path]:
    """Files and folders -> videos. A folder contributes its videos (recursively); anything else
    is passed through as given, so a missing or unreadable file is reported by extraction like
    in ``mmpipe extract``. Duplicates (same resolved path) are dropped."""
    out: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = discover_videos(path, exclude=exclude)
            if not found:
                raise InputError("folder holds no video files", str(path))
        else:
            found = [path]
        for video in found:
            key = video.resolve()
            if key not in seen:
                seen.add(key)
                out.append(video)
    return out


@dataclass
class VideoScore:
    """What one input became: its feature file and warnings, or the one-line failure."""

    video: str
    video_id: str
    features: Path | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    extraction: dict[str, Any] = field(default_factory=dict)  # cached?, stage times (s)


@dataclass
class ScoreRun:
    result: ScoreResult | None  # None when no video could be scored
    videos: list[VideoScore]
    checkpoint: LoadedCheckpoint
    explanations: dict[tuple[str, int], UtteranceExplanation] | None = None
    timings: dict[str, float] = field(default_factory=dict)  # s per phase: load, extract, score, explain

    @property
    def failures(self) -> list[VideoScore]:
        return [v for v in self.videos if v.error]

    @property
    def scored(self) -> list[VideoScore]:
        return [v for v in self.videos if not v.error]

    def utterances_of(self, video_id: str) -> list[dict[str, Any]]:
        rows = [u for u in (self.result.utterances if self.result else []) if u["video_id"] == video_id]
        return sorted(rows, key=lambda u: u["utterance_id"])

    def video_row(self, video_id: str) -> dict[str, Any] | None:
        return next((v for v in (self.result.videos if self.result else []) if v["video_id"] == video_id), None)


def modality_warnings(feature_file: Path) -> list[str]:
    """What the scores could not use, read from the feature file itself (so a cached file
    warns as loudly as a fresh extraction)."""
    table = pq.read_table(feature_file, columns=["vision_imputed", "audio_imputed"])
    out = []
    if len(table) and all(table.column("vision_imputed").to_pylist()):
        out.append("no face found: scored from text and audio only (facial input imputed)")
    if len(table) and all(table.column("audio_imputed").to_pylist()):
        out.append("no usable audio: scored from text and face only (acoustic input imputed)")
    return out


def _extract_one(video: Path, features_dir: Path, config: ExtractConfig,
                 transcript: str | Path | None, progress_for: ProgressFactory | None, force: bool):
    with (progress_for(video) if progress_for else nullcontext(None)) as progress:
        return extract_video(video, features_dir, config, transcript, progress=progress, force=force,
                             by_content=True)


def score_videos(
    videos: Sequence[str | Path],
    checkpoint: str | Path | None = None,
    features_dir: str | Path | None = None,
    config: ExtractConfig | None = None,
    transcript: str | Path | None = None,
    batch_size: int = 256,
    device: str | None = None,
    explain: bool = False,
    progress_for: ProgressFactory | None = None,
    force: bool = False,
    on_failure: Callable[[VideoScore], None] | None = None,
) -> ScoreRun:
    """Extract (cached) and score videos or folders of videos; see the module docstring.

    Raises ``MmpipeError`` only for what stops every video (no checkpoint, a checkpoint that does
    not fit the extracted features, a single input that fails); per-video failures of a batch
    are recorded in ``ScoreRun.videos`` and reported through ``on_failure`` as they happen.
    """
    config = config or ExtractConfig()
    features_dir = writable_folder(features_dir or default_features_dir(), MIN_FREE_BYTES)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    loaded = load_checkpoint(checkpoint if checkpoint is not None else default_checkpoint(), device=device)
    timings["load_checkpoint"] = time.perf_counter() - t0
    inputs = expand_inputs(videos, exclude=[features_dir])
    if transcript is not None and len(inputs) > 1:
        raise InputError("--transcript applies to one video; use sidecar files for several")
    single = len(inputs) == 1

    outcomes: list[VideoScore] = []
    seen_ids: dict[str, str] = {}
    t0 = time.perf_counter()
    for video in inputs:
        outcome = VideoScore(str(video), video_name(video))
        outcomes.append(outcome)
        try:
            # Results are keyed by video id (the file stem): a second video with the same stem
            # would overwrite the first one's cached features and merge with its scores.
            if outcome.video_id in seen_ids:
                raise InputError(
                    f"has the same file name (video id {outcome.video_id!r}) as {seen_ids[outcome.video_id]}; "
                    "score it in a separate run", str(video))
            seen_ids[outcome.video_id] = str(video)
            result = _extract_one(video, features_dir, config, transcript, progress_for, force)
            outcome.features = result.output
            outcome.extraction = {"cached": result.skipped, **{
                k: result.summary[k] for k in ("stages_s", "total_s", "duration_s", "devices") if k in result.summary}}
            problems = loaded.schema.differences(read_metadata(result.output).schema)
            if problems:  # the same for every video of the run: stop now, not after the last one
                raise ModelError(
                    f"features of {video} do not fit this model: {'; '.join(problems)} "
                    "(extract with the settings the model was trained on)", str(loaded.path))
            extraction_warnings = result.warnings or list(result.summary.get("warnings", []))
            outcome.warnings = [w for w in extraction_warnings if not w.startswith("no face found")]
            outcome.warnings += modality_warnings(result.output)
        except ModelError:
            raise
        except Exception as err:
            # In a batch nothing about one video may stop the others; a single video's error
            # goes to the caller as it is (the CLI prints it as one line).
            if single:
                raise
            outcome.error = str(err) if isinstance(err, MmpipeError) else (
                f"{video}: unexpected failure ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")
            outcome.features = None
            if on_failure:
                on_failure(outcome)

    timings["extract"] = time.perf_counter() - t0
    files = [o.features for o in outcomes if not o.error]
    if not files:
        return ScoreRun(None, outcomes, loaded, timings=_rounded(timings))
    t0 = time.perf_counter()
    result = score_files(loaded, files, batch_size=batch_size)
    timings["score"] = time.perf_counter() - t0
    explanations = None
    if explain:
        t0 = time.perf_counter()
        explanations = explain_files(loaded, files, batch_size=batch_size)
        timings["explain"] = time.perf_counter() - t0
    return ScoreRun(result, outcomes, loaded, explanations, _rounded(timings))


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in timings.items()}
