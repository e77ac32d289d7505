"""The example plugin's tests: the toolkit's contract mixins plus its own behaviour."""

from __future__ import annotations

import numpy as np

from a2k_example_plugin import HeatmapRenderer, SmoothedGenerator
from a2k_toolkit import Keypoints
from a2k_toolkit.testing import GeneratorContract, RendererContract, mean_face


class TestHeatmapContract(RendererContract):
    component_class = HeatmapRenderer
    params = {"sigma": 2.0}


class TestSmoothedContract(GeneratorContract):
    component_class = SmoothedGenerator
    params = {"base": "procedural"}


def test_blob_lands_on_keypoint():
    pts = mean_face(100, 120)[None].astype(np.float32)
    frame = HeatmapRenderer(sigma=2.0).render(Keypoints(pts), np.zeros((100, 120, 3), np.uint8))[0]
    x, y = np.round(pts[0, 30]).astype(int)  # nose tip
    assert frame[y, x].max() > 150
    assert frame[0, 0].max() == 0


def test_smoothing_reduces_jerk():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((100, 320)).astype(np.float32)
    ref = Keypoints(mean_face()[None])
    raw = SmoothedGenerator(base="procedural", sigma=0.01).generate(feats, ref, seed=0).points
    smooth = SmoothedGenerator(base="procedural", sigma=3.0).generate(feats, ref, seed=0).points
    jerk = lambda p: np.abs(np.diff(p, 3, axis=0)).mean()  # noqa: E731
    assert jerk(smooth) < 0.5 * jerk(raw)
