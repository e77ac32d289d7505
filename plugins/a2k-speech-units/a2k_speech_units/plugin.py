"""The plugin module a2k-toolkit loads through the ``a2k_toolkit`` entry-point group."""

from __future__ import annotations

from a2k_toolkit import hookimpl

from .phonetic import PhoneticFrontend
from .vad import VADFrontend


@hookimpl
def register_audio_frontends(register):
    register(VADFrontend)
    register(PhoneticFrontend)
