"""Models to export: the shipped ensemble, and tiny checkpoints trained here for a few steps on synthetic clips (real
speech, a face whose mouth follows the speech's loudness), through the public trainer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("a2k_onnx") is None:  # running from a checkout without `pip install -e`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

pytest.importorskip("onnxruntime")

SAMPLES = Path(__import__("a2k_toolkit").__file__).parent / "samples"
FPS, SR = 25, 16000


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    from a2k_toolkit.audio import load_audio

    return load_audio(SAMPLES / "speech.wav", SR)


@pytest.fixture(scope="session")
def sample_paths():
    return SAMPLES / "astronaut.jpg", SAMPLES / "speech.wav"


def synthetic_clips(root: Path, speech: np.ndarray, n: int = 3) -> Path:
    """``n`` clips of 4 s: a mean face at a per-clip position and size, its jaw opening with the speech's RMS and a
    slow head sway, with the matching cut of the sample speech."""
    from a2k_toolkit.data.clips import Clip, save_clip
    from a2k_toolkit.testing import mean_face

    rng = np.random.default_rng(0)
    T = 4 * FPS
    for k in range(n):
        audio = speech[k * SR : k * SR + T * SR // FPS].astype(np.float32)
        rms = np.sqrt(np.mean(audio[: T * (SR // FPS)].reshape(T, -1) ** 2, 1))
        face = mean_face(256, 256) * (0.8 + 0.1 * k) + rng.uniform(-10, 10, 2)
        pts = np.repeat(face[None], T, 0).astype(np.float64)
        pts[:, 48:68, 1] += (rms / (rms.max() + 1e-9))[:, None] * 8 * (np.arange(48, 68) >= 57)[None]
        pts[:, :, 0] += 3 * np.sin(np.arange(T) / 9 + k)[:, None]
        pts += rng.normal(0, 0.3, pts.shape)
        clip = Clip(
            keypoints=pts.astype(np.float32),
            audio=audio,
            sample_rate=SR,
            fps=FPS,
            frame_size=(256, 256),
            clip_id=f"synthetic-{k}",
            identity=f"person-{k}",
        )
        save_clip(root / f"synthetic-{k}.npz", clip)
    return root


def train_tiny(run: Path, data: Path, **model) -> Path:
    """A tiny Audio2Keypoint checkpoint (width 16, 32-frame windows) after 2 training steps on the CPU."""
    import torch

    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager
    from a2k_toolkit.testing import tiny_train_config
    from a2k_toolkit.training import Trainer

    config = tiny_train_config(data, run, max_steps=2, model=model)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(config, catalog=Catalog(make_plugin_manager(entry_points=False))).fit()
    finally:
        torch.set_num_threads(threads)
    return run / "latest"


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory, speech) -> Path:
    return synthetic_clips(tmp_path_factory.mktemp("onnx-clips"), speech)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, clips_dir) -> Path:
    return train_tiny(tmp_path_factory.mktemp("onnx-tiny") / "run", clips_dir)


@pytest.fixture(scope="session")
def audio_only_checkpoint(tmp_path_factory, clips_dir) -> Path:
    """The paper's "audio only" ablation: no PV / PIV encoder, so the network does not read the reference."""
    return train_tiny(tmp_path_factory.mktemp("onnx-audio-only") / "run", clips_dir, pv_encoder=None, piv_encoder=None)


@pytest.fixture(scope="session")
def catalog():
    """The built-ins plus this package's plugin module (independent of what else is installed)."""
    from a2k_onnx import plugin
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager

    return Catalog(make_plugin_manager(entry_points=False, plugins=[plugin]))


def quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_checkpoint, catalog) -> Path:
    """The tiny checkpoint exported with torch's default (dynamo) exporter."""
    pytest.importorskip("onnxscript")
    from a2k_onnx import export_onnx

    out = tmp_path_factory.mktemp("onnx-exports") / "tiny"
    export_onnx(out, str(tiny_checkpoint), exporter="dynamo", plugins=catalog, log=quiet)
    return out


@pytest.fixture(scope="session")
def shipped_export(tmp_path_factory, catalog) -> Path:
    """The shipped ensemble as one graph (torchscript exporter: the fast one; the dynamo one is tested on the tiny
    model)."""
    from a2k_onnx import export_onnx

    out = tmp_path_factory.mktemp("onnx-exports") / "shipped"
    export_onnx(out, None, exporter="torchscript", plugins=catalog, log=quiet)
    return out
