"""The frame arithmetic of the acoustic features, in numpy, scipy.fft and scipy.ndimage only.

These are librosa's functions as the acoustic extractor calls them (``stft``, ``filters.mel``,
``power_to_db``, ``feature.mfcc``, ``rms``, the spectral centroid, bandwidth, roll-off and
flatness, the zero-crossing rate, ``util.frame``) and SciPy's Savitzky-Golay filter behind
``librosa.feature.delta``, written with the same operations in the same order, so the features
are librosa's bit for bit (``tests/test_acoustic.py`` compares them on real speech). The reason
is start-up: importing librosa's spectral functions pulls in ``scipy.signal``, ``scipy.stats``
and numba, about 3.5 CPU-seconds in every fresh process, which is more than the acoustic
features of a minute of speech cost. (librosa is ISC-licensed and SciPy BSD-licensed.)

Shapes follow librosa's: a spectrum is (frequency bins, frames); ``frame`` on a 1-D signal gives
(frame_length, frames) with ``axis=-1`` and (frames, frame_length) with ``axis=0``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.ndimage

AMIN = 1e-10  # librosa's floor under a power before its logarithm (power_to_db, flatness)
ZERO_THRESHOLD = 1e-10  # |x| at or under this counts as zero for the zero-crossing rate
# Slaney's mel scale: linear (F_SP Hz a mel) below 1 kHz, logarithmic (LOGSTEP a mel) above.
F_SP = 200.0 / 3
MIN_LOG_HZ = 1000.0
MIN_LOG_MEL = MIN_LOG_HZ / F_SP
LOGSTEP = np.log(6.4) / 27.0


def frame(x: np.ndarray, frame_length: int, hop_length: int, axis: int = -1) -> np.ndarray:
    """Overlapping frames of a 1-D signal as a strided view (``librosa.util.frame``)."""
    x = np.asarray(x)
    if x.shape[axis] < frame_length:
        raise ValueError(f"input is too short (n={x.shape[axis]}) for frame_length={frame_length}")
    strides = x.strides + (x.strides[axis],)
    shape = list(x.shape)
    shape[axis] -= frame_length - 1
    xw = np.lib.stride_tricks.as_strided(x, strides=strides, shape=tuple(shape) + (frame_length,), writeable=False)
    xw = np.moveaxis(xw, -1, axis - 1 if axis < 0 else axis + 1)
    slices = [slice(None)] * xw.ndim
    slices[axis] = slice(0, None, hop_length)
    return xw[tuple(slices)]


@functools.cache
def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """(n_fft, 1) float64 periodic Hann window of ``win_length`` samples, centred in ``n_fft``
    (``scipy.signal.get_window("hann", win_length, fftbins=True)`` then ``pad_center``)."""
    if win_length <= 1:
        w = np.ones(win_length)
    else:
        m = win_length + 1  # periodic: one more point of the symmetric window, then drop it
        fac = np.linspace(-np.pi, np.pi, m, dtype=np.float64)
        w = np.zeros(m, dtype=np.float64)
        for k, a in enumerate((0.5, 0.5)):
            w += a * np.cos(k * fac)
        w = w[:-1]
    lpad = (n_fft - win_length) // 2
    w = np.pad(w, (lpad, n_fft - win_length - lpad))
    w.setflags(write=False)
    return w[:, None]


def stft_magnitude(y: np.ndarray, n_fft: int, hop_length: int, win_length: int) -> np.ndarray:
    """(1 + n_fft // 2, frames) float32 |STFT| of float32 ``y``, frames centred at multiples of
    the hop over zero padding (``np.abs(librosa.stft(y, center=True))``): float64 FFTs of the
    windowed frames, stored as complex64 as librosa stores them."""
    padded = np.pad(y, (n_fft // 2, n_fft // 2))
    frames = frame(padded, n_fft, hop_length)  # (n_fft, frames)
    spectrum = np.empty((1 + n_fft // 2, frames.shape[1]), np.complex64, order="F")
    spectrum[:] = scipy.fft.rfft(hann_window(win_length, n_fft) * frames, axis=-2)
    return np.abs(spectrum)


def fft_frequencies(sr: float, n_fft: int) -> np.ndarray:
    return np.fft.rfftfreq(n=n_fft, d=1.0 / sr)


def _hz_to_mel(frequency: float) -> float:
    if frequency >= MIN_LOG_HZ:
        return MIN_LOG_MEL + np.log(frequency / MIN_LOG_HZ) / LOGSTEP
    return frequency / F_SP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    freqs = F_SP * mels
    log_t = mels >= MIN_LOG_MEL
    freqs[log_t] = MIN_LOG_HZ * np.exp(LOGSTEP * (mels[log_t] - MIN_LOG_MEL))
    return freqs


@functools.cache
def mel_filters(sr: float, n_fft: int, n_mels: int, fmax: float) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) float32 Slaney-normalised triangular mel filters from 0 Hz to
    ``fmax`` (``librosa.filters.mel``)."""
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_frequencies(sr, n_fft))
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    weights.setflags(write=False)
    return weights


