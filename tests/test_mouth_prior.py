"""The mouth prior (a2k_toolkit/mouth_prior.py): fitted by ridge regression from a clip's first-frame mouth to the
offset of its mean mouth, saved as safetensors, applied by ``audio2keypoint`` (``mouth_prior``), bundled with an
ensemble, fitted by ``a2k mouth-prior`` on exactly a training run's clips, and named per fold in eval configs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml

from a2k_toolkit.builtin.audio2keypoint import Audio2KeypointGenerator
from a2k_toolkit.builtin.logmel import LogMel
from a2k_toolkit.config import ComponentSpec
from a2k_toolkit.errors import CheckpointError, ConfigError, InputError
from a2k_toolkit.eval.config import EvalEntry, with_fold
from a2k_toolkit.io import load_audio
from a2k_toolkit.keypoints import Keypoints
from a2k_toolkit.models.ensemble import checkpoint_defaults, checkpoint_mouth_prior, write_ensemble
from a2k_toolkit.mouth_prior import (
    DIM,
    FILE_NAME,
    MouthPrior,
    clip_sample,
    fit_mouth_prior,
    load_mouth_prior,
    mouth_frame,
)
from a2k_toolkit.testing import mean_face

MOUTH = np.arange(48, 68)


def face(rng, mouth_noise=0.0):
    """The mean face at a random size, roll and place, its mouth points moved by ``mouth_noise`` (in IOD-ish units)."""
    f = mean_face().astype(np.float64)
    f[MOUTH] += rng.normal(0, mouth_noise, (20, 2)) * 40
    ang, s, t = rng.uniform(-0.3, 0.3), rng.uniform(1.0, 3.0), rng.uniform(20, 200, 2)
    z = (f[:, 0] + 1j * f[:, 1]) * s * np.exp(1j * ang) + complex(*t)
    return np.stack([z.real, z.imag], -1)


def test_the_mouth_frame_takes_out_place_size_and_roll():
    rng = np.random.default_rng(0)
    ref = face(rng)
    x = mouth_frame(ref, ref)
    z = ref[:, 0] + 1j * ref[:, 1]
    moved = z * 2.5 * np.exp(0.4j) + (30 - 7j)
    moved = np.stack([moved.real, moved.imag], -1)
    np.testing.assert_allclose(mouth_frame(moved, moved), x, atol=1e-12)
    # an offset in the mouth frame maps to pixels that rotate and scale with the face
    prior = MouthPrior(np.zeros(DIM), np.zeros((DIM, DIM)), rng.normal(0, 0.05, DIM))
    a, b = prior.offset(ref), prior.offset(moved)
    za, zb = a[:, 0] + 1j * a[:, 1], b[:, 0] + 1j * b[:, 1]
    np.testing.assert_allclose(zb, za * 2.5 * np.exp(0.4j), atol=1e-9)


def test_fit_recovers_a_linear_map_and_caps_a_large_family():
    rng = np.random.default_rng(1)
    A = rng.normal(0, 0.3, (DIM, DIM))
    c = rng.normal(0, 0.02, DIM)
    samples = []
    for _ in range(300):
        x = mouth_frame(face(rng, 0.02), face(rng)).reshape(DIM)  # any 40 numbers of the right scale
        samples.append((x, (x - 0.0) @ A + c, "grid"))
    prior = fit_mouth_prior(samples, ridge=1e-9)
    X = np.array([s[0] for s in samples])
    np.testing.assert_allclose((X - prior.mean) @ prior.weights + prior.bias, X @ A + c, atol=1e-6)
    assert prior.meta["clips"] == 300 and prior.meta["families"] == {"grid": 300}
    # a family of 1000 clips with offset +1 against one of 10 with -1: capped at 10, they weigh the same
    x0 = np.zeros(DIM)
    many = [(x0 + rng.normal(0, 1e-3, DIM), np.ones(DIM), "lrcar") for _ in range(1000)]
    few = [(x0 + rng.normal(0, 1e-3, DIM), -np.ones(DIM), "mead") for _ in range(10)]
    capped = fit_mouth_prior(many + few, ridge=1.0, family_cap=10)
    np.testing.assert_allclose(capped.bias, 0.0, atol=1e-9)
    uncapped = fit_mouth_prior(many + few, ridge=1.0, family_cap=10_000)
    assert uncapped.bias.mean() > 0.9
    with pytest.raises(InputError, match="at least 2 usable clips"):
        fit_mouth_prior(samples[:1])


def test_a_clip_sample_is_its_first_mouth_and_the_mean_offset():
    rng = np.random.default_rng(2)
    ref = face(rng)
    T = 20
    clip = np.repeat(ref[None], T, 0)
    clip[1:, 57, 1] += 10.0  # the lower lip drops 10 px on every later frame
    x, y = clip_sample(clip)
    np.testing.assert_allclose(x, mouth_frame(ref, ref).reshape(DIM))
    want = (mouth_frame(clip[1:], ref).mean(0) - mouth_frame(ref, ref)).reshape(DIM)
    np.testing.assert_allclose(y, want, atol=1e-12)
    assert np.count_nonzero(np.abs(y) > 1e-12) == 2  # point 57's x and y in the rolled frame, nothing else
    valid = np.ones(T, bool)
    valid[0] = False
    assert clip_sample(clip, valid) is None  # no face on frame 0: no photo to start from
    assert clip_sample(clip[:5]) is None  # too short to say where the mouth sits


def test_save_load_round_trip_and_clear_errors(tmp_path):
    rng = np.random.default_rng(3)
    prior = MouthPrior(rng.normal(size=DIM), rng.normal(size=(DIM, DIM)), rng.normal(size=DIM), {"clips": 7})
    prior.save(tmp_path / FILE_NAME)
    back = load_mouth_prior(tmp_path)  # a directory means its mouth_prior.safetensors
    for k in ("mean", "weights", "bias"):
        np.testing.assert_array_equal(getattr(back, k), getattr(prior, k))
    assert back.meta == {"clips": 7}
    with pytest.raises(CheckpointError, match="a2k mouth-prior"):
        load_mouth_prior(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="cannot read the mouth prior"):
        load_mouth_prior(tmp_path / "junk.safetensors")
    from safetensors.numpy import save_file

    save_file({"mean": np.zeros(DIM)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not an a2k mouth prior"):
        load_mouth_prior(tmp_path / "other.safetensors")
    bad = MouthPrior(np.zeros(DIM), np.zeros((DIM, DIM)), np.zeros(DIM))
    bad.weights = np.zeros((DIM, 3))
    bad.save(tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="'weights' is missing, not of shape"):
        load_mouth_prior(tmp_path / "bad.safetensors")


@pytest.fixture(scope="module")
def prior_file(tmp_path_factory):
    rng = np.random.default_rng(4)
    path = tmp_path_factory.mktemp("prior") / "prior.safetensors"
    MouthPrior(np.zeros(DIM), rng.normal(0, 0.02, (DIM, DIM)), rng.normal(0, 0.01, DIM)).save(path)
    return path


def test_the_generator_adds_the_prior_to_the_mouth_only(sample_speech_path, tiny_a2k_checkpoint, prior_file):
    feats = LogMel()(load_audio(sample_speech_path, 16000)[: 16000 * 2], 16000)
    ref = Keypoints(mean_face()[None].astype(np.float32) * 1.3 + 20, image_size=(256, 256))
    # lips that meet would move a lip the offset pushes through the other; this checks the offset alone
    base = {"checkpoint": str(tiny_a2k_checkpoint), "anchor_frames": 8, "lip_contact": False}
    plain = Audio2KeypointGenerator(base).generate(feats, ref).points
    gen = Audio2KeypointGenerator({**base, "mouth_prior": 0.5, "mouth_prior_file": str(prior_file)})
    moved = gen.generate(feats, ref).points
    extra = moved.astype(np.float64) - plain
    np.testing.assert_array_equal(moved[0], ref.points[0])  # frame 0 is the reference
    assert np.abs(np.delete(extra, MOUTH, 1)).max() < 1e-3
    want = 0.5 * load_mouth_prior(prior_file).offset(ref.points[0])
    np.testing.assert_allclose(extra[8:, MOUTH], np.broadcast_to(want, extra[8:, MOUTH].shape), atol=1e-3)
    np.testing.assert_allclose(extra[4, MOUTH], 0.5 * want, atol=1e-3)  # the anchor's ramp: no seam
    assert np.abs(want).max() > 0.1
    with pytest.raises(ConfigError, match="needs a mouth prior"):
        Audio2KeypointGenerator({**base, "mouth_prior": 0.5})
    with pytest.raises(Exception, match="mouth_prior"):
        Audio2KeypointGenerator({**base, "mouth_prior": 3.0})


def test_an_ensemble_bundles_its_prior_and_strength(tmp_path, tiny_a2k_checkpoint, prior_file):
    out = write_ensemble(tmp_path / "pkg", [tiny_a2k_checkpoint], "", {"mouth_prior": 0.75}, prior_file)
    assert checkpoint_mouth_prior(out) == out / FILE_NAME
    assert checkpoint_defaults(out) == {"mouth_prior": 0.75}
    gen = Audio2KeypointGenerator({"checkpoint": str(out)})
    assert gen.mouth_prior == 0.75 and gen.prior is not None
    assert Audio2KeypointGenerator({"checkpoint": str(out), "mouth_prior": 0.0}).prior is None
    assert checkpoint_mouth_prior(tiny_a2k_checkpoint) is None
    (tmp_path / "broken.safetensors").write_bytes(b"not a prior")
    with pytest.raises(CheckpointError, match="cannot read the mouth prior"):
        write_ensemble(tmp_path / "pkg2", [tiny_a2k_checkpoint], "", None, tmp_path / "broken.safetensors")
    assert not (tmp_path / "pkg2").exists()


def test_eval_configs_name_one_prior_per_fold():
    spec = ComponentSpec(
        name="audio2keypoint",
        params={"checkpoint": ["runs/E-f{fold}/latest"], "mouth_prior_file": "runs/prior-f{fold}.safetensors"},
    )
    (e,) = with_fold([EvalEntry(label="K", generator=spec)], 2)
    assert e.generator.params["checkpoint"] == ["runs/E-f2/latest"]
    assert e.generator.params["mouth_prior_file"] == "runs/prior-f2.safetensors"
    only_prior = ComponentSpec(name="audio2keypoint", params={"mouth_prior_file": "p-f{fold}.safetensors"})
    with pytest.raises(ConfigError, match="--folds N"):
        with_fold([EvalEntry(label="P", generator=only_prior)], None)


def a2k(*args):
    return subprocess.run([sys.executable, "-m", "a2k_toolkit.cli", *map(str, args)], capture_output=True, text=True)


def test_the_cli_fits_on_a_runs_training_clips(tmp_path, real_clips_dir, tiny_train_config):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(tiny_train_config(real_clips_dir, tmp_path / "run")))
    out = tmp_path / "prior.safetensors"
    proc = a2k("mouth-prior", cfg, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "wrote mouth prior" in proc.stdout and "3 clips" in proc.stdout
    prior = load_mouth_prior(out)
    assert prior.meta["clips"] == 3 and prior.meta["config"] == str(cfg)
    # with --fold, the held-out fold's people are not in the fit (as `a2k train --fold` trains)
    proc = a2k("mouth-prior", cfg, "--fold", "0/3", "--out", tmp_path / "f0.safetensors")
    assert proc.returncode == 0, proc.stderr
    assert load_mouth_prior(tmp_path / "f0.safetensors").meta["clips"] == 2
    for args, needle in (
        (("--ridge", "0"), "--ridge must be > 0"),
        (("--fold", "3/3"), "--fold 3/3"),
        (("--family-cap", "0"), "--family-cap must be at least 1"),
    ):
        proc = a2k("mouth-prior", cfg, "--out", tmp_path / "x.safetensors", *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and needle in proc.stderr, proc.stderr
    assert not (tmp_path / "x.safetensors").exists()
