"""MediaPipe face-mesh landmark files as keypoints: the ``mediapipe`` keypoint format (read only).

The layouts people write from MediaPipe's Python APIs, one sequence per file:

* **JSON** (``.json``): a list of frames. A frame is one face, a list of faces (the largest is taken), or ``null``
  / ``[]`` when no face was found. A face is its 478 landmarks (468 without the iris refinement), each ``[x, y, z]``,
  ``[x, y]`` or ``{"x": ..., "y": ..., "z": ...}``: the legacy solutions' ``results.multi_face_landmarks[i].landmark``
  converted to lists, or ``MessageToDict`` of the proto (``{"landmark": [...]}``), or a flat list ``x0, y0, z0, x1,
  ...``. A frame may also be an object with ``multi_face_landmarks`` (legacy solutions) or ``face_landmarks`` (the
  Tasks API's ``FaceLandmarkerResult``) holding the faces. The whole file may be an object ``{"frames": [...],
  "fps": 30, "image_size": [height, width]}`` (or ``"width"`` and ``"height"``), and a file holding one face is one
  frame.
* **CSV** (``.csv``): a header and one row per frame, with columns ``x0, y0, z0, ..., x477, y477, z477`` (or
  ``x_0, y_0, ...``; the ``z`` columns and any others are ignored). A row whose landmark cells are empty (or ``nan``)
  has no face. ``timestamp_ms`` or ``timestamp`` (seconds) columns give the frame rate.

Coordinates are MediaPipe's normalised ones (``x`` over the image width, ``y`` over its height), which need the
image size (given to the reader, or in the file), or pixels (any coordinate beyond 2), taken as they are. The 68
points are the mesh's through :data:`~a2k_mediapipe.mapping.IBUG68_FROM_MESH`, as the ``mediapipe`` detector maps
them; the depth ``z`` is not read.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from a2k_toolkit.errors import InputError
from a2k_toolkit.keypoints import Keypoints

from .mapping import MESH_POINTS, mesh_to_ibug68

NAME = "mediapipe"
EXTENSIONS = (".json", ".csv")
#: a face stored flat (x0, y0[, z0], x1, ...): its length for 468 or 478 landmarks of 2 or 3 values
FLAT_LENGTHS = {c * v: c for v in (468, 478) for c in (2, 3)}
_FACES_KEYS = ("multi_face_landmarks", "face_landmarks")
_POINTS_KEYS = ("landmark", "landmarks")
_COLUMN = re.compile(r"([xy])_?(\d+)")


# ------------------------------------------------------------------------------------------------------- JSON


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_point(v: Any) -> bool:
    if isinstance(v, dict):
        return "x" in v and "y" in v
    return isinstance(v, list) and 2 <= len(v) <= 3 and all(_is_number(c) for c in v)


def _face(value: Any, where: str) -> np.ndarray:
    """One face -> its landmarks ``(V, 2)`` float64."""
    if isinstance(value, dict):
        key = next((k for k in _POINTS_KEYS if k in value), None)
        if key is None:
            raise InputError(
                f"{where}: a face is a list of landmarks or an object with 'landmark', got keys {list(value)}"
            )
        value = value[key]
    if not isinstance(value, list):
        raise InputError(f"{where}: a face is a list of landmarks, got {type(value).__name__}")
    if value and _is_number(value[0]):  # flat: x0, y0[, z0], x1, ...
        cols = FLAT_LENGTHS.get(len(value))
        if cols is None or not all(_is_number(v) for v in value):
            raise InputError(f"{where}: a flat face holds 2 or 3 numbers for each of 468 or 478 landmarks")
        return np.asarray(value, np.float64).reshape(-1, cols)[:, :2]
    if len(value) < MESH_POINTS or not all(_is_point(p) for p in value):
        raise InputError(
            f"{where}: a face holds {MESH_POINTS} or 478 landmarks, each [x, y, z], [x, y] or {{x, y, z}}; got "
            f"{len(value)} items"
        )
    if isinstance(value[0], dict):
        return np.array([[p["x"], p["y"]] for p in value], np.float64)
    return np.array([p[:2] for p in value], np.float64)


def _faces(frame: Any, where: str) -> list[np.ndarray]:
    """One frame -> its faces (none for ``null`` or ``[]``)."""
    if frame is None or frame == []:
        return []
    if isinstance(frame, dict):
        key = next((k for k in _FACES_KEYS if k in frame), None)
        if key is not None:
            faces = frame[key] or []
            return [_face(f, f"{where}, face {i}") for i, f in enumerate(faces)]
        return [_face(frame, where)]
    if isinstance(frame, list) and (_is_point(frame[0]) or _is_number(frame[0])):
        return [_face(frame, where)]  # one face
    if isinstance(frame, list):
        return [_face(f, f"{where}, face {i}") for i, f in enumerate(frame) if f is not None]
    raise InputError(f"{where}: a frame is a face, a list of faces or null, got {type(frame).__name__}")


def _single_face(data: Any) -> bool:
    if isinstance(data, dict):
        return any(k in data for k in _POINTS_KEYS + _FACES_KEYS)
    return isinstance(data, list) and bool(data) and (_is_point(data[0]) or _is_number(data[0]))


def _json_frames(data: Any, source: str) -> tuple[list, dict]:
    """The file's frames and what it says about them (``fps``, ``image_size``)."""
    info: dict = {}
    if isinstance(data, dict) and "frames" in data:
        if data.get("fps") is not None:
            info["fps"] = data["fps"]
        size = data.get("image_size")
        if size is None and data.get("width") is not None and data.get("height") is not None:
            size = (data["height"], data["width"])
        if size is not None:
            info["image_size"] = size
        data = data["frames"]
    if _single_face(data):
        return [data], info
    if not isinstance(data, list):
        raise InputError(f"{source} is not a MediaPipe landmark file: expected a list of frames")
    return data, info


