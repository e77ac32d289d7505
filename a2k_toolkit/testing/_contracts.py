"""Per-kind contract test mixins: the checks every component of a kind must pass (see the package docstring)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ValidationError

from ..components import Component
from ..errors import A2KError
from ..hookspecs import hookimpl
from ..keypoints import Keypoints
from ._dummies import mean_face, test_waveform


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
        from ..catalog import Catalog
        from ..components import KIND_HOOKS
        from ..plugins import make_plugin_manager

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
        from ..io import load_image

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
        from ..errors import NoFaceFoundError

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
