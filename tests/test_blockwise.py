"""Long audio block by block: every block-wise routine against the whole-signal result on real
speech (~100 s of joined recordings), and working memory that follows the block, not the input
(numpy allocations counted with tracemalloc, which does not depend on the machine)."""

from __future__ import annotations

import re
import tracemalloc

import librosa
import numpy as np
import pytest
import soundfile

from core.blocks import blocks, chunks
from core.config import AcousticConfig, WordsConfig
from core.records import Audio, Word
from extractors.acoustic import AcousticExtractor, PitchInput
from pipeline import forced_alignment as aligner
from pipeline import media, pooling, signal
from pipeline.asr import WhisperRecogniser, speech_blocks
from tests.asr_tools import word_error_rate
from tests.conftest import SPEECH
from tests.media_fixtures import load_audio

SR = 16000
HARVARD = (  # the sentences harvard_list1_16k.wav holds (list 1: 1, 2, 3 and 9)
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It's easy to tell the depth of a well. Four hours of steady work faced us."
)


def _stm_text() -> str:
    lines = (SPEECH / "pyannote_sample.stm").read_text().splitlines()
    return " ".join(line.split(None, 5)[5] for line in lines if line.strip())


def _ivr_text() -> str:
    for line in (SPEECH / "asterisk" / "transcripts.txt").read_text().splitlines():
        key, _, text = line.partition(":")
        if key == "basic-pbx-ivr-main":
            return re.sub(r"\(.*?\)", "", text)
    raise AssertionError("basic-pbx-ivr-main transcript missing")


@pytest.fixture(scope="module")
def transcribed() -> tuple[np.ndarray, str]:
    """~79 s of real speech with known words (JFK, Harvard sentences, a telephone conversation,
    a telephone prompt), joined by half-second pauses, and its reference text."""
    parts = [
        (SPEECH / "jfk.flac", (SPEECH / "jfk.txt").read_text()),
        (SPEECH / "harvard_list1_16k.wav", HARVARD),
        (SPEECH / "pyannote_sample.wav", _stm_text()),
        (SPEECH / "asterisk" / "basic-pbx-ivr-main.wav", _ivr_text()),
    ]
    pause = np.zeros(SR // 2, np.float32)
    samples = np.concatenate([x for path, _ in parts for x in (load_audio(path), pause)])
    return samples, " ".join(text for _, text in parts)


@pytest.fixture(scope="module")
def speech(transcribed) -> np.ndarray:
    """~100 s of real speech: the above plus two radio addresses."""
    radio = [load_audio(SPEECH / name) for name in ("RD_Radio31_000.wav", "RD_Radio34_002.wav")]
    return np.concatenate([transcribed[0], *radio])


def traced_peak_mb(fn) -> tuple[object, float]:
    """``fn()`` and the peak of the numpy/Python memory it allocated (MB)."""
    tracemalloc.start()
    try:
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, peak / 2**20


# -- the block helper ---------------------------------------------------------------------------


@pytest.mark.parametrize("total,size,context", [(10, 4, 1), (1000, 300, 7), (3001, 3000, 4), (7, 7, 3), (0, 5, 0)])
def test_blocks_cover_everything_once_in_even_blocks(total, size, context):
    spans = blocks(total, size, context)
    assert spans[0].start == 0 and spans[-1].stop == total
    assert all(a.stop == b.start for a, b in zip(spans, spans[1:]))
    assert all(b.stop - b.start <= size for b in spans)
    if len(spans) > 1:  # never a full block and a sliver
        assert min(b.stop - b.start for b in spans) >= size // 2
    for b in spans:
        assert b.lo == max(0, b.start - context) and b.hi == min(total, b.stop + context)
        assert list(range(b.lo, b.hi))[b.owned] == list(range(b.start, b.stop))
    if total <= size:
        assert len(spans) == 1


def test_blocks_cut_where_asked_within_a_quarter_block():
    asked: list[tuple[int, int]] = []

    def latest(lo: int, hi: int, target: int) -> int:
        assert lo <= target < hi
        asked.append((lo, hi))
        return hi - 1

    spans = blocks(10_000, 1000, cut=latest)
    assert spans[-1].stop == 10_000 and len(asked) == len(spans) - 1
    for b, (lo, hi) in zip(spans, asked):
        assert b.stop == hi - 1 and hi - lo <= 501 and b.stop - b.start <= 1000
    assert len(blocks(10_000, 1000, cut=lambda lo, hi, target: target)) == 10
    assert chunks(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)] and chunks(0, 4) == [slice(0, 0)]


