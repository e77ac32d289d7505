"""Face tracks through a video: detection on every frame or on key frames, landmark tracking in between.

:class:`FaceTracker` follows every face (up to ``max_faces``) and returns the main speaker's track: the face with
the largest summed width over the frames it is seen in (large and present for long). Faces are linked from one
detection to the next by box overlap (IoU).

On a key frame the detector's face boxes are matched to the tracks and landmarks are computed inside each box. On
the frames in between (``detect_every > 1``), each track's box is predicted from its previous frame's landmarks
(mapped with the box/landmark relation measured at its last detection) and the landmarks are recomputed inside it,
which is what ``DlibDetector.landmarks(image, box)`` and ``FanDetector.landmarks_batch`` are for. With
``detect_every == 1`` all boxes of a chunk of frames, and then all landmark crops, go to the detector in one batch
(``detect_batch``-style; what a GPU wants).

Detectors offering only ``detect_all`` (no boxes) work with ``detect_every == 1``: their landmarks' bounding boxes
are linked instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..components import KeypointDetector
from ..errors import ConfigError

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(left, top, right, bottom)`` boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def points_box(points: np.ndarray) -> Box:
    """Bounding box of landmarks ``(68, 2)``."""
    lo, hi = points.min(0), points.max(0)
    return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


STABLE_POINTS = list(range(27, 48))  # nose and eyes: rigid with the head, unlike the jaw and the mouth


def _spread(points: np.ndarray) -> float:
    return float(np.sqrt(((points - points.mean(0)) ** 2).sum(-1).mean()))


def supports_tracking(detector: KeypointDetector) -> bool:
    """Whether ``detector`` offers ``face_boxes(image)`` and ``landmarks(image, box)`` (needed between key frames)."""
    return callable(getattr(detector, "face_boxes", None)) and callable(getattr(detector, "landmarks", None))


@dataclass
class _Track:
    """One face followed through the video."""

    index: int
    points: np.ndarray  # (T, 68, 2)
    seen: np.ndarray  # (T,) landmarks computed in that frame
    detected: np.ndarray  # (T,) ... from a detector box (else tracked)
    last_t: int = -1
    last_box: Box | None = None
    active: bool = True  # can be tracked forward from last_t
    key_box: Box = (0.0, 0.0, 1.0, 1.0)  # the last detector box ...
    key_centre: np.ndarray = field(default_factory=lambda: np.zeros(2))  # ... and the stable points' centre
    key_spread: float = 1.0  # ... and spread in it
    widths: list[float] = field(default_factory=list)

    def predict_box(self, points: np.ndarray) -> Box:
        """The detector-style box for ``points``: the last detection's box, moved and scaled as the stable points
        (nose and eyes) moved and scaled since then. Only rigid motion feeds back, so the box does not drift with
        the landmarks' own errors (a box refitted to the landmarks every frame does)."""
        stable = np.asarray(points, np.float64)[STABLE_POINTS]
        c = stable.mean(0)
        scale = _spread(stable) / max(self.key_spread, 1e-6)
        left, top, right, bottom = self.key_box
        off = (np.array([(left + right) / 2, (top + bottom) / 2]) - self.key_centre) * scale
        w, h = (right - left) * scale / 2, (bottom - top) * scale / 2
        cx, cy = c + off
        return (float(cx - w), float(cy - h), float(cx + w), float(cy + h))

    def learn_box(self, box: Box, points: np.ndarray) -> None:
        """Remember a detector box and where the stable points were in it."""
        stable = np.asarray(points, np.float64)[STABLE_POINTS]
        self.key_box, self.key_centre, self.key_spread = box, stable.mean(0), _spread(stable)

    @property
    def score(self) -> float:
        """Large and long-lived: the summed face width over the frames it was seen in."""
        return float(sum(self.widths))


@dataclass
class TrackResult:
    """The main speaker's track and what was seen of the others."""

    points: np.ndarray  # (T, 68, 2) float32, zeros where not seen
    seen: np.ndarray  # (T,) bool: landmarks measured in that frame (detected or tracked)
    detected: np.ndarray  # (T,) bool: measured from a detector box on that frame
    frames_decoded: int
    tracks: list[dict]  # per track: frames, median_width, first, last; main first
    max_faces_in_frame: int
    detection_frames: int

    @property
    def num_faces(self) -> int:
        return len(self.tracks)


