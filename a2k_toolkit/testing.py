"""Test helpers for plugin authors: tiny dummy components and per-kind contract test mixins.

Use a mixin in your plugin's tests by subclassing it and naming your class::

    from a2k_toolkit.testing import RendererContract

    class TestMyRenderer(RendererContract):
        component_class = MyRenderer
        params = {"size": 128}          # optional

pytest then runs the same checks on your component as on the built-ins: shape and dtype, ``Params`` rejects
unknown keys, same seed gives the same output, bad input is refused with an :class:`~a2k_toolkit.errors.A2KError`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from .components import (
    AudioFrontend,
    AudioFrontendParams,
    Component,
    KeypointDetector,
    KeypointEncoder,
    KeypointGenerator,
    Params,
    Renderer,
    SpeechSynthesizer,
)
from .errors import A2KError
from .hookspecs import hookimpl
from .keypoints import NUM_POINTS, Keypoints

# ------------------------------------------------------------------------------------------------ dummy components


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
    from .pipeline import Pipeline

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


# ------------------------------------------------------------------------------------------------ contract mixins


class ComponentContract:
    """Checks every component must pass. Subclasses set ``component_class`` (and optionally ``params``)."""

    component_class: ClassVar[type[Component]]
    params: ClassVar[dict[str, Any]] = {}

    def make(self, **extra: Any) -> Component:
        return self.component_class({**self.params, **extra})

    def test_has_name_and_kind(self):
        cls = self.component_class
        assert isinstance(cls.name, str) and cls.name.strip(), "components need a non-empty `name`"
        assert cls.kind in {"audio", "speech", "detector", "encoder", "generator", "renderer"}

    def test_params_is_pydantic_and_rejects_unknown_keys(self):
        assert issubclass(self.component_class.Params, BaseModel)
        try:
            self.component_class.Params.model_validate({**self.params, "definitely_not_a_param": 1})
        except ValidationError:
            return
        raise AssertionError(f"{self.component_class.__name__}.Params accepts unknown keys; use extra='forbid'")

    def test_params_round_trip(self):
        comp = self.make()
        dumped = comp.params.model_dump(mode="json")
        assert self.component_class(dumped).params == comp.params

    def test_registered_through_a_hook(self):
        """The class can be registered in a catalog through its kind's hook."""
        from .catalog import Catalog
        from .components import KIND_HOOKS
        from .plugins import make_plugin_manager

        cls = self.component_class

        class _Plugin:
            pass

        def impl(register):
            register(cls)

        setattr(_Plugin, KIND_HOOKS[cls.kind], staticmethod(hookimpl(impl)))
        catalog = Catalog(make_plugin_manager(builtins=False, entry_points=False, plugins=[_Plugin()]))
        assert catalog.get(cls.kind, cls.name) is cls


class AudioFrontendContract(ComponentContract):
    def test_features_shape_and_alignment(self):
        fe = self.make()
        sr = fe.sample_rate
        for seconds in (1 / fe.fps, 1.0, 2.37):
            feats = np.asarray(fe(test_waveform(seconds, sr), sr))
            expected_T = fe.num_frames(int(round(seconds * sr)), sr)
            assert feats.shape == (expected_T, fe.feature_dim), (seconds, feats.shape)
            assert feats.dtype == np.float32 and np.isfinite(feats).all()

    def test_deterministic(self):
        fe = self.make()
        wav = test_waveform(0.5, fe.sample_rate)
        np.testing.assert_array_equal(fe(wav, fe.sample_rate), fe(wav, fe.sample_rate))


class DetectorContract(ComponentContract):
    #: path of an image with one clear face; plugin tests set it
    face_image: ClassVar[Any] = None

    def _image(self):
        from .io import load_image

        if self.face_image is None:
            import pytest

            pytest.skip("set `face_image` to run detector contract checks on a real face")
        return load_image(self.face_image)

    def test_detects_68_points_inside_image(self):
        img = self._image()
        kp = self.make().detect(img)
        assert kp.points.shape == (1, 68, 2) and kp.points.dtype == np.float32
        h, w = img.shape[:2]
        assert (kp.points[0, :, 0] > -0.1 * w).all() and (kp.points[0, :, 0] < 1.1 * w).all()
        assert kp.image_size == (h, w)

    def test_no_face_raises(self):
        from .errors import NoFaceFoundError

        blank = np.full((200, 200, 3), 127, np.uint8)
        det = self.make()
        try:
            det.detect(blank)
        except NoFaceFoundError as exc:
            assert "no face" in str(exc).lower()
            return
        raise AssertionError("detect() on a blank image must raise NoFaceFoundError")


