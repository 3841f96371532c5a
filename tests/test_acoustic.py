"""The acoustic extractor on real speech, silence, missing audio, and one pure tone; its
arithmetic against librosa's, bit for bit."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from core.config import AcousticConfig
from core.records import Audio
from core.threads import one_blas_thread
from extractors import spectra
from extractors.acoustic import AcousticExtractor
from extractors.base import Clip
from pipeline import media
from tests.conftest import ROOT, SPEECH, VIDEOS


@pytest.fixture(scope="module")
def extractor() -> AcousticExtractor:
    return AcousticExtractor()


@pytest.fixture(scope="module")
def speech() -> Audio:
    return media.decode_audio(SPEECH / "RD_Radio31_000.wav")  # 8 s of a real radio address


@pytest.fixture(scope="module")
def track(extractor, speech):
    return extractor.extract(Clip(path="speech", info=None, audio=speech, utterances=[]))


def column(track, name: str) -> np.ndarray:
    return track.values[:, track.names.index(name)]


def test_feature_names_are_stable_and_match_the_matrix(extractor, track):
    names = extractor.feature_names
    assert len(names) == len(set(names)) == extractor.feature_dim == track.values.shape[1] == 48
    assert names[:3] == ["mfcc_0", "mfcc_1", "mfcc_2"]
    assert {"f0_hz", "voiced", "voicing_prob", "rms_db", "spectral_centroid_khz", "zcr"} <= set(names)
    assert track.names == names
    assert extractor.name == "librosa-acoustic"
    no_deltas = AcousticExtractor(AcousticConfig(deltas=False, n_mfcc=20))
    assert no_deltas.feature_dim == 20 + 9


def test_frames_every_10_ms_finite_and_present(track, speech):
    assert track.values.dtype == np.float32 and np.isfinite(track.values).all()
    assert track.present.all()
    np.testing.assert_allclose(np.diff(track.times), 0.01, atol=1e-9)
    assert track.times[0] == 0.0
    assert len(track.times) == int(speech.duration / 0.01) + 1


def test_pitch_is_a_plausible_human_voice(track):
    f0, voiced = column(track, "f0_hz"), column(track, "voiced")
    assert set(np.unique(voiced)) <= {0.0, 1.0}
    assert 0.3 < voiced.mean() < 0.9  # speech with pauses and unvoiced consonants
    assert np.all(f0[voiced == 0] == 0)
    assert np.all((f0[voiced == 1] >= 65) & (f0[voiced == 1] <= 500))
    assert 90 < np.median(f0[voiced == 1]) < 300
    # voiced frames are louder than unvoiced ones on real speech
    rms = column(track, "rms_db")
    assert np.median(rms[voiced == 1]) > np.median(rms[voiced == 0]) + 6


def test_yin_agrees_with_pyin_on_real_speech(speech):
    fast = AcousticExtractor().features(speech)
    slow = AcousticExtractor(AcousticConfig(pitch="pyin")).features(speech)
    assert slow.names == fast.names and fast.values.shape == slow.values.shape
    f_fast, f_slow = column(fast, "f0_hz"), column(slow, "f0_hz")
    both = (f_fast > 0) & (f_slow > 0)
    assert both.mean() > 0.3
    ratio = f_fast[both] / f_slow[both]
    assert np.median(np.abs(np.log2(ratio))) < 0.03  # same pitch within 2 %
    assert np.mean(np.abs(np.log2(ratio)) > 0.25) < 0.1  # few octave-type errors
    agree = (column(fast, "voiced") > 0) == (column(slow, "voiced") > 0)
    assert agree.mean() > 0.7


def test_pure_tone_pitch_and_spectrum(extractor):
    sr = 16000
    t = np.arange(sr) / sr
    tone = Audio((0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32), sr)
    out = extractor.features(tone)
    f0 = column(out, "f0_hz")[10:-10]
    assert np.all(column(out, "voiced")[10:-10] == 1)
    np.testing.assert_allclose(f0, 220.0, rtol=0.005)
    np.testing.assert_allclose(column(out, "spectral_centroid_khz")[10:-10], 0.22, atol=0.05)
    # 0.3 amplitude sine: RMS = 0.3 / sqrt(2) -> -13.5 dBFS
    np.testing.assert_allclose(column(out, "rms_db")[10:-10], 20 * np.log10(0.3 / np.sqrt(2)), atol=1.0)


def test_digital_silence_is_finite_and_unvoiced(extractor):
    audio = media.decode_audio(VIDEOS / "WolfgangLanger_Pexels.mp4")
    out = extractor.features(audio)
    assert np.isfinite(out.values).all()
    assert not column(out, "voiced").any() and not column(out, "f0_hz").any()
    assert np.all(column(out, "rms_db") == -100.0)


def test_video_without_audio_gives_absent_rows_over_its_duration(extractor):
    path = VIDEOS / "carphone_noaudio.mp4"
    info = media.probe(path)
    out = extractor.extract(media.video_clip(path, info))
    assert len(out.times) == int(info.duration / 0.01) + 1
    assert not out.present.any() and not out.values.any()
    assert out.values.shape[1] == extractor.feature_dim


def test_audio_shorter_than_video_is_padded_with_absent_rows(extractor):
    path = VIDEOS / "noface_face.mov"  # 3.97 s of audio in a 6.38 s video
    info = media.probe(path)
    audio = media.decode_audio(path)
    out = extractor.extract(media.video_clip(path, info, audio))
    assert out.times[-1] == pytest.approx(info.duration, abs=0.011)
    np.testing.assert_allclose(np.diff(out.times), 0.01, atol=1e-9)
    real = int(audio.duration / 0.01) + 1
    assert out.present[:real].all() and not out.present[real:].any()


def test_sixty_seconds_give_a_frame_every_10_ms(extractor, speech):
    """(Its speed is measured by bench/extract.py, not here.)"""
    long = Audio(np.tile(speech.samples, 8)[: 60 * 16000], 16000)
    out = extractor.features(long)
    assert len(out.times) == 6001 and np.isfinite(out.values).all()


def test_numpys_blas_on_one_thread_gives_the_same_features(extractor, speech):
    """Extraction limits numpy's BLAS to one thread (``core.threads``): the features are those
    computed with two threads, to the bit."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        two = extractor.features(speech)
    one_blas_thread()
    assert all(lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] == "blas")
    one = extractor.features(speech)
    assert np.array_equal(two.values, one.values) and np.array_equal(two.times, one.times)


