"""The plugin module a2k-toolkit loads through the ``a2k_toolkit`` entry-point group: the ``mediapipe`` detector and
the ``mediapipe`` keypoint format (MediaPipe landmark files, read only)."""

from __future__ import annotations

from a2k_toolkit import hookimpl

from . import landmark_files
from .detector import MediapipeDetector


@hookimpl
def register_keypoint_detectors(register):
    register(MediapipeDetector)


@hookimpl
def register_keypoint_formats(register):
    register(
        landmark_files.NAME,
        read=landmark_files.read,
        extensions=landmark_files.EXTENSIONS,
        detect=landmark_files.detect,
        description="MediaPipe face-mesh landmarks (478 per face, JSON or CSV) mapped to the 68 points (a2k-mediapipe)",
        lossy="read only; the 68 of the mesh's 478 points (IBUG68_FROM_MESH); z is not read",
    )
