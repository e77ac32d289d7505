"""a2k-mediapipe: MediaPipe's face mesh as an a2k-toolkit keypoint detector (``mediapipe``), its 478 points mapped to
the iBUG 68-point layout, and MediaPipe landmark files as a keypoint format (``mediapipe``, read only:
:mod:`.landmark_files`). Importing this package does not import mediapipe: the graphs load on first use."""

from __future__ import annotations

__version__ = "0.1.0"

from .detector import MediapipeDependencyError, MediapipeDetector, MediapipeParams
from .mapping import IBUG68_FROM_MESH, mesh_to_ibug68

__all__ = [
    "IBUG68_FROM_MESH",
    "MediapipeDependencyError",
    "MediapipeDetector",
    "MediapipeParams",
    "__version__",
    "mesh_to_ibug68",
]
