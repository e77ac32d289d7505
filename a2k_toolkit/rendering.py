"""Helpers shared by renderers: input checks, output sizing, keypoints mapped to the output frame.

Every renderer gets the same two inputs, a :class:`~a2k_toolkit.keypoints.Keypoints` sequence in pixel coordinates
of the reference image and that image, and must refuse the same bad inputs with the same messages.
:func:`prepare_inputs` does that once: it converts the image to RGB uint8, resizes it to the output size, maps the
keypoints into output pixels, and checks that the keypoints belong to the image.

The reference image is converted once, into :class:`RGBImage`, the type renderers trust: the pipeline hands one to
the renderer, and :func:`reference_image_rgb` returns it as it is (a side-by-side renderer's panels get the same).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .io import load_image, to_rgb_uint8
from .keypoints import NUM_POINTS, Keypoints, face_width

# A face narrower than this (output pixels, jaw corner to jaw corner) is refused; below TINY_FACE_PX it is warned.
MIN_FACE_PX = 4.0
TINY_FACE_PX = 24.0


def output_size(image_hw: tuple[int, int], size: int | None) -> tuple[int, int, float]:
    """``(height, width, scale)`` for an output whose longest side is ``size`` (even sides, for H.264)."""
    h, w = image_hw
    if size is None:  # the photo's own size, but a huge photo is not rendered at full size (memory, time)
        from .limits import limit

        cap = limit("max_render_side")
        if cap and max(h, w) > cap:
            warnings.warn(
                f"the photo is {w}x{h}: rendering at {cap} pixels on the longest side; set the renderer's "
                "`size` (up to 4096) for another size, or A2K_MAX_RENDER_SIDE",
                stacklevel=2,
            )
            size = cap
    scale = 1.0 if size is None else size / max(h, w)
    oh, ow = int(round(h * scale)) // 2 * 2, int(round(w * scale)) // 2 * 2
    return max(oh, 2), max(ow, 2), scale


@dataclass
class RenderInputs:
    """What :func:`prepare_inputs` returns: the reference image at the output size and keypoints in its pixels."""

    image: np.ndarray  # (oh, ow, 3) uint8, the reference resized to the output size
    points: np.ndarray  # (T, 68, 2) float32, every frame's keypoints in output pixels
    reference: np.ndarray  # (68, 2) float32, the reference image's keypoints in output pixels
    scale: tuple[float, float]  # (sx, sy): output pixels per reference-image pixel
    fps: float

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]


class RGBImage(np.ndarray):
    """An image converted once and trusted after: RGB uint8 ``(H, W, 3)``, C-contiguous.

    :meth:`of` makes one (converting grayscale, RGBA, float or 16-bit input, see
    :func:`~a2k_toolkit.io.to_rgb_uint8`); :func:`reference_image_rgb` returns one as it is. It is a numpy array, so
    every renderer can use it as one; what is derived from it (a slice, arithmetic) is a plain array again, and only
    an ``RGBImage`` that still is RGB uint8 ``(H, W, 3)`` and contiguous is trusted.
    """

    @classmethod
    def of(cls, image: np.ndarray) -> RGBImage:
        """``image`` converted to RGB uint8 (checked and converted once: an ``RGBImage`` comes back as it is)."""
        if is_rgb_image(image):
            return image
        return to_rgb_uint8(image).view(cls)

    @classmethod
    def load(cls, image: object) -> RGBImage:
        """An image file (a path) or an array as an ``RGBImage``, converted once (:func:`~a2k_toolkit.io.load_image`:
        decoding, size limits, grayscale / RGBA / float input); an ``RGBImage`` comes back as it is."""
        if is_rgb_image(image):
            return image
        return load_image(image).view(cls)  # load_image returns RGB uint8, contiguous: no second conversion

    def __getitem__(self, key):
        out = super().__getitem__(key)
        return out.view(np.ndarray) if isinstance(out, np.ndarray) else out

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        def plain(x):
            return x.view(np.ndarray) if isinstance(x, RGBImage) else x

        if "out" in kwargs:
            kwargs["out"] = tuple(plain(x) for x in kwargs["out"])
        return getattr(ufunc, method)(*(plain(x) for x in inputs), **kwargs)


def is_rgb_image(image: object) -> bool:
    """True for an :class:`RGBImage` that still is RGB uint8 ``(H, W, 3)`` and C-contiguous (so no conversion)."""
    return (
        isinstance(image, RGBImage)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
        and image.flags.c_contiguous
    )


def reference_image_rgb(image: np.ndarray) -> RGBImage:
    """The reference image as :class:`RGBImage` (RGB uint8 ``(H, W, 3)``: grayscale is repeated, RGBA composited
    over white); one already converted comes back as it is."""
    if image is None:
        raise InputError("no reference image given; pass the face image the keypoints were detected on")
    return RGBImage.of(image)


def prepare_inputs(
    keypoints: Keypoints,
    reference_image: np.ndarray,
    size: int | None,
    *,
    reference_points: np.ndarray | None = None,
    renderer: str = "renderer",
) -> RenderInputs:
    """Check and convert a renderer's inputs.

    * the image becomes RGB uint8 (grayscale and RGBA are converted) and is resized so its longest side is ``size``;
    * a zero-length sequence is refused;
    * keypoints made for an image of another size are rescaled when the aspect ratio matches (a resized copy of the
      same photo) and refused otherwise;
    * reference keypoints (``reference_points``, else frame 0) mostly outside the image, or a face too small to
      render, are refused; a tiny face is warned about;
    * frames whose keypoints wander far outside the image are clipped to a margin around it, with one warning.
    """
    import cv2

    _check_sequence(keypoints, renderer)
    img = reference_image_rgb(reference_image)
    h, w = img.shape[:2]
    pts = keypoints.points[..., :2].astype(np.float64)
    ref = pts[0] if reference_points is None else np.asarray(reference_points, np.float64).reshape(-1, 2)[:, :2]
    if ref.shape != (NUM_POINTS, 2) or not np.isfinite(ref).all():
        raise InputError(f"{renderer}: reference keypoints must be 68 finite (x, y) points, got shape {ref.shape}")
    pts, ref = _to_image_size(keypoints, pts, ref, (h, w), renderer)
    _check_inside(ref, (h, w), renderer)

    oh, ow, _ = output_size((h, w), size)
    sx, sy = ow / w, oh / h
    factor = np.array([sx, sy])
    pts, ref = pts * factor, ref * factor
    fw = _checked_face_width(ref, (oh, ow), renderer)
    pts = _clip_far_frames(pts, fw, (oh, ow), renderer)

    if (oh, ow) != (h, w):
        interp = cv2.INTER_AREA if ow < w else cv2.INTER_LINEAR
        img = cv2.resize(img, (ow, oh), interpolation=interp)
    return RenderInputs(
        image=np.ascontiguousarray(img),
        points=pts.astype(np.float32),
        reference=ref.astype(np.float32),
        scale=(sx, sy),
        fps=keypoints.fps,
    )


# The checks of prepare_inputs. Their warnings name the caller of the renderer method that called prepare_inputs
# (stacklevel 4: this helper, prepare_inputs, the renderer's method, its caller).


def _check_sequence(keypoints: Keypoints, renderer: str) -> None:
    if not isinstance(keypoints, Keypoints):
        raise InputError(f"{renderer}: expected a Keypoints sequence, got {type(keypoints).__name__}")
    if len(keypoints) == 0:
        raise InputError(
            f"{renderer}: cannot render a zero-length keypoint sequence (0 frames); give at least one frame of "
            "keypoints (empty audio gives none)"
        )


def _to_image_size(
    keypoints: Keypoints, pts: np.ndarray, ref: np.ndarray, image_hw: tuple[int, int], renderer: str
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints made for another size of the same image: rescaled (same aspect ratio) or refused."""
    h, w = image_hw
    if keypoints.image_size is None or tuple(keypoints.image_size) == (h, w):
        return pts, ref
    kh, kw = keypoints.image_size
    if kh <= 0 or kw <= 0 or abs((kw / kh) / (w / h) - 1.0) > 0.02:
        raise InputError(
            f"{renderer}: the keypoints were made for a {kw}x{kh} image but the reference image is {w}x{h} "
            "(another aspect ratio); detect the keypoints on this image, or pass the image they came from"
        )
    factor = np.array([w / kw, h / kh])
    return pts * factor, ref * factor


