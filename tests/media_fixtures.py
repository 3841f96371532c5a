"""Build test clips from real recordings: real speech muxed onto a real face video, with PyAV.

Kept in one place so every test that needs "a talking face saying X" makes it the same way.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# A film review in German, for the spoken-language checks (espeak-ng's German voice).
GERMAN = ("Guten Tag. Heute möchte ich über den Film sprechen, den wir gestern im Kino gesehen haben. "
          "Er war wirklich großartig und die Schauspieler waren hervorragend.")


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Decode any audio file to mono float32 at ``sample_rate``."""
    out = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        for frame in container.decode(audio=0):
            for f in resampler.resample(frame):
                out.append(f.to_ndarray().reshape(-1))
        for f in resampler.resample(None):
            out.append(f.to_ndarray().reshape(-1))
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def espeak(text: str, path: Path, voice: str = "en-us", speed: int = 150) -> Path:
    """Synthesise ``text`` to a WAV file with espeak-ng (Debian package)."""
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


def mux(
    video: str | Path,
    audio: str | Path | np.ndarray | None,
    out: str | Path,
    seconds: float | None = None,
    sample_rate: int = 16000,
    video_codec: str = "libx264",
    container_format: str | None = None,
) -> Path:
    """Re-encode the frames of ``video`` (first ``seconds``; looped if the audio is longer) with
    ``audio`` as the soundtrack. ``audio=None`` writes a video with no audio stream."""
    samples = None
    if audio is not None:
        samples = audio if isinstance(audio, np.ndarray) else load_audio(audio, sample_rate)
    if seconds is None:
        seconds = len(samples) / sample_rate if samples is not None else 3.0
    frames, fps = [], 25.0
    with av.open(str(video)) as src:
        stream = src.streams.video[0]
        fps = float(stream.average_rate or 25)
        for frame in src.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= seconds * fps:
                break
    n_frames = int(round(seconds * fps))
    h, w = frames[0].shape[:2]
    h, w = h - h % 2, w - w % 2
    with av.open(str(out), "w", format=container_format) as dst:
        vs = dst.add_stream(video_codec, rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if samples is not None:
            a_codec = "libopus" if str(out).endswith(".webm") else "aac"
            astream = dst.add_stream(a_codec, rate=48000 if a_codec == "libopus" else sample_rate)
            astream.layout = "mono"
        for i in range(n_frames):
            img = frames[i % len(frames)][:h, :w]
            for packet in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                dst.mux(packet)
        for packet in vs.encode():
            dst.mux(packet)
        if samples is not None:
            rate = astream.rate
            if rate != sample_rate:
                idx = np.arange(int(len(samples) * rate / sample_rate)) * sample_rate / rate
                samples = np.interp(idx, np.arange(len(samples)), samples).astype(np.float32)
            frame_size = astream.codec_context.frame_size or 1024
            pts = 0
            for start in range(0, len(samples), frame_size):
                chunk = samples[start : start + frame_size]
                if len(chunk) < frame_size:
                    chunk = np.pad(chunk, (0, frame_size - len(chunk)))
                af = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
                af.sample_rate, af.pts = rate, pts
                pts += frame_size
                for packet in astream.encode(af):
                    dst.mux(packet)
            for packet in astream.encode():
                dst.mux(packet)
    return Path(out)
