"""The ``wav2vec`` front-end with tiny random wav2vec 2.0 / HuBERT models: layers, frame rate, chunking, cache,
offline errors, entry point, and the pipeline end to end."""

from __future__ import annotations

import importlib.metadata as md
import json
import math

import numpy as np
import pytest
import torch
import transformers

from a2k_toolkit.errors import A2KError, ConfigError
from a2k_wav2vec import ModelUnavailableError, Wav2VecFrontend
from a2k_wav2vec import plugin as wav2vec_plugin


def reference_hidden_states(model_dir, wav):
    """All hidden states from transformers' own forward pass on the feature extractor's input."""
    fx = transformers.AutoFeatureExtractor.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    x = fx(wav, sampling_rate=16000, return_tensors="pt").input_values
    with torch.inference_mode():
        return [h[0].numpy() for h in model(x, output_hidden_states=True).hidden_states]


@pytest.mark.parametrize("model", ["tiny_wav2vec2", "tiny_hubert"])
@pytest.mark.parametrize("layer", [0, 1, -1])
def test_layer_selection_matches_transformers_hidden_states(request, speech, model, layer):
    model_dir = request.getfixturevalue(model)
    wav = speech[: 16000 * 3]
    ref = reference_hidden_states(model_dir, wav)
    fe = Wav2VecFrontend(model=str(model_dir), layer=layer, chunk_seconds=60)
    frames = fe.model_frames(wav)
    assert frames.shape == ref[layer].shape == (fe.num_model_frames(len(wav)), 32)
    np.testing.assert_allclose(frames, ref[layer], atol=1e-4)  # float64 vs float32 input statistics
    assert len(fe._model.encoder.layers) == max(fe.layer_index, 1)  # blocks after the chosen one were dropped


def test_pooled_to_the_video_frame_rate(tiny_wav2vec2, speech):
    wav = speech[: 16000 * 2 + 123]
    fe = Wav2VecFrontend(model=str(tiny_wav2vec2))
    frames = fe.model_frames(wav)
    feats = fe(wav, 16000)
    assert feats.shape == (math.ceil(len(wav) / 16000 * 25), 32) and feats.dtype == np.float32
    for t in (0, 10, 49):  # at 25 fps each video frame is the mean of the model frame pair it contains
        np.testing.assert_allclose(feats[t], frames[2 * t : 2 * t + 2].mean(0), atol=1e-5)
    for fps in (30.0, 60.0):  # 60 fps > 50 Hz: frames without a model frame are interpolated
        f = Wav2VecFrontend(model=str(tiny_wav2vec2), fps=fps)(wav, 16000)
        assert f.shape == (math.ceil(round(len(wav) / 16000 * fps, 6)), 32) and np.isfinite(f).all()


@pytest.mark.parametrize(("samples", "frames"), [(1, 1), (640, 1), (800, 2), (16000, 25)])
def test_frame_count_for_short_audio(tiny_hubert, samples, frames):
    wav = np.random.default_rng(0).standard_normal(samples).astype(np.float32) * 0.1
    feats = Wav2VecFrontend(model=str(tiny_hubert))(wav, 16000)
    assert feats.shape == (frames, 32) and np.isfinite(feats).all()


def test_ten_minutes_in_chunks(tiny_wav2vec2):
    fe = Wav2VecFrontend(model=str(tiny_wav2vec2), layer=1, chunk_seconds=20, context_seconds=1).load()
    calls = []
    handle = fe._model.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[-1]))
    wav = np.random.default_rng(0).standard_normal(600 * 16000, dtype=np.float32) * 0.1
    try:
        feats = fe(wav, 16000)
    finally:
        handle.remove()
    assert feats.shape == (15000, 32) and np.isfinite(feats).all()
    assert len(calls) == 30 and max(calls) <= 22 * 16000 + 400  # 30 calls of <= 20 s + 2 x 1 s context (+ 1 field)


def test_chunk_assembly(tiny_hubert, speech):
    speech = speech[: 16000 * 5]
    whole = Wav2VecFrontend(model=str(tiny_hubert), chunk_seconds=60).model_frames(speech)
    # context covering the whole clip: every chunk sees all of it, so the pieces must fit together exactly
    exact = Wav2VecFrontend(model=str(tiny_hubert), chunk_seconds=1, context_seconds=60).model_frames(speech)
    np.testing.assert_allclose(exact, whole, atol=1e-5)
    # short context: attention sees less, but frames stay close to the whole-clip ones, and aligned
    near = Wav2VecFrontend(model=str(tiny_hubert), chunk_seconds=2, context_seconds=0.5).model_frames(speech)
    assert near.shape == whole.shape

    def cos(a, b):
        return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

    assert np.median(cos(near, whole)) > 0.95
    assert np.median(cos(near[1:], whole[:-1])) < 0.8  # (a one-frame misalignment would be far off)


