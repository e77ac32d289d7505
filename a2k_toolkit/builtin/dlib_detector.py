"""Keypoint detector ``dlib``: HOG face detector + the 68-point shape predictor, fully offline.

The shape predictor file comes from the ``face-recognition-models`` package, located with
``importlib.util.find_spec`` (importing that package would need ``pkg_resources``).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from pydantic import Field

from ..components import KeypointDetector, Params
from ..errors import MissingDependencyError
from ..hookspecs import hookimpl


@functools.lru_cache(maxsize=1)
def shape_predictor_path() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("face-recognition-models", "dlib", "The dlib keypoint detector")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise MissingDependencyError("face-recognition-models", "dlib", "The dlib keypoint detector")
    return path


@functools.lru_cache(maxsize=1)
def _dlib_models():
    try:
        import dlib
    except ImportError as exc:
        raise MissingDependencyError("dlib-bin", "dlib", "The dlib keypoint detector") from exc
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(shape_predictor_path()))


class DlibDetector(KeypointDetector):
    """68 landmarks with dlib (HOG detector + shape predictor); offline, CPU."""

    name = "dlib"

    class Params(Params):
        upsample: int = Field(1, ge=0, le=3, description="times the image is upsampled to find small faces")
        max_side: int = Field(640, ge=64, description="images larger than this are downscaled for face detection")

    def face_boxes(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Face boxes ``(left, top, right, bottom)`` in pixels, largest first."""
        import cv2

        detector, _ = _dlib_models()
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        scale = min(1.0, self.params.max_side / max(gray.shape))
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        rects = detector(small, self.params.upsample)
        boxes = [(r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale) for r in rects]
        return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))

    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """68 landmarks ``(68, 2)`` inside a face box (also used for tracking from a previous frame's box)."""
        import dlib

        _, predictor = _dlib_models()
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        shape = predictor(np.ascontiguousarray(image), rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)

    def detect_all(self, image: np.ndarray) -> list[np.ndarray]:
        return [self.landmarks(image, box) for box in self.face_boxes(image)]


@hookimpl
def register_keypoint_detectors(register):
    register(DlibDetector)
