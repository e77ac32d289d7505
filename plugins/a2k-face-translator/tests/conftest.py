"""Fixtures: real clips from ``../shared/data`` beside the repository (or ``A2K_SHARED_DATA``), cut to face crops."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = Path(os.environ.get("A2K_SHARED_DATA", REPO.parent / "shared" / "data"))
SIZE = 32  # tests train at 32x32 px to stay within seconds on a CPU


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "clips").is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set A2K_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny convolutions run fastest on one thread, and much slower when threads fight over a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def real_clip(shared_data, request):
    """``name -> a2k_toolkit Clip`` (dlib keypoints at 25 fps), cached like the toolkit's own ``real_clips``."""
    from a2k_face_translator.data import dlib_detector
    from a2k_toolkit.data.clips import extract_clip, load_clip, save_clip

    cache = Path(request.config.cache.mkdir("a2k-real-clips"))
    made = {}

    def get(name: str):
        if name not in made:
            cached = cache / f"{name}.npz"
            if cached.is_file():
                made[name] = load_clip(cached)
            else:
                made[name] = extract_clip(shared_data / "clips" / f"{name}.mp4", dlib_detector())
                save_clip(cached, made[name])
        return made[name]

    return get


@pytest.fixture(scope="session")
def face_clips(real_clip):
    """Face crops (32 px) of three real clips of three people: two for meta-training, one held out."""
    from a2k_face_translator.data import load_face_clip

    return {
        name: load_face_clip(real_clip(name).source, SIZE, clip=real_clip(name))
        for name in ("pcavs_aldridge", "pcavs_ralph", "avsr_00022")
    }