def test_feature_cache(tiny_wav2vec2, speech, tmp_path):
    wav = speech[:16000]
    cache = tmp_path / "cache"
    first = Wav2VecFrontend(model=str(tiny_wav2vec2), cache_dir=str(cache))(wav, 16000)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy"
    again = Wav2VecFrontend(model=str(tiny_wav2vec2), cache_dir=str(cache))
    np.testing.assert_array_equal(again(wav, 16000), first)
    assert again._model is None  # served from the cache without loading the model
    Wav2VecFrontend(model=str(tiny_wav2vec2), cache_dir=str(cache), layer=1)(wav, 16000)  # other layer
    Wav2VecFrontend(model=str(tiny_wav2vec2), cache_dir=str(cache))(wav * 0.5, 16000)  # other audio
    assert len(list(cache.iterdir())) == 3  # three keys, and no temp files left behind
    files[0].write_bytes(b"not an npy file")
    with pytest.warns(RuntimeWarning, match="recomputing"):
        redo = Wav2VecFrontend(model=str(tiny_wav2vec2), cache_dir=str(cache))(wav, 16000)
    np.testing.assert_array_equal(redo, first)
    assert np.load(files[0]).shape == first.shape  # rewritten


def test_cache_keys_are_unchanged(tiny_wav2vec2, speech, tmp_path):
    """The model fingerprint and the cache file names, written out as the formulas they were: existing caches hit."""
    import hashlib
    import re

    fe = Wav2VecFrontend(model=str(tiny_wav2vec2), cache_dir=str(tmp_path))
    h = hashlib.sha256()
    for f in sorted(tiny_wav2vec2.iterdir()):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin"}:
            h.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}\n".encode())
            if f.suffix == ".json":
                h.update(f.read_bytes())
    fingerprint = f"{tiny_wav2vec2.resolve()}#{h.hexdigest()[:16]}"
    assert fe.model_fingerprint() == fingerprint
    wav = speech[:16000]
    p = fe.params
    key = {
        "model": fingerprint,
        "layer": p.layer,
        "normalize": p.normalize,
        "fps": p.fps,
        "chunk": p.chunk_seconds,
        "context": p.context_seconds,
        "format": 1,
        "audio": hashlib.sha256(np.ascontiguousarray(wav).view(np.uint8)).hexdigest(),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:40]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", tiny_wav2vec2.name)[:60]
    assert fe._cache_file(wav) == tmp_path / f"{slug}-layer{p.layer}-{digest}.npy"


def test_offline_and_missing_models(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    fe = Wav2VecFrontend(model="a2k-test/not-a-cached-model", local_files_only=True)
    with pytest.raises(
        ModelUnavailableError, match=r"not in the local Hugging Face cache.*local_files_only.*hf download"
    ):
        fe(np.zeros(16000, np.float32), 16000)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match=r"HF_HUB_OFFLINE=1.*save_pretrained\(DIR\)"):
        _ = Wav2VecFrontend(model="a2k-test/not-a-cached-model").feature_shape
    with pytest.raises(ConfigError, match="model directory not found"):
        _ = Wav2VecFrontend(model=str(tmp_path / "no" / "such" / "dir")).feature_shape
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="should hold config.json"):
        _ = Wav2VecFrontend(model=str(tmp_path / "empty")).feature_shape


def test_wrong_model_kind_and_layer(tmp_path, tiny_wav2vec2):
    transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="'bert' model, not a speech encoder"):
        _ = Wav2VecFrontend(model=str(tmp_path)).feature_shape
    with pytest.raises(ConfigError, match=r"layer 7 is out of range.*3 transformer blocks"):
        Wav2VecFrontend(model=str(tiny_wav2vec2), layer=7)(np.zeros(1600, np.float32), 16000)
    with pytest.raises(Exception, match="extra"):
        Wav2VecFrontend(model=str(tiny_wav2vec2), layers=1)
    assert Wav2VecFrontend(model=str(tiny_wav2vec2)).feature_shape == (32,)


