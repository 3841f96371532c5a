"""Extraction speed against a reference row, and what the speed costs in quality, in one run.

    python bench/extract.py [--no-quality] [--repeat 3] [--clips short long] [--modes asr given]
                            [--variant NAME KEY=VALUE ...]
    python bench/extract.py --face-rates 15 12 10 7.5

Rows: "reference" is the earlier defaults (Whisper base with beam 5 for English, every sampled
frame of the face track at 15 fps), "defaults" today's; ``--variant`` adds a row of your own settings (e.g.
``--variant fps10 facial.fps=10``). Machines here vary by 1.5-2x from day to day, so compare
rows of one run, not figures of different runs.

Speed: per-stage seconds and real-time factor on the real 8 s talking head and on a 60 s clip
(real speech laid over a real talking-face video, built once into the cache), with ASR and with
the words given (forced alignment only). Models are loaded (and timed) before the measured
runs, so the table shows steady-state extraction of a long-running worker.

Quality (each row against the reference): WER on the ASR set of ``bench/asr.py`` (all, and the
clean recordings), median word-timing error on truth16k and GRID, the per-word facial features
of the 60 s clip with the same words (Pearson r per feature, median over each group), and the
starter model's overall score of each shared talking-head clip (largest difference).

``--face-rates`` measures instead what sparser face sampling, and landmarking only the frames
the words read, cost against the truth they estimate, each word's features over every frame of
the video (see ``face_rates``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ctranslate2  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from core.config import ExtractConfig, WordsConfig, cache_dir  # noqa: E402
from extractors import EXTRACTORS, extractor_for  # noqa: E402
from extractors.facial import BLENDSHAPES, GEOMETRY, POSE  # noqa: E402
from mmlatch.score import score_videos  # noqa: E402
from pipeline.asr import make_recogniser  # noqa: E402
from pipeline.extract import extract_video  # noqa: E402
from pipeline.media import decode_audio  # noqa: E402
from pipeline.words import words_for  # noqa: E402
from tests.asr_tools import FixedRecogniser, word_errors  # noqa: E402
from tests.media_fixtures import load_audio, mux  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
STAGES = ("decode", "words", "text", "audio", "vision", "write")
SHORT = "real 8 s"
LONG = "60 s talking head"
# The defaults before the throughput work: the reference every run measures beside today's.
REFERENCE = {"words.asr_model": "base", "words.beam_size": 5, "facial.frames": "all"}
TALKING_HEADS = (  # the shared clips with speech and a face, for the starter-model scores
    "WDA_KatieHill_000.mp4", "retalking_face_1.mp4", "retalking_face_2.mp4", "retalking_face_4.mp4",
    "retalking_face_5.mp4", "desk_woman_stockmarket_9s.mp4", "webcam_woman_parknoise_7s.mp4",
)


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
    """The clip's words as a plain-text transcript (from one pass of the default recogniser, cached), so the
    "words given" rows time forced alignment on the same words. Not named like a sidecar, so
    the ASR rows do not pick it up."""
    out = cache_dir() / "bench" / f"{video.stem}.words.txt"
    if not out.exists():
        text = make_recogniser(WordsConfig()).recognise(decode_audio(video)).text
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text.strip() + "\n")
    return out


def bench_asr():
    """bench/asr.py as a module: its data sets and timing cases (one definition of each)."""
    spec = importlib.util.spec_from_file_location("bench_asr", ROOT / "bench" / "asr.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_asr"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def load_models(config: ExtractConfig) -> float:
    t0 = time.perf_counter()
    for modality in EXTRACTORS:
        extractor_for(modality, config)

    make_recogniser(config.words).model  # noqa: B018 - load now
    return time.perf_counter() - t0


def speed_rows(configs: dict[str, ExtractConfig], clips: dict[str, Path], modes: list[str], repeat: int,
               keep: Path) -> list[dict]:
    """One row per clip, mode and settings: the median run of ``repeat`` by wall time, with the
    CPU seconds of all the process's threads (what a batch user pays; less disturbed than wall
    time by other work on the machine)."""
    rows = []
    for clip_name, path in clips.items():
        transcript = recognised_transcript(path)
        for mode in modes:
            for label, config in configs.items():
                runs = []
                for _ in range(repeat):  # interleaving settings would reload models; runs are back to back
                    out = keep / label / ("asr" if mode == "ASR" else "given") / clip_name.replace(" ", "_")
                    cpu0 = time.process_time()
                    r = extract_video(path, out, config, transcript=transcript if mode != "ASR" else None, force=True)
                    s = r.summary
                    runs.append({"clip": clip_name, "mode": mode, "label": label, "duration": s["duration_s"],
                                 "stages": s["stages_s"], "total": s["total_s"], "cpu": time.process_time() - cpu0,
                                 "words": s["words"], "face": s["face_coverage"], "output": r.output,
                                 "devices": s.get("devices", {})})
                runs.sort(key=lambda r: r["total"])
                rows.append({**runs[len(runs) // 2], "cpu": float(np.median([r["cpu"] for r in runs]))})
    return rows


def print_speed(rows: list[dict]) -> None:
    head = ("| clip | words from | settings | media s | " + " | ".join(STAGES)
            + " | total s | x real time | vs reference | CPU s | CPU vs reference | words | face | Whisper on |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    reference = {(r["clip"], r["mode"]): r for r in rows if r["label"] == "reference"}
    for r in rows:
        ref = reference.get((r["clip"], r["mode"]))
        cells = " | ".join(f"{r['stages'].get(k, 0):.2f}" for k in STAGES)
        wall = f"{ref['total'] / r['total']:.2f}x" if ref else ""
        cpu = f"{ref['cpu'] / r['cpu']:.2f}x" if ref else ""
        print(f"| {r['clip']} | {r['mode']} | {r['label']} | {r['duration']:.1f} | {cells} | {r['total']:.2f} | "
              f"{r['duration'] / r['total']:.1f} | {wall} | {r['cpu']:.1f} | {cpu} | {r['words']} | {r['face']:.0%} | "
              f"{r['devices'].get('words', '?')} |")


def face_agreement(reference: Path, other: Path) -> dict[str, float]:
    """Median over each feature group of the per-word Pearson r between two files of the same
    words (rows where either imputed the face are left out)."""

    a, b = pq.read_table(reference), pq.read_table(other)
    va, vb = np.stack(a.column("vision").to_numpy(zero_copy_only=False)), np.stack(b.column("vision").to_numpy(zero_copy_only=False))
    ok = ~(np.asarray(a.column("vision_imputed")) | np.asarray(b.column("vision_imputed")))
    va, vb = va[ok], vb[ok]
    groups = {"blendshapes": range(len(BLENDSHAPES)), "pose": range(len(BLENDSHAPES), len(BLENDSHAPES) + len(POSE)),
              "geometry": range(len(BLENDSHAPES) + len(POSE), len(BLENDSHAPES) + len(POSE) + len(GEOMETRY))}
    out = {}
    for name, cols in groups.items():
        rs = []
        for c in cols:
            x, y = va[:, c], vb[:, c]
            if x.std() < 1e-6 and y.std() < 1e-6:
                rs.append(1.0 if np.allclose(x, y, atol=1e-4) else 0.0)
            elif x.std() < 1e-6 or y.std() < 1e-6:
                rs.append(0.0)
            else:
                rs.append(float(np.corrcoef(x, y)[0, 1]))
        out[name] = float(np.median(rs))
    return out


def asr_quality(configs: dict[str, ExtractConfig]) -> dict[str, dict[str, float]]:
    """WER (all, clean recordings) and median start error (ms) on truth16k and GRID per config."""

    asr = bench_asr()
    sets = asr.datasets()
    cases = asr.timing_cases()
    out: dict[str, dict[str, float]] = {}
    done: dict[str, dict[str, float]] = {}  # rows differing only in face settings hear the same
    for label, config in configs.items():
        key = repr(config.words)
        if key in done:
            out[label] = done[key]
            continue
        rec = make_recogniser(config.words)
        edits = refs = clean_edits = clean_refs = 0
        for set_name, items in sets.items():
            e, n = word_errors([i.reference for i in items], [rec.recognise(i.audio).text for i in items])
            edits, refs = edits + e, refs + n
            if set_name in ("jfk", "harvard"):
                clean_edits, clean_refs = clean_edits + e, clean_refs + n
        row = {"wer": edits / refs, "wer_clean": clean_edits / clean_refs}
        for case, audio, _, truth in cases:
            raw = rec.recognise(audio)
            words = [w for u in words_for(audio, config.words, recogniser=FixedRecogniser(raw)).utterances for w in u.words]
            err = asr.timing_error(asr.split_tokens(words), truth)
            row[f"timing_{case.split()[0]}"] = err["start_median"] if err else float("nan")
            row[f"timed_{case.split()[0]}"] = err["timed"] if err else 0.0
        out[label] = done[key] = row
    return out


def starter_scores(configs: dict[str, ExtractConfig], keep: Path) -> dict[str, dict[str, float]]:
    """The starter model's overall score per shared talking-head clip, per config."""

    videos = [DATA / "videos" / v for v in TALKING_HEADS]
    out = {}
    for label, config in configs.items():
        run = score_videos(videos, features_dir=keep / label / "scores", config=config)
        out[label] = {v.video_id: run.video_row(v.video_id)["score"] for v in run.scored}
    return out


