"""Speech as the recognisers and the aligner read it: 16 kHz int16 samples in 10 ms frames, and
the one definition of how loud a frame is and which frames are speech.

Everything here works per sample or per 10 ms frame, a block at a time, so an hour of audio
never needs whole-signal float64 temporaries; blocks change no value.
"""

from __future__ import annotations

import numpy as np
import soxr

from core.blocks import chunks
from core.records import Audio

SAMPLE_RATE = 16000
FRAME = 160  # samples per 10 ms pocketsphinx frame
FRAME_S = FRAME / SAMPLE_RATE
SILENCE_DBFS = -60.0  # a signal whose loudest 10 ms frame is quieter holds no speech at all

# Samples converted at a time. Every helper below works per sample or per 10 ms frame, so blocks
# change no value; whole-signal temporaries (float copies, float64 noise) cost over 2 GB an hour.
_BLOCK = FRAME * 6400  # 64 s
_NOISE_BLOCK = FRAME * 1600  # 16 s: comfort noise is drawn again per block when a search reads it


def pcm_16k(audio: Audio) -> np.ndarray:
    """(n,) int16 samples at 16 kHz, what Whisper and pocketsphinx read: the audio's own samples
    (no copy) at that rate, else through the one resampler of mmpipe (soxr, high quality)."""
    if audio.sample_rate == SAMPLE_RATE:
        return audio.samples
    return soxr.resample(audio.samples, audio.sample_rate, SAMPLE_RATE, quality="HQ")


