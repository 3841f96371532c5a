"""``mmpipe score``: videos in, sentiment per utterance and per video out.

The work is a plain library call, ``score_videos``, shared with anything else that scores
videos (the Prefect ``score`` flow, notebooks): extract every video (cached: an unchanged video and
config reuses its Parquet file), load the checkpoint once, then score *all* utterances of all
videos in one batched pass (``mmlatch.score.score_files``; on the GPU when there is one). The
argparse handler only prints.

Failures follow ``mmpipe extract``: a bad file is one line naming it; in a batch the others are
still scored and the exit code says that something failed. A video with no face is scored from
text and audio (its facial input is imputed) with a warning saying so.

``explain_files`` adds what the HTML report shows: each word's contribution by leave-one-word-out
occlusion, and the top-down masks (``mmlatch.score.mask_summary``) with how much each listed
feature was damped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from pipeline.config import ExtractConfig, cache_dir
from pipeline.errors import InputError, MmpipeError, ModelError, OutputError
from pipeline.files import MIN_FREE_BYTES, writable_folder
from pipeline.names import video_name

if TYPE_CHECKING:  # heavy imports (torch) stay out of ``mmpipe --help``
    from mmlatch.checkpoint import LoadedCheckpoint
    from mmlatch.score import ScoreResult
    from pipeline.report import VideoView

STARTER_DIR = Path(__file__).resolve().parent / "starter"
OUTPUT_SUFFIXES = (".parquet", ".csv")
TOP_FEATURES = 5  # most damped features listed per modality in the report

# progress_for(video) -> a context manager yielding extract_video's progress callback
ProgressFactory = Callable[[Path], Any]


# ------------------------------------------------------------------------------------ inputs


def default_checkpoint() -> Path:
    """The starter model installed with the package (``mmlatch/starter/``)."""
    if not (STARTER_DIR / "model.json").is_file() or not (STARTER_DIR / "model.safetensors").is_file():
        raise ModelError(
            "no default model is installed (mmlatch/starter/ has no model.json + model.safetensors); "
            "pass --checkpoint DIR, or train one with `mmpipe train`"
        )
    return STARTER_DIR


def default_features_dir() -> Path:
    return cache_dir() / "features"


def expand_inputs(inputs: Sequence[str | Path], exclude: Sequence[Path] = ()) -> list[Path]:
    """Files and folders -> videos. A folder contributes its videos (recursively); anything else
    is passed through as given, so a missing or unreadable file is reported by extraction like
    in ``mmpipe extract``. Duplicates (same resolved path) are dropped."""
    from pipeline.batch import discover_videos

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


def videos_output_path(out: str | Path) -> Path:
    """Per-video scores go beside the per-utterance file: scores.csv -> scores.videos.csv
    (the same rule as the ``score`` flow)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.videos{out.suffix}")


def check_output_path(out: str | Path | None, suffixes: Sequence[str] = OUTPUT_SUFFIXES,
                      kind: str = "output") -> None:
    """Fail before any extraction when the results could not be written anyway: a wrong suffix,
    a folder where the file should go, or a folder that cannot be written."""
    if out is None:
        return
    out = Path(out)
    if out.suffix.lower() not in suffixes:
        raise InputError(f"{kind} must end in {' or '.join(suffixes)}", str(out))
    if out.is_dir():
        raise OutputError("is a folder, not a file", str(out))
    writable_folder(out.parent)


# ---------------------------------------------------------------------------- explanations


@dataclass
class UtteranceExplanation:
    contributions: list[float | None]  # per word: score minus score without the word
    damped: dict[str, float] = field(default_factory=dict)  # modality -> 1 - mean mask
    text_damped_per_word: list[float] = field(default_factory=list)
    top_damped: dict[str, list[tuple[str, float]]] = field(default_factory=dict)


