"""pipeline.media on the real test clips, on clips re-encoded into other containers, and on
broken files made from real ones."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from core.errors import InputError
from pipeline import media
from pipeline.signal import pcm_16k
from tests.conftest import DATA, SPEECH, VIDEOS

KATIE = VIDEOS / "WDA_KatieHill_000.mp4"
GRID = DATA / "grid" / "bbaf2n.mpg"


# --- probe -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "path, duration, fps, size, audio, vcodec, acodec",
    [
        (KATIE, 8.0, 25.0, (512, 512), True, "mpeg4", "aac"),
        (VIDEOS / "desk_woman_stockmarket_9s.mp4", 9.0, 30.0, (1280, 720), True, "h264", "aac"),
        (VIDEOS / "single_face.mp4", 2.42, 30.0, (640, 360), True, "h264", "mp3float"),
        (VIDEOS / "face_noface.mov", 6.42, 26.4, (960, 540), True, "hevc", "aac"),
        (VIDEOS / "noface_face.mov", 6.38, 26.5, (960, 540), True, "hevc", "aac"),
        (GRID, 2.98, 25.0, (360, 288), True, "mpeg1video", "mp2"),
        (VIDEOS / "carphone_noaudio.mp4", 4.0, 29.97, (176, 144), False, "h264", ""),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else None,
)
def test_probe_real_videos(path, duration, fps, size, audio, vcodec, acodec):
    info = media.probe(path)
    assert info.duration == pytest.approx(duration, abs=0.02)
    assert info.fps == pytest.approx(fps, abs=0.05)
    assert (info.width, info.height) == size
    assert info.has_audio is audio
    assert (info.video_codec, info.audio_codec) == (vcodec, acodec)
    assert info.frame_count == pytest.approx(duration * fps, abs=2)
    assert media.has_video(info)


def test_probe_audio_only_file():
    info = media.probe(SPEECH / "jfk.flac")
    assert not media.has_video(info)
    assert info.has_audio and info.audio_codec == "flac"
    assert info.duration == pytest.approx(11.0, abs=0.01)


# --- decode_audio ------------------------------------------------------------------------------

def test_decode_audio_talking_head():
    audio = media.decode_audio(KATIE)
    assert audio.sample_rate == 16000
    assert audio.samples.dtype == np.int16 and audio.samples.ndim == 1  # half float32's memory
    assert audio.duration == pytest.approx(8.0, abs=0.03)
    x = audio.floats[:]
    assert x.dtype == np.float32 and np.abs(x).max() <= 1.0
    assert not media.is_silent(audio)


def test_decode_audio_resamples_stereo_flac_and_other_rates():
    audio = media.decode_audio(SPEECH / "jfk.flac")  # 44.1 kHz stereo
    assert audio.duration == pytest.approx(11.0, abs=0.01)
    low = media.decode_audio(SPEECH / "jfk.flac", sample_rate=8000)
    assert low.sample_rate == 8000 and len(low.samples) == pytest.approx(11.0 * 8000, abs=80)
    speech = pcm_16k(low)  # what the recognisers read: 16-bit at 16 kHz through soxr
    assert speech.dtype == np.int16 and len(speech) == 2 * len(low.samples)
    assert pcm_16k(audio) is audio.samples  # already 16 kHz: no copy


def test_decode_audio_mpeg_ps():
    audio = media.decode_audio(GRID)
    assert audio.duration == pytest.approx(2.98, abs=0.05)
    assert not media.is_silent(audio)


def test_no_audio_stream_gives_none():
    assert media.decode_audio(VIDEOS / "carphone_noaudio.mp4") is None


def test_late_audio_stream_is_placed_on_the_video_timeline():
    # face_noface.mov's AAC track starts 2.43 s into the file.
    stream_start = 2.4300
    audio = media.decode_audio(VIDEOS / "face_noface.mov")
    lead = int(stream_start * audio.sample_rate)
    assert not np.any(audio.samples[: lead - 160])
    assert np.abs(audio.floats[lead + 1600 : lead + 16000]).max() > 0.01
    assert audio.duration == pytest.approx(6.40, abs=0.03)


# --- silence ------------------------------------------------------------------------------------

def test_silence_detection_on_real_clips():
    assert media.is_silent(media.decode_audio(VIDEOS / "WolfgangLanger_Pexels.mp4"))  # digital zero
    assert media.is_silent(media.decode_audio(VIDEOS / "single_face.mp4"))  # room noise, -57 dBFS
    quiet = media.decode_audio(VIDEOS / "retalking_face_4.mp4")  # quiet real speech
    assert not media.is_silent(quiet)
    assert -40 < media.audio_level_dbfs(quiet) < -20
    assert media.is_silent(None)


# --- iter_frames --------------------------------------------------------------------------------

def test_iter_frames_samples_real_video():
    frames = list(media.iter_frames(KATIE, fps=15, max_width=256))
    times = np.array([t for t, _ in frames])
    assert len(frames) == pytest.approx(8.0 * 15, abs=2)
    assert np.all(np.diff(times) > 0)
    assert times[0] == 0.0 and times[-1] <= 8.0
    # frames are real 25 fps frames: every time is a multiple of 40 ms
    assert np.allclose(times * 25, np.round(times * 25), atol=1e-6)
    rgb = frames[0][1]
    assert rgb.shape == (256, 256, 3) and rgb.dtype == np.uint8 and rgb.std() > 10


def test_iter_frames_times_are_the_decoders_timestamps_on_a_vfr_phone_video():
    path = VIDEOS / "face_noface.mov"  # 169 frames in 6.4 s: not a constant 30 fps
    ours = np.array([t for t, _ in media.iter_frames(path, fps=1000, max_width=64)])
    cap = cv2.VideoCapture(str(path))
    theirs = []
    while cap.grab():
        theirs.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
    cap.release()
    assert len(ours) == len(theirs) == 169
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert np.ptp(np.diff(ours)) > 0.01  # the gaps really vary


def _write_clip(path: Path, times: list[float], rotation: int | None = None) -> None:
    """A 64x48 H.264 clip whose frames have exactly the given timestamps (white top-left quarter)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        img = np.zeros((48, 64, 3), np.uint8)
        img[:24, :32] = 255
        for t in times:
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = int(round(t * 1000)), Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_iter_frames_variable_frame_rate_uses_real_pts(tmp_path):
    pts = [0.0, 0.03, 0.05, 0.2, 0.21, 0.5, 0.9, 0.95, 1.0, 1.4]
    clip = tmp_path / "vfr.mp4"
    _write_clip(clip, pts)
    assert [t for t, _ in media.iter_frames(clip, fps=1000, max_width=640)] == pytest.approx(pts)
    # Instants 0, .2, .4, ..., 1.4 take their nearest frame; each frame is used at most once.
    sampled = [t for t, _ in media.iter_frames(clip, fps=5, max_width=640)]
    assert sampled == pytest.approx([0.0, 0.2, 0.5, 0.9, 1.0, 1.4])


