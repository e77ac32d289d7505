"""Motion controls of the learned generator: head motion scale and mouth scale (audio2keypoint params), on synthetic
poses with a known answer and through the shipped model."""

from __future__ import annotations

import numpy as np
import pytest

from a2k_toolkit.builtin.audio2keypoint import Audio2KeypointGenerator
from a2k_toolkit.keypoints import Keypoints, mouth_gap, similarity
from a2k_toolkit.motion import rescale_motion
from a2k_toolkit.testing import mean_face


def _posed(T: int = 40, seed: int = 0):
    """Frames of a reference face under known poses (rotation, scale, translation about its rigid centroid) with a
    moving mouth."""
    rng = np.random.default_rng(seed)
    ref = mean_face().astype(np.float64)
    c = ref[17:48].mean(0)
    theta, scale, shift = rng.normal(0, 0.08, T), np.exp(rng.normal(0, 0.04, T)), rng.normal(0, 4.0, (T, 2))
    theta[0], scale[0], shift[0] = 0.0, 1.0, 0.0
    local = np.repeat(ref[None], T, 0)
    local[:, 57:60, 1] += np.abs(rng.normal(0, 3.0, (T, 1)))  # the lower lip drops
    local[:, 65:68, 1] += local[:, 57:58, 1] - ref[57, 1]
    local[0] = ref
    rot = np.stack([np.stack([np.cos(theta), -np.sin(theta)], -1), np.stack([np.sin(theta), np.cos(theta)], -1)], 1)
    pts = np.einsum("tij,tnj->tni", rot, local - c) * scale[:, None, None] + c + shift[:, None]
    return ref, local, pts, (theta, scale, shift)


def test_identity_still_head_and_livelier_head():
    ref, local, pts, (theta, scale, shift) = _posed()
    same = rescale_motion(pts.copy(), ref, 1.0, 1.0)
    assert np.abs(same - pts).max() < 1e-9
    still = rescale_motion(pts.copy(), ref, 0.0, 1.0)
    assert np.abs(still - local).max() < 1e-9  # the expression, in the reference's pose
    turned = pts.copy()
    turned[:, 27:36, 0] += 2.0  # the nose off the similarity pose (a turn out of the image plane)
    assert np.abs(rescale_motion(turned, ref, 0.0, 1.0)[:, 27:36] - ref[27:36]).max() < 1e-9
    twice = rescale_motion(pts.copy(), ref, 2.0, 1.0)
    a, b = similarity(ref[17:48], twice[:, 17:48])
    assert np.allclose(np.angle(a), 2 * theta, atol=1e-9) and np.allclose(np.abs(a), scale**2, atol=1e-9)
    c = ref[17:48].mean(0)
    moved = a * complex(*c) + b - complex(*c)
    assert np.allclose(np.stack([moved.real, moved.imag], -1), 2 * shift, atol=1e-9)
    # the nose tip's spread (the head motion metric) doubles
    spread = lambda p: np.sqrt(((p[:, 30] - p[:, 30].mean(0)) ** 2).sum(-1).mean())  # noqa: E731
    assert spread(twice) == pytest.approx(2 * spread(pts), rel=0.15)


def test_mouth_scale_scales_the_opening_in_the_heads_frame():
    ref, local, pts, _ = _posed()
    gap = mouth_gap(local) - mouth_gap(ref)
    for m in (0.0, 0.5, 1.5):
        out = rescale_motion(pts.copy(), ref, 0.0, m)  # head 0: back in the reference's pose, to compare with local
        assert np.allclose(mouth_gap(out) - mouth_gap(ref), m * gap, atol=1e-9)
        assert np.abs(out[:, 17:48] - ref[17:48]).max() < 1e-9  # brows, eyes, nose untouched by the mouth scale


def test_the_shipped_model_takes_the_controls(sample_speech_path):
    from a2k_toolkit.builtin.logmel import LogMel as LogMelFrontend
    from a2k_toolkit.io import load_audio

    audio = load_audio(sample_speech_path, 16000)[: 16000 * 4]
    feats = LogMelFrontend()(audio, 16000)
    ref = Keypoints(mean_face()[None].astype(np.float32), image_size=(256, 256))
    # the energy mouth (a default of the shipped model) adds a jaw drop the mouth scale does not scale: off here
    plain = Audio2KeypointGenerator({"head_motion": 1.0, "mouth_scale": 1.0, "energy_mouth": 0}).generate(feats, ref)
    plain = plain.points
    still = Audio2KeypointGenerator({"head_motion": 0.0}).generate(feats, ref).points
    lively = Audio2KeypointGenerator({"head_motion": 2.0, "mouth_scale": 1.5, "energy_mouth": 0}).generate(feats, ref)
    lively = lively.points
    nose = lambda p: np.linalg.norm(p[:, 30] - p[0, 30], axis=-1).mean()  # noqa: E731
    assert nose(still) < 1e-3 < nose(plain) < nose(lively)
    amp = lambda p: np.std(mouth_gap(p))  # noqa: E731
    assert amp(lively) > 1.3 * amp(plain)
    with pytest.raises(Exception, match="head_motion"):
        Audio2KeypointGenerator({"head_motion": -1})


