"""Decode media files: container facts, 16 kHz mono audio, and time-stamped RGB frames.

Everything goes through PyAV (FFmpeg) because it gives the real presentation timestamp of every
frame and audio block: variable-frame-rate phone videos and containers whose audio starts later
than the video (``face_noface.mov``'s audio starts at 2.43 s) stay on one timeline, whose zero is
the container's start. Each FFmpeg failure is turned into an ``InputError`` naming the file, so a
batch run reports one line per bad video instead of a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np

from core.errors import InputError
from core.records import Audio, VideoInfo, pcm16
from extractors.base import Clip
from pipeline.signal import audio_energy_db, level_dbfs

# A video's packets must reach this close (s) to its stated end, else the file was cut short.
_TAIL_SLACK_S = 1.5
# Index entries looked at when checking that the file still holds all the data its index
# points to; the last packets of a stream are at the end of the index.
_INDEX_TAIL = 64


def _fail(path: str | os.PathLike, cause: str) -> InputError:
    return InputError(cause, path=str(path))


def _ffmpeg_reason(err: Exception) -> str:
    """FFmpeg's own short reason (without the file path PyAV appends to it)."""
    reason = getattr(err, "strerror", None) or str(err)
    return str(reason).split(":")[0].strip().rstrip(".") or type(err).__name__


def _check_file(path: Path) -> None:
    if not path.exists():
        raise _fail(path, "file not found")
    if path.is_dir():
        raise _fail(path, "is a directory, not a media file")
    if not os.access(path, os.R_OK):
        raise _fail(path, "permission denied")
    if path.stat().st_size == 0:
        raise _fail(path, "empty file (0 bytes)")


@contextmanager
def _open(path: str | os.PathLike) -> Iterator[av.container.InputContainer]:
    """Open a media file for reading, translating every FFmpeg/OS failure into InputError."""
    path = Path(path)
    _check_file(path)
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as err:
        raise _fail(path, f"not a readable media file ({_ffmpeg_reason(err)})") from None
    except OSError as err:
        raise _fail(path, f"cannot open ({err.strerror or err})") from None
    try:
        yield container
    finally:
        container.close()


def _video_stream(container) -> av.video.stream.VideoStream | None:
    """The first real video stream; cover art (attached pictures) in audio files is not video."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _audio_stream(container) -> av.audio.stream.AudioStream | None:
    return container.streams.audio[0] if container.streams.audio else None


def _origin(container) -> float:
    """The container's start time: time zero of every timestamp mmpipe reports."""
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def _stream_seconds(stream, value: int | None) -> float | None:
    if value is None or stream.time_base is None:
        return None
    return float(value * stream.time_base)


def _nominal_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


def _check_index_complete(path: Path, container) -> None:
    """MP4/MOV carry an index of every packet's byte position: data beyond EOF means a cut file."""
    size = path.stat().st_size
    needed = 0
    for stream in container.streams:
        entries = stream.index_entries
        n = len(entries)
        for i in range(max(0, n - _INDEX_TAIL), n):
            entry = entries[i]
            if entry.pos >= 0:
                needed = max(needed, entry.pos + entry.size)
    if needed > size:
        raise _fail(path, f"truncated file: its index needs {needed} bytes but it has {size}")


def _first_frame(container, stream) -> av.VideoFrame | None:
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError:
        return None
    return None


def _reaches_end(container, stream, end_s: float) -> bool:
    """Seek near the stated end and read packets: a cut file runs out of them before getting
    there. Packets, not frames: the seek lands on the last keyframe before the target, which in
    a clip with one keyframe is the first frame, and decoding from there would decode the whole
    video once more (damaged frames are found where they are decoded, by ``iter_frames``)."""
    start = _stream_seconds(stream, stream.start_time) or 0.0
    target = max(0.0, end_s - 1.0)
    try:
        container.seek(int(target / stream.time_base) + (stream.start_time or 0), stream=stream, backward=True)
        for packet in container.demux(stream):
            if packet.pts is not None and float(packet.pts * stream.time_base) - start >= end_s - _TAIL_SLACK_S:
                return True
    except av.error.FFmpegError:
        return False
    return False


