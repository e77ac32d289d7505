"""Keypoint-sequence metrics: pure numpy functions on ``(T, 68, 2)`` pixel arrays.

Units: "IOD" is the inter-ocular distance (between the eye centres) of the **reference** frame (frame 0 of the ground
truth), so every distance-like number is comparable across image sizes. Time is in frames (25 fps by default).
docs/evaluation.md gives every definition; the functions below are the definitions.

Conventions shared by all functions:

* frame 0 is the reference the generator was given; per-frame error metrics (L1, PCK, LMD, identity error) average
  over frames ``1..T-1`` only, since frame 0 is the input, not a prediction;
* a Pearson correlation is **0** when either side has zero variance (a still mouth), never NaN;
* a lag ``k`` pairs ``a[t]`` with ``b[t + k]``; the "best" lag is the one with the highest (signed) correlation,
  ties going to the smallest ``|k|``.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..keypoints import NOSE_TIP, NUM_POINTS, Normalizer
from ..keypoints import mouth_opening as _mouth_opening
from ..keypoints import reference_iod as _reference_iod

MOUTH_POINTS = np.arange(48, 68)
# brows, nose and eyes: the shape that should keep the identity of the reference
IDENTITY_POINTS = np.arange(17, 48)
# points that barely move with expression, used to estimate the head pose for the identity error:
# nose bridge and base (27-35) and the four eye corners (36, 39, 42, 45)
STABLE_POINTS = np.array([27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45])
PCK_ALPHA = 0.02
MAX_LAG = 3
# fewest overlapping frames a lagged correlation is computed on
MIN_OVERLAP = 4
# magnitudes (in IOD) below this are floating-point residue of a still sequence and are reported as exactly 0
RESIDUE = 1e-10


def _snap(v: float) -> float:
    return 0.0 if abs(v) < RESIDUE else float(v)


def _seq(points: np.ndarray, what: str = "keypoints") -> np.ndarray:
    pts = np.asarray(points, np.float64)
    if pts.ndim == 2:
        pts = pts[None]
    if pts.ndim != 3 or pts.shape[1] != NUM_POINTS or pts.shape[2] < 2:
        raise InputError(f"{what} must have shape (T, 68, 2), got {np.shape(points)}")
    return pts[..., :2]


def _pair(pred: np.ndarray, real: np.ndarray, min_frames: int = 2) -> tuple[np.ndarray, np.ndarray]:
    p, r = _seq(pred, "predicted keypoints"), _seq(real, "ground-truth keypoints")
    if p.shape != r.shape:
        raise InputError(f"predicted and ground-truth keypoints differ in shape: {p.shape} vs {r.shape}")
    if len(p) < min_frames:
        raise InputError(f"this metric needs at least {min_frames} frames, got {len(p)}")
    return p, r


def reference_iod(real: np.ndarray) -> float:
    """Inter-ocular distance of frame 0 (the reference), in pixels; the unit of every distance metric
    (:func:`a2k_toolkit.keypoints.reference_iod`)."""
    return _reference_iod(_seq(real))


# --------------------------------------------------------------------------------------------- correlation and lag


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two 1-D series; **0.0 when either has zero variance** (e.g. a still mouth)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise InputError(f"correlated series differ in length: {a.shape[0]} vs {b.shape[0]}")
    if len(a) < 2:
        return 0.0
    da, db = a - a.mean(), b - b.mean()
    na, nb = np.sqrt((da * da).sum()), np.sqrt((db * db).sum())
    # "zero variance" up to floating-point noise relative to the series' magnitude
    if na <= 1e-9 * (1.0 + np.abs(a).max()) * np.sqrt(len(a)) or nb <= 1e-9 * (1.0 + np.abs(b).max()) * np.sqrt(len(b)):
        return 0.0
    return float(np.clip((da * db).sum() / (na * nb), -1.0, 1.0))


def lagged_correlation(a: np.ndarray, b: np.ndarray, lag: int) -> float:
    """Pearson correlation of ``a[t]`` with ``b[t + lag]`` over the frames where both exist."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    if lag >= 0:
        return pearson(a[: n - lag], b[lag:]) if n - lag >= 1 else 0.0
    return pearson(a[-lag:], b[: n + lag]) if n + lag >= 1 else 0.0


