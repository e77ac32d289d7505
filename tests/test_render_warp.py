"""The ``warp`` renderer on real faces: identity, motion, mouth filling, background, real clips, bad inputs."""

from __future__ import annotations

import tracemalloc
import warnings

import cv2
import numpy as np
import pytest

from a2k_toolkit import io
from a2k_toolkit.builtin.warp import FILL_FROM, FILL_RAMP, FaceWarper, WarpRenderer, triangulate
from a2k_toolkit.errors import ImageLoadError, InputError
from a2k_toolkit.keypoints import Keypoints, mouth_opening, reference_iod


@pytest.fixture(scope="module")
def face(shared_data):
    """A real portrait and its dlib keypoints ``(68, 2)``."""
    from a2k_toolkit.builtin.dlib_detector import DlibDetector

    img = io.load_image(shared_data / "faces" / "obama.jpg")
    return img, DlibDetector().detect(img).points[0]


def open_mouth(ref: np.ndarray, amount: float) -> np.ndarray:
    """The reference keypoints with the jaw and lower lip dropped by ``amount`` face heights."""
    p = ref.copy()
    drop = amount * (ref[8, 1] - ref[27, 1])
    p[[55, 56, 57, 58, 59, 65, 66, 67], 1] += drop
    p[[6, 7, 8, 9, 10], 1] += 0.7 * drop
    p[[61, 62, 63], 1] -= 0.15 * drop
    return p


def seq(*frames, image_size=None) -> Keypoints:
    return Keypoints(np.stack(frames), image_size=image_size)


def poly_mask(shape, poly) -> np.ndarray:
    m = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
    return m.astype(bool)


def test_warp_is_registered(catalog):
    assert catalog.get("renderer", "warp") is WarpRenderer


def test_params_reject_unknown_keys():
    with pytest.raises(ValueError, match="extra"):
        WarpRenderer(sise=256)


def test_unchanged_keypoints_reproduce_the_reference_exactly(face):
    img, ref = face
    frames = WarpRenderer().render(seq(ref, ref, ref, image_size=img.shape[:2]), img)
    assert frames.shape == (3, *img.shape) and frames.dtype == np.uint8
    assert np.array_equal(frames[0], img) and np.array_equal(frames[2], img)


def test_triangulation_uses_every_control_point(face):
    img, ref = face
    closed = ref.copy()
    closed[[67, 66, 65]] = closed[[61, 62, 63]]  # a closed mouth: coincident inner-lip points
    w = FaceWarper(img, closed)
    assert set(np.unique(triangulate(w.src))) == set(range(len(w.src)))
    assert set(np.unique(w.tris)) >= set(range(68))  # every keypoint drives some triangle


def test_head_translation_moves_the_face_and_keeps_the_background(face):
    img, ref = face
    shift = np.array([6.0, 4.0])
    out = WarpRenderer().render(seq(ref, ref + shift), img)[1].astype(int)
    # the middle of the face is the reference moved by the shift (whole pixels: an exact copy)
    x0, y0 = ref[[36, 45, 57]].min(0).astype(int)
    x1, y1 = ref[[36, 45, 57]].max(0).astype(int)
    moved = out[y0 + 4 : y1 + 4, x0 + 6 : x1 + 6]
    assert np.abs(moved - img[y0:y1, x0:x1]).mean() < 1.0
    assert np.abs(out[y0:y1, x0:x1] - img[y0:y1, x0:x1]).mean() > 5.0  # it did move
    # in a wider shot, the background outside the anchor ring is untouched
    pad = 128
    wide = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    out = WarpRenderer().render(seq(ref + pad, ref + pad + shift), wide)[1]
    warper, _ = WarpRenderer().warper(seq(ref + pad), wide)
    ax0, ay0 = np.floor(warper.src[68 + 16 : 68 + 32].min(0)).astype(int)
    ax1, ay1 = np.ceil(warper.src[68 + 16 : 68 + 32].max(0)).astype(int)
    assert ax0 > 0 and ay0 > 0 and ax1 < wide.shape[1] and ay1 < wide.shape[0]  # the anchors are inside the image
    outside = np.ones(wide.shape[:2], bool)
    outside[ay0:ay1, ax0:ax1] = False
    assert np.array_equal(out[outside], wide[outside])
    assert not np.array_equal(out[~outside], wide[~outside])


