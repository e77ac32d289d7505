"""The keypoint type, the iBUG 68-point topology (and its drawing), the measures of a face, and the paper's
normalisation (§4.5) with its inverse. Keypoint files are read and written by :mod:`a2k_toolkit.keypoint_files`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import InputError

NUM_POINTS = 68
LAYOUT = "ibug68"

# iBUG 68-point index groups (inclusive start, exclusive stop)
PARTS: dict[str, range] = {
    "jaw": range(0, 17),
    "right_brow": range(17, 22),
    "left_brow": range(22, 27),
    "nose_bridge": range(27, 31),
    "nose_base": range(31, 36),
    "right_eye": range(36, 42),
    "left_eye": range(42, 48),
    "outer_lip": range(48, 60),
    "inner_lip": range(60, 68),
}
CLOSED_PARTS = frozenset({"right_eye", "left_eye", "outer_lip", "inner_lip"})

# RGB colours per part, used by the sketch renderer and overlays
PART_COLORS: dict[str, tuple[int, int, int]] = {
    "jaw": (255, 255, 255),
    "right_brow": (255, 128, 0),
    "left_brow": (255, 128, 0),
    "nose_bridge": (0, 200, 255),
    "nose_base": (0, 200, 255),
    "right_eye": (0, 255, 0),
    "left_eye": (0, 255, 0),
    "outer_lip": (255, 0, 80),
    "inner_lip": (255, 80, 200),
}

MOUTH = np.arange(48, 68)
NOSE_TIP = 30
# The paper subtracts "the first nose keypoint" (§4.5): index 27, the top of the nose bridge.
NOSE_BASE_INDEX = 27
RIGHT_EYE_CENTRE = list(PARTS["right_eye"])
LEFT_EYE_CENTRE = list(PARTS["left_eye"])
# the mouth opening's two points (upper, lower): the centres of the inner lips
MOUTH_GAP = (62, 66)


def part_edges(part: str) -> list[tuple[int, int]]:
    idx = list(PARTS[part])
    edges = list(zip(idx[:-1], idx[1:]))
    if part in CLOSED_PARTS:
        edges.append((idx[-1], idx[0]))
    return edges


EDGES: list[tuple[int, int]] = [e for p in PARTS for e in part_edges(p)]


def draw_keypoints(canvas: np.ndarray, points: np.ndarray, thickness: int = 2, dots: bool = False) -> np.ndarray:
    """Draw one frame's 68 keypoints on ``canvas`` (RGB uint8, modified in place) as polylines coloured by part
    (:data:`PART_COLORS`; eyes and lips closed): the sketch renderer's drawing, also used by dataset QA and plugins."""
    import cv2

    shift = 4  # sub-pixel precision for smooth lines
    pts = np.round(np.asarray(points)[:, :2] * (1 << shift)).astype(np.int32)
    for part, idx in PARTS.items():
        cv2.polylines(canvas, [pts[list(idx)]], part in CLOSED_PARTS, PART_COLORS[part], thickness, cv2.LINE_AA, shift)
    if dots:
        for x, y in pts:
            cv2.circle(canvas, (int(x), int(y)), max(1, thickness) << shift, (255, 255, 0), -1, cv2.LINE_AA, shift)
    return canvas


@dataclass
class Keypoints:
    """A keypoint sequence: float32 ``points`` of shape ``(T, 68, 2)`` in pixel coordinates of the reference image.

    ``image_size`` is ``(height, width)`` of that image; ``fps`` the frame rate.
    """

    points: np.ndarray
    fps: float = 25.0
    image_size: tuple[int, int] | None = None
    layout: str = LAYOUT
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, dtype=np.float32)
        if pts.ndim == 2:
            pts = pts[None]
        if pts.ndim != 3 or pts.shape[1] != NUM_POINTS or pts.shape[2] not in (2, 3):
            raise InputError(f"keypoints must have shape (T, 68, 2) or (T, 68, 3), got {tuple(np.shape(self.points))}")
        if not np.isfinite(pts).all():
            raise InputError("keypoints contain NaN or infinite values")
        self.points = pts
        if self.image_size is not None:
            self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if self.fps <= 0:
            raise InputError(f"fps must be positive, got {self.fps}")

    def __len__(self) -> int:
        return self.points.shape[0]

    def __getitem__(self, item) -> Keypoints:
        pts = self.points[item]
        return replace(self, points=pts if pts.ndim == 3 else pts[None], meta=dict(self.meta))

    @property
    def num_frames(self) -> int:
        return len(self)

    @property
    def duration(self) -> float:
        return len(self) / self.fps

    def frame(self, i: int) -> np.ndarray:
        return self.points[i]

    def with_points(self, points: np.ndarray) -> Keypoints:
        return replace(self, points=points, meta=dict(self.meta))


