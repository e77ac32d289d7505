"""Pose from a reference in live streams (``pose`` in the config with ``Pipeline.stream``, ``a2k stream``, ``a2k
serve``): each frame leaves the session in the source's head pose, as offline generation poses it; and ``a2k config
validate`` checks the pose source. On the real shared clip of tests/test_pose_control.py (``pcavs_ralph``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import test_pose_control as control  # noqa: E402
from test_pose_control import NOSE, _lip_corr, _nose_corr, _pose_of  # noqa: E402

ralph, shipped = control.ralph, control.shipped  # the clip, and the default pipeline without and with its pose

from a2k_toolkit import Pipeline, formats  # noqa: E402
from a2k_toolkit.eval import metrics as M  # noqa: E402
from a2k_toolkit.io import read_video_frames, write_video  # noqa: E402
from a2k_toolkit.pose import PoseTransfer, source_frames, source_index, transfer_pose  # noqa: E402
from a2k_toolkit.testing import mean_face  # noqa: E402


def play(pipe, photo, wav, rate, *, chunks=None, **session):
    """Push ``wav`` through ``pipe.stream`` (20 ms chunks, or the sizes ``chunks`` draws) -> (points, session)."""
    s = pipe.stream(image=photo, sample_rate=rate, **session)
    frames, i = [], 0
    while i < len(wav):
        n = int(chunks()) if chunks is not None else rate // 50
        frames += s.push(wav[i : i + n])
        i += n
    frames += s.flush()
    assert [f.index for f in frames] == list(range(len(frames)))
    return np.stack([f.points for f in frames]), s


# ------------------------------------------------------------------------------------------------ frame by frame


def test_posing_frame_by_frame_equals_posing_the_sequence():
    rng = np.random.default_rng(3)
    ref = mean_face().astype(np.float64) * 1.7 + 40
    source = mean_face()[None] + rng.normal(0, 2.0, (12, 1, 2)) + rng.normal(0, 0.3, (12, 68, 2))
    points = ref[None] + rng.normal(0, 1.5, (40, 68, 2))
    for loop in (True, False):
        whole = transfer_pose(points, ref, source, loop=loop)
        pose = PoseTransfer(ref, source, loop=loop)
        parts = [pose(points[a:b], a) for a, b in ((0, 1), (1, 7), (7, 8), (8, 33), (33, 40))]
        np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)
    # the source frame of output frame t does not depend on how long the output will be
    for length in (1, 2, 5):
        for loop in (True, False):
            assert source_index(np.arange(30), length, loop).tolist() == source_frames(30, length, loop).tolist()
            assert source_index([29], length, loop)[0] == source_frames(30, length, loop)[-1]


# ------------------------------------------------------------------------------------------------ on a real clip


def test_streamed_with_pose_equals_offline_at_the_full_lookahead(ralph, shipped):
    _, posed = shipped
    audio, rate = ralph.clip.audio, ralph.clip.sample_rate
    offline = posed(ralph.photo, (audio, rate)).keypoints
    rng = np.random.default_rng(0)
    streamed, session = play(posed, ralph.photo, audio, rate, chunks=lambda: rng.integers(1, 4000), lookahead_ms="full")
    assert streamed.shape == offline.points.shape == ralph.gt.shape
    np.testing.assert_allclose(streamed, offline.points, atol=1e-4)  # measured: 0 (the same float32 values)
    kp = session.keypoints([])
    assert kp.meta["pose_source"] == offline.meta["pose_source"] == str(ralph.landmarks)
    assert kp.meta["pose_loop"] is offline.meta["pose_loop"] is True


def test_at_the_default_lookahead_the_head_follows_the_source(ralph, shipped):
    plain, posed = shipped
    audio, rate = ralph.clip.audio, ralph.clip.sample_rate
    out, session = play(posed, ralph.photo, audio, rate)
    assert session.lookahead == 8  # the default, 320 ms
    out = out.astype(np.float64)
    cx, cy = _nose_corr(out, ralph.gt)
    angle = M.pearson(_pose_of(out, out[0])[0], _pose_of(ralph.gt, ralph.gt[0])[0])
    assert cx > 0.8 and cy > 0.8 and angle > 0.8, (cx, cy, angle)  # measured: 1.000, 1.000, 0.995
    without, _ = play(plain, ralph.photo, audio, rate)
    assert max(_nose_corr(without.astype(np.float64), ralph.gt)) < 0.8  # the model's own head motion is another
    lip_plain, lip_posed = _lip_corr(without, ralph.gt), _lip_corr(out, ralph.gt)
    assert abs(lip_posed - lip_plain) <= 0.1 * lip_plain, (lip_plain, lip_posed)


@pytest.fixture(scope="module")
def short_video(ralph, tmp_path_factory):
    """The clip's first 30 frames as a video (a source shorter than the speech)."""
    path = tmp_path_factory.mktemp("pose-video") / "short.mp4"
    frames = read_video_frames(ralph.video, fps=25)
    write_video(path, (f for _, f in zip(range(30), frames)), 25)
    return path


