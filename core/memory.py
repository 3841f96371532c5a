"""How the process hands memory back to the system (glibc's allocator, on Linux).

Block-wise stages allocate and free arrays of a few to a few tens of MB over and over. glibc
serves a freed large block's successors from its heap once it has seen one freed (its mmap
threshold rises to 32 MB), and a heap only shrinks from the top, so the resident size of a long
run creeps up with fragments nobody uses; each thread that allocates also gets its own heap
("arena"). Measured on a 1-minute clip, Whisper alone kept 100 MB more resident after a call with
glibc's defaults than with the two settings below.

- Allocations of 1 MB and more get their own mapping, returned to the system the moment they
  are freed (a fixed threshold also turns glibc's rising one off).
- At most two arenas: the stages run on two threads (audio stages, face tracking); the native
  libraries' worker threads share them.

Explicit ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_ARENA_MAX`` environment settings win. Elsewhere
(macOS, musl) these calls do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os

_M_MMAP_THRESHOLD = -3  # mallopt parameter numbers from glibc's malloc.h
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 1 << 20
ARENA_MAX = 2


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def tune_allocator() -> None:
    """Apply the settings above once, early in the process (the entry points do, through
    ``flows.environment.prepare_process``)."""
    libc = _glibc()
    if libc is None:
        return
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    if "MALLOC_ARENA_MAX" not in os.environ:
        libc.mallopt(_M_ARENA_MAX, ARENA_MAX)


def release_memory() -> None:
    """Collect garbage and give free heap pages back to the system: called after a long stage, so
    the next one starts from what is really in use."""
    gc.collect()
    if (libc := _glibc()) is not None:
        libc.malloc_trim(0)


__all__ = ["tune_allocator", "release_memory"]
