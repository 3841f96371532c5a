"""File utilities every writer and verifier shares: atomic publication, a check that an output
folder can be written before any work, and the content hashes (``digest``, ``sha256_file``).

Every write failure (read-only or immutable folder, full disk, a path under /proc, an existing
file where a folder should be) becomes one ``OutputError`` naming the path and the cause, and
leaves nothing half-written behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from core.errors import OutputError


def _umask() -> int:
    """The process umask (mkstemp makes 0600 files; published files get the usual permissions).
    Linux tells it without changing it; elsewhere it is set and restored."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _cause(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


MIN_FREE_BYTES = 16 << 20  # an hour of video makes a feature file of a few MB


def writable_folder(folder: str | os.PathLike, min_free: int = 0) -> Path:
    """Create ``folder`` if needed and prove a file can be written in it (and that ``min_free``
    bytes are free), before any work that would be lost if the result could not be stored."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError("exists and is not a folder", str(folder))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".mmpipe-write-check.", suffix=".tmp", dir=folder)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
        free = shutil.disk_usage(folder).free
    except OSError as err:
        raise OutputError(f"cannot write here ({_cause(err)})", str(folder)) from None
    if free < min_free:
        raise OutputError(f"not enough free space ({free / 2**20:.1f} MB free, {min_free / 2**20:.0f} MB needed)",
                          str(folder))
    return folder


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then rename into place, so readers never see a torn file. A
    failure of the filesystem is an ``OutputError`` naming ``path``; the temp file is removed."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _remove(tmp)
        raise OutputError(f"cannot write ({_cause(err)})", str(path)) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str | None) -> None:
    if tmp is not None and os.path.exists(tmp):
        os.unlink(tmp)


def atomic_write_json(path: str | os.PathLike, data) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(data, fh)

    atomic_write(path, write)


def digest(*parts: str | bytes) -> str:
    """SHA-256 (hex) of the parts one after another: the one way mmpipe names a thing by its
    content (settings, transcripts, model files); callers shorten it where they need a key."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
    return h.hexdigest()


def file_head(path: str | os.PathLike, size: int = 1 << 20) -> bytes:
    """The first ``size`` bytes: enough, with the file's name and length, to tell model files
    of hundreds of MB apart without reading them whole."""
    with open(path, "rb") as fh:
        return fh.read(size)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
