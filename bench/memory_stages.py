"""Where extraction's memory goes: the peak of each stage, run one after another in one process.

    python bench/memory.py --minutes 10 --build-only        # prints the clip's path
    python bench/memory_stages.py CLIP [--code DIR] [--face]

The models are loaded first, so each row is the stage's working memory: the peak resident size
during the stage minus the size just before it (psutil, every 10 ms), and what stays after it.
The stages are those of ``mmpipe extract`` with the default settings (Whisper base, no
transcript); in ``mmpipe extract`` the face track runs in a thread beside them. ``--code DIR``
measures another checkout of mmpipe with this layout (e.g. ``git worktree add /tmp/before COMMIT``).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20


class Sampler(threading.Thread):
    """Peak RSS of this process since the last ``reset``."""

    def __init__(self) -> None:
        import psutil

        super().__init__(daemon=True)
        self.proc = psutil.Process()
        self.peak = 0

    def rss(self) -> int:
        return self.proc.memory_info().rss

    def reset(self) -> int:
        now = self.rss()
        self.peak = now
        return now

    def run(self) -> None:
        while True:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout to measure (default: this one)")
    parser.add_argument("--face", action="store_true", help="also the face track (slow: it runs alone here)")
    args = parser.parse_args()
    sys.path.insert(0, str(args.code.resolve()))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    # Deferred: imported from the checkout --code names (this layout: core/, pipeline/, ...).
    from core.config import ExtractConfig
    from extractors import extractor_for
    from flows.environment import prepare_process
    from pipeline import media
    from pipeline.asr import make_recogniser
    from pipeline.pooling import pool_to_words
    from pipeline.words import words_for
    from tests.asr_tools import FixedRecogniser

    prepare_process()

    sampler = Sampler()
    sampler.start()
    rows: list[tuple[str, float, float, float, float]] = []

    def stage(name: str, fn):
        gc.collect()
        time.sleep(0.05)
        before = sampler.reset()
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
        time.sleep(0.05)
        rows.append((name, before / MB, (sampler.peak - before) / MB, (sampler.rss() - before) / MB, seconds))
        print(f"{name}: +{rows[-1][2]:.0f} MB at peak, {seconds:.1f} s", file=sys.stderr, flush=True)
        return out

    cfg = ExtractConfig()
    info = media.probe(args.clip)
    recogniser = make_recogniser(cfg.words)
    recogniser.model  # noqa: B018  (load it now)
    text_ex, audio_ex, face_ex = (extractor_for(m, cfg) for m in ("text", "audio", "vision"))
    audio_ex.warm_up()
    loaded = sampler.rss() / MB

    audio = stage("decode audio", lambda: media.decode_audio(args.clip, cfg.media.sample_rate))
    stage("silence check", lambda: media.is_silent(audio))
    heard = stage("Whisper", lambda: recogniser.recognise(audio))
    found = stage("re-timing (pocketsphinx)", lambda: words_for(audio, cfg.words, recogniser=FixedRecogniser(heard)))
    utterances = found.utterances
    clip = media.video_clip(args.clip, info, audio)
    clip.utterances = utterances
    stage("text (MiniLM)", lambda: text_ex.extract(clip))
    track = stage("acoustic", lambda: audio_ex.extract(clip))
    words = [w for u in utterances for w in u.words]
    stage("word pooling (acoustic)", lambda: pool_to_words(track, words))
    if args.face:
        stage("face track", lambda: face_ex.extract(clip))

    print(f"\n{args.clip.name} ({info.duration / 60:.1f} min, {len(words)} words), code: {args.code.resolve()}")
    print(f"models loaded: {loaded:.0f} MB; decoded audio: {audio.samples.nbytes / MB:.0f} MB; "
          f"acoustic track: {track.values.nbytes / MB:.0f} MB\n")
    print("| stage | RSS before (MB) | peak above it (MB) | kept after (MB) | s |")
    print("|---|---|---|---|---|")
    for name, before, peak, kept, seconds in rows:
        print(f"| {name} | {before:.0f} | {peak:.0f} | {kept:.0f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
