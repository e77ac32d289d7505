"""Head pose from a reference: the pipeline's pose stage (``pose`` in the config, ``a2k generate --pose-from``).

A generator makes the mouth follow the speech and moves the head as it likes; with a pose source the head moves as
the source's does instead, whatever the generator. The source is a video (its faces found by the pipeline's
detector, decoded at the keypoints' frame rate) or a keypoint file or folder in any format :mod:`a2k_toolkit.formats`
reads. For each generated frame ``t`` and its source frame ``s`` (:func:`source_frames`):

1. **The generated head pose is removed.** The frame's pose is the similarity ``z -> a z + b`` (complex numbers:
   rotation, uniform scale, translation) that maps the reference's rigid points (brows, eyes, nose: they move with
   the head, not with speech) onto the frame's. The frame is taken back to the reference's pose, ``(z - b) / a``,
   which keeps its expression (mouth, jaw, blinks, brows), and the nose and upper jaw ends, whose departure from the
   similarity is mostly the head turning out of the image plane, get the reference's positions.
2. **The source's pose is measured relative to its own first frame**: the similarity ``z -> A_s z + B_s`` from the
   source's first face's rigid points onto frame ``s``'s, and the departure ``d_s`` of frame ``s``'s nose and upper
   jaw ends from it (in the first face's frame).
3. **It is re-targeted to the photo's face.** With ``alpha`` the similarity's factor that maps the source's first
   face's rigid points onto the reference's (``|alpha|`` the ratio of the two faces' sizes, ``angle(alpha)`` their
   relative tilt) and ``c`` the reference's rigid centroid, the frame becomes ``A_s (w - c) + c + |alpha| t_s``
   applied to the expression ``w`` of step 1 (its nose and upper jaw ends moved by ``alpha d_s``): the source's
   relative rotation and scale as they are, about the photo's face; the source's rigid centroid's translation
   ``t_s`` in image axes, scaled by the ratio of the face sizes; the out-of-plane departure in the photo face's own
   frame.

A still source (the same face in every frame) therefore gives the reference's head in every frame, nose tip exactly
still; the source's first frame gives the reference itself. Only ``x, y`` are posed: a third coordinate (a
detector's depth) is carried through unchanged.

Each output frame depends only on itself and its source frame, whose index depends only on the frame's (not on how
many frames there are), so a live stream poses its frames one by one as they leave (:class:`PoseTransfer`, made by
:meth:`PoseSource.transfer`, which reads the whole source when the stream opens) and equals offline posing.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import formats, io
from .config import PoseConfig
from .errors import A2KError, ConfigError, InputError
from .keypoints import NUM_POINTS, Keypoints, similarity
from .motion import HEAD_POINTS, RIGID

if TYPE_CHECKING:  # pragma: no cover
    from .components import KeypointDetector

#: sources read as videos (their faces detected); every other path is read as a keypoint file or folder
VIDEO_SOURCE_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg")
#: frames given to the detector at once when reading a video source
DETECT_BATCH = 32


def _f64(points) -> np.ndarray:
    return np.asarray(points, np.float64)[..., :2]


def _complex(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, np.float64)
    return pts[..., 0] + 1j * pts[..., 1]


def head_pose(points: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The head pose of each frame of ``points (T, 68, 2)`` relative to the face ``base (68, 2)``: the similarity
    ``(a, b)`` of the rigid points (complex ``(T,)`` each) and the departure of the :data:`HEAD_POINTS` from it in
    ``base``'s frame (complex ``(T, len(HEAD_POINTS))``)."""
    a, b = similarity(_f64(base)[RIGID], _f64(points)[:, RIGID])
    local = (_complex(np.asarray(points)[:, HEAD_POINTS]) - b[:, None]) / a[:, None]
    return a, b, local - _complex(np.asarray(base)[HEAD_POINTS])[None]


