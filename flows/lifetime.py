"""Processes mmpipe starts end with it, even when it is killed with ``kill -9``.

A command starts children that nothing ties to it: Prefect's temporary API server (``python -m
uvicorn ...``, stopped only by an ``atexit`` hook), local Dask workers, process-pool workers.
Killed with SIGKILL (or by the OOM killer), mmpipe would leave them running, the server still
listening. Code that starts such children wraps that in :func:`owned_processes`:

- every process started inside the block carries ``MMPIPE_OWNER=<pid>:<start time>`` in its
  environment, and so do its own children. That is the record of what is ours: the kernel keeps
  it (``/proc/<pid>/environ``) after the owner is gone, and the start time makes it unambiguous
  even when the owner's pid is reused. No process without it is ever signalled.
- a guardian (this file run as a script: standard library only, in a session of its own so that
  Ctrl-C and a killed process group do not reach it) waits for the owner to end, however it
  ends, then stops every process carrying the owner's marker: SIGTERM, then SIGKILL after a
  grace period. After a normal exit or Ctrl-C the owner has stopped its children itself; the
  guardian finds nothing and exits.
- when it starts, the guardian also stops marked processes whose owner is dead: the leftovers of
  a run whose guardian could not do its job (killed along with its owner).

Linux only (``/proc``, pidfds); elsewhere :func:`owned_processes` does nothing.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, suppress
from typing import Callable, Iterator

MARKER = "MMPIPE_OWNER"
GRACE_S = 3.0  # SIGTERM -> SIGKILL: time for the API server to close its database
ROUNDS = 5  # scans after the owner's death: a child may start another while we stop it

_guardians: dict[str, subprocess.Popen] = {}  # owner token -> its guardian


def supported() -> bool:
    return sys.platform.startswith("linux") and os.path.isdir("/proc/self")


def start_time(pid: int) -> int | None:
    """The process' start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), or
    None when it is gone or a zombie. A pid together with it names one process, never a
    later one that got the same pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()  # the name before ")" may hold spaces
    except (OSError, IndexError):
        return None
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def owner_token(pid: int | None = None) -> str | None:
    pid = os.getpid() if pid is None else pid
    start = start_time(pid)
    return None if start is None else f"{pid}:{start}"


def parse(token: str) -> tuple[int, int] | None:
    pid, _, start = token.partition(":")
    try:
        return int(pid), int(start)
    except ValueError:
        return None


def is_alive(token: str) -> bool:
    owner = parse(token)
    return owner is not None and start_time(owner[0]) == owner[1]


def is_dead(token: str) -> bool:
    """A well-formed token whose process is gone: its marked processes are leftovers."""
    return parse(token) is not None and not is_alive(token)


def marker_of(environ: bytes) -> str | None:
    """The owner token in a raw ``/proc/<pid>/environ`` block, if any."""
    prefix = MARKER.encode() + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix):].decode(errors="replace")
    return None


def marked_processes() -> dict[int, tuple[int, str]]:
    """pid -> (start time, owner token) of every process of this user that carries the marker.
    Another user's environment is unreadable, and their processes are not ours anyway."""
    found: dict[int, tuple[int, str]] = {}
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                token = marker_of(fh.read())
        except OSError:
            continue
        start = start_time(int(entry.name)) if token else None
        if token and start is not None:
            found[int(entry.name)] = (start, token)
    return found


def send(pid: int, start: int, sig: int) -> None:
    """Signal the process (pid, start) and no other: through a pidfd, opened before checking
    the start time, so a pid reused in between cannot be hit."""
    fd = None
    with suppress(AttributeError, OSError):
        fd = os.pidfd_open(pid)
    try:
        if start_time(pid) != start:
            return
        if fd is None:
            os.kill(pid, sig)
        else:
            signal.pidfd_send_signal(fd, sig)
    except (ProcessLookupError, PermissionError):
        pass
    finally:
        if fd is not None:
            os.close(fd)


def stop(victims: dict[int, int], grace_s: float = GRACE_S) -> None:
    """SIGTERM lets each clean up (the API server closes its database); SIGKILL after
    ``grace_s`` for any that ignore it or hang."""
    for pid, start in victims.items():
        send(pid, start, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(start_time(p) == s for p, s in victims.items()):
        time.sleep(0.05)
    for pid, start in victims.items():
        send(pid, start, signal.SIGKILL)


def stop_marked(owned: Callable[[str], bool], grace_s: float = GRACE_S) -> int:
    """Stop every marked process whose owner token satisfies ``owned``; returns how many."""
    stopped = 0
    for _ in range(ROUNDS):
        victims = {pid: start for pid, (start, token) in marked_processes().items() if owned(token)}
        if not victims:
            break
        stop(victims, grace_s)
        stopped += len(victims)
    return stopped


def wait_for_exit(token: str) -> None:
    """Block until the owner has exited, by any means (a pidfd turns readable then)."""
    pid = int(token.partition(":")[0])  # the guardian's own owner: well-formed
    fd = None
    with suppress(AttributeError, OSError):
        fd = os.pidfd_open(pid)
    try:
        if fd is not None and is_alive(token):  # opened on the owner, not on a reused pid
            select.select([fd], [], [])
            return
        while is_alive(token):  # no pidfds (Linux < 5.3): poll
            time.sleep(0.2)
    finally:
        if fd is not None:
            os.close(fd)


def guard(token: str) -> None:
    """The guardian's whole job."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    stop_marked(is_dead)  # leftovers of an earlier run
    wait_for_exit(token)
    stop_marked(lambda owner: owner == token)


def ensure_guardian(token: str) -> None:
    """One guardian per owner process, started on first use and alive as long as the owner."""
    running = _guardians.get(token)
    if running is not None and running.poll() is None:
        return
    env = {k: v for k, v in os.environ.items() if k != MARKER}  # the guardian is not a victim
    _guardians[token] = subprocess.Popen(
        # -I -S -P: no site-packages, no user settings, not even this folder on sys.path
        [sys.executable, "-I", "-S", "-P", os.path.abspath(__file__), token],
        env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
    )


class _Marking:
    """How many ``owned_processes`` blocks are open in this process (threads may overlap
    them), and the marker value to put back when the last one closes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.depth = 0
        self.inherited: str | None = None

    def enter(self, token: str) -> bool:
        with self.lock:
            if self.pid != os.getpid():  # a forked child starts afresh
                self.pid, self.depth = os.getpid(), 0
            try:
                ensure_guardian(token)
            except OSError as err:  # no guardian: run anyway, as before
                logging.getLogger(__name__).warning("cannot start the process guardian: %s", err)
                return False
            if self.depth == 0:
                self.inherited = os.environ.get(MARKER)
                os.environ[MARKER] = token
            self.depth += 1
            return True

    def exit(self) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth == 0:
                if self.inherited is None:
                    os.environ.pop(MARKER, None)
                else:
                    os.environ[MARKER] = self.inherited


_marking = _Marking()


@contextmanager
def owned_processes() -> Iterator[str | None]:
    """Processes started inside the block (and their descendants) do not outlive this process;
    ones started after it are not affected. Yields the owner token, or None where this is not
    supported. Nesting, also across threads, is harmless."""
    token = owner_token() if supported() else None
    if token is None or not _marking.enter(token):
        yield None
        return
    try:
        yield token
    finally:
        _marking.exit()


if __name__ == "__main__":
    guard(sys.argv[1])
