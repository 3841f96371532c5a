"""Face identities across frames: which face in this frame is which face in the last ones.

MediaPipe's landmarker reports the faces of each frame in no promised order, and with several
landmarker streams each sees only its share of the frames, so identities are given afterwards,
in time order, by overlap of the landmark boxes: a face continues the track whose last box it
overlaps most. Faces move little between sampled frames (a fifteenth of a second), so a plain
greedy match on intersection-over-union is enough; a face that overlaps no recent track starts a
new one. Everything here is arithmetic on arrays, so the ids depend only on the boxes, never on
thread timing.
"""

from __future__ import annotations

import numpy as np

# A face continues a track when their boxes overlap at least this much (intersection over union).
MIN_IOU = 0.3
# A track not seen for this long is closed: a face appearing later starts a new identity.
MAX_GAP_S = 2.0


def landmark_box(points: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) of normalised (n, 2) landmark points, clipped to the picture."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if pts.size == 0:
        return np.zeros(4, np.float32)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return np.clip(np.array([lo[0], lo[1], hi[0], hi[1]]), 0.0, 1.0).astype(np.float32)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (4,) box with each of (m, 4) boxes (0 for empty boxes)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    box = np.asarray(box, np.float64)
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.divide(inter, union, out=np.zeros(len(boxes)), where=union > 0)


def assign_identities(
    frame: np.ndarray, boxes: np.ndarray, times: np.ndarray, min_iou: float = MIN_IOU, max_gap_s: float = MAX_GAP_S
) -> np.ndarray:
    """Track id of every detection (``frame`` indexes ``times``; rows need not be sorted).

    Frame by frame, the pairs of (open track, face) are taken best overlap first; each track and
    each face is used once per frame. Unmatched faces open new tracks, numbered in order of
    first appearance (left to right within a frame), so the same boxes always get the same ids.
    """
    frame = np.asarray(frame, np.int64)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    ids = np.full(len(frame), -1, np.int64)
    if len(frame) == 0:
        return ids
    order = np.lexsort((boxes[:, 0], frame))  # by frame, then left to right
    last_box: list[np.ndarray] = []
    last_time: list[float] = []
    starts = np.flatnonzero(np.r_[True, np.diff(frame[order]) != 0])
    for group in np.split(order, starts[1:]):
        t = float(times[frame[group[0]]])
        open_tracks = [k for k in range(len(last_box)) if t - last_time[k] <= max_gap_s]
        pairs = []
        if open_tracks:
            known = np.stack([last_box[k] for k in open_tracks])
            for j, det in enumerate(group):
                overlaps = iou(boxes[det], known)
                pairs += [(-overlaps[i], i, j) for i in range(len(open_tracks)) if overlaps[i] >= min_iou]
        used_tracks, used_faces = set(), set()
        for _, i, j in sorted(pairs):
            if i in used_tracks or j in used_faces:
                continue
            used_tracks.add(i)
            used_faces.add(j)
            ids[group[j]] = open_tracks[i]
        for j, det in enumerate(group):
            if j not in used_faces:
                ids[det] = len(last_box)
                last_box.append(boxes[det])
                last_time.append(t)
        for det in group:
            last_box[ids[det]] = boxes[det]
            last_time[ids[det]] = t
    return ids