def _check_inside(ref: np.ndarray, image_hw: tuple[int, int], renderer: str) -> None:
    h, w = image_hw
    inside = (ref[:, 0] >= 0) & (ref[:, 0] <= w - 1) & (ref[:, 1] >= 0) & (ref[:, 1] <= h - 1)
    if inside.sum() < NUM_POINTS // 2:
        raise InputError(
            f"{renderer}: {NUM_POINTS - int(inside.sum())} of the 68 reference keypoints lie outside the {w}x{h} "
            "reference image, so the keypoints do not belong to it; pass keypoints in pixel coordinates of this "
            "image (detect them on it), and a face that is mostly inside the frame"
        )


def _checked_face_width(ref: np.ndarray, out_hw: tuple[int, int], renderer: str) -> float:
    """The reference face's width in output pixels: refused below MIN_FACE_PX, warned about below TINY_FACE_PX."""
    oh, ow = out_hw
    fw = float(face_width(ref))
    if fw < MIN_FACE_PX:
        raise InputError(
            f"{renderer}: the face is only {fw:.1f} px wide in the {ow}x{oh} output, too small to animate; use an "
            "image in which the face is larger, or a larger output `size`"
        )
    if fw < TINY_FACE_PX:
        warnings.warn(
            f"{renderer}: the face is only {fw:.0f} px wide in the {ow}x{oh} output; motion will be hard to see "
            "(use a closer crop of the face or a larger output `size`)",
            UserWarning,
            stacklevel=4,
        )
    return fw


def _clip_far_frames(pts: np.ndarray, fw: float, out_hw: tuple[int, int], renderer: str) -> np.ndarray:
    """Frames far outside the image clipped to a margin of one face width around the output frame."""
    oh, ow = out_hw
    margin = max(fw, 8.0)
    lo, hi = np.array([-margin, -margin]), np.array([ow - 1 + margin, oh - 1 + margin])
    outside = ((pts < lo) | (pts > hi)).any(axis=(1, 2))
    if outside.any():
        warnings.warn(
            f"{renderer}: keypoints of {int(outside.sum())} of {len(pts)} frames lie far outside the image; they "
            "are clipped to its border (check that the keypoints are in pixel coordinates of the reference image)",
            UserWarning,
            stacklevel=4,
        )
        pts = np.clip(pts, lo, hi)
    return pts