def test_unknown_pitch_tracker_is_rejected():
    with pytest.raises(ValueError, match="pitch"):
        AcousticExtractor(AcousticConfig(pitch="crepe"))


def test_spectral_arithmetic_is_librosas_bit_for_bit(speech):
    """``extractors.spectra`` stands in for librosa's functions (whose import costs seconds):
    on real speech, whole and cut at odd places, every result has librosa's shape, dtype and bits."""
    import librosa

    sr, hop, win, n_fft = 16000, 160, 400, 512
    for y in (speech.floats[:], speech.floats[1234:51233], speech.floats[:3001]):
        mag = spectra.stft_magnitude(y, n_fft, hop, win)
        ref = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win, center=True))
        pairs = {"stft": (mag, ref)}
        mag, ref = mag[:, 3:-2], ref[:, 3:-2]  # a block's owned columns are a slice, as here
        mel = spectra.mel_power(mag, sr, n_fft, 40, sr / 2)
        mel_ref = librosa.feature.melspectrogram(S=ref**2, sr=sr, n_mels=40, fmax=sr / 2)
        db, db_ref = spectra.power_to_db(mel), librosa.power_to_db(mel_ref, top_db=None)
        mfcc = spectra.mfcc(db, 13)
        pairs |= {"mel": (mel, mel_ref), "db": (db, db_ref), "mfcc": (mfcc, librosa.feature.mfcc(S=db_ref, n_mfcc=13))}
        shape = spectra.spectral_shape(mag, sr, n_fft)
        pairs |= {
            "rms": (spectra.rms(y, win, hop), librosa.feature.rms(y=y, frame_length=win, hop_length=hop)[0]),
            "centroid": (shape[0], librosa.feature.spectral_centroid(S=ref, sr=sr, n_fft=n_fft)[0]),
            "bandwidth": (shape[1], librosa.feature.spectral_bandwidth(S=ref, sr=sr, n_fft=n_fft)[0]),
            "rolloff": (shape[2], librosa.feature.spectral_rolloff(S=ref, sr=sr, n_fft=n_fft)[0]),
            "flatness": (shape[3], librosa.feature.spectral_flatness(S=ref)[0]),
            "zcr": (spectra.zero_crossing_rate(y, win, hop),
                    librosa.feature.zero_crossing_rate(y, frame_length=win, hop_length=hop)[0]),
            "frame": (spectra.frame(y, 1024, 80, axis=0), librosa.util.frame(y, frame_length=1024, hop_length=80, axis=0)),
        }
        mfcc = np.ascontiguousarray(mfcc, np.float32)
        for width in (9, 5, 3):
            for order in (1, 2):
                pairs[f"delta {width} {order}"] = (spectra.delta(mfcc, width, order),
                                                   librosa.feature.delta(mfcc, width=width, order=order, mode="interp"))
        for name, (ours, theirs) in pairs.items():
            assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, name
            assert np.array_equal(ours, theirs, equal_nan=True), name


def test_default_features_leave_librosa_unimported():
    """A fresh process computes the default features without librosa, numba or scipy.signal
    (their import is ~3.5 CPU-seconds of every run)."""
    code = (
        "import sys, numpy as np\n"
        "from core.records import Audio\n"
        "from extractors.acoustic import AcousticExtractor\n"
        "AcousticExtractor().features(Audio(np.random.default_rng(0).normal(0, .1, 16000).astype(np.float32), 16000))\n"
        "print(sorted(m for m in ('librosa.core.spectrum', 'numba', 'scipy.signal') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
