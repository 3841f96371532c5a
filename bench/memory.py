"""Peak memory and time of ``mmpipe extract`` on 1, 10 and 60 minutes of talking-head video.

    python bench/memory.py [--minutes 1 10 60] [--face-fps 15] [--asr-model auto]
                           [--reference DIR [--reference-minutes 1 10]]

Each clip is real speech (radio addresses, Harvard sentences, JFK, a telephone conversation,
telephone prompts) joined with short pauses in a shuffled order, laid over a real talking face
(``WDA_KatieHill_000.mp4`` played forwards and backwards), 512x512 at 25 fps. Clips are built
once into ``~/.cache/mmpipe/bench`` (``MMPIPE_CACHE``), so reruns only measure.

Every extraction runs ``python -m flows.cli extract`` in a fresh process with the default
settings (Whisper tiny.en for English speech, no transcript); the peak resident memory of that process and all its
children is sampled every 50 ms with psutil. The goals are ratios: peak(60) / peak(1) and
time(60) / (60 * time(1)). ``--reference DIR`` measures another checkout of mmpipe the same way
(``git worktree add /tmp/before COMMIT``) for rows to compare with.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

from core.config import cache_dir  # noqa: E402
from tests.media_fixtures import load_audio  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SR = 16000
FPS = 25
SIZE = 512
FACE = DATA / "videos" / "WDA_KatieHill_000.mp4"
SPEECH = [
    DATA / "speech" / name
    for name in (
        "RD_Radio31_000.wav", "RD_Radio34_002.wav", "RD_Radio36_000.wav", "harvard_list1_16k.wav",
        "jfk.flac", "pyannote_sample.wav", "asterisk/basic-pbx-ivr-main.wav",
        "asterisk/privacy-prompt.wav", "asterisk/vm-intro.wav", "asterisk/cannot-complete-as-dialed.wav",
    )
]


def speech_track(seconds: float, seed: int = 0) -> np.ndarray:
    """(seconds * 16000,) float32: the recordings in a new shuffled order each round, joined by
    0.3-1.2 s pauses, so the text does not repeat with one fixed period."""
    parts = [load_audio(p, SR) for p in SPEECH]
    rng = np.random.default_rng(seed)
    need = int(seconds * SR)
    out: list[np.ndarray] = []
    have = 0
    while have < need:
        for k in rng.permutation(len(parts)):
            pause = np.zeros(int(rng.uniform(0.3, 1.2) * SR), np.float32)
            out += [parts[k], pause]
            have += len(parts[k]) + len(pause)
    return np.concatenate(out)[:need]


def face_frames() -> list[av.VideoFrame]:
    """The face video's frames played forwards then backwards (no jump at the loop point), as
    ready-to-encode yuv420p frames."""
    with av.open(str(FACE)) as src:
        rgb = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    rgb = [np.ascontiguousarray(x[:SIZE, :SIZE]) for x in rgb + rgb[-2:0:-1]]
    return [av.VideoFrame.from_ndarray(x, format="rgb24").reformat(format="yuv420p") for x in rgb]


def build_clip(minutes: float) -> Path:
    """The cached ``minutes``-long talking-head clip (built on first use; H.264 ultrafast + AAC,
    packets interleaved second by second like a camera's file)."""
    out = cache_dir() / "bench" / f"memory_talking_head_{minutes:g}min.mp4"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    seconds = minutes * 60.0
    audio = speech_track(seconds)
    frames = face_frames()
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.mp4")
    with av.open(str(tmp), "w") as dst:
        vs = dst.add_stream("libx264", rate=Fraction(FPS), options={"preset": "ultrafast", "crf": "28"})
        vs.width, vs.height, vs.pix_fmt = SIZE, SIZE, "yuv420p"
        ast = dst.add_stream("aac", rate=SR)
        ast.layout = "mono"
        frame_size = 1024
        n_video, pts_audio = int(round(seconds * FPS)), 0
        for second in range(int(np.ceil(seconds))):
            for i in range(second * FPS, min(n_video, (second + 1) * FPS)):
                frame = frames[i % len(frames)]
                frame.pts = i
                dst.mux(vs.encode(frame))
            while pts_audio < min(len(audio), (second + 1) * SR):
                chunk = audio[pts_audio : pts_audio + frame_size]
                chunk = np.pad(chunk, (0, frame_size - len(chunk)))
                af = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
                af.sample_rate, af.pts = SR, pts_audio
                pts_audio += frame_size
                dst.mux(ast.encode(af))
        dst.mux(vs.encode())
        dst.mux(ast.encode())
    os.replace(tmp, out)
    return out


@dataclass
class Run:
    minutes: float
    peak_mb: float
    wall_s: float
    cpu_s: float  # user + system time of the process (less affected by other jobs than wall time)
    summary: dict
    timeline: list[tuple[float, int]]  # (s, RSS bytes) every 50 ms


class PeakSampler(threading.Thread):
    """Largest summed RSS of a process and its descendants, sampled every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.proc, self.interval, self.peak = psutil.Process(pid), interval, 0
        self.samples: list[tuple[float, int]] = []  # (seconds since start, RSS bytes)
        self.done = threading.Event()

    def rss(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        t0 = time.perf_counter()
        while not self.done.is_set():
            try:
                rss = self.rss()
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.samples.append((time.perf_counter() - t0, rss))
            self.done.wait(self.interval)


def measure(video: Path, minutes: float, flags: list[str], code: Path = ROOT) -> Run:
    """One ``mmpipe extract`` of ``video`` in a fresh process, run from the checkout ``code``:
    peak RSS of its process tree, wall time, and the summary it prints (``--json``)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "flows.cli", "extract", str(video), "--out", tmp, "--json", "--force", *flags]
        t0, used = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler = PeakSampler(proc.pid)
        sampler.start()
        stdout, stderr = proc.communicate()
        wall = time.perf_counter() - t0
        now = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (now.ru_utime - used.ru_utime) + (now.ru_stime - used.ru_stime)
        sampler.done.set()
        sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"extract failed on {video} ({proc.returncode}):\n{stderr[-2000:]}")
    return Run(minutes, sampler.peak / 2**20, wall, cpu, json.loads(stdout), sampler.samples)


