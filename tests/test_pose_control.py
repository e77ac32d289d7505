"""Pose from a reference (``pose`` in the config, ``a2k generate --pose-from``): the head moves as a source video's or
keypoint file's does, re-targeted to the photo's face, while the lips follow the speech; for every generator.

The geometry is checked on synthetic poses with a known answer; the control on a real shared clip (``pcavs_ralph``,
the real clip with the most head motion of the cached ones): its own dlib landmarks as the pose source, its first
frame as the photo, its own speech."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from a2k_toolkit import Pipeline, formats
from a2k_toolkit.config import PoseConfig, load_config
from a2k_toolkit.errors import ConfigError, InputError
from a2k_toolkit.eval import metrics as M
from a2k_toolkit.io import read_video_frames, save_image, write_video, write_wav
from a2k_toolkit.keypoints import Keypoints, similarity
from a2k_toolkit.pose import PoseSource, head_pose, source_frames, transfer_pose
from a2k_toolkit.testing import mean_face

CLIP = "pcavs_ralph"
NOSE = 30


def _posed(ref: np.ndarray, theta, scale, shift, centre=None) -> np.ndarray:
    """``ref (68, 2)`` rotated by ``theta`` and scaled by ``scale`` about ``centre`` (default: its rigid centroid) and
    moved by ``shift (T, 2)``: ``(T, 68, 2)``."""
    c = ref[17:48].mean(0) if centre is None else centre
    cos, sin = np.cos(theta), np.sin(theta)
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)
    return np.einsum("tij,nj->tni", rot, ref - c) * np.asarray(scale)[:, None, None] + c + shift[:, None]


def _pose_of(points: np.ndarray, base: np.ndarray):
    """Rotation (rad), scale and rigid-centroid translation of each frame relative to ``base``."""
    a, b = similarity(base[17:48], points[:, 17:48])
    c = complex(*base[17:48].mean(0))
    t = a * c + b - c
    return np.angle(a), np.abs(a), np.stack([t.real, t.imag], -1)


# -------------------------------------------------------------------------------------------------- the geometry


def test_the_sources_pose_retargeted_to_a_larger_tilted_face():
    rng = np.random.default_rng(0)
    T = 40
    src0 = mean_face().astype(np.float64)
    theta, scale, shift = rng.normal(0, 0.1, T), np.exp(rng.normal(0, 0.05, T)), rng.normal(0, 3.0, (T, 2))
    theta[0], scale[0], shift[0] = 0.0, 1.0, 0.0
    source = _posed(src0, theta, scale, shift)
    # the photo's face: twice as large, tilted by 0.3 rad, elsewhere in the image
    ref = _posed(src0, np.array([0.3]), np.array([2.0]), np.array([[40.0, -25.0]]))[0]
    # a generated sequence: a moving mouth (the expression) under a head pose of its own
    gen = np.repeat(ref[None], T, 0)
    gen[1:, 57:60, 1] += np.abs(rng.normal(0, 4.0, (T - 1, 1)))
    own_theta, own_shift = rng.normal(0, 0.2, T), rng.normal(0, 9.0, (T, 2))
    own_theta[0], own_shift[0] = 0.0, 0.0
    moved = np.stack([_posed(g, own_theta[t : t + 1], [1.0], own_shift[t : t + 1])[0] for t, g in enumerate(gen)])
    out = transfer_pose(moved, ref, source).astype(np.float64)
    angle, size, move = _pose_of(out, ref)
    assert np.allclose(angle, theta, atol=1e-4) and np.allclose(size, scale, atol=1e-4)  # relative, as they are
    assert np.allclose(move, 2.0 * shift, atol=1e-3)  # image axes, times the ratio of the face sizes
    assert np.abs(out[0] - ref).max() < 1e-3  # the source's first frame: the reference itself
    # the expression is kept: the mouth's opening in the head's frame
    gap = lambda p: np.linalg.norm(p[:, 66] - p[:, 62], axis=-1) / _pose_of(p, ref)[1]  # noqa: E731
    assert np.allclose(gap(out), gap(gen), atol=1e-3)


def test_the_nose_turn_out_of_the_image_plane_is_carried():
    src0 = mean_face().astype(np.float64)
    source = np.repeat(src0[None], 5, 0)
    source[:, 27:36, 0] += np.arange(5)[:, None] * 1.5  # the nose turns sideways, the rigid similarity barely moves
    _, _, turn = head_pose(source, src0)
    assert np.abs(turn).max() > 3  # most of the nose's move is off the similarity
    out = transfer_pose(np.repeat(src0[None], 5, 0), src0, source)  # the photo is the source's first face
    assert np.abs(out[:, 27:36] - source[:, 27:36]).max() < 1e-3  # so its nose goes where the source's goes


def test_loop_ping_pong_hold_and_cut():
    assert source_frames(5, 8).tolist() == [0, 1, 2, 3, 4]  # a longer source is cut
    assert source_frames(9, 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2]  # ping-pong: no jump at the turns
    assert source_frames(6, 4, loop=False).tolist() == [0, 1, 2, 3, 3, 3]  # held
    assert source_frames(3, 1).tolist() == [0, 0, 0]
    with pytest.raises(InputError, match="at least one frame"):
        source_frames(3, 0)


def test_a_third_coordinate_is_carried_through():
    ref = np.concatenate([mean_face(), np.full((68, 1), 7.0)], 1)
    out = transfer_pose(np.repeat(ref[None], 3, 0), ref, np.repeat(mean_face()[None], 2, 0))
    assert out.shape == (3, 68, 3) and np.all(out[..., 2] == 7.0)


def test_procedural_takes_a_reference_with_depth():
    """The mediapipe detector with ``z`` gives (68, 3) faces: procedural moves their x, y (it crashed with a numpy
    broadcast error) and drops z, as audio2keypoint does."""
    from a2k_toolkit.builtin.baselines import ProceduralGenerator

    feats = np.abs(np.random.default_rng(0).normal(size=(60, 320))).astype(np.float32) - 60
    flat = mean_face()[None].astype(np.float32)
    deep = np.concatenate([flat, np.random.default_rng(1).normal(0, 5, (1, 68, 1)).astype(np.float32)], -1)
    gen = ProceduralGenerator()
    out = gen.generate(feats, Keypoints(deep, image_size=(256, 256)), seed=2)
    assert out.points.shape == (60, 68, 2)
    assert np.array_equal(out.points, gen.generate(feats, Keypoints(flat, image_size=(256, 256)), seed=2).points)


# ----------------------------------------------------------------------------------------------- on a real clip


@pytest.fixture(scope="module")
def ralph(real_clips, shared_data, tmp_path_factory):
    """The clip, its first frame (the photo) as an array and a PNG, its speech as a WAV, its landmarks as a keypoint
    file (the pose source) and the video."""
    from types import SimpleNamespace

    clip = next(c for c in real_clips if c.clip_id == CLIP)
    assert bool(np.all(clip.valid)), "every frame of the clip should have a face"
    video = shared_data / "clips" / f"{CLIP}.mp4"
    d = tmp_path_factory.mktemp("pose")
    photo = next(iter(read_video_frames(video, fps=25)))
    save_image(d / "photo.png", photo)
    write_wav(d / "speech.wav", clip.audio, clip.sample_rate)
    kp = Keypoints(clip.keypoints.astype(np.float32), fps=25.0, image_size=clip.frame_size)
    formats.write(d / "landmarks.json", kp)
    return SimpleNamespace(
        clip=clip, gt=clip.keypoints.astype(np.float64), photo=photo, photo_path=d / "photo.png",
        speech=d / "speech.wav", landmarks=d / "landmarks.json", video=video, dir=d,
    )  # fmt: skip


def _nose_corr(points: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Correlation of the nose tip's x and y (relative to frame 0, in each face's own IOD) with the truth's."""
    n = len(truth)
    p = (points[:n, NOSE] - points[0, NOSE]) / M.reference_iod(points)
    g = (truth[:, NOSE] - truth[0, NOSE]) / M.reference_iod(truth)
    return M.pearson(p[:, 0], g[:, 0]), M.pearson(p[:, 1], g[:, 1])


