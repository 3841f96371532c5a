"""Speech recognition and word timing, side by side on the real speech in ../shared/data.

    python bench/asr.py [--json]    (from the repository root, with the dev extras: jiwer)

Table 1: word error rate and real-time factor (recognition seconds per audio second; model load
excluded and shown apart) for pocketsphinx, Whisper tiny.en and Whisper base (int8, beam 5,
temperature 0, VAD), and base with greedy decoding (``--asr-beam 1``), all in one run on:
jfk.flac, the Harvard file (list 1 sentences 1, 2, 3 and 9, the only ones it holds), pyannote_sample.wav (its .stm), the five 8 kHz asterisk prompts
and the eleven GRID clips. WER is computed over each set (edits / reference words, by jiwer)
after the usual normalisation: lower case, no punctuation, numbers as words (``normalize_text``).

Table 2: word timing error (ms) against exact timings, on ``alignment/truth16k`` and on GRID
``id2_vcd_swwp2s`` with the corpus' own alignment: pocketsphinx forced alignment of the true
transcript, Whisper's own word times, and Whisper + realignment (the default words stage).
Whisper rows are measured only where it heard the right words (otherwise marked).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from core.config import WordsConfig  # noqa: E402
from core.records import Audio, Word  # noqa: E402
from pipeline.asr import PocketsphinxRecogniser, WhisperRecogniser  # noqa: E402
from pipeline.forced_alignment import default_aligner  # noqa: E402
from pipeline.media import decode_audio  # noqa: E402
from pipeline.spoken import normalize_text, tokenize  # noqa: E402
from pipeline.words import words_for  # noqa: E402
from tests.asr_tools import FixedRecogniser, word_errors  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
HARVARD = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It's easy to tell the depth of a well. Four hours of steady work faced us."
)


@dataclass
class Item:
    name: str
    audio: Audio
    reference: str


def datasets() -> dict[str, list[Item]]:
    speech = DATA / "speech"
    load = lambda p: decode_audio(p, 16000)  # noqa: E731
    stm = [line.split(None, 5)[5] for line in (speech / "pyannote_sample.stm").read_text().splitlines() if line.strip()]
    asterisk = []
    for line in (speech / "asterisk" / "transcripts.txt").read_text().splitlines():
        key, _, text = line.partition(":")
        text = re.sub(r"\(.*?\)", "", text)  # "(simple tone sound plays)" is not speech
        asterisk.append(Item(key, load(speech / "asterisk" / f"{key}.wav"), text))
    grid = []
    for line in (DATA / "grid" / "transcripts.tsv").read_text().splitlines()[1:]:
        file, _, text = line.split("\t")
        grid.append(Item(file, load(DATA / "grid" / file), text))
    return {
        "jfk": [Item("jfk", load(speech / "jfk.flac"), (speech / "jfk.txt").read_text())],
        "harvard": [Item("harvard", load(speech / "harvard_list1_16k.wav"), HARVARD)],
        "pyannote (phone)": [Item("pyannote", load(speech / "pyannote_sample.wav"), " ".join(stm))],
        "asterisk (8 kHz)": asterisk,
        "grid (11 clips)": grid,
        "truth16k (espeak)": [Item("truth16k", load(DATA / "alignment" / "truth16k.wav"),
                                   (DATA / "alignment" / "truth16k.txt").read_text())],
    }


def recognisers(only: list[str] | None = None) -> dict[str, tuple[object, float]]:
    out = {}
    for label, make in (
        ("pocketsphinx", lambda: PocketsphinxRecogniser(WordsConfig(asr_backend="pocketsphinx"))),
        ("whisper tiny.en", lambda: WhisperRecogniser(WordsConfig(asr_model="tiny.en"))),
        ("whisper base", lambda: WhisperRecogniser(WordsConfig(asr_model="base"))),
        ("base greedy", lambda: WhisperRecogniser(WordsConfig(asr_model="base", beam_size=1))),
        ("tiny.en greedy", lambda: WhisperRecogniser(WordsConfig(asr_model="tiny.en", beam_size=1))),
    ):
        if only and label not in only:
            continue
        t0 = time.perf_counter()
        rec = make()
        getattr(rec, "model", None)  # load now, so recognition times exclude it
        if hasattr(rec, "decoder"):
            rec.decoder  # noqa: B018
        rec.recognise(Audio(np.zeros(16000, np.float32), 16000))  # warm-up
        out[label] = (rec, time.perf_counter() - t0)
    return out


def timing_error(words: list[Word], truth: list[tuple[str, float, float]]) -> dict | None:
    """Start/end errors over the words heard as in the truth (a recogniser that misses or
    changes a word is timed on the others, and the share of words timed is reported)."""
    heard = [" ".join(normalize_text(w.text)) for w in words]
    pairs = [
        (words[i + k], truth[j + k])
        for block in difflib.SequenceMatcher(None, heard, [t[0] for t in truth], autojunk=False).get_matching_blocks()
        for i, j, n in [block] for k in range(n)
    ]
    if not pairs:
        return None
    start = np.abs([w.start - t[1] for w, t in pairs]) * 1000
    end = np.abs([w.end - t[2] for w, t in pairs]) * 1000
    return {
        "start_median": float(np.median(start)), "start_mean": float(start.mean()),
        "end_median": float(np.median(end)), "end_mean": float(end.mean()), "timed": len(pairs) / len(truth),
    }


def timing_cases() -> list[tuple[str, Audio, str, list[tuple[str, float, float]]]]:
    truth16k = [tuple(x) for x in json.loads((DATA / "alignment" / "truth16k.json").read_text())]
    grid = []
    for line in (DATA / "grid" / "swwp2s.align").read_text().splitlines():
        start, end, word = line.split()
        if word != "sil":
            grid.append((word, int(start) / 25000, int(end) / 25000))
    return [
        ("truth16k", decode_audio(DATA / "alignment" / "truth16k.wav"),
         (DATA / "alignment" / "truth16k.txt").read_text(), truth16k),
        ("grid swwp2s", decode_audio(DATA / "grid" / "id2_vcd_swwp2s.mpg"),
         " ".join(t[0] for t in grid), grid),
    ]


def split_tokens(words: list[Word]) -> list[Word]:
    """Whisper writes "P2" where GRID has "p" "two": give each spoken word its share of time."""
    out = []
    for w in words:
        spoken = [s for tok in tokenize(w.text) for s in tok.spoken] or [w.text]
        step = (w.end - w.start) / len(spoken)
        out += [Word(s, w.start + i * step, w.start + (i + 1) * step, w.timing) for i, s in enumerate(spoken)]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--only", nargs="+", help="recogniser columns to run (labels as printed)")
    args = parser.parse_args()

    sets = datasets()
    recs = recognisers(args.only)
    wer_rows: dict[str, dict[str, tuple[float, float]]] = {}
    totals: dict[str, list[float]] = {}
    for label, (rec, _) in recs.items():
        for set_name, items in sets.items():
            heard: list[str] = []
            seconds = audio_s = 0.0
            for item in items:
                t0 = time.perf_counter()
                heard.append(rec.recognise(item.audio).text)
                seconds += time.perf_counter() - t0
                audio_s += item.audio.duration
            n_edits, n_ref = word_errors([item.reference for item in items], heard)
            wer_rows.setdefault(set_name, {})[label] = (n_edits / n_ref, seconds / audio_s)
            t = totals.setdefault(label, [0, 0, 0.0, 0.0])
            t[0] += n_edits
            t[1] += n_ref
            t[2] += seconds
            t[3] += audio_s
    wer_rows["all"] = {label: (t[0] / t[1], t[2] / t[3]) for label, t in totals.items()}

    timing_rows: list[tuple[str, str, dict | None]] = []
    cfg = WordsConfig()
    for case, audio, text, truth in timing_cases():
        forced = default_aligner().align(audio, tokenize(text))
        timing_rows.append((case, "pocketsphinx forced alignment (true text)", timing_error(split_tokens(forced), truth)))
        for label, (rec, _) in recs.items():
            if label == "pocketsphinx":
                continue
            raw = rec.recognise(audio)
            timing_rows.append((case, f"{label}: own word times", timing_error(split_tokens(raw.words), truth)))
            words = [w for u in words_for(audio, cfg, recogniser=FixedRecogniser(raw)).utterances for w in u.words]
            timing_rows.append((case, f"{label} + realign", timing_error(split_tokens(words), truth)))

    if args.json:
        print(json.dumps({
            "wer_rtf": {s: {k: {"wer": w, "rtf": r} for k, (w, r) in row.items()} for s, row in wer_rows.items()},
            "load_s": {k: v[1] for k, v in recs.items()},
            "timing_ms": [{"case": c, "method": m, **(e or {"error": "words differ from the truth"})} for c, m, e in timing_rows],
        }, indent=2))
        return 0

    labels = list(recs)
    print(f"mmpipe ASR benchmark - {time.strftime('%Y-%m-%d')} - {platform.machine()}, "
          f"{os.cpu_count()} CPU cores, int8 CTranslate2")
    print()
    head = f"{'set':<18}" + "".join(f"{lab + ' WER':>22}{'RTF':>7}" for lab in labels)
    print(head)
    print("-" * len(head))
    for set_name, row in wer_rows.items():
        print(f"{set_name:<18}" + "".join(f"{row[lab][0]:>22.3f}{row[lab][1]:>7.2f}" for lab in labels))
    print("model load (s)    " + "".join(f"{recs[lab][1]:>29.1f}" for lab in labels))
    print()
    print(f"{'word timing error (ms)':<58}{'start med':>10}{'mean':>7}{'end med':>9}{'mean':>7}{'timed':>7}")
    for case, method, err in timing_rows:
        name = f"{case}: {method}"
        if err is None:
            print(f"{name:<58}{'(no word heard as in the truth)':>33}")
        else:
            print(f"{name:<58}{err['start_median']:>10.0f}{err['start_mean']:>7.0f}"
                  f"{err['end_median']:>9.0f}{err['end_mean']:>7.0f}{err['timed']:>7.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