def test_rotation_carries_hair_with_the_head(face):
    img, ref = face
    c = ref.mean(0)
    a = 0.12
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    turned = (ref - c) @ rot.T + c
    out = WarpRenderer().render(seq(ref, turned), img)[1].astype(int)
    # a patch above the brows (forehead / hair, no keypoints there) follows the rotation
    top = ref[19, 1] - 0.25 * (ref[8, 1] - ref[19, 1])
    src = np.array([c[0], top])
    dst = (src - c) @ rot.T + c
    sx, sy = np.round(src).astype(int)
    dx, dy = np.round(dst).astype(int)
    patch_ref = img[sy - 5 : sy + 5, sx - 5 : sx + 5].astype(int)
    assert (
        np.abs(out[dy - 5 : dy + 5, dx - 5 : dx + 5] - patch_ref).mean()
        < np.abs(out[sy - 5 : sy + 5, sx - 5 : sx + 5] - patch_ref).mean()
    )
    # head ring off: the forehead stays where it was
    still = WarpRenderer(head_motion=False).render(seq(ref, turned), img)[1].astype(int)
    assert (
        np.abs(still[sy - 5 : sy + 5, sx - 5 : sx + 5] - patch_ref).mean()
        < np.abs(out[sy - 5 : sy + 5, sx - 5 : sx + 5] - patch_ref).mean()
    )


def test_open_mouth_is_filled_with_a_dark_cavity_and_teeth(face):
    img, ref = face
    opened = open_mouth(ref, 0.14)
    iod = reference_iod(ref)
    assert mouth_opening(opened, iod) > mouth_opening(ref, iod) + FILL_FROM + FILL_RAMP  # open past the full fill
    filled, plain = (WarpRenderer(mouth_fill=f).render(seq(ref, opened), img)[1] for f in (1.0, 0.0))
    inside = poly_mask(img.shape, opened[60:68])
    assert inside.sum() > 100
    luma = filled.astype(float).mean(2)
    lips = poly_mask(img.shape, opened[48:60]) & ~inside
    centre = opened[60:68].mean(0)
    core = poly_mask(img.shape, centre + 0.5 * (opened[60:68] - centre))  # the cavity's middle, between the teeth
    assert luma[core].mean() < 0.5 * luma[lips].mean()  # darker than the lips around it
    assert luma[core].mean() < plain.astype(float).mean(2)[core].mean() - 40  # the fill made it dark
    teeth = poly_mask(img.shape, np.concatenate([opened[61:64], opened[61:64][::-1] + [0, 4]]))
    assert luma[teeth & inside].mean() > luma[inside].mean() + 25  # a lighter band under the upper lip
    no_teeth = WarpRenderer(teeth=False).render(seq(ref, opened), img)[1].astype(float).mean(2)
    assert no_teeth[teeth & inside].mean() < luma[teeth & inside].mean() - 25
    # a closed mouth gets no fill: the warp of the reference alone
    closed = WarpRenderer().render(seq(ref, ref + 0.0), img)[1]
    assert np.array_equal(closed, img)


def test_map_step_2_matches_the_exact_map(face):
    img, ref = face
    kp = seq(ref, open_mouth(ref, 0.08) + [3, 1], ref + [-2, 2])
    exact = WarpRenderer().render(kp, img).astype(int)
    coarse = WarpRenderer(map_step=2).render(kp, img).astype(int)
    assert np.abs(exact - coarse).mean() < 0.5
    assert np.percentile(np.abs(exact - coarse), 99) <= 8


def test_warp_follows_a_real_clip(real_clips):
    """Driving the clip's first frame with the clip's own keypoints comes closer to the real frames than the still."""
    clip = next(c for c in real_clips if c.clip_id == "pcavs_aldridge")
    frames = []
    for i, f in enumerate(io.read_video_frames(clip.source, fps=clip.fps)):
        if i >= clip.num_frames:
            break
        frames.append(f)
    kp = Keypoints(clip.keypoints[: len(frames)], image_size=clip.frame_size)
    x0, y0 = clip.keypoints.reshape(-1, 2).min(0).astype(int)
    x1, y1 = clip.keypoints.reshape(-1, 2).max(0).astype(int)
    err_warp, err_still = [], []
    for t, out in enumerate(WarpRenderer().frames(kp, frames[0])):
        real = frames[t][y0:y1, x0:x1].astype(float)
        err_warp.append(np.abs(out[y0:y1, x0:x1] - real).mean())
        err_still.append(np.abs(frames[0][y0:y1, x0:x1] - real).mean())
    assert np.mean(err_warp) < 0.85 * np.mean(err_still)