def print_quality(configs: dict[str, ExtractConfig], rows: list[dict], keep: Path) -> None:
    asr = asr_quality(configs)
    scores = starter_scores(configs, keep)
    given = {r["label"]: r["output"] for r in rows if r["clip"] == LONG and r["mode"] == "words given"}
    print("\n| settings | WER all | WER clean | timing truth16k ms | timing GRID ms | face r: blendshapes | pose | geometry | starter score: max diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label in configs:
        q = asr[label]
        face = face_agreement(given["reference"], given[label])
        diff = max(abs(scores[label][v] - scores["reference"][v]) for v in scores["reference"] if v in scores[label])
        print(f"| {label} | {q['wer']:.3f} | {q['wer_clean']:.3f} | {q['timing_truth16k']:.0f} ({q['timed_truth16k']:.0%} timed) | "
              f"{q['timing_grid']:.0f} | {face['blendshapes']:.3f} | {face['pose']:.3f} | {face['geometry']:.3f} | {diff:.3f} |")
    print("\nstarter model, overall score per clip: " + "; ".join(
        f"{v}: " + " / ".join(f"{scores[label].get(v, float('nan')):+.2f}" for label in configs) for v in scores["reference"]))


def face_rates(rates: list[float], keep: Path) -> None:
    """What sampling faces more sparsely costs, against the truth a rate estimates: each word's
    facial features averaged over every frame of the video. On the 60 s clip (words given) and
    on the shared talking heads together (recognised words, the same at every rate). Each rate
    twice: landmarking every sampled frame, and only the frames the words read (the default)."""
    every = 1000.0  # above any video's frame rate: every decoded frame is sampled
    heads = [DATA / "videos" / v for v in TALKING_HEADS]
    long = long_clip()
    transcript = recognised_transcript(long)
    files: dict[tuple[float, str], tuple[Path, Path]] = {}
    seconds: dict[tuple[float, str], float] = {}
    runs = [(every, "all")] + [(fps, frames) for fps in rates for frames in ("all", "words")]
    for fps, frames in runs:
        config = ExtractConfig().with_overrides({"facial.fps": fps, "facial.frames": frames})
        folder = keep / f"rate{fps:g}-{frames}"
        out = extract_video(long, folder / "long", config, transcript=transcript, force=True)
        seconds[fps, frames] = out.summary["stages_s"]["vision"]
        tables = [pq.read_table(extract_video(v, folder / "heads", config, force=True).output) for v in heads]
        joined = folder / "heads.parquet"
        pq.write_table(pa.concat_tables(tables), joined)
        files[fps, frames] = (out.output, joined)
    print(f"\nface sampling rate against every frame — {time.strftime('%Y-%m-%d')}, {platform.node()}")
    print("per-word Pearson r, median over each group; the 60 s clip, then the talking heads together\n")
    print("| faces per second | frames | vision s (60 s clip) | blendshapes | pose | geometry "
          "| heads: blendshapes | pose | geometry |")
    print("|---|---|---|---|---|---|---|---|---|")
    for fps, frames in runs[1:]:
        a, b = (face_agreement(files[every, "all"][k], files[fps, frames][k]) for k in (0, 1))
        print(f"| {fps:g} | {frames} | {seconds[fps, frames]:.2f} | {a['blendshapes']:.3f} | {a['pose']:.3f} | "
              f"{a['geometry']:.3f} | {b['blendshapes']:.3f} | {b['pose']:.3f} | {b['geometry']:.3f} |")


def parse_value(text: str):
    """10 -> 10, true -> True, tiny.en -> "tiny.en" (JSON where it parses, else the text)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (the median is shown)")
    parser.add_argument("--clips", nargs="+", choices=["short", "long"], default=["short", "long"])
    parser.add_argument("--modes", nargs="+", choices=["asr", "given"], default=["asr", "given"])
    parser.add_argument("--no-quality", action="store_true", help="speed rows only")
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME KEY=VALUE",
                        help="an extra row: a name, then settings (words.beam_size=1 facial.fps=10 ...)")
    parser.add_argument("--keep", type=Path, help="keep the feature files in this folder")
    parser.add_argument("--face-rates", type=float, nargs="+", metavar="FPS",
                        help="instead: per-word facial features at these rates against every frame")
    args = parser.parse_args()
    if args.face_rates:
        with tempfile.TemporaryDirectory() as tmp:
            face_rates(args.face_rates, args.keep or Path(tmp))
        return
    configs = {"reference": ExtractConfig().with_overrides(REFERENCE), "defaults": ExtractConfig()}

    if ctranslate2.get_cuda_device_count() > 0:  # GPU rows are the defaults; these are the CPU ones
        configs["defaults on CPU"] = ExtractConfig().with_overrides({"words.device": "cpu"})
    for name, *settings in args.variant:
        configs[name] = ExtractConfig().with_overrides({k: parse_value(v) for k, v in (s.split("=", 1) for s in settings)})

    load_s = {label: load_models(c) for label, c in configs.items()}
    every = {"short": (SHORT, DATA / "videos" / "WDA_KatieHill_000.mp4"), "long": (LONG, None)}
    clips = {every[c][0]: every[c][1] or long_clip() for c in args.clips}
    modes = [{"asr": "ASR", "given": "words given"}[m] for m in args.modes]
    with tempfile.TemporaryDirectory() as tmp:
        keep = args.keep or Path(tmp)
        for config in configs.values():  # warm-up (JIT caches, first-call allocations), not measured
            extract_video(DATA / "videos" / "WDA_KatieHill_000.mp4", keep / "warmup", config, force=True)
        rows = speed_rows(configs, clips, modes, args.repeat, keep)
        print(f"\nmmpipe extraction benchmark — {time.strftime('%Y-%m-%d')}, {platform.node()}, "
              f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}")
        for label, config in configs.items():
            w, f = config.words, config.facial
            print(f"{label}: Whisper {w.asr_model} beam {w.beam_size} ({w.device}/{w.compute_type}), faces {f.fps:g} fps "
                  f"({f.frames} frames) max width {f.max_width}; models load {load_s[label]:.1f} s")
        print("vision runs in a thread beside text+audio, and beside words too with every frame (facial.frames=all): "
              "stage times add up to more than the total\n")
        print_speed(rows)
        if not args.no_quality and LONG in clips and "words given" in modes:
            print_quality(configs, rows, keep)


if __name__ == "__main__":
    main()