def best_lag_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = MAX_LAG) -> tuple[float, int]:
    """``(correlation, lag)`` maximising the Pearson correlation of ``a[t]`` and ``b[t + lag]``, ``|lag| <= max_lag``.

    Lags leaving fewer than :data:`MIN_OVERLAP` overlapping frames are not tried (lag 0 always is). Ties go to the
    smallest ``|lag|`` (then the negative one), so two still series give ``(0.0, 0)``.
    """
    n = min(len(np.ravel(a)), len(np.ravel(b)))
    best = (lagged_correlation(a, b, 0), 0)
    for k in sorted(range(-max_lag, max_lag + 1), key=lambda k: (abs(k), k)):
        if k == 0 or n - abs(k) < MIN_OVERLAP:
            continue
        c = lagged_correlation(a, b, k)
        if c > best[0] + 1e-12:
            best = (c, k)
    return best


# ------------------------------------------------------------------------------------------------- mouth and audio


def mouth_opening(points: np.ndarray, iod: float) -> np.ndarray:
    """The toolkit's mouth opening (:func:`a2k_toolkit.keypoints.mouth_opening`) of a ``(T, 68, 2)`` sequence,
    ``(T,)`` in IOD: the distance between the inner-lip centres 62 and 66 divided by ``iod``, the reference IOD."""
    return _mouth_opening(_seq(points), iod)


# ----------------------------------------------------------------------------------------------- error vs the truth


def l1_per_coordinate(pred: np.ndarray, real: np.ndarray, normalizer: Normalizer | None = None) -> np.ndarray:
    """Mean over frames ``1..T-1`` of ``|centre(pred) - centre(real)|`` per coordinate, ``(136,)``, before dividing
    by the normaliser's std (the mean cancels in the difference). Both are centred on the *ground truth's* frame 0."""
    p, r = _pair(pred, real)
    norm = normalizer if normalizer is not None else Normalizer()
    ref = r[0]
    return np.abs(norm.centre(p[1:], ref).astype(np.float64) - norm.centre(r[1:], ref)).mean(0)


def l1_normalised(pred: np.ndarray, real: np.ndarray, normalizer: Normalizer) -> float:
    """Paper §5.3 L1: mean absolute difference of the normalised coordinates (``Normalizer.normalize`` relative to
    the ground truth's frame 0), over frames ``1..T-1`` and the 136 coordinates. Unit: training-set standard
    deviations of a coordinate."""
    return float((l1_per_coordinate(pred, real, normalizer) / normalizer.std).mean())


def pck_threshold(real: np.ndarray, alpha: float = PCK_ALPHA) -> float:
    """``alpha * max(h, w)`` of the bounding box of all ground-truth keypoints of the sequence, in pixels."""
    r = _seq(real).reshape(-1, 2)
    h, w = np.ptp(r[:, 1]), np.ptp(r[:, 0])
    return float(alpha * max(h, w))


def pck(pred: np.ndarray, real: np.ndarray, alpha: float = PCK_ALPHA) -> float:
    """Paper §5.3 PCK, in percent: the share of keypoints of frames ``1..T-1`` whose distance to the ground truth
    is at most :func:`pck_threshold`."""
    p, r = _pair(pred, real)
    thr = pck_threshold(r, alpha)
    d = np.linalg.norm(p[1:] - r[1:], axis=-1)
    return float(100.0 * (d <= thr).mean())


def lmd(pred: np.ndarray, real: np.ndarray, iod: float) -> float:
    """Mouth landmark distance in IOD: the Euclidean distance between predicted and true mouth points 48-67, each
    taken relative to its own frame's nose tip (30), averaged over the 20 points and frames ``1..T-1``."""
    p, r = _pair(pred, real)
    rel_p = p[1:, MOUTH_POINTS] - p[1:, NOSE_TIP, None]
    rel_r = r[1:, MOUTH_POINTS] - r[1:, NOSE_TIP, None]
    return float(np.linalg.norm(rel_p - rel_r, axis=-1).mean() / iod)


