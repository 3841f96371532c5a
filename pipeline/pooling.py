"""Word alignment of frame-level tracks: average every feature over each word's time span.

A word's vector is the mean of the *present* frames whose centre lies in [start, end]. Three
cases need a rule, and each is explicit here rather than left to NaN:

- a word shorter than one frame (no frame centre inside it) takes the nearest present frame,
  if one is within ``max(2 frame periods, 0.25 s)`` of the word (``core.spans``: the frames
  this reads are all a frame extractor needs to compute);
- a word with no usable frame (modality absent throughout it: no face, no audio) is imputed
  by linear interpolation in time between the nearest words that do have real values (copying
  the only neighbour at either end), else with the track's mean over present frames, else
  zeros, and flagged ``imputed``;
- coverage columns (feature names ending in ``_present``, like the facial ``face_present``) are
  averaged over *all* frames of the word, present or not, so they give the fraction of the word
  in which the modality was there; they are never interpolated.

Everything is vectorised (``np.searchsorted`` for the spans, one gather and ``np.add.reduceat``
for the sums): an hour of video has ~10k words and ~360k acoustic frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.blocks import chunks
from core.records import FrameFeatures, Word, WordFeatures
from core.spans import nearest_reach

COVERAGE_SUFFIX = "_present"
WORDS_PER_PASS = 2048  # words whose frames are gathered at a time (see _span_means)


def _frame_period(times: np.ndarray) -> float:
    steps = np.diff(times)
    steps = steps[steps > 0]
    return float(np.median(steps)) if steps.size else 0.0


def _span_counts(times: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per word: index of its first row with time >= start, and how many rows lie in [start, end]."""
    lo = np.searchsorted(times, starts, side="left")
    hi = np.searchsorted(times, ends, side="right")
    return lo, np.maximum(hi - lo, 0)


def _span_means(values: np.ndarray, rows: np.ndarray, lo: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Mean of ``values[rows[lo:lo+count]]`` per word (zeros where count is 0).

    Only the rows inside words are gathered and summed (in float64), so the cost follows the
    speech, not the length of the track; a cumulative sum over every row of a long float32
    track would cost more and lose precision. Words are taken ``WORDS_PER_PASS`` at a time, so
    the gathered rows of an hour of speech (~50 MB) never exist at once; each word's sum is the
    same either way.
    """
    out = np.zeros((len(lo), values.shape[1]), np.float64)
    used = np.flatnonzero(count > 0)
    if used.size == 0:
        return out
    for part in chunks(used.size, WORDS_PER_PASS):
        words = used[part]
        counts = count[words]
        seg_starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        flat = np.arange(int(counts.sum())) - np.repeat(seg_starts - lo[words], counts)
        gathered = values[rows[flat]]
        if not np.isfinite(gathered).all():
            gathered = np.nan_to_num(gathered, nan=0.0, posinf=0.0, neginf=0.0)
        sums = np.add.reduceat(gathered, seg_starts, axis=0, dtype=np.float64)
        out[words] = sums / counts[:, None]
    return out


def _nearest(times: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the row nearest each [start, end] span and its distance to the span (inf if none)."""
    if times.size == 0:
        return np.zeros(len(starts), np.int64), np.full(len(starts), np.inf)
    mid = 0.5 * (starts + ends)
    right = np.clip(np.searchsorted(times, mid), 0, times.size - 1)
    left = np.clip(right - 1, 0, times.size - 1)

    def gap(idx: np.ndarray) -> np.ndarray:
        t = times[idx]
        return np.maximum(np.maximum(starts - t, t - ends), 0.0)

    d_left, d_right = gap(left), gap(right)
    use_left = d_left <= d_right
    return np.where(use_left, left, right), np.where(use_left, d_left, d_right)


def impute_between(values: np.ndarray, real: np.ndarray, mids: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Fill rows that are not ``real`` by time interpolation between the nearest real rows
    (copying the only neighbour at either end; ``fallback`` when no row is real)."""
    out = values.copy()
    missing = ~real
    if not missing.any():
        return out
    if not real.any():
        out[missing] = fallback
        return out
    order = np.argsort(mids, kind="stable")
    real_idx = order[real[order]]  # real words in time order
    real_mid = mids[real_idx]
    miss_idx = np.flatnonzero(missing)
    pos = np.searchsorted(real_mid, mids[miss_idx], side="right")
    prev = real_idx[np.clip(pos - 1, 0, len(real_idx) - 1)]
    nxt = real_idx[np.clip(pos, 0, len(real_idx) - 1)]
    has_prev, has_next = pos > 0, pos < len(real_idx)
    t0, t1 = mids[prev], mids[nxt]
    span = t1 - t0
    w = np.where(span > 0, (mids[miss_idx] - t0) / np.where(span > 0, span, 1.0), 0.5)
    w = np.where(has_prev & has_next, np.clip(w, 0.0, 1.0), np.where(has_prev, 0.0, 1.0))
    out[miss_idx] = (1.0 - w)[:, None] * values[prev] + w[:, None] * values[nxt]
    return out


def pool_to_words(
    track: FrameFeatures, words: Sequence[Word], max_distance: float | None = None
) -> WordFeatures:
    """Average a frame-level track over each word (see the module docstring for the rules).

    ``max_distance`` (s) overrides how far a short word may look for its nearest present frame.
    Non-finite values in the track are treated as 0; the output is float32 and never NaN.
    Words may overlap and need not be sorted.
    """
    dim = track.values.shape[1]
    n = len(words)
    if n == 0:
        return WordFeatures(values=np.zeros((0, dim), np.float32), imputed=np.zeros(0, bool))
    starts = np.array([w.start for w in words], np.float64)
    ends = np.maximum(np.array([w.end for w in words], np.float64), starts)
    mids = 0.5 * (starts + ends)

    times = np.asarray(track.times, np.float64)
    values = np.asarray(track.values)
    rows = np.arange(len(times))
    if times.size > 1 and np.any(np.diff(times) < 0):
        rows = np.argsort(times, kind="stable")
        times = times[rows]
    present = np.asarray(track.present, bool)[rows]
    if max_distance is None:
        max_distance = nearest_reach(_frame_period(times))

    p_rows = rows[present]  # rows of present frames, in time order
    p_times = times[present]
    lo, n_present = _span_counts(p_times, starts, ends)
    means = _span_means(values, p_rows, lo, n_present)
    _, n_frames = _span_counts(times, starts, ends)

    # Words no frame centre falls in borrow the nearest present frame, if it is close enough.
    short = n_frames == 0
    near_idx, near_gap = _nearest(p_times, starts, ends)
    borrow = short & (near_gap <= max_distance)
    if borrow.any():
        means[borrow] = np.nan_to_num(values[p_rows[near_idx[borrow]]].astype(np.float64))

    real = (n_present > 0) | borrow
    fallback = np.zeros(dim)
    if not real.any() and p_rows.size:
        fallback = np.nan_to_num(np.mean(values[p_rows], axis=0, dtype=np.float64))
    pooled = impute_between(means, real, mids, fallback)

    coverage = [i for i, name in enumerate(track.names or []) if name.endswith(COVERAGE_SUFFIX)]
    if coverage:
        frac = np.divide(n_present, n_frames, out=np.zeros(n, np.float64), where=n_frames > 0)
        frac = np.where(short, borrow.astype(np.float64), frac)
        pooled[:, coverage] = frac[:, None]

    return WordFeatures(values=np.nan_to_num(pooled).astype(np.float32), imputed=~real)