def _quiet_frames(pcm) -> np.ndarray:
    """(n_frames,) bool: digital silence plus dither (RMS under 3 int16 units) per 10 ms frame."""
    n = len(pcm) // FRAME
    rms = np.empty(n, np.float32)
    for part in chunks(n * FRAME, _BLOCK):
        frames = pcm[part].reshape(-1, FRAME).astype(np.float32)
        rms[part.start // FRAME : part.stop // FRAME] = np.sqrt(np.mean(frames**2, axis=1))
    return rms < 3.0


def _with_noise(pcm: np.ndarray, quiet: np.ndarray, start: int, noise: np.ndarray) -> np.ndarray:
    """``pcm`` (samples from ``start`` on) plus ``noise`` where its 10 ms frame is quiet; samples
    after the last whole frame follow the last frame."""
    frame = np.minimum(np.arange(start, start + len(pcm)) // FRAME, len(quiet) - 1)
    out = pcm.astype(np.float32) + np.where(quiet[frame], noise, 0.0)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def with_comfort_noise(pcm: np.ndarray, level: float = 3.0) -> np.ndarray | None:
    """``pcm`` with faint seeded noise (``level`` int16 units RMS) in its digitally silent
    10 ms frames, or None when it has none.

    Exact zeros (synthesised, gated or edited audio) can make pocketsphinx's search die out:
    continuous espeak-ng speech fails to align outright, and stretches of joined recordings go
    astray. A faint noise floor fixes that but blurs the faintest word edges a little
    (truth16k median start error 16 -> 23 ms), so searches try the clean samples first.
    """
    if len(pcm) // FRAME == 0:
        return None
    quiet = _quiet_frames(pcm)
    if not quiet.any():
        return None
    rng = np.random.default_rng(0)  # one stream over the whole signal, drawn block by block
    out = np.empty_like(pcm)
    for part in chunks(len(pcm), _BLOCK):
        noise = rng.standard_normal(part.stop - part.start) * level
        out[part] = _with_noise(pcm[part], quiet, part.start, noise)
    return out


class Pcm16:
    """A recording's 16 kHz int16 samples, made a slice at a time as the searches read them.

    A search reads at most ``max_span_s`` of audio; holding the recording a second time with
    comfort noise cost 115 MB an hour. Every slice is bit-identical to that slice of
    ``with_comfort_noise(pcm_16k(audio))``: the noise of a block is drawn again from the
    generator state saved at the block's start. Supports ``len`` and ``view[a:b]`` (an int16
    array of its own).
    """

    def __init__(self, samples: np.ndarray, noise: tuple[np.ndarray, float, list[dict]] | None = None):
        self.samples = samples  # (n,) int16 at 16 kHz
        self._noise = noise  # (quiet frames, level, generator state at each _NOISE_BLOCK)
        self._drawn: tuple[int, np.ndarray] | None = None  # the last block of noise drawn

    @classmethod
    def of(cls, audio: Audio) -> "Pcm16":
        return cls(pcm_16k(audio))

    def __len__(self) -> int:
        return len(self.samples)

    def with_comfort_noise(self, level: float) -> "Pcm16 | None":
        """Like ``with_comfort_noise(pcm_16k(audio), level)``, without making either array."""
        if len(self) // FRAME == 0:
            return None
        quiet = _quiet_frames(self)
        if not quiet.any():
            return None
        rng = np.random.default_rng(0)
        states = []
        for part in chunks(len(self), _NOISE_BLOCK):
            states.append(rng.bit_generator.state)
            rng.standard_normal(part.stop - part.start)  # only to move the generator on
        return Pcm16(self.samples, (quiet, level, states))

    def _block_noise(self, k: int) -> np.ndarray:
        if self._drawn is None or self._drawn[0] != k:
            quiet, level, states = self._noise  # type: ignore[misc]
            rng = np.random.default_rng(0)
            rng.bit_generator.state = states[k]
            size = min(_NOISE_BLOCK, len(self) - k * _NOISE_BLOCK)
            self._drawn = (k, rng.standard_normal(size) * level)
        return self._drawn[1]

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise ValueError("Pcm16 slices are contiguous")
        pcm = self.samples[start:stop].copy()
        if self._noise is None or stop <= start:
            return pcm
        quiet = self._noise[0]
        for k in range(start // _NOISE_BLOCK, (stop - 1) // _NOISE_BLOCK + 1):
            a, b = max(start, k * _NOISE_BLOCK), min(stop, (k + 1) * _NOISE_BLOCK)
            noise = self._block_noise(k)[a - k * _NOISE_BLOCK : b - k * _NOISE_BLOCK]
            pcm[a - start : b - start] = _with_noise(pcm[a - start : b - start], quiet, a, noise)
        return pcm


def frame_energy_db(pcm) -> np.ndarray:
    """Log energy of each 10 ms frame (dB relative to full scale) of int16 samples (an array or
    a ``Pcm16``)."""
    n = len(pcm) // FRAME
    energy = np.empty(n, np.float32)
    for part in chunks(n * FRAME, _BLOCK):
        frames = pcm[part].astype(np.float32).reshape(-1, FRAME) / 32768.0
        energy[part.start // FRAME : part.stop // FRAME] = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    return energy


def audio_energy_db(audio: Audio) -> np.ndarray:
    """``frame_energy_db`` of ``audio`` at 16 kHz: (n_frames,) float32, 1.4 MB an hour, what
    the level checks and the speaker choice read instead of holding on to the samples."""
    return frame_energy_db(pcm_16k(audio))


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if len(x) < width or width < 2:
        return x
    return np.convolve(x, np.ones(width) / width, mode="same")


def quietest_frame(energy: np.ndarray, lo: int, hi: int) -> int:
    """Frame in [lo, hi) with the lowest smoothed energy: a safe place to cut between words."""
    lo, hi = max(0, lo), min(len(energy), hi)
    if hi - lo < 2:
        return max(0, min(lo, len(energy)))
    window = _smooth(energy, 25)[lo:hi]
    return lo + int(np.argmin(window))


def speech_frames(energy: np.ndarray) -> np.ndarray:
    """The one definition of which 10 ms frames are speech: 15 dB over the noise floor (the 10th
    percentile) and within 30 dB of the loud frames (the 95th), so pauses in a noisy room are not
    speech when the file also has digital silence. Silence (every frame under ``SILENCE_DBFS``)
    has no speech at all."""
    if len(energy) == 0 or float(energy.max()) < SILENCE_DBFS:
        return np.zeros(len(energy), bool)
    floor, loud = np.percentile(energy, [10, 95])
    return energy > max(float(floor) + 15.0, float(loud) - 30.0)


def speech_extent(speech: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """First and last speech frame in [lo, hi) (for spreading unaligned words), or the span."""
    loud = np.flatnonzero(speech[lo:hi])
    if len(loud) == 0:
        return lo, hi
    return lo + int(loud[0]), lo + int(loud[-1]) + 1


def level_dbfs(energy: np.ndarray) -> float:
    """Loudness of the loud parts: the 95th percentile of the frame energies (dB full scale), so
    a quiet speaker with long pauses still counts while a near-silent hiss does not."""
    return float(np.percentile(energy, 95)) if len(energy) else -np.inf
