"""``mmpipe extract``: videos -> one Parquet feature file each, with progress and a summary."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import MmpipeError, OutputError
from core.files import MIN_FREE_BYTES, writable_folder
from flows.cli.options import add_config_args, config_from_args
from flows.cli.progress import StageProgress
from pipeline.extract import ExtractResult, extract_video
from pipeline.names import output_path, shared_outputs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("extract", help="video -> word-aligned features in Parquet")
    p.add_argument("videos", nargs="+", help="video file(s)")
    p.add_argument("--transcript", help="transcript (.txt, .srt, .vtt, .ass, .ssa); default: sidecar file next to the video, else ASR")
    p.add_argument("--out", default="features", help="output folder (default: ./features)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--force", action="store_true", help="re-extract even when the output is up to date")
    add_config_args(p)
    p.set_defaults(func=cmd_extract)


def print_summary(result: ExtractResult, out=sys.stdout) -> None:
    s = result.summary
    if result.skipped:
        print(f"{result.video}: up to date -> {result.output}", file=out)
        return
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in s.get("stages_s", {}).items())
    devices = ", ".join(f"{k} {v}" for k, v in s.get("devices", {}).items())
    print(
        f"{result.video} -> {result.output}\n"
        f"  {s['words']} words in {s['utterances']} utterances, {s['duration_s']:.1f}s of media, "
        f"face in {100 * s['face_coverage']:.0f}% of landmarked frames\n"
        f"  time: {stages}; total {s['total_s']:.1f}s ({s.get('realtime_factor', 0):.1f}x real time)\n"
        f"  devices: {devices}",
        file=out,
    )
    faces = s.get("faces") or {}
    if faces.get("speaker_selection"):
        shown = ", ".join(f"#{k} {t['words']}" for k, t in faces["tracks"].items() if t["words"])
        print(f"  faces: up to {faces['max_in_frame']} in frame; words per speaking face: {shown or 'none'}; "
              f"{faces['words_without_speaker']} with no visible speaker", file=out)


def cmd_extract(args: argparse.Namespace) -> int:
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
            print_summary(result)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    return 1 if failed else 0
