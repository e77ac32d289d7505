"""The toolkit's own keypoint files: ``.npy`` and ``.npz`` (written and read by :mod:`a2k_toolkit.io`, unchanged),
and the documented ``.json`` (``"format": "a2k-keypoints"``), which also reads the older ``.json`` files.

The JSON, one object::

    {
      "format": "a2k-keypoints", "format_version": 1,
      "fps": 25.0, "image_size": [512, 512],        # [height, width] of the image the points are in; null if unknown
      "layout": "ibug68", "num_points": 68, "num_frames": 2,
      "parts": {"jaw": [0, 17], "right_brow": [17, 22], ...},   # index ranges [start, stop) of each face part
      "points": [[[x, y], ...68 points], ...one list per frame],  # pixels, x right, y down, origin top-left
      "meta": {"generator": "audio2keypoint", ...}
    }

The points are written with the shortest decimals that read back as the same float32, so the file is lossless.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import io
from ..errors import InputError
from ..keypoints import LAYOUT, NUM_POINTS, PARTS, Keypoints
from ._common import short_floats

FORMAT = "a2k-keypoints"
FORMAT_VERSION = 1
_OWN_KEYS = ("format", "format_version", "fps", "image_size", "layout", "num_points", "num_frames", "parts", "points")


def read_npy(path: Path, *, image_size=None, missing="error") -> Keypoints:
    return io.load_keypoints(path)


def write_npy(path: Path, keypoints: Keypoints) -> None:
    io.save_keypoints(path, keypoints, atomic=False)


read_npz = read_npy
write_npz = write_npy


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def to_dict(keypoints: Keypoints) -> dict:
    """The documented JSON object of ``keypoints`` (see the module docstring)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fps": float(keypoints.fps),
        "image_size": list(keypoints.image_size) if keypoints.image_size else None,
        "layout": keypoints.layout,
        "num_points": NUM_POINTS,
        "num_frames": len(keypoints),
        "parts": {name: [r.start, r.stop] for name, r in PARTS.items()},
        "points": short_floats(keypoints.points).tolist(),
        "meta": dict(keypoints.meta),
    }


def write_json(path: Path, keypoints: Keypoints) -> None:
    try:
        text = json.dumps(to_dict(keypoints), default=_jsonable)
    except TypeError as exc:
        raise InputError(f"cannot write {path}: the keypoints' meta holds a value JSON cannot store ({exc})") from None
    Path(path).write_text(text, encoding="utf-8")


def from_dict(data: dict, source: str = "JSON keypoints") -> Keypoints:
    """Keypoints from the documented JSON object, or from the older form (``points`` beside ``fps``, ``image_size``,
    ``layout`` and the meta keys at the top level)."""
    if not isinstance(data, dict) or "points" not in data:
        raise InputError(f"{source} is not an a2k keypoint file: it has no 'points' list")
    version = data.get("format_version", 1)
    if data.get("format", FORMAT) != FORMAT or not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(
            f"{source} has format {data.get('format')!r} version {version!r}; this a2k-toolkit reads "
            f"{FORMAT!r} up to version {FORMAT_VERSION}"
        )
    try:
        points = np.asarray(data["points"], np.float32)
    except (TypeError, ValueError):
        raise InputError(f"{source}: 'points' is not a list of frames of (x, y) points") from None
    if data.get("num_frames") is not None and data["num_frames"] != len(points):
        raise InputError(f"{source} says num_frames {data['num_frames']} but holds {len(points)} frames")
    meta = dict(data["meta"]) if isinstance(data.get("meta"), dict) else {}
    meta.update({k: v for k, v in data.items() if k not in _OWN_KEYS and k != "meta"})  # the older form
    size = data.get("image_size")
    return Keypoints(
        points,
        fps=float(data.get("fps") or 25.0),
        image_size=tuple(size) if size else None,
        layout=data.get("layout", LAYOUT),
        meta=meta,
    )


def read_json(path: Path, *, image_size=None, missing="error") -> Keypoints:
    path = Path(path)
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read keypoint file {path}: {exc}") from None
    return from_dict(data, str(path))