def test_an_ensemble_directory_carries_the_settings_it_was_chosen_with(tmp_path, tiny_a2k_checkpoint):
    from a2k_toolkit.errors import CheckpointError
    from a2k_toolkit.models.ensemble import checkpoint_defaults, write_ensemble

    out = write_ensemble(tmp_path / "pkg", [tiny_a2k_checkpoint], "one member", {"head_motion": 2.5})
    assert checkpoint_defaults(out) == {"head_motion": 2.5} and checkpoint_defaults(tiny_a2k_checkpoint) == {}
    gen = Audio2KeypointGenerator({"checkpoint": str(out)})
    assert (gen.head_motion, gen.mouth_scale) == (2.5, 1.0)
    assert Audio2KeypointGenerator({"checkpoint": str(out), "head_motion": 1.0}).head_motion == 1.0  # params win
    with pytest.raises(CheckpointError, match="unknown default 'speed'"):
        write_ensemble(tmp_path / "bad", [tiny_a2k_checkpoint], "", {"speed": 2})
    with pytest.raises(CheckpointError, match=r"must be a number in \[0, 4\]"):
        write_ensemble(tmp_path / "bad", [tiny_a2k_checkpoint], "", {"head_motion": 9})


def test_ensemble_cli_packages_defaults(tmp_path, tiny_a2k_checkpoint):
    import json
    import subprocess
    import sys

    def run(*a):
        return subprocess.run([sys.executable, "-m", "a2k_toolkit.cli", "ensemble", *a], capture_output=True, text=True)

    r = run(str(tmp_path / "e"), str(tiny_a2k_checkpoint), "--default", "mouth_scale=1.2")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "e" / "ensemble.json").read_text())["defaults"] == {"mouth_scale": 1.2}
    r = run(str(tmp_path / "f"), str(tiny_a2k_checkpoint), "--default", "mouth_scale")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "PARAM=NUMBER" in r.stderr
    r = run(str(tmp_path / "g"), str(tiny_a2k_checkpoint))
    assert r.returncode == 2 and "at least 2 checkpoints" in r.stderr


def _eye_gap(p):
    return np.linalg.norm(p[:, [37, 38, 43, 44]] - p[:, [41, 40, 47, 46]], axis=-1).mean(1)


def test_blinks_in_the_learned_model(sample_speech_path):
    from a2k_toolkit.builtin.logmel import LogMel
    from a2k_toolkit.io import load_audio

    audio = load_audio(sample_speech_path, 16000)
    feats = LogMel()(audio, 16000)
    ref = Keypoints(mean_face()[None].astype(np.float32), image_size=(256, 256))
    plain = Audio2KeypointGenerator({"blink_interval": 0}).generate(feats, ref).points
    blinking = Audio2KeypointGenerator({"blink_interval": 1.0})
    a, b = blinking.generate(feats, ref, seed=3).points, blinking.generate(feats, ref, seed=3).points
    # the seed fixes the blink times (the network's output itself is equal to float32 rounding: on a busy CPU the
    # windows may run on worker threads)
    assert np.allclose(a, b, atol=1e-3)
    closed = _eye_gap(a) < 0.3 * _eye_gap(plain)
    seconds = len(a) / 25
    assert 0.4 * seconds <= closed.sum() / 3 <= 2.5 * seconds  # about one 3-frame-deep blink a second
    assert np.allclose(np.delete(a, [37, 38, 43, 44], axis=1), np.delete(plain, [37, 38, 43, 44], axis=1), atol=1e-3)
    other = blinking.generate(feats, ref, seed=4).points
    assert np.abs(_eye_gap(other) - _eye_gap(a)).max() > 0.3 * np.median(_eye_gap(plain))  # other blink times


def test_procedural_blinks_are_the_shared_ones():
    from a2k_toolkit.builtin.baselines import ProceduralGenerator

    feats = np.abs(np.random.default_rng(0).normal(size=(300, 320))).astype(np.float32) - 60
    ref = Keypoints(mean_face()[None].astype(np.float32), image_size=(256, 256))
    p = ProceduralGenerator({"blink_interval": 2.0}).generate(feats, ref, seed=1).points
    gap = _eye_gap(p)
    closed = gap < 0.3 * np.median(gap)
    assert 3 <= closed.sum() / 3 <= 10 and not closed[0]  # 12 s at one blink every 2 s (3 closed frames each)


