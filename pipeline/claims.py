"""Per-video claims in the store folder, so runs that share an output folder split the work.

Several backfills (processes, machines) pointed at one folder is how users scale out without a
scheduler. Before extracting a video a run takes its claim: an exclusive, non-blocking
``flock`` on ``.<name>.parquet.claim`` next to the output. A video whose claim another live
process holds is left to that process. The operating system drops the lock when its holder
dies, however it dies (``kill -9``, a crash, a power cut), so a crashed run's claim never
blocks anyone; the file it leaves behind only says who held it last.

On network filesystems the lock is as good as the filesystem's locking: NFSv4 and SMB hold
byte-range locks for the client and release them when its lease ends (about 90 s after a
client machine dies).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import MmpipeError


class ClaimedElsewhere(MmpipeError):
    """Another live run is extracting this video into the same folder right now."""


def claim_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.claim")


def _holder(fd: int) -> str:
    """Who holds the claim, as its file says (best effort: it is only for the message)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"pid {info['pid']} on {info['host']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another run"


@contextmanager
def claim(output: str | os.PathLike, video: str | os.PathLike) -> Iterator[None]:
    """Hold the claim on ``output`` for the block; ``ClaimedElsewhere`` when a live run has it.

    The file is removed on release while still locked; a run that opened the old file in that
    instant sees its lock land on a removed file and tries again on the new one.
    """
    path = claim_path(Path(output))
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            who = _holder(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise ClaimedElsewhere(f"being extracted into the same folder by {who}", str(video)) from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # released and removed between our open and our lock: take the new file
    try:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "video": str(video)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        yield
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.close(fd)