def still_head(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each frame of ``points (T, 68, 2)`` in the pose of ``reference (68, 2)``: complex ``(T, 68)``, the expression
    kept, the :data:`HEAD_POINTS` at the reference's."""
    a, b = similarity(_f64(reference)[RIGID], _f64(points)[:, RIGID])
    local = (_complex(points) - b[:, None]) / a[:, None]
    local[:, HEAD_POINTS] = _complex(np.asarray(reference)[HEAD_POINTS])[None]
    return local


def source_index(frames: np.ndarray, length: int, loop: bool = True) -> np.ndarray:
    """The source frame each output frame of the indices ``frames`` takes, for a source of ``length`` frames: frame
    ``t`` itself while ``t < length``; past the source's end, with ``loop``, forwards and backwards (ping-pong: 0, 1,
    ..., L-1, L-2, ..., 1, 0, 1, ...; no jump at the turns), without it the last frame held. It depends on ``t`` and
    the source only, not on how many frames there will be, so a live stream of unknown length takes it frame by
    frame."""
    if length < 1:
        raise InputError("a pose source needs at least one frame")
    t = np.asarray(frames, np.int64)
    if not loop or length == 1:
        return np.minimum(t, length - 1)
    period = 2 * (length - 1)
    p = t % period
    return np.where(p < length, p, period - p)


def source_frames(num_frames: int, length: int, loop: bool = True) -> np.ndarray:
    """:func:`source_index` of the output frames ``0 .. num_frames - 1``: the first ``num_frames`` when the source is
    long enough (cut), else looped (ping-pong) or held."""
    return source_index(np.arange(num_frames), length, loop)


class PoseTransfer:
    """The head pose of ``source (S, 68, 2+)`` (its first frame the neutral pose) re-targeted to ``reference (68,
    2+)``, the photo's face (module docstring), measured once; :meth:`__call__` poses any frames, given where they
    are in the output, so a stream poses its frames as they leave. ``meta`` is what posed keypoints carry."""

    def __init__(self, reference: np.ndarray, source: np.ndarray, *, loop: bool = True, meta: dict | None = None):
        ref = np.asarray(reference, np.float64)[:, :2]
        src = np.asarray(source, np.float64)[..., :2]
        if src.ndim != 3 or src.shape[1] != NUM_POINTS or len(src) == 0:
            raise InputError(f"a pose source must have shape (S, 68, 2) with S >= 1, got {np.shape(source)}")
        if ref.shape != (NUM_POINTS, 2):
            raise InputError(f"the reference face must have shape (68, 2), got {np.shape(reference)}")
        self.reference, self.length, self.loop = ref, len(src), loop
        self.meta = dict(meta or {})
        A, B, self._turn = head_pose(src, src[0])
        self._alpha = similarity(_f64(src[0])[RIGID], _f64(ref)[RIGID][None])[0][0]
        centroid = _complex(src[0][RIGID]).mean()
        self._A, self._shift = A, A * centroid + B - centroid  # the source's rotation-scale and centroid motion
        self._centre = _complex(ref[RIGID]).mean()

    def __call__(self, points: np.ndarray, start: int = 0) -> np.ndarray:
        """``points (n, 68, 2+)``, output frames ``start .. start + n - 1``, in the source's pose (their source
        frames by :func:`source_index`): float32 with the columns of ``points`` (a third one unchanged)."""
        pts = np.asarray(points, np.float64)
        if pts.ndim != 3 or pts.shape[1:2] != (NUM_POINTS,) or pts.shape[2] < 2:
            raise InputError(f"keypoints to pose must have shape (T, 68, 2), got {pts.shape}")
        idx = source_index(np.arange(start, start + len(pts)), self.length, self.loop)
        local = still_head(pts[..., :2], self.reference)
        local[:, HEAD_POINTS] += self._alpha * self._turn[idx]
        c = self._centre
        z = self._A[idx][:, None] * (local - c) + c + (abs(self._alpha) * self._shift[idx])[:, None]
        out = pts.copy()
        out[..., 0], out[..., 1] = z.real, z.imag
        return out.astype(np.float32)


def transfer_pose(points: np.ndarray, reference: np.ndarray, source: np.ndarray, *, loop: bool = True) -> np.ndarray:
    """``points (T, 68, 2+)`` with their head pose replaced by the source's (``source (S, 68, 2+)``, its first frame
    the neutral pose) re-targeted to ``reference (68, 2+)``, the photo's face (module docstring; :class:`PoseTransfer`
    frame by frame). Frames beyond the source's length follow :func:`source_frames`. Returns float32 ``(T, 68, C)``
    with the columns of ``points`` (a third one unchanged)."""
    pts = np.asarray(points)
    if pts.ndim != 3 or pts.shape[1:2] != (NUM_POINTS,) or pts.shape[2] < 2:
        raise InputError(f"keypoints to pose must have shape (T, 68, 2), got {pts.shape}")
    return PoseTransfer(reference, source, loop=loop)(pts)


def resample_frames(points: np.ndarray, fps: float, target_fps: float) -> np.ndarray:
    """``points (S, 68, C)`` at ``fps`` -> the same motion at ``target_fps`` (linear in time, over the source's
    duration: frame ``k`` is at ``k / target_fps`` seconds)."""
    pts = np.asarray(points, np.float64)
    if abs(fps - target_fps) < 1e-9 or len(pts) < 2:
        return pts
    pos = np.arange(0.0, len(pts) - 1 + 1e-9, fps / target_fps)  # source frame positions of the new frames
    lo = np.minimum(pos.astype(int), len(pts) - 2)
    w = (pos - lo)[:, None, None]
    return (1 - w) * pts[lo] + w * pts[lo + 1]


class PoseSource:
    """A pose reference (:class:`~a2k_toolkit.config.PoseConfig`): the file is checked (and a keypoint file read)
    when this is made, a video's faces are found on first use, once: offline only as many frames as the speech
    needs, for a live stream (:meth:`transfer`) all of them, when the stream opens. Thread-safe: a server's sessions
    share one."""

    def __init__(self, config: PoseConfig | dict | str | os.PathLike):
        self.config = config if isinstance(config, PoseConfig) else PoseConfig.model_validate(config)
        self.path = Path(self.config.source).expanduser()
        self.loop = self.config.loop
        if not self.path.exists():
            raise ConfigError(
                f"invalid config: pose.source: {self.config.source} not found; check the spelling, or give the path "
                f"from the current directory ({Path.cwd()}), which is where relative paths are read from"
            )
        self.is_video = self.path.is_file() and self.path.suffix.lower() in VIDEO_SOURCE_EXTENSIONS
        self._points: np.ndarray | None = None  # (S, 68, 2) float64 at self._fps
        self._fps: float | None = None
        self._complete = False  # a video's frames were all read
        self._lock = threading.Lock()  # one reading of a video at a time; the sessions of a server share the source
        if self.is_video:
            if self.config.format is not None:
                raise ConfigError(
                    f"invalid config: pose.format: {self.path} is a video (its faces are detected); `format` is for "
                    "keypoint files only, leave it out"
                )
            try:
                info = io.probe_video(self.path, count_frames=False)
            except A2KError as exc:
                raise self._error(exc) from None
            if info["video_codec"] is None:
                raise self._error("it has no video stream")
        else:
            self._read_file()

    def _error(self, problem) -> InputError:
        return InputError(
            f"cannot use {self.path} as a pose source: {problem}; give a video of one face ("
            f"{', '.join(VIDEO_SOURCE_EXTENSIONS[:3])}, ...) or a keypoint file or folder in a format `a2k convert "
            "--list` reads (.npy, .npz, .json, .csv, .pts, an OpenPose folder)"
        )

    def _read_file(self) -> None:
        if not formats.plugin_formats_added():  # formats plugins add (mediapipe landmark files), when no host did
            from .plugins import make_plugin_manager

            formats.add_plugin_formats(make_plugin_manager())
        try:
            kp = formats.read(self.path, self.config.format, missing="hold")
        except A2KError as exc:
            raise self._error(exc) from None
        self._points, self._fps, self._complete = kp.points[..., :2].astype(np.float64), kp.fps, True

    def _read_video(self, frames: int | None, fps: float, detector: KeypointDetector) -> None:
        faces: list[np.ndarray | None] = []
        batch: list[np.ndarray] = []
        complete = True
        for frame in io.read_video_frames(self.path, fps=fps):
            if frames is not None and len(faces) + len(batch) >= frames:
                complete = False
                break
            batch.append(frame)
            if len(batch) == DETECT_BATCH:
                faces += detector.detect_batch(batch)
                batch = []
        if batch:
            faces += detector.detect_batch(batch)
        found = [i for i, f in enumerate(faces) if f is not None]
        if not found:
            raise self._error(
                f"the detector {detector.name!r} found no face in any of its {len(faces)} frames read"
                if faces
                else "no frame could be decoded"
            )
        out = np.empty((len(faces), NUM_POINTS, 2))
        last = np.asarray(faces[found[0]], np.float64)[:, :2]
        for i, f in enumerate(faces):  # frames without a face hold the previous face (the first one before it)
            if f is not None:
                last = np.asarray(f, np.float64)[:, :2]
            out[i] = last
        self._points, self._fps, self._complete = out, fps, complete

    def points(self, num_frames: int | None, fps: float, detector: KeypointDetector | None = None) -> np.ndarray:
        """The source's keypoints ``(S, 68, 2)`` at ``fps``, at most ``num_frames`` of them when that many are
        needed (more are never read from a video); ``None``: all of them."""
        if not self.is_video:
            return resample_frames(self._points, self._fps, fps)[:num_frames]
        with self._lock:
            have = self._points is not None and self._fps == fps
            if not (have and (self._complete or (num_frames is not None and len(self._points) >= num_frames))):
                if detector is None:
                    raise InputError(f"pose source {self.path} is a video: its faces need a keypoint detector")
                self._read_video(num_frames, fps, detector)
            return self._points[:num_frames]

    @property
    def meta(self) -> dict:
        """What posed keypoints carry in their meta."""
        return {"pose_source": str(self.config.source), "pose_loop": self.loop}

    def apply(self, keypoints: Keypoints, reference: Keypoints, detector: KeypointDetector | None = None) -> Keypoints:
        """``keypoints`` (a generator's, frame 0 = ``reference``) in the source's head pose (:func:`transfer_pose`)."""
        src = self.points(len(keypoints), keypoints.fps, detector)
        posed = transfer_pose(keypoints.points, reference.points[0], src, loop=self.loop)
        meta = {**keypoints.meta, **self.meta}
        return Keypoints(posed, fps=keypoints.fps, image_size=keypoints.image_size, layout=keypoints.layout, meta=meta)

    def transfer(self, reference: Keypoints, fps: float, detector: KeypointDetector | None = None) -> PoseTransfer:
        """The pose of the whole source re-targeted to ``reference``, for a stream of unknown length: frame ``t``
        of the stream takes the source's frame :func:`source_index` ``(t)``, as offline generation of any length
        does. A video's every frame is read and its faces found here (once per source: later streams reuse them)."""
        return PoseTransfer(reference.points[0], self.points(None, fps, detector), loop=self.loop, meta=self.meta)
