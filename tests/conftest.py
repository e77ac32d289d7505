"""Shared fixtures. Real inputs come from ``../shared/data`` beside the repository (override with A2K_SHARED_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("A2K_SHARED_DATA", REPO.parent / "shared" / "data"))
SAMPLES = REPO / "a2k_toolkit" / "samples"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (faces/, speech/, clips/); tests needing it skip where it is absent."""
    if not (SHARED_DATA / "faces").is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set A2K_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def face_image_path(shared_data) -> Path:
    return shared_data / "faces" / "obama.jpg"


@pytest.fixture(scope="session")
def speech_path(shared_data) -> Path:
    return shared_data / "speech" / "makeittalk_M6_04_16k.wav"


@pytest.fixture(scope="session")
def sample_image_path() -> Path:
    return SAMPLES / "astronaut.jpg"


@pytest.fixture(scope="session")
def sample_speech_path() -> Path:
    return SAMPLES / "speech.wav"


@pytest.fixture
def pm():
    """A fresh plugin manager with the built-ins only (no entry points), so tests never depend on what is installed."""
    from a2k_toolkit.plugins import make_plugin_manager

    return make_plugin_manager(entry_points=False)


@pytest.fixture
def torch_one_thread():
    """Run a test with one torch thread (small models: less thread overhead, same results on any core count)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def catalog(pm):
    from a2k_toolkit.catalog import Catalog

    return Catalog(pm)


# Short real clips (one identity each) with dlib keypoints at 25 fps, cached across runs in pytest's cache dir.
REAL_CLIP_NAMES = ("pcavs_aldridge", "pcavs_ralph", "avsr_00022")


@pytest.fixture(scope="session")
def real_clips(shared_data, request):
    """``[Clip, ...]`` for :data:`REAL_CLIP_NAMES`: keypoints ``(T, 68, 2)`` + 16 kHz audio, extracted with dlib."""
    from a2k_toolkit.builtin.dlib_detector import DlibDetector
    from a2k_toolkit.data.clips import extract_clip, load_clip, save_clip

    cache = Path(request.config.cache.mkdir("a2k-real-clips"))
    detector = DlibDetector()
    clips = []
    for name in REAL_CLIP_NAMES:
        cached = cache / f"{name}.npz"
        if cached.is_file():
            clips.append(load_clip(cached))
            continue
        clip = extract_clip(shared_data / "clips" / f"{name}.mp4", detector)
        save_clip(cached, clip)
        clips.append(clip)
    return clips


# Batch dubbing (tests/test_dub*.py, tests/test_integration_*.py): small real inputs, made once per session.
@pytest.fixture(scope="session")
def dub_media(shared_data, tmp_path_factory):
    """Real face image and video, 1 s and 2 s cuts of real speech, plus a faceless image and a corrupt audio file."""
    from types import SimpleNamespace

    import numpy as np
    import soundfile as sf

    from a2k_toolkit.io import save_image

    d = tmp_path_factory.mktemp("dub-media")
    wav, sr = sf.read(str(shared_data / "speech" / "makeittalk_M6_04_16k.wav"), dtype="float32")
    sf.write(str(d / "speech1.wav"), wav[:sr], sr)
    sf.write(str(d / "speech2.wav"), wav[: 2 * sr], sr)
    save_image(d / "blank.png", np.full((160, 160, 3), 120, np.uint8))
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4)
    return SimpleNamespace(
        dir=d,
        face=shared_data / "faces" / "obama.jpg",
        face2=shared_data / "faces" / "leo.jpg",
        video=shared_data / "clips" / "avsr_00006.mp4",
        speech1=d / "speech1.wav",
        speech2=d / "speech2.wav",
        blank=d / "blank.png",
        corrupt=d / "corrupt.wav",
    )


# ---------------------------------------------------------------------------------------- Audio2Keypoint (model)


@pytest.fixture(scope="session")
def real_clips_dir(real_clips, tmp_path_factory) -> Path:
    """:func:`real_clips` saved as ``.npz`` clip files in one directory (a ``data.train`` entry for `a2k train`)."""
    from a2k_toolkit.data.clips import save_clip

    root = tmp_path_factory.mktemp("a2k-real-clips")
    for clip in real_clips:
        save_clip(root / f"{clip.clip_id}.npz", clip)
    return root


@pytest.fixture(scope="session")
def tiny_train_config():
    """The factory :func:`a2k_toolkit.testing.tiny_train_config` ``(data_dir, run_dir, **overrides) -> dict``: a tiny
    CPU training config (width 16, 32-frame windows) that trains in a fraction of a second per step."""
    from a2k_toolkit.testing import tiny_train_config as make

    return make


@pytest.fixture(scope="session")
def tiny_a2k_checkpoint(real_clips_dir, tiny_train_config, tmp_path_factory) -> Path:
    """A checkpoint directory of a tiny Audio2Keypoint model (default log-mel front-end) trained for 3 steps on the
    real clips."""
    import torch

    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager
    from a2k_toolkit.training import Trainer

    run = tmp_path_factory.mktemp("a2k-tiny-run") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(
            tiny_train_config(real_clips_dir, run, max_steps=3),
            catalog=Catalog(make_plugin_manager(entry_points=False)),
        ).fit()
    finally:
        torch.set_num_threads(threads)
    return run / "latest"


@pytest.fixture(scope="session")
def fan_torch_home(tmp_path_factory) -> Path:
    """A ``TORCH_HOME`` holding randomly initialised 2D-FAN and S3FD weights under the file names face-alignment
    downloads to, so the real loading code runs offline (the landmarks themselves are meaningless)."""
    pytest.importorskip("face_alignment")
    import torch
    from face_alignment.api import models_urls
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.detection.sfd.sfd_detector import models_urls as sfd_urls
    from face_alignment.models import FAN

    home = tmp_path_factory.mktemp("torch_home")
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), ckpt / Path(models_urls["2DFAN-4"]).name)
    torch.save(s3fd().state_dict(), ckpt / Path(sfd_urls["s3fd"]).name)
    return home
