"""The mouth prior: where a talking mouth sits on average, given the photo's mouth.

A photo (or a clip's first frame) catches the mouth in one state: mid-word and open, pressed shut, smiling. Over
the speech that follows, the mouth's mean position (relative to the nose tip) is not that state: an open mouth
closes more often than not, a shut one parts. Every generator that starts from the photo carries the photo's state
into every frame; on the shared clips this constant offset is about a third of a still face's mouth LMD
(docs/results.md, "Stage 8").

:class:`MouthPrior` is a ridge regression, fitted on talking-face clips, from the reference's mouth to the expected
offset of the mean talking mouth from it, both in the reference's **mouth frame**: the 20 mouth points (48-67)
relative to the nose tip (30), divided by the eye line (the complex number from the centre of eye 36-41 to that of
eye 42-47), so the unit is the inter-ocular distance and the reference's roll is taken out. ``audio2keypoint`` adds
``mouth_prior`` times :meth:`MouthPrior.offset` to its mouth points with ``keep_mouth_shape``'s ramp
(:func:`~a2k_toolkit.motion.add_mouth_offset`): frame 0 stays the reference, so the stream and offline generation
add the same offset.

The file is safetensors (numpy arrays, no pickle) with its fitting facts in the header; :func:`fit_mouth_prior`
fits one (``a2k mouth-prior``), :func:`load_mouth_prior` reads one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointError, InputError
from .keypoints import LEFT_EYE_CENTRE, MOUTH, NOSE_TIP, RIGHT_EYE_CENTRE

FORMAT = "a2k-mouth-prior"
FORMAT_VERSION = 1
FILE_NAME = "mouth_prior.safetensors"
DIM = 2 * len(MOUTH)  # 40: x and y of the 20 mouth points
# ridge penalty per unit of (normalised) clip weight, in IOD^2; fixed by the stage-8 protocol, not tuned
RIDGE = 1e-4
# a family with more clips than this weighs as this many (lrcar's 1,600 one-word clips would otherwise be the fit)
FAMILY_CAP = 200
MIN_FRAMES = 8  # clips shorter than this say little about a mean (a2k eval's min_frames)


def _eye_line(reference: np.ndarray) -> complex:
    pts = np.asarray(reference, np.float64)[..., :2]
    right, left = pts[RIGHT_EYE_CENTRE].mean(0), pts[LEFT_EYE_CENTRE].mean(0)
    z = complex(left[0] - right[0], left[1] - right[1])
    if not np.isfinite(z) or abs(z) <= 1e-6:
        raise InputError("the reference has coincident eye centres (inter-ocular distance 0); check its keypoints")
    return z


def mouth_frame(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The mouth points of ``points (..., 68, 2)`` in ``reference (68, 2)``'s mouth frame (module docstring):
    ``(..., 20, 2)`` float64, each frame's mouth relative to its own nose tip, divided by the reference's eye line."""
    pts = np.asarray(points, np.float64)[..., :2]
    rel = pts[..., MOUTH, :] - pts[..., NOSE_TIP, None, :]
    z = (rel[..., 0] + 1j * rel[..., 1]) / _eye_line(reference)
    return np.stack([z.real, z.imag], -1)