def explain_files(
    checkpoint: "LoadedCheckpoint", feature_files: Sequence[Path], batch_size: int = 256
) -> dict[tuple[str, int], UtteranceExplanation]:
    """Word contributions and top-down mask summaries for every utterance of the files.

    Contribution of word j = f(utterance) - f(utterance without word j), where "without" drops
    the word's row from all three modalities and the model sees a sequence one word shorter
    (raw model outputs, before clipping to [-3, 3]). All occluded variants of all utterances go
    through ``mmlatch.inference.predict`` as ordinary utterances, so they are batched, normalised
    and padded exactly like the scores themselves.
    """
    import numpy as np

    from mmlatch.data import UtteranceData, read_feature_file
    from mmlatch.inference import predict
    from mmlatch.score import mask_summary
    from pipeline.schema import MODALITIES

    data = UtteranceData.from_videos([read_feature_file(p) for p in feature_files])
    data = data.normalised(checkpoint.normalisation)
    with_masks = bool(checkpoint.config.feedback)
    # Full precision even on a GPU: contributions are small differences of two outputs.
    full = predict(checkpoint.model, data.on(checkpoint.device), batch_size=batch_size, amp=False,
                   with_masks=with_masks)

    # Occluded variants: utterance k without word j, for every k with at least two words.
    owner, position, rows = [], [], []
    for k, (offset, n) in enumerate(zip(data.offsets, data.lengths)):
        if n < 2:
            continue
        span = np.arange(offset, offset + n)
        for j in range(int(n)):
            owner.append(k)
            position.append(j)
            rows.append(np.delete(span, j))
    without = np.zeros(0, np.float32)
    if rows:
        flat_rows = np.concatenate(rows)
        lengths = np.asarray([len(r) for r in rows], np.int64)
        variants = UtteranceData(
            schema=data.schema,
            flat={m: data.flat[m][flat_rows] for m in MODALITIES},
            imputed={m: data.imputed[m][flat_rows] for m in MODALITIES},
            offsets=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
            lengths=lengths,
            video_ids=[data.video_ids[k] for k in owner],
            utterance_ids=data.utterance_ids[owner],
            words=[[] for _ in owner],
            starts=data.starts[owner],
            ends=data.ends[owner],
            labels=np.full(len(owner), np.nan, np.float32),
            splits=np.full(len(owner), "", dtype=object).astype(str),
            normalisation=data.normalisation,
        )
        without = predict(checkpoint.model, variants.on(checkpoint.device), batch_size=batch_size, amp=False).scores

    names = {
        m: list(checkpoint.schema.modalities[m].names)
        or [f"{m}_{i}" for i in range(checkpoint.schema.modalities[m].dim)]
        for m in MODALITIES
    }
    out: dict[tuple[str, int], UtteranceExplanation] = {}
    for k in range(len(data)):
        out[(data.video_ids[k], int(data.utterance_ids[k]))] = UtteranceExplanation([None] * int(data.lengths[k]))
    for k, j, score in zip(owner, position, without):
        key = (data.video_ids[k], int(data.utterance_ids[k]))
        out[key].contributions[j] = float(full.scores[k] - score)
    if with_masks and full.masks is not None:
        for k in range(len(data)):
            gates = full.masks[k]
            if not gates:
                continue
            summary = mask_summary(gates, names)
            ex = out[(data.video_ids[k], int(data.utterance_ids[k]))]
            ex.damped = {m: 1.0 - summary[f"mask_{m}"] for m in MODALITIES}
            ex.text_damped_per_word = [1.0 - v for v in summary["mask_text_per_word"]]
            for m in MODALITIES:
                per_feature = 1.0 - gates[m].mean(axis=0)
                index = {name: i for i, name in enumerate(names[m])}
                ex.top_damped[m] = [(n, float(per_feature[index[n]])) for n in summary[f"damped_{m}"][:TOP_FEATURES]]
    return out


# --------------------------------------------------------------------------------- scoring


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
    result: "ScoreResult | None"  # None when no video could be scored
    videos: list[VideoScore]
    checkpoint: "LoadedCheckpoint"
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
    import pyarrow.parquet as pq

    table = pq.read_table(feature_file, columns=["vision_imputed", "audio_imputed"])
    out = []
    if len(table) and all(table.column("vision_imputed").to_pylist()):
        out.append("no face found: scored from text and audio only (facial input imputed)")
    if len(table) and all(table.column("audio_imputed").to_pylist()):
        out.append("no usable audio: scored from text and face only (acoustic input imputed)")
    return out


def _extract_one(video: Path, features_dir: Path, config: ExtractConfig,
                 transcript: str | Path | None, progress_for: ProgressFactory | None, force: bool):
    from contextlib import nullcontext

    from pipeline.extract import extract_video

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
    from mmlatch.checkpoint import load_checkpoint
    from mmlatch.score import score_files
    from pipeline.store import read_metadata

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
                k: result.summary[k] for k in ("stages_s", "total_s", "duration_s") if k in result.summary}}
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


