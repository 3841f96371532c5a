"""Names of videos in the store: one output per input, readable, and the same whatever else runs.

A video's name (its ``video_id`` and the stem of its Parquet file) is its file stem, kept as it
is: unicode letters and digits, spaces and punctuation stay (``名前.mp4`` -> ``名前``,
``a b.mp4`` -> ``a b``), so two different files never map to one name by accident. Only what
some filesystem of a shared store cannot hold is replaced (``/ \\ : * ? " < > |``, control
characters, a leading dot that would hide the file); a name that needed that gets ``~`` and a
short hash of the original, so it stays unique.

The extension joins the name only when another media file in the same folder has the same
stem: ``clip.mp4`` and ``clip.mov`` side by side become ``clip.mp4`` and ``clip.mov``, while a
lone ``clip.mp4`` stays ``clip``. The rule reads only the input's own folder, so a name never
depends on which videos one run happens to process, or in which order.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from core.files import digest

# Container formats ffmpeg/PyAV read that people keep talking-head recordings in.
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
     ".flv", ".wmv", ".3gp", ".ogv"}
)
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".wma"})
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS
SUFFIX = ".parquet"

_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]')
_MAX_BYTES = 200  # file names are limited to 255 bytes; leave room for the suffix and temp names


def safe_name(text: str) -> str:
    """``text`` unchanged where every common filesystem can store it; otherwise the unsafe
    characters become ``_`` and a hash of the original keeps the result unique."""
    clean = _UNSAFE.sub("_", text.encode("utf-8", "replace").decode("utf-8"))
    clean = re.sub(r"^\.+", "_", clean).strip() or "video"
    if clean == text and len(text.encode("utf-8")) <= _MAX_BYTES:
        return text
    tag = digest(text.encode("utf-8", "surrogateescape"))[:8]
    while len(clean.encode("utf-8")) > _MAX_BYTES:
        clean = clean[:-1]
    return f"{clean}~{tag}"


def _media_siblings(folder: Path) -> list[str]:
    """Names of the visible media files in ``folder`` ([] when it cannot be listed)."""
    try:
        with os.scandir(folder) as entries:
            return [
                e.name for e in entries
                if not e.name.startswith(".") and Path(e.name).suffix.lower() in MEDIA_EXTENSIONS
            ]
    except OSError:
        return []


def video_names(videos: Iterable[str | os.PathLike]) -> dict[Path, str]:
    """The store name of each video (see the module docstring); each folder is listed once."""
    listings: dict[Path, list[str]] = {}
    out: dict[Path, str] = {}
    for video in videos:
        video = Path(video)
        stem = safe_name(video.stem)
        folder = video.parent
        if folder not in listings:
            listings[folder] = _media_siblings(folder)
        shared = any(name != video.name and safe_name(Path(name).stem) == stem for name in listings[folder])
        out[video] = safe_name(video.name) if shared else stem
    return out


def video_name(video: str | os.PathLike) -> str:
    return video_names([video])[Path(video)]


def output_path(
    video: str | os.PathLike, out_dir: str | os.PathLike, root: str | os.PathLike | None = None,
    name: str | None = None,
) -> Path:
    """Where a video's features go; with ``root`` the sub-folders below it are kept, so two
    videos with the same name in different folders never overwrite each other."""
    video = Path(video)
    sub = Path()
    if root is not None:
        try:
            sub = video.resolve().parent.relative_to(Path(root).resolve())
        except ValueError:
            sub = Path()
    return Path(out_dir) / sub / f"{name or video_name(video)}{SUFFIX}"


def shared_outputs(outputs: dict[Path, Path]) -> list[tuple[Path, list[Path]]]:
    """Output files that more than one input would write (input -> output given), sorted:
    these can only be told apart by writing them to different folders."""
    by_output: dict[Path, list[Path]] = {}
    for video, out in outputs.items():
        by_output.setdefault(out, []).append(video)
    return sorted((out, sorted(vs)) for out, vs in by_output.items() if len(vs) > 1)