class FaceTracker:
    """Follow faces through frames with ``detector``; see the module docstring."""

    def __init__(
        self,
        detector: KeypointDetector,
        *,
        detect_every: int = 1,
        max_faces: int = 4,
        min_face: float = 0.0,
        iou_threshold: float = 0.3,
        track_iou: float = 0.8,
        relink_frames: int = 50,
        batch_size: int = 32,
    ):
        if detect_every < 1:
            raise ConfigError(f"detect_every must be at least 1, got {detect_every}")
        self.has_boxes = supports_tracking(detector)
        if detect_every > 1 and not self.has_boxes:
            raise ConfigError(
                f"detector {detector.name!r} cannot track between key frames (it has no face_boxes/landmarks "
                "methods); use detect_every: 1, or the dlib or fan detector"
            )
        self.detector = detector
        self.detect_every = detect_every
        self.max_faces = max_faces
        self.min_face = min_face
        self.iou_threshold = iou_threshold
        self.track_iou = track_iou
        self.relink_frames = relink_frames
        self.batch_size = batch_size if detect_every == 1 else 1

    # ------------------------------------------------------------------------------------------ detector calls

    def _boxes(self, images: list[np.ndarray]) -> list[list[Box]]:
        batched = getattr(self.detector, "face_boxes_batch", None)
        boxes = batched(images) if callable(batched) else [self.detector.face_boxes(img) for img in images]
        out = []
        for bs in boxes:
            bs = [tuple(float(v) for v in b[:4]) for b in bs if (b[2] - b[0]) >= self.min_face]
            out.append(sorted(bs, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))[: self.max_faces])
        return out

    def _landmarks(self, images: list[np.ndarray], boxes: list[Box]) -> list[np.ndarray]:
        batched = getattr(self.detector, "landmarks_batch", None)
        if callable(batched):
            return batched(images, boxes)
        return [self.detector.landmarks(img, box) for img, box in zip(images, boxes)]

    # -------------------------------------------------------------------------------------------------- run

    def run(self, frames: Iterable[np.ndarray], num_frames: int) -> TrackResult:
        """Track through the first ``num_frames`` of ``frames``; frames past the end of the iterator are unseen."""
        run = _Run(self, num_frames)
        decoded = 0
        chunk: list[tuple[int, np.ndarray]] = []
        for t, frame in enumerate(frames):
            if t >= num_frames:
                break
            decoded += 1
            chunk.append((t, frame))
            if len(chunk) >= self.batch_size:
                run.process(chunk)
                chunk = []
        if chunk:
            run.process(chunk)
        return run.result(decoded)