class EncoderContract(ComponentContract):
    def test_module_maps_sequences(self):
        import torch

        enc = self.make()
        module = enc.build(136)
        out = module(torch.randn(2, 5, 136))
        assert tuple(out.shape) == (2, 5, enc.out_dim)


class GeneratorContract(ComponentContract):
    feature_dim: ClassVar[int] = 320

    def _inputs(self, T: int = 30):
        rng = np.random.default_rng(0)
        feats = rng.standard_normal((T, self.feature_dim)).astype(np.float32)
        ref = Keypoints(mean_face(256, 256)[None], image_size=(256, 256))
        return feats, ref

    def test_output_length_and_first_frame(self):
        gen = self.make()
        for T in (1, 30):
            feats, ref = self._inputs(T)
            out = gen.generate(feats, ref, seed=0)
            assert out.points.shape == (T, 68, 2) and out.points.dtype == np.float32
            np.testing.assert_allclose(out.points[0], ref.points[0], atol=1e-3)

    def test_same_seed_same_output(self):
        gen = self.make()
        feats, ref = self._inputs()
        np.testing.assert_array_equal(gen.generate(feats, ref, seed=3).points, gen.generate(feats, ref, seed=3).points)

    def test_rejects_empty_features(self):
        gen = self.make()
        _, ref = self._inputs()
        try:
            gen.generate(np.zeros((0, self.feature_dim), np.float32), ref)
        except A2KError:
            return
        raise AssertionError("generate() with zero frames must raise an A2KError")


class RendererContract(ComponentContract):
    def _inputs(self, T: int = 4):
        img = np.full((128, 160, 3), 90, np.uint8)
        pts = np.repeat(mean_face(128, 160)[None], T, 0).astype(np.float32)
        pts[1:, 57, 1] += 4
        return Keypoints(pts, image_size=(128, 160)), img

    def test_frames_are_uint8_rgb_one_per_keypoint_frame(self):
        kp, img = self._inputs()
        frames = self.make().render(kp, img)
        assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[0] == len(kp) and frames.shape[3] == 3

    def test_frames_streams(self):
        kp, img = self._inputs()
        it = self.make().frames(kp, img)
        first = next(iter(it))
        assert first.dtype == np.uint8 and first.ndim == 3

    def test_zero_length_refused(self):
        kp, img = self._inputs()
        try:
            list(self.make().frames(kp[0:0], img))
        except A2KError:
            return
        raise AssertionError("rendering a zero-length sequence must raise an A2KError")


class SpeechContract(ComponentContract):
    text: ClassVar[str] = "hello world"

    def test_synthesizes_mono_float_audio(self):
        wav, sr = self.make().synthesize(self.text)
        wav = np.asarray(wav)
        assert wav.ndim == 1 and len(wav) > sr * 0.1 and np.isfinite(wav).all() and np.abs(wav).max() > 0.01


# ---------------------------------------------------------------------------------------- streaming contract mixins