def from_mouth_frame(offset: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """An offset ``(20, 2)`` in ``reference``'s mouth frame as pixels of the reference (the inverse rotation and
    scale of :func:`mouth_frame`; an offset has no translation)."""
    o = np.asarray(offset, np.float64)
    z = (o[..., 0] + 1j * o[..., 1]) * _eye_line(reference)
    return np.stack([z.real, z.imag], -1)


@dataclass
class MouthPrior:
    """``offset = (x - mean) @ weights + bias`` in the mouth frame, ``x`` the reference's 40 mouth coordinates."""

    mean: np.ndarray  # (40,)
    weights: np.ndarray  # (40, 40)
    bias: np.ndarray  # (40,)
    meta: dict[str, Any] = field(default_factory=dict)

    def offset(self, reference: np.ndarray) -> np.ndarray:
        """``(20, 2)`` float64: the expected offset, in the reference's pixels, of the talking mouth's mean (points
        48-67 relative to the nose tip) from the reference's ``(68, 2)``."""
        x = mouth_frame(reference, reference).reshape(DIM)
        return from_mouth_frame(((x - self.mean) @ self.weights + self.bias).reshape(len(MOUTH), 2), reference)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the prior as safetensors (atomically), its :attr:`meta` in the header."""
        from safetensors.numpy import save

        from .files import atomic_write_bytes

        arrays = {k: np.ascontiguousarray(getattr(self, k), np.float64) for k in ("mean", "weights", "bias")}
        header = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "meta": json.dumps(self.meta)}
        atomic_write_bytes(path, save(arrays, metadata=header))
        return Path(path)


def load_mouth_prior(path: str | os.PathLike) -> MouthPrior:
    """Read a prior written by :meth:`MouthPrior.save`; a directory means its :data:`FILE_NAME`. A file that is not
    one (or damaged) is a :class:`CheckpointError` naming it."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if p.is_dir():
        p = p / FILE_NAME
    if not p.is_file():
        raise CheckpointError(f"no mouth prior at {p}; fit one with `a2k mouth-prior TRAIN_CONFIG --out {p}`")
    try:
        with safe_open(str(p), framework="numpy") as f:
            header = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has keys(), not iteration)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the mouth prior {p}: {exc}; fit it again with `a2k mouth-prior`") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f'{p} is not an a2k mouth prior (no "format": "{FORMAT}" in its header)')
    if int(header.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{p} has mouth-prior format version {header['format_version']}; upgrade a2k-toolkit")
    shapes = {"mean": (DIM,), "weights": (DIM, DIM), "bias": (DIM,)}
    for k, shape in shapes.items():
        if k not in arrays or arrays[k].shape != shape or not np.isfinite(arrays[k]).all():
            raise CheckpointError(f"{p}: {k!r} is missing, not of shape {shape} or not finite; fit it again")
    try:
        meta = json.loads(header.get("meta") or "{}")
    except ValueError:
        meta = {}
    return MouthPrior(arrays["mean"], arrays["weights"], arrays["bias"], meta)


def clip_sample(points: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(x, y)`` of one clip ``points (T, 68, 2)``: its frame 0's mouth frame coordinates ``x (40,)`` and the mean
    over its later (valid) frames, minus ``x``, ``y (40,)``; None when frame 0 is not valid or fewer than
    :data:`MIN_FRAMES` frames are."""
    pts = np.asarray(points, np.float64)[..., :2]
    ok = np.ones(len(pts), bool) if valid is None else np.asarray(valid, bool)
    if len(pts) < 2 or not ok[0] or ok.sum() < MIN_FRAMES or not np.isfinite(pts[ok]).all():
        return None
    later = np.flatnonzero(ok[1:]) + 1
    frame = mouth_frame(pts[np.r_[0, later]], pts[0]).reshape(-1, DIM)
    return frame[0], frame[1:].mean(0) - frame[0]


def fit_mouth_prior(
    samples: Iterable[tuple[np.ndarray, np.ndarray, str]],
    *,
    ridge: float = RIDGE,
    family_cap: int = FAMILY_CAP,
    meta: dict[str, Any] | None = None,
) -> MouthPrior:
    """A prior from ``(x, y, family)`` samples (:func:`clip_sample` of each clip, and its family): weighted ridge
    regression of ``y`` on ``x``, each clip weighing 1, or ``family_cap / n`` in a family of ``n > family_cap``
    clips; the weights normalised to sum 1, the penalty ``ridge`` on ``weights``."""
    xs, ys, fams = [], [], []
    for x, y, fam in samples:
        xs.append(x)
        ys.append(y)
        fams.append(fam)
    if len(xs) < 2:
        raise InputError(f"a mouth prior needs at least 2 usable clips (frame 0 with a face, {MIN_FRAMES}+ frames)")
    X, Y = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    counts = {f: fams.count(f) for f in set(fams)}
    w = np.array([min(1.0, family_cap / counts[f]) for f in fams])
    w /= w.sum()
    mean, bias = w @ X, w @ Y
    Xc, Yc, sw = X - mean, Y - bias, np.sqrt(w)[:, None]
    weights = np.linalg.solve((Xc * sw).T @ (Xc * sw) + ridge * np.eye(DIM), (Xc * sw).T @ (Yc * sw))
    info = {
        "clips": len(xs),
        "families": {f: counts[f] for f in sorted(counts)},
        "ridge": ridge,
        "family_cap": family_cap,
        **(meta or {}),
    }
    return MouthPrior(mean, weights, bias, info)
