"""mmpipe: raw talking-head video -> word-aligned multimodal features -> MMLatch sentiment."""

import os as _os

# librosa JIT-compiles with numba on first use (~30 s); keep numba's on-disk cache in a writable
# folder of ours so the cost is paid once per machine, not once per process. Models are never
# fetched from a hub at run time.
_cache = _os.environ.get("MMPIPE_CACHE") or _os.path.join(
    _os.environ.get("XDG_CACHE_HOME", _os.path.expanduser("~/.cache")), "mmpipe"
)
_os.environ.setdefault("NUMBA_CACHE_DIR", _os.path.join(_cache, "numba"))
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"

# Long videos are processed block by block; make freed blocks go back to the system (see memory.py).
from pipeline.memory import tune_allocator as _tune_allocator  # noqa: E402

_tune_allocator()
