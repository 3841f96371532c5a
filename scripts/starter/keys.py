"""Seeds and cache keys of the starter build, the same in every process and on every run.

The build spreads sentences over spawned worker processes and reuses a cache across runs, so
every random choice (voice, noise, face window, phrases, subsets) is seeded from the sentence's
key rather than from ``hash()`` (salted per process), and every cache entry is named by a digest
of exactly what produced it. Changing anything here renames every cache entry, so a cache in
``~/.cache/mmpipe/starter`` would be rebuilt from scratch.
"""

from __future__ import annotations

import hashlib
import json

# Bump when synthesis changes (voices, padding, noise, timing rules): invalidates cached audio.
SYNTH_VERSION = "1"
# Bump when the per-sentence feature recipe changes beyond what the extractor identities cover.
FEATURES_VERSION = "1"


def stable_seed(*parts: object) -> int:
    """A seed from text, the same in every process (``hash()`` is salted per process)."""
    blob = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little")


def digest(*parts: object, n: int = 20) -> str:
    """A cache key from JSON-able parts: equal parts, equal key, in any process or run."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:n]
