"""The ``audio2keypoint`` generator plugin: any-length windowed inference, batching, determinism, the pipeline, and
clear errors for missing, corrupt or mismatched checkpoints."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from a2k_toolkit.builtin.audio2keypoint import Audio2KeypointGenerator
from a2k_toolkit.builtin.logmel import LogMel
from a2k_toolkit.errors import CheckpointError, ConfigError, InputError
from a2k_toolkit.keypoints import Keypoints, mouth_opening, reference_iod
from a2k_toolkit.models.inference import window_plan, window_weights

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def reference(real_clips) -> Keypoints:
    clip = real_clips[0]
    return Keypoints(clip.keypoints[:1], image_size=clip.frame_size)


@pytest.fixture(scope="module")
def speech(speech_path):
    from a2k_toolkit.io import load_audio

    return load_audio(speech_path, 16000)


def test_is_registered_with_checkpoint_and_width_params(catalog):
    cls = catalog.get("generator", "audio2keypoint")
    assert cls is Audio2KeypointGenerator
    fields = cls.Params.model_fields
    assert {"checkpoint", "width", "depth", "overlap", "batch_size"} <= set(fields)


def test_no_checkpoint_and_no_shipped_default_says_how_to_train(monkeypatch, tmp_path):
    from a2k_toolkit.models import checkpoint

    monkeypatch.setattr(checkpoint, "DEFAULT_WEIGHTS_DIR", tmp_path / "weights")
    with pytest.raises(CheckpointError, match="a2k train"):
        Audio2KeypointGenerator()


def test_shipped_default_weights_are_picked_up(monkeypatch, tmp_path, tiny_a2k_checkpoint):
    from a2k_toolkit.models import checkpoint

    shipped = tmp_path / "weights"
    shutil.copytree(tiny_a2k_checkpoint, shipped)
    monkeypatch.setattr(checkpoint, "DEFAULT_WEIGHTS_DIR", shipped)
    assert Audio2KeypointGenerator().info.path == shipped


@pytest.mark.parametrize("seconds", [1 / 25, 1.0])
def test_length_and_first_frame_from_real_speech(tiny_a2k_checkpoint, reference, speech, seconds):
    gen = Audio2KeypointGenerator(checkpoint=str(tiny_a2k_checkpoint))
    fe = LogMel()
    gen.check_frontend(fe)
    wav = speech[: int(round(seconds * 16000))]
    feats = fe(wav, 16000)
    out = gen.generate(feats, reference)
    assert len(out) == math.ceil(round(seconds * 25, 6)) == len(feats)
    assert out.points.shape == (len(feats), 68, 2) and out.points.dtype == np.float32
    np.testing.assert_array_equal(out.points[0], reference.points[0])
    assert out.image_size == reference.image_size and out.fps == 25.0
    assert np.isfinite(out.points).all()


def test_ten_minutes_with_memory_bounded_by_the_window(tiny_a2k_checkpoint, reference, speech):
    """15000 frames (features given directly: real speech features tiled to 10 min); the network only ever sees
    batches of at most batch_size windows of the training length."""
    gen = Audio2KeypointGenerator(checkpoint=str(tiny_a2k_checkpoint), batch_size=16)
    feats = LogMel()(speech, 16000)
    T = 10 * 60 * 25
    long = np.tile(feats, (T // len(feats) + 1, 1))[:T]
    seen = []
    handle = gen.net.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    try:
        out = gen.generate(long, reference)
    finally:
        handle.remove()
    assert len(out) == T
    np.testing.assert_array_equal(out.points[0], reference.points[0])
    W = gen.info.window
    assert max(s[0] for s in seen) <= 16 and {s[1] for s in seen} == {W}
    assert sum(s[0] for s in seen) == len(window_plan(T, W, gen.params.overlap))


def test_windows_are_blended_continuously():
    starts = window_plan(100, 32, 8)
    assert starts[0] == 0 and starts[-1] == 100 - 32 and all(b - a <= 24 for a, b in zip(starts, starts[1:]))
    assert window_plan(5, 32, 8) == [0]
    # piecewise-constant windows: the cross-fade turns each jump into a ramp over the overlap
    from a2k_toolkit.models.inference import WindowedRunner

    class Constant(torch.nn.Module):
        uses_reference = False

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, ref=None):
            return x[:, :, :1].expand(-1, -1, 136) + 0 * self.p

    T = 100
    feats = np.zeros((T, 1), np.float32)
    runner = WindowedRunner(Constant(), window=32, overlap=8, batch_size=3)
    # give each window a different constant by making the features encode the window start
    runner._window = lambda f, s: np.full((32, 1), float(starts.index(s)), np.float32)
    out = runner.run([(feats, None)])[0][:, 0]
    steps = np.abs(np.diff(out))
    assert steps.max() < 0.25  # a unit jump between windows spread over the 8 shared frames
    assert out[0] == 0 and out[-1] == len(starts) - 1
    w = window_weights(32, 8, True, True)
    assert w.min() > 0 and w[8:-8].min() == 1.0


def test_deterministic_batched_and_inference_mode(tiny_a2k_checkpoint, reference, real_clips, speech):
    gen = Audio2KeypointGenerator(checkpoint=str(tiny_a2k_checkpoint)).to("cpu")
    fe = LogMel()
    f1 = fe(speech[: 16000 * 3], 16000)
    f2 = fe(real_clips[1].audio, 16000)
    ref2 = Keypoints(real_clips[1].keypoints[:1], image_size=real_clips[1].frame_size)
    a = gen.generate(f1, reference, seed=1)
    b = gen.generate(f1, reference, seed=1)
    np.testing.assert_array_equal(a.points, b.points)
    with torch.inference_mode():
        batch = gen.generate_batch([(f1, reference), (f2, ref2)])
    np.testing.assert_allclose(batch[0].points, a.points, atol=1e-4)
    np.testing.assert_allclose(batch[1].points, gen.generate(f2, ref2).points, atol=1e-4)
    np.testing.assert_array_equal(batch[1].points[0], ref2.points[0])
    with pytest.raises(InputError, match="features must have shape"):
        gen.generate(f1[:, :100], reference)


def test_pipeline_end_to_end(tiny_a2k_checkpoint, sample_image_path, speech_path, pm):
    from a2k_toolkit.pipeline import Pipeline

    pipe = Pipeline.from_config(
        {
            "generator": {"name": "audio2keypoint", "params": {"checkpoint": str(tiny_a2k_checkpoint)}},
            "renderer": None,
            "device": "cpu",
        },
        plugins=pm,
    )
    result = pipe(image=sample_image_path, audio=speech_path)
    n = math.ceil(round(len(result.waveform) / 16000 * 25, 6))
    assert len(result.keypoints) == n
    assert pipe.config.generator.params["checkpoint"] == str(tiny_a2k_checkpoint)


def test_frontend_mismatch_is_a_config_error(tiny_a2k_checkpoint):
    gen = Audio2KeypointGenerator(checkpoint=str(tiny_a2k_checkpoint))
    with pytest.raises(ConfigError, match=r"feature_shape \(4, 40\).*a2k train"):
        gen.check_frontend(LogMel(n_mels=40))
    with pytest.raises(ConfigError, match="fps 30"):
        gen.check_frontend(LogMel(fps=30))
    with pytest.warns(UserWarning, match="fmin"):
        gen.check_frontend(LogMel(fmin=20.0))


def test_corrupt_and_mismatched_checkpoints_are_clear_errors(tiny_a2k_checkpoint, tmp_path, reference):
    def copy(name):
        return shutil.copytree(tiny_a2k_checkpoint, tmp_path / name)

    with pytest.raises(CheckpointError, match="not found"):
        Audio2KeypointGenerator(checkpoint=str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        Audio2KeypointGenerator(checkpoint=str(tmp_path))
    with pytest.raises(CheckpointError, match="trained with width=16"):
        Audio2KeypointGenerator(checkpoint=str(tiny_a2k_checkpoint), width=64)

    flipped = copy("flipped")
    data = bytearray((flipped / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (flipped / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        Audio2KeypointGenerator(checkpoint=str(flipped)).generate(np.zeros((5, 320), np.float32), reference)

    truncated = copy("truncated")
    (truncated / "model.safetensors").write_bytes((truncated / "model.safetensors").read_bytes()[:100])
    cfg = json.loads((truncated / "config.json").read_text())
    cfg["files"] = {}  # no checksum recorded: the safetensors reader must still catch it
    (truncated / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        _ = Audio2KeypointGenerator(checkpoint=str(truncated)).net

    garbled = copy("garbled")
    (garbled / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        Audio2KeypointGenerator(checkpoint=str(garbled))

    edited = copy("edited")
    cfg = json.loads((edited / "config.json").read_text())
    cfg["model"]["width"] = 24
    cfg["files"] = {}
    (edited / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match the architecture"):
        _ = Audio2KeypointGenerator(checkpoint=str(edited)).net

    missing = copy("missing")
    cfg = json.loads((missing / "config.json").read_text())
    del cfg["normalizer"]
    (missing / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="incomplete or malformed"):
        Audio2KeypointGenerator(checkpoint=str(missing))


def test_inference_does_not_import_training(tiny_a2k_checkpoint):
    code = (
        "import sys, numpy as np\n"
        "from a2k_toolkit.builtin.audio2keypoint import Audio2KeypointGenerator\n"
        "from a2k_toolkit.keypoints import Keypoints\n"
        f"g = Audio2KeypointGenerator(checkpoint={str(tiny_a2k_checkpoint)!r})\n"
        "ref = Keypoints(np.random.default_rng(0).uniform(50, 150, (1, 68, 2)), image_size=(224, 224))\n"
        "out = g.generate(np.zeros((40, 320), np.float32), ref)\n"
        "assert len(out) == 40\n"
        "bad = [m for m in sys.modules if m.startswith('a2k_toolkit.training')]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_silence_gate_closes_the_mouth_in_silence_only(sample_image_path, sample_speech_path):
    """With ``silence_gate_db`` the mouth rests in the reference's shape through an inserted stretch of near-silence,
    carried to each frame's head pose, and the speech frames away from it are untouched."""
    from a2k_toolkit.builtin.logmel import LogMel
    from a2k_toolkit.io import load_audio
    from a2k_toolkit.motion import voice_activity
    from a2k_toolkit.pipeline import Pipeline

    wav = load_audio(sample_speech_path, 16000)
    quiet = 1e-4 * np.random.default_rng(0).standard_normal(32000).astype(np.float32)  # 2 s, 60+ dB below speech
    feats = LogMel()(np.concatenate([wav[:48000], quiet, wav[48000:96000]]), 16000)  # frames 75-124 are quiet
    ref = Pipeline.from_config({"renderer": None}).detect(sample_image_path)
    active = voice_activity(feats, 25.0)
    assert (active[80:120] == 0).all() and active[:75].mean() > 0.8

    free = Audio2KeypointGenerator().generate(feats, ref).points
    gated = Audio2KeypointGenerator(silence_gate_db=25.0).generate(feats, ref).points
    speech = np.flatnonzero(active == 1)
    assert len(speech) > 100
    np.testing.assert_array_equal(gated[speech], free[speech])
    # only the mouth changes (and the lower jaw that the shipped model's energy mouth drops, gated as the mouth is)
    jaw = np.r_[4:13]
    np.testing.assert_array_equal(np.delete(gated[:, :48], jaw, 1), np.delete(free[:, :48], jaw, 1))
    iod = reference_iod(ref.points)
    gap, free_gap, ref_gap = (mouth_opening(p, iod) for p in (gated, free, ref.points[0]))
    assert free_gap[80:120].std() > 0.003  # the model alone keeps moving the mouth in silence
    assert gap[80:120].std() < 0.1 * free_gap[80:120].std()
    assert abs(gap[80:120].mean() - ref_gap) < 0.01


