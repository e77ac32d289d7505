"""The plugin module a2k-toolkit loads through the ``a2k_toolkit`` entry-point group."""

from __future__ import annotations

from a2k_toolkit import hookimpl

from .detector import MediapipeDetector


@hookimpl
def register_keypoint_detectors(register):
    register(MediapipeDetector)
