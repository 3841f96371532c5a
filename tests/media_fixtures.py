"""Build test clips from real recordings: real speech muxed onto a real face video, with PyAV.

Kept in one place so every test that needs "a talking face saying X" makes it the same way.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from core.records import Audio, Utterance, Word
from pipeline.signal import FRAME_S, audio_energy_db, speech_frames

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
            _write_audio(dst, astream, samples, sample_rate)
    return Path(out)


def frames_at(video: str | Path, fps: float, seconds: float, height: int) -> list[np.ndarray]:
    """The frame of ``video`` shown at each instant k / fps (k < seconds * fps), scaled to ``height``."""
    import cv2

    decoded: list[tuple[float, np.ndarray]] = []
    with av.open(str(video)) as src:
        for frame in src.decode(video=0):
            if frame.time is not None and frame.time > seconds + 1.0:
                break
            img = frame.to_ndarray(format="rgb24")
            width = int(round(img.shape[1] * height / img.shape[0]))
            decoded.append((float(frame.time or 0.0), cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)))
    times = np.array([t for t, _ in decoded])
    return [decoded[int(np.argmin(np.abs(times - k / fps)))][1] for k in range(int(round(seconds * fps)))]


def side_by_side(
    left: str | Path | list[np.ndarray], right: str | Path | list[np.ndarray],
    audio: str | Path | np.ndarray | None, out: str | Path,
    seconds: float | None = None, height: int = 512, fps: float = 25.0, sample_rate: int = 16000,
) -> Path:
    """A two-shot: two real face videos scaled to ``height`` and put side by side (left | right),
    frame for frame in time, with ``audio`` (a file, samples, or None) as the soundtrack. Lasts
    as long as the shorter video unless ``seconds`` says otherwise. A side may also be frames
    already taken with ``frames_at`` (decoded once for several clips), or a blank of the other
    side's size (``blank(frames)``)."""
    if seconds is None:
        seconds = min(_duration(v) for v in (left, right) if not isinstance(v, list))
    a = left if isinstance(left, list) else frames_at(left, fps, seconds, height)
    b = right if isinstance(right, list) else frames_at(right, fps, seconds, height)
    n = min(len(a), len(b), int(round(seconds * fps)))
    h, w = a[0].shape[0], a[0].shape[1] + b[0].shape[1]
    with av.open(str(out), "w") as dst:
        vs = dst.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        vs.options = {"crf": "18", "preset": "veryfast"}
        astream = None
        if audio is not None:
            astream = dst.add_stream("aac", rate=sample_rate)
            astream.layout = "mono"
        for k in range(n):
            img = np.hstack([a[k], b[k]])[: vs.height, : vs.width]
            for packet in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                dst.mux(packet)
        for packet in vs.encode():
            dst.mux(packet)
        if astream is not None:
            samples = audio if isinstance(audio, np.ndarray) else load_audio(audio, sample_rate)
            _write_audio(dst, astream, samples[: int(n / fps * sample_rate)], sample_rate)
    return Path(out)


def blank(frames: list[np.ndarray], level: int = 60) -> list[np.ndarray]:
    """Flat grey frames of the same size: an empty half of a two-shot."""
    return [np.full_like(frames[0], level)] * len(frames)


def _write_audio(dst, astream, samples: np.ndarray, sample_rate: int) -> None:
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
        af = av.AudioFrame.from_ndarray(chunk.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
        af.sample_rate, af.pts = rate, pts
        pts += frame_size
        for packet in astream.encode(af):
            dst.mux(packet)
    for packet in astream.encode():
        dst.mux(packet)


def _duration(video: str | Path) -> float:
    with av.open(str(video)) as src:
        if src.duration:
            return float(src.duration / 1e6)
        stream = src.streams.video[0]
        return float(stream.duration * stream.time_base)


def speech_words(audio: Audio, piece_s: float = 0.25, pause_s: float = 0.35) -> list[Utterance]:
    """Word-sized pieces of the speech stretches of ``audio`` (the speaker choice never reads the
    text, only the times), with utterances split at pauses longer than ``pause_s``."""
    speech = speech_frames(audio_energy_db(audio))
    edges = np.flatnonzero(np.diff(np.r_[0, speech.astype(int), 0]))
    utterances: list[Utterance] = []
    current: list[Word] = []
    last_end = None
    for a, b in zip(edges[::2] * FRAME_S, edges[1::2] * FRAME_S):
        if b - a < 0.1:
            continue
        if last_end is not None and a - last_end > pause_s and current:
            utterances.append(Utterance(len(utterances), tuple(current)))
            current = []
        n = max(1, int(round((b - a) / piece_s)))
        current += [Word("w", a + (b - a) * k / n, a + (b - a) * (k + 1) / n) for k in range(n)]
        last_end = b
    if current:
        utterances.append(Utterance(len(utterances), tuple(current)))
    return utterances