# --------------------------------------------------------------------------------------------- motion and identity


def head_motion(points: np.ndarray, iod: float) -> float:
    """Nose-tip (30) trajectory spread in IOD: ``sqrt(mean_t |n_t - mean(n)|^2) / iod`` (the RMS distance of the
    nose tip from its mean position; the 2-D standard deviation)."""
    n = _seq(points)[:, NOSE_TIP]
    return _snap(np.sqrt(((n - n.mean(0)) ** 2).sum(-1).mean()) / iod)


def jerk(points: np.ndarray, iod: float) -> float:
    """Mean magnitude of the third time difference ``x[t+3] - 3x[t+2] + 3x[t+1] - x[t]`` over all points and the
    ``T - 3`` windows, in IOD per frame³ (multiply by fps³ for IOD/s³). 0.0 for sequences shorter than 4 frames."""
    pts = _seq(points)
    if len(pts) < 4:
        return 0.0
    d3 = np.diff(pts, n=3, axis=0)
    return _snap(np.linalg.norm(d3, axis=-1).mean() / iod)


def similarity_align(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity transform (scale ``s``, rotation ``R``, translation ``t``; no reflection) with
    ``s * src @ R.T + t ~ dst`` for point sets ``(..., N, 2)`` (Umeyama's method), batched over leading axes.
    Returns ``s (...)``, ``R (..., 2, 2)``, ``t (..., 2)``."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    src, dst = np.broadcast_arrays(src, dst)
    mu_s, mu_d = src.mean(-2), dst.mean(-2)
    a, b = src - mu_s[..., None, :], dst - mu_d[..., None, :]
    n = src.shape[-2]
    var_s = (a**2).sum((-2, -1)) / n
    cov = np.swapaxes(b, -1, -2) @ a / n
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(sig.shape)
    d[..., -1] = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)
    rot = u @ (d[..., :, None] * vt)
    degenerate = var_s <= 1e-12  # all source points coincide: translation only
    scale = np.where(degenerate, 1.0, (sig * d).sum(-1) / np.where(degenerate, 1.0, var_s))
    rot = np.where(degenerate[..., None, None], np.eye(2), rot)
    t = mu_d - scale[..., None] * (mu_s[..., None, :] @ np.swapaxes(rot, -1, -2))[..., 0, :]
    return scale, rot, t


def identity_errors(points: np.ndarray, reference: np.ndarray, iod: float) -> np.ndarray:
    """Per frame, ``(T,)`` in IOD: align the frame to ``reference`` with the similarity transform fitted on
    :data:`STABLE_POINTS`, then take the mean distance of the brow, eye and nose points (17-47) to the reference's."""
    pts = _seq(points)
    ref = _seq(reference, "reference keypoints")[0]
    s, rot, t = similarity_align(pts[:, STABLE_POINTS], ref[STABLE_POINTS][None])
    aligned = s[:, None, None] * pts[:, IDENTITY_POINTS] @ np.swapaxes(rot, -1, -2) + t[:, None, :]
    return np.linalg.norm(aligned - ref[IDENTITY_POINTS], axis=-1).mean(-1) / iod


def identity_error(points: np.ndarray, reference: np.ndarray, iod: float) -> float:
    """Mean of :func:`identity_errors` over frames ``1..T-1`` (frame 0 is the reference itself)."""
    errs = identity_errors(points, reference, iod)
    return _snap(errs[1:].mean()) if len(errs) > 1 else 0.0


def opening_std(opening: np.ndarray) -> float:
    """Standard deviation of a mouth-opening series (IOD); exactly 0 for a still mouth."""
    return _snap(np.asarray(opening, np.float64).std())


def ratio(pred: float | None, real: float | None) -> float | None:
    """``pred / real``; ``None`` when ``real`` is 0 (or either is missing): a ratio to nothing is undefined."""
    if pred is None or real is None or not np.isfinite(real) or abs(real) <= 1e-12:
        return None
    return float(pred / real)