# -- decoding, level, peak ---------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 37, -5, -10_000])
def test_sample_pages_join_like_one_concatenate(monkeypatch, offset):
    monkeypatch.setattr(media._SampleBuffer, "PAGE", 1000)
    rng = np.random.default_rng(0)
    pieces = [rng.integers(-32768, 32768, int(n)).astype(np.int16) for n in rng.integers(0, 700, 40)]
    buffer = media._SampleBuffer()
    for p in pieces:
        buffer.append(p)
    whole = np.concatenate(pieces)
    expected = np.concatenate([np.zeros(offset, np.int16), whole]) if offset >= 0 else whole[-offset:]
    np.testing.assert_array_equal(buffer.join(offset), expected)
    assert buffer.pages == [] and buffer.size == 0  # each page let go once copied


def test_decoded_long_audio_is_the_same_samples(tmp_path, speech, monkeypatch):
    monkeypatch.setattr(media._SampleBuffer, "PAGE", 1 << 18)  # ~100 s: several pages
    path = tmp_path / "long.wav"
    soundfile.write(path, speech, SR, subtype="FLOAT")
    decoded = media.decode_audio(path)
    np.testing.assert_array_equal(decoded.samples, _pcm16_whole(speech))


def test_level_by_blocks_equals_whole_signal(monkeypatch, speech):
    monkeypatch.setattr(signal, "_BLOCK", 160 * 777)
    pcm = _pcm16_whole(speech)
    n = len(pcm) // 160
    energy = 10 * np.log10(np.mean((pcm[: n * 160].astype(np.float32).reshape(n, 160) / 32768.0) ** 2, axis=1) + 1e-10)
    assert media.audio_level_dbfs(Audio(speech, SR)) == float(np.percentile(energy.astype(np.float32), 95))


# -- aligner input ------------------------------------------------------------------------------


def _pcm16_whole(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)


