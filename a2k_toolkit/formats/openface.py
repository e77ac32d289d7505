"""CSV in the style of OpenFace 2.0's ``FeatureExtraction`` output: one row per frame.

Written columns, separated by ``", "`` as OpenFace separates them::

    frame, face_id, timestamp, confidence, success, x_0, ..., x_67, y_0, ..., y_67

``frame`` counts from 1 and ``timestamp`` is in seconds (``(frame - 1) / fps``, 3 decimals), as in OpenFace;
``x_i, y_i`` are pixels of the image. Reading takes ``","`` or ``", "`` separators and any other columns (OpenFace's
own files have hundreds: gaze, pose, ``X_i`` 3D points, action units), picking ``x_0..x_67`` and ``y_0..y_67`` by
name. Rows with ``success`` 0, and frame numbers a sequence skips, are frames without a face: refused, or with
``missing="hold"`` filled with the previous frame's face. The frame rate comes from the timestamps; with several
``face_id`` values the face that is largest on average is taken (with a warning).
"""

from __future__ import annotations

import csv
import io as _io
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..keypoints import NUM_POINTS, Keypoints
from ._common import fill_missing, frame_confidence, number, short_floats, source_meta, xy_only

SEPARATOR = ", "
LEADING = ("frame", "face_id", "timestamp", "confidence", "success")
X_COLUMNS = tuple(f"x_{i}" for i in range(NUM_POINTS))
Y_COLUMNS = tuple(f"y_{i}" for i in range(NUM_POINTS))
HEADER = (*LEADING, *X_COLUMNS, *Y_COLUMNS)
COMMON_FPS = (25.0, 30.0, 24.0, 50.0, 60.0, 15.0, 29.97, 23.976, 59.94, 48.0, 100.0, 120.0)


def to_text(keypoints: Keypoints) -> str:
    pts = short_floats(xy_only(keypoints, "OpenFace CSV"))
    conf = frame_confidence(keypoints)
    lines = [SEPARATOR.join(HEADER)]
    for i, frame in enumerate(pts):
        row = [str(i + 1), "0", f"{i / keypoints.fps:.3f}", number(round(conf[i], 3)), "1" if conf[i] > 0 else "0"]
        row += [number(v) for v in frame[:, 0]] + [number(v) for v in frame[:, 1]]
        lines.append(SEPARATOR.join(row))
    return "\n".join(lines) + "\n"


def write(path: Path, keypoints: Keypoints) -> None:
    Path(path).write_text(to_text(keypoints), encoding="utf-8")


def fps_from_timestamps(times, frames=None) -> float | None:
    """The frame rate of timestamps in seconds, written to 1 ms, of frames numbered ``frames`` (default: one after
    the other): of the rates that give every timestamp, a common one (integer rates first), else the one with the
    fewest decimals; None for fewer than two distinct times."""
    times = np.asarray(times, np.float64)
    frames = np.arange(len(times)) if frames is None else np.asarray(frames, np.float64)
    if len(times) < 2 or times[-1] <= times[0] or frames[-1] <= frames[0]:
        return None
    k, t = frames[1:] - frames[0], times[1:] - times[0]
    tol = 0.0011  # both ends rounded to 1 ms
    lo = float(np.max(k / (t + tol)))
    hi = float(np.min(np.where(t > tol, k / np.maximum(t - tol, 1e-12), np.inf)))
    for common in COMMON_FPS:
        if lo <= common <= hi:
            return common
    estimate = float(k[-1] / t[-1])
    for places in range(4):
        if lo <= round(estimate, places) <= hi:
            return round(estimate, places)
    return round(estimate, 3)


def _float(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{where}: {text!r} is not a number") from None


def from_text(text: str, source: str, *, missing="error") -> Keypoints:
    rows = [
        r for r in csv.reader(_io.StringIO(text.lstrip("\ufeff")), skipinitialspace=True) if any(c.strip() for c in r)
    ]
    if not rows:
        raise InputError(f"{source} is empty; expected a header row with x_0..x_67, y_0..y_67")
    header = [c.strip() for c in rows[0]]
    col = {name: i for i, name in enumerate(header)}
    absent = [c for c in (*X_COLUMNS, *Y_COLUMNS) if c not in col]
    if absent:
        raise InputError(
            f"{source} is not an OpenFace-style landmark CSV: it has no column {absent[0]!r}"
            f"{f' (and {len(absent) - 1} more)' if len(absent) > 1 else ''}; expected x_0..x_67 and y_0..y_67"
        )
    if len(rows) == 1:
        raise InputError(f"{source} has a header but no rows")
    xi = [col[c] for c in X_COLUMNS]
    yi = [col[c] for c in Y_COLUMNS]
    by_face: dict[str, list[tuple[int, float | None, float, bool, np.ndarray]]] = {}
    for n, row in enumerate(rows[1:], start=2):
        where = f"{source} line {n}"
        if len(row) < len(header):
            raise InputError(f"{where} has {len(row)} columns, the header {len(header)}")

        def cell(name, default=None, row=row, where=where):
            return _float(row[col[name]], where) if name in col else default

        frame = cell("frame")
        conf = cell("confidence", 1.0)
        success = cell("success", 1.0)
        xy = np.array([[_float(row[a], where), _float(row[b], where)] for a, b in zip(xi, yi)], np.float64)
        ok = bool(success) and bool(np.isfinite(xy).all())
        face = str(row[col["face_id"]]).strip() if "face_id" in col else "0"
        entry = (None if frame is None else int(frame), cell("timestamp"), float(conf), ok, xy)
        by_face.setdefault(face, []).append(entry)
    if len(by_face) > 1:

        def mean_width(entries):
            widths = [np.ptp(e[4][:, 0]) for e in entries if e[3]]
            return float(np.mean(widths)) if widths else -1.0

        chosen = max(by_face, key=lambda f: mean_width(by_face[f]))
        warnings.warn(
            f"{source} holds {len(by_face)} faces (face_id {', '.join(sorted(by_face))}); face_id {chosen}, the "
            "largest on average, is taken",
            UserWarning,
            stacklevel=3,
        )
        entries = by_face[chosen]
    else:
        entries = next(iter(by_face.values()))

    if all(e[0] is not None for e in entries):
        by_frame = {}
        for e in entries:
            if e[0] in by_frame:
                raise InputError(f"{source} has two rows for frame {e[0]} of one face")
            by_frame[e[0]] = e
        numbers = list(range(min(by_frame), max(by_frame) + 1))
        ordered = [by_frame.get(k) for k in numbers]
    else:
        numbers = list(range(1, len(entries) + 1))
        ordered = list(entries)
    frames = [e[4].astype(np.float32) if e is not None and e[3] else None for e in ordered]
    conf = [e[2] if e is not None else 0.0 for e in ordered]

    def where(i: int) -> str:
        return source if i < 0 else f"{source}: frame {numbers[i]}"

    points, conf = fill_missing(frames, conf, missing, where)
    timed = [(k, e[1]) for k, e in enumerate(ordered) if e is not None and e[1] is not None]
    fps = fps_from_timestamps([t for _, t in timed], [k for k, _ in timed]) if timed else None
    return Keypoints(points, fps=fps or 25.0, meta=source_meta("openface", conf))


def read(path: Path, *, image_size=None, missing="error") -> Keypoints:
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read CSV file {path}: {exc}") from None
    return from_text(text, str(path), missing=missing)