def _is_still_image(container) -> bool:
    """FFmpeg opens pictures through its image demuxers ("image2", "png_pipe", ...)."""
    name = container.format.name
    return name == "image2" or name.endswith("_pipe")


def probe(path: str | os.PathLike) -> VideoInfo:
    """Container facts plus a cheap integrity check (first frame decodes, the end is reachable).

    Audio-only files return width = height = frame_count = 0 (see ``has_video``); a file with a
    video stream that yields no frame, or that was cut short, raises ``InputError``.
    """
    path = Path(path)
    with _open(path) as container:
        video, audio = _video_stream(container), _audio_stream(container)
        if video is None and audio is None:
            raise _fail(path, "no audio or video data (no streams, or only empty ones)")
        if video is not None and _is_still_image(container):
            raise _fail(path, f"a still image ({video.codec_context.name}), not a video")
        _check_index_complete(path, container)
        duration = container.duration / av.time_base if container.duration else 0.0
        if video is None:
            return VideoInfo(
                path=str(path), duration=duration, fps=0.0, width=0, height=0, frame_count=0,
                has_audio=True, video_codec="", audio_codec=audio.codec_context.name,
            )
        fps = _nominal_fps(video)
        video_end = _stream_seconds(video, video.duration) or duration
        first = _first_frame(container, video)
        if first is None:
            raise _fail(path, "video stream has no decodable frames")
        rotation = _frame_rotation(first)
        if video_end > _TAIL_SLACK_S and not _reaches_end(container, video, video_end):
            raise _fail(path, f"truncated or corrupt: video stops before its stated end ({video_end:.2f} s)")
        frame_count = max(1, video.frames or int(round(video_end * fps)))
        width, height = _display_size(video.codec_context.width, video.codec_context.height, rotation)
        return VideoInfo(
            path=str(path),
            duration=duration or video_end,
            fps=fps,
            width=width,
            height=height,
            frame_count=frame_count,
            has_audio=audio is not None,
            video_codec=video.codec_context.name,
            audio_codec=audio.codec_context.name if audio is not None else "",
        )


def video_clip(path: str | os.PathLike, info: VideoInfo | None = None, audio: Audio | None = None) -> Clip:
    """The extractors' view of a media file: its facts, its audio and its frames on request
    (decoded here with real timestamps); ``info`` is probed when not given."""
    info = probe(path) if info is None else info
    frames = (lambda fps, max_width, wanted=None: iter_frames(path, fps, max_width, wanted)) if has_video(info) else None
    return Clip(str(path), info, audio, [], frames)


def has_video(info: VideoInfo | None) -> bool:
    """False for audio-only input, which ``probe`` reports with zero frames and zero size."""
    return info is not None and info.frame_count > 0 and info.width > 0


class _SampleBuffer:
    """Decoded samples gathered in fixed pages, then joined into one array.

    Collecting FFmpeg's small frames in a list and concatenating them (then prepending the
    start padding) held the signal two to three times over. Pages of 4 MB, at glibc's mapping
    threshold (see ``core.memory``), are mapped and unmapped on their own, and each is freed as
    soon as it is copied out, so the join needs little more than the result itself.
    """

    PAGE = 1 << 21  # samples per page: (PAGE,) int16, 4 MB

    def __init__(self) -> None:
        self.pages: list[np.ndarray] = []
        self.fill = self.PAGE  # samples used in the last page
        self.size = 0

    def append(self, samples: np.ndarray) -> None:
        while samples.size:
            if self.fill == self.PAGE:
                self.pages.append(np.empty(self.PAGE, np.int16))
                self.fill = 0
            take = min(samples.size, self.PAGE - self.fill)
            self.pages[-1][self.fill : self.fill + take] = samples[:take]
            self.fill += take
            self.size += take
            samples = samples[take:]

    def join(self, offset: int) -> np.ndarray:
        """(offset + size,) int16: ``offset`` zeros first, or with a negative offset the
        first ``-offset`` samples dropped. Empties the buffer."""
        skip = max(0, -offset)
        lead = max(0, offset)
        out = np.empty(lead + max(0, self.size - skip), np.int16)
        out[:lead] = 0
        at, pos = lead, 0  # write position in out, read position in the stream
        self.pages.reverse()
        while self.pages:
            page = self.pages.pop()
            n = min(self.PAGE, self.size - pos)
            a = min(n, max(0, skip - pos))
            out[at : at + n - a] = page[a:n]
            at += n - a
            pos += n
            del page
        self.size, self.fill = 0, self.PAGE
        return out


