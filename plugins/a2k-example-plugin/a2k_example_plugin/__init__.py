"""An example a2k-toolkit plugin: the template for writing your own (see docs/plugins.md).

It provides two components:

* renderer ``heatmap``: each keypoint drawn as a soft Gaussian blob, coloured by face part;
* generator ``smoothed``: wraps any other registered generator and low-pass filters its output in time.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from a2k_toolkit import A2KError, KeypointGenerator, Keypoints, Params, Renderer, hookimpl
from a2k_toolkit.keypoints import PART_COLORS, PARTS

__version__ = "0.1.0"


class HeatmapRenderer(Renderer):
    """Keypoints as soft coloured Gaussian blobs on black."""

    name = "heatmap"

    class Params(Params):
        sigma: float = Field(3.0, gt=0, le=50, description="blob radius in output pixels")
        size: int | None = Field(None, ge=16, le=4096, description="longest output side; null keeps the image size")

    def frames(self, keypoints: Keypoints, reference_image: np.ndarray):
        if len(keypoints) == 0:
            raise A2KError("cannot render a zero-length keypoint sequence")
        h, w = reference_image.shape[:2]
        scale = 1.0 if self.params.size is None else self.params.size / max(h, w)
        oh, ow = max(2, int(round(h * scale)) // 2 * 2), max(2, int(round(w * scale)) // 2 * 2)
        ys, xs = np.mgrid[0:oh, 0:ow].astype(np.float32)
        colors = np.zeros((68, 3), np.float32)
        for part, idx in PARTS.items():
            colors[list(idx)] = PART_COLORS[part]
        r = int(np.ceil(3 * self.params.sigma))
        for pts in keypoints.points:
            canvas = np.zeros((oh, ow, 3), np.float32)
            for (x, y), color in zip(pts[:, :2] * scale, colors):
                x0, x1 = max(int(x) - r, 0), min(int(x) + r + 1, ow)
                y0, y1 = max(int(y) - r, 0), min(int(y) + r + 1, oh)
                if x0 >= x1 or y0 >= y1:
                    continue  # keypoint outside the frame
                g = np.exp(-((xs[y0:y1, x0:x1] - x) ** 2 + (ys[y0:y1, x0:x1] - y) ** 2) / (2 * self.params.sigma**2))
                canvas[y0:y1, x0:x1] = np.maximum(canvas[y0:y1, x0:x1], g[..., None] * color)
            yield np.clip(canvas, 0, 255).astype(np.uint8)


class SmoothedGenerator(KeypointGenerator):
    """Any registered generator, low-pass filtered in time (frame 0 stays the reference)."""

    name = "smoothed"

    class Params(Params):
        base: str = Field("procedural", description="name of the generator to wrap")
        base_params: dict = Field(default_factory=dict)
        sigma: float = Field(1.5, gt=0, le=25, description="Gaussian smoothing in frames")

    def _base(self) -> KeypointGenerator:
        # look the wrapped generator up by *name* in the catalog (never by import path)
        from a2k_toolkit.catalog import Catalog

        if not hasattr(self, "_base_gen"):
            self._base_gen = Catalog().get("generator", self.params.base)(self.params.base_params)
        return self._base_gen

    def generate(self, features, reference, *, seed=None):
        from scipy.ndimage import gaussian_filter1d

        out = self._base().generate(features, reference, seed=seed)
        pts = gaussian_filter1d(out.points, self.params.sigma, axis=0, mode="nearest")
        pts[0] = reference.points[0]
        return out.with_points(pts.astype(np.float32))


@hookimpl
def register_renderers(register):
    register(HeatmapRenderer)


@hookimpl
def register_generators(register):
    register(SmoothedGenerator)
