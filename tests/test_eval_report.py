"""The report writer: undefined ratios, partial metrics, atomic files, and the chart helpers."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from a2k_toolkit.errors import InputError
from a2k_toolkit.eval import evaluate
from a2k_toolkit.eval.plots import bar_grid, line_chart, nice_ticks
from a2k_toolkit.eval.report import fmt, markdown, write_report


@pytest.fixture(scope="module")
def still_and_moving(real_clips):
    """Results on a real clip and on a copy whose face never moves (real amplitudes 0: ratios undefined)."""
    from a2k_toolkit.builtin.baselines import ProceduralGenerator, StaticGenerator
    from a2k_toolkit.builtin.logmel import LogMel

    clip = real_clips[2]
    still = replace(clip, keypoints=np.repeat(clip.keypoints[:1], len(clip.keypoints), 0), clip_id="still")
    gens = {"static": StaticGenerator(), "procedural": ProceduralGenerator()}
    return evaluate(gens, [clip, still], LogMel())


def test_ratios_against_a_still_real_face_are_undefined_not_infinite(still_and_moving, tmp_path):
    res = still_and_moving
    still = res.clips[1]
    assert still.real["mouth_std"] == 0.0 and still.real["jerk"] == 0.0 and still.real["audio_corr"] == 0.0
    assert still.generators["procedural"]["mouth_ratio"] is None
    agg = res.aggregate["procedural"]
    # per-clip ratios exist for one clip only, but the aggregate ratio is the ratio of the means over both clips
    real_std = res.real_aggregate["mouth_std"]["mean"]
    assert agg["mouth_ratio"]["mean"] == pytest.approx(agg["mouth_std"]["mean"] / real_std)

    paths = write_report(res, tmp_path / "r")
    data = json.loads(paths["json"].read_text())
    assert data["clips"][1]["generators"]["procedural"]["mouth_ratio"] is None
    md = paths["markdown"].read_text()
    assert "| still | " in md and "n/a" in md
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["plots", "report.md", "results.json"]


def test_partial_metrics_are_flagged_in_the_summary(still_and_moving):
    res = still_and_moving
    res.aggregate["static"]["lmd"] = {**res.aggregate["static"]["lmd"], "n_clips": 1}
    try:
        md = markdown(res, [])
    finally:
        res.aggregate["static"]["lmd"] = {**res.aggregate["static"]["lmd"], "n_clips": 2}
    assert "Metrics averaged over fewer clips" in md and "`static` lmd: 1 clips" in md


def test_report_dir_must_be_a_directory(still_and_moving, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        write_report(still_and_moving, f)


def test_fmt_and_ticks():
    assert fmt(None) == "n/a" and fmt(float("nan")) == "n/a" and fmt(1e-17) == "0"
    assert fmt(0.123456) == "0.123" and fmt(2.0, signed=True) == "+2"
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-0.03, 0.07) == pytest.approx([-0.02, 0.0, 0.02, 0.04, 0.06])


def test_charts_draw_series_and_missing_bars():
    t = np.linspace(0, 2, 50)
    img = line_chart({"a": (t, np.sin(t)), "b": (t, np.cos(t))}, title="t", xlabel="s", ylabel="y")
    assert img.shape == (460, 1100, 3) and img.dtype == np.uint8
    blue = (img[..., 2] > 150) & (img[..., 0] < 80)  # palette colour 0 (31, 119, 180) is drawn
    assert blue.sum() > 100
    grid = bar_grid([("m1", {"x": 1.0, "y": None}, 0.5), ("m2", {"x": -2.0, "y": 3.0}, None)], ["x", "y"])
    assert grid.shape[0] > 200 and grid.shape[1] == 2 * 300
