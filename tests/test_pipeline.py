"""Pipeline: from_config vs explicit constructor, config round-trip, stage-by-stage use, results and saving."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from a2k_toolkit import Params, Pipeline, PipelineConfig, Renderer, hookimpl
from a2k_toolkit.catalog import Catalog
from a2k_toolkit.errors import ConfigError, InputError
from a2k_toolkit.io import load_keypoints, probe_video
from a2k_toolkit.plugins import make_plugin_manager
from a2k_toolkit.rendering import RGBImage, is_rgb_image, reference_image_rgb
from a2k_toolkit.testing import DummyPlugin, dummy_pipeline, test_waveform


def test_from_config_builds_named_components(catalog):
    pipe = Pipeline.from_config(
        {"generator": "static", "renderer": {"name": "sketch", "params": {"size": 64}}}, plugins=catalog
    )
    assert pipe.generator.name == "static" and pipe.renderer.params.size == 64 and pipe.device == "cpu"


def test_config_round_trips(catalog, tmp_path):
    cfg = {
        "generator": {"name": "procedural", "params": {"mouth_open": 0.5}},
        "renderer": {"name": "sketch", "params": {"size": 128, "background": "white"}},
        "seed": 5,
    }
    pipe = Pipeline.from_config(cfg, plugins=catalog)
    again = Pipeline.from_config(pipe.config, plugins=catalog)
    assert again.config == pipe.config
    assert pipe.config.generator.params["mouth_open"] == 0.5 and pipe.config.seed == 5
    # and through a file
    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(pipe.config.model_dump(mode="json")))
    assert Pipeline.from_config(path, plugins=catalog).config == pipe.config


def test_explicit_constructor_equals_from_config():
    pm = make_plugin_manager(entry_points=False, plugins=[DummyPlugin()])
    cfg = {
        "audio": "dummy-audio",
        "detector": "dummy-detector",
        "generator": "dummy-generator",
        "renderer": "dummy-renderer",
        "speech": "dummy-speech",
        "device": "cpu",
    }
    a = Pipeline.from_config(cfg, plugins=pm)
    b = dummy_pipeline()
    assert a.config == b.config
    img = np.zeros((64, 80, 3), np.uint8)
    wav = test_waveform(1.0)
    ra, rb = a(image=img, audio=(wav, 16000)), b(image=img, audio=wav, sample_rate=16000)
    np.testing.assert_array_equal(ra.keypoints.points, rb.keypoints.points)
    assert ra.frames.shape == (25, 64, 80, 3)


def test_all_slots_validated_before_anything_is_built(catalog):
    with pytest.raises(ConfigError, match=r"renderer\.params\.size"):
        Pipeline.from_config(
            {"generator": "static", "renderer": {"name": "sketch", "params": {"size": -1}}}, plugins=catalog
        )


def test_stage_by_stage_matches_call():
    pipe = dummy_pipeline()
    img = np.zeros((64, 64, 3), np.uint8)
    wav = test_waveform(0.5)
    feats = pipe.features(pipe.load_audio(wav, 16000))
    ref = pipe.detect(img)
    kp = pipe.generate(feats, ref)
    frames = list(pipe.render(kp, img))
    res = pipe(image=img, audio=wav, sample_rate=16000)
    np.testing.assert_array_equal(kp.points, res.keypoints.points)
    assert len(frames) == len(kp) == 13  # ceil(0.5 * 25)


def test_text_input_uses_speech_synthesizer():
    pipe = dummy_pipeline()
    res = pipe(image=np.zeros((64, 64, 3), np.uint8), text="hello there")
    assert len(res.keypoints) == int(np.ceil(0.06 * 11 * 25))


def test_exactly_one_speech_input():
    pipe = dummy_pipeline()
    with pytest.raises(InputError, match="exactly one"):
        pipe(image=np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="exactly one"):
        pipe(image=np.zeros((64, 64, 3), np.uint8), audio=test_waveform(), text="x")


def test_no_renderer_means_no_frames(catalog):
    pipe = Pipeline.from_config({"renderer": None, "detector": "dlib", "generator": "static"}, plugins=catalog)
    assert pipe.config.renderer is None
    res = pipe(
        image=np.zeros((64, 64, 3), np.uint8),
        audio=test_waveform(0.2),
        sample_rate=16000,
        reference=dummy_pipeline().detect(np.zeros((64, 64, 3), np.uint8)),
    )
    with pytest.raises(InputError, match="no renderer"):
        res.frames


def test_real_face_real_speech_saves_keypoints_and_video(catalog, face_image_path, speech_path, tmp_path):
    pipe = Pipeline.from_config({"renderer": {"name": "sketch", "params": {"size": 128}}}, plugins=catalog)
    res = pipe(image=face_image_path, audio=speech_path)
    dur = len(res.waveform) / res.sample_rate
    assert len(res.keypoints) == int(np.ceil(dur * 25))
    np.testing.assert_allclose(res.keypoints.points[0], pipe.detect(face_image_path).points[0])
    res.save(keypoints=tmp_path / "kp.npz", video=tmp_path / "out.mp4")
    kp = load_keypoints(tmp_path / "kp.npz")
    assert kp.image_size == res.image.shape[:2] and kp.fps == 25
    info = probe_video(tmp_path / "out.mp4")
    assert info["frames"] == len(res.keypoints) and info["audio_codec"] == "aac" and info["video_codec"] == "h264"


def test_pipeline_config_type():
    assert isinstance(dummy_pipeline().config, PipelineConfig)
    assert isinstance(Catalog(make_plugin_manager(entry_points=False)).names("generator"), list)


# ------------------------------------------------------------------------------ each conversion once


class SeenImages(Renderer):
    """Records the reference image each call gets (to see it is passed on, not converted again)."""

    name = "seen-images"
    seen: ClassVar[list] = []

    class Params(Params):
        size: int | None = None

    def frames(self, keypoints, reference_image):
        SeenImages.seen.append(reference_image)
        for _ in range(len(keypoints)):
            yield np.zeros((16, 16, 3), np.uint8)


class SeenImagesPlugin:
    @staticmethod
    @hookimpl
    def register_renderers(register):
        register(SeenImages)


@pytest.fixture
def host():
    return Catalog(make_plugin_manager(entry_points=False, plugins=[SeenImagesPlugin()]))


def test_the_image_is_converted_once_and_trusted(host, sample_image_path, sample_speech_path):
    cfg = {
        "generator": "static",
        "renderer": {"name": "side-by-side", "params": {"panels": ["reference", "seen-images"], "labels": False}},
        "device": "cpu",
    }
    pipe = Pipeline.from_config(cfg, plugins=host)
    result = pipe(sample_image_path, sample_speech_path)
    assert is_rgb_image(result.image) and reference_image_rgb(result.image) is result.image
    SeenImages.seen.clear()
    next(iter(result.iter_frames()))
    assert SeenImages.seen == [result.image] and SeenImages.seen[0] is result.image  # passed on, not converted
    gray = np.full((20, 30), 7, np.uint8)
    converted = RGBImage.of(gray)
    assert converted.shape == (20, 30, 3) and RGBImage.of(converted) is converted
    assert not is_rgb_image(converted[..., ::-1]) and not is_rgb_image(converted.astype(np.float32))


def test_the_mp4_gets_the_users_own_audio(host, tmp_path, sample_image_path, sample_speech_path):
    import soundfile as sf

    from a2k_toolkit.audio import probe_audio, resample

    wav, sr = sf.read(str(sample_speech_path), dtype="float32")
    stereo = np.stack([resample(wav[: 2 * sr], sr, 44100)] * 2, axis=1) * 0.5
    sf.write(str(tmp_path / "speech-44k.wav"), stereo, 44100)
    pipe = Pipeline.from_config(
        {"generator": "static", "renderer": {"name": "sketch", "params": {"size": 64}}}, plugins=host
    )
    result = pipe(sample_image_path, tmp_path / "speech-44k.wav")
    assert result.audio_file == tmp_path / "speech-44k.wav" and result.sample_rate == 16000
    result.save(video=tmp_path / "out.mp4")
    muxed = probe_audio(tmp_path / "out.mp4")
    assert (muxed.codec, muxed.sample_rate, muxed.layout) == ("aac", 44100, "stereo")  # not a 16 kHz mono copy
    from_array = pipe(sample_image_path, (stereo, 44100))
    assert from_array.audio_file is None  # an array: its resampled waveform is muxed
    from_array.save(video=tmp_path / "array.mp4")
    assert probe_audio(tmp_path / "array.mp4").sample_rate == 16000


def test_the_pipeline_does_not_reach_up_into_dubbing():
    """The pipeline layer is below dubbing: batch dubbing takes a pipeline (``dub_batch(..., pipeline=pipe)``), the
    pipeline has no dubbing method and imports nothing of it, not even inside a function."""
    import ast
    import inspect

    from a2k_toolkit import pipeline

    tree = ast.parse(inspect.getsource(pipeline))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert imported and not [m for m in imported if "dubbing" in m]
    assert not hasattr(Pipeline, "dub_batch")