def _xy(points):
    """The ``(x, y)`` of ``(..., 68, 2|3)`` points: a torch tensor as it is (its dtype, device and graph), anything
    else as a float64 numpy array."""
    if type(points).__module__.partition(".")[0] == "torch":
        return points[..., :2]
    return np.asarray(points, dtype=np.float64)[..., :2]


def _length(v):
    """Euclidean length over the last axis, numpy or torch (torch's ``norm`` has a zero gradient at 0, not NaN)."""
    if type(v).__module__.partition(".")[0] == "torch":
        return v.norm(dim=-1)
    return np.linalg.norm(v, axis=-1)


def face_scale(points: np.ndarray) -> np.ndarray:
    """The normaliser's unit of length per frame: the RMS distance of the points to their centroid,
    ``(..., 68, 2) -> (...)``. Only :class:`Normalizer` (the training space the shipped weights were fitted in) and
    motion amplitudes of the procedural baseline use it; measurements use :func:`interocular`."""
    pts = np.asarray(points, dtype=np.float64)[..., :2]
    centred = pts - pts.mean(axis=-2, keepdims=True)
    return np.sqrt((centred**2).sum(-1).mean(-1))


def interocular(points):
    """The inter-ocular distance (IOD) per frame: between the eye centres, each the mean of its six points (36-41,
    42-47). ``(..., 68, 2) -> (...)``; numpy arrays or torch tensors. The unit of every measurement of this toolkit
    (mouth opening, evaluation distances); a measurement divides by the IOD of its **reference** frame
    (:func:`reference_iod`)."""
    pts = _xy(points)
    return _length(pts[..., RIGHT_EYE_CENTRE, :].mean(-2) - pts[..., LEFT_EYE_CENTRE, :].mean(-2))


def reference_iod(points) -> float:
    """:func:`interocular` of frame 0 of a ``(T, 68, 2)`` sequence (or of one ``(68, 2)`` face), in its pixels: the
    reference every measurement of the sequence divides by. Raises :class:`InputError` when it is 0 or not finite."""
    pts = np.asarray(points, dtype=np.float64)
    iod = float(interocular(pts if pts.ndim == 2 else pts.reshape(-1, *pts.shape[-2:])[0]))
    if not np.isfinite(iod) or iod <= 1e-6:
        raise InputError(
            "the reference frame has coincident eye centres (inter-ocular distance 0); check the clip's keypoints"
        )
    return iod


def mouth_gap(points):
    """Inner-lip gap per frame: the distance between the inner-lip centres :data:`MOUTH_GAP` (62 upper, 66 lower),
    in the points' own units. ``(..., 68, 2) -> (...)``; numpy arrays or torch tensors."""
    pts = _xy(points)
    if pts.shape[-2] != NUM_POINTS:
        raise InputError(f"keypoints must have shape (..., 68, 2), got {tuple(pts.shape)}")
    upper, lower = MOUTH_GAP
    return _length(pts[..., lower, :] - pts[..., upper, :])


def mouth_opening(points, scale=None):
    """**The** mouth opening: :func:`mouth_gap` (points 62-66) divided by ``scale``, ``(..., 68, 2) -> (...)``.

    ``scale`` is an inter-ocular distance in the points' units: evaluation, dataset QA and the warp renderer pass the
    reference frame's (:func:`reference_iod`), so a sequence's openings share one unit; ``None`` divides each frame
    by its own IOD. Works on numpy arrays and on torch tensors (then ``scale`` may be a tensor, e.g. ``(B, 1)``)."""
    gap = mouth_gap(points)
    return gap / (interocular(points) if scale is None else scale)


def face_width(points: np.ndarray) -> np.ndarray:
    """Face size in pixels for the size checks (is the face large enough to detect, keep or render): the extent of
    the 68 points along x (jaw corner to jaw corner for a frontal face), ``(..., 68, 2) -> (...)``."""
    pts = np.asarray(points, dtype=np.float64)
    return np.ptp(pts[..., 0], axis=-1)


