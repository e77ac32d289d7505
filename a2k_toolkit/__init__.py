"""a2k-toolkit: speech + one face image -> 68-point facial keypoints at 25 fps -> renderers.

Public API::

    from a2k_toolkit import Pipeline
    pipe = Pipeline.from_config({"generator": "procedural", "renderer": "sketch"})
    result = pipe(image="face.jpg", audio="speech.wav")
    result.save(keypoints="kp.npy", video="out.mp4")
"""

from __future__ import annotations

from .components import (
    AudioFrontend,
    Component,
    KeypointDetector,
    KeypointEncoder,
    KeypointGenerator,
    Params,
    Renderer,
    SpeechSynthesizer,
)
from .config import ComponentSpec, PipelineConfig, load_config
from .errors import (
    A2KError,
    AudioLoadError,
    CheckpointError,
    ConfigError,
    DuplicateComponentError,
    ImageLoadError,
    InputError,
    MissingDependencyError,
    NoFaceFoundError,
    PluginError,
    UnknownComponentError,
)
from .hookspecs import hookimpl
from .keypoints import Keypoints, Normalizer
from .version import __version__

__all__ = [
    "A2KError",
    "AudioFrontend",
    "AudioLoadError",
    "CheckpointError",
    "Component",
    "ComponentSpec",
    "ConfigError",
    "DuplicateComponentError",
    "ImageLoadError",
    "InputError",
    "KeypointDetector",
    "KeypointEncoder",
    "KeypointGenerator",
    "Keypoints",
    "MissingDependencyError",
    "NoFaceFoundError",
    "Normalizer",
    "Params",
    "Pipeline",
    "PipelineConfig",
    "PluginError",
    "Renderer",
    "SpeechSynthesizer",
    "UnknownComponentError",
    "__version__",
    "hookimpl",
    "load_config",
]


def __getattr__(name: str):
    # Pipeline imports torch lazily through its components; keep `import a2k_toolkit` light.
    if name == "Pipeline":
        from .pipeline import Pipeline

        return Pipeline
    raise AttributeError(name)
