"""Renderer ``warp``: animates the reference photo by a piecewise-affine warp driven by the keypoints. No training.

How one frame is made:

1. **Control points.** The 68 face keypoints, a ring of *head* points around the face (forehead, hair, ears, neck)
   that follow the head's rigid motion (a similarity transform fitted to the stable keypoints: eye corners, nose,
   upper jaw), a ring of *anchor* points further out that never move, and the corners and edge midpoints of a
   rectangle enclosing the image. Anchors and border keep the background still; only the region inside the anchor
   ring is warped, so the rest of the frame is the reference's pixels.
2. **Triangulation, once.** A Delaunay triangulation of the reference's control points (computed on a copy whose
   mouth and eyes are opened to a canonical shape, so that a closed mouth or a blink in the reference photo does not
   produce a degenerate or missing triangle). Per triangle, the reference vertices are kept.
3. **Dense map per frame.** The triangles are rasterised at their *target* positions into a triangle-index image
   (only the moving region), each pixel's source position is its triangle's affine map applied to the pixel
   (vectorised gather over the index image), and ``cv2.remap`` samples the reference there.
4. **Mouth.** When the inner lips open wider than in the reference, the inner-lip polygon is filled with a dark
   cavity and a hint of upper and lower teeth (colours derived from the photo's lips and skin), blended with a
   feathered mask whose strength grows with the opening.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..components import Params, Renderer
from ..hookspecs import hookimpl
from ..keypoints import Keypoints, apply_similarity, mouth_opening, reference_iod, similarity
from ..rendering import prepare_inputs

# Points whose motion defines the rigid head motion: nose bridge and base, eye corners, upper jaw.
STABLE = np.array([27, 28, 29, 30, 31, 33, 35, 36, 39, 42, 45, 0, 1, 15, 16])
INNER_LIP = np.arange(60, 68)
OUTER_LIP = np.arange(48, 60)
# the mouth is filled once it opens FILL_FROM wider than in the photo, fully at FILL_FROM + FILL_RAMP (opening in IOD)
FILL_FROM, FILL_RAMP = 0.02, 0.08
UPPER_INNER = np.array([60, 61, 62, 63, 64])
LOWER_INNER = np.array([64, 65, 66, 67, 60])
# inner-lip point -> the outer-lip point it sits inside of (for the canonical, opened mouth used to triangulate)
INNER_TO_OUTER = np.array([48, 50, 51, 52, 54, 56, 57, 58])
EYES = (np.arange(36, 42), np.arange(42, 48))
RING_POINTS = 16
BORDER_STEPS = 4  # border points per rectangle side


# --------------------------------------------------------------------------------------------------- geometry


def head_rings(
    face: np.ndarray, image_size: tuple[int, int] | None = None, anchor_scale: float = 1.6, min_scale: float = 1.15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head ring, its motion weights, and the fixed anchor ring around a face ``(68, 2)``.

    The head ellipse reaches about half a face height above the brows (hair), a little below the chin (neck) and
    beyond the jaw (ears). Head points below eye level follow the head less (down to half at the bottom), so the
    neck and shoulders do not swing with every nod. Anchors sit ``anchor_scale`` times further out, but in a
    close-up no further than the image border (and no closer than ``min_scale``), so the corners of the frame stay.
    """
    x0, y0 = face.min(0)
    x1, y1 = face.max(0)
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    centre = np.array([(x0 + x1) / 2, y0 + 0.3 * h])
    axes = np.array([0.68 * w, 0.88 * h])
    t = np.linspace(0, 2 * np.pi, RING_POINTS, endpoint=False) + np.pi / RING_POINTS
    unit = np.stack([np.cos(t), np.sin(t)], axis=1)
    head = centre + unit * axes
    weights = 1.0 - 0.5 * np.clip(unit[:, 1], 0, 1)  # sin > 0: below the centre (image y grows downwards)
    scale = np.full(RING_POINTS, anchor_scale)
    if image_size is not None:
        ih, iw = image_size
        ray = unit * axes  # the anchor is centre + s * ray; find where each ray leaves the image
        with np.errstate(divide="ignore", invalid="ignore"):
            sx = np.where(ray[:, 0] > 0, (iw - 1 - centre[0]) / ray[:, 0], (0 - centre[0]) / ray[:, 0])
            sy = np.where(ray[:, 1] > 0, (ih - 1 - centre[1]) / ray[:, 1], (0 - centre[1]) / ray[:, 1])
        exit_s = np.nan_to_num(np.minimum(np.abs(sx), np.abs(sy)), nan=anchor_scale, posinf=anchor_scale)
        scale = np.clip(exit_s, min_scale, anchor_scale)
    anchor = centre + unit * axes * scale[:, None]
    return head, weights, anchor


