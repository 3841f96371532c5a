"""Forced alignment with pocketsphinx on real recordings with known word timings."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
import pytest

from core.config import WordsConfig
from core.records import Audio, Word
from pipeline.forced_alignment import Anchor, PocketsphinxAligner, default_aligner, letter_to_sound
from pipeline.spoken import tokenize
from pipeline.words import NoSpeechError, words_for
from tests.conftest import DATA

TRUTH = DATA / "alignment"
JFK_TEXT = (
    "And so, my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
VALID_PHONES = set(
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW "
    "V W Y Z ZH".split()
)


@lru_cache(maxsize=None)
def _decode(path: str) -> np.ndarray:
    with av.open(path) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
        chunks = [
            f.to_ndarray().reshape(-1)
            for frame in container.decode(stream)
            for f in resampler.resample(frame)
        ]
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32)


def load_audio(path: str | Path) -> Audio:
    """16 kHz mono float32 with PyAV (a local loader: these tests do not depend on media.py)."""
    return Audio(_decode(str(path)).copy(), 16000)


def timing_errors(words: list[Word], truth: list[tuple[str, float, float]]) -> dict[str, float]:
    assert len(words) == len(truth)
    start = np.abs([w.start - t[1] for w, t in zip(words, truth)]) * 1000
    end = np.abs([w.end - t[2] for w, t in zip(words, truth)]) * 1000
    return {
        "start_median_ms": float(np.median(start)),
        "start_mean_ms": float(start.mean()),
        "start_p90_ms": float(np.percentile(start, 90)),
        "end_median_ms": float(np.median(end)),
        "end_mean_ms": float(end.mean()),
        "end_p90_ms": float(np.percentile(end, 90)),
    }


@pytest.fixture(scope="module")
def truth16k():
    truth = [tuple(x) for x in json.loads((TRUTH / "truth16k.json").read_text())]
    return load_audio(TRUTH / "truth16k.wav"), (TRUTH / "truth16k.txt").read_text(), truth


def test_forced_alignment_error_on_truth16k(truth16k):
    audio, text, truth = truth16k
    words = default_aligner().align(audio, tokenize(text))
    assert all(w.timing == "aligned" for w in words)
    err = timing_errors(words, truth)
    print("truth16k forced alignment:", err)
    assert err["start_median_ms"] < 50, err
    assert err["end_median_ms"] < 50, err
    assert err["start_p90_ms"] < 100, err


@pytest.mark.parametrize("mode", ["windowed", "anchored"])
def test_long_audio_paths_keep_the_accuracy(truth16k, mode):
    """The searches used for long recordings (10 s windows; hint groups), forced onto 19 s."""
    audio, text, truth = truth16k
    aligner = PocketsphinxAligner(max_span_s=5.0, chunk_s=6.0)
    tokens = tokenize(text)
    anchors = None
    if mode == "anchored":  # roughly where Whisper puts its two segments
        anchors = [Anchor(0.0, 11.1, 0, 19), Anchor(11.1, 18.9, 19, len(tokens))]
    words = aligner.align(audio, tokens, anchors)
    assert all(w.timing == "aligned" for w in words)
    err = timing_errors(words, truth)
    assert err["start_median_ms"] < 50, err


def test_grid_clip_with_letter_digit_words():
    """GRID's own alignment (1/25000 s units) for 'set white with p two soon', written as
    Whisper writes it: 'Set white with P2 soon.'"""
    audio = load_audio(DATA / "grid" / "id2_vcd_swwp2s.mpg")
    truth = []
    for line in (DATA / "grid" / "swwp2s.align").read_text().splitlines():
        start, end, word = line.split()
        if word != "sil":
            truth.append((word, int(start) / 25000, int(end) / 25000))
    words = default_aligner().align(audio, tokenize("Set white with P2 soon."))
    assert [w.text for w in words] == ["Set", "white", "with", "P2", "soon"]
    # "P2" spans both of GRID's words "p" and "two"
    merged = truth[:3] + [("p2", truth[3][1], truth[4][2])] + truth[5:]
    err = timing_errors(words, merged)
    assert err["start_median_ms"] < 60, err


def test_words_missing_from_the_dictionary_still_align():
    audio = load_audio(DATA / "speech" / "jfk.flac")
    aligner = default_aligner()
    reference = aligner.align(audio, tokenize(JFK_TEXT))
    assert reference[4].text == "Americans" and reference[4].start < 1.8
    misspelled = JFK_TEXT.replace("Americans", "Amerrikans").replace("your country can", "your kuntry can")
    words = aligner.align(audio, tokenize(misspelled))
    assert aligner.pronunciation("amerrikans") and aligner.pronunciation("kuntry")
    assert all(w.timing == "aligned" for w in words)
    for ref, got in zip(reference, words):
        assert abs(ref.start - got.start) < 0.1, (ref, got)


def test_unspoken_oov_and_number_words_get_timings_between_neighbours(truth16k):
    """A transcript with words nobody said ("MMLatch", "2026", "Zyxqv"): every word still gets
    a timing, the real words stay exact, the extra ones sit between their neighbours."""
    audio, text, truth = truth16k
    words = text.split()
    extra = {5: "MMLatch", 13: "2026", 22: "Zyxqv"}
    for at, word in sorted(extra.items()):
        words.insert(at, word)
    got = default_aligner().align(audio, tokenize(" ".join(words)))
    assert len(got) == len(words)
    assert all(0 <= w.start <= w.end <= audio.duration for w in got)
    assert all(a.start <= b.start for a, b in zip(got, got[1:]))
    real = [w for i, w in enumerate(got) if i not in extra]
    err = timing_errors(real, truth)
    assert err["start_median_ms"] < 50, err
    for at in extra:
        assert got[at - 1].end - 0.05 <= got[at].start <= got[at + 1].start + 0.05


def test_an_alignment_does_not_depend_on_what_the_aligner_did_before(truth16k):
    """Decoders are kept between calls (only their front ends start afresh): clip A, then
    another clip with made-up words and a word never said (the wide-beam retry), then A again
    gives A's timings from a new aligner, to the bit."""
    jfk = load_audio(DATA / "speech" / "jfk.flac")
    text = JFK_TEXT.replace("Americans", "Amerrikans")
    audio, truth_text, _ = truth16k
    other = tokenize("Zorbly " + truth_text.replace("movie", "moovie") + " kuntry")

    def timings(words: list[Word]) -> list[tuple]:
        return [(w.text, w.start, w.end, w.timing) for w in words]

    fresh, fresh_other = PocketsphinxAligner().align(jfk, tokenize(text)), PocketsphinxAligner().align(audio, other)
    aligner = PocketsphinxAligner()
    first = aligner.align(jfk, tokenize(text))
    assert timings(aligner.align(audio, other)) == timings(fresh_other)
    assert timings(first) == timings(aligner.align(jfk, tokenize(text))) == timings(fresh)
    assert timings(aligner.align(audio, other)) == timings(fresh_other)  # the wide decoder kept, too


