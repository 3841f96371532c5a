"""Which frames of a track the word pooling reads: the one rule, for the pooling that reads them
and for a frame extractor that may skip the others.

``pipeline.pooling`` averages the frames whose time lies in a word's [start, end]; a word that
holds no frame borrows the nearest one within ``nearest_reach`` of it. Everything else (frames in
the pauses between words, before the first and after the last) is never read, so the face
track, which costs ~10 ms a frame, need not compute it. ``read_spans`` gives the time spans that
hold every frame the pooling can read, for frames sampled ``period`` seconds apart.
"""

from __future__ import annotations

import numpy as np

MIN_NEAREST_S = 0.25  # a short word may borrow a frame this far away (or 2 frame periods)


def nearest_reach(period: float) -> float:
    """How far from a word that holds no frame its borrowed frame may lie, in seconds."""
    return max(2.0 * period, MIN_NEAREST_S)


def read_spans(starts: np.ndarray, ends: np.ndarray, period: float) -> np.ndarray:
    """(m, 2) sorted, disjoint [start, end] time spans holding every frame that pooling over
    words [starts, ends] reads, for frames about ``period`` seconds apart.

    A word at least two periods long holds a sampled frame (frames sit within half a source
    frame of their instants k * period), so only its own span is read; a shorter word may hold
    none, and then reads as far as ``nearest_reach``, which is added on both sides.
    """
    starts = np.asarray(starts, np.float64)
    ends = np.maximum(np.asarray(ends, np.float64), starts)
    if starts.size == 0:
        return np.zeros((0, 2))
    reach = np.where(ends - starts < 2.0 * period, nearest_reach(period), 0.0)
    lo, hi = starts - reach, ends + reach
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], np.maximum.accumulate(hi[order])
    # a new span begins where a word starts after everything before it has ended
    begins = np.r_[True, lo[1:] > hi[:-1]]
    first = np.flatnonzero(begins)
    last = np.r_[first[1:] - 1, len(lo) - 1]
    return np.stack([lo[first], hi[last]], axis=1)


def inside(spans: np.ndarray, t: float) -> bool:
    """Whether time ``t`` lies in one of ``read_spans``' spans (ends included)."""
    k = int(np.searchsorted(spans[:, 0], t, side="right")) - 1
    return k >= 0 and t <= spans[k, 1]


def covered_s(spans: np.ndarray, duration: float) -> float:
    """Seconds of [0, duration] the spans cover."""
    if len(spans) == 0:
        return 0.0
    return float(np.clip(np.minimum(spans[:, 1], duration) - np.maximum(spans[:, 0], 0.0), 0.0, None).sum())
