"""Metric unit tests on constructed keypoint sequences with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from a2k_toolkit.audio import frame_rms
from a2k_toolkit.errors import InputError
from a2k_toolkit.eval import metrics as M
from a2k_toolkit.keypoints import Normalizer, face_scale, interocular

IOD_UNITS = 2.0  # eye centres at x = -1 and x = +1 in face units


def face(gap: float = 0.2, scale: float = 30.0, centre=(112.0, 100.0)) -> np.ndarray:
    """A plausible 68-point face (68, 2) in pixels: eye centres exactly ``2 * scale`` apart, inner-lip gap ``gap``
    face units (so the mouth opening is ``gap / 2`` IOD)."""
    p = np.zeros((68, 2))
    th = np.linspace(np.pi, 0, 17)
    p[0:17] = np.stack([2.0 * np.cos(th), 0.3 + 2.2 * np.sin(th)], -1)
    p[17:22] = np.stack([np.linspace(-1.6, -0.4, 5), np.full(5, -0.7)], -1)
    p[22:27] = np.stack([np.linspace(0.4, 1.6, 5), np.full(5, -0.7)], -1)
    p[27:31] = np.stack([np.zeros(4), np.linspace(-0.3, 0.9, 4)], -1)
    p[31:36] = np.stack([np.linspace(-0.4, 0.4, 5), np.full(5, 1.1)], -1)
    a = np.deg2rad([180, 120, 60, 0, -60, -120])
    eye = np.stack([0.25 * np.cos(a), -0.08 * np.sin(a)], -1)  # symmetric hexagon: its centroid is the centre
    p[36:42] = eye + [-1.0, 0.0]
    p[42:48] = eye + [1.0, 0.0]
    a = np.linspace(np.pi, -np.pi, 12, endpoint=False)
    p[48:60] = np.stack([0.8 * np.cos(a), 1.9 - 0.35 * np.sin(a)], -1)
    up, lo = 1.9 - gap / 2, 1.9 + gap / 2
    p[60:68] = [[-0.6, 1.9], [-0.3, up], [0.0, up], [0.3, up], [0.6, 1.9], [0.3, lo], [0.0, lo], [-0.3, lo]]
    return p * scale + np.asarray(centre)


def sequence(gaps: np.ndarray, **kw) -> np.ndarray:
    return np.stack([face(g, **kw) for g in gaps])


def test_template_face_has_the_stated_iod_and_opening():
    f = face(0.2, scale=30.0)
    assert interocular(f) == pytest.approx(60.0)
    assert M.reference_iod(f[None]) == pytest.approx(60.0)
    assert M.mouth_opening(f[None], 60.0)[0] == pytest.approx(0.2 * 30 / 60)


# ------------------------------------------------------------------------------------------------------- correlation


def test_pearson_known_values_and_zero_variance_is_zero_not_nan():
    x = np.arange(10.0)
    assert M.pearson(x, 3 * x + 1) == pytest.approx(1.0)
    assert M.pearson(x, -x) == pytest.approx(-1.0)
    with np.errstate(all="raise"):  # no 0/0 anywhere
        assert M.pearson(x, np.full(10, 4.2)) == 0.0
        assert M.pearson(np.zeros(10), np.zeros(10)) == 0.0
    # float32 noise on a constant is still "constant"
    assert M.pearson(np.float32(0.1) + np.zeros(10, np.float32) * 3, x) == 0.0


def test_best_lag_recovers_a_known_delay_of_a_sine_mouth():
    t = np.arange(200)
    real = 0.1 + 0.05 * np.sin(2 * np.pi * t / 23.0)
    for k in (-3, -2, 0, 1, 3):
        pred = np.roll(real, k)  # pred[t] = real[t - k]: late by k frames
        corr, lag = M.best_lag_correlation(real, pred, 3)
        assert lag == k
        assert corr == pytest.approx(1.0, abs=1e-6)
    # a delay beyond the search range is not found; the best in range is worse than 1
    corr, lag = M.best_lag_correlation(real, np.roll(real, 6), 3)
    assert abs(lag) == 3 and corr < 0.95


def test_best_lag_with_noise_is_the_true_lag_and_correlation_matches_the_noise_level():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(5000)
    noisy = np.roll(s, 2) + rng.standard_normal(5000)  # corr of s with s + unit noise = 1/sqrt(2)
    corr, lag = M.best_lag_correlation(s, noisy, 3)
    assert lag == 2
    assert corr == pytest.approx(1 / np.sqrt(2), abs=0.03)


def test_still_series_give_zero_correlation_at_lag_zero():
    assert M.best_lag_correlation(np.ones(50), np.sin(np.arange(50)), 3) == (0.0, 0)


def test_lags_leaving_too_few_frames_are_not_tried():
    a = np.array([0.0, 1, 0, 1, 0])
    corr, lag = M.best_lag_correlation(a, a, 3)
    assert (corr, lag) == (pytest.approx(1.0), 0)
    # with 5 frames only |lag| <= 1 keeps MIN_OVERLAP (4) frames; a lag-2 match must not be reported
    assert abs(M.best_lag_correlation(a, np.roll(a, 2), 3)[1]) <= 1


# ------------------------------------------------------------------------------------------------- mouth and audio


def test_mouth_opening_follows_a_sine_and_ignores_translation():
    t = np.arange(50)
    gaps = 0.2 + 0.1 * np.sin(2 * np.pi * t / 10)
    seq = sequence(gaps)
    seq += np.stack([3 * np.sin(t / 4.0), 2 * np.cos(t / 5.0)], -1)[:, None, :]  # head moves, mouth does not care
    np.testing.assert_allclose(M.mouth_opening(seq, 60.0), gaps * 30 / 60, atol=1e-9)
    assert M.opening_std(M.mouth_opening(seq, 60.0)) == pytest.approx((gaps * 0.5).std())


def test_frame_rms_of_a_known_envelope():
    sr, fps = 16000, 25.0
    amps = np.array([0.0, 0.5, 0.1, 0.8, 0.3])
    t = np.arange(int(sr / fps)) / sr
    wav = np.concatenate([a * np.sin(2 * np.pi * 200 * t) for a in amps])  # 8 whole periods per frame
    np.testing.assert_allclose(frame_rms(wav, sr, 5, fps), amps / np.sqrt(2), rtol=1e-6, atol=1e-9)
    # frames past the end of the audio are silence
    assert frame_rms(wav, sr, 7, fps)[5:].tolist() == [0.0, 0.0]


def test_mouth_leading_the_audio_gives_a_positive_audio_lag():
    sr, fps, T = 16000, 25.0, 120
    env = 0.5 + 0.4 * np.sin(2 * np.pi * np.arange(T) / 17.0)
    n = int(sr / fps)
    wav = np.concatenate([e * np.sin(2 * np.pi * 200 * np.arange(n) / sr) for e in env])
    rms = frame_rms(wav, sr, T, fps)
    opening = np.roll(env, -2)  # mouth opens 2 frames before the sound: opening[t] = env[t + 2]
    corr, lag = M.best_lag_correlation(opening, rms, 3)
    assert lag == 2 and corr > 0.99


# --------------------------------------------------------------------------------------------- errors vs the truth


def test_pck_counts_points_within_alpha_times_the_box():
    real = sequence(np.full(3, 0.2))
    box = np.ptp(real.reshape(-1, 2), axis=0)
    thr = 0.02 * box.max()
    assert M.pck_threshold(real) == pytest.approx(thr)
    pred = real.copy()
    # frame 1: 17 points off by 1.5 thr (wrong), the rest off by 0.5 thr (right); frame 2 exact
    pred[1, :17, 0] += 1.5 * thr
    pred[1, 17:, 1] += 0.5 * thr
    pred[0] += 100  # frame 0 is the reference and not scored
    assert M.pck(pred, real) == pytest.approx(100 * (68 + 51) / 136)


def test_l1_with_identity_statistics_and_with_face_scale():
    real = sequence(np.full(4, 0.2))
    pred = real.copy()
    pred[1:, :, 0] += 0.5  # every x off by half a pixel, every y exact
    plain = Normalizer(scale_by_face=False)
    assert M.l1_normalised(pred, real, plain) == pytest.approx(0.25)
    scaled = Normalizer(std=np.full(136, 2.0))
    assert M.l1_normalised(pred, real, scaled) == pytest.approx(0.25 / face_scale(real[0]) / 2.0)
    assert M.l1_normalised(real, real, scaled) == 0.0


def test_lmd_ignores_head_translation_and_measures_mouth_offsets():
    real = sequence(np.full(5, 0.2))
    moved = real + np.array([7.0, -3.0])
    assert M.lmd(moved, real, 60.0) == pytest.approx(0.0, abs=1e-12)
    pred = real.copy()
    pred[1:, 48:68, 1] += 6.0  # all 20 mouth points 6 px lower, nose tip unchanged
    assert M.lmd(pred, real, 60.0) == pytest.approx(0.1)


def test_head_motion_of_a_known_nose_orbit():
    t = np.arange(400)
    seq = sequence(np.full(400, 0.2))
    seq += np.stack([6 * np.cos(2 * np.pi * t / 40), 6 * np.sin(2 * np.pi * t / 40)], -1)[:, None, :]
    assert M.head_motion(seq, 60.0) == pytest.approx(0.1)  # radius 6 px = 0.1 IOD from the mean position
    assert M.head_motion(sequence(np.full(10, 0.2)), 60.0) == 0.0


def test_jerk_is_zero_for_polynomials_up_to_degree_two_and_exact_for_a_cubic():
    t = np.arange(30.0)[:, None, None]
    base = sequence(np.full(30, 0.2))
    quad = base + np.stack([0.5 * t[..., 0] + 0.02 * t[..., 0] ** 2, np.zeros_like(t[..., 0])], -1)
    assert M.jerk(quad, 60.0) == 0.0
    c = 0.01
    cubic = base + np.concatenate([c * t**3, np.zeros_like(t)], -1)
    assert M.jerk(cubic, 60.0) == pytest.approx(6 * c / 60.0)  # third difference of c t^3 is 6c
    assert M.jerk(base[:3], 60.0) == 0.0


def test_identity_error_is_zero_under_similarity_transforms_and_exact_for_a_brow_raise():
    ref = face(0.2)
    frames = [ref]
    for ang, s, shift in ((0.1, 1.0, (0, 0)), (-0.2, 1.3, (15, -4)), (0.3, 0.8, (-20, 9))):
        c, si = np.cos(ang), np.sin(ang)
        frames.append(s * (ref - ref.mean(0)) @ np.array([[c, -si], [si, c]]).T + ref.mean(0) + shift)
    seq = np.stack(frames)
    np.testing.assert_allclose(M.identity_errors(seq, ref, 60.0), 0.0, atol=1e-9)
    raised = ref.copy()
    raised[17:27, 1] -= 6.0  # the 10 brow points 6 px up; the stable points do not move
    seq = np.stack([ref, raised, raised])
    assert M.identity_error(seq, ref, 60.0) == pytest.approx(10 * 0.1 / 31)
    # the mouth is not part of the identity shape
    assert M.identity_error(sequence([0.2, 0.6, 0.1]), ref, 60.0) == pytest.approx(0.0, abs=1e-9)


def test_similarity_align_recovers_the_transform():
    rng = np.random.default_rng(1)
    src = rng.standard_normal((13, 2))
    ang, s, t = 0.7, 2.5, np.array([3.0, -1.0])
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = s * src @ rot.T + t
    s2, rot2, t2 = M.similarity_align(src, dst)
    assert s2 == pytest.approx(s)
    np.testing.assert_allclose(rot2, rot, atol=1e-9)
    np.testing.assert_allclose(t2, t, atol=1e-9)


def test_ratio_is_undefined_against_zero():
    assert M.ratio(0.5, 0.25) == 2.0
    assert M.ratio(0.5, 0.0) is None
    assert M.ratio(None, 1.0) is None


def test_shape_errors_name_the_problem():
    with pytest.raises(InputError, match=r"\(T, 68, 2\)"):
        M.mouth_opening(np.zeros((5, 10, 2)), 1.0)
    with pytest.raises(InputError, match="differ in shape"):
        M.lmd(np.zeros((5, 68, 2)), np.zeros((6, 68, 2)), 1.0)
    with pytest.raises(InputError, match="inter-ocular distance 0"):
        M.reference_iod(np.zeros((3, 68, 2)))


def test_similarity_align_is_batched_and_never_reflects():
    rng = np.random.default_rng(2)
    src = rng.standard_normal((5, 13, 2))
    dst = rng.standard_normal((13, 2))
    s, rot, t = M.similarity_align(src, dst[None])
    assert s.shape == (5,) and rot.shape == (5, 2, 2) and t.shape == (5, 2)
    for i in range(5):
        s1, r1, t1 = M.similarity_align(src[i], dst)
        assert s[i] == pytest.approx(float(s1))
        np.testing.assert_allclose(rot[i], r1, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0)
    mirrored = src[0] * [-1.0, 1.0]
    s, rot, t = M.similarity_align(mirrored, src[0])
    assert np.linalg.det(rot) == pytest.approx(1.0)
    assert np.abs(s * mirrored @ rot.T + t - src[0]).max() > 0.1  # a mirror image is not a pose change