def mel_power(magnitude: np.ndarray, sr: float, n_fft: int, n_mels: int, fmax: float) -> np.ndarray:
    """(n_mels, frames) mel power spectrum of an STFT magnitude (``melspectrogram(S=mag**2)``)."""
    return np.einsum("...ft,mf->...mt", magnitude**2, mel_filters(sr, n_fft, n_mels, fmax), optimize=True)


def power_to_db(power: np.ndarray) -> np.ndarray:
    """10 log10 of a power spectrum relative to 1, floored at ``AMIN`` (``power_to_db``, no top_db)."""
    return 10.0 * np.log10(np.maximum(AMIN, power))


def mfcc(log_mel: np.ndarray, n_mfcc: int) -> np.ndarray:
    """(n_mfcc, frames): the orthonormal DCT-II of a log-mel spectrum (``feature.mfcc(S=...)``)."""
    return scipy.fft.dct(log_mel, axis=-2, type=2, norm="ortho")[..., :n_mfcc, :]


def rms(y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """(frames,) root mean square of centred, zero-padded frames (``feature.rms(y=...)``)."""
    x = frame(np.pad(y, (frame_length // 2, frame_length // 2)), frame_length, hop_length)
    return np.sqrt(np.mean(np.square(x, dtype=np.float32), axis=-2, keepdims=True))[0]


def _normalize_l1(S: np.ndarray) -> np.ndarray:
    """Each column divided by its sum; columns summing under the dtype's tiny are left as they
    are (``util.normalize(S, norm=1, axis=-2)``)."""
    if not np.all(np.isfinite(S)):
        raise ValueError("spectrum is not finite")
    length = np.sum(np.abs(S).astype(float), axis=-2, keepdims=True)
    length[length < np.finfo(S.dtype).tiny] = 1.0
    normed = np.empty_like(S)
    normed[:] = S / length
    return normed


def spectral_shape(magnitude: np.ndarray, sr: float, n_fft: int) -> tuple[np.ndarray, ...]:
    """(centroid, bandwidth, roll-off at 85 %) in Hz and flatness, each (frames,), of an STFT
    magnitude (librosa's ``spectral_*`` with ``S=magnitude``)."""
    freq = fft_frequencies(sr, n_fft)
    normed = _normalize_l1(magnitude)
    centroid = np.sum(freq[:, None] * normed, axis=-2, keepdims=True)
    deviation = np.abs(np.subtract.outer(centroid[..., 0, :], freq).swapaxes(-2, -1))
    bandwidth = np.sum(normed * deviation**2, axis=-2, keepdims=True) ** (1.0 / 2)
    total_energy = np.cumsum(magnitude, axis=-2)
    threshold = np.expand_dims(0.85 * total_energy[..., -1, :], axis=-2)
    below = np.where(total_energy < threshold, np.nan, 1)
    rolloff = np.nanmin(below * freq[:, None], axis=-2, keepdims=True)
    power = np.maximum(AMIN, magnitude**2.0)
    flatness = np.exp(np.mean(np.log(power), axis=-2, keepdims=True)) / np.mean(power, axis=-2, keepdims=True)
    return centroid[0], bandwidth[0], rolloff[0], flatness[0]


def zero_crossing_rate(y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """(frames,) share of sign changes between neighbouring samples of each centred frame, the
    signal's edge samples repeated as padding; |x| <= ``ZERO_THRESHOLD`` counts as +0
    (``feature.zero_crossing_rate``: the frame's first sample has no predecessor and counts as no
    crossing). The counts are whole numbers, so any summation order gives the same rate."""
    padded = np.pad(y, (frame_length // 2, frame_length // 2), mode="edge")
    negative = np.signbit(np.where(np.abs(padded) <= ZERO_THRESHOLD, 0, padded))
    changes = np.concatenate([[0], np.cumsum(negative[1:] != negative[:-1], dtype=np.int64)])
    starts = np.arange(0, len(padded) - frame_length + 1, hop_length)
    return (changes[starts + frame_length - 1] - changes[starts]) / float(frame_length)


@functools.cache
def _savgol_coeffs(window_length: int, order: int) -> np.ndarray:
    """Convolution weights of the Savitzky-Golay filter for the ``order``-th derivative of a
    degree-``order`` fit (``scipy.signal.savgol_coeffs(window_length, order, deriv=order)``)."""
    pos = window_length // 2
    x = np.flip(np.arange(-pos, window_length - pos, dtype=np.float64))
    A = x ** np.arange(order + 1, dtype=np.float64).reshape(-1, 1)
    y = np.zeros(order + 1, dtype=np.float64)
    y[order] = float(math.factorial(order))
    coeffs = scipy.linalg.lstsq(A, y, cond=np.finfo(A.dtype).eps * max(A.shape))[0]
    coeffs.setflags(write=False)
    return coeffs


def _fit_edge(x: np.ndarray, window_start: int, window_stop: int, interp_start: int, interp_stop: int,
              order: int, out: np.ndarray) -> None:
    """Fill ``out[:, interp_start:interp_stop]`` with the ``order``-th derivative of a degree-
    ``order`` polynomial fitted to each row of (rows, frames) ``x[:, window_start:window_stop]``
    (SciPy's ``_fit_edge``)."""
    edge = np.ascontiguousarray(x[:, window_start:window_stop].T)  # (window, rows)
    t = np.arange(0, window_stop - window_start, dtype=x.dtype)
    lhs = t[:, None] ** np.flip(np.arange(order + 1, dtype=t.dtype))[None, :]
    scale = np.sqrt(np.sum(lhs * lhs, axis=0))
    lhs /= scale
    c = scipy.linalg.lstsq(lhs, edge, cond=t.shape[0] * np.finfo(t.dtype).eps)[0]
    poly = (c.T / scale).T  # (order + 1, rows), highest power first
    n = poly.shape[0]
    deriv = np.array(poly[:-order], copy=True)  # the order-th derivative's coefficients
    for k in range(order):
        deriv *= np.arange(n - k - 1, order - k - 1, -1, dtype=poly.dtype).reshape(-1, 1)
    at = np.arange(interp_start - window_start, interp_stop - window_start, dtype=deriv.dtype).reshape(-1, 1)
    values = np.zeros_like(at)
    for row in deriv:  # Horner's rule: (interp, rows)
        values = values * at + row
    out[:, interp_start:interp_stop] = values.T


def delta(data: np.ndarray, width: int, order: int) -> np.ndarray:
    """``order``-th Savitzky-Golay derivative along the last axis of (rows, frames) ``data``
    over ``width`` frames, with polynomial fits at both ends (``feature.delta(mode="interp")``)."""
    if width < 3 or width % 2 != 1 or width > data.shape[-1]:
        raise ValueError(f"delta width {width} must be odd, at least 3 and at most {data.shape[-1]}")
    x = np.asarray(data)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    out = scipy.ndimage.convolve1d(x, _savgol_coeffs(width, order), axis=-1, mode="constant")
    _fit_edge(x, 0, width, 0, width // 2, order, out)
    n = x.shape[-1]
    _fit_edge(x, n - width, n, n - width // 2, n, order, out)
    return out