# ------------------------------------------------------------------------------------ output


def run_to_json(run: ScoreRun) -> dict[str, Any]:
    videos = []
    for v in run.scored:
        row = run.video_row(v.video_id) or {}
        videos.append({
            "video": v.video,
            **row,
            "features": str(v.features),
            "warnings": v.warnings,
            "extraction": v.extraction,
            "utterances": [
                {k: u[k] for k in ("utterance_id", "start", "end", "text", "n_words", "score", "label")}
                for u in run.utterances_of(v.video_id)
            ],
        })
    return {
        "checkpoint": str(run.checkpoint.path),
        "videos": videos,
        "failures": [{"video": v.video, "error": v.error} for v in run.failures],
        "timings_s": run.timings,
    }


def _score_style(score: float) -> str:
    return "green" if score >= 0.5 else "red" if score <= -0.5 else "default"


def print_tables(run: ScoreRun, console=None) -> None:
    """One table per video (utterance, start-end, text, score, label), then its overall score."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for v in run.scored:
        table = Table(title=v.video, title_justify="left", show_lines=False, expand=False)
        table.add_column("#", justify="right", style="dim")
        table.add_column("time (s)", no_wrap=True)
        table.add_column("text", overflow="fold", ratio=1)
        table.add_column("score", justify="right", no_wrap=True)
        table.add_column("label", no_wrap=True)
        for u in run.utterances_of(v.video_id):
            style = _score_style(u["score"])
            table.add_row(
                str(u["utterance_id"] + 1), f"{u['start']:.1f}-{u['end']:.1f}", u["text"],
                f"[{style}]{u['score']:+.2f}[/]", f"[{style}]{u['label']}[/]",
            )
        console.print(table)
        row = run.video_row(v.video_id)
        if row:
            style = _score_style(row["score"])
            console.print(
                f"overall: [bold {style}]{row['score']:+.2f} {row['label']}[/] "
                f"(duration-weighted over {row['n_utterances']} utterance"
                f"{'s' if row['n_utterances'] != 1 else ''}, {row['duration']:.1f} s of video)",
                highlight=False,
            )
        console.print()


def report_views(run: ScoreRun) -> list["VideoView"]:
    """The report's view records, from the scores and (when computed) the explanations."""
    from pipeline.report import UtteranceView, VideoView, WordView
    from pipeline.store import read_video

    views = []
    for v in run.scored:
        row = run.video_row(v.video_id)
        if row is None:
            continue
        features = read_video(v.features)
        words_of = {int(u): (w, s, e) for u, w, s, e in zip(features.utterance_ids, features.words, features.starts, features.ends)}
        utterances = []
        for u in run.utterances_of(v.video_id):
            uid = u["utterance_id"]
            ex = (run.explanations or {}).get((v.video_id, uid))
            texts, starts, ends = words_of[uid]
            word_views = [
                WordView(
                    t, float(s), float(e),
                    contribution=ex.contributions[i] if ex else None,
                    text_damped=ex.text_damped_per_word[i] if ex and ex.text_damped_per_word else None,
                )
                for i, (t, s, e) in enumerate(zip(texts, starts, ends))
            ]
            top = dict(ex.top_damped) if ex else {}
            if ex and ex.text_damped_per_word:
                # Text features are embedding dimensions with no meaning of their own: the
                # damped unit a reader understands is the word.
                order = sorted(range(len(texts)), key=lambda i: -ex.text_damped_per_word[i])
                top["text"] = [(f'"{texts[i]}"', ex.text_damped_per_word[i]) for i in order[:TOP_FEATURES]]
            utterances.append(UtteranceView(
                uid, u["start"], u["end"], u["text"], u["score"], u["label"], word_views,
                damped=dict(ex.damped) if ex else {}, top_damped=top,
            ))
        views.append(VideoView(v.video_id, v.video, row["duration"], row["score"], row["label"], utterances, v.warnings))
    return views


