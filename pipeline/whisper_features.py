"""Whisper's log-mel features computed a block of frames at a time, bit for bit as faster-whisper
computes them.

faster-whisper frames a whole stretch of audio at once: for the 180 s that mmpipe hands it, the
windowed frames, their complex128 and complex64 spectra and the magnitudes peak about 145 MB
above the audio, the largest single allocation of a long extraction. Each frame's spectrum
depends on that frame alone, so the same spectra are computed here ``BLOCK_FRAMES`` at a time
into one magnitude array; the mel projection and the normalisation, which see the whole
stretch, then run on it exactly as before (a test compares the two bit for bit).
"""

from __future__ import annotations

import numpy as np
from faster_whisper.feature_extractor import FeatureExtractor

BLOCK_FRAMES = 3000  # 30 s of 10 ms frames: about 15 MB of spectra at a time


class BlockwiseFeatureExtractor(FeatureExtractor):
    """faster-whisper's ``FeatureExtractor`` with the spectra computed block by block."""

    @classmethod
    def replacing(cls, extractor: FeatureExtractor) -> BlockwiseFeatureExtractor:
        """This kind of extractor with the settings (mel filters, hop, chunk length) of one
        faster-whisper built from the model's preprocessor configuration."""
        new = cls.__new__(cls)
        new.__dict__.update(vars(extractor))
        return new

    def __call__(self, waveform: np.ndarray, padding: int = 160, chunk_length: int | None = None) -> np.ndarray:
        if chunk_length is not None:  # as the parent: the chunk length is kept for later calls
            self.n_samples = chunk_length * self.sampling_rate
            self.nb_max_frames = self.n_samples // self.hop_length
        waveform = np.asarray(waveform, dtype=np.float32)
        if padding:
            waveform = np.pad(waveform, (0, padding))
        half = self.n_fft // 2
        padded = np.pad(waveform, (half, half), mode="reflect")  # the parent's centred frames
        n_frames = (len(padded) - self.n_fft) // self.hop_length  # all but the last, as the parent
        window = np.hanning(self.n_fft + 1)[:-1].astype("float32")
        power = np.empty((self.n_fft // 2 + 1, n_frames), np.float32)  # (bins, frames)
        for first in range(0, n_frames, BLOCK_FRAMES):
            last = min(n_frames, first + BLOCK_FRAMES)
            part = padded[first * self.hop_length : (last - 1) * self.hop_length + self.n_fft]
            spectrum = self.stft(part, self.n_fft, self.hop_length, window=window,
                                 return_complex=True, center=False).astype("complex64")  # (bins, t)
            power[:, first:last] = np.abs(spectrum) ** 2
        mel_spec = self.mel_filters @ power  # (n_mels, frames)
        log_spec = np.log10(np.clip(mel_spec, a_min=1e-10, a_max=None))
        log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0
