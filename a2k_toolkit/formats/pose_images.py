"""OpenPose-style face pose images: the conditioning images ControlNet-openpose and DWPose pipelines take.

The drawing follows their face convention: a black canvas of the source image's size, each face point a filled white
circle of radius 3 pixels (no anti-aliasing, no lines), centred on the point's pixel coordinates truncated to
integers; a point at x <= 0 or y <= 0 (their marker of a point not found) is not drawn. By default the 70 points of
the OpenPose face are drawn (the 68 and the two pupils, estimated as the eye centres, as ControlNet's openpose face
annotator draws them); ``pupils=False`` draws the 68 of DWPose's face.

Written as a folder of PNG files, one per frame (``<name>_<frame:012d>_rendered.png``, OpenPose's name for rendered
frames), or as an H.264 MP4 (lossy: compression blurs the dots and subsamples their colour).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import io
from ..errors import InputError
from ..keypoints import Keypoints
from .openpose import with_pupils

RADIUS = 3
COLOR = (255, 255, 255)


def draw_face_pose(canvas: np.ndarray, points: np.ndarray, *, radius: int = RADIUS, pupils: bool = True) -> np.ndarray:
    """Draw one face's points (``(68, 2)`` pixels) on ``canvas`` (``(H, W, 3)`` uint8, modified in place) in the
    OpenPose/DWPose face convention; returns ``canvas``."""
    import cv2

    pts = with_pupils(points) if pupils else np.asarray(points, np.float64)[:, :2]
    for x, y in pts:
        cx, cy = int(x), int(y)  # truncated, as the annotators draw int(x * W)
        if cx > 0 and cy > 0:
            cv2.circle(canvas, (cx, cy), radius, COLOR, thickness=-1)
    return canvas


def frames(keypoints: Keypoints, *, radius: int = RADIUS, pupils: bool = True):
    """The pose images of every frame, ``(H, W, 3)`` uint8 each, at ``keypoints.image_size``."""
    if keypoints.image_size is None:
        raise InputError(
            "pose images are drawn at the source image's size, which the keypoints do not carry; give "
            "--image-size WxH or --image face.jpg"
        )
    if not (isinstance(radius, int) and 1 <= radius <= 64):
        raise InputError(f"the dot radius must be a whole number of pixels from 1 to 64, got {radius!r}")
    h, w = keypoints.image_size
    for pts in keypoints.points:
        yield draw_face_pose(np.zeros((h, w, 3), np.uint8), pts, radius=radius, pupils=pupils)


def file_name(stem: str, index: int) -> str:
    return f"{stem}_{index:012d}_rendered.png"


def owns(name: str) -> bool:
    return name.endswith("_rendered.png")


def write(
    path: Path, keypoints: Keypoints, *, stem: str | None = None, radius: int = RADIUS, pupils: bool = True
) -> None:
    """A PNG folder (``path`` a folder) or an MP4 (``path`` ending in ``.mp4``) of the pose images."""
    import cv2

    path = Path(path)
    images = frames(keypoints, radius=radius, pupils=pupils)
    if path.suffix.lower() == ".mp4" and not path.is_dir():
        io.write_video(path, images, keypoints.fps, num_frames=len(keypoints), atomic=False)
        return
    path.mkdir(parents=True, exist_ok=True)
    stem = stem or path.name
    for i, image in enumerate(images):
        ok, buf = cv2.imencode(".png", image)  # white on black: the same in RGB and BGR
        if not ok:
            raise InputError(f"cannot encode frame {i} as PNG")
        (path / file_name(stem, i)).write_bytes(buf.tobytes())
