"""The one way mmpipe keeps a loaded model: a process-wide cache keyed by what identifies it.

Models (Whisper, MiniLM, GloVe, the face landmarker, extractors built from a config section)
load once per process and key, and stay for every later video; a key names everything that
changes the loaded object (its files and the settings that matter), so a new setting loads a
new model and never gets a stale one. Threads that ask for the same key at once wait for one
load; different keys load side by side (the text model loads while Whisper recognises). A load
that fails is not kept, so the error repeats for the next caller instead of a half-built model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_models: dict[Hashable, Any] = {}
_locks: dict[Hashable, threading.Lock] = {}
_guard = threading.Lock()


def cached(key: Hashable, load: Callable[[], T]) -> T:
    """The model under ``key``, loaded by ``load()`` the first time it is asked for."""
    with _guard:
        if key in _models:
            return _models[key]
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _models:
            _models[key] = load()
        return _models[key]


def loaded(key: Hashable) -> Any | None:
    """The model under ``key`` if it is already loaded, else None (nothing is loaded)."""
    with _guard:
        return _models.get(key)
