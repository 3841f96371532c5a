"""How the process hands memory back to the system (glibc's allocator, on Linux).

Block-wise stages allocate and free arrays of a few to a few tens of MB over and over. glibc
serves a freed large block's successors from its heap once it has seen one freed (its mmap
threshold rises to 32 MB), and a heap only shrinks from the top, so the resident size of a long
run creeps up with fragments nobody uses; each thread that allocates also gets its own heap
("arena"). With glibc's defaults ``mmpipe extract`` of 10 minutes peaked at 1333 MB, with the
settings below at 1182 MB.

- Allocations of 4 MB and more get their own mapping, returned to the system the moment they
  are freed (a fixed threshold also turns glibc's rising one off). Not lower: the native
  libraries allocate and free 1-4 MB buffers at a high rate, and mapping each of them cost
  system time (10 minutes: 37 s with a 1 MB threshold, 26 s with 4 MB, 20 s with the default).
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
MMAP_THRESHOLD = 4 << 20
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