def test_output_size_is_the_longest_side(face):
    img, ref = face
    wide = np.concatenate([img, img[:, :128]], axis=1)  # 384 x 256
    out = WarpRenderer(size=192).render(seq(ref, ref + 2, image_size=wide.shape[:2]), wide)
    assert out.shape == (2, 128, 192, 3)


# --------------------------------------------------------------------------------------------------- bad inputs


def test_grayscale_and_rgba_images_render_in_colour(face):
    img, ref = face
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    out = WarpRenderer().render(seq(ref, open_mouth(ref, 0.1)), gray)
    assert out.shape == (2, *img.shape)
    assert np.array_equal(out[0][..., 0], gray)
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    out = WarpRenderer().render(seq(ref, ref + 1), rgba)
    assert out.shape == (2, *img.shape) and np.array_equal(out[0], img)


def test_tiny_face_warns_and_a_dot_of_a_face_is_refused(face):
    img, ref = face
    small = cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA)
    kp = seq(ref, open_mouth(ref, 0.1), image_size=img.shape[:2])  # rescaled to the 32 px image
    with pytest.warns(UserWarning, match="px wide"):
        out = WarpRenderer().render(kp, small)
    assert out.shape == (2, 32, 32, 3)
    dot = ref.mean(0) + (ref - ref.mean(0)) * 0.02
    with pytest.raises(InputError, match="too small to animate"):
        WarpRenderer().render(seq(dot, dot), img)


def test_face_at_the_border_renders(face):
    img, ref = face
    cut = int(ref[:, 0].max() - 0.3 * np.ptp(ref[:, 0]))  # cut through the right cheek: some keypoints outside
    part = np.ascontiguousarray(img[:, :cut])
    assert (ref[:, 0] > cut).any()
    kp = seq(ref, ref + [5, 0], open_mouth(ref, 0.1))
    out = WarpRenderer().render(kp, part)
    assert out.shape == (3, img.shape[0], cut // 2 * 2, 3)
    assert np.abs(out[1].astype(int) - out[0]).mean() > 1.0


def test_keypoints_outside_the_image_are_refused_or_clipped(face):
    img, ref = face
    with pytest.raises(InputError, match="outside the 256x256 reference image"):
        WarpRenderer().render(seq(ref + 1000, ref + 1000), img)
    with pytest.warns(UserWarning, match="clipped"):
        out = WarpRenderer().render(seq(ref, ref + [5000, 0], ref), img)
    assert out.shape == (3, *img.shape)
    assert np.array_equal(out[2], img)


def test_zero_length_and_mismatched_inputs_are_refused(face):
    img, ref = face
    empty = Keypoints(np.zeros((0, 68, 2), np.float32))
    with pytest.raises(InputError, match="zero-length"):
        WarpRenderer().frames(empty, img)
    with pytest.raises(InputError, match="another aspect ratio"):
        WarpRenderer().frames(seq(ref, image_size=(100, 300)), img)
    with pytest.raises(ImageLoadError):
        WarpRenderer().frames(seq(ref), np.zeros((4, 4, 3), np.uint8))


def test_keypoints_for_a_resized_copy_are_rescaled(face):
    img, ref = face
    big = cv2.resize(img, (512, 512), interpolation=cv2.INTER_CUBIC)
    kp = seq(ref, ref + [4, 0], image_size=img.shape[:2])
    a = WarpRenderer(size=256).render(kp, big).astype(int)
    b = WarpRenderer(size=256).render(kp, img).astype(int)
    assert np.abs(a - b).mean() < 3.0


def test_frames_stream_without_growing_memory(face):
    img, ref = face
    rng = np.random.default_rng(0)

    def peak(n: int) -> int:
        pts = ref + rng.normal(0, 1.5, (n, 68, 2))
        pts[:, 60:68] = open_mouth(ref, 0.08)[60:68]
        kp = Keypoints(pts.astype(np.float32))
        tracemalloc.start()
        for _ in WarpRenderer(size=128).frames(kp, img):
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        short, long = peak(20), peak(200)
    assert long < short + 400_000  # 200 frames of 128x128x3 would be 9.8 MB
