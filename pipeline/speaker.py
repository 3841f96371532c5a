"""Whose face speaks each word: the active-speaker choice of the facial track.

With several faces in the picture (interviews, panels, two-shots), the vision features of a word
must describe the person saying it, not whoever the landmarker happened to follow. The cue is
the classic audio-visual one: a speaker's mouth moves with the syllables of the speech, a
listener's does not (even when the listener is talking to someone else, off the soundtrack).

- For every word and face, ``sync`` is the correlation between how much the face's mouth moves
  (the summed frame-to-frame change of its jaw and mouth blendshapes) and how much the speech
  loudness changes (dB, per sampled frame), both smoothed over half a second,
  within ``speaker_window_s`` seconds either side of the word's middle; only where the face was
  in the picture for at least half the window, and scaled down when the window holds under a
  second of speech. Motion against change, not mouth opening against loudness: people open
  their mouth to breathe in pauses and hold vowels open, so opening follows loudness only
  weakly. On the shared talking heads (each face against its own soundtrack and against the
  others'), jawOpen against loudness told the face's own speech apart hardly better than chance
  (AUC 0.52-0.59 in 2-4 s windows); motion against loudness change, smoothed over half a
  second, reaches AUC 0.76 in 2 s and 0.90 in 4 s windows, and picks the right one of two faces
  in 76 % and 86 % of them; the path over the words of an utterance does the rest. Window,
  smoothing and threshold were chosen on two-shots of three pairs of the shared talking heads
  (each speaker, and a voice-over): shorter windows or lighter smoothing sent whole clips to
  the listener, a lower threshold let voice-overs through.
- The choice is a best path over the words (Viterbi) among the faces and "nobody": a face scores
  its sync, nobody scores ``speaker_min_sync`` (so when no visible face moves with the speech,
  as in a voice-over or with an off-screen speaker, nobody wins), and changing the choice costs
  ``speaker_switch_penalty`` between words of one utterance and half of it between
  utterances. The choice so follows turns, but does not flicker inside an utterance.
- A word's confidence is how clearly its choice won over the same stretch of words: the mean
  margin of the chosen option over the best other one (nobody included), divided by 0.3 and
  clipped to [0, 1].

Words whose choice is nobody get imputed vision features (``vision_imputed``), exactly like
words without any face. A video in which no frame ever held two faces skips all of this: its
features are pooled as they always were.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.config import FacialConfig
from core.records import FaceTracks, FrameFeatures, Utterance, WordFaces, WordFeatures
from pipeline.pooling import impute_between, pool_to_words
from pipeline.signal import FRAME_S, speech_frames

# The blendshapes that move when a face articulates (jaw and lips). Narrower sets (jawOpen with
# the lip distances, the articulation blendshapes only) scored as well or better on single-face
# clips, but worse on faces at half the picture's width: many measures average out noise.
MOUTH_PREFIXES = ("bs_jaw", "bs_mouth")
SMOOTH_S = 0.5  # motion and loudness change are averaged over a couple of syllables (8 frames at 15 fps)
MIN_FRAMES = 6  # fewer frames of a face in a window say nothing about its sync
MIN_SPEECH_S = 1.0  # a window with less speech than this counts for its share of it
CONFIDENT_MARGIN = 0.3  # a margin of this much correlation is full confidence
BETWEEN_UTTERANCES = 0.5  # share of the switch penalty paid at an utterance boundary
NOBODY = -1


@dataclass
class SpeakerChoice:
    """The vision features of every word with the record of whose face they are."""

    features: WordFeatures
    faces: WordFaces
    summary: dict


def loudness(energy: np.ndarray | None, times: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Per frame time: speech loudness (dB full scale: the mean 10 ms frame energy over the
    frame's own sampling interval, floored 50 dB under the loud parts so that digital silence
    and room noise count as the same quiet) and the share of that interval that is speech
    (``pipeline.signal.speech_frames``, the one definition of speech)."""
    if energy is None or len(times) == 0:
        return np.zeros(len(times)), np.zeros(len(times))
    energy = energy.astype(np.float64)
    if energy.size == 0:
        return np.zeros(len(times)), np.zeros(len(times))
    speech = speech_frames(energy.astype(np.float32)).astype(np.float64)
    energy = np.maximum(energy, float(np.percentile(energy, 95)) - 50.0)
    half = 0.5 / fps
    lo = np.clip(np.floor((times - half) / FRAME_S).astype(np.int64), 0, energy.size - 1)
    hi = np.clip(np.ceil((times + half) / FRAME_S).astype(np.int64), lo + 1, energy.size)

    def mean(x: np.ndarray) -> np.ndarray:
        csum = np.r_[0.0, np.cumsum(x)]
        return (csum[hi] - csum[lo]) / (hi - lo)

    return mean(energy), mean(speech)