def decode_audio(path: str | os.PathLike, sample_rate: int = 16000) -> Audio | None:
    """The first audio stream as mono 16-bit samples at ``sample_rate``; None when there is no audio.

    Samples are placed on the container's timeline: a stream that starts late is preceded by
    digital silence, so sample ``i`` is at ``i / sample_rate`` seconds like every other track.
    """
    path = Path(path)
    with _open(path) as container:
        stream = _audio_stream(container)
        if stream is None:
            return None
        stream.thread_type = "AUTO"
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        buffer = _SampleBuffer()
        first_time: float | None = None
        try:
            for frame in container.decode(stream):
                if first_time is None and frame.time is not None:
                    first_time = frame.time
                for out in resampler.resample(frame):
                    buffer.append(pcm16(out.to_ndarray().reshape(-1)))
            for out in resampler.resample(None):  # flush the resampler's delay line
                buffer.append(pcm16(out.to_ndarray().reshape(-1)))
        except av.error.FFmpegError as err:
            raise _fail(path, f"corrupt audio stream ({_ffmpeg_reason(err)})") from None
        if buffer.size == 0:
            raise _fail(path, "audio stream holds no decodable samples")
        stated = _stream_seconds(stream, stream.duration)
        decoded = buffer.size / sample_rate
        if stated and decoded < 0.9 * stated - 0.5:  # e.g. a FLAC whose header counts more samples
            raise _fail(path, f"truncated audio: it stops at {decoded:.2f} s of a stated {stated:.2f} s")
        # a negative offset is encoder priming before time zero
        samples = buffer.join(int(round(((first_time or 0.0) - _origin(container)) * sample_rate)))
        return Audio(samples=samples, sample_rate=sample_rate)


def _frame_rotation(frame: av.VideoFrame) -> int:
    """Display rotation (degrees counter-clockwise, a multiple of 90) that phones store as metadata."""
    return int(round((frame.rotation or 0) / 90.0)) * 90 % 360


def _display_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    return (height, width) if rotation in (90, 270) else (width, height)


def _scaled_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """Downscale to at most max_width keeping the aspect ratio; even sizes suit the scaler."""
    if max_width <= 0 or width <= max_width:
        return width, height
    new_h = max(2, int(round(height * max_width / width / 2.0)) * 2)
    return max_width, new_h