@pytest.mark.parametrize("loop", [True, False])
def test_a_video_source_is_detected_when_the_stream_opens_and_loops_or_holds(ralph, short_video, loop):
    cfg = {"renderer": None, "device": "cpu", "generator": "static", "pose": {"source": str(short_video), "loop": loop}}
    pipe = Pipeline.from_config(cfg)
    audio, rate = ralph.clip.audio[: 3 * ralph.clip.sample_rate], ralph.clip.sample_rate  # 75 frames
    session = pipe.stream(image=ralph.photo, sample_rate=rate, lookahead_ms=0)
    detected = pipe.pose._points
    assert len(detected) == 30 and pipe.pose._complete  # every frame of the video, before any audio
    session.close()
    streamed, _ = play(pipe, ralph.photo, audio, rate, lookahead_ms=0)
    assert pipe.pose._points is detected  # the second stream reused them
    offline = pipe(ralph.photo, (audio, rate)).keypoints.points
    assert len(streamed) == 75
    np.testing.assert_allclose(streamed, offline, atol=1e-4)
    idx = source_frames(75, 30, loop)
    assert np.abs(streamed - streamed[idx]).max() < 1e-4  # the static face: frame t is its source frame's pose
    if not loop:
        assert np.abs(streamed[30:] - streamed[29]).max() < 1e-4  # an open-ended stream holds the last pose
    assert np.abs(streamed[29] - streamed[0]).max() > 1  # and the head did move


# ------------------------------------------------------------------------------------------------------ the CLI


def a2k(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "a2k_toolkit.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def test_a2k_stream_with_a_pose_config_equals_a2k_generate(ralph, tmp_path):
    cfg = tmp_path / "pose.json"
    cfg.write_text(
        json.dumps({"generator": "procedural", "renderer": None, "device": "cpu", "pose": str(ralph.landmarks)})
    )
    common = ["--image", ralph.photo_path, "--audio", ralph.speech, "--config", cfg]
    gen = a2k("generate", *common, "--keypoints-out", tmp_path / "gen.npy")
    assert gen.returncode == 0, gen.stderr
    for ahead in ("full", "320"):
        st = a2k("stream", *common, "--keypoints-out", tmp_path / f"stream-{ahead}.npy", "--lookahead-ms", ahead)
        assert st.returncode == 0, st.stderr
    offline, full = np.load(tmp_path / "gen.npy"), np.load(tmp_path / "stream-full.npy")
    np.testing.assert_allclose(full, offline, atol=1e-3)
    cx, cy = _nose_corr(np.load(tmp_path / "stream-320.npy").astype(np.float64), ralph.gt)
    assert cx > 0.8 and cy > 0.8, (cx, cy)


def test_serve_takes_the_pose_from_its_config_never_from_a_client(ralph, tmp_path):
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    pytest.importorskip("websockets")
    from test_serve import exchange, running

    from a2k_toolkit.serve.client import stream_audio, to_pcm16

    pipe = Pipeline.from_config(
        {"renderer": None, "device": "cpu", "generator": "static", "pose": {"source": str(ralph.landmarks)}}
    )
    ref = pipe.detect(ralph.photo)
    rate = ralph.clip.sample_rate
    wav = ralph.clip.audio[: 2 * rate]
    q = np.frombuffer(to_pcm16(wav), "<i2").astype(np.float32) / 32768.0
    with running(pipe) as addr:
        got = stream_audio(f"ws://{addr}/stream", wav, rate, reference=ref.points[0], image_size=ref.image_size)
        secret = tmp_path / "secret.npy"
        np.save(secret, np.repeat(ralph.gt[:1], 5, 0).astype(np.float32))
        start = {"type": "start", "reference": ref.points[0].tolist(), "sample_rate": rate, "pose": str(secret)}
        refused, code = exchange(f"ws://{addr}/stream", [json.dumps(start)])
    streamed = np.stack([f[2] for f in got["frames"]])
    local, _ = play(pipe, ralph.photo, q, rate, lookahead_ms=None)
    np.testing.assert_allclose(streamed, local, atol=1e-4)
    assert np.abs(streamed[:, NOSE] - streamed[0, NOSE]).max() > 1  # the server's pose source moved the head
    assert code == 1007 and refused[0]["type"] == "error" and "unknown field(s)" in refused[0]["message"]
    assert "pose" in refused[0]["message"]


# ---------------------------------------------------------------------------------------- a2k config validate


def test_config_validate_reports_the_pose_source(ralph, tmp_path):
    def validate(pose):
        cfg = tmp_path / "cfg.json"
        cfg.write_text(json.dumps({"generator": "static", "renderer": None, "pose": pose}))
        return a2k("config", "validate", cfg, cwd=tmp_path)

    missing = validate({"source": "nope.mp4"})
    assert missing.returncode == 2 and "Traceback" not in missing.stderr, missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith("error: invalid config: pose.source: nope.mp4 not found")
    assert str(tmp_path) in missing.stderr  # where relative paths are read from
    np.save(tmp_path / "bad.npy", np.zeros((5, 10), np.float32))
    bad = validate("bad.npy")
    assert bad.returncode == 2 and "cannot use bad.npy as a pose source" in bad.stderr, bad.stderr
    ok = validate({"source": str(ralph.landmarks), "loop": False})
    assert ok.returncode == 0 and f"pose={ralph.landmarks}" in ok.stdout, ok.stderr


def test_the_docs_describe_streams_with_a_pose_and_the_mediapipe_format():
    repo = Path(__file__).resolve().parents[1]
    doc = {
        name: (repo / "docs" / f"{name}.md").read_text("utf-8") for name in ("controls", "serve", "formats", "plugins")
    }
    assert "### In live streams" in doc["controls"] and "refuse a config with `pose`" not in doc["controls"]
    assert "## Pose from the server's config" in doc["serve"] and "a client never names a file" in doc["serve"]
    assert "## `mediapipe`" in doc["formats"] and "| `mediapipe` | [a2k-mediapipe]" in doc["formats"]
    assert "def register_keypoint_formats(register)" in doc["plugins"]
    assert formats.FORMATS["npy"].plugin == ""  # the toolkit's own formats name no plugin