def test_jaw_drop_is_carried_to_the_heads_pose():
    from a2k_toolkit.motion import add_jaw_drop, jaw_drop_offsets

    ref, local, pts, (theta, scale, _) = _posed()
    drop = np.linspace(0.0, 5.0, len(pts))
    out = add_jaw_drop(pts.copy(), ref, drop)
    # back in the reference's pose, the drop is procedural's jaw drop in the upright face: lower lip by `drop`, chin
    # by 0.7 of it, brows, eyes and nose untouched
    upright = rescale_motion(out.copy(), ref, 0.0, 1.0)
    np.testing.assert_allclose(upright - local, jaw_drop_offsets(drop), atol=1e-9)
    assert np.abs(out[:, 17:48] - pts[:, 17:48]).max() == 0
    # in the image, the lower lip moves along the head's down direction, scaled with the head
    moved = out[:, 57] - pts[:, 57]
    down = np.stack([-np.sin(theta), np.cos(theta)], -1) * (scale * drop)[:, None]
    np.testing.assert_allclose(moved, down, atol=1e-9)


def test_energy_mouth_follows_the_loudness(sample_speech_path):
    from a2k_toolkit.builtin.baselines import ProceduralGenerator
    from a2k_toolkit.builtin.logmel import LogMel
    from a2k_toolkit.errors import ConfigError
    from a2k_toolkit.io import load_audio

    audio = load_audio(sample_speech_path, 16000)[: 16000 * 6]
    audio = np.concatenate([audio, np.zeros(16000 * 2, np.float32)])  # speech, then 2 s of silence
    feats = LogMel()(audio, 16000)
    ref = Keypoints(mean_face()[None].astype(np.float32), image_size=(256, 256))
    plain = Audio2KeypointGenerator({"energy_mouth": 0.0, "blink_interval": 0}).generate(feats, ref).points
    ener = Audio2KeypointGenerator({"energy_mouth": 1.0, "blink_interval": 0}).generate(feats, ref).points
    proc = ProceduralGenerator({"head_motion": 0.0}).generate(feats, ref, seed=0).points
    added = mouth_gap(ener) - mouth_gap(plain)
    own = mouth_gap(proc) - mouth_gap(ref.points[0])
    # energy 1 adds procedural's own opening (the head pose of the network's frames changes it by its scale only)
    assert np.corrcoef(added[1:], own[1:])[0, 1] > 0.99
    assert np.median(added[own > 0.5 * own.max()] / own[own > 0.5 * own.max()]) == pytest.approx(1.0, abs=0.1)
    assert added[-40:].max() < 0.05 * added.max()  # nothing added in the silence
    assert np.abs(np.delete(ener, np.r_[4:13, 55:68], 1) - np.delete(plain, np.r_[4:13, 55:68], 1)).max() < 1e-3
    half = Audio2KeypointGenerator({"energy_mouth": 0.5, "blink_interval": 0}).generate(feats, ref).points
    np.testing.assert_allclose(mouth_gap(half) - mouth_gap(plain), 0.5 * added, rtol=0.01, atol=1e-3)
    with pytest.raises(Exception, match="energy_mouth"):
        Audio2KeypointGenerator({"energy_mouth": -1})

    class NotLogPower(LogMel):
        log_power = False

    with pytest.raises(ConfigError, match="energy_mouth reads loudness"):
        Audio2KeypointGenerator({"energy_mouth": 1.0}).check_frontend(NotLogPower())


def test_procedural_head_motion_and_mouth_open_scale_what_they_say(sample_speech_path):
    """procedural's head_motion (sway amplitude, face sizes) and mouth_open (largest jaw drop, face sizes): 0 gives a
    still nose tip / the reference's mouth, twice the value twice the motion, and neither moves what the other
    drives."""
    from a2k_toolkit.builtin.baselines import ProceduralGenerator
    from a2k_toolkit.builtin.logmel import LogMel
    from a2k_toolkit.io import load_audio

    feats = LogMel()(load_audio(sample_speech_path, 16000)[: 16000 * 4], 16000)
    ref = Keypoints(mean_face()[None].astype(np.float32), image_size=(256, 256))

    def run(**params):
        return ProceduralGenerator({"blink_interval": 60.0, **params}).generate(feats, ref, seed=2).points

    nose = lambda p: np.linalg.norm(p[:, 30] - p[0, 30], axis=-1)  # noqa: E731
    still, default, twice = run(head_motion=0.0), run(), run(head_motion=0.08)
    assert nose(still).max() < 1e-4 < 0.5 < nose(default).max()  # pixels of a 256 px face
    # the sway's translation is linear in head_motion, its small turn nearly so
    assert nose(twice).mean() == pytest.approx(2 * nose(default).mean(), rel=0.05)
    # the mouth: head 0 keeps the face upright, so the inner-lip gap's change is the jaw drop itself
    gap = lambda p: mouth_gap(p) - mouth_gap(ref.points[0])  # noqa: E731
    shut, half, full = (run(head_motion=0.0, mouth_open=m) for m in (0.0, 0.35, 0.7))
    assert np.abs(gap(shut)).max() < 1e-4 and gap(half).max() > 1.0
    np.testing.assert_allclose(gap(full), 2 * gap(half), atol=1e-3)
    np.testing.assert_allclose(full[:, 17:48], shut[:, 17:48], atol=1e-4)  # brows, eyes, nose: not the mouth's
    np.testing.assert_allclose(nose(run(mouth_open=0.0)), nose(default), atol=1e-4)  # the head: not the mouth's