def _lip_corr(points: np.ndarray, truth: np.ndarray) -> float:
    """``lip_corr`` of the evaluation: the best-lag correlation of the real mouth opening with the generated one."""
    n = len(truth)
    real = M.mouth_opening(truth, M.reference_iod(truth))
    return M.best_lag_correlation(real, M.mouth_opening(points[:n], M.reference_iod(points)), M.MAX_LAG)[0]


@pytest.fixture(scope="module")
def shipped(ralph):
    """The default pipeline (the shipped audio2keypoint) without and with the clip's landmarks as the pose source."""
    plain = Pipeline.from_config({"renderer": None, "device": "cpu"})
    posed = Pipeline.from_config({"renderer": None, "device": "cpu", "pose": {"source": str(ralph.landmarks)}})
    return plain, posed


def test_pose_from_a_clip_follows_its_head_and_keeps_the_lip_sync(ralph, shipped):
    plain, posed = shipped
    speech = (ralph.clip.audio, ralph.clip.sample_rate)
    a = plain(ralph.photo, speech).keypoints.points.astype(np.float64)
    b = posed(ralph.photo, speech).keypoints.points.astype(np.float64)
    assert a.shape == b.shape == ralph.gt.shape
    cx, cy = _nose_corr(b, ralph.gt)
    assert cx > 0.8 and cy > 0.8, (cx, cy)
    angle = M.pearson(_pose_of(b, b[0])[0], _pose_of(ralph.gt, ralph.gt[0])[0])
    assert angle > 0.8, angle
    assert max(_nose_corr(a, ralph.gt)) < 0.8  # the generator's own head motion is another one
    lip_plain, lip_posed = _lip_corr(a, ralph.gt), _lip_corr(b, ralph.gt)
    assert lip_plain > 0.3 and abs(lip_posed - lip_plain) <= 0.1 * lip_plain, (lip_plain, lip_posed)
    assert posed.config.pose == PoseConfig(source=str(ralph.landmarks), loop=True)