@dataclass
class Normalizer:
    """The paper's normalisation (§4.5) and its inverse, in one place.

    ``normalize(points, reference)``: subtract the reference frame's first nose keypoint (index 27) from every frame
    (translation invariance; head translation relative to the reference is kept), divide by the reference face's
    size (so images of any resolution map to one scale — an extension of the paper, whose Vox-KP is all 224 px), then
    standardise each of the 136 coordinates with the training set's ``mean`` and ``std``.
    """

    mean: np.ndarray = field(default_factory=lambda: np.zeros(NUM_POINTS * 2, np.float32))
    std: np.ndarray = field(default_factory=lambda: np.ones(NUM_POINTS * 2, np.float32))
    scale_by_face: bool = True

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, np.float32).reshape(NUM_POINTS * 2)
        self.std = np.asarray(self.std, np.float32).reshape(NUM_POINTS * 2)
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all()) or (self.std <= 0).any():
            raise InputError("normalisation statistics must be finite with positive std")

    def _frame(self, reference: np.ndarray) -> tuple[np.ndarray, float]:
        ref = np.asarray(reference, np.float64).reshape(NUM_POINTS, -1)[:, :2]
        base = ref[NOSE_BASE_INDEX]
        scale = float(face_scale(ref)) if self.scale_by_face else 1.0
        return base, max(scale, 1e-6)

    def centre(self, points: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Translation- and scale-normalised points ``(T, 136)`` before standardisation."""
        base, scale = self._frame(reference)
        pts = np.asarray(points, np.float64)[..., :2]
        return ((pts - base) / scale).reshape(*pts.shape[:-2], NUM_POINTS * 2).astype(np.float32)

    def normalize(self, points: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """``(T, 68, 2)`` pixels -> ``(T, 136)`` normalised, relative to ``reference`` ``(68, 2)``."""
        return ((self.centre(points, reference) - self.mean) / self.std).astype(np.float32)

    def normalize_many(self, points: np.ndarray, references: np.ndarray) -> np.ndarray:
        """:meth:`normalize` of ``N`` sequences at once (the same values, vectorised): ``(N, T, 68, 2)`` pixels and
        their ``(N, 68, 2)`` references -> ``(N, T, 136)``."""
        ref = np.asarray(references, np.float64)[..., :2]
        N, T = len(ref), np.shape(points)[1]
        base = np.tile(ref[:, NOSE_BASE_INDEX], NUM_POINTS)[:, None]  # (N, 1, 136): x, y of the nose base per point
        scale = face_scale(ref) if self.scale_by_face else np.ones(N)
        scale = np.maximum(scale, 1e-6)[:, None, None]
        # the operations of `normalize`, in place on (N, T, 136) rows (long inner loops, no temporaries)
        z = np.asarray(points)[..., :2].reshape(N, T, NUM_POINTS * 2).astype(np.float64)
        z -= base
        z /= scale
        out = z.astype(np.float32)
        out -= self.mean
        out /= self.std
        return out

    def denormalize(self, z: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`normalize`: ``(T, 136)`` -> ``(T, 68, 2)`` pixels."""
        base, scale = self._frame(reference)
        z = np.asarray(z, np.float64)
        pts = (z * self.std + self.mean).reshape(*z.shape[:-1], NUM_POINTS, 2)
        return (pts * scale + base).astype(np.float32)

    @classmethod
    def fit(cls, sequences, max_sequences: int = 10_000, scale_by_face: bool = True) -> Normalizer:
        """Mean and std per coordinate over the first ``max_sequences`` sequences (each ``(T, 68, 2)``, frame 0 being
        its reference), as the paper computes them from the first 10k training sequences."""
        tmp = cls(scale_by_face=scale_by_face)
        total = np.zeros(NUM_POINTS * 2)
        total_sq = np.zeros(NUM_POINTS * 2)
        count = 0
        for i, seq in enumerate(sequences):
            if i >= max_sequences:
                break
            seq = np.asarray(seq)
            c = tmp.centre(seq, seq[0]).astype(np.float64)
            total += c.sum(0)
            total_sq += (c**2).sum(0)
            count += len(c)
        if count == 0:
            raise InputError("cannot fit normalisation statistics on no sequences")
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        std = np.maximum(std, 1e-3)
        return cls(mean=mean, std=std, scale_by_face=scale_by_face)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "scale_by_face": self.scale_by_face}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        return cls(mean=d["mean"], std=d["std"], scale_by_face=d.get("scale_by_face", True))


# ------------------------------------------------------------------------------------------------ head pose


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[complex, complex]:
    """Least-squares similarity ``z -> a z + b`` (rotation, uniform scale, translation) mapping ``src (N, 2)`` onto
    ``dst (N, 2)``, as complex numbers ``(a, b)``. With ``dst (K, N, 2)`` (one source onto many targets), ``a`` and
    ``b`` are arrays ``(K,)``."""
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[..., 0] + 1j * dst[..., 1]
    ms = zs.mean()
    cs = zs - ms
    denom = float((np.abs(cs) ** 2).sum())
    if zd.ndim == 2:  # a batch of targets
        md = zd.mean(1)
        a = (zd - md[:, None]) @ np.conj(cs) / denom if denom > 1e-9 else np.ones(len(zd), complex)
        return a, md - a * ms
    md = zd.mean()
    a = complex(((zd - md) * np.conj(cs)).sum() / denom) if denom > 1e-9 else 1.0 + 0j
    return a, complex(md - a * ms)


def apply_similarity(points: np.ndarray, a, b) -> np.ndarray:
    """``points (M, 2)`` moved by ``z -> a z + b``: ``(M, 2)`` for one similarity, ``(K, M, 2)`` for arrays ``(K,)``."""
    if np.ndim(a):  # a batch of similarities
        a, b = np.asarray(a)[:, None], np.asarray(b)[:, None]
    z = a * (points[:, 0] + 1j * points[:, 1]) + b
    return np.stack([z.real, z.imag], axis=-1)