def report_info(run: ScoreRun):
    """What the checkpoint says about itself (training data, test figures, limit) for the
    report's header, so a reader knows how far to trust the scores."""
    from pipeline.report import ReportInfo

    meta = run.checkpoint.metadata or {}
    training = meta.get("training") or {}
    parts = [str(training[k]) for k in ("description", "labels") if training.get(k)]
    if not parts and training.get("features"):
        parts.append(f"features {training['features']}, labels {training.get('labels', '?')}")
    metrics = meta.get("metrics") or {}
    for name, figures in metrics.items():
        # headline figures as the starter build records them, e.g. {"sst_test": {...}}
        if name.endswith("test") and isinstance(figures, dict) and figures.get("binary_accuracy_nonneutral") is not None:
            shown = [f"binary accuracy {100 * figures['binary_accuracy_nonneutral']:.1f}%"]
            shown += [f"{label} {figures[key]:.3f}" for key, label in (("mae", "MAE"), ("pearson_r", "Pearson r"))
                      if isinstance(figures.get(key), (int, float))]
            parts.append(f"{name.replace('_', ' ')}: {', '.join(shown)}")
    model = "MMLatch (top-down feedback)" if run.checkpoint.config.feedback else "late-fusion baseline (no feedback)"
    return ReportInfo(
        checkpoint=str(run.checkpoint.path), model=model, trained_on="; ".join(parts),
        limits=str(training.get("limit") or training.get("limits") or ""),
    )


def write_outputs(run: ScoreRun, out: str | Path | None, report: str | Path | None) -> list[Path]:
    from pipeline.report import write_report

    written = []
    if out is not None and run.result is not None:
        written.append(run.result.write(out, level="utterances"))
        written.append(run.result.write(videos_output_path(out), level="videos"))
    if report is not None:
        failures = {v.video: v.error for v in run.failures}
        written.append(write_report(report, report_views(run), report_info(run), failures))
    return written


# --------------------------------------------------------------------------------------- CLI


def cmd_score(args: argparse.Namespace) -> int:
    from pipeline.cli import StageProgress, config_from_args

    config = config_from_args(args)
    check_output_path(args.out)
    check_output_path(args.report, (".html", ".htm"), kind="report")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    show_progress = None if not args.json else False

    def on_failure(outcome: VideoScore) -> None:
        print(f"mmpipe: error: {outcome.error}", file=sys.stderr)

    run = score_videos(
        args.videos, checkpoint=args.checkpoint, features_dir=args.features_dir, config=config,
        transcript=args.transcript, batch_size=args.batch_size, device=args.device,
        explain=args.report is not None, force=args.force, on_failure=on_failure,
        progress_for=lambda video: StageProgress(Path(video).name, enabled=show_progress),
    )
    for v in run.scored:
        for w in v.warnings:
            print(f"mmpipe: warning: {v.video}: {w}", file=sys.stderr)
    written = write_outputs(run, args.out, args.report)
    if args.json:
        print(json.dumps(_finite(run_to_json(run)), indent=2, allow_nan=False, default=str))
    else:
        print_tables(run)
        for path in written:
            print(f"wrote {path}")
        if run.failures:
            print(f"{len(run.failures)} of {len(run.videos)} videos failed (see errors above)", file=sys.stderr)
    return 1 if run.failures else 0


def _finite(value):
    """JSON has no NaN: a non-finite number (a model gone wrong) is written as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    from pipeline.cli import add_config_args

    p = subparsers.add_parser(
        "score",
        help="sentiment of each utterance and of the whole video (-3..+3)",
        description="Extract features (cached) and score every utterance with an MMLatch checkpoint "
        "(default: the starter model installed with mmpipe). Prints a table per video and its "
        "duration-weighted overall score.",
    )
    p.add_argument("videos", nargs="+", metavar="VIDEO|DIR", help="video file(s) or folder(s) of videos")
    p.add_argument("--checkpoint", type=Path, metavar="DIR", help="checkpoint folder or .json (default: the installed starter model)")
    p.add_argument("--features-dir", type=Path, metavar="DIR",
                   help="where extracted features are cached (default: <cache>/features, see MMPIPE_CACHE)")
    p.add_argument("--transcript", metavar="FILE", help="transcript of the (single) video (.txt, .srt, .vtt, .ass, .ssa); default: sidecar file, else ASR")
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.add_argument("--out", type=Path, metavar="FILE", help="write per-utterance scores to FILE.parquet|.csv "
                   "(per-video scores to FILE.videos.parquet|.csv)")
    p.add_argument("--report", type=Path, metavar="FILE.html",
                   help="write a self-contained HTML report: timeline, word contributions, top-down masks")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="utterances per model batch (default 256)")
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: the GPU when present)")
    p.add_argument("--force", action="store_true", help="re-extract even when cached features are up to date")
    add_config_args(p)
    p.set_defaults(func=cmd_score)