def _comfort_noise_whole(pcm: np.ndarray, level: float = 3.0) -> np.ndarray:
    """The whole-signal formula (one noise draw for the whole recording)."""
    n = len(pcm) // 160
    rms = np.sqrt(np.mean(pcm[: n * 160].reshape(n, 160).astype(np.float32) ** 2, axis=1))
    quiet = rms < 3.0
    mask = np.concatenate([np.repeat(quiet, 160), np.full(len(pcm) - n * 160, bool(quiet[-1]))])
    noise = np.random.default_rng(0).standard_normal(len(pcm)) * level
    return np.clip(np.round(pcm.astype(np.float32) + np.where(mask, noise, 0.0)), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def with_silence(speech) -> Audio:
    """Speech with 3 s of digital silence inside (comfort noise goes there) and a ragged end."""
    return Audio(np.concatenate([speech[: 40 * SR], np.zeros(3 * SR + 77, np.float32), speech[40 * SR :]]), SR)


def test_aligner_int16_noise_and_energy_by_blocks(monkeypatch, with_silence):
    monkeypatch.setattr(signal, "_BLOCK", 160 * 777)
    pcm = with_silence.samples  # int16 as held
    np.testing.assert_array_equal(signal.with_comfort_noise(pcm), _comfort_noise_whole(pcm))
    n = len(pcm) // 160
    energy = 10 * np.log10(np.mean((pcm[: n * 160].astype(np.float32).reshape(n, 160) / 32768.0) ** 2, axis=1) + 1e-10)
    np.testing.assert_array_equal(signal.frame_energy_db(pcm), energy.astype(np.float32))


def test_lazy_int16_slices_equal_the_whole_arrays(monkeypatch, with_silence):
    monkeypatch.setattr(signal, "_NOISE_BLOCK", 160 * 333)
    pcm = with_silence.samples
    noisy = _comfort_noise_whole(pcm)
    lazy = signal.Pcm16.of(with_silence)
    lazy_noisy = lazy.with_comfort_noise(3.0)
    rng = np.random.default_rng(1)
    for _ in range(40):
        lo = int(rng.integers(0, len(pcm)))
        hi = int(rng.integers(lo, min(len(pcm), lo + 95 * SR) + 1))
        np.testing.assert_array_equal(lazy[lo:hi], pcm[lo:hi])
        np.testing.assert_array_equal(lazy_noisy[lo:hi], noisy[lo:hi])
    assert len(lazy) == len(pcm) and lazy[0:0].size == 0
    np.testing.assert_array_equal(signal.frame_energy_db(lazy), signal.frame_energy_db(pcm))
    assert signal.Pcm16.of(Audio(np.full(SR, 0.1, np.float32), SR)).with_comfort_noise(3.0) is None


def test_aligner_signal_memory_follows_the_block(with_silence):
    """~5 min with digital silence: no whole-recording int16 copies, clean or noisy."""
    audio = Audio(np.tile(with_silence.samples, 3), SR)
    sig, peak = traced_peak_mb(lambda: aligner._Signal.of(audio, 3.0))
    assert sig.robust is not sig.clean  # comfort noise in use
    print(f"aligner signal, 5 min: {peak:.0f} MB allocated at most")
    assert peak < 40  # whole-signal int16 copies and float64 noise took ~150 MB here


# -- acoustic features --------------------------------------------------------------------------


def test_pitch_input_streams_exactly_the_whole_signal_resampling(speech):
    for n in (1, 399, 16_001, 40 * SR + 3):
        y = speech[:n]
        whole = librosa.resample(y, orig_sr=SR, target_sr=8000, res_type="soxr_hq").astype(np.float64)
        source = PitchInput(y, SR, 160, 500.0)  # 16 kHz, 10 ms hop, F0 up to 500 Hz: 8 kHz
        assert source.resampled and source.length == len(whole)
        got = np.concatenate([source.segment(s.start, s.stop) for s in chunks(len(whole), 50_000)])
        np.testing.assert_array_equal(got, whole)


@pytest.mark.parametrize("block_s", [7.0, 30.0])
def test_acoustic_blocks_are_bit_identical_to_one_pass(speech, block_s):
    """Every frame, including those at block edges: the frame-local values see the same samples,
    and the log-mel floor and deltas are taken over the whole track either way."""
    audio = Audio(speech, SR)
    one = AcousticExtractor()
    one.block_s = 1e9
    blocked = AcousticExtractor()
    blocked.block_s = block_s
    a, b = one.features(audio), blocked.features(audio)
    assert len(blocks(len(a.times), int(block_s * 100))) > 1
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.values, b.values)
    blocked.features(Audio(speech[::-1].copy(), SR))  # whatever ran before: the same bytes
    np.testing.assert_array_equal(blocked.features(audio).values, b.values)


def test_pyin_blocks_equal_one_pass(speech):
    """pyin decodes a path over all frames; 3 s of context either side of each block is enough
    for the same path (here: every frame identical)."""
    audio = Audio(speech[: 5 * SR], SR)
    cfg = AcousticConfig(pitch="pyin")
    one, blocked = AcousticExtractor(cfg), AcousticExtractor(cfg)
    one.block_s, blocked.block_s = 1e9, 2.0
    np.testing.assert_array_equal(one.features(audio).values, blocked.features(audio).values)


def test_acoustic_working_memory_follows_the_block(speech):
    """5 minutes of audio: beyond the track itself (T x 48 float32) only one 30 s block is
    worked on at a time (one pass over the whole 5 min allocated ~1.5 GB)."""
    audio = Audio(np.tile(speech, 3)[: 300 * SR], SR)
    extractor = AcousticExtractor()
    extractor.warm_up()
    track, peak = traced_peak_mb(lambda: extractor.features(audio))
    kept = track.values.nbytes / 2**20
    print(f"acoustic, 5 min: {peak:.0f} MB allocated at most, {kept:.0f} MB of it the track")
    assert peak < kept + 150, f"{peak:.0f} MB allocated for {kept:.0f} MB of results"