def test_pose_from_a_clip_on_another_persons_photo(ralph, shipped, shared_data):
    _, posed = shipped
    out = posed(shared_data / "faces" / "obama.jpg", (ralph.clip.audio, ralph.clip.sample_rate)).keypoints.points
    cx, cy = _nose_corr(out.astype(np.float64), ralph.gt)
    assert cx > 0.8 and cy > 0.8, (cx, cy)
    iod = M.reference_iod(out)
    amp = np.abs(out[:, NOSE] - out[0, NOSE]).mean() / iod
    real = np.abs(ralph.gt[:, NOSE] - ralph.gt[0, NOSE]).mean() / M.reference_iod(ralph.gt)
    assert 0.8 < amp / real < 1.25  # the motion in units of each face's size


@pytest.mark.parametrize("generator", ["static", "procedural", "audio2keypoint"])
def test_a_still_source_gives_a_still_nose_tip(ralph, tmp_path, generator):
    still = tmp_path / "still.npy"
    np.save(still, np.repeat(ralph.clip.keypoints[40:41], 20, 0).astype(np.float32))  # a face that never moves
    pipe = Pipeline.from_config(
        {"renderer": None, "device": "cpu", "generator": generator, "pose": {"source": str(still)}}
    )
    out = pipe(ralph.photo, (ralph.clip.audio, ralph.clip.sample_rate)).keypoints.points
    assert np.abs(out[:, 27:36] - out[0, 27:36]).max() < 1e-3  # the whole nose, its tip (30) too
    if generator != "static":  # the mouth still follows the speech
        assert M.opening_std(M.mouth_opening(out, M.reference_iod(out))) > 0.01


def test_a_video_source_is_read_only_as_far_as_needed(ralph):
    """A video's faces are found by the pipeline's detector (dlib here), at the keypoints' frame rate: the same pose as
    the clip's dlib landmarks; a 1 s speech reads 25 frames."""
    pipe = Pipeline.from_config(
        {"renderer": None, "device": "cpu", "generator": "static", "pose": {"source": str(ralph.video)}}
    )
    assert pipe.pose.is_video
    short = pipe(ralph.photo, (ralph.clip.audio[: ralph.clip.sample_rate], ralph.clip.sample_rate)).keypoints
    assert len(short) == 25 and len(pipe.pose._points) == 25
    from_file = PoseSource({"source": str(ralph.landmarks)})
    ref = Keypoints(ralph.gt[:1].astype(np.float32))
    expected = from_file.apply(Keypoints(np.repeat(ref.points, 25, 0)), ref).points
    assert np.abs(short.points - expected).max() < 1e-3


def test_looping_holding_and_cutting_through_the_pipeline(ralph, tmp_path):
    part = tmp_path / "part.json"
    formats.write(part, Keypoints(ralph.clip.keypoints[:30].astype(np.float32)))
    speech = (ralph.clip.audio, ralph.clip.sample_rate)

    def run(source, loop=True, audio=speech):
        cfg = {"renderer": None, "device": "cpu", "generator": "static", "pose": {"source": str(source), "loop": loop}}
        return Pipeline.from_config(cfg)(ralph.photo, audio).keypoints.points

    T = len(ralph.gt)
    looped, held = run(part), run(part, loop=False)
    assert len(looped) == len(held) == T
    idx = source_frames(T, 30, loop=True)
    assert np.abs(looped - looped[idx]).max() < 1e-4 and np.abs(looped[29] - looped[0]).max() > 1
    step = np.abs(np.diff(looped[:, NOSE], axis=0)).max()  # ping-pong: no jump where the source turns
    assert step <= np.abs(np.diff(looped[:30, NOSE], axis=0)).max() + 1e-4
    assert np.abs(held[:30] - looped[:30]).max() < 1e-4 and np.abs(held[30:] - held[29]).max() < 1e-4
    full = run(ralph.landmarks)  # longer than a 2 s speech: cut
    cut = run(ralph.landmarks, audio=(ralph.clip.audio[: 2 * ralph.clip.sample_rate], ralph.clip.sample_rate))
    assert len(cut) == 50 and np.abs(cut - full[:50]).max() < 1e-3


