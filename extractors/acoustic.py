"""Frame-level acoustic features at a 10 ms hop (a COVAREP-like set, minus COVAREP).

Per frame: MFCCs (+ deltas and delta-deltas), F0 with a voicing decision and confidence, log RMS
energy and five spectral descriptors. One STFT feeds MFCCs, energy and the spectral shape, so the
whole set costs little more than the MFCCs. The arithmetic is librosa's, bit for bit, from
``extractors.spectra``, which spares every process librosa's import (~3.5 CPU-seconds); librosa
itself is imported only for ``pitch="pyin"``.

F0 defaults to YIN computed here in numpy rather than through ``librosa.yin``: librosa's YIN
always returns a period, even for silence or noise, and does not expose the trough depth that
tells voiced from unvoiced frames. Computing the same cumulative-mean-normalised difference once
gives both. ``pitch="pyin"`` uses ``librosa.pyin`` (more robust, about 50x slower).

Long audio is analysed in blocks of ``BLOCK_S`` seconds of frames, each read with enough samples
on either side for every window that reaches across its edges; YIN's 8 kHz signal comes from
soxr's streaming resampler, which gives exactly the samples of one whole-signal call. The one
whole-track quantity, the loudest log-mel value (the spectrum is floored 80 dB under it), comes
from a first, cheap pass over the blocks. So every frame is the same as in one pass over the
whole signal, and working memory is one block (~80 MB) plus the track itself (69 MB per hour)
instead of ~15 GB for an hour in one pass.

Unvoiced frames have F0 = 0 and voiced = 0 (never NaN). A clip without audio gives rows that span
the video at the same hop with ``present`` False, so word pooling sees "no audio here" and flags
the words as imputed instead of meeting an empty track; audio shorter than its video is padded the
same way.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import soxr

from extractors import spectra
from core.blocks import Block, blocks, chunks
from core.config import AcousticConfig
from core.memory import release_memory
from core.progress import Progress, report
from core.records import Audio, FloatSamples, FrameFeatures
from extractors.base import Clip, FrameExtractor

# Trough depth of the normalised difference below which a frame counts as voiced. YIN's own
# absolute threshold (0.1) misses much of real, slightly breathy speech; at 0.25 the decisions
# agree with pyin's on 77-88 % of frames of the project's speech recordings and F0 stays within
# a quarter octave of pyin's on 95 % of the frames both call voiced (higher thresholds let
# octave errors in).
VOICING_THRESHOLD = 0.25
# Frames quieter than this (dBFS) are never voiced: in digital silence the difference function
# is 0/0 and would look perfectly periodic.
VOICING_FLOOR_DBFS = -60.0
# Floor of the log energy, so silence gives a finite value.
RMS_FLOOR_DBFS = -100.0
N_MELS = 40
TOP_DB = 80.0  # librosa.power_to_db's default dynamic range of the log-mel spectrum
PITCH_RATE = 8000  # Hz at which F0 is tracked (see yin_with_voicing)
# Seconds of output frames computed at a time (see the module docstring).
BLOCK_S = 30.0
# Frames of context either side of a pyin block: its Viterbi path settles within a few frames of
# an edge, so far enough from it the block sees the same path as one whole-signal pass.
PYIN_CONTEXT = 300
DELTA_CONTEXT = 8  # frames either side of a block of MFCCs for the delta filters (reach: 4)
SPECTRAL = ("spectral_centroid_khz", "spectral_bandwidth_khz", "spectral_rolloff_khz", "spectral_flatness", "zcr")


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(np.ceil(np.log2(max(n, 1)))))


def _cmnd(frames: np.ndarray, max_period: int) -> np.ndarray:
    """YIN's cumulative-mean-normalised difference d'(tau), tau = 0..max_period, per frame."""
    n_frames, length = frames.shape
    window = length - max_period  # samples compared at every lag
    n_fft = scipy.fft.next_fast_len(length + window, real=True)
    x = frames.astype(np.float32)  # float32 FFTs: twice as fast, ample for a 0.25 threshold
    spec_full = scipy.fft.rfft(x, n_fft, axis=1)
    spec_head = scipy.fft.rfft(x[:, :window], n_fft, axis=1)
    # r(tau) = sum_j x_j x_{j+tau} over the first `window` samples
    acf = scipy.fft.irfft(np.conj(spec_head) * spec_full, n_fft, axis=1)[:, : max_period + 1].astype(np.float64)
    sq = np.concatenate([np.zeros((n_frames, 1)), np.cumsum(frames.astype(np.float64) ** 2, axis=1)], axis=1)
    taus = np.arange(max_period + 1)
    energy_lag = sq[:, taus + window] - sq[:, taus]  # sum of x_{j+tau}^2
    diff = energy_lag[:, :1] + energy_lag - 2.0 * acf
    diff = np.maximum(diff, 0.0)
    diff[:, 0] = 0.0
    running = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * taus[1:] / np.maximum(running, 1e-12)
    return cmnd


class PitchInput:
    """The signal YIN analyses, handed out a stretch at a time.

    Pitch below ~1 kHz needs no more than 8 kHz sampling, so wide-band audio is analysed at 8 kHz
    (when the hop maps to whole samples there): half the samples per frame, twice as fast. The
    8 kHz samples come from soxr's streaming resampler as the frames ask for them; the stream
    gives exactly the samples of ``librosa.resample(res_type="soxr_hq")`` on the whole signal.
    """

    FEED = 1 << 17  # input samples handed to the resampler at a time

    def __init__(self, y: np.ndarray | FloatSamples, sr: int, hop: int, fmax: float):
        self.y = y  # (n,) float32 at sr, read a slice at a time
        self.resampled = sr > PITCH_RATE and fmax * 4 <= PITCH_RATE and (hop * PITCH_RATE) % sr == 0
        if self.resampled:
            self.sr, self.hop = PITCH_RATE, hop * PITCH_RATE // sr
            self.length = int(np.ceil(len(y) * (float(PITCH_RATE) / sr)))  # librosa.resample's length
            self._stream = soxr.ResampleStream(sr, PITCH_RATE, 1, dtype="float32", quality="HQ")
        else:
            self.sr, self.hop, self.length = sr, hop, len(y)
        self._buffer = np.zeros(0, np.float32)  # resampled samples from _origin on
        self._origin = 0
        self._fed = 0

    @property
    def n_frames(self) -> int:
        return 1 + self.length // self.hop

    def _fill(self, stop: int) -> None:
        while self._origin + len(self._buffer) < stop and self._fed < len(self.y):
            part = self.y[self._fed : self._fed + self.FEED]
            self._fed += len(part)
            out = self._stream.resample_chunk(part, last=self._fed >= len(self.y))
            self._buffer = np.concatenate([self._buffer, out])

    def segment(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` as float64, zeros outside the signal. ``start`` never goes
        back (what lies before it is let go)."""
        out = np.zeros(max(0, stop - start), np.float64)
        a, b = max(start, 0), min(stop, self.length)
        if b > a:
            if not self.resampled:
                out[a - start : b - start] = self.y[a:b]
            else:
                self._fill(b)
                have = self._buffer[a - self._origin : b - self._origin]
                out[a - start : a - start + len(have)] = have  # past the stream's end: zeros
        if self.resampled and start > self._origin:
            drop = min(start - self._origin, len(self._buffer))
            self._buffer, self._origin = self._buffer[drop:].copy(), self._origin + drop
        return out

    def frames(self, start: int, stop: int, frame_length: int) -> np.ndarray:
        """(stop - start, frame_length) float64 frames centred at ``t * hop`` for t in
        [start, stop), zero padded beyond both ends (like librosa's center=True)."""
        pad = frame_length // 2
        seg = self.segment(start * self.hop - pad, (stop - 1) * self.hop - pad + frame_length)
        return spectra.frame(seg, frame_length=frame_length, hop_length=self.hop, axis=0)