def _load_json(path: Path) -> tuple[list[list[np.ndarray]], dict]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read MediaPipe landmark file {path}: {exc}") from None
    frames, info = _json_frames(data, str(path))
    return [_faces(f, f"{path}, frame {i}") for i, f in enumerate(frames)], info


# -------------------------------------------------------------------------------------------------------- CSV


def _landmark_columns(header: list[str]) -> tuple[list[int], list[int]]:
    """Column indices of ``x0..x{V-1}`` and ``y0..y{V-1}`` (``x_0`` too)."""
    found: dict[tuple[str, int], int] = {}
    for col, name in enumerate(header):
        m = _COLUMN.fullmatch(name.strip())
        if m:
            found.setdefault((m[1], int(m[2])), col)
    count = 0
    while ("x", count) in found and ("y", count) in found:
        count += 1
    if count < MESH_POINTS:
        raise InputError(f"needs columns x0, y0, ... up to x{MESH_POINTS - 1}, y{MESH_POINTS - 1}, found {count}")
    return [found["x", i] for i in range(count)], [found["y", i] for i in range(count)]


def _fps(times_s: list[float]) -> float | None:
    if len(times_s) < 2 or not times_s[-1] > times_s[0]:
        return None
    return round((len(times_s) - 1) / (times_s[-1] - times_s[0]), 2)


def _load_csv(path: Path) -> tuple[list[list[np.ndarray]], dict]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh, skipinitialspace=True) if r]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read MediaPipe landmark file {path}: {exc}") from None
    if not rows:
        raise InputError(f"{path} is empty")
    header = [h.strip() for h in rows[0]]
    try:
        xs, ys = _landmark_columns(header)
    except InputError as exc:
        raise InputError(f"{path} is not a MediaPipe landmark CSV: it {exc}") from None
    frames, times = [], []
    scale = {"timestamp_ms": 1e-3, "timestamp": 1.0}
    tcol = next(((header.index(k), s) for k, s in scale.items() if k in header), None)
    for n, row in enumerate(rows[1:], start=2):
        cells = [row[c].strip() if c < len(row) else "" for c in xs + ys]
        if all(c in ("", "nan", "NaN") for c in cells):
            frames.append([])
            continue
        try:
            values = np.array([float(c) for c in cells], np.float64)
        except ValueError:
            raise InputError(f"{path}, line {n}: a landmark cell is not a number") from None
        if not np.isfinite(values).all():
            raise InputError(f"{path}, line {n}: some landmarks are missing (empty or nan cells)")
        frames.append([values.reshape(2, -1).T])
        if tcol is not None and tcol[0] < len(row):
            times.append(float(row[tcol[0]]) * tcol[1])
    fps = _fps(times) if len(times) == len(rows) - 1 else None
    return frames, {} if fps is None else {"fps": fps}


