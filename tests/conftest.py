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