def test_bad_sources_are_refused_with_the_file_and_the_fix(tmp_path, ralph):
    base = {"renderer": None, "device": "cpu", "generator": "static"}
    with pytest.raises(ConfigError, match=r"pose\.source: .*nope\.json not found"):
        Pipeline.from_config({**base, "pose": {"source": str(tmp_path / "nope.json")}})
    np.save(tmp_path / "bad.npy", np.zeros((5, 10), np.float32))
    with pytest.raises(InputError, match=r"cannot use .*bad\.npy as a pose source: .*give a video of one face"):
        Pipeline.from_config({**base, "pose": str(tmp_path / "bad.npy")})
    (tmp_path / "pose.txt").write_text("1 2 3\n")
    with pytest.raises(InputError, match=r"pose\.txt as a pose source: .*unsupported extension '\.txt'"):
        Pipeline.from_config({**base, "pose": str(tmp_path / "pose.txt")})
    with pytest.raises(ConfigError, match=r"pose\.lop: unknown key"):
        load_config({"pose": {"source": "x.npy", "lop": False}})
    with pytest.raises(ConfigError, match=r"pose\.format: .* is a video"):
        Pipeline.from_config({**base, "pose": {"source": str(ralph.video), "format": "npy"}})
    blank = tmp_path / "blank.mp4"
    write_video(blank, (np.full((64, 64, 3), 90, np.uint8) for _ in range(10)), 25)
    pipe = Pipeline.from_config({**base, "pose": str(blank)})
    with pytest.raises(InputError, match=r"blank\.mp4 as a pose source: the detector 'dlib' found no face"):
        pipe(ralph.photo, (ralph.clip.audio[:8000], ralph.clip.sample_rate))
    with pytest.raises(InputError, match=r"blank\.mp4 as a pose source: the detector 'dlib' found no face"):
        pipe.stream(reference=Keypoints(ralph.gt[:1].astype(np.float32)))  # a stream reads its source when it opens


# ------------------------------------------------------------------------------------------------------ the CLI


def a2k(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "a2k_toolkit.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def test_cli_pose_from_and_no_pose_loop(ralph, tmp_path):
    short = tmp_path / "short.json"  # 40 frames of the clip's landmarks, for a 114-frame speech
    formats.write(short, Keypoints(ralph.clip.keypoints[:40].astype(np.float32)))
    out = tmp_path / "kp.npy"
    gen = ["generate", "--image", ralph.photo_path, "--audio", ralph.speech, "--keypoints-out", out]
    proc = a2k(*gen, "--pose-from", short, "--no-pose-loop")
    assert proc.returncode == 0, proc.stderr
    pts = np.load(out).astype(np.float64)
    assert len(pts) == len(ralph.gt)
    cx, cy = _nose_corr(pts[:40], ralph.gt[:40])
    assert cx > 0.8 and cy > 0.8, (cx, cy)
    assert np.abs(pts[39:, NOSE] - pts[39, NOSE]).max() < 1e-3  # held: the last pose, the nose tip still

    def refused(*args, needles):
        proc = a2k(*gen, *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
        for n in needles:
            assert n in proc.stderr, (n, proc.stderr)

    refused("--pose-from", tmp_path / "missing.npz", needles=["--pose-from", "missing.npz: not found"])
    refused("--no-pose-loop", needles=["--no-pose-loop needs a pose source", "--pose-from PATH"])
    (tmp_path / "bad.json").write_text(json.dumps({"hello": 1}))
    refused("--pose-from", tmp_path / "bad.json", needles=["bad.json as a pose source", "a2k convert --list"])


def test_the_docs_describe_the_control():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    doc = (repo / "docs" / "controls.md").read_text("utf-8")
    for key in PoseConfig.model_fields:
        assert f"  {key}: " in doc, key  # every key in the example config
    assert "--pose-from" in doc and "--no-pose-loop" in doc
    figure = repo / "docs" / "images" / "pose-transfer.png"
    assert "(images/pose-transfer.png)" in doc and figure.is_file() and figure.stat().st_size < 150_000
    assert "docs/controls.md" in (repo / "README.md").read_text("utf-8")