def _to_rgb(frame: av.VideoFrame, max_width: int) -> np.ndarray:
    rotation = _frame_rotation(frame)
    disp_w, disp_h = _display_size(frame.width, frame.height, rotation)
    out_w, out_h = _scaled_size(disp_w, disp_h, max_width)
    if rotation in (90, 270):
        out_w, out_h = out_h, out_w  # scale in coded orientation, then rotate
    rgb = frame.to_ndarray(format="rgb24", width=out_w, height=out_h)
    if rotation:
        rgb = np.rot90(rgb, k=rotation // 90)
    # PyAV pads rows to an aligned stride (e.g. width 524 -> 1572 bytes padded); consumers such
    # as MediaPipe's mp.Image ignore strides and would read sheared garbage, so hand out a
    # contiguous array always.
    return np.ascontiguousarray(rgb)


def iter_frames(
    path: str | os.PathLike, fps: float, max_width: int, wanted: Callable[[float], bool] | None = None
) -> Iterator[tuple[float, np.ndarray | None]]:
    """Yield (seconds, RGB uint8 HxWx3) for the frame nearest each instant k / fps.

    Times are the frames' real presentation timestamps, so a variable-frame-rate video is not
    stretched (a frame with a missing or repeated timestamp is placed one nominal frame period
    after the previous one). A source frame is yielded at most once, so times strictly increase;
    a video with fewer frames per second than ``fps`` yields every frame. Only the chosen frames
    are converted to RGB (the decoder's frame is kept until the next one shows which is nearer);
    the others are decoded, unavoidable for inter-coded video, and dropped. With ``wanted``, a
    chosen frame at a time it rejects is not converted either: its picture is None.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = Path(path)
    step = 1.0 / fps
    with _open(path) as container:
        stream = _video_stream(container)
        if stream is None:
            raise _fail(path, "no video stream")
        stream.thread_type = "AUTO"
        origin = _origin(container)
        period = 1.0 / _nominal_fps(stream) if _nominal_fps(stream) else step
        k = 0  # index of the next sampling instant
        prev: tuple[float, av.VideoFrame] | None = None
        last_emitted = -np.inf
        try:
            for frame in container.decode(stream):
                t = frame.time - origin if frame.time is not None else None
                if prev is not None and (t is None or t <= prev[0]):
                    t = prev[0] + period  # missing or repeated timestamp: assume the nominal rate
                elif t is None:
                    t = 0.0
                while k * step <= t:
                    instant = k * step
                    k += 1
                    if prev is not None and instant - prev[0] <= t - instant:
                        chosen_t, chosen = prev
                    else:
                        chosen_t, chosen = t, frame
                    if chosen_t > last_emitted:
                        last_emitted = chosen_t
                        yield chosen_t, _picture(chosen_t, chosen, max_width, wanted)
                prev = (t, frame)
        except av.error.FFmpegError as err:
            where = prev[0] if prev else 0.0
            raise _fail(path, f"corrupt video stream near {where:.2f} s ({_ffmpeg_reason(err)})") from None
        if prev is not None and prev[0] > last_emitted and k * step - prev[0] < step / 2 + period:
            yield prev[0], _picture(prev[0], prev[1], max_width, wanted)


def _picture(t: float, frame: av.VideoFrame, max_width: int, wanted: Callable[[float], bool] | None) -> np.ndarray | None:
    return _to_rgb(frame, max_width) if wanted is None or wanted(t) else None


def audio_level_dbfs(audio: Audio) -> float:
    """Loudness of the loud parts of ``audio`` (``pipeline.signal.level_dbfs`` of its frames)."""
    if len(audio.samples) == 0:
        return -np.inf
    return level_dbfs(audio_energy_db(audio))


# Loudness of the loud parts under which audio holds nothing worth transcribing: between the
# loudest parts of near-silent room noise (``single_face.mp4``: -57 dBFS) and quiet real speech
# (``retalking_face_4.mp4``: -26 dBFS); -60 would call that noise sound.
SILENT_DBFS = -50.0


def is_quiet(energy: np.ndarray, threshold_dbfs: float = SILENT_DBFS) -> bool:
    """True when audio with these 10 ms frame energies (``audio_energy_db``) is digitally silent
    or near-silent, for a caller that keeps the energies for more than this check."""
    return level_dbfs(energy) < threshold_dbfs


def is_silent(audio: Audio | None, threshold_dbfs: float = SILENT_DBFS) -> bool:
    """True for missing, digitally silent or near-silent audio (nothing worth transcribing)."""
    return audio is None or is_quiet(audio_energy_db(audio), threshold_dbfs)


__all__ = [
    "probe",
    "has_video",
    "decode_audio",
    "iter_frames",
    "audio_level_dbfs",
    "is_quiet",
    "is_silent",
]