# -- speech recognition -------------------------------------------------------------------------


def test_speech_blocks_cut_at_pauses(transcribed):
    samples, _ = transcribed
    spans = speech_blocks(_pcm16_whole(samples), 30.0)
    assert spans[0][0] == 0 and spans[-1][1] == len(samples) and len(spans) >= 3
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(hi - lo <= 30 * SR for lo, hi in spans)
    for _, cut in spans[:-1]:  # a cut lies in a pause: 100 ms around it are >30 dB under the speech
        around = samples[cut - 800 : cut + 800]
        assert 20 * np.log10(np.sqrt(np.mean(around**2)) + 1e-9) < 20 * np.log10(np.sqrt(np.mean(samples**2))) - 30
    assert speech_blocks(_pcm16_whole(samples[: 20 * SR]), 30.0) == [(0, 20 * SR)]


@pytest.mark.slow
def test_whisper_blocks_hear_what_one_pass_hears(transcribed):
    """~79 s in 30 s blocks against one pass (tiny.en for speed): the same words within a few
    percent, no worse against the reference, every word inside its block."""
    samples, reference = transcribed
    rec = WhisperRecogniser(WordsConfig(asr_model="tiny.en"))
    rec.block_s = 1e9
    whole = rec.recognise(Audio(samples, SR))
    rec.block_s = 30.0
    blocked = rec.recognise(Audio(samples, SR))
    text = lambda t: " ".join(w.text for w in t.words)  # noqa: E731
    print("WER whole", word_error_rate(reference, text(whole)), "blocks", word_error_rate(reference, text(blocked)),
          "between", word_error_rate(text(whole), text(blocked)))
    assert word_error_rate(text(whole), text(blocked)) <= 0.08
    assert word_error_rate(reference, text(blocked)) <= word_error_rate(reference, text(whole)) + 0.03
    starts = [w.start for w in blocked.words]
    assert starts == sorted(starts) and 0 <= starts[0] and blocked.words[-1].end <= len(samples) / SR + 0.5
    cuts = [hi / SR for _, hi in speech_blocks(_pcm16_whole(samples), 30.0)[:-1]]
    assert not any(w.start < c < w.end - 0.05 for w in blocked.words for c in cuts)


# -- word pooling -------------------------------------------------------------------------------


def test_word_pooling_in_passes_equals_one_pass(monkeypatch, speech):
    track = AcousticExtractor().features(Audio(speech[: 30 * SR], SR))
    rng = np.random.default_rng(2)
    starts = np.sort(rng.uniform(0, 30, 400))
    words = [Word(f"w{i}", s, s + d) for i, (s, d) in enumerate(zip(starts, rng.uniform(0, 0.6, 400)))]
    one = pooling.pool_to_words(track, words)
    monkeypatch.setattr(pooling, "WORDS_PER_PASS", 7)
    passes = pooling.pool_to_words(track, words)
    np.testing.assert_array_equal(one.values, passes.values)
    np.testing.assert_array_equal(one.imputed, passes.imputed)


def test_audio_is_held_as_int16_and_read_as_float_blocks():
    """Half float32's memory; float readers get exactly the int16 values scaled, a slice at a time."""
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 1.7, -3.0, 1e-6], np.float32)
    audio = Audio(x, SR)
    assert audio.samples.dtype == np.int16
    np.testing.assert_array_equal(audio.samples, _pcm16_whole(x))  # what pocketsphinx always read
    view = audio.floats
    assert len(view) == len(x)
    np.testing.assert_array_equal(view[2:6], audio.samples[2:6].astype(np.float32) / np.float32(32767))
    assert np.abs(view[:] - np.clip(x, -1, 1)).max() <= 1 / 32767
    with pytest.raises(TypeError):
        view[::2]
    assert np.shares_memory(Audio(audio.samples, SR).samples, audio.samples)  # int16 is taken as it is
