"""The module the ``a2k_toolkit`` entry point names: registers the ``face-translator`` renderer (imports no torch)."""

from __future__ import annotations

from a2k_toolkit import hookimpl

from .renderer import FaceTranslatorRenderer


@hookimpl
def register_renderers(register):
    register(FaceTranslatorRenderer)
