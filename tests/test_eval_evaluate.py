"""``evaluate`` on real clips (dlib keypoints of real talking heads) with the built-in baselines and with oracles
whose answers are known: the ground truth itself, and the ground truth delayed by two frames."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from a2k_toolkit.components import KeypointGenerator
from a2k_toolkit.errors import A2KError, InputError
from a2k_toolkit.eval import METRICS, REAL_METRICS, evaluate
from a2k_toolkit.eval.report import results_json
from a2k_toolkit.keypoints import Keypoints, Normalizer


class Oracle(KeypointGenerator):
    """Returns the clip's real keypoints (found by the reference frame), optionally delayed by ``delay`` frames."""

    name = "oracle"

    def __init__(self, clips, delay: int = 0):
        super().__init__()
        self.truth = {np.asarray(c.keypoints[0], np.float32).tobytes(): np.asarray(c.keypoints) for c in clips}
        self.delay = delay

    def generate(self, features, reference, *, seed=None):
        gt = self.truth[reference.points[0].tobytes()][: len(features)]
        if self.delay:
            gt = np.concatenate([np.repeat(gt[:1], self.delay, 0), gt[: -self.delay]])
        return Keypoints(gt, image_size=reference.image_size)


@pytest.fixture(scope="module")
def frontend():
    from a2k_toolkit.builtin.logmel import LogMel

    return LogMel()


@pytest.fixture(scope="module")
def baselines():
    from a2k_toolkit.builtin.baselines import ProceduralGenerator, StaticGenerator

    return {"static": StaticGenerator(), "procedural": ProceduralGenerator()}


@pytest.fixture(scope="module")
def results(real_clips, baselines, frontend):
    gens = {**baselines, "oracle": Oracle(real_clips), "late2": Oracle(real_clips, delay=2)}
    return evaluate(gens, real_clips, frontend)


def test_every_number_is_finite_and_the_json_is_strict(results, real_clips):
    assert results.labels == ["static", "procedural", "oracle", "late2"]
    assert results.num_clips == len(real_clips) == 3
    for rec in results.clips:
        assert set(rec.real) == {m.key for m in REAL_METRICS}
        for label in results.labels:
            assert set(rec.generators[label]) == {m.key for m in METRICS}
            for key, v in rec.generators[label].items():
                assert v is not None and math.isfinite(v), (rec.clip_id, label, key, v)
    data = json.loads(results_json(results))  # allow_nan=False inside: would raise on NaN
    assert data["num_clips"] == 3 and len(data["clips"]) == 3


def test_static_is_still_and_its_correlations_are_zero_not_nan(results):
    agg = results.aggregate["static"]
    for key in ("jerk", "mouth_std", "head_motion", "identity", "lip_corr", "audio_corr", "lip_lag", "audio_lag"):
        assert agg[key]["mean"] == 0.0, key
    assert agg["mouth_ratio"]["mean"] == 0.0 and agg["jerk_ratio"]["mean"] == 0.0
    # the real face moves, so holding frame 0 is wrong by a measurable amount
    assert agg["l1"]["mean"] > 0.1 and agg["lmd"]["mean"] > 0.01 and agg["pck"]["mean"] < 60


