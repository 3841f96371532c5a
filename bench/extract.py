"""Extraction speed: time per stage and real-time factor on a real clip and on a 60 s clip.

    python bench/extract.py [--face-fps 15] [--asr-model base] [--repeat 1]

The 60 s clip is real speech (radio addresses, Harvard sentences, JFK, a telephone conversation)
laid over a real talking-face video, built once into the cache. Models are loaded (and timed)
before the measured runs, so the table shows steady-state extraction of a long-running worker.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from core.config import ExtractConfig, cache_dir  # noqa: E402
from extractors import EXTRACTORS, extractor_for  # noqa: E402
from pipeline.extract import extract_video  # noqa: E402
from tests.media_fixtures import load_audio, mux  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
STAGES = ("decode", "words", "text", "audio", "vision", "write")


def long_clip() -> Path:
    out = cache_dir() / "bench" / "talking_head_60s.mp4"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    speech = DATA / "speech"
    parts = [load_audio(p) for p in (
        speech / "RD_Radio31_000.wav", speech / "harvard_list1_16k.wav", speech / "RD_Radio34_002.wav",
        speech / "jfk.flac", speech / "RD_Radio36_000.wav", speech / "pyannote_sample.wav",
    )]
    audio = np.concatenate(parts)[: 60 * 16000]
    tmp = out.with_suffix(".tmp.mp4")
    mux(DATA / "videos" / "WDA_KatieHill_000.mp4", audio, tmp, seconds=60.0)
    os.replace(tmp, out)
    return out


def recognised_transcript(video: Path) -> Path:
    """The clip's words as a plain-text transcript (from one Whisper base pass, cached), so the
    "transcript given" rows time forced alignment on the same words. Not named like a sidecar,
    so the ASR rows do not pick it up."""
    out = cache_dir() / "bench" / f"{video.stem}.words.txt"
    if not out.exists():
        from core.config import WordsConfig
        from pipeline.asr import make_recogniser
        from pipeline.media import decode_audio

        text = make_recogniser(WordsConfig()).recognise(decode_audio(video)).text
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text.strip() + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--face-fps", type=float, default=15.0)
    parser.add_argument("--face-streams", type=int, default=2, help="landmarkers fed alternate frames")
    parser.add_argument("--asr-model", default="base")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    config = ExtractConfig().with_overrides({"facial.fps": args.face_fps, "facial.streams": args.face_streams,
                                          "words.asr_model": args.asr_model})

    t0 = time.perf_counter()
    for modality in EXTRACTORS:
        extractor_for(modality, config)
    from pipeline.asr import make_recogniser

    make_recogniser(config.words)
    load_s = time.perf_counter() - t0
    clips = {"real 8 s (WDA_KatieHill_000.mp4)": DATA / "videos" / "WDA_KatieHill_000.mp4", "60 s talking head": long_clip()}
    # Warm-up run (JIT caches, first-call allocations) on the short clip, not measured.
    with tempfile.TemporaryDirectory() as tmp:
        extract_video(clips["real 8 s (WDA_KatieHill_000.mp4)"], tmp, config, force=True)

    rows = []
    for name, path in clips.items():
        for mode in ("ASR", "transcript"):
            # "transcript": the words are given (forced alignment only), as with subtitles.
            transcript = recognised_transcript(path) if mode == "transcript" else None
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory() as tmp:
                    r = extract_video(path, tmp, config, transcript=transcript, force=True)
                s = r.summary
                label = f"{name}, {'Whisper ' + args.asr_model if mode == 'ASR' else 'transcript given'}"
                rows.append((label, s["duration_s"], s["stages_s"], s["total_s"], s["words"], s["face_coverage"]))

    print(f"\nmmpipe extraction benchmark — {time.strftime('%Y-%m-%d')}, {platform.node()}, "
          f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}")
    print(f"settings: ASR whisper {args.asr_model} int8, face sampling {args.face_fps:g} fps; model load {load_s:.1f} s (once per process)")
    print("vision runs in a thread beside words+text+audio, so stage times add up to more than the total\n")
    head = "| clip | media s | " + " | ".join(STAGES) + " | total s | x real time | words | face |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, dur, stages, total, words, face in rows:
        cells = " | ".join(f"{stages.get(k, 0):.2f}" for k in STAGES)
        print(f"| {name} | {dur:.1f} | {cells} | {total:.2f} | {dur / total:.1f} | {words} | {face:.0%} |")


if __name__ == "__main__":
    main()
