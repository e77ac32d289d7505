"""Test helpers for plugin authors: tiny dummy components and per-kind contract test mixins.

Use a mixin in your plugin's tests by subclassing it and naming your class::

    from a2k_toolkit.testing import RendererContract

    class TestMyRenderer(RendererContract):
        component_class = MyRenderer
        params = {"size": 128}          # optional

pytest then runs the same checks on your component as on the built-ins: shape and dtype, ``Params`` rejects
unknown keys, same seed gives the same output, bad input is refused with an :class:`~a2k_toolkit.errors.A2KError`.

The helpers live in one module per concern, all imported from here (``from a2k_toolkit.testing import ...``):
``_dummies`` (dummy components, :class:`DummyPlugin`, :func:`dummy_pipeline`, :func:`mean_face`,
:func:`test_waveform`), ``_contracts`` (the per-kind contract mixins), ``_streaming`` (the streaming contract mixins,
:func:`push_in_pieces`), ``_serving`` (:func:`serve_process`: a real ``a2k serve`` child process; :func:`free_port`,
:data:`BROWSER_ARGS`) and ``_training`` (:func:`tiny_train_config`: a training config small enough for real
training steps in tests).
"""

from __future__ import annotations

from ._contracts import (
    AudioFrontendContract,
    ComponentContract,
    DetectorContract,
    EncoderContract,
    GeneratorContract,
    RendererContract,
    SpeechContract,
)
from ._dummies import (
    DummyDetector,
    DummyEncoder,
    DummyFrontend,
    DummyGenerator,
    DummyPlugin,
    DummyRenderer,
    DummySpeech,
    dummy_pipeline,
    mean_face,
    test_waveform,
)
from ._serving import BROWSER_ARGS, FAKE_MIC_ARGS, free_port, serve_process
from ._streaming import StreamingFrontendContract, StreamingGeneratorContract, push_in_pieces
from ._training import tiny_train_config

__all__ = [
    "BROWSER_ARGS",
    "FAKE_MIC_ARGS",
    "AudioFrontendContract",
    "ComponentContract",
    "DetectorContract",
    "DummyDetector",
    "DummyEncoder",
    "DummyFrontend",
    "DummyGenerator",
    "DummyPlugin",
    "DummyRenderer",
    "DummySpeech",
    "EncoderContract",
    "GeneratorContract",
    "RendererContract",
    "SpeechContract",
    "StreamingFrontendContract",
    "StreamingGeneratorContract",
    "dummy_pipeline",
    "free_port",
    "mean_face",
    "push_in_pieces",
    "serve_process",
    "test_waveform",
    "tiny_train_config",
]