def test_the_ground_truth_scores_perfectly(results):
    agg = results.aggregate["oracle"]
    assert agg["l1"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert agg["pck"]["mean"] == 100.0
    assert agg["lmd"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert agg["lip_corr"]["mean"] == pytest.approx(1.0) and agg["lip_lag"]["mean"] == 0
    for key in ("mouth_ratio", "head_ratio", "jerk_ratio", "identity_ratio"):
        assert agg[key]["mean"] == pytest.approx(1.0), key
    for rec in results.clips:
        assert rec.generators["oracle"]["audio_corr"] == pytest.approx(rec.real["audio_corr"])
        assert rec.generators["oracle"]["audio_lag"] == rec.real["audio_lag"]


def test_a_two_frame_delay_is_measured_as_lag_two(results):
    for rec in results.clips:
        m = rec.generators["late2"]
        assert m["lip_lag"] == 2, rec.clip_id
        assert m["lip_corr"] > 0.9
        assert m["l1"] > 0 and m["pck"] < 100
    assert results.aggregate["late2"]["l1"]["mean"] > 0


def test_real_clips_and_procedural_are_plausible(results):
    real = results.real_aggregate
    # the data README: lip-audio coupling of these clips is weak, 0.1-0.5 at the best lag within +-3 frames
    for rec in results.clips:
        assert 0.05 < rec.real["audio_corr"] < 0.6, rec.clip_id
        assert rec.real["jerk"] > 0 and rec.real["head_motion"] > 0 and rec.real["identity"] > 0
        assert 0.005 < rec.real["mouth_std"] < 0.3
    proc = results.aggregate["procedural"]
    # procedural opens the mouth with speech energy: far more coupled to the audio than a still mouth
    assert proc["audio_corr"]["mean"] > 0.3 and proc["jerk"]["mean"] > 0 and proc["mouth_std"]["mean"] > 0
    assert proc["lip_corr"]["mean"] > results.aggregate["static"]["lip_corr"]["mean"]
    assert real["identity"]["mean"] > 0


def test_aggregates_are_means_over_clips_with_counts_and_seconds(results, real_clips):
    seconds = sum(len(c.keypoints) / c.fps for c in real_clips)
    assert results.seconds == pytest.approx(seconds)
    for label in results.labels:
        for key in ("l1", "pck", "lip_corr", "jerk"):
            agg = results.aggregate[label][key]
            assert agg["mean"] == pytest.approx(np.mean([r.generators[label][key] for r in results.clips]))
            assert agg["n_clips"] == 3 and agg["seconds"] == pytest.approx(seconds, abs=1e-3)
    # aggregate ratios are ratios of the means
    proc = results.aggregate["procedural"]
    real_std = results.real_aggregate["mouth_std"]["mean"]
    assert proc["mouth_ratio"]["mean"] == pytest.approx(proc["mouth_std"]["mean"] / real_std)


def test_l1_statistics_are_fitted_on_the_evaluated_ground_truth(results, real_clips):
    fitted = Normalizer.fit([c.keypoints for c in real_clips])
    np.testing.assert_allclose(results.normalizer.mean, fitted.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results.normalizer.std, fitted.std, rtol=1e-5, atol=1e-6)
    assert "fitted on the ground truth of the 3" in results.settings["normalizer_source"]


def test_given_statistics_are_used_for_l1(real_clips, baselines, frontend):
    wide = Normalizer(std=np.full(136, 2.0))
    res = evaluate({"static": baselines["static"]}, real_clips, frontend, normalizer=wide)
    from a2k_toolkit.eval.metrics import l1_normalised

    for rec, clip in zip(res.clips, real_clips):
        gt = clip.keypoints.astype(np.float64)
        expected = l1_normalised(np.repeat(gt[:1], len(gt), 0), gt, wide)
        assert rec.generators["static"]["l1"] == pytest.approx(expected)
    assert res.settings["normalizer_source"] == "given"


def test_clips_may_be_a_lazy_iterable_and_lose_their_face(real_clips, baselines, frontend):
    clip = real_clips[0]
    valid = np.ones(len(clip.keypoints), bool)
    valid[40:] = False
    partly = replace(clip, valid=valid, clip_id="partly")
    hopeless = replace(clip, valid=np.zeros(len(clip.keypoints), bool), clip_id="hopeless")
    with pytest.warns(UserWarning, match="skipping clip 'hopeless'"):
        res = evaluate({"static": baselines["static"]}, (c for c in (partly, hopeless)), frontend)
    assert [r.clip_id for r in res.clips] == ["partly"]
    assert res.clips[0].num_frames == 40 and "first 40 of" in res.clips[0].notes[0]
    assert res.skipped == [{"clip_id": "hopeless", "reason": "only 0 usable frames (need 8) from frame 0"}]
    with pytest.warns(UserWarning), pytest.raises(InputError, match="no clip could be evaluated"):
        evaluate({"static": baselines["static"]}, [hopeless], frontend)


def test_misbehaving_generators_and_mismatched_clips_fail_clearly(real_clips, frontend):
    class Short(KeypointGenerator):
        name = "short"

        def generate(self, features, reference, *, seed=None):
            return Keypoints(np.repeat(reference.points, len(features) - 1, 0))

    with pytest.raises(A2KError, match=r"generator 'short' returned keypoints of shape \(\d+, 68, 2\)"):
        evaluate({"short": Short()}, real_clips[:1], frontend)
    with pytest.raises(InputError, match="30 fps"):
        evaluate({"short": Short()}, [replace(real_clips[0], fps=30.0)], frontend)
    with pytest.raises(InputError, match="no generators"):
        evaluate({}, real_clips, frontend)
