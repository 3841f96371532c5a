"""What following every face costs: the facial track of one face and of a two-shot, in one run.

    python bench/faces.py [--repeat 3]

Rows per clip: "reference" follows one face with no face detector (``facial.max_faces=1``, the
facial track as it was before faces were counted), "defaults" counts faces (a detector look every
``facial.scout_every_s``) and, once two are seen, follows both and picks the speaker of each word.
Clips: the real 8 s talking head (one face) and a 6 s two-shot of two real talking heads side by
side with one's soundtrack (built once into the cache). Times are the median of ``--repeat`` runs
of the facial track alone (decode + landmarks), plus the speaker choice over word-sized pieces of
the speech; machines here vary from day to day, so compare rows of one run only.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from core.config import FacialConfig, cache_dir  # noqa: E402
from extractors.facial import FacialExtractor  # noqa: E402
from pipeline import media  # noqa: E402
from pipeline.signal import audio_energy_db  # noqa: E402
from pipeline.speaker import speaker_features  # noqa: E402
from tests.media_fixtures import side_by_side, speech_words  # noqa: E402

VIDEOS = ROOT.parent / "shared" / "data" / "videos"
ONE = VIDEOS / "WDA_KatieHill_000.mp4"


def two_shot() -> Path:
    out = cache_dir() / "bench" / "two_shot_6s.mp4"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        side_by_side(ONE, VIDEOS / "retalking_face_1.mp4", ONE, out, seconds=6.0)
    return out


def measure(path: Path, config: FacialConfig, repeat: int) -> dict:
    extractor = FacialExtractor(config)
    info = media.probe(path)
    audio = media.decode_audio(path, 16000)
    utterances = speech_words(audio)
    extract_s, choice_s = [], []
    for _ in range(repeat):
        clip = media.video_clip(path, info, audio)
        t0 = time.perf_counter()
        track = extractor.extract(clip)
        extract_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        speaker_features(track, audio_energy_db(audio), utterances, config)
        choice_s.append(time.perf_counter() - t0)
    faces = track.faces
    return {
        "frames": len(track.times),
        "followed": int(faces.per_frame(len(track.times)).max(initial=0)) if faces is not None else 1,
        "extract_s": float(np.median(extract_s)),
        "choice_ms": 1000 * float(np.median(choice_s)),
        "words": sum(len(u.words) for u in utterances),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    clips = {"one face, 8 s 512x512": ONE, "two faces, 6 s 1024x512": two_shot()}
    rows = []
    for clip, path in clips.items():
        reference = None
        for name, config in (("reference (max_faces=1)", FacialConfig(max_faces=1)), ("defaults", FacialConfig())):
            m = measure(path, config, args.repeat)
            reference = reference or m
            rows.append((clip, name, m, m["extract_s"] / reference["extract_s"]))
    print(f"facial track cost, {platform.processor() or platform.machine()}, median of {args.repeat}\n")
    print("| clip | settings | faces followed | facial track s | ms / sampled frame "
          "| speaker choice ms (words) | vs reference |")
    print("|---|---|---|---|---|---|---|")
    for clip, name, m, ratio in rows:
        print(f"| {clip} | {name} | {m['followed']} | {m['extract_s']:.2f} | {1000 * m['extract_s'] / m['frames']:.1f} "
              f"| {m['choice_ms']:.1f} ({m['words']}) | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