def push_in_pieces(stream, data: np.ndarray, sizes: tuple[int, ...]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Push ``data`` (samples or feature rows) through a feature or keypoint ``stream`` in pieces of ``sizes``
    (cycled), then flush. Returns the concatenated output and, after each push, ``(items pushed, items returned)``."""
    outs, counts, i, k, returned = [], [], 0, 0, 0
    while i < len(data):
        n = max(1, int(sizes[k % len(sizes)]))
        outs.append(stream.push(data[i : i + n]))
        i, k, returned = i + n, k + 1, returned + len(outs[-1])
        counts.append((min(i, len(data)), returned))
    outs.append(stream.flush())
    return np.concatenate(outs), counts


class StreamingFrontendContract(AudioFrontendContract):
    """Checks for a front-end that streams (``stream()``, docs/plugins.md "Streaming"): the streamed rows equal
    ``frontend(waveform)`` whatever the chunk sizes, a row comes once its audio (plus ``delay_samples``) is in and
    not before, flush completes the ``ceil(duration * fps)`` rows."""

    stream_chunks: ClassVar[tuple[tuple[int, ...], ...]] = ((1,), (160,), (4000,), (7, 333, 1001))
    stream_seconds: ClassVar[float] = 1.37
    stream_atol: ClassVar[float] = 1e-4

    def test_stream_equals_offline_features(self):
        fe = self.make()
        sr = fe.sample_rate
        wav = test_waveform(self.stream_seconds, sr)
        offline = np.asarray(fe(wav, sr), np.float32)
        for sizes in self.stream_chunks:
            rows, counts = push_in_pieces(fe.stream(), wav, sizes)
            assert rows.shape == offline.shape, (sizes, rows.shape, offline.shape)
            np.testing.assert_allclose(rows, offline, atol=self.stream_atol, err_msg=f"chunks of {sizes} samples")
            hop = sr / fe.fps
            delay = fe.stream().delay_samples
            for pushed, returned in counts:
                assert returned <= pushed / hop + 1e-9, f"a row came before its frame's audio ({pushed}, {returned})"
                due = int((pushed - delay) // hop) if pushed >= delay else 0
                assert returned >= min(due, len(offline)), f"rows late: {returned} after {pushed} samples"

    def test_stream_without_audio_has_no_rows(self):
        stream = self.make().stream()
        assert stream.flush().shape[0] == 0

    def test_stream_refuses_audio_after_flush(self):
        fe = self.make()
        stream = fe.stream()
        stream.push(test_waveform(0.1, fe.sample_rate))
        stream.flush()
        try:
            stream.push(test_waveform(0.1, fe.sample_rate))
        except A2KError:
            return
        raise AssertionError("push() after flush() must raise an A2KError")


class StreamingGeneratorContract(GeneratorContract):
    """Checks for a generator that streams (``stream()``, docs/plugins.md "Streaming"), on top of
    :class:`GeneratorContract`'s: one frame per feature row once flushed (the offline length), frame 0 the reference,
    each frame returned no later than the stream's declared lookahead allows, the same output whatever the chunk
    sizes, no seams (the largest frame-to-frame move at most ``seam_factor`` times offline's), and at the lookaheads
    in ``exact_lookaheads`` the output of ``generate``. Override ``_inputs(T)`` to give features that look like your
    front-end's (the default is random rows)."""

    stream_lookaheads: ClassVar[tuple[int | None, ...]] = (0, 3, None)
    exact_lookaheads: ClassVar[tuple[int | None, ...]] = (None,)
    stream_frames: ClassVar[int] = 70
    stream_chunks: ClassVar[tuple[int, ...]] = (13, 2, 29)
    stream_options: ClassVar[dict[str, Any]] = {}
    stream_atol: ClassVar[float] = 1e-3  # pixels
    seam_factor: ClassVar[float] = 2.0

    def _open(self, gen, ref, lookahead):
        from .streaming import keypoint_stream

        return keypoint_stream(gen, ref, lookahead=lookahead, seed=0, **self.stream_options)

    def test_stream_contract(self):
        gen = self.make()
        feats, ref = self._inputs(self.stream_frames)
        offline = gen.generate(feats, ref, seed=0).points
        jump = np.abs(np.diff(offline, axis=0)).max()
        for lookahead in self.stream_lookaheads:
            stream = self._open(gen, ref, lookahead)
            declared = stream.lookahead
            if lookahead is not None:
                assert declared is not None and declared <= lookahead, (lookahead, declared)
            rows, counts = push_in_pieces(stream, feats, (1,))
            for pushed, returned in counts:
                assert returned <= pushed
                if declared is not None:
                    assert returned >= pushed - declared, f"lookahead {lookahead}: {returned} frames after {pushed}"
            assert rows.shape == offline.shape and rows.dtype == np.float32, (lookahead, rows.shape)
            np.testing.assert_allclose(rows[0], ref.points[0], atol=1e-3)
            chunked, _ = push_in_pieces(self._open(gen, ref, lookahead), feats, self.stream_chunks)
            np.testing.assert_allclose(chunked, rows, atol=self.stream_atol, err_msg=f"lookahead {lookahead}")
            assert np.abs(np.diff(rows, axis=0)).max() <= self.seam_factor * jump + self.stream_atol, lookahead
            try:
                stream.push(feats[:1])
            except A2KError:
                pass
            else:
                raise AssertionError("push() after flush() must raise an A2KError")

    def test_stream_lengths(self):
        gen = self.make()
        for T in (1, 5):
            feats, ref = self._inputs(T)
            for lookahead in self.stream_lookaheads:
                rows, _ = push_in_pieces(self._open(gen, ref, lookahead), feats, (2,))
                assert rows.shape == (T, 68, 2), (T, lookahead, rows.shape)
        _, ref = self._inputs(1)
        assert self._open(gen, ref, self.stream_lookaheads[0]).flush().shape == (0, 68, 2)

    def test_stream_equals_generate_at_exact_lookahead(self):
        gen = self.make()
        feats, ref = self._inputs(self.stream_frames)
        offline = gen.generate(feats, ref, seed=0).points
        for lookahead in self.exact_lookaheads:
            rows, _ = push_in_pieces(self._open(gen, ref, lookahead), feats, self.stream_chunks)
            np.testing.assert_allclose(rows, offline, atol=self.stream_atol, err_msg=f"lookahead {lookahead}")
