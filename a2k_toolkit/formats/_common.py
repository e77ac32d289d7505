"""What the keypoint formats share: exact short decimals for float32, per-frame confidences, the policy for frames
without a face, natural file order, and which folders a folder output may replace."""

from __future__ import annotations

import fnmatch
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InputError
from ..keypoints import NUM_POINTS, Keypoints

Missing = Literal["error", "hold"]
MISSING_CHOICES = ("error", "hold")


def short_floats(values: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """float64 values ``v``, each the shortest decimal (0-12 places) for which ``float32(v - offset)`` is exactly the
    float32 value given: text formats written from these are lossless for float32 points and stay short (``123.5``,
    not ``123.50000762939453``). ``offset`` serves files that store ``value + offset`` (1-based ``.pts``)."""
    v32 = np.asarray(values, np.float32)
    v64 = v32.astype(np.float64) + offset
    out = v64.copy()
    todo = np.ones(v32.shape, bool)
    for places in range(13):
        if not todo.any():
            break
        r = np.round(v64, places)
        ok = todo & ((r - offset).astype(np.float32) == v32)
        out[ok] = r[ok]
        todo &= ~ok
    return out  # whatever is left keeps its exact float64 value (also lossless)


def number(x: float) -> str:
    """A float as CSV/.pts text: integers without a trailing ``.0``, the rest as Python writes them."""
    f = float(x)
    return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)


def frame_confidence(keypoints: Keypoints) -> np.ndarray:
    """``(T,)`` confidence of each frame: ``meta["confidence"]`` when it holds one number in [0, 1] per frame (a
    reader stores it there), else 1.0 (a detector's or generator's keypoints carry no confidence)."""
    conf = keypoints.meta.get("confidence")
    try:
        arr = np.asarray(conf, np.float64).reshape(-1)
    except (TypeError, ValueError):
        arr = None
    if conf is None or arr is None or arr.shape != (len(keypoints),) or not np.isfinite(arr).all():
        return np.ones(len(keypoints))
    return np.clip(arr, 0.0, 1.0)


def xy_only(keypoints: Keypoints, fmt: str) -> np.ndarray:
    """``(T, 68, 2)`` points for a 2D format, warning once when a third coordinate is dropped."""
    if keypoints.points.shape[-1] == 3:
        warnings.warn(f"{fmt} stores 2D points: the keypoints' z coordinate is not written", UserWarning, stacklevel=3)
    return keypoints.points[..., :2]


def fill_missing(
    frames: Sequence[np.ndarray | None], confidence: Sequence[float], missing: Missing, where: Callable[[int], str]
) -> tuple[np.ndarray, list[float]]:
    """Stack per-frame ``(68, 2)`` points where ``None`` marks a frame without a face.

    ``missing="error"`` refuses such a frame (naming it with ``where(i)``); ``"hold"`` repeats the previous frame's
    face (frames before the first face take the first one) with confidence 0, warning how many were held. A sequence
    with no face at all is always refused. Keypoints hold no NaN, so a gap has to be filled or refused."""
    if missing not in MISSING_CHOICES:
        raise InputError(f"missing must be one of {', '.join(MISSING_CHOICES)}, got {missing!r}")
    found = [i for i, f in enumerate(frames) if f is not None]
    if not frames:
        raise InputError(f"{where(-1)} holds no frames")
    if not found:
        raise InputError(f"{where(-1)} has no face in any of its {len(frames)} frames")
    gaps = [i for i, f in enumerate(frames) if f is None]
    if gaps and missing == "error":
        more = f" (and {len(gaps) - 1} more)" if len(gaps) > 1 else ""
        raise InputError(
            f"{where(gaps[0])} has no face{more}; keypoints cannot have gaps: pass missing='hold' (`--missing hold`) "
            "to repeat the previous frame's face there"
        )
    out = np.empty((len(frames), NUM_POINTS, 2), np.float32)
    conf = [float(c) for c in confidence]
    last = frames[found[0]]
    for i, f in enumerate(frames):
        if f is None:
            out[i], conf[i] = last, 0.0
        else:
            out[i] = last = f
    if gaps:
        warnings.warn(
            f"{where(-1)}: {len(gaps)} of {len(frames)} frames have no face; each repeats the previous frame's face "
            "(confidence 0)",
            UserWarning,
            stacklevel=3,
        )
    return out, conf


def source_meta(fmt: str, confidence: Sequence[float]) -> dict:
    """The meta a reader gives its keypoints: the source format, and the per-frame confidences unless all are 1."""
    meta: dict = {"source_format": fmt}
    if any(c != 1.0 for c in confidence):
        meta["confidence"] = [float(c) for c in confidence]
    return meta


def natural_key(name: str) -> list:
    """Sort key that puts ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def files_in(folder: Path, pattern: str) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and fnmatch.fnmatch(p.name, pattern)), key=_name_key)


def _name_key(p: Path) -> list:
    return natural_key(p.name)


# ------------------------------------------------------------------------------------------- folder outputs


def check_replaceable(target: Path, owns: Callable[[str], bool], what: str) -> None:
    """Refuse a folder output that exists as a file, or as a folder holding anything but files this format writes
    (which a new output replaces): other files are never deleted."""
    if target.exists() and not target.is_dir():
        raise InputError(f"cannot write {what}: {target} is a file, not a folder; choose another path")
    if target.is_dir():
        foreign = sorted(p.name for p in target.iterdir() if not (p.is_file() and owns(p.name)))
        if foreign:
            raise InputError(
                f"cannot write {what}: the folder {target} already holds other files ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}), which it would replace; give a new or empty folder"
            )
