"""One-time preparation after install (``python -m flows.warmup``, run by scripts/setup.sh).

Pays the first-run costs up front so no user command waits on them: joins and verifies the
Whisper base weights into the cache, verifies tiny.en, and fills librosa's numba cache. Each step
is idempotent and quick the second time (verification results are remembered per file size and
mtime; the numba cache lives on disk).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from core.errors import MmpipeError
from flows.environment import prepare_process
from pipeline.whisper_weights import ensure_whisper_base, tiny_en_dir


def _step(label: str, fn) -> bool:
    t0 = time.perf_counter()
    try:
        detail = fn()
    except MmpipeError as err:
        print(f"warmup: {label}: FAILED: {err}", flush=True)
        return False
    print(f"warmup: {label}: {detail} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return True


def _whisper_base() -> str:
    return f"joined and verified at {ensure_whisper_base()}"


def _tiny_en() -> str:
    return f"verified at {tiny_en_dir()}"


def _numba() -> str:
    # Deferred: numba reads its cache location when librosa first imports it, after
    # prepare_process() has set it.
    import librosa

    y = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    librosa.yin(y, fmin=65, fmax=500, sr=16000, frame_length=1024)
    librosa.feature.mfcc(y=y, sr=16000, n_mfcc=13)
    return "librosa yin + mfcc compiled (numba cache warm)"


def main() -> int:
    prepare_process()
    ok = _step("whisper base", _whisper_base)
    ok = _step("whisper tiny.en", _tiny_en) and ok
    ok = _step("librosa", _numba) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