def test_made_up_pronunciations_use_the_model_phones():
    for word in ("mmlatch", "zyxqv", "schtroumpf", "quixotically", "tchotchke", "y", "ok"):
        phones = letter_to_sound(word).split()
        assert phones and set(phones) <= VALID_PHONES, (word, phones)
    aligner = default_aligner()
    assert aligner.pronunciation("nlp") == "EH N EH L P IY"  # no vowel: spelled
    assert aligner.pronunciation("country") == "K AH N T R IY"  # the dictionary's own


def test_unaligned_runs_are_spread_between_neighbours():
    aligner = PocketsphinxAligner()
    tokens = tokenize("one two three four five")
    energy = np.full(400, -20.0, np.float32)  # 4 s of "speech"
    times = [(0, 50), None, None, (200, 250), None]
    words = aligner._words(tokens, times, energy)
    assert [w.timing for w in words] == ["aligned", "interpolated", "interpolated", "aligned", "interpolated"]
    assert words[0].end <= words[1].start < words[1].end <= words[2].start < words[2].end <= words[3].start
    # longer words get more time ("three" > "two")
    assert words[2].end - words[2].start > words[1].end - words[1].start
    assert words[4].start >= words[3].end and words[4].end <= 4.0


def test_words_for_a_transcript_gives_utterances():
    audio = load_audio(DATA / "speech" / "jfk.flac")
    cfg = WordsConfig()
    utts = words_for(audio, cfg, "And so, my fellow Americans. Ask not what your country can do "
                     "for you; ask what you can do for your country!").utterances
    assert [u.index for u in utts] == [0, 1]
    assert utts[0].text == "And so my fellow Americans"
    assert utts[1].words[-1].text == "country" and utts[1].end < audio.duration


def test_words_for_a_subtitle_file(tmp_path):
    audio = load_audio(DATA / "speech" / "jfk.flac")
    srt = tmp_path / "jfk.srt"
    srt.write_text(
        "1\n00:00:00,000 --> 00:00:03,000\nand so my fellow americans\n\n"
        "2\n00:00:03,000 --> 00:00:11,000\nask not what your country can do for you "
        "ask what you can do for your country\n"
    )
    utts = words_for(audio, WordsConfig(), srt).utterances  # a Path is read as a file
    # no punctuation in the cues: the cues give the utterances
    assert [len(u.words) for u in utts] == [5, 17]
    assert all(w.timing == "aligned" for u in utts for w in u.words)


def test_silent_audio_is_no_speech_even_with_a_transcript():
    silent = Audio(np.zeros(16000 * 2, np.float32), 16000)
    with pytest.raises(NoSpeechError, match="no speech found") as err:
        words_for(silent, WordsConfig(), "hello world", source="clip.mp4")
    assert str(err.value).startswith("clip.mp4: ")