class _Run:
    """One :meth:`FaceTracker.run`: the tracks so far, the landmark requests not computed yet, and the counts."""

    def __init__(self, tracker: FaceTracker, num_frames: int):
        self.tk = tracker
        self.T = num_frames
        self.tracks: list[_Track] = []
        # landmark requests: (track, frame index, image, box, from a detector box?, landmarks if already known)
        self.pending: list[tuple[_Track, int, np.ndarray, Box, bool, np.ndarray | None]] = []
        self.lost: list[int] = []  # frames on which a tracked face was lost
        self.max_in_frame = 0
        self.det_frames = 0

    def new_track(self) -> _Track:
        T = self.T
        tr = _Track(len(self.tracks), np.zeros((T, 68, 2), np.float32), np.zeros(T, bool), np.zeros(T, bool))
        self.tracks.append(tr)
        return tr

    def flush(self) -> None:
        """Compute the pending landmarks (in one batch) and add each to its track, or end the track there."""
        pending = self.pending
        if not pending:
            return
        todo = [k for k, p in enumerate(pending) if p[5] is None]
        computed = self.tk._landmarks([pending[k][2] for k in todo], [pending[k][3] for k in todo]) if todo else []
        pts = [p[5] for p in pending]
        for k, p in zip(todo, computed):
            pts[k] = p
        for (tr, t, image, box, detected, _), p in zip(pending, pts):
            self._accept(tr, t, image, box, detected, np.asarray(p, np.float32))
        pending.clear()

    def _accept(self, tr: _Track, t: int, image: np.ndarray, box: Box, detected: bool, p: np.ndarray) -> None:
        h, w = image.shape[:2]
        lb = points_box(p)
        prev_w = tr.widths[-1] if tr.widths else None
        ok = np.isfinite(p).all() and lb[2] - lb[0] > 2 and lb[3] - lb[1] > 2
        # a tracked face that left the image, collapsed, or whose landmarks no longer fit the box they were
        # computed in (fast motion: the fit starts to diverge) is lost; the detector runs on that frame
        if ok and not detected:
            cx, cy = (lb[0] + lb[2]) / 2, (lb[1] + lb[3]) / 2
            ok = 0 <= cx < w and 0 <= cy < h and (prev_w is None or (lb[2] - lb[0]) > 0.5 * prev_w)
            ok = ok and iou(tr.predict_box(p), box) >= self.tk.track_iou
        if not ok:
            tr.active = False
            if not detected:
                self.lost.append(t)
            return
        tr.points[t], tr.seen[t], tr.detected[t] = p, True, detected
        tr.widths.append(lb[2] - lb[0])
        tr.last_t = t
        if detected:
            tr.learn_box(box, p)
            tr.last_box = box
        else:
            tr.last_box = tr.predict_box(p)

    def detection_step(self, t: int, image: np.ndarray, boxes: list[Box], known=None, only=None) -> None:
        """Match the detector's ``boxes`` on frame ``t`` to the tracks (by IoU); unmatched boxes start tracks."""
        self.max_in_frame = max(self.max_in_frame, len(boxes))
        candidates = [
            tr
            for tr in (self.tracks if only is None else only)
            if tr.last_box is not None and t - tr.last_t <= self.tk.relink_frames
        ]
        pairs = sorted(
            ((iou(tr.last_box, b), i, j) for i, tr in enumerate(candidates) for j, b in enumerate(boxes)),
            reverse=True,
        )
        used_tracks, used_boxes = set(), set()
        for overlap, i, j in pairs:
            if overlap < self.tk.iou_threshold or i in used_tracks or j in used_boxes:
                continue
            used_tracks.add(i)
            used_boxes.add(j)
            tr = candidates[i]
            tr.active, tr.last_box, tr.last_t = True, boxes[j], t
            self.pending.append((tr, t, image, boxes[j], True, known[j] if known else None))
        for i, tr in enumerate(candidates):
            if i not in used_tracks:
                tr.active = False  # not found by the detector here: a gap, unless it is matched again later
        for j, b in enumerate(boxes):
            if j not in used_boxes:
                tr = self.new_track()
                tr.last_box, tr.last_t = b, t
                self.pending.append((tr, t, image, b, True, known[j] if known else None))

    def tracking_step(self, t: int, image: np.ndarray) -> None:
        for tr in self.tracks:
            if tr.active and tr.last_t == t - 1:
                self.pending.append((tr, t, image, tr.predict_box(tr.points[t - 1]), False, None))

    def process(self, chunk: list[tuple[int, np.ndarray]]) -> None:
        """Detect or track on each frame of ``chunk`` (one detector batch with ``detect_every == 1``)."""
        tk = self.tk
        if not tk.has_boxes:  # detect_all-only detector: link the landmarks' boxes
            for t, image in chunk:
                self.det_frames += 1
                faces = [np.asarray(f, np.float32) for f in tk.detector.detect_all(image)]
                faces = [f for f in faces if points_box(f)[2] - points_box(f)[0] >= tk.min_face]
                faces = faces[: tk.max_faces]
                self.detection_step(t, image, [points_box(f) for f in faces], faces)
                self.flush()
            return
        if tk.detect_every == 1:
            all_boxes = tk._boxes([img for _, img in chunk])
            self.det_frames += len(chunk)
            for (t, image), boxes in zip(chunk, all_boxes):
                self.detection_step(t, image, boxes)
            self.flush()
            return
        for t, image in chunk:
            self.flush()
            any_active = any(tr.active and tr.last_t == t - 1 for tr in self.tracks)
            if t % tk.detect_every == 0 or not any_active:
                self.det_frames += 1
                self.detection_step(t, image, tk._boxes([image])[0])
                continue
            self.tracking_step(t, image)
            self.lost.clear()
            self.flush()
            if self.lost:  # a track was lost on this frame: find it again right here (the others keep their fit)
                self.det_frames += 1
                kept = [tr for tr in self.tracks if tr.seen[t]]
                boxes = [b for b in tk._boxes([image])[0] if not any(iou(tr.last_box, b) > 0.3 for tr in kept)]
                self.detection_step(t, image, boxes, only=[tr for tr in self.tracks if not tr.seen[t]])
        self.flush()

    def result(self, decoded: int) -> TrackResult:
        """The main speaker's track (largest summed width) and a summary of every track, main first."""
        T = self.T
        ranked = sorted(self.tracks, key=lambda tr: (-tr.score, tr.index))
        summaries = [
            {
                "frames": int(tr.seen.sum()),
                "median_width": float(np.median(tr.widths)) if tr.widths else 0.0,
                "first": int(np.flatnonzero(tr.seen)[0]) if tr.seen.any() else -1,
                "last": int(np.flatnonzero(tr.seen)[-1]) if tr.seen.any() else -1,
            }
            for tr in ranked
            if tr.seen.any()
        ]
        if not summaries:
            empty = np.zeros((T, 68, 2), np.float32), np.zeros(T, bool), np.zeros(T, bool)
            return TrackResult(*empty, decoded, [], self.max_in_frame, self.det_frames)
        main = ranked[0]
        return TrackResult(
            main.points, main.seen.copy(), main.detected.copy(), decoded, summaries, self.max_in_frame, self.det_frames
        )
