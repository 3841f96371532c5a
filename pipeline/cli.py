"""The ``mmpipe`` command line.

Every command prints expected failures (bad input, unreadable checkpoint) as one line and exits
non-zero; tracebacks are only shown with ``--debug``. Sub-commands of the model half and of the
Prefect flows register themselves from ``mmlatch.commands`` and ``flows.commands``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pipeline.config import ExtractConfig
from pipeline.errors import MmpipeError, OutputError
from pipeline.files import MIN_FREE_BYTES, writable_folder
from pipeline.names import output_path, shared_outputs

# Flag -> dotted config key; shared by every command that extracts (extract, score, backfill).
CONFIG_FLAGS: dict[str, tuple[str, type, str]] = {
    "--asr-backend": ("words.asr_backend", str, "recogniser when no transcript: whisper | pocketsphinx | transformers"),
    "--asr-model": ("words.asr_model", str, "Whisper model: base | tiny.en | PATH to a local model folder"),
    "--asr-beam": ("words.beam_size", int, "Whisper beam size (5; 1 = greedy, faster)"),
    "--language": ("words.language", str, "spoken language (en), or auto to detect"),
    "--utterance-gap": ("words.utterance_gap_s", float, "pause (s) that ends an utterance"),
    "--text-backend": ("text.backend", str, "transformer | glove"),
    "--text-model": ("text.model_path", str, "local Hugging Face encoder folder (default: MiniLM)"),
    "--pitch": ("acoustic.pitch", str, "pitch tracker: yin (fast) | pyin"),
    "--face-fps": ("facial.fps", float, "face frames analysed per second of video"),
    "--face-model": ("facial.model_path", str, "MediaPipe face_landmarker.task file"),
}


def add_config_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("extraction settings")
    group.add_argument("--config", type=Path, help="JSON file with extraction settings")
    for flag, (key, kind, help_text) in CONFIG_FLAGS.items():
        group.add_argument(
            flag, dest="cfg__" + key.replace(".", "__"), type=kind, help=help_text,
            metavar=key.split(".")[-1].upper(),
        )


def config_from_args(args: argparse.Namespace) -> ExtractConfig:
    config = ExtractConfig()
    if getattr(args, "config", None):
        try:
            config = ExtractConfig.from_dict(json.loads(Path(args.config).read_text()))
        except (OSError, ValueError, TypeError) as err:
            raise MmpipeError(f"cannot read config: {err}", str(args.config)) from None
    overrides = {
        key: getattr(args, "cfg__" + key.replace(".", "__"), None) for key, _, _ in CONFIG_FLAGS.values()
    }
    try:
        return config.with_overrides(overrides)
    except (ValueError, TypeError) as err:
        raise MmpipeError(str(err)) from None


class StageProgress:
    """A rich progress display on a terminal; silent when stderr is not a TTY."""

    def __init__(self, label: str, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.label = label
        self._progress = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(), console=Console(stderr=True), transient=True,
            )
            self._progress.__enter__()
        return self

    def __call__(self, stage: str, done: float, total: float) -> None:
        if self._progress is None:
            return
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(f"{self.label} {stage}", total=total or 1)
        self._progress.update(self._tasks[stage], completed=done, total=total or 1)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)


def print_extract_summary(result, out=sys.stdout) -> None:
    s = result.summary
    if result.skipped:
        print(f"{result.video}: up to date -> {result.output}", file=out)
        return
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in s.get("stages_s", {}).items())
    print(
        f"{result.video} -> {result.output}\n"
        f"  {s['words']} words in {s['utterances']} utterances, {s['duration_s']:.1f}s of media, "
        f"face in {100 * s['face_coverage']:.0f}% of sampled frames\n"
        f"  time: {stages}; total {s['total_s']:.1f}s ({s.get('realtime_factor', 0):.1f}x real time)",
        file=out,
    )


def cmd_extract(args: argparse.Namespace) -> int:
    from pipeline.extract import extract_video

    config = config_from_args(args)
    if args.transcript and len(args.videos) > 1:
        raise MmpipeError("--transcript applies to one video; use sidecar files for several")
    writable_folder(args.out, MIN_FREE_BYTES)
    outputs = {Path(v).resolve(): output_path(v, args.out) for v in args.videos}
    for out, group in shared_outputs(outputs):
        raise OutputError(f"{' and '.join(map(str, group))} would all write {out}; extract them into separate "
                          "--out folders")
    results, failed = [], 0
    for video in args.videos:
        try:
            with StageProgress(Path(video).name, enabled=None if not args.json else False) as prog:
                result = extract_video(video, args.out, config, args.transcript, progress=prog, force=args.force)
        except MmpipeError as err:
            if len(args.videos) == 1:
                raise
            print(f"mmpipe: error: {err}", file=sys.stderr)
            results.append({"video": str(video), "error": str(err)})
            failed += 1
            continue
        for w in result.warnings:
            print(f"mmpipe: warning: {video}: {w}", file=sys.stderr)
        if args.json:
            results.append({"video": result.video, "output": str(result.output), "skipped": result.skipped, **result.summary})
        else:
            print_extract_summary(result)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmpipe", description="Multimodal sentiment analysis from raw video (MMLatch).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("extract", help="video -> word-aligned features in Parquet")
    p.add_argument("videos", nargs="+", help="video file(s)")
    p.add_argument("--transcript", help="transcript (.txt, .srt, .vtt, .ass, .ssa); default: sidecar file next to the video, else ASR")
    p.add_argument("--out", default="features", help="output folder (default: ./features)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--force", action="store_true", help="re-extract even when the output is up to date")
    add_config_args(p)
    p.set_defaults(func=cmd_extract)

    for module in ("mmlatch.commands", "flows.commands", "mmlatch.score_command"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as err:
            if err.name and module.startswith(err.name):
                continue
            raise
        mod.register(sub)
    return parser


def _quiet_libraries() -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe / TFLite C++ logs
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="mmpipe: %(levelname)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except MmpipeError as err:
        if args.debug:
            raise
        print(f"mmpipe: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mmpipe: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # an unexpected failure: still one line, details with --debug
        if args.debug:
            raise
        print(f"mmpipe: internal error: {type(err).__name__}: {err} (run with --debug for details)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