# ---------------------------------------------------------------------------------------------------- reading


def _size(value: Any, source: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{source}: image_size is [height, width], got {value!r}") from None
    if h <= 0 or w <= 0:
        raise InputError(f"{source}: image_size must be positive, got {value!r}")
    return h, w


def _largest(faces: list[np.ndarray]) -> np.ndarray:
    return max(faces, key=lambda f: float(np.prod(np.ptp(f, axis=0))))


def _fill(frames: list[list[np.ndarray]], missing: str, source: str) -> tuple[list[np.ndarray], list[float]]:
    """One mesh per frame (the largest face); frames without a face refused, or held (``missing="hold"``)."""
    if missing not in ("error", "hold"):
        raise InputError(f"missing must be one of error, hold, got {missing!r}")
    found = [i for i, f in enumerate(frames) if f]
    if not frames:
        raise InputError(f"{source} holds no frames")
    if not found:
        raise InputError(f"{source} has no face in any of its {len(frames)} frames")
    gaps = [i for i, f in enumerate(frames) if not f]
    if gaps and missing == "error":
        raise InputError(
            f"{source}, frame {gaps[0]} has no face{f' (and {len(gaps) - 1} more)' if len(gaps) > 1 else ''}; "
            "keypoints cannot have gaps: pass missing='hold' (`--missing hold`) to repeat the previous frame's face"
        )
    meshes, conf = [], []
    last = _largest(frames[found[0]])
    for f in frames:
        if f:
            last = _largest(f)
        meshes.append(last)
        conf.append(1.0 if f else 0.0)
    if gaps:
        warnings.warn(
            f"{source}: {len(gaps)} of {len(frames)} frames have no face; each repeats the previous frame's face "
            "(confidence 0)",
            UserWarning,
            stacklevel=3,
        )
    return meshes, conf


def read(path: Path, *, image_size=None, missing: str = "error") -> Keypoints:
    """A MediaPipe landmark file (module docstring) -> 68-point :class:`~a2k_toolkit.keypoints.Keypoints` in
    pixels, one frame per frame of the file (25 fps unless the file says otherwise)."""
    path = Path(path)
    load = _load_csv if path.suffix.lower() == ".csv" else _load_json
    frames, info = load(path)
    meshes, conf = _fill(frames, missing, str(path))
    size = _size(info["image_size"], str(path)) if "image_size" in info else None
    if image_size is not None:
        given = _size(image_size, "image_size")
        if size is not None and size != given:
            raise InputError(f"{path} is for a {size[1]}x{size[0]} image, not {given[1]}x{given[0]}")
        size = given
    normalised = max(float(np.abs(m).max()) for m in meshes) <= 2.0
    if normalised:
        if size is None:
            raise InputError(
                f"{path} holds MediaPipe's normalised coordinates (0-1 of the image's width and height): give the "
                "image size (`a2k convert --image-size WxH` or `--image face.jpg`; image_size=(height, width)), or put "
                'it in the file: {"image_size": [height, width], "frames": [...]}'
            )
        meshes = [m * np.array([size[1], size[0]], np.float64) for m in meshes]
    points = np.stack([mesh_to_ibug68(m.astype(np.float32)) for m in meshes])
    meta: dict = {"source_format": NAME}
    if any(c != 1.0 for c in conf):
        meta["confidence"] = conf
    fps = float(info.get("fps") or 25.0)
    if not fps > 0:
        raise InputError(f"{path}: fps must be positive, got {info.get('fps')!r}")
    return Keypoints(points, fps=fps, image_size=size, meta=meta)


def detect(path: Path) -> bool:
    """Whether ``path`` (a ``.json`` or ``.csv`` file) holds MediaPipe landmarks: a CSV with a column for landmark
    467, a JSON file whose first face has 468 or 478 landmarks. A file that cannot be read is not one."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as fh:
                header = next(csv.reader(fh, skipinitialspace=True), [])
            names = {h.strip() for h in header}
            return f"x{MESH_POINTS - 1}" in names or f"x_{MESH_POINTS - 1}" in names
        frames, _ = _json_frames(json.loads(path.read_text("utf-8")), str(path))
        first = next((f for f in frames if f not in (None, [])), None)
        return first is not None and bool(_faces(first, str(path)))
    except (OSError, UnicodeDecodeError, ValueError, csv.Error):  # InputError and JSONDecodeError are ValueErrors
        return False
