"""The ``side-by-side`` renderer: panel layout, ground truth vs prediction, config errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from a2k_toolkit import io
from a2k_toolkit.builtin.side_by_side import SideBySideRenderer
from a2k_toolkit.builtin.sketch import SketchRenderer
from a2k_toolkit.builtin.warp import WarpRenderer
from a2k_toolkit.errors import ConfigError, InputError, UnknownComponentError
from a2k_toolkit.keypoints import Keypoints


@pytest.fixture(scope="module")
def face(shared_data):
    from a2k_toolkit.builtin.dlib_detector import DlibDetector

    img = io.load_image(shared_data / "faces" / "angelina.jpg")
    return img, DlibDetector().detect(img).points[0]


def moving(ref: np.ndarray, n: int = 6, amp: float = 5.0) -> Keypoints:
    t = np.arange(n)[:, None, None]
    pts = ref[None] + amp * np.sin(t * 0.9) * np.array([1.0, 0.4])
    pts[:, 57:60, 1] += 3 * np.abs(np.sin(t[:, :, 0] * 0.7))
    pts[0] = ref
    return Keypoints(pts.astype(np.float32))


def test_registered_and_default_panels(catalog, face):
    img, ref = face
    assert catalog.get("renderer", "side-by-side") is SideBySideRenderer
    kp = moving(ref)
    r = SideBySideRenderer(size=128, gap=6, labels=False, catalog=catalog)
    out = r.render(kp, img)
    oh, ow = 128 * img.shape[0] // max(img.shape[:2]) // 2 * 2, 128 * img.shape[1] // max(img.shape[:2]) // 2 * 2
    assert out.shape == (len(kp), oh, 3 * ow + 12, 3)
    still = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_AREA)
    sketch = SketchRenderer(size=128).render(kp, img)
    warp = WarpRenderer(size=128).render(kp, img)
    for t in range(len(kp)):
        assert np.array_equal(out[t, :, :ow], still)
        assert np.array_equal(out[t, :, ow + 6 : 2 * ow + 6], sketch[t])
        assert np.array_equal(out[t, :, 2 * ow + 12 :], warp[t])
        assert (out[t, :, ow : ow + 6] == 40).all()


def test_labels_are_drawn(catalog, face):
    img, ref = face
    plain = SideBySideRenderer(size=128, labels=False, catalog=catalog).render(moving(ref, 2), img)
    labelled = SideBySideRenderer(size=128, labels=True, catalog=catalog).render(moving(ref, 2), img)
    diff = np.abs(labelled.astype(int) - plain).sum(-1)[0]
    assert diff[:30].sum() > 0 and diff[40:].sum() == 0  # text only in the top strip


def test_compare_ground_truth_and_prediction(catalog, face):
    img, ref = face
    truth, pred = moving(ref, 5, 4.0), moving(ref, 5, -6.0)
    r = SideBySideRenderer(panels=["sketch", "warp"], size=96, gap=2, labels=False, catalog=catalog)
    out = list(r.compare(truth, pred, img))
    h = out[0].shape[0] // 2 - 1
    ow = out[0].shape[1] // 2 - 1
    assert len(out) == 5 and out[0].shape[0] == 2 * h + 2
    warp_t = WarpRenderer(size=96).render(truth, img)
    warp_p = WarpRenderer(size=96).frames(pred, img, reference_points=truth.points[0])
    for t, (frame, wp) in enumerate(zip(out, warp_p)):
        assert np.array_equal(frame[:h, ow + 2 :], warp_t[t])
        assert np.array_equal(frame[h + 2 :, ow + 2 :], wp)
    assert not np.array_equal(out[3][:h], out[3][h + 2 :])
    with pytest.warns(UserWarning, match="comparing the first 3"):
        assert len(list(r.compare(truth, pred[:3], img))) == 3


def test_comparison_video_streams_to_mp4(catalog, face, tmp_path):
    img, ref = face
    kp = moving(ref, 10)
    r = SideBySideRenderer(size=64, catalog=catalog)
    n = io.write_video(tmp_path / "cmp.mp4", r.compare(kp, moving(ref, 10, 2.0), img), kp.fps, num_frames=10)
    info = io.probe_video(tmp_path / "cmp.mp4")
    assert n == 10 and info["frames"] == 10 and info["video_codec"] == "h264"


def test_config_errors_name_the_panel(catalog):
    with pytest.raises(UnknownComponentError, match="warpp"):
        SideBySideRenderer(panels=["reference", "warpp"], catalog=catalog)
    with pytest.raises(ConfigError, match=r"panels\[1\]\.params\.thickness"):
        SideBySideRenderer(panels=["reference", {"name": "sketch", "params": {"thickness": 0}}], catalog=catalog)
    with pytest.raises(ConfigError, match="cannot itself be 'side-by-side'"):
        SideBySideRenderer(panels=["side-by-side"], catalog=catalog)
    with pytest.raises(ConfigError, match="takes no params"):
        SideBySideRenderer(panels=[{"name": "reference", "params": {"size": 3}}], catalog=catalog)
    with pytest.raises(ValueError):
        SideBySideRenderer(panels=[], catalog=catalog)


def test_pipeline_config_round_trips(pm):
    from a2k_toolkit.pipeline import Pipeline

    cfg = {
        "renderer": {
            "name": "side-by-side",
            "params": {"panels": ["reference", {"name": "warp", "params": {"teeth": False}}], "size": 64},
        },
        "device": "cpu",
    }
    pipe = Pipeline.from_config(cfg, plugins=pm)
    again = Pipeline.from_config(pipe.config, plugins=pm)
    assert again.config == pipe.config
    assert again.renderer.panels[1].params.teeth is False and again.renderer.panels[1].params.size == 64


def test_zero_length_refused(catalog, face):
    img, ref = face
    empty = Keypoints(np.zeros((0, 68, 2), np.float32))
    r = SideBySideRenderer(catalog=catalog)
    with pytest.raises(InputError, match="zero-length"):
        r.frames(empty, img)
    with pytest.raises(InputError, match="zero-length"):
        r.compare(empty, moving(ref), img)
