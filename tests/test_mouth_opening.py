"""The one mouth opening (inner-lip gap 62-66 / inter-ocular distance) and the consumers that use it: evaluation,
dataset QA, the warp renderer's mouth fill and the training sync loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from a2k_toolkit.audio import frame_rms
from a2k_toolkit.builtin.warp import FILL_FROM, FILL_RAMP, FaceWarper
from a2k_toolkit.data.qa import lip_audio_coupling
from a2k_toolkit.errors import InputError
from a2k_toolkit.eval import metrics as M
from a2k_toolkit.keypoints import (
    MOUTH_GAP,
    Normalizer,
    face_scale,
    face_width,
    interocular,
    mouth_gap,
    mouth_opening,
    reference_iod,
)
from a2k_toolkit.testing import mean_face
from a2k_toolkit.training import losses

# mean_face(256, 256): unit coordinates times 0.6 * 256 px; eye centres 0.34 units apart, inner-lip centres 0.03
UNIT = 0.6 * 256
IOD, GAP = 0.34 * UNIT, 0.03 * UNIT


def rotated(points: np.ndarray, degrees: float, zoom: float = 1.0, shift=(0.0, 0.0)) -> np.ndarray:
    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    c = points.mean(0)
    return zoom * (points - c) @ rot.T + c + np.asarray(shift)


def with_gap(face: np.ndarray, extra: float) -> np.ndarray:
    """``face`` with its lower inner lip (65-67) lowered by ``extra`` pixels."""
    f = face.copy()
    f[[65, 66, 67], 1] += extra
    return f


def test_the_definition_on_a_synthetic_face():
    f = mean_face()
    assert MOUTH_GAP == (62, 66)
    assert interocular(f) == pytest.approx(IOD)
    assert reference_iod(f) == pytest.approx(IOD)
    assert mouth_gap(f) == pytest.approx(GAP)
    assert mouth_opening(f) == pytest.approx(0.03 / 0.34)
    assert mouth_opening(f, 2 * IOD) == pytest.approx(0.015 / 0.34)
    # a Euclidean gap: head roll, translation and zoom of the frame itself do not change it
    for deg, zoom in ((30.0, 1.0), (-12.0, 1.5)):
        g = rotated(f, deg, zoom, shift=(7.0, -3.0))
        assert mouth_opening(g) == pytest.approx(0.03 / 0.34)
        assert mouth_opening(g, IOD) == pytest.approx(zoom * 0.03 / 0.34)  # in the reference's IOD, zoom counts
    # only 62 and 66 count: the side pairs (61, 67), (63, 65) may do anything
    g = f.copy()
    g[[61, 63], 1] -= 5.0
    g[[65, 67], 1] += 9.0
    assert mouth_opening(g) == pytest.approx(0.03 / 0.34)
    # any leading shape; a sequence divides by its frame 0's IOD
    seq = np.stack([f, with_gap(f, 4.0), rotated(f, 0.0, 2.0)])
    np.testing.assert_allclose(mouth_opening(seq, reference_iod(seq)), [GAP / IOD, (GAP + 4) / IOD, 2 * GAP / IOD])
    assert mouth_opening(np.stack([seq, seq])).shape == (2, 3)
    assert face_width(f) == pytest.approx(0.84 * UNIT)


def test_shape_and_degenerate_reference_errors():
    with pytest.raises(InputError, match="68"):
        mouth_opening(np.zeros((5, 10, 2)), 1.0)
    with pytest.raises(InputError, match="inter-ocular distance 0"):
        reference_iod(np.zeros((3, 68, 2)))


def test_torch_and_numpy_give_the_same_numbers():
    rng = np.random.default_rng(0)
    pts = mean_face()[None, None] + rng.normal(0, 3, (4, 6, 68, 2))
    t = torch.tensor(pts)
    np.testing.assert_allclose(interocular(t).numpy(), interocular(pts), rtol=1e-12)
    np.testing.assert_allclose(mouth_gap(t).numpy(), mouth_gap(pts), rtol=1e-12)
    np.testing.assert_allclose(mouth_opening(t).numpy(), mouth_opening(pts), rtol=1e-12)
    scale = interocular(pts[:, :1])  # (4, 1): each window's frame 0
    np.testing.assert_allclose(mouth_opening(t, torch.tensor(scale)).numpy(), mouth_opening(pts, scale), rtol=1e-12)
    assert mouth_opening(t.float()).dtype == torch.float32
    # a closed mouth (62 on 66) has a finite gradient
    closed = torch.tensor(pts[0, 0]).clone()
    closed[66] = closed[62]
    closed.requires_grad_(True)
    mouth_opening(closed, 50.0).backward()
    assert torch.isfinite(closed.grad).all()


def test_eval_metric_is_the_definition_in_the_reference_iod():
    f = mean_face()
    seq = np.stack([f, rotated(with_gap(f, 6.0), 25.0), with_gap(f, 3.0)])
    got = M.mouth_opening(seq, M.reference_iod(seq))
    np.testing.assert_allclose(got, [GAP / IOD, (GAP + 6.0) / IOD, (GAP + 3.0) / IOD], rtol=1e-9)
    np.testing.assert_array_equal(got, mouth_opening(seq, reference_iod(seq)))
    assert M.reference_iod(seq) == reference_iod(seq) == pytest.approx(IOD)


def test_qa_coupling_measures_the_lip_gap_only():
    rng = np.random.default_rng(1)
    T = 100
    env = np.convolve(rng.random(T), np.ones(4) / 4, mode="same")
    audio = np.concatenate([rng.normal(0, 1, 640) * e for e in env]).astype(np.float32) * 0.1
    f = mean_face()
    # the jaw and the chin move with the sound (the face's size changes with it), the inner-lip centres do not:
    # no mouth movement to correlate
    jaw = np.repeat(f[None], T, 0)
    jaw[:, 4:13, 1] += 20 * env[:, None]
    assert lip_audio_coupling(jaw, audio, 16000, 25.0)["corr"] is None
    # the gap 62-66 follows the sound: the coupling is the correlation of exactly that opening
    lips = np.stack([with_gap(f, 10 * e) for e in env])
    got = lip_audio_coupling(lips, audio, 16000, 25.0)
    expected = np.corrcoef(mouth_opening(lips, reference_iod(lips)), frame_rms(audio, 16000, T, 25.0))[0, 1]
    assert got["lag"] == 0 and got["corr"] == pytest.approx(expected, abs=1e-4) and got["corr"] > 0.9


def test_warp_fills_the_mouth_by_the_definition():
    img = np.full((256, 256, 3), 170, np.uint8)
    f = mean_face()
    warper = FaceWarper(img, f)
    assert warper.ref_opening == pytest.approx(GAP / IOD)
    plain = FaceWarper(img, f, mouth_fill=0.0)

    def filled(face: np.ndarray) -> bool:
        return bool(np.any(warper.warp(face) != plain.warp(face)))

    assert not filled(with_gap(f, (FILL_FROM - 0.005) * IOD))
    assert filled(with_gap(f, (FILL_FROM + 0.3 * FILL_RAMP) * IOD))
    # the side pairs alone opening wide is not an open mouth
    sides = f.copy()
    sides[[65, 67], 1] += 0.2 * IOD
    assert not filled(sides)


def test_sync_loss_sees_the_same_opening_up_to_one_constant_per_window():
    """Training measures the opening in its normalised space (unit: the reference's face_scale): per window the
    toolkit's opening in reference IOD times ``IOD / face_scale``, to which the sync loss is invariant."""
    rng = np.random.default_rng(2)
    T = 40
    zoom = np.array([1.0, 0.6, 1.7])
    refs = np.stack([rotated(mean_face(), d, z) for d, z in zip((0.0, 10.0, -5.0), zoom)])
    pts = np.repeat(refs[:, None], T, 1).copy()
    real_gap = 8 * (1 + np.sin(2 * np.pi * np.arange(T) / 12))  # pixels at zoom 1
    pts[:, :, [65, 66, 67], 1] += zoom[:, None, None] * real_gap[None, :, None]
    pred = pts + rng.normal(0, 0.7, pts.shape)
    norm = Normalizer(mean=rng.normal(0, 0.1, 136), std=rng.uniform(0.5, 2.0, 136))
    z_real = torch.tensor(np.stack([norm.normalize(p, r) for p, r in zip(pts, refs)]), dtype=torch.float64)
    z_pred = torch.tensor(np.stack([norm.normalize(p, r) for p, r in zip(pred, refs)]), dtype=torch.float64)
    mean, std = torch.tensor(norm.mean, dtype=torch.float64), torch.tensor(norm.std, dtype=torch.float64)
    train_real, train_pred = losses.mouth_opening(z_real, mean, std), losses.mouth_opening(z_pred, mean, std)
    iod = np.array([reference_iod(r) for r in refs])[:, None]
    toolkit_real, toolkit_pred = mouth_opening(pts, iod), mouth_opening(pred, iod)
    per_window = iod / face_scale(refs)[:, None]  # the constant: reference IOD in the normalised space's unit
    np.testing.assert_allclose(train_real.numpy(), toolkit_real * per_window, rtol=1e-5)
    np.testing.assert_allclose(train_pred.numpy(), toolkit_pred * per_window, rtol=1e-5)
    # the loss: identical without eps, and within eps's effect with it
    tk = (torch.tensor(toolkit_pred), torch.tensor(toolkit_real))
    exact = losses.sync_loss(train_pred, train_real, eps=1e-12), losses.sync_loss(*tk, eps=1e-12)
    assert exact[0].item() == pytest.approx(exact[1].item(), abs=1e-5)
    assert losses.sync_loss(train_pred, train_real).item() == pytest.approx(losses.sync_loss(*tk).item(), abs=1e-3)