def test_rotated_phone_video_is_returned_upright(tmp_path):
    clip = tmp_path / "rotated.mp4"
    _write_clip(clip, [0.0, 0.04, 0.08], rotation=90)
    info = media.probe(clip)
    assert (info.width, info.height) == (48, 64)
    _, rgb = next(media.iter_frames(clip, fps=25, max_width=640))
    cap = cv2.VideoCapture(str(clip))  # OpenCV applies the display matrix itself
    ok, bgr = cap.read()
    cap.release()
    assert ok and rgb.shape == bgr.shape == (64, 48, 3)
    assert np.abs(rgb.astype(int) - bgr[..., ::-1].astype(int)).mean() < 2


def _transcode(src: Path, dst: Path, vcodec: str, acodec: str, rate: int, seconds: float = 1.0) -> None:
    """Re-encode the first second of a real clip into another container, 96x96."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vs = out.add_stream(vcodec, rate=25)
        vs.width, vs.height, vs.pix_fmt = 96, 96, "yuv420p"
        aus = out.add_stream(acodec, rate=rate)
        aus.layout = "mono"
        for n, frame in enumerate(inp.decode(video=0)):
            if frame.time > seconds:
                break
            small = frame.reformat(width=96, height=96, format="yuv420p")
            small.pts, small.time_base = n, Fraction(1, 25)
            for packet in vs.encode(small):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        inp.seek(0)
        fmt = aus.codec_context.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate)
        for frame in inp.decode(audio=0):
            if frame.time > seconds:
                break
            for chunk in resampler.resample(frame):
                chunk.pts = None
                for packet in aus.encode(chunk):
                    out.mux(packet)
        for packet in aus.encode():
            out.mux(packet)


@pytest.mark.parametrize(
    "ext, vcodec, acodec, rate",
    [("mkv", "libx264", "aac", 44100), ("webm", "libvpx", "libopus", 48000), ("avi", "mpeg4", "libmp3lame", 44100)],
)
def test_other_containers(tmp_path, ext, vcodec, acodec, rate):
    clip = tmp_path / f"clip.{ext}"
    _transcode(KATIE, clip, vcodec, acodec, rate)
    info = media.probe(clip)
    assert info.has_audio and (info.width, info.height) == (96, 96)
    assert info.duration == pytest.approx(1.05, abs=0.1)
    assert media.decode_audio(clip).duration == pytest.approx(info.duration, abs=0.1)
    times = [t for t, _ in media.iter_frames(clip, fps=15, max_width=640)]
    assert len(times) == pytest.approx(16, abs=1) and np.all(np.diff(times) > 0)


# --- bad input ----------------------------------------------------------------------------------

def _bad_inputs(tmp: Path) -> dict[str, Path]:
    text = tmp / "transcript.mp4"
    text.write_text("Hello, this is a transcript and not a video.\n")
    empty = tmp / "empty.mp4"
    empty.write_bytes(b"")
    data = KATIE.read_bytes()  # index (moov) at the end: a cut copy loses it
    cut_tail_index = tmp / "cut_katie.mp4"
    cut_tail_index.write_bytes(data[: len(data) // 2])
    data = (VIDEOS / "WolfgangLanger_Pexels.mp4").read_bytes()  # index at the front
    cut_front_index = tmp / "cut_wolfgang.mp4"
    cut_front_index.write_bytes(data[: len(data) // 2])
    mkv = tmp / "full.mkv"
    _transcode(KATIE, mkv, "libx264", "aac", 44100, seconds=4.0)
    cut_mkv = tmp / "cut.mkv"
    cut_mkv.write_bytes(mkv.read_bytes()[: mkv.stat().st_size // 2])
    still = tmp / "still.mp4"
    cv2.imwrite(str(tmp / "still.png"), np.zeros((32, 32, 3), np.uint8))
    still.write_bytes((tmp / "still.png").read_bytes())
    no_frames = tmp / "no_frames.mp4"
    with av.open(str(no_frames), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    return {
        "missing": tmp / "does_not_exist.mp4",
        "directory": tmp,
        "text": text,
        "empty": empty,
        "cut_tail_index": cut_tail_index,
        "cut_front_index": cut_front_index,
        "cut_mkv": cut_mkv,
        "still": still,
        "no_frames": no_frames,
    }


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> dict[str, Path]:
    return _bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize(
    "case, cause",
    [
        ("missing", "not found"),
        ("directory", "directory"),
        ("text", "not a readable media file"),
        ("empty", "empty file"),
        ("cut_tail_index", "not a readable media file"),
        ("cut_front_index", "truncated"),
        ("cut_mkv", "truncated"),
        ("still", "still image"),
        ("no_frames", "no audio or video data"),
    ],
)
def test_bad_input_raises_one_line_input_error(bad_inputs, case, cause):
    path = bad_inputs[case]
    with pytest.raises(InputError) as err:
        media.probe(path)
    message = str(err.value)
    assert str(path) in message and cause in message
    assert "\n" not in message


@pytest.mark.parametrize("case", ["missing", "directory", "text", "empty", "cut_tail_index"])
def test_decoders_reject_unreadable_files_too(bad_inputs, case):
    path = bad_inputs[case]
    with pytest.raises(InputError, match=str(path.name)):
        media.decode_audio(path)
    with pytest.raises(InputError, match=str(path.name)):
        next(media.iter_frames(path, fps=15, max_width=320))


def test_truncated_flac_is_reported(tmp_path):
    data = (SPEECH / "jfk.flac").read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])  # its header still promises 11 s
    with pytest.raises(InputError, match="truncated audio"):
        media.decode_audio(cut)


def test_corrupt_packets_raise_input_error(tmp_path):
    data = bytearray(KATIE.read_bytes())
    n = len(data)
    data[n // 10 : n * 8 // 10] = bytes(n * 8 // 10 - n // 10)  # zero most of the media data
    clip = tmp_path / "corrupt.mp4"
    clip.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt"):
        media.decode_audio(clip)
    with pytest.raises(InputError, match="corrupt video stream"):
        list(media.iter_frames(clip, fps=15, max_width=128))


def test_frames_are_contiguous_even_with_padded_strides():
    """retalking_face_5 is 524 px wide: PyAV pads its rows, and MediaPipe (which ignores numpy
    strides) found no face in any frame until frames were made contiguous."""
    from pipeline.media import iter_frames

    frames = list(iter_frames(DATA / "videos" / "retalking_face_5.mp4", 2.0, 640))
    assert frames and all(rgb.flags["C_CONTIGUOUS"] for _, rgb in frames)
