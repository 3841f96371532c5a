"""``mmpipe score``: videos in, sentiment per utterance and per video out, as terminal tables,
JSON, Parquet/CSV tables and an HTML report.

The work is ``mmlatch.score.score_videos`` (extraction cached by content, one batched scoring
pass); this module parses, prints and writes. Paths are checked before any extraction, so a bad
``--out`` is one line, not an error after minutes of work.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from rich.console import Console
from rich.table import Table

from core.errors import InputError, OutputError
from core.files import writable_folder
from flows.cli.options import add_config_args, config_from_args
from flows.cli.progress import StageProgress

if TYPE_CHECKING:  # the model side pulls in torch; the handler imports it when it runs
    from mmlatch.score import ScoreRun, VideoScore

OUTPUT_SUFFIXES = (".parquet", ".csv")


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


def run_to_json(run: "ScoreRun") -> dict[str, Any]:
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


def print_tables(run: "ScoreRun", console=None) -> None:
    """One table per video (utterance, start-end, text, score, label), then its overall score."""
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
        devices = v.extraction.get("devices")
        if devices:  # a feature file from before devices were recorded has none
            used = ", ".join(f"{k} {d}" for k, d in devices.items())
            console.print(f"devices: {used}; model {run.checkpoint.device}", style="dim", highlight=False)
        console.print()


def cmd_score(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    check_output_path(args.out)
    check_output_path(args.report, (".html", ".htm"), kind="report")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    show_progress = None if not args.json else False

    def on_failure(outcome: "VideoScore") -> None:
        print(f"mmpipe: error: {outcome.error}", file=sys.stderr)

    # Deferred: the model side pulls in torch (~1.5 s), which `mmpipe --help` does not need.
    from mmlatch.report import report_info, report_views, write_report  # deferred: torch, see above
    from mmlatch.score import score_videos  # deferred: torch, see above

    run = score_videos(
        args.videos, checkpoint=args.checkpoint, features_dir=args.features_dir, config=config,
        transcript=args.transcript, batch_size=args.batch_size, device=args.device,
        explain=args.report is not None, force=args.force, on_failure=on_failure,
        progress_for=lambda video: StageProgress(Path(video).name, enabled=show_progress),
    )
    for v in run.scored:
        for w in v.warnings:
            print(f"mmpipe: warning: {v.video}: {w}", file=sys.stderr)
    written = []
    if args.out is not None and run.result is not None:
        written.extend(run.result.write_tables(args.out))
    if args.report is not None:
        failures = {v.video: v.error for v in run.failures}
        written.append(write_report(args.report, report_views(run), report_info(run), failures))
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
