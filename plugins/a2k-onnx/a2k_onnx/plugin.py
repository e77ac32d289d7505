"""The plugin module a2k-toolkit loads through the ``a2k_toolkit`` entry-point group."""

from __future__ import annotations

from a2k_toolkit import hookimpl

from .generator import OnnxAudio2KeypointGenerator


@hookimpl
def register_generators(register):
    register(OnnxAudio2KeypointGenerator)