def test_silence_gate_needs_log_power_features(tmp_path, monkeypatch):
    """The gate reads loudness off log-power features. Built by a host, the checkpoint's front-end class is looked up
    in the host's catalog; built without one (it makes no catalog of its own), the front-end that check_frontend is
    given is checked instead."""
    import shutil

    from a2k_toolkit import catalog as catalog_module
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.errors import ConfigError
    from a2k_toolkit.hookspecs import hookimpl
    from a2k_toolkit.models.ensemble import read_members
    from a2k_toolkit.plugins import make_plugin_manager

    class LinearMel(LogMel):
        """The log-mel's layout without the log: not log power."""

        name = "linear-mel"
        log_power = False

    class LinearMelPlugin:
        @staticmethod
        @hookimpl
        def register_audio_frontends(register):
            register(LinearMel)

    def checkpoint(frontend: str):
        ckpt = tmp_path / frontend
        shutil.copytree(read_members(None)[0].path, ckpt)  # one checkpoint of the shipped model
        cfg = json.loads((ckpt / "config.json").read_text())
        cfg["frontend"]["name"] = frontend
        (ckpt / "config.json").write_text(json.dumps(cfg))
        return str(ckpt)

    host = Catalog(make_plugin_manager(entry_points=False, plugins=[LinearMelPlugin()]))
    gated = {"silence_gate_db": 25.0}
    for name in ("wav2vec2", "linear-mel"):  # not in the host's catalog; in it, without log_power
        host.build("generator", "audio2keypoint", {"checkpoint": checkpoint(name)})  # fine without the gate
        with pytest.raises(ConfigError, match=f"silence_gate_db reads loudness from log-power .*{name!r} front-end"):
            host.build("generator", "audio2keypoint", {"checkpoint": str(tmp_path / name), **gated})
    host.build("generator", "audio2keypoint", {"checkpoint": checkpoint("logmel"), **gated})

    made = []
    monkeypatch.setattr(catalog_module.Catalog, "__init__", lambda self, *a, **k: made.append(self))
    bare = Audio2KeypointGenerator(checkpoint=str(tmp_path / "linear-mel"), **gated)  # no catalog to look it up in
    assert made == []  # and none made for the purpose
    with pytest.raises(ConfigError, match="silence_gate_db reads loudness .*'linear-mel' front-end's class does not"):
        bare.check_frontend(LinearMel())
    Audio2KeypointGenerator(checkpoint=str(tmp_path / "logmel"), **gated).check_frontend(LogMel())
