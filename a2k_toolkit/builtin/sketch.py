"""Renderer ``sketch``: keypoints drawn as coloured face parts on a blank canvas or the reference image."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ..components import Params, Renderer
from ..errors import InputError
from ..hookspecs import hookimpl
from ..keypoints import Keypoints, draw_keypoints
from ..rendering import output_size  # noqa: F401  (re-exported: renderers size their output the same way)


class SketchRenderer(Renderer):
    """Keypoints as coloured face parts, on black, white or the (dimmed) reference image."""

    name = "sketch"

    class Params(Params):
        size: int | None = Field(
            None, ge=16, le=4096, description="longest side of the output; null keeps the image size"
        )
        background: Literal["black", "white", "reference"] = "black"
        thickness: int = Field(2, ge=1, le=20)
        dots: bool = False

    def frames(self, keypoints: Keypoints, reference_image: np.ndarray):
        if len(keypoints) == 0:
            raise InputError("cannot render a zero-length keypoint sequence")
        import cv2

        oh, ow, scale = output_size(reference_image.shape[:2], self.params.size)
        if self.params.background == "reference":
            base = cv2.resize(reference_image, (ow, oh), interpolation=cv2.INTER_AREA)
            base = (base.astype(np.float32) * 0.5).astype(np.uint8)
        else:
            base = np.full((oh, ow, 3), 0 if self.params.background == "black" else 255, np.uint8)
        for pts in keypoints.points:
            yield draw_keypoints(base.copy(), pts * scale, self.params.thickness, self.params.dots)


@hookimpl
def register_renderers(register):
    register(SketchRenderer)