def canonical_face(face: np.ndarray) -> np.ndarray:
    """The face with its inner mouth and eyes opened to a canonical shape, used only to choose the triangulation.

    A closed mouth (inner lips on top of each other) or a blink gives coincident points, which Delaunay would drop
    or join into slivers; triangulating this opened copy gives every point its own triangles.
    """
    c = face.copy()
    mouth_c = face[OUTER_LIP].mean(0)
    shrink = np.array([0.8, 0.55, 0.5, 0.55, 0.8, 0.55, 0.5, 0.55])[:, None]
    c[INNER_LIP] = mouth_c + shrink * (face[INNER_TO_OUTER] - mouth_c)
    for eye in EYES:
        p0, p3 = face[eye[0]], face[eye[3]]
        d = p3 - p0
        n = np.array([d[1], -d[0]]) * 0.3  # perpendicular, pointing up for a left-to-right eye
        c[eye[1]], c[eye[2]] = p0 + d / 3 + n, p0 + 2 * d / 3 + n
        c[eye[4]], c[eye[5]] = p0 + 2 * d / 3 - n, p0 + d / 3 - n
    return c


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles ``(n, 3)`` over ``points``, every point a vertex (input joggled if needed)."""
    from scipy.spatial import Delaunay

    tri = Delaunay(points)
    if len(np.unique(tri.simplices)) < len(points):
        tri = Delaunay(points, qhull_options="QJ Pp")
    return tri.simplices.astype(np.int32)


def polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


# ----------------------------------------------------------------------------------------------------- the warp


class FaceWarper:
    """Precomputed piecewise-affine warp of one reference image; :meth:`warp` makes one frame.

    ``image`` is the reference (RGB uint8, output size) and ``reference`` its 68 keypoints in the same pixels.
    """

    def __init__(
        self,
        image: np.ndarray,
        reference: np.ndarray,
        *,
        head_motion: bool = True,
        anchors: bool = True,
        mouth_fill: float = 1.0,
        teeth: bool = True,
        map_step: int = 1,
    ):
        self.image = np.ascontiguousarray(image)
        self.h, self.w = image.shape[:2]
        self.reference = np.asarray(reference, np.float64)
        self.mouth_fill, self.teeth = float(mouth_fill), bool(teeth)
        self.map_step = int(map_step)  # the dense map is computed on every `map_step`-th pixel and upsampled
        face = self.reference
        head, self.head_weights, anchor = head_rings(face, (self.h, self.w))
        parts = [face]
        if head_motion:
            parts.append(head)
        else:
            self.head_weights = np.zeros(0)
        self.n_moving = sum(len(p) for p in parts)
        if anchors:
            parts.append(anchor)
        src = np.concatenate(parts)
        # a rectangle enclosing the image and every control point, with a margin, so the hull covers the frame
        # whatever the face does (a face at the border, keypoints outside the image)
        margin = 0.1 * max(self.h, self.w) + 2
        lo = np.minimum(src.min(0), 0) - margin
        hi = np.maximum(src.max(0), [self.w - 1, self.h - 1]) + margin
        self.bounds = (lo + 1, hi - 1)  # moving points are kept inside the border rectangle
        s = np.linspace(0, 1, BORDER_STEPS + 1)
        xs, ys = lo[0] + s * (hi[0] - lo[0]), lo[1] + s[1:-1] * (hi[1] - lo[1])
        border = np.concatenate(
            [
                np.stack([xs, np.full_like(xs, lo[1])], 1),
                np.stack([xs, np.full_like(xs, hi[1])], 1),
                np.stack([np.full_like(ys, lo[0]), ys], 1),
                np.stack([np.full_like(ys, hi[0]), ys], 1),
            ]
        )
        self.src = np.concatenate([src, border])
        canon = self.src.copy()
        canon[:68] = canonical_face(face)
        tris = triangulate(canon)
        # only triangles with a moving vertex are warped; the others map every pixel to itself
        self.tris = tris[(tris < self.n_moving).any(axis=1)]
        self.src_tri = self.src[self.tris]  # (n, 3, 2) reference vertices
        # the mouth opening (keypoints.mouth_opening) of every frame in the reference's inter-ocular distance
        self.iod = reference_iod(face)
        self.ref_opening = float(mouth_opening(face, self.iod))
        self._identity_index = len(self.tris)
        self._colours()

    def _colours(self) -> None:
        """Cavity and teeth colours from the photo: darkened lip colour, and an off-white matched to the skin."""
        import cv2

        face = self.reference
        mask = np.zeros((self.h, self.w), np.uint8)
        cv2.fillPoly(mask, [np.round(face[OUTER_LIP]).astype(np.int32)], 1)
        cv2.fillPoly(mask, [np.round(face[INNER_LIP]).astype(np.int32)], 0)
        lips = self.image[mask > 0]
        lip = lips.reshape(-1, 3).mean(0) if len(lips) else np.array([150.0, 80.0, 80.0])
        cheek = np.zeros((self.h, self.w), np.uint8)
        cheeks = [face[[1, 3, 48, 31, 39]], face[[15, 13, 54, 35, 42]]]  # between jaw, mouth corner, nose and eye
        cv2.fillPoly(cheek, [np.round(c).astype(np.int32) for c in cheeks], 1)
        skin = self.image[cheek > 0]
        skin_luma = float(skin.reshape(-1, 3).mean()) if len(skin) else 150.0
        skin_rgb = skin.reshape(-1, 3).mean(0) if len(skin) else np.array([170.0, 140.0, 120.0])
        self.cavity = (lip * 0.2 + np.array([6.0, 2.0, 2.0])).astype(np.float32)
        # teeth: off-white pulled towards the skin's tone and brightness, so they do not glow in a dim photo
        white = np.array([232.0, 226.0, 212.0]) * min(1.0, (skin_luma + 60.0) / 210.0)
        self.teeth_colour = (0.75 * white + 0.25 * skin_rgb).astype(np.float32)

    # ------------------------------------------------------------------------------------------------ per frame

    def control_points(self, face: np.ndarray) -> np.ndarray:
        """Target positions of every control point for one frame's keypoints ``(68, 2)``."""
        dst = self.src.copy()
        dst[:68] = face
        nh = len(self.head_weights)
        if nh:
            a, b = similarity(self.reference[STABLE], face[STABLE])
            head = self.src[68 : 68 + nh]
            moved = apply_similarity(head, a, b)
            dst[68 : 68 + nh] = head + self.head_weights[:, None] * (moved - head)
        lo, hi = self.bounds
        dst[: self.n_moving] = np.clip(dst[: self.n_moving], lo, hi)
        return dst

    def source_map(self, dst: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray] | None:
        """``((x0, y0, x1, y1), map_x, map_y)``: where each pixel of the warped region samples the reference, or
        None when nothing moved."""
        import cv2

        dst_tri = dst[self.tris]  # (n, 3, 2) target vertices
        if np.abs(dst_tri - self.src_tri).max() < 1e-3:
            return None
        x0, y0 = np.floor(dst_tri.reshape(-1, 2).min(0)).astype(int)
        x1, y1 = np.ceil(dst_tri.reshape(-1, 2).max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.w), min(y1, self.h)
        if x1 <= x0 or y1 <= y0:
            return None
        # affine target -> source per triangle: solve [x y 1] @ M = [u v]
        ones = np.ones((len(dst_tri), 3, 1))
        lhs = np.concatenate([dst_tri, ones], axis=2)
        det = np.linalg.det(lhs)
        ok = np.abs(det) > 1e-6
        lhs[~ok] = np.eye(3)
        m = np.linalg.solve(lhs, self.src_tri)  # (n, 3, 2)
        m[~ok] = [[1, 0], [0, 1], [0, 0]]
        # coefficient tables, the last row the identity for pixels no moving triangle covers
        coef = np.concatenate([m.reshape(-1, 6), [[1, 0, 0, 1, 0, 0]]], axis=0).T.astype(np.float32)  # (6, n + 1)
        # triangle-index raster of the target region, on a grid of every `step`-th pixel: grid cell (i, j) samples
        # the pixel centre ((j + 0.5) s - 0.5, (i + 0.5) s - 0.5), which is where cv2.resize puts it when upsampling
        s = self.map_step
        gh, gw = -(-(y1 - y0) // s), -(-(x1 - x0) // s)
        index = np.full((gh, gw), self._identity_index, np.int32)
        verts = np.round(((dst_tri - [x0, y0] + 0.5) / s - 0.5) * 16).astype(np.int32)  # 4 fractional bits
        for i in np.flatnonzero(ok):
            cv2.fillConvexPoly(index, verts[i], int(i), cv2.LINE_8, 4)
        xs = (x0 + (np.arange(gw) + 0.5) * s - 0.5).astype(np.float32)[None, :]
        ys = (y0 + (np.arange(gh) + 0.5) * s - 0.5).astype(np.float32)[:, None]
        index = index.astype(np.intp)  # take() would convert it on every call
        a, b, c, d, e, f = (row.take(index) for row in coef)  # u = a x + c y + e, v = b x + d y + f
        map_x = a * xs
        map_x += c * ys
        map_x += e
        map_y = b * xs
        map_y += d * ys
        map_y += f
        if s > 1:  # the map is continuous and piecewise affine: bilinear upsampling is exact inside triangles
            size = (gw * s, gh * s)
            map_x = cv2.resize(map_x, size, interpolation=cv2.INTER_LINEAR)[: y1 - y0, : x1 - x0]
            map_y = cv2.resize(map_y, size, interpolation=cv2.INTER_LINEAR)[: y1 - y0, : x1 - x0]
        return (x0, y0, x1, y1), map_x, map_y

    def warp(self, face: np.ndarray) -> np.ndarray:
        """One frame (RGB uint8, the reference's size) for keypoints ``face`` ``(68, 2)`` in output pixels."""
        import cv2

        face = np.asarray(face, np.float64)
        dst = self.control_points(face)
        out = self.image.copy()
        res = self.source_map(dst)
        if res is not None:
            (x0, y0, x1, y1), map_x, map_y = res
            cv2.remap(
                self.image, map_x, map_y, cv2.INTER_LINEAR, dst=out[y0:y1, x0:x1], borderMode=cv2.BORDER_REPLICATE
            )
        if self.mouth_fill > 0:
            self._fill_mouth(out, dst[:68])
        return out

    def _fill_mouth(self, out: np.ndarray, face: np.ndarray) -> None:
        """Blend a dark cavity and a teeth hint into the inner-lip polygon when the mouth opens wider than in the
        reference (in place)."""
        import cv2

        extra = float(mouth_opening(face, self.iod)) - self.ref_opening
        alpha = float(np.clip((extra - FILL_FROM) / FILL_RAMP, 0.0, 1.0)) * self.mouth_fill
        if alpha <= 0:
            return
        inner = face[INNER_LIP]
        pad = 3
        x0, y0 = np.maximum(np.floor(inner.min(0)).astype(int) - pad, 0)
        x1, y1 = np.minimum(np.ceil(inner.max(0)).astype(int) + pad + 1, [self.w, self.h])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        off = np.array([x0, y0])
        crop = out[y0:y1, x0:x1].astype(np.float32)
        shape = crop.shape[:2]

        def poly_mask(poly: np.ndarray) -> np.ndarray:
            m = np.zeros(shape, np.uint8)
            cv2.fillPoly(m, [np.round((poly - off) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
            return m.astype(np.float32) / 255.0

        mouth = poly_mask(inner)
        # the cavity darkens towards its middle
        k = 2 * max(1, int(0.15 * min(shape))) + 1
        depth = cv2.GaussianBlur(mouth, (k, k), 0)[..., None]
        fill = self.cavity * (1.25 - 0.6 * depth)
        if self.teeth:
            axis = face[64] - face[60]
            width = float(np.linalg.norm(axis)) + 1e-6
            axis = axis / width
            down = np.array([-axis[1], axis[0]]) if axis[0] >= 0 else np.array([axis[1], -axis[0]])
            gap = float(np.linalg.norm(face[[61, 62, 63]] - face[[67, 66, 65]], axis=1).mean())
            t_up = min(0.3 * gap, 0.1 * width)
            upper, lower = face[UPPER_INNER], face[LOWER_INNER]
            band = np.concatenate([upper, upper[::-1] + down * t_up])
            band_low = np.concatenate([lower, lower[::-1] - down * 0.35 * t_up])
            # teeth fade into the dark towards the mouth corners (the lower ones faster: only their middle shows)
            yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
            centre = (face[60] + face[64]) / 2 - off
            u = ((xx - centre[0]) * axis[0] + (yy - centre[1]) * axis[1]) / (width / 2)
            fade = np.clip(1.0 - u**2, 0, 1)
            teeth = np.clip(poly_mask(band) * fade**0.7 + 0.45 * poly_mask(band_low) * fade**3, 0, 1)
            kt = 2 * max(1, int(width / 24)) + 1
            teeth = cv2.GaussianBlur(teeth, (kt, kt), 0)[..., None]
            fill = fill * (1 - teeth) + self.teeth_colour * teeth
        k = 3 if min(shape) < 40 else 5
        m = cv2.GaussianBlur(mouth, (k, k), 0)[..., None] * alpha
        out[y0:y1, x0:x1] = np.clip(crop * (1 - m) + fill * m + 0.5, 0, 255).astype(np.uint8)


class WarpRenderer(Renderer):
    """Animates the reference photo by a piecewise-affine warp over the keypoints; fills the opening mouth."""

    name = "warp"

    class Params(Params):
        size: int | None = Field(
            None, ge=16, le=4096, description="longest side of the output; null keeps the image size"
        )
        head_motion: bool = Field(True, description="warp a ring around the face (hair, ears) with the head's motion")
        anchors: bool = Field(True, description="fixed points around the head, so the background does not move")
        mouth_fill: float = Field(1.0, ge=0, le=1, description="strength of the mouth cavity drawn when it opens")
        teeth: bool = Field(True, description="draw a hint of teeth inside the open mouth")
        map_step: int = Field(
            1,
            ge=1,
            le=4,
            description="compute the warp map on every n-th pixel and upsample it: "
            "faster for large outputs, slightly softer at the lips",
        )

    def warper(self, keypoints: Keypoints, reference_image: np.ndarray, reference_points=None):
        """``(FaceWarper, frame keypoints in output pixels)`` for the inputs, checked (see ``prepare_inputs``)."""
        inp = prepare_inputs(
            keypoints, reference_image, self.params.size, reference_points=reference_points, renderer=self.name
        )
        p = self.params
        warper = FaceWarper(
            inp.image,
            inp.reference,
            head_motion=p.head_motion,
            anchors=p.anchors,
            mouth_fill=p.mouth_fill,
            teeth=p.teeth,
            map_step=p.map_step,
        )
        return warper, inp.points

    def frames(self, keypoints: Keypoints, reference_image: np.ndarray, *, reference_points=None):
        """Frames for ``keypoints``; the reference image's own keypoints are ``reference_points`` if given, else
        frame 0 of ``keypoints`` (generators return the reference as frame 0)."""
        warper, points = self.warper(keypoints, reference_image, reference_points)
        return (warper.warp(p) for p in points)


@hookimpl
def register_renderers(register):
    register(WarpRenderer)
