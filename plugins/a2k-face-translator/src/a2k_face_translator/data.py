"""Training data: face crops of real clips with their keypoint sketches.

One square crop box per clip (from the median face of its frames), so that head motion stays motion inside the
crop, exactly as at rendering time, where the box comes from the reference photo and the driving keypoints move
inside it. The sketch is the toolkit's coloured keypoint drawing (``a2k_toolkit.keypoints.draw_keypoints``)
on black, at the crop's resolution.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from a2k_toolkit.errors import InputError
from a2k_toolkit.keypoints import draw_keypoints

BOX_SCALE = 1.8  # crop side relative to the face's larger extent (brows to chin, jaw to jaw)


def face_box(points: np.ndarray) -> tuple[float, float, float]:
    """``(cx, cy, side)`` of the square crop around a face ``(68, 2)``: centred a little above the keypoints'
    centre (to include the forehead), ``BOX_SCALE`` times the face's larger extent."""
    pts = np.asarray(points, np.float64)[:, :2]
    lo, hi = pts.min(0), pts.max(0)
    size = float(max(hi - lo))
    cx, cy = (lo + hi) / 2
    return float(cx), float(cy - 0.12 * size), max(BOX_SCALE * size, 8.0)


def crop_matrix(box: tuple[float, float, float], size: int) -> np.ndarray:
    """2x3 affine mapping image pixels into a ``size`` x ``size`` crop of ``box``."""
    cx, cy, side = box
    s = size / side
    return np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], np.float64)


def crop(image: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """The ``box`` of ``image`` resampled to ``size`` x ``size`` (area-averaged when shrinking; borders replicated)."""
    import cv2

    side = box[2]
    if side > 2 * size:  # pre-shrink so that bilinear sampling does not alias
        f = 2 * size / side
        small = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        box = (box[0] * f, box[1] * f, side * f)
        image = small
    return cv2.warpAffine(
        image, crop_matrix(box, size), (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def to_crop(points: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """Keypoints ``(..., 68, 2)`` in image pixels -> crop pixels."""
    m = crop_matrix(box, size)
    pts = np.asarray(points, np.float64)[..., :2]
    return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


def sketch(points: np.ndarray, size: int) -> np.ndarray:
    """Coloured keypoint sketch ``(size, size, 3)`` uint8 of crop-space keypoints ``(68, 2)`` on black."""
    thickness = max(1, round(size / 64))
    return draw_keypoints(np.zeros((size, size, 3), np.uint8), points, thickness)


@dataclass
class FaceClip:
    """Face crops of one video: ``frames`` ``(N, S, S, 3)`` uint8, ``sketches`` alike, ``points`` ``(N, 68, 2)`` in
    crop pixels."""

    frames: np.ndarray
    sketches: np.ndarray
    points: np.ndarray
    identity: str = ""
    clip_id: str = ""

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> int:
        return self.frames.shape[1]


def face_clip(
    frames: Iterable[np.ndarray],
    keypoints: np.ndarray,
    size: int,
    *,
    valid: np.ndarray | None = None,
    stride: int = 1,
    identity: str = "",
    clip_id: str = "",
) -> FaceClip:
    """Crop ``frames`` (RGB uint8, any iterable: they are cropped as they come) around the clip's median face and
    draw the sketches; frames whose keypoints are not ``valid`` are skipped, and only every ``stride``-th frame is
    kept."""
    keypoints = np.asarray(keypoints)
    keep = np.arange(0, len(keypoints), stride)
    if valid is not None:
        keep = keep[np.asarray(valid)[keep]]
    if len(keep) == 0:
        raise InputError(f"clip {clip_id or '?'} has no frame with a detected face")
    box = face_box(np.median(keypoints[keep], axis=0))
    wanted = set(keep.tolist())
    crops, used = [], []
    for i, frame in enumerate(frames):
        if i > keep[-1]:
            break
        if i in wanted:
            crops.append(crop(np.asarray(frame), box, size))
            used.append(i)
    if not crops:
        raise InputError(f"clip {clip_id or '?'} has no decodable frames with keypoints")
    pts = to_crop(keypoints[used], box, size)
    sketches = np.stack([sketch(p, size) for p in pts])
    return FaceClip(np.stack(crops), sketches, pts, identity=identity, clip_id=clip_id)


def dlib_detector():
    """The toolkit's built-in ``dlib`` detector, built by name through a catalog of the built-in components: code
    outside the toolkit reaches a built-in component this way, never by importing its module."""
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager

    return Catalog(make_plugin_manager(entry_points=False)).build("detector", "dlib")


def load_face_clip(video: str | Path, size: int, *, detector=None, clip=None, stride: int = 1) -> FaceClip:
    """A :class:`FaceClip` from a talking-head video: keypoints from ``clip`` (an ``a2k_toolkit.data.clips.Clip`` of
    that video) or extracted with ``detector`` (default: dlib), frames decoded at the clip's frame rate and cropped
    one by one."""
    from a2k_toolkit.data.clips import extract_clip
    from a2k_toolkit.io import read_video_frames

    if clip is None:
        if detector is None:
            detector = dlib_detector()
        clip = extract_clip(video, detector)
    return face_clip(
        read_video_frames(video, fps=clip.fps),
        clip.keypoints,
        size,
        valid=clip.valid,
        stride=stride,
        identity=clip.identity,
        clip_id=clip.clip_id,
    )


def to_tensor(images: np.ndarray, device="cpu"):
    """uint8 ``(N, S, S, 3)`` -> float ``(N, 3, S, S)`` in ``[-1, 1]``."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return t.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_images(tensor) -> np.ndarray:
    """float ``(N, 3, S, S)`` in ``[-1, 1]`` -> uint8 ``(N, S, S, 3)``."""
    t = tensor.detach().clamp(-1, 1).add(1).mul(127.5).round().byte()
    return t.permute(0, 2, 3, 1).cpu().numpy()
