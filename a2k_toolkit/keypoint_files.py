"""Keypoint files: ``.npy`` (the plain float32 array), ``.npz`` and ``.json`` (array + fps, image size, layout and
the sequence's other metadata). One writer, :func:`save_keypoints`, and one reader, :func:`load_keypoints`."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import PathLike, atomic_path
from .keypoints import LAYOUT, Keypoints

KEYPOINT_EXTENSIONS = (".npy", ".npz", ".json")


def save_keypoints(path: PathLike, keypoints: Keypoints, *, atomic: bool = True) -> None:
    """Write keypoints as ``.npy`` (plain float32 array), ``.npz`` or ``.json`` (array + fps, image size, layout).

    ``atomic=False`` writes straight to ``path`` (for a caller that renames it, see
    :func:`~a2k_toolkit.files.atomic_paths`)."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in KEYPOINT_EXTENSIONS:
        raise InputError(f"unsupported keypoint file extension {ext!r}; use .npy, .npz or .json")
    meta = {"fps": keypoints.fps, "image_size": keypoints.image_size, "layout": keypoints.layout, **keypoints.meta}
    with atomic_path(path) if atomic else contextlib.nullcontext(path) as tmp:
        if ext == ".npy":
            np.save(tmp, keypoints.points)
        elif ext == ".npz":
            np.savez_compressed(tmp, points=keypoints.points, meta=json.dumps(meta))
        else:
            text = json.dumps({**meta, "points": np.round(keypoints.points, 3).tolist()})
            with open(tmp, "wb") as f:
                f.write(text.encode("utf-8"))


def load_keypoints(path: PathLike, *, fps: float = 25.0) -> Keypoints:
    """Read a keypoint file written by :func:`save_keypoints` (``.npy`` files carry no metadata: ``fps`` applies)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"keypoint file not found: {path}")
    ext = path.suffix.lower()
    try:
        if ext == ".npy":
            return Keypoints(np.load(path, allow_pickle=False), fps=fps)
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"])) if "meta" in z else {}
                points = z["points"]
        elif ext == ".json":
            meta = json.loads(path.read_text("utf-8"))
            points = np.asarray(meta.pop("points"), np.float32)
        else:
            raise InputError(f"unsupported keypoint file extension {ext!r}; use .npy, .npz or .json")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read keypoint file {path}: {exc}") from None
    known = {k: meta.pop(k) for k in ("fps", "image_size", "layout") if k in meta}
    return Keypoints(
        points,
        fps=float(known.get("fps") or fps),
        image_size=tuple(known["image_size"]) if known.get("image_size") else None,
        layout=known.get("layout", LAYOUT),
        meta=meta,
    )
