"""OpenPose face keypoints JSON: one file per frame, as OpenPose's ``--write_json`` writes them (format 1.3).

Each file holds ``{"version": 1.3, "people": [{"face_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...], ...}]}`` with
70 face points: the 68 iBUG points in their order, then the right pupil (68) and the left pupil (69). The toolkit has
no pupil detector, so it writes each pupil as the **centre of that eye's six points** (36-41, 42-47). Coordinates
are pixels of the image (OpenPose's default); ``normalized=True`` writes them divided by the image width and height
with ``canvas_width`` / ``canvas_height`` beside ``people``, as ControlNet's annotators (controlnet_aux, DWPose)
store them. ``c`` is the frame's confidence (1.0 for generated keypoints).

Reading takes folders of ``*_keypoints.json`` (frame order from ``<name>_<frame>_keypoints.json``, else natural name
order) or one such file; also a single ``.json`` holding a list of such frames. Pupils are dropped; 68-point faces
(DWPose) are read too; normalised coordinates are detected (all within [0, 1]) and scaled by the canvas size or the
given image size. Of several people the **largest face** is taken (a warning says in how many frames); a frame
without a face is refused, or with ``missing="hold"`` filled with the previous frame's face.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..keypoints import LEFT_EYE_CENTRE, NUM_POINTS, RIGHT_EYE_CENTRE, Keypoints
from ._common import files_in, fill_missing, frame_confidence, short_floats, source_meta, xy_only

VERSION = 1.3
NUM_FACE_POINTS = 70
PATTERN = "*_keypoints.json"
_NUMBERED = re.compile(r"^(.*)_(\d+)_keypoints\.json$")
_PEOPLE_KEYS = (
    "pose_keypoints_2d",
    "face_keypoints_2d",
    "hand_left_keypoints_2d",
    "hand_right_keypoints_2d",
    "pose_keypoints_3d",
    "face_keypoints_3d",
    "hand_left_keypoints_3d",
    "hand_right_keypoints_3d",
)


def pupils(points: np.ndarray) -> np.ndarray:
    """The two pupil points OpenPose adds (68: right, 69: left) estimated as the eye centres: ``(..., 68, 2)`` ->
    ``(..., 2, 2)``, the mean of points 36-41 and of 42-47."""
    pts = np.asarray(points, np.float64)[..., :2]
    return np.stack([pts[..., RIGHT_EYE_CENTRE, :].mean(-2), pts[..., LEFT_EYE_CENTRE, :].mean(-2)], axis=-2)


def with_pupils(points: np.ndarray) -> np.ndarray:
    """``(..., 68, 2)`` -> ``(..., 70, 2)``: the 68 points and the two estimated pupils."""
    pts = np.asarray(points, np.float64)[..., :2]
    return np.concatenate([pts, pupils(pts)], axis=-2)


def frame_dict(points: np.ndarray, confidence: float, canvas: tuple[int, int] | None = None) -> dict:
    """One frame's OpenPose JSON object for one face ``(68, 2)``; ``canvas`` ``(height, width)`` writes normalised
    coordinates and the canvas size (ControlNet annotators' form)."""
    p70 = with_pupils(points).astype(np.float32)
    if canvas is not None:
        p70 = p70 / np.array([canvas[1], canvas[0]], np.float32)
    flat = np.concatenate([p70, np.full((NUM_FACE_POINTS, 1), confidence, np.float32)], axis=1).reshape(-1)
    person = {"person_id": [-1], **{k: [] for k in _PEOPLE_KEYS}}
    person["face_keypoints_2d"] = short_floats(flat).tolist()
    out = {"version": VERSION, "people": [person]}
    if canvas is not None:
        out.update(canvas_height=int(canvas[0]), canvas_width=int(canvas[1]))
    return out


def file_name(stem: str, index: int) -> str:
    return f"{stem}_{index:012d}_keypoints.json"


def owns(name: str) -> bool:
    return name.endswith("_keypoints.json")


def write(path: Path, keypoints: Keypoints, *, stem: str | None = None, normalized: bool = False) -> None:
    """A folder of per-frame files (``path`` a folder) or, for one frame, one ``.json`` file."""
    path = Path(path)
    pts = xy_only(keypoints, "OpenPose JSON")
    conf = frame_confidence(keypoints)
    canvas = None
    if normalized:
        if keypoints.image_size is None:
            raise InputError(
                "normalised OpenPose coordinates need the image size; give --image-size WxH or --image face.jpg"
            )
        canvas = keypoints.image_size
    if path.suffix.lower() == ".json" and not path.is_dir():
        if len(pts) != 1:
            raise InputError(
                f"an OpenPose .json file holds one frame, the keypoints have {len(pts)}; write a folder (a path "
                "ending in '/') for a sequence"
            )
        path.write_text(json.dumps(frame_dict(pts[0], conf[0], canvas)), encoding="utf-8")
        return
    path.mkdir(parents=True, exist_ok=True)
    stem = stem or path.name
    for i, (frame, c) in enumerate(zip(pts, conf)):
        (path / file_name(stem, i)).write_text(json.dumps(frame_dict(frame, c, canvas)), encoding="utf-8")


def is_openpose(data) -> bool:
    """Whether parsed JSON is an OpenPose frame (a dict with ``people``) or a list of them."""
    if isinstance(data, dict):
        return "people" in data
    return isinstance(data, list) and bool(data) and all(isinstance(d, dict) and "people" in d for d in data)


def _face(person, source: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(points (68, 2), confidence (68,))`` of one person's face, or None when it has none (an empty list, or
    points OpenPose marks as not found: x = y = c = 0)."""
    flat = person.get("face_keypoints_2d") if isinstance(person, dict) else None
    if not flat:
        return None
    try:
        arr = np.asarray(flat, np.float64).reshape(-1, 3)
    except (TypeError, ValueError):
        raise InputError(f"{source}: face_keypoints_2d is not a list of x, y, c numbers") from None
    if len(arr) not in (NUM_POINTS, NUM_FACE_POINTS) or len(flat) % 3:
        raise InputError(
            f"{source}: face_keypoints_2d has {len(flat)} numbers; expected 70 (OpenPose) or 68 (DWPose) points "
            "of x, y, c"
        )
    if not np.isfinite(arr).all():
        raise InputError(f"{source}: face_keypoints_2d holds NaN or infinite values")
    arr = arr[:NUM_POINTS]
    if (arr == 0).all(axis=1).any():  # a point OpenPose did not find: the face is incomplete
        return None
    return arr[:, :2], arr[:, 2]


def _frame(data, source: str, image_size, several: list[int], index: int):
    """``(points, confidence)`` of the largest face of one frame object, or ``(None, 0)``."""
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
        raise InputError(f"{source} is not an OpenPose keypoint file: it has no 'people' list")
    faces = [f for f in (_face(p, source) for p in data["people"]) if f is not None]
    if not faces:
        return None, 0.0
    if len(faces) > 1:
        several.append(index)
    pts, conf = max(faces, key=lambda f: float(np.ptp(f[0][:, 0]) * np.ptp(f[0][:, 1])))
    if pts.max() <= 1.0 + 1e-6 and pts.min() >= -1e-6:  # normalised coordinates (ControlNet annotators' JSON)
        canvas = None
        if "canvas_width" in data and "canvas_height" in data:
            canvas = (float(data["canvas_height"]), float(data["canvas_width"]))
        elif image_size is not None:
            canvas = (float(image_size[0]), float(image_size[1]))
        if canvas is None:
            raise InputError(
                f"{source} has normalised coordinates (all within 0-1) and no canvas size; give the image size "
                "(--image-size WxH or --image face.jpg)"
            )
        pts = pts * np.array([canvas[1], canvas[0]])
    return pts.astype(np.float32), float(conf.mean())


def _canvas(data) -> tuple[int, int] | None:
    if isinstance(data, dict) and "canvas_width" in data and "canvas_height" in data:
        try:
            return int(data["canvas_height"]), int(data["canvas_width"])
        except (TypeError, ValueError):
            return None
    return None


def _load(path: Path):
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read OpenPose file {path}: {exc}") from None


def frame_files(folder: Path) -> list[Path | None]:
    """The frame files of a folder in frame order; ``None`` where a numbered sequence skips a frame number."""
    files = files_in(folder, PATTERN)
    if not files:
        raise InputError(f"{folder} holds no OpenPose files (*_keypoints.json)")
    numbered = [_NUMBERED.match(f.name) for f in files]
    if not all(numbered):
        return files  # OpenPose run on images: <image>_keypoints.json, in natural name order
    stems = sorted({m[1] for m in numbered})
    if len(stems) > 1:
        raise InputError(
            f"{folder} holds the frames of {len(stems)} sequences ({', '.join(stems[:3])}); keep one sequence per "
            "folder"
        )
    by_number = {int(m[2]): f for m, f in zip(numbered, files)}
    lo, hi = min(by_number), max(by_number)
    return [by_number.get(n) for n in range(lo, hi + 1)]


def read(path: Path, *, image_size=None, missing="error") -> Keypoints:
    path = Path(path)
    several: list[int] = []
    if path.is_dir():
        files = frame_files(path)
        objects = [None if f is None else _load(f) for f in files]
        names = [str(f) if f is not None else None for f in files]
    else:
        data = _load(path)
        objects = data if isinstance(data, list) else [data]
        names = [str(path) if len(objects) == 1 else f"{path} frame {i}" for i in range(len(objects))]
    frames, conf = [], []
    for i, (obj, name) in enumerate(zip(objects, names)):
        if obj is None:
            frames.append(None)
            conf.append(0.0)
            continue
        pts, c = _frame(obj, name, image_size, several, i)
        frames.append(pts)
        conf.append(c)

    def where(i: int) -> str:
        if i < 0:
            return str(path)
        return names[i] or f"{path}: frame {i} (its file is missing from the numbered sequence)"

    points, conf = fill_missing(frames, conf, missing, where)
    if several:
        warnings.warn(
            f"{path}: {len(several)} of {len(frames)} frames show several faces (first: frame {several[0]}); the "
            "largest face of each frame is taken",
            UserWarning,
            stacklevel=2,
        )
    sizes = {c for c in (_canvas(o) for o in objects if o is not None) if c is not None}
    size = sizes.pop() if len(sizes) == 1 else None
    return Keypoints(points, image_size=size, meta=source_meta("openpose", conf))


def sniff_folder(folder: Path) -> bool:
    return any(owns(p.name) for p in folder.iterdir() if p.is_file())