def _yin_rows(
    frames: np.ndarray, sr: int, fmin: float, fmax: float, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YIN on (T, frame_length) frames: (f0_hz, voiced 0/1, voicing confidence 0..1), each (T,).
    Every row is computed on its own, so blocks of rows give the rows of one whole pass."""
    min_period = max(2, int(np.floor(sr / fmax)))
    max_period = int(np.ceil(sr / fmin))
    cmnd = _cmnd(frames, max_period)
    band = cmnd[:, min_period : max_period + 1]  # lags in the allowed F0 range
    # YIN step 4: the first local minimum under the threshold, else the global minimum.
    inner = np.zeros_like(band, dtype=bool)
    inner[:, 1:-1] = (band[:, 1:-1] <= band[:, :-2]) & (band[:, 1:-1] <= band[:, 2:])
    below = inner & (band < threshold)
    has_below = below.any(axis=1)
    idx = np.where(has_below, below.argmax(axis=1), band.argmin(axis=1))
    rows = np.arange(len(band))
    # Step 5: parabolic interpolation of the trough.
    left = band[rows, np.maximum(idx - 1, 0)]
    mid = band[rows, idx]
    right = band[rows, np.minimum(idx + 1, band.shape[1] - 1)]
    curve = left - 2.0 * mid + right
    shift = np.where(np.abs(curve) > 1e-12, 0.5 * (left - right) / np.where(curve == 0, 1, curve), 0.0)
    shift = np.clip(shift, -1.0, 1.0)
    period = min_period + idx + shift
    depth = np.clip(mid, 0.0, 1.0)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = rms > 10.0 ** (VOICING_FLOOR_DBFS / 20.0)
    voiced = loud & (depth < threshold) & (idx > 0) & (idx < band.shape[1] - 1)
    f0 = np.where(voiced, sr / period, 0.0)
    confidence = np.where(loud, 1.0 - depth, 0.0)
    return f0, voiced.astype(np.float64), confidence


def _yin_block(
    source: PitchInput, start: int, stop: int, fmin: float, fmax: float, threshold: float = VOICING_THRESHOLD
) -> np.ndarray:
    """(3, stop - start) f0 / voiced / confidence of output frames [start, stop); frames past the
    end of the analysed signal (resampling can shorten it by a sample) are zero."""
    out = np.zeros((3, stop - start), np.float64)
    end = min(stop, source.n_frames)
    if end > start:
        frame_length = _next_pow2(3 * int(np.ceil(source.sr / fmin)))  # integration window >= 2 periods
        frames = source.frames(start, end, frame_length)
        out[:, : end - start] = _yin_rows(frames, source.sr, fmin, fmax, threshold)
    return out


def yin_with_voicing(
    y: np.ndarray, sr: int, hop: int, fmin: float, fmax: float, threshold: float = VOICING_THRESHOLD
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YIN F0 per hop plus the trough depth: returns (f0_hz, voiced 0/1, voicing confidence 0..1)."""
    f0, voiced, confidence = _yin_block(PitchInput(y, sr, hop, fmax), 0, 1 + len(y) // hop, fmin, fmax, threshold)
    return f0, voiced, confidence


def _pyin(y: np.ndarray, sr: int, hop: int, fmin: float, fmax: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import librosa  # deferred: only pyin needs librosa itself, whose import costs ~3.5 CPU-s

    frame_length = _next_pow2(int(4 * sr / fmin))
    f0, flag, prob = librosa.pyin(
        y, fmin=fmin, fmax=fmax, sr=sr, frame_length=frame_length, hop_length=hop, center=True
    )
    f0 = np.where(flag & np.isfinite(f0), f0, 0.0)
    return f0, flag.astype(np.float64), np.nan_to_num(prob)


def _deltas(mfcc: np.ndarray, order: int, n_frames: int) -> np.ndarray:
    """librosa's Savitzky-Golay deltas; tracks of ``n_frames`` too short for its 9-frame window
    get a shorter one. ``mfcc`` may be a stretch of the track with ``DELTA_CONTEXT`` frames
    either side (the filter reaches 4 frames; at the track's ends it fits a polynomial)."""
    width = min(9, n_frames if n_frames % 2 == 1 else n_frames - 1)
    if width < 3:
        return np.zeros_like(mfcc)
    return spectra.delta(mfcc, width, order)


class AcousticExtractor(FrameExtractor):
    name = "librosa-acoustic"  # stored in every file: librosa's feature arithmetic (extractors.spectra)
    modality = "audio"

    def __init__(self, config: AcousticConfig | None = None):
        self.config = config or AcousticConfig()
        # The pitch tracker changes the meaning of the F0/voicing columns, not their names.
        self.version = f"1+{self.config.pitch}"
        self.block_s = BLOCK_S
        self._warm = False

    def warm_up(self) -> None:
        """Run once on a quarter second of noise, beside speech recognition rather than after it.
        With ``pitch="pyin"`` that imports librosa and loads its compiled numba code (~3.5 s
        here); the default features only build their window and mel filters (milliseconds)."""
        if not self._warm:
            noise = np.random.default_rng(0).normal(0.0, 0.05, 4000).astype(np.float32)
            self.features(Audio(noise, 16000))
            self._warm = True

    @property
    def feature_names(self) -> list[str]:
        n = self.config.n_mfcc
        names = [f"mfcc_{i}" for i in range(n)]
        if self.config.deltas:
            names += [f"mfcc_delta_{i}" for i in range(n)] + [f"mfcc_delta2_{i}" for i in range(n)]
        return names + ["f0_hz", "voiced", "voicing_prob", "rms_db", *SPECTRAL]

    def _hop(self, sr: int) -> int:
        return max(1, int(round(self.config.hop_s * sr)))

    def _absent(self, duration: float) -> FrameFeatures:
        """Rows spanning ``duration`` with present=False: there is no audio to describe."""
        n = int(np.floor(duration / self.config.hop_s)) + 1 if duration > 0 else 0
        return FrameFeatures(
            times=np.arange(n, dtype=np.float64) * self.config.hop_s,
            values=np.zeros((n, self.feature_dim), np.float32),
            present=np.zeros(n, bool),
            names=self.feature_names,
        )

    def _context(self, sr: int) -> int:
        """Frames read on either side of a block: every window centred on one of its frames
        (STFT, RMS, ZCR, pyin's longer frames and path) sees the same samples as in one pass."""
        if self.config.pitch == "pyin":
            return PYIN_CONTEXT
        hop, _, n_fft = self._window(sr)  # the FFT frame is the longest window (YIN reads its own signal)
        return int(np.ceil(n_fft / 2 / hop)) + 2

    def features(self, audio: Audio) -> FrameFeatures:
        """The feature track of one audio signal (all frames present), block by block.

        Two passes over the blocks: the log-mel floor sits ``TOP_DB`` under the loudest value of
        the whole track, so the first pass only finds that value (an STFT and a mel projection
        per block, the cheap part), the second computes everything with it. Deltas then filter
        the assembled MFCC columns block by block, with the filter's reach as context."""
        cfg = self.config
        y = audio.floats  # float32 a block at a time
        sr = int(audio.sample_rate)
        hop = self._hop(sr)
        n_frames = 1 + len(y) // hop
        fmax = min(cfg.fmax, sr / 2 - 1)
        pitch = PitchInput(y, sr, hop, fmax) if cfg.pitch == "yin" else None
        n_mfcc = cfg.n_mfcc
        values = np.empty((n_frames, self.feature_dim), np.float32)  # (T, D): the result
        per_block = max(1, int(round(self.block_s / cfg.hop_s)))
        spans = blocks(n_frames, per_block, context=self._context(sr))
        floor = max(self._log_mel(y, sr, block).max() for block in spans) - TOP_DB
        for block in spans:
            mfcc, local = self._block_columns(y, sr, block, pitch, floor)
            values[block.start : block.stop, :n_mfcc] = mfcc.T
            values[block.start : block.stop, -len(local) :] = local.T
        if cfg.deltas:
            for block in blocks(n_frames, per_block, context=DELTA_CONTEXT):
                mfcc = np.ascontiguousarray(values[block.lo : block.hi, :n_mfcc].T)  # (n_mfcc, t)
                values[block.start : block.stop, n_mfcc : 2 * n_mfcc] = _deltas(mfcc, 1, n_frames)[:, block.owned].T
                values[block.start : block.stop, 2 * n_mfcc : 3 * n_mfcc] = _deltas(mfcc, 2, n_frames)[:, block.owned].T
        for part in chunks(n_frames, per_block):
            np.nan_to_num(values[part], copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        if len(spans) > 1:
            release_memory()
        return FrameFeatures(
            times=np.arange(n_frames, dtype=np.float64) * hop / sr,
            values=values,
            present=np.ones(n_frames, bool),
            names=self.feature_names,
        )

    def _window(self, sr: int) -> tuple[int, int, int]:
        """(hop, window length, FFT length) in samples."""
        win = max(8, int(round(self.config.win_s * sr)))
        return self._hop(sr), win, _next_pow2(win)

    def _block_samples(self, y: FloatSamples, sr: int, block: Block) -> np.ndarray:
        """The samples a block reads: frame j of them is frame ``block.lo + j`` of the signal."""
        hop = self._hop(sr)
        last = block.hi >= 1 + len(y) // hop
        return y[block.lo * hop : len(y) if last else block.hi * hop]

    def _spectrum(self, ys: np.ndarray, sr: int, own: slice) -> tuple[np.ndarray, np.ndarray]:
        """STFT magnitude (n_fft / 2 + 1, t) and mel power spectrum (40, t) of the owned frames."""
        hop, win, n_fft = self._window(sr)
        mag = spectra.stft_magnitude(ys, n_fft, hop, win)[:, own]
        return mag, spectra.mel_power(mag, sr, n_fft, N_MELS, sr / 2)

    def _log_mel(self, y: FloatSamples, sr: int, block: Block) -> np.ndarray:
        """(40, t) float32 log-mel spectrum (dB) of a block's frames, before any floor."""
        _, mel = self._spectrum(self._block_samples(y, sr, block), sr, block.owned)
        return spectra.power_to_db(mel)

    def _block_columns(
        self, y: FloatSamples, sr: int, block: Block, pitch: PitchInput | None, floor: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Frames [block.start, block.stop): MFCCs (n_mfcc, t) float32 with the log-mel spectrum
        floored at ``floor`` dB, and the frame-local features f0, voiced, voicing_prob, rms_db
        and the spectral set (9, t) float64."""
        cfg = self.config
        hop, win, n_fft = self._window(sr)
        ys, own = self._block_samples(y, sr, block), block.owned
        mag, mel = self._spectrum(ys, sr, own)
        log_mel = np.maximum(spectra.power_to_db(mel), floor)
        mfcc = spectra.mfcc(log_mel, cfg.n_mfcc)

        fmax = min(cfg.fmax, sr / 2 - 1)
        if pitch is not None:
            f0, voiced, prob = _yin_block(pitch, block.start, block.stop, cfg.fmin, fmax)
        else:
            f0, voiced, prob = (x[own] for x in _pyin(ys, sr, hop, cfg.fmin, fmax))

        # from the samples, not the windowed STFT, so a full-scale sine reads -3 dBFS
        rms = spectra.rms(ys, win, hop)[own]
        rms_db = np.maximum(20.0 * np.log10(np.maximum(rms, 1e-12)), RMS_FLOOR_DBFS)
        centroid, bandwidth, rolloff, flatness = spectra.spectral_shape(mag, sr, n_fft)
        centroid, bandwidth, rolloff = centroid / 1000.0, bandwidth / 1000.0, rolloff / 1000.0
        zcr = spectra.zero_crossing_rate(ys, win, hop)[own]
        return mfcc, np.stack([f0, voiced, prob, rms_db, centroid, bandwidth, rolloff, flatness, zcr])

    def extract(self, clip: Clip, progress: Progress | None = None) -> FrameFeatures:
        duration = clip.info.duration if clip.info is not None else 0.0
        if clip.audio is None or len(clip.audio.samples) == 0:
            track = self._absent(duration)
        else:
            track = _pad_to(self.features(clip.audio), duration, self.config.hop_s)
        report(progress, self.modality, 1, 1)
        return track


def _pad_to(track: FrameFeatures, duration: float, hop_s: float) -> FrameFeatures:
    """Extend a track with absent rows up to ``duration`` when the audio ends before the video."""
    last = track.times[-1] if len(track.times) else -hop_s
    extra = int(np.floor((duration - last) / hop_s + 1e-9)) if duration > last + hop_s else 0
    if extra <= 0:
        return track
    times = np.concatenate([track.times, last + hop_s * np.arange(1, extra + 1)])
    values = np.concatenate([track.values, np.zeros((extra, track.dim), np.float32)])
    present = np.concatenate([track.present, np.zeros(extra, bool)])
    return FrameFeatures(times=times, values=values, present=present, names=track.names)