@pytest.mark.parametrize("generator", ["static", "procedural"])
def test_pipeline_end_to_end(tiny_hubert, sample_image_path, generator, tmp_path):
    from a2k_toolkit.audio import load_audio
    from a2k_toolkit.io import probe_video
    from a2k_toolkit.pipeline import Pipeline
    from a2k_toolkit.plugins import make_plugin_manager

    pm = make_plugin_manager(entry_points=False, plugins=[wav2vec_plugin])
    cfg = {
        "audio": {"name": "wav2vec", "params": {"model": str(tiny_hubert), "layer": 2}},
        "generator": generator,
        "renderer": {"name": "sketch", "params": {"size": 96}},
        "device": "cpu",
    }
    pipe = Pipeline.from_config(cfg, plugins=pm)
    assert pipe.config.audio.params["layer"] == 2
    audio = load_audio(sample_image_path.parent / "speech.wav", 16000)[: 16000 * 2]
    result = pipe(sample_image_path, (audio, 16000))
    assert len(result.keypoints) == 50 and result.keypoints.points.shape == (50, 68, 2)
    result.save(video=tmp_path / "out.mp4")
    assert probe_video(tmp_path / "out.mp4")["frames"] == 50


def test_registered_through_the_entry_point():
    eps = [ep for ep in md.entry_points(group="a2k_toolkit") if ep.value == "a2k_wav2vec.plugin"]
    if not eps:
        pytest.skip("a2k-wav2vec is not pip-installed (`pip install -e plugins/a2k-wav2vec`; make test does it)")
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager

    entry = Catalog(make_plugin_manager()).entry("audio", "wav2vec")
    assert entry.cls is Wav2VecFrontend and entry.distribution == "a2k-wav2vec"


def test_errors_are_a2k_errors():
    assert issubclass(ModelUnavailableError, A2KError)


class _Payload:
    """A pickle that would create a file when unpickled (the kind of object torch's weights_only load refuses)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickled_copy(src, dst, marker, keep_safetensors: bool):
    import shutil

    from safetensors.torch import load_file

    shutil.copytree(src, dst)
    state = load_file(str(dst / "model.safetensors"))
    torch.save({**state, "payload": _Payload(marker)}, dst / "pytorch_model.bin")
    if not keep_safetensors:
        (dst / "model.safetensors").unlink()
    return dst


def test_pickled_weights_are_refused_with_a_clear_error_and_safetensors_preferred(tiny_wav2vec2, tmp_path):
    import subprocess
    import sys

    marker = tmp_path / "payload-ran"
    pickled = _pickled_copy(tiny_wav2vec2, tmp_path / "pickled", marker, keep_safetensors=False)
    with pytest.raises(ModelUnavailableError, match=r"pytorch_model\.bin.*could run code.*model\.safetensors"):
        Wav2VecFrontend(model=str(pickled))(np.zeros(1600, np.float32), 16000)
    assert not marker.exists()
    # through the CLI: one `error:` line naming the file and the fix, exit 2, no traceback
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"audio": {"name": "wav2vec", "params": {"model": str(pickled)}}, "generator": "static"}))
    samples = __import__("a2k_toolkit").__file__.rsplit("/", 1)[0] + "/samples"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "a2k_toolkit.cli",
            "generate",
            "--image",
            f"{samples}/astronaut.jpg",
            "--audio",
            f"{samples}/speech.wav",
            "--config",
            str(cfg),
            "--keypoints-out",
            str(tmp_path / "kp.npy"),
        ],
        capture_output=True,
        text=True,
    )
    if "unknown audio front-end 'wav2vec'" in proc.stderr:
        pytest.skip("a2k-wav2vec is not pip-installed: the CLI cannot find it")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: ") and "pytorch_model.bin" in proc.stderr and "safetensors" in proc.stderr
    assert not marker.exists()
    # beside safetensors weights, the pickled .bin is never opened
    both = _pickled_copy(tiny_wav2vec2, tmp_path / "both", marker, keep_safetensors=True)
    feats = Wav2VecFrontend(model=str(both))(np.zeros(1600, np.float32), 16000)
    np.testing.assert_array_equal(feats, Wav2VecFrontend(model=str(tiny_wav2vec2))(np.zeros(1600, np.float32), 16000))
    assert not marker.exists()