def smoothed(x: np.ndarray, valid: np.ndarray, width: int) -> np.ndarray:
    """Moving average of ``x`` over ``width`` frames, counting only the ``valid`` ones."""
    kernel = np.ones(width)
    total = np.convolve(np.where(valid, x, 0.0), kernel, mode="same")
    count = np.convolve(valid.astype(np.float64), kernel, mode="same")
    return np.divide(total, count, out=np.zeros(len(x)), where=count > 0)


def articulation(mouth: np.ndarray, present: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """How much a face's mouth moves at each frame (summed change of its mouth measures since
    the frame before, smoothed over ``width`` frames) and where that is known (the face is in
    both frames)."""
    step = np.r_[0.0, np.abs(np.diff(mouth, axis=0)).sum(axis=1)]
    valid = present & np.r_[False, present[:-1]]
    return smoothed(step, valid, width), valid


def sound_change(loud: np.ndarray, width: int) -> np.ndarray:
    """How much the speech loudness changes at each frame (syllables, not level), smoothed."""
    step = np.r_[0.0, np.abs(np.diff(loud))]
    return smoothed(step, np.ones(len(loud), bool), width)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Correlation of two series; 0 when either is flat (a still face or steady sound says nothing)."""
    x = x - x.mean()
    y = y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 1e-12 else 0.0


def sync_scores(
    times: np.ndarray, motion: np.ndarray, valid: np.ndarray, change: np.ndarray,
    mids: np.ndarray, window_s: float, speech: np.ndarray | None = None,
) -> np.ndarray:
    """(n_words, n_faces) correlation of each face's mouth motion with the change of loudness
    around each word (NaN where the face was seen in less than half the window's frames).

    A window with little speech in it (a lone word at the end of a turn) says little about
    whose mouth follows it, whatever the correlation: with ``speech`` (share of each frame that
    is speech), scores are scaled down by the seconds of speech under ``MIN_SPEECH_S``."""
    out = np.full((len(mids), motion.shape[1]), np.nan)
    lo = np.searchsorted(times, mids - window_s, side="left")
    hi = np.searchsorted(times, mids + window_s, side="right")
    period = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    for w, (a, b) in enumerate(zip(lo, hi)):
        if b - a < MIN_FRAMES:
            continue
        weight = 1.0 if speech is None else min(1.0, float(speech[a:b].sum()) * period / MIN_SPEECH_S)
        for k in range(motion.shape[1]):
            seen = valid[a:b, k]
            n = int(seen.sum())
            if n >= MIN_FRAMES and n >= 0.5 * (b - a):
                out[w, k] = weight * pearson(motion[a:b, k][seen], change[a:b][seen])
    return out


def choose_speakers(
    scores: np.ndarray, utterance: np.ndarray, min_sync: float, penalty: float
) -> tuple[np.ndarray, np.ndarray]:
    """Best path of choices over words in time order: (column of ``scores`` per word, or
    ``NOBODY``; confidence per word). See the module docstring for the scoring."""
    n, k = scores.shape
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    gain = np.full((n, k + 1), -np.inf)
    gain[:, :k] = np.where(np.isnan(scores), -np.inf, scores)
    gain[:, k] = min_sync  # the last column is nobody
    best = gain[0].copy()
    back = np.zeros((n, k + 1), np.int64)
    for w in range(1, n):
        cost = penalty * (1.0 if utterance[w] == utterance[w - 1] else BETWEEN_UTTERANCES)
        stay = best
        leave = best.max() - cost
        from_other = int(np.argmax(best))
        take_leave = leave > stay
        back[w] = np.where(take_leave, from_other, np.arange(k + 1))
        best = np.where(take_leave, leave, stay) + gain[w]
    path = np.zeros(n, np.int64)
    path[-1] = int(np.argmax(best))
    for w in range(n - 1, 0, -1):
        path[w - 1] = back[w, path[w]]
    margin = np.empty(n)
    for w in range(n):
        others = np.delete(gain[w], path[w])
        margin[w] = gain[w, path[w]] - (others.max() if others.size else -np.inf)
    # Confidence over the stretch of words sharing the choice within an utterance.
    confidence = np.empty(n, np.float32)
    cut = np.flatnonzero((np.diff(path) != 0) | (np.diff(utterance) != 0)) + 1
    for run in np.split(np.arange(n), cut):
        m = margin[run]
        m = m[np.isfinite(m)]
        value = float(np.clip(m.mean() / CONFIDENT_MARGIN, 0.0, 1.0)) if m.size else 1.0
        confidence[run] = value
    path = np.where(path == k, NOBODY, path)
    return path, confidence


def _face_track(track: FrameFeatures, faces: FaceTracks, ident: int) -> FrameFeatures:
    """One identity's frames as a frame track (its box appended as four more columns)."""
    values = np.zeros((len(track.times), track.values.shape[1] + 4), np.float32)
    present = np.zeros(len(track.times), bool)
    mine = faces.track == ident
    values[faces.frame[mine], : track.values.shape[1]] = faces.values[mine]
    values[faces.frame[mine], track.values.shape[1] :] = faces.boxes[mine]
    present[faces.frame[mine]] = True
    return FrameFeatures(track.times, values, present, [*track.names, "x0", "y0", "x1", "y1"])


def _most_in_frame(times: np.ndarray, per_frame: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Most faces in one frame during each word (the nearest frame for words between frames)."""
    out = np.zeros(len(starts), np.int32)
    if len(times) == 0:
        return out
    lo = np.searchsorted(times, starts, side="left")
    hi = np.searchsorted(times, ends, side="right")
    for w, (a, b) in enumerate(zip(lo, hi)):
        if b > a:
            out[w] = per_frame[a:b].max()
        else:
            near = int(np.clip(np.searchsorted(times, 0.5 * (starts[w] + ends[w])), 0, len(times) - 1))
            out[w] = per_frame[near]
    return out


def speaker_features(
    track: FrameFeatures, energy: np.ndarray | None, utterances: Sequence[Utterance], config: FacialConfig
) -> SpeakerChoice:
    """Vision features per word (in utterance order) from the face of whoever speaks it;
    ``energy`` is the speech's 10 ms frame energies (``audio_energy_db``), None without audio."""
    words = [w for u in utterances for w in u.words]
    utterance = np.array([u.index for u in utterances for _ in u.words], np.int64)
    starts = np.array([w.start for w in words], np.float64)
    ends = np.maximum(np.array([w.end for w in words], np.float64), starts)
    mids = 0.5 * (starts + ends)
    faces = track.faces
    times = np.asarray(track.times, np.float64)
    n = len(words)
    per_frame = faces.per_frame(len(times)) if faces is not None else track.present.astype(np.int64)
    in_frame = _most_in_frame(times, per_frame, starts, ends)
    ids = faces.ids if faces is not None else []

    if faces is None or in_frame.size == 0 or per_frame.max(initial=0) < 2:
        # One face at a time: the single-face path, unchanged; the record says which face.
        pooled = pool_to_words(track, words)
        chosen = np.full(n, NOBODY, np.int64)
        boxes = np.zeros((n, 4), np.float32)
        for ident in ids:
            own = pool_to_words(_face_track(track, faces, ident), words)
            mine = ~own.imputed & ~pooled.imputed & (chosen == NOBODY)
            chosen[mine] = ident
            boxes[mine] = own.values[mine, -4:]
        confidence = (chosen != NOBODY).astype(np.float32)
        record = WordFaces(chosen.astype(np.int32), in_frame, confidence, boxes)
        return SpeakerChoice(pooled, record, _summary(record, faces, len(times), selected=False))

    mouth_cols = [i for i, name in enumerate(track.names) if name.startswith(MOUTH_PREFIXES)]
    width = max(1, int(round(SMOOTH_S * config.fps)))
    motion = np.zeros((len(times), len(ids)))
    valid = np.zeros((len(times), len(ids)), bool)
    for j, ident in enumerate(ids):
        mine = faces.track == ident
        mouth = np.zeros((len(times), len(mouth_cols)))
        mouth[faces.frame[mine]] = faces.values[mine][:, mouth_cols]
        present = np.zeros(len(times), bool)
        present[faces.frame[mine]] = True
        motion[:, j], valid[:, j] = articulation(mouth, present, width)
    loud, speech = loudness(energy, times, config.fps)
    order = np.argsort(mids, kind="stable")
    scores = sync_scores(times, motion, valid, sound_change(loud, width), mids[order], config.speaker_window_s, speech)
    path, conf = choose_speakers(scores, utterance[order], config.speaker_min_sync, config.speaker_switch_penalty)
    column = np.full(n, NOBODY, np.int64)
    column[order] = path
    confidence = np.zeros(n, np.float32)
    confidence[order] = conf

    dim = track.values.shape[1]
    values = np.zeros((n, dim), np.float64)
    boxes = np.zeros((n, 4), np.float32)
    real = np.zeros(n, bool)
    for j in np.unique(column[column != NOBODY]):
        own = pool_to_words(_face_track(track, faces, ids[j]), words)
        mine = (column == j) & ~own.imputed
        values[mine] = own.values[mine, :dim]
        boxes[mine] = own.values[mine, dim:]
        real |= mine
    chosen = np.where(real, np.asarray(ids, np.int64)[np.maximum(column, 0)], NOBODY)
    confidence = np.where(real | (column == NOBODY), confidence, 0.0).astype(np.float32)
    fallback = values[real].mean(axis=0) if real.any() else np.zeros(dim)
    values = impute_between(values, real, mids, fallback)
    coverage = [i for i, name in enumerate(track.names) if name.endswith("_present")]
    values[np.ix_(~real, coverage)] = 0.0
    pooled = WordFeatures(values=np.nan_to_num(values).astype(np.float32), imputed=~real)
    record = WordFaces(chosen.astype(np.int32), in_frame, confidence, boxes)
    return SpeakerChoice(pooled, record, _summary(record, faces, len(times), selected=True))


def _summary(record: WordFaces, faces: FaceTracks | None, n_frames: int, selected: bool) -> dict:
    """The file-level account of the choice, for the Parquet metadata and the CLI's summary."""
    per_frame = faces.per_frame(n_frames) if faces is not None else np.zeros(n_frames, np.int64)
    tracks = {}
    for ident in faces.ids if faces is not None else []:
        mine = faces.track == ident
        tracks[str(ident)] = {
            "frames": int(mine.sum()),
            "words": int((record.track == ident).sum()),
            "box": [round(float(v), 3) for v in faces.boxes[mine].mean(axis=0)],
        }
    seen = record.faces > 0
    return {
        "speaker_selection": selected,
        "max_in_frame": int(per_frame.max(initial=0)),
        "frames_with_several": round(float((per_frame > 1).mean()) if n_frames else 0.0, 4),
        "tracks": tracks,
        "words_without_speaker": int((seen & (record.track == NOBODY)).sum()),
        "mean_confidence": round(float(record.confidence[seen].mean()) if seen.any() else 0.0, 3),
    }
