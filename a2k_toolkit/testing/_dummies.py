"""Tiny dummy components (one of each kind), a plugin registering them, a pipeline of them and test audio."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from ..components import (
    AudioFrontend,
    AudioFrontendParams,
    KeypointDetector,
    KeypointEncoder,
    KeypointGenerator,
    Params,
    Renderer,
    SpeechSynthesizer,
)
from ..errors import A2KError
from ..hookspecs import hookimpl
from ..keypoints import NUM_POINTS, Keypoints


def mean_face(height: int = 256, width: int = 256) -> np.ndarray:
    """A plausible frontal 68-point face ``(68, 2)`` centred in an image of the given size (for tests)."""
    t = np.linspace(0, np.pi, 17)
    jaw = np.stack([0.5 - 0.42 * np.cos(t), 0.42 + 0.45 * np.sin(t)], 1)
    brow_r = np.stack([np.linspace(0.2, 0.42, 5), 0.33 - 0.04 * np.sin(np.linspace(0, np.pi, 5))], 1)
    brow_l = brow_r * [-1, 1] + [1, 0]
    nose_bridge = np.stack([np.full(4, 0.5), np.linspace(0.40, 0.58, 4)], 1)
    nose_base = np.stack([np.linspace(0.44, 0.56, 5), 0.62 + 0.02 * np.sin(np.linspace(0, np.pi, 5))], 1)
    a = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    eye_r = np.stack([0.33 - 0.07 * np.cos(a), 0.42 - 0.025 * np.sin(a)], 1)
    eye_l = eye_r * [-1, 1] + [1, 0]
    b = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    outer = np.stack([0.5 - 0.15 * np.cos(b), 0.76 - 0.05 * np.sin(b)], 1)
    c = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    inner = np.stack([0.5 - 0.1 * np.cos(c), 0.76 - 0.015 * np.sin(c)], 1)
    pts = np.concatenate([jaw, brow_r, brow_l, nose_bridge, nose_base, eye_r, eye_l, outer, inner])
    assert pts.shape == (NUM_POINTS, 2)
    scale = min(height, width) * 0.6
    return (pts - 0.5) * scale + [width / 2, height / 2]


class DummyFrontend(AudioFrontend):
    """Frame energy and zero-crossing rate per video frame (tiny, for tests)."""

    name = "dummy-audio"
    Params = AudioFrontendParams

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return (2,)

    def __call__(self, waveform, sample_rate):
        wav = np.asarray(waveform, np.float32)
        T = self.num_frames(len(wav), sample_rate)
        hop = sample_rate / self.fps
        out = np.zeros((T, 2), np.float32)
        for t in range(T):
            seg = wav[int(t * hop) : int((t + 1) * hop)]
            if len(seg):
                out[t, 0] = np.sqrt(np.mean(seg**2))
                out[t, 1] = np.mean(np.abs(np.diff(np.sign(seg)))) / 2 if len(seg) > 1 else 0
        return out


class DummySpeech(SpeechSynthesizer):
    """A tone whose length follows the text (for tests)."""

    name = "dummy-speech"

    def synthesize(self, text, lang=None):
        sr = 16000
        n = int(sr * 0.06 * max(1, len(text)))
        t = np.arange(n) / sr
        return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr


class DummyDetector(KeypointDetector):
    """The mean face placed in the centre of any image (for tests)."""

    name = "dummy-detector"

    def detect_all(self, image):
        return [mean_face(*image.shape[:2]).astype(np.float32)]


class DummyEncoder(KeypointEncoder):
    """A linear projection of the keypoints (for tests)."""

    name = "dummy-encoder"

    class Params(Params):
        dim: int = Field(8, ge=1)

    @property
    def out_dim(self) -> int:
        return self.params.dim

    def build(self, in_dim: int = 136):
        import torch

        return torch.nn.Linear(in_dim, self.params.dim)


class DummyGenerator(KeypointGenerator):
    """Opens the mouth with the first feature channel (for tests)."""

    name = "dummy-generator"

    def generate(self, features, reference, *, seed=None):
        feats = np.asarray(features, np.float32)
        ref = reference.points[0]
        pts = np.repeat(ref[None], len(feats), 0).copy()
        level = feats[:, 0] / (np.abs(feats[:, 0]).max() + 1e-8)
        pts[:, 57, 1] += 5 * level
        pts[0] = ref
        return Keypoints(pts, image_size=reference.image_size)


class DummyRenderer(Renderer):
    """Keypoints as white dots on black (for tests)."""

    name = "dummy-renderer"

    def frames(self, keypoints, reference_image):
        if len(keypoints) == 0:
            raise A2KError("cannot render a zero-length keypoint sequence")
        h, w = reference_image.shape[:2]
        for pts in keypoints.points:
            frame = np.zeros((h, w, 3), np.uint8)
            xy = np.round(pts).astype(int)
            ok = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
            frame[xy[ok, 1], xy[ok, 0]] = 255
            yield frame


class DummyPlugin:
    """A plugin object registering every dummy component, for ``make_plugin_manager(plugins=[DummyPlugin()])``."""

    @hookimpl
    def register_audio_frontends(self, register):
        register(DummyFrontend)

    @hookimpl
    def register_speech_synthesizers(self, register):
        register(DummySpeech)

    @hookimpl
    def register_keypoint_detectors(self, register):
        register(DummyDetector)

    @hookimpl
    def register_keypoint_encoders(self, register):
        register(DummyEncoder)

    @hookimpl
    def register_generators(self, register):
        register(DummyGenerator)

    @hookimpl
    def register_renderers(self, register):
        register(DummyRenderer)


def dummy_pipeline(**overrides: Any):
    """A :class:`~a2k_toolkit.Pipeline` of dummy components (plus ``overrides``: live components by slot)."""
    from ..pipeline import Pipeline

    parts = {
        "audio": DummyFrontend(),
        "detector": DummyDetector(),
        "generator": DummyGenerator(),
        "renderer": DummyRenderer(),
        "speech": DummySpeech(),
    }
    parts.update(overrides)
    return Pipeline(**parts, device="cpu")


def test_waveform(seconds: float = 1.0, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Speech-like test audio: a gated harmonic tone with noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    gate = (np.sin(2 * np.pi * 3 * t) > 0).astype(np.float32)
    wav = 0.3 * gate * (np.sin(2 * np.pi * 140 * t) + 0.5 * np.sin(2 * np.pi * 280 * t)) + 0.01 * rng.standard_normal(
        len(t)
    )
    return wav.astype(np.float32)


test_waveform.__test__ = False  # not a pytest test
