"""MediaPipe FaceLandmarker results as numpy arrays, read straight from the C result.

MediaPipe's Python wrapper turns every result into Python objects: 478 ``NormalizedLandmark``
dataclasses per face and frame, 52 ``Category`` objects, a copied matrix. Reading the arrays
directly saves 0.5-1 ms of the ~11 ms a frame costs single-threaded (perf stat over 300 frames
of the 60 s bench clip), and all the extractor wants are a few arrays. So ``detect_for_video``
here calls the same C function the wrapper calls, through the wrapper's own ctypes declarations (so errors still surface as MediaPipe's
``RuntimeError``/``ValueError``), and copies the numbers out with numpy before the result is
freed. The values are the very same float32 numbers either way (a test compares both readings
on real frames, bit for bit); ``from_result`` reads a public result object, for a MediaPipe
whose wrapper does not expose the C call.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FaceArrays:
    """One face of one frame."""

    points: np.ndarray  # (n_landmarks, 2) float32, normalised x, y (0..1 across the picture)
    scores: np.ndarray  # (n_blendshapes,) float32
    names: tuple[str, ...]  # blendshape category names, in the order of ``scores``
    matrix: np.ndarray | None  # (4, 4) facial transformation, None when not asked for


def _fields(struct: type[ctypes.Structure], names: tuple[str, ...]) -> np.dtype:
    """A numpy view of the float fields ``names`` of a ctypes struct, at its own offsets."""
    return np.dtype({
        "names": list(names),
        "formats": ["<f4"] * len(names),
        "offsets": [getattr(struct, n).offset for n in names],
        "itemsize": ctypes.sizeof(struct),
    })


def _view(pointer, count: int, dtype: np.dtype) -> np.ndarray:
    """``count`` structs at ``pointer`` as a numpy record array (no copy: copy before freeing)."""
    if count == 0 or not pointer:
        return np.zeros(0, dtype)
    buffer = (ctypes.c_char * (count * dtype.itemsize)).from_address(ctypes.addressof(pointer.contents))
    return np.frombuffer(buffer, dtype, count)


class _CReader:
    """The C structs of mediapipe's face_landmarker module (resolved once, on first use)."""

    def __init__(self) -> None:
        from mediapipe.tasks.python.components.containers import category_c, landmark_c
        from mediapipe.tasks.python.vision import face_landmarker

        self.result_type = face_landmarker.MpFaceLandmarkerResultC
        self.point = _fields(landmark_c.MpNormalizedLandmarkC, ("x", "y"))
        self.score = _fields(category_c.MpCategoryC, ("score",))

    def faces(self, result) -> list[FaceArrays]:
        out = []
        for k in range(result.face_landmarks_count):
            marks = result.face_landmarks[k]
            pts = _view(marks.landmarks, marks.landmarks_count, self.point)
            points = np.stack([pts["x"], pts["y"]], axis=1)  # a copy, float32
            scores, names = np.zeros(0, np.float32), ()
            if k < result.face_blendshapes_count:
                cats = result.face_blendshapes[k]
                scores = _view(cats.categories, cats.categories_count, self.score)["score"].copy()
                names = tuple((cats.categories[j].category_name or b"").decode("utf-8")
                              for j in range(cats.categories_count))
            matrix = None
            if k < result.facial_transformation_matrixes_count:
                matrix = result.facial_transformation_matrixes[k].to_numpy()  # MediaPipe's own copy
            out.append(FaceArrays(points, scores, names, matrix))
        return out


_reader: _CReader | None = None


def detect_for_video(landmarker, image, stamp_ms: int) -> list[FaceArrays]:
    """``landmarker.detect_for_video(image, stamp_ms)``, its faces as arrays."""
    global _reader
    lib = getattr(landmarker, "_lib", None)
    call = getattr(lib, "MpFaceLandmarkerDetectForVideo", None)
    close = getattr(lib, "MpFaceLandmarkerCloseResult", None)
    if call is None or close is None or not hasattr(image, "_image_ptr"):
        return from_result(landmarker.detect_for_video(image, stamp_ms))
    if _reader is None:
        _reader = _CReader()
    result = _reader.result_type()
    call(landmarker._handle, image._image_ptr, None, stamp_ms, ctypes.byref(result))
    try:
        return _reader.faces(result)
    finally:
        close(ctypes.byref(result))


def from_result(result) -> list[FaceArrays]:
    """The faces of a public ``FaceLandmarkerResult``."""
    out = []
    for k, marks in enumerate(result.face_landmarks):
        points = np.array([(p.x, p.y) for p in marks], np.float32).reshape(-1, 2)
        cats = result.face_blendshapes[k] if k < len(result.face_blendshapes) else []
        scores = np.array([c.score for c in cats], np.float32)
        names = tuple(c.category_name or "" for c in cats)
        matrices = result.facial_transformation_matrixes
        out.append(FaceArrays(points, scores, names, np.asarray(matrices[k]) if k < len(matrices) else None))
    return out
