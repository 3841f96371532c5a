"""Backfill throughput against a reference row, and the cost of orchestration: the same clips
through the plain library (``pipeline.backfill.backfill``) and through the Prefect ``backfill``
flow.

    python bench/backfill.py [--clips 20] [--workers 1] [--modes direct embedded server] [--repeat 3]

The first row is the reference: the earlier defaults (Whisper base with beam 5, one video at a
time), through the library; then today's defaults (two videos in
flight per worker) in each mode. Ratios between rows of one run are what to compare: machines
here vary by 1.5-2x from day to day, and by 10-20 % within minutes, so ``--repeat`` runs the rows
in turn (reference, defaults, ..., then again) and shows each row's median.

Every run is a fresh Python process on a fresh output folder, set up as ``mmpipe`` sets up its
own (``flows.environment.prepare_process``: the allocator settings, numba's cache), so each pays
what a user pays: imports, model loading in every worker, and for the flow its orchestration
(the ``embedded`` mode also starts Prefect's temporary server; ``server`` talks to a ``prefect
server`` started here once). Times are measured inside the process around the one call, and for
the whole process; CPU seconds are the process's and its children's (what a batch user pays,
and less disturbed than wall time by other work on the machine). The clips are copies of the
real talking-head recordings in ../shared/data/videos, without transcripts, so speech
recognition runs as it would for a user's videos.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flows.environment import prepare_process  # noqa: E402  (light: os, ctypes; no models)

VIDEOS = ROOT.parent / "shared" / "data" / "videos"
SOURCES = (  # real talking heads with English speech
    "retalking_face_1.mp4", "retalking_face_2.mp4", "retalking_face_4.mp4", "retalking_face_5.mp4",
    "desk_woman_stockmarket_9s.mp4", "WDA_KatieHill_000.mp4", "webcam_woman_parknoise_7s.mp4",
)
MODES = {"direct": "library, no Prefect", "embedded": "flow, ephemeral server", "server": "flow, running server"}


def make_clips(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = VIDEOS / SOURCES[i % len(SOURCES)]
        shutil.copyfile(src, folder / f"clip_{i:02d}_{src.stem}.mp4")
    return folder


# The defaults before the throughput work, measured beside today's in every run.
REFERENCE = {"config": {"words.asr_model": "base", "words.beam_size": 5, "facial.frames": "all"},
             "in_flight": 1}
DEFAULTS = {"config": {}, "in_flight": None}  # None: the library's default


def run_once(mode: str, workers: int, clips: str, out: str, settings: str) -> None:
    """Child process: one measured backfill; prints its numbers as JSON on the last line."""
    t0 = time.perf_counter()
    prepare_process()  # the set-up of every mmpipe entry point, before mmpipe's work is imported
    settings = json.loads(settings)
    cfg = settings["config"]
    flight = {"in_flight": settings["in_flight"]} if settings["in_flight"] else {}
    if mode == "direct":
        # Imported here, in the measured child process: the import is part of what a run costs
        # (``import_s``), and the parent never needs mmpipe's modules.
        from pipeline.backfill import backfill  # deferred: measured, see above

        t1 = time.perf_counter()
        result = backfill(clips, out, cfg, workers=workers, **flight).to_dict()
    else:
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
        from flows.backfill import backfill_flow  # deferred: measured, as above

        t1 = time.perf_counter()
        result = backfill_flow(clips, out, config=cfg, workers=workers, **flight)
    call_s = time.perf_counter() - t1
    print(json.dumps({"call_s": call_s, "import_s": t1 - t0, "media_s": result["realtime_factor"] * result["wall_s"],
                      "done": result["done"], "failed": result["failed"]}))


def measure(label: str, mode: str, workers: int, clips: Path, work: Path, settings: dict, env: dict) -> dict:
    out = work / f"out-{label}-{mode}-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--_run", mode, str(workers), str(clips), str(out), json.dumps(settings)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    process_s = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"{mode} x{workers} failed:\n{proc.stderr[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"settings": label, "mode": mode, "workers": workers, "process_s": process_s, "cpu_s": cpu_s, **row}


def median_row(runs: list[dict]) -> dict:
    """The run of median call time, with the median CPU seconds of all of them."""
    runs = sorted(runs, key=lambda r: r["call_s"])
    return {**runs[len(runs) // 2], "cpu_s": statistics.median(r["cpu_s"] for r in runs), "runs": len(runs)}


class LocalServer:
    """`prefect server start` on a free 127.0.0.1 port for the ``server`` mode; stopped on exit."""

    def __init__(self, env: dict, log: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        import httpx

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        self.stop()
        sys.exit(f"prefect server did not start, see {log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_run":
        run_once(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--repeat", type=int, default=1, help="runs per row, in turn (the median is shown)")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference row")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="mmpipe-bench-"))
    clips = make_clips(work / "clips", args.clips)
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    server = None
    try:
        if {"embedded", "server"} & set(args.modes):  # create Prefect's database outside the timings
            empty = work / "empty"
            empty.mkdir(exist_ok=True)
            subprocess.run([sys.executable, __file__, "--_run", "embedded", "1", str(empty), str(work / "out-warmup"),
                            json.dumps(DEFAULTS)], cwd=ROOT, env=env, check=True, capture_output=True)
        if "server" in args.modes:
            server = LocalServer(env, work / "server.log")
        runs = [] if args.no_reference else [("reference", "direct", 1, REFERENCE)]
        runs += [("defaults", mode, workers, DEFAULTS) for workers in args.workers for mode in args.modes]
        measured: dict[tuple, list[dict]] = {run[:3]: [] for run in runs}
        for _ in range(args.repeat):
            for label, mode, workers, settings in runs:
                run_env = {**env, "PREFECT_API_URL": server.api} if mode == "server" else env
                row = measure(label, mode, workers, clips, work, settings, run_env)
                measured[(label, mode, workers)].append(row)
                print(f"  {label:<9} {mode:<8} x{workers}: {row['call_s']:.1f} s, {row['cpu_s']:.1f} CPU-s",
                      file=sys.stderr, flush=True)
        rows = [median_row(r) for r in measured.values()]
    finally:
        if server:
            server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_table(rows, args)


def print_table(rows: list[dict], args) -> None:
    media = max(r["media_s"] for r in rows)
    print(f"\nBackfill of {args.clips} real clips ({media:.0f} s of media) — {time.strftime('%Y-%m-%d')}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}")
    print(f"reference: {REFERENCE['config']}, one video at a time; defaults: today's settings, "
          f"two videos in flight per worker; median of {args.repeat} run(s) per row, taken in turn\n")
    head = (f"{'settings':<10} {'mode':<34} {'workers':>7} {'done':>5} {'call s':>8} {'videos/min':>10} "
            f"{'x real time':>11} {'vs reference':>12} {'process s':>9} {'CPU s':>7} {'CPU vs ref':>10} "
            f"{'orchestration':>16}")
    print(head)
    print("-" * len(head))
    reference = next((r for r in rows if r["settings"] == "reference"), None)
    direct = {r["workers"]: r for r in rows if r["mode"] == "direct" and r["settings"] == "defaults"}
    for r in rows:
        base = direct.get(r["workers"])
        over = ""
        if base is not None and r["mode"] != "direct":
            d = r["call_s"] - base["call_s"]
            over = f"{d:+.1f} s ({100 * d / base['call_s']:+.1f} %)"
        ratio = f"{reference['call_s'] / r['call_s']:.2f}x" if reference else ""
        cpu_ratio = f"{reference['cpu_s'] / r['cpu_s']:.2f}x" if reference else ""
        print(f"{r['settings']:<10} {r['mode'] + ' (' + MODES[r['mode']] + ')':<34} {r['workers']:>7} {r['done']:>5} "
              f"{r['call_s']:>8.1f} {60 * r['done'] / r['call_s']:>10.1f} {media / r['call_s']:>11.2f} {ratio:>12} "
              f"{r['process_s']:>9.1f} {r['cpu_s']:>7.1f} {cpu_ratio:>10} {over:>16}")


if __name__ == "__main__":
    main()
