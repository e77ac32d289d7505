"""The ``fan`` detector runs face-alignment's real loading and inference code, offline, with random weights placed
where face-alignment's cache looks (``$TORCH_HOME/hub/checkpoints``). Landmark *values* from a random network are
meaningless, so the tests check the wiring: weights found without network, largest face first, boxes from the real
face detector, batching equal to face-alignment's own per-image path, errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("face_alignment")

from a2k_toolkit.builtin.dlib_detector import DlibDetector  # noqa: E402
from a2k_toolkit.builtin.fan_detector import FanDetector  # noqa: E402
from a2k_toolkit.errors import MissingDependencyError, NoFaceFoundError  # noqa: E402
from a2k_toolkit.io import load_image  # noqa: E402


@pytest.fixture
def offline_fan(fan_torch_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(fan_torch_home))

    def no_download(*args, **kwargs):  # any download attempt is a test failure, not a hang
        raise AssertionError(f"face-alignment tried to download {args[:1]}")

    import face_alignment.utils
    import torch.hub

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(face_alignment.utils, "download_url_to_file", no_download)
    return FanDetector(face_detector="dlib", device="cpu", batch_size=4, flip_input=False)  # FAN is ~0.6 s/crop on CPU


@pytest.fixture(scope="module")
def faces(shared_data):
    return [load_image(shared_data / "faces" / n) for n in ("obama.jpg", "trump.jpg", "rihanna.jpg")]


def _inside(points, box, margin):
    left, t, r, b = box
    mw, mh = (r - left) * margin, (b - t) * margin
    x, y = points[:, 0], points[:, 1]
    return bool(((x >= left - mw) & (x <= r + mw) & (y >= t - mh) & (y <= b + mh)).all())


def test_fan_is_a_registered_builtin(catalog):
    assert catalog.get("detector", "fan") is FanDetector
    assert catalog.entry("detector", "fan").plugin == "a2k_toolkit.builtin.fan_detector"


def test_params_reject_unknown_keys_and_bad_backends():
    with pytest.raises(Exception, match="extra"):
        FanDetector(nonsense=1)
    with pytest.raises(Exception, match="face_detector"):
        FanDetector(face_detector="mtcnn")


def test_construction_loads_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "face_alignment", None)  # import would fail if attempted
    det = FanDetector(face_detector="dlib")
    assert det._fa is None


def test_missing_package_names_the_extra(monkeypatch, faces):
    monkeypatch.setitem(sys.modules, "face_alignment", None)
    with pytest.raises(MissingDependencyError, match=r"a2k-toolkit\[fan\]"):
        FanDetector(face_detector="dlib", device="cpu").detect(faces[0])


def test_detect_offline_lands_in_the_face_box(offline_fan, faces):
    kp = offline_fan.detect(faces[0])
    assert kp.points.shape == (1, 68, 2) and kp.points.dtype == np.float32
    boxes = DlibDetector().face_boxes(faces[0])
    assert len(boxes) == 1
    # the crop FAN sees is about twice the box; random heatmaps peak anywhere inside it
    assert _inside(kp.points[0], boxes[0], margin=0.75)
    fan_boxes = offline_fan.face_boxes(faces[0])
    assert len(fan_boxes) == 1
    iou_l, iou_t = max(fan_boxes[0][0], boxes[0][0]), max(fan_boxes[0][1], boxes[0][1])
    iou_r, iou_b = min(fan_boxes[0][2], boxes[0][2]), min(fan_boxes[0][3], boxes[0][3])
    assert iou_r > iou_l and iou_b > iou_t  # the same face


def test_batched_equals_face_alignment_per_image(offline_fan, faces):
    det = FanDetector(face_detector="dlib", device="cpu", batch_size=4, flip_input=True)  # the flip path too
    batched = det.detect_batch(faces[:2])
    fa = det.face_alignment
    for img, got in zip(faces[:2], batched):
        boxes = det.face_boxes(img)
        ref = fa.get_landmarks_from_image(img, detected_faces=[boxes[0]])
        assert got is not None
        np.testing.assert_allclose(got, ref[0], atol=1e-3)


def test_no_face_and_two_faces(offline_fan, faces):
    flat = np.full((240, 320, 3), 128, np.uint8)
    assert offline_fan.detect_batch([flat, faces[0]])[0] is None
    with pytest.raises(NoFaceFoundError, match="no face found"):
        offline_fan.detect(flat)
    import cv2

    big = faces[0]
    small = cv2.resize(faces[1], (big.shape[1] // 2, big.shape[0] // 2))
    canvas = np.full((big.shape[0], big.shape[1] + small.shape[1], 3), 255, np.uint8)
    canvas[:, : big.shape[1]] = big
    canvas[: small.shape[0], big.shape[1] :] = small
    boxes = offline_fan.face_boxes(canvas)
    assert len(boxes) == 2
    assert boxes[0][0] < big.shape[1] <= boxes[1][0]  # largest (left, full-size) face first
    all_faces = offline_fan.detect_all(canvas)
    assert len(all_faces) == 2 and all_faces[0][:, 0].mean() < all_faces[1][:, 0].mean()


def test_sfd_backend_loads_its_weights_from_the_cache(fan_torch_home, monkeypatch, faces):
    monkeypatch.setenv("TORCH_HOME", str(fan_torch_home))
    det = FanDetector(face_detector="sfd", device="cpu")
    import cv2

    boxes = det.face_boxes(cv2.resize(faces[0], (96, 96)))  # random S3FD: any boxes, but real code ran
    assert all(len(b) == 4 and b[2] >= b[0] for b in boxes)
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    assert areas == sorted(areas, reverse=True)


def test_fan_drives_the_face_tracker_in_both_modes(offline_fan, shared_data):
    """The builder's tracker with fan: boxes and all landmark crops of a chunk batched (detect_every=1), and
    landmark tracking between key frames (detect_every=2)."""
    from a2k_toolkit.data.tracking import FaceTracker
    from a2k_toolkit.io import read_video_frames

    frames = []
    for i, frame in enumerate(read_video_frames(shared_data / "clips" / "avsr_00006.mp4", fps=25)):
        if i == 2:
            break
        frames.append(frame)
    calls = []
    original = offline_fan.landmarks_batch

    def counting(images, boxes):
        calls.append(len(images))
        return original(images, boxes)

    offline_fan.landmarks_batch = counting
    every = FaceTracker(offline_fan, detect_every=1, batch_size=4).run(iter(frames), 2)
    assert calls == [2] and every.seen.all() and every.detected.all()  # one batch for both frames
    calls.clear()
    tracked = FaceTracker(offline_fan, detect_every=2).run(iter(frames), 2)
    assert tracked.seen.all() and tracked.detected.tolist() == [True, False]
    assert calls == [1, 1]  # the tracked frame needs the previous frame's landmarks first


try:  # the shared contract mixins (a2k_toolkit.testing) run here once this branch meets them
    from a2k_toolkit.testing import DetectorContract
except ImportError:  # pragma: no cover - branch without a2k_toolkit.testing
    DetectorContract = None

if DetectorContract is not None:
    from conftest import SHARED_DATA

    class TestFanContract(DetectorContract):
        component_class = FanDetector
        params = {"face_detector": "dlib", "device": "cpu", "flip_input": False}
        face_image = SHARED_DATA / "faces" / "obama.jpg"

        @pytest.fixture(autouse=True)
        def _offline_weights(self, offline_fan):
            """Random weights in a temporary TORCH_HOME; downloads fail the test."""

        def _image(self):
            # random weights put points anywhere in FAN's crop (about twice the face box): pad the portrait so that
            # the crop, and so every point, stays inside the image the contract checks against
            img = super()._image()
            h, w = img.shape[:2]
            canvas = np.full((2 * h, 2 * w, 3), 255, np.uint8)
            canvas[h // 2 : h // 2 + h, w // 2 : w // 2 + w] = img
            return canvas


def test_missing_weights_offline_is_a_clear_error(tmp_path, monkeypatch, faces):
    import urllib.error

    import face_alignment.utils
    import torch.hub

    from a2k_toolkit.builtin.fan_detector import MissingWeightsError

    def unreachable(url, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty: nothing cached
    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    monkeypatch.setattr(face_alignment.utils, "download_url_to_file", unreachable)
    with pytest.raises(MissingWeightsError, match=r"2DFAN4-11f355bf06\.pth\.tar.*hub/checkpoints|checkpoints.*2DFAN4"):
        FanDetector(face_detector="dlib", device="cpu").detect(faces[0])
