"""Hook specifications: how plugins register components.

Each hook takes one argument, ``register``, a callback; a plugin calls it once per component class it provides::

    from a2k_toolkit import hookimpl

    @hookimpl
    def register_renderers(register):
        register(MyRenderer)

The host checks every call: the class must derive from the kind's base class, carry a non-empty ``name``, and not
clash with a name another plugin registered for the same kind.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "a2k_toolkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_audio_frontends(register):
    """Register :class:`~a2k_toolkit.components.AudioFrontend` subclasses (waveform -> per-frame features)."""


@hookspec
def register_speech_synthesizers(register):
    """Register :class:`~a2k_toolkit.components.SpeechSynthesizer` subclasses (text -> waveform)."""


@hookspec
def register_keypoint_detectors(register):
    """Register :class:`~a2k_toolkit.components.KeypointDetector` subclasses (image -> 68 keypoints)."""


@hookspec
def register_keypoint_encoders(register):
    """Register :class:`~a2k_toolkit.components.KeypointEncoder` subclasses (keypoints -> latent code)."""


@hookspec
def register_generators(register):
    """Register :class:`~a2k_toolkit.components.KeypointGenerator` subclasses (features + reference -> keypoints)."""


@hookspec
def register_renderers(register):
    """Register :class:`~a2k_toolkit.components.Renderer` subclasses (keypoints + reference image -> frames)."""


@hookspec
def register_keypoint_formats(register):
    """Register keypoint file formats (docs/plugins.md, "Keypoint formats"): call ``register(name, *, read=None,
    write=None, extensions=(), folder=False, description="", lossy="", detect=None, owns=None)`` once per format.
    ``read(path, *, image_size, missing) -> Keypoints`` and ``write(path, keypoints)`` as the toolkit's own formats
    (:mod:`a2k_toolkit.formats`); ``detect(path) -> bool`` tells its files from another format's of the same extension
    by their content. The host adds them to its format table (``a2k convert``, pose sources, ``Result.save``)."""
