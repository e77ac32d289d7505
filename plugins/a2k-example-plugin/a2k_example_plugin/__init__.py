"""An example a2k-toolkit plugin: the template for writing your own (see docs/plugins.md).

It provides two components:

* renderer ``heatmap``: each keypoint drawn as a soft Gaussian blob, coloured by face part;
* generator ``smoothed``: wraps any other registered generator and low-pass filters its output in time. The
  wrapped generator is a *nested component*: a typed ``GeneratorSpec`` param, which the host checks with the rest of
  the config and builds through its own catalog (``uses_catalog``), so it may come from any installed plugin.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from a2k_toolkit import A2KError, ConfigError, KeypointGenerator, Keypoints, Params, Renderer, hookimpl
from a2k_toolkit.config import GeneratorSpec, validate_spec
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
    uses_catalog = True  # the host passes its catalog (the build context), which builds the wrapped generator

    class Params(Params):
        base: GeneratorSpec = Field(
            default_factory=lambda: GeneratorSpec(name="procedural"),
            description="the generator to wrap: a name or {name, params}",
        )
        sigma: float = Field(1.5, gt=0, le=25, description="Gaussian smoothing in frames")

        @model_validator(mode="before")
        @classmethod
        def _base_params(cls, data: Any) -> Any:
            # earlier versions took `base: NAME` plus `base_params: {...}`
            if isinstance(data, dict) and "base_params" in data:
                warnings.warn(
                    "smoothed: `base_params` is deprecated; give `base: {name: ..., params: {...}}`",
                    DeprecationWarning,
                    stacklevel=2,
                )
                data = dict(data)
                base = data.get("base", "procedural")
                name = base if isinstance(base, str) else base["name"]
                data["base"] = {"name": name, "params": data.pop("base_params")}
            return data

    def __init__(self, params=None, *, catalog=None, **kwargs):
        super().__init__(params, **kwargs)
        # the wrapped generator comes from the host's catalog, by *name* (never by import path), and is built with
        # this one (a checkpoint it reads is read now; weights load on first use)
        self._base = catalog.build("generator", self.params.base, where="base") if catalog is not None else None

    @classmethod
    def frontend_spec(cls, params, catalog):
        # the wrapped generator's front-end (for example a checkpoint's), which the pipeline then runs by default
        base = params.base
        base_params = validate_spec(base, catalog, "generator.params.base")  # checked with the config already
        return catalog.get("generator", base.name).frontend_spec(base_params, catalog)

    def check_frontend(self, frontend) -> None:
        if self._base is not None:
            self._base.check_frontend(frontend)

    def generate(self, features, reference, *, seed=None):
        from scipy.ndimage import gaussian_filter1d

        if self._base is None:
            raise ConfigError(
                "the 'smoothed' generator was built without the host's catalog, so it cannot build the generator it "
                "wraps; build it with catalog.build('generator', 'smoothed', params) (Pipeline.from_config does)"
            )
        out = self._base.generate(features, reference, seed=seed)
        pts = gaussian_filter1d(out.points, self.params.sigma, axis=0, mode="nearest")
        pts[0] = reference.points[0]
        return out.with_points(pts.astype(np.float32))


@hookimpl
def register_renderers(register):
    register(HeatmapRenderer)


@hookimpl
def register_generators(register):
    register(SmoothedGenerator)
