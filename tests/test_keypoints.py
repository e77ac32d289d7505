"""Keypoints type, topology, normalisation (paper §4.5) and keypoint files."""

from __future__ import annotations

import numpy as np
import pytest

from a2k_toolkit.errors import InputError
from a2k_toolkit.io import load_keypoints, save_keypoints
from a2k_toolkit.keypoints import EDGES, NOSE_BASE_INDEX, PARTS, Keypoints, Normalizer, face_scale
from a2k_toolkit.testing import mean_face


def test_topology_covers_all_points_once():
    idx = sorted(i for r in PARTS.values() for i in r)
    assert idx == list(range(68))
    assert len(EDGES) == (68 - len(PARTS)) + 4  # a chain per part, plus closing edges of eyes and lips
    assert (36, 41) not in EDGES and (41, 36) in EDGES


def test_keypoints_validation_and_slicing():
    kp = Keypoints(np.zeros((5, 68, 2)), fps=25, image_size=(100, 200))
    assert kp.points.dtype == np.float32 and len(kp) == 5 and kp.duration == pytest.approx(0.2)
    assert len(kp[1:3]) == 2 and kp[2].points.shape == (1, 68, 2) and kp[1:3].image_size == (100, 200)
    with pytest.raises(InputError, match=r"\(T, 68, 2\)"):
        Keypoints(np.zeros((5, 67, 2)))
    with pytest.raises(InputError, match="NaN"):
        Keypoints(np.full((1, 68, 2), np.nan))


def _seq(T=20, seed=0):
    rng = np.random.default_rng(seed)
    base = mean_face(300, 400)
    return (base[None] + rng.normal(0, 2, (T, 68, 2)) + np.linspace(0, 10, T)[:, None, None]).astype(np.float32)


def test_normalize_is_translation_and_scale_invariant_and_inverts():
    seq = _seq()
    norm = Normalizer.fit([_seq(seed=s) for s in range(5)])
    z = norm.normalize(seq, seq[0])
    assert z.shape == (20, 136)
    np.testing.assert_allclose(norm.denormalize(z, seq[0]), seq, atol=1e-3)
    moved = seq * 2.0 + np.array([50.0, -30.0], np.float32)
    np.testing.assert_allclose(norm.normalize(moved, moved[0]), z, atol=1e-4)


def test_base_point_is_subtracted():
    seq = _seq()
    c = Normalizer().centre(seq, seq[0]).reshape(-1, 68, 2)
    np.testing.assert_allclose(c[0, NOSE_BASE_INDEX], 0, atol=1e-6)
    assert face_scale(seq[0]) > 10


def test_fit_statistics_standardise_training_data():
    seqs = [_seq(seed=s) for s in range(20)]
    norm = Normalizer.fit(seqs)
    z = np.concatenate([norm.normalize(s, s[0]) for s in seqs])
    assert np.abs(z.mean(0)).max() < 1e-3
    assert np.allclose(z.std(0)[z.std(0) > 0.01], 1, atol=1e-2)
    again = Normalizer.from_dict(norm.to_dict())
    np.testing.assert_array_equal(again.mean, norm.mean)
    with pytest.raises(InputError):
        Normalizer.fit([])


@pytest.mark.parametrize("ext", [".npy", ".npz", ".json"])
def test_keypoint_files_round_trip(tmp_path, ext):
    kp = Keypoints(_seq(), fps=30.0, image_size=(300, 400), meta={"generator": "x"})
    path = tmp_path / f"kp{ext}"
    save_keypoints(path, kp)
    back = load_keypoints(path, fps=30.0)
    np.testing.assert_allclose(back.points, kp.points, atol=1e-3)
    assert back.fps == 30.0
    if ext != ".npy":
        assert back.image_size == (300, 400) and back.layout == "ibug68" and back.meta["generator"] == "x"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left behind


def test_keypoint_file_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_keypoints(tmp_path / "nope.npy")
    with pytest.raises(InputError, match="unsupported keypoint file extension"):
        save_keypoints(tmp_path / "kp.csv", Keypoints(_seq()))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot read keypoint file"):
        load_keypoints(bad)
