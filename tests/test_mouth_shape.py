"""``keep_mouth_shape``: the network's frame-0 mouth-shape error, which the start anchor corrects and fades out, kept
corrected on every frame (motion.hold_mouth_shape), offline, through the shipped model and as an ensemble default."""

from __future__ import annotations

import numpy as np
import pytest

from a2k_toolkit.builtin.audio2keypoint import Audio2KeypointGenerator
from a2k_toolkit.builtin.logmel import LogMel
from a2k_toolkit.errors import CheckpointError
from a2k_toolkit.io import load_audio
from a2k_toolkit.keypoints import Keypoints
from a2k_toolkit.motion import anchor_start, hold_mouth_shape
from a2k_toolkit.testing import mean_face

MOUTH = np.arange(48, 68)


def test_hold_mouth_shape_keeps_the_references_mouth_relative_to_the_nose():
    rng = np.random.default_rng(0)
    ref = mean_face().astype(np.float64) * 2.0 + 50.0
    first = ref + rng.normal(0, 1.5, ref.shape)  # the network's frame 0: a wrong mouth shape, a shifted nose
    T, frames = 20, 8
    net = first[None] + rng.normal(0, 0.3, (T, 68, 2))
    net[0] = first
    anchored = anchor_start(net.reshape(T, -1), ref.reshape(-1), frames).reshape(T, 68, 2)
    held = hold_mouth_shape(anchored.copy(), ref, first, frames)
    np.testing.assert_allclose(held[0], ref, atol=1e-12)  # frame 0 is still the reference
    # after the ramp, the anchor is gone but the mouth keeps the reference's shape about the network's nose
    want = ref[MOUTH] - ref[30] + (net[frames:, MOUTH] - first[MOUTH]) - (net[frames:, 30:31] - first[30])
    np.testing.assert_allclose(held[frames:, MOUTH] - held[frames:, 30:31], want, atol=1e-9)
    # within the ramp the kept part grows linearly (weight t / frames): no seam
    extra = held - anchored
    off = (ref - first)[MOUTH] - (ref - first)[30]
    for t in range(T):
        np.testing.assert_allclose(extra[t, MOUTH], min(t / frames, 1.0) * off, atol=1e-9)
    assert np.abs(np.delete(extra, MOUTH, 1)).max() == 0  # only the mouth moves
    half = hold_mouth_shape(anchored.copy(), ref, first, frames, keep=0.5)
    np.testing.assert_allclose(half - anchored, 0.5 * extra, atol=1e-9)
    # frames carried on from a later start (a stream) get the weights of their own indices
    np.testing.assert_allclose(hold_mouth_shape(anchored[5:].copy(), ref, first, frames, start=5), held[5:])
    assert hold_mouth_shape(anchored.copy(), ref, first, frames, keep=0.0) is not None


def test_the_learned_generator_keeps_the_mouth_shape(sample_speech_path):
    feats = LogMel()(load_audio(sample_speech_path, 16000)[: 16000 * 4], 16000)
    ref = Keypoints(mean_face()[None].astype(np.float32) * 1.3 + 20, image_size=(256, 256))
    settings = {"head_motion": 1.0, "mouth_scale": 1.0, "energy_mouth": 0.0, "blink_interval": 0.0}
    plain = Audio2KeypointGenerator({**settings, "keep_mouth_shape": 0.0}).generate(feats, ref).points
    kept = Audio2KeypointGenerator({**settings, "keep_mouth_shape": 1.0}).generate(feats, ref).points
    np.testing.assert_array_equal(kept[0], ref.points[0])
    extra = kept.astype(np.float64) - plain
    # the rest of the face is untouched: the two runs' networks agree to float32 rounding (a last-bit difference seen
    # on a loaded machine), far under a thousandth of a pixel
    assert np.abs(np.delete(extra, MOUTH, 1)).max() < 1e-3
    late = extra[8:, MOUTH]  # past the 8-frame anchor: one constant offset, the network's frame-0 mouth error
    np.testing.assert_allclose(late, np.broadcast_to(late[0], late.shape), atol=1e-3)
    assert np.abs(late[0]).max() > 0.01  # the shipped network does not draw this face's mouth exactly
    np.testing.assert_allclose(extra[4, MOUTH], 0.5 * late[0], atol=1e-3)
    with pytest.raises(Exception, match="keep_mouth_shape"):
        Audio2KeypointGenerator({"keep_mouth_shape": 1.5})


