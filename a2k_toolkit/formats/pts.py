"""iBUG ``.pts`` landmark files (300-W, 300-VW; what dlib's 68-point predictor was trained on)::

    version: 1
    n_points:  68
    {
    x y
    ...
    }

One file is one face (one frame); a folder of ``.pts`` files (300-VW's ``annot/000001.pts, ...``) is a sequence in
natural name order. The coordinates are **1-based** (the top-left pixel is 1, 1; the convention of the 300-W
annotations, which menpo follows): reading subtracts 1, writing adds it. Only 68-point files are read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..keypoints import NUM_POINTS, Keypoints
from ._common import files_in, number, short_floats, xy_only

PATTERN = "*.pts"


def to_text(points: np.ndarray) -> str:
    pts = short_floats(np.asarray(points)[:, :2], offset=1.0)
    rows = "\n".join(f"{number(x)} {number(y)}" for x, y in pts)
    return f"version: 1\nn_points:  {len(pts)}\n{{\n{rows}\n}}\n"


def from_text(text: str, source: str) -> np.ndarray:
    """``(68, 2)`` 0-based points of one ``.pts`` text."""
    lines = [ln.strip() for ln in text.lstrip("\ufeff").splitlines() if ln.strip()]
    header: dict[str, str] = {}
    try:
        start = lines.index("{")
        end = lines.index("}", start)
    except ValueError:
        raise InputError(f"{source} is not a .pts file: no '{{' ... '}}' block of points") from None
    for ln in lines[:start]:
        key, sep, value = ln.partition(":")
        if not sep:
            raise InputError(f"{source} is not a .pts file: header line {ln!r} is not 'key: value'")
        header[key.strip()] = value.strip()
    body = lines[start + 1 : end]
    try:
        n = int(header["n_points"])
    except (KeyError, ValueError):
        raise InputError(f"{source} is not a .pts file: no 'n_points: N' line") from None
    if n != NUM_POINTS:
        raise InputError(
            f"{source} has {n} points; only the 68-point iBUG layout is read (another layout needs a mapping to it)"
        )
    if len(body) != n:
        raise InputError(f"{source} says n_points {n} but lists {len(body)} points")
    try:
        pts = np.array([[float(v) for v in ln.split()] for ln in body], np.float64)
    except ValueError:
        raise InputError(f"{source}: a point line is not two numbers") from None
    if pts.shape != (NUM_POINTS, 2):
        raise InputError(f"{source}: every point line must hold two numbers, x and y")
    return (pts - 1.0).astype(np.float32)  # float64 arithmetic, as short_floats(offset=1) assumes


def _load(path: Path) -> np.ndarray:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read .pts file {path}: {exc}") from None
    return from_text(text, str(path))


def read(path: Path, *, image_size=None, missing="error") -> Keypoints:
    path = Path(path)
    if path.is_dir():
        files = files_in(path, PATTERN)
        if not files:
            raise InputError(f"{path} holds no .pts files")
        points = np.stack([_load(f) for f in files])
    else:
        points = _load(path)[None]
    return Keypoints(points, meta={"source_format": "pts"})


def file_name(index: int) -> str:
    return f"{index + 1:06d}.pts"


def owns(name: str) -> bool:
    return name.endswith(".pts")


def write(path: Path, keypoints: Keypoints) -> None:
    """One ``.pts`` file (``path`` ending in ``.pts``, one frame) or a folder ``000001.pts, ...``."""
    path = Path(path)
    pts = xy_only(keypoints, ".pts")
    if path.suffix.lower() == ".pts" and not path.is_dir():
        if len(pts) != 1:
            raise InputError(
                f"a .pts file holds one face, the keypoints have {len(pts)} frames; write a folder (a path ending "
                "in '/') for a sequence"
            )
        path.write_text(to_text(pts[0]), encoding="utf-8")
        return
    path.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(pts):
        (path / file_name(i)).write_text(to_text(frame), encoding="utf-8")
