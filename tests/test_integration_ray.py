"""integrations/ray: the same manifest on a local Ray instance gives the same outputs as the local runner."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from a2k_toolkit.dubbing import dub_batch
from a2k_toolkit.hashing import sha256_file
from a2k_toolkit.io import load_keypoints, probe_video

ray = pytest.importorskip("ray", reason="the Ray integration needs `pip install 'a2k-toolkit[ray]'`")
REPO = Path(__file__).resolve().parents[1]


def load_integration():
    spec = importlib.util.spec_from_file_location("a2k_ray_dub", REPO / "integrations" / "ray" / "a2k_ray_dub.py")
    module = importlib.util.module_from_spec(spec)
    import sys

    sys.modules["a2k_ray_dub"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_runner_matches_local_runner(tmp_path, dub_media, local_ray):
    """The Ray script on a manifest, against the local runner on the same manifest: same keypoint files."""
    mod = load_integration()
    config = {"renderer": {"name": "sketch", "params": {"size": 64}}}
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(config))
    rows = [
        {"id": "a", "image": str(dub_media.face), "audio": str(dub_media.speech1), "output": "a.mp4"},
        {"id": "b", "image": str(dub_media.face2), "audio": str(dub_media.speech2), "output": "b/b.mp4"},
        {"id": "c", "video": str(dub_media.video), "frame": 3, "audio": str(dub_media.speech1), "output": "c.mp4"},
        {"id": "d", "image": str(dub_media.face), "text": "Good morning.", "lang": "en", "output": "d.mp4"},
        {
            "id": "e",
            "image": str(dub_media.face2),
            "audio": str(dub_media.speech1),
            "output": "e.npz",
            "config": {"renderer": None, "generator": {"name": "procedural", "params": {"mouth_open": 0.8}}},
        },
        {"id": "bad", "image": str(dub_media.blank), "audio": str(dub_media.speech1), "output": "bad.mp4"},
    ]
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    local = dub_batch(m, tmp_path / "local", config=config, workers=0, progress=False)
    assert local.counts == {"done": 5, "failed": 1}

    rc = mod.main([str(m), "--out", str(tmp_path / "ray"), "--config", str(cfg), "--workers", "2", "--no-progress"])
    assert rc == 1  # one row failed, as in the local run
    remote = {r["id"]: r for r in map(json.loads, (tmp_path / "ray" / "dub-report.jsonl").read_text().splitlines())}
    assert json.loads((tmp_path / "ray" / "dub-summary.json").read_text())["workers"] == 2
    for rec in local.records:
        other = remote[rec["id"]]
        assert other["status"] == rec["status"]
        if rec["status"] == "failed":
            assert other["reason"] == rec["reason"] and "no face found" in rec["reason"]
            continue
        a = load_keypoints(tmp_path / "local" / rec["keypoints"])
        b = load_keypoints(tmp_path / "ray" / rec["keypoints"])
        np.testing.assert_array_equal(a.points, b.points)
        assert sha256_file(tmp_path / "ray" / rec["keypoints"]) == rec["keypoints_sha256"] == other["keypoints_sha256"]
        if rec["output"].endswith(".mp4"):
            assert probe_video(tmp_path / "ray" / rec["output"])["frames"] == rec["frames"] == other["frames"]
    assert all(r["worker"] != os.getpid() for r in remote.values())  # it ran in Ray worker processes, not here
    # the Ray run resumes with the local runner (same journal): everything is skipped
    again = dub_batch(m, tmp_path / "ray", config=config, workers=0, progress=False)
    assert again.counts == {"skipped": 5, "failed": 1}
    assert mod.main([str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")]) == 2