def test_keep_mouth_shape_is_an_ensemble_default(tmp_path, tiny_a2k_checkpoint):
    from a2k_toolkit.models.ensemble import checkpoint_defaults, write_ensemble

    out = write_ensemble(tmp_path / "pkg", [tiny_a2k_checkpoint], "one member", {"keep_mouth_shape": 1.0})
    assert checkpoint_defaults(out) == {"keep_mouth_shape": 1.0}
    assert Audio2KeypointGenerator({"checkpoint": str(out)}).keep_mouth_shape == 1.0
    assert Audio2KeypointGenerator({"checkpoint": str(out), "keep_mouth_shape": 0.0}).keep_mouth_shape == 0.0
    assert Audio2KeypointGenerator({"checkpoint": str(tiny_a2k_checkpoint)}).keep_mouth_shape == 0.0
    with pytest.raises(CheckpointError, match=r"keep_mouth_shape = 2 must be a number in \[0, 1\]"):
        write_ensemble(tmp_path / "bad", [tiny_a2k_checkpoint], "", {"keep_mouth_shape": 2})


def _rotate(points: np.ndarray, theta: float, shift=(0.0, 0.0)) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return points @ np.array([[c, s], [-s, c]]) + np.asarray(shift)


def test_lips_meet_rather_than_cross_in_the_heads_frame():
    from a2k_toolkit.motion import LIP_PAIRS, LOWER_LIP, meet_lips

    ref = mean_face().astype(np.float64) * 3.0 + 100.0
    T = 6
    local = np.repeat(ref[None], T, 0)
    down = (ref[8] - ref[27]) / np.linalg.norm(ref[8] - ref[27])
    gap0 = min((ref[lo] - ref[up]) @ down for up, lo in LIP_PAIRS)  # the mean face's mouth is open
    local[:, 62] += 2.0 * down  # the upper inner lip pushed down...
    up_by = gap0 + np.array([4.0, 1.0, 6.0])
    local[:3, LOWER_LIP] -= up_by[:, None, None] * down  # ... and the lower lip above it on 3 frames
    thetas = np.linspace(-0.3, 0.3, T)  # each frame's head turned and moved: the check is in the head's frame
    frames = np.stack([_rotate(local[t], thetas[t], (5.0 * t, -2.0 * t)) for t in range(T)])
    out = meet_lips(frames.copy(), ref)

    def gaps(points):
        back = np.stack([_rotate(points[t] - (5.0 * t, -2.0 * t), -thetas[t]) for t in range(T)])
        return np.stack([(back[:, lo] - back[:, up]) @ down for up, lo in LIP_PAIRS], 1)

    before, after = gaps(frames), gaps(out)
    assert (before.min(1)[:3] < 0).all() and (before.min(1)[3:] >= 0).all()
    np.testing.assert_allclose(after.min(1)[:3], 0.0, atol=1e-9)  # the lips just touch
    np.testing.assert_array_equal(out[3:], frames[3:])  # frames whose lips do not cross: untouched
    moved = np.abs(out - frames).max(-1)
    assert moved[:3, LOWER_LIP].min() > 0.9 and np.delete(moved[:3], LOWER_LIP, 1).max() == 0
    # the lower lip kept its shape: every point moved by the same vector
    shift = out[:3, LOWER_LIP] - frames[:3, LOWER_LIP]
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1], shift.shape), atol=1e-9)


def test_the_learned_generator_never_crosses_the_lips(sample_speech_path):
    from a2k_toolkit.keypoints import similarity
    from a2k_toolkit.motion import LIP_PAIRS, RIGID

    feats = LogMel()(load_audio(sample_speech_path, 16000)[: 16000 * 6], 16000)
    ref = Keypoints(mean_face()[None].astype(np.float32) * 1.3 + 20, image_size=(256, 256))
    settings = {"head_motion": 0.0, "mouth_scale": 2.5, "energy_mouth": 0.0, "blink_interval": 0.0}
    crossed = Audio2KeypointGenerator({**settings, "lip_contact": False}).generate(feats, ref).points
    met = Audio2KeypointGenerator(settings).generate(feats, ref).points
    r = ref.points[0].astype(np.float64)
    down = (r[8] - r[27]) / np.linalg.norm(r[8] - r[27])

    def min_gap(p):
        # in each frame's head frame, as meet_lips promises (the eyes and brows move on their own, so a frame's pose
        # is not exactly the reference's even with head_motion 0)
        a, b = similarity(r[RIGID], p[:, RIGID].astype(np.float64))
        z = (p[..., 0] + 1j * p[..., 1] - b[:, None]) / a[:, None]
        local = np.stack([z.real, z.imag], -1)
        return np.min([(local[:, lo] - local[:, up]) @ down for up, lo in LIP_PAIRS], 0)

    assert (min_gap(crossed) < -0.05).sum() > 3  # a doubled mouth motion pushes the lips through each other
    assert min_gap(met).min() > -1e-3
    same = min_gap(crossed) >= 0  # frames whose lips do not cross are as generated (to float rounding of two runs)
    np.testing.assert_allclose(met[same], crossed[same], atol=1e-3)