def save_timeline(run: Run, label: str) -> Path:
    """RSS over time as CSV (seconds, MB) beside the clips, with the stage times in the header,
    to see which stage the peak belongs to."""
    out = cache_dir() / "bench" / f"memory_{label.replace(' ', '_')}_{run.minutes:g}min.csv"
    lines = [f"# stages_s {json.dumps(run.summary.get('stages_s', {}))}", "seconds,rss_mb"]
    lines += [f"{t:.2f},{rss / 2**20:.1f}" for t, rss in run.timeline]
    out.write_text("\n".join(lines) + "\n")
    return out


def print_table(runs: list[tuple[str, Run]], face_fps: float, asr_model: str | None) -> None:
    print(f"\nmmpipe extract memory benchmark — {time.strftime('%Y-%m-%d')}, {platform.node()}, "
          f"{os.cpu_count()} CPU cores, {psutil.virtual_memory().total / 2**30:.0f} GiB")
    print(f"settings: defaults (Whisper {asr_model or 'auto: tiny.en for English'}, no transcript), faces at {face_fps:g} fps; "
          "one fresh process per clip\n")
    print("| code | minutes | words | peak RSS (MB) | wall s | s per media minute | CPU s per media minute |")
    print("|---|---|---|---|---|---|---|")
    for label, r in runs:
        print(f"| {label} | {r.minutes:g} | {r.summary['words']} | {r.peak_mb:.0f} | {r.wall_s:.1f} | "
              f"{r.wall_s / r.minutes:.1f} | {r.cpu_s / r.minutes:.1f} |")
    for label in dict.fromkeys(label for label, _ in runs):
        mine = sorted((r for lab, r in runs if lab == label), key=lambda r: r.minutes)
        if len(mine) > 1:
            first, last = mine[0], mine[-1]
            scale = last.minutes / first.minutes
            print(f"\n{label}: peak({last.minutes:g}) / peak({first.minutes:g}) = {last.peak_mb / first.peak_mb:.2f}, "
                  f"time({last.minutes:g}) / ({scale:g} x time({first.minutes:g})) = "
                  f"{last.wall_s / (scale * first.wall_s):.2f} wall, {last.cpu_s / (scale * first.cpu_s):.2f} CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    parser.add_argument("--face-fps", type=float, default=15.0)
    parser.add_argument("--asr-model", default=None, help="default: the extraction default (auto: tiny.en for English)")
    parser.add_argument("--build-only", action="store_true", help="build the clips and stop")
    parser.add_argument("--reference", type=Path,
                        help="another checkout (e.g. `git worktree add /tmp/before COMMIT`) measured the same way")
    parser.add_argument("--reference-minutes", type=float, nargs="+", default=[1, 10],
                        help="clip lengths for the reference checkout (default: 1 10)")
    parser.add_argument("--timeline", action="store_true", help="save each run's RSS over time as CSV")
    args = parser.parse_args()
    flags = ["--face-fps", f"{args.face_fps:g}"]
    if args.asr_model:
        flags += ["--asr-model", args.asr_model]

    plan = [("this checkout", ROOT, m) for m in args.minutes]
    if args.reference:
        plan += [(f"reference {args.reference.name}", args.reference.resolve(), m) for m in args.reference_minutes]
    clips = {m: build_clip(m) for _, _, m in plan}
    if args.build_only:
        for m, path in clips.items():
            print(f"{m:g} min: {path}")
        return
    runs = []
    for label, code, m in plan:
        run = measure(clips[m], m, flags, code)
        runs.append((label, run))
        if args.timeline:
            print(f"timeline: {save_timeline(run, label)}", file=sys.stderr)
        print(f"{label}, {m:g} min: peak {run.peak_mb:.0f} MB, {run.wall_s:.1f} s ({run.cpu_s:.0f} CPU s), "
              f"stages {run.summary.get('stages_s')}",
              file=sys.stderr, flush=True)
    print_table(runs, args.face_fps, args.asr_model)


if __name__ == "__main__":
    main()
