"""Renderer ``side-by-side``: inspection videos composing several panels per frame.

Each panel is either ``reference`` (the still photo) or any registered renderer, given by name or as
``{name, params}``; by default *reference | sketch | warp*. Panels are nested components: the config checks their
params with the rest, and the host's catalog (the build context ``Catalog.build`` passes) builds them.
:meth:`SideBySideRenderer.compare` renders two keypoint sequences (ground truth and prediction) as two labelled rows
of the same panels.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
from pydantic import Field

from ..components import Params, Renderer
from ..config import RendererSpec, validate_nested, validate_spec
from ..errors import A2KError, ConfigError, InputError
from ..hookspecs import hookimpl
from ..io import to_rgb_uint8
from ..keypoints import Keypoints
from ..rendering import output_size, reference_image_rgb

REFERENCE = "reference"
GAP_COLOUR = 40


class PanelSpec(RendererSpec):
    """One panel: ``reference`` (the still photo, no params) or a registered renderer's name, with its params."""

    def names_component(self) -> bool:
        return self.name != REFERENCE


def put_label(img: np.ndarray, text: str) -> None:
    """Write ``text`` at the top left of ``img`` (in place): white on a darkened strip, sized to the image."""
    import cv2

    scale = max(0.35, img.shape[0] / 600)
    thick = max(1, int(round(scale * 1.6)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(2, th // 3)
    x1, y1 = min(tw + 2 * pad, img.shape[1]), min(th + base + 2 * pad, img.shape[0])
    img[:y1, :x1] = (img[:y1, :x1].astype(np.uint16) * 2 // 5).astype(np.uint8)
    cv2.putText(img, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


class SideBySideRenderer(Renderer):
    """Panels side by side (reference photo, sketch, warp, any renderer): for inspecting and comparing output."""

    name = "side-by-side"

    class Params(Params):
        panels: list[PanelSpec] = Field(
            default_factory=lambda: [PanelSpec(name=REFERENCE), PanelSpec(name="sketch"), PanelSpec(name="warp")],
            min_length=1,
            max_length=8,
            description="panels from left to right: 'reference' or a renderer name / {name, params}",
        )
        size: int | None = Field(256, ge=16, le=2048, description="longest side of each panel; null: the image size")
        labels: bool = Field(
            True, description="write each panel's name on it (in `compare`, the first panel shows the row's name)"
        )
        gap: int = Field(4, ge=0, le=64, description="pixels between panels")

    uses_catalog = True

    def __init__(self, params=None, *, catalog=None, **kwargs):
        """``catalog``: the host's catalog (the build context, passed by ``Catalog.build``), which builds the panel
        renderers; the renderer never makes a catalog of its own."""
        super().__init__(params, **kwargs)
        for i, spec in enumerate(self.params.panels):
            if spec.name == REFERENCE and spec.params:
                raise ConfigError(f"panels[{i}]: the 'reference' panel takes no params, got {sorted(spec.params)}")
            if spec.name == self.name:
                raise ConfigError(f"panels[{i}]: a side-by-side panel cannot itself be 'side-by-side'")
        self._panels: list[Renderer | None] | None = None
        if catalog is not None:
            validate_nested(self.params, catalog, "")  # every panel checked before any is built (no-op if done)
        if catalog is not None or not any(spec.names_component() for spec in self.params.panels):
            self._panels = [self._build(i, spec, catalog) for i, spec in enumerate(self.params.panels)]

    @property
    def panels(self) -> list[Renderer | None]:
        """The panel renderers, left to right (None for the reference photo)."""
        if self._panels is None:
            raise ConfigError(
                "the 'side-by-side' renderer was built without the host's catalog, so it cannot build its panels; "
                "build it with catalog.build('renderer', 'side-by-side', params) (Pipeline.from_config does), or pass "
                "catalog= to SideBySideRenderer"
            )
        return self._panels

    def _build(self, i: int, spec: PanelSpec, catalog) -> Renderer | None:
        if not spec.names_component():
            return None
        cls = catalog.get("renderer", spec.name)
        if "size" in cls.Params.model_fields and "size" not in spec.params:
            # the panel's params are the spec's plus the side-by-side's size: checked as such
            spec = RendererSpec(name=spec.name, params={**spec.params, "size": self.params.size})
        return catalog.build("renderer", spec.name, validate_spec(spec, catalog, f"panels[{i}]"))

    def to(self, device):
        super().to(device)
        for p in self._panels or []:
            if p is not None:
                p.to(device)
        return self

    # ---------------------------------------------------------------------------------------------------- frames

    def _row(
        self, keypoints: Keypoints, image: np.ndarray, label: str | None, panel_kwargs: list[dict] | None = None
    ) -> Iterator[np.ndarray]:
        """Frames of one row: every panel rendered and joined left to right. Panel renderers are started (and
        their inputs checked) before the first frame is asked for."""
        import cv2

        oh, ow, _ = output_size(image.shape[:2], self.params.size)
        still = cv2.resize(image, (ow, oh), interpolation=cv2.INTER_AREA if ow < image.shape[1] else cv2.INTER_LINEAR)
        kws = panel_kwargs or [{} for _ in self.panels]
        streams = [None if p is None else iter(p.frames(keypoints, image, **kw)) for p, kw in zip(self.panels, kws)]
        return self._compose(streams, still, len(keypoints), label)

    def _compose(self, streams, still: np.ndarray, n: int, label: str | None) -> Iterator[np.ndarray]:
        import cv2

        oh, ow = still.shape[:2]
        names = [spec.name for spec in self.params.panels]
        gap = self.params.gap
        width = len(streams) * ow + (len(streams) - 1) * gap
        for t in range(n):
            row = np.full((oh, width, 3), GAP_COLOUR, np.uint8)
            for j, stream in enumerate(streams):
                if stream is None:
                    panel = still.copy()
                else:
                    panel = next(stream, None)
                    if panel is None:
                        raise A2KError(f"{self.name}: panel {names[j]!r} stopped after {t} of {n} frames")
                    panel = to_rgb_uint8(np.array(panel))  # a copy: labels must not draw into the panel's buffers
                if panel.shape[:2] != (oh, ow):
                    panel = cv2.resize(panel, (ow, oh), interpolation=cv2.INTER_AREA)
                if self.params.labels:
                    put_label(panel, label if j == 0 and label else names[j])
                row[:, j * (ow + gap) : j * (ow + gap) + ow] = panel
            yield row

    def frames(self, keypoints: Keypoints, reference_image: np.ndarray) -> Iterator[np.ndarray]:
        """One row of panels per frame."""
        if len(keypoints) == 0:
            raise InputError(f"{self.name}: cannot render a zero-length keypoint sequence (0 frames)")
        return self._row(keypoints, reference_image_rgb(reference_image), None)

    def compare(
        self,
        truth: Keypoints,
        prediction: Keypoints,
        reference_image: np.ndarray,
        *,
        labels: tuple[str, str] = ("ground truth", "prediction"),
    ) -> Iterator[np.ndarray]:
        """Two rows per frame, ``truth`` above ``prediction``, both driving the same reference image from
        ``truth``'s first frame (its keypoints are the reference's). Sequences of different lengths are cut to the
        shorter, with a warning. Stream the frames to :func:`a2k_toolkit.io.write_video` for an MP4."""
        if len(truth) == 0 or len(prediction) == 0:
            raise InputError(f"{self.name}: cannot compare a zero-length keypoint sequence")
        n = min(len(truth), len(prediction))
        if len(truth) != len(prediction):
            warnings.warn(
                f"{self.name}: ground truth has {len(truth)} frames and the prediction {len(prediction)}; "
                f"comparing the first {n}",
                UserWarning,
                stacklevel=2,
            )
        image = reference_image_rgb(reference_image)
        ref = truth.points[0, :, :2]
        if truth.image_size and prediction.image_size and truth.image_size != prediction.image_size:
            raise InputError(
                f"{self.name}: ground truth is in pixels of a {truth.image_size[1]}x{truth.image_size[0]} image and "
                f"the prediction of a {prediction.image_size[1]}x{prediction.image_size[0]} one; use the same image"
            )
        kw = [{"reference_points": ref} if _takes_reference(p) else {} for p in self.panels]
        top = self._row(truth[:n], image, labels[0], kw)
        bottom = self._row(prediction[:n], image, labels[1], kw)
        return self._stack(top, bottom)

    def _stack(self, top: Iterator[np.ndarray], bottom: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        gap = self.params.gap
        for a, b in zip(top, bottom):
            out = np.full((a.shape[0] * 2 + gap, a.shape[1], 3), GAP_COLOUR, np.uint8)
            out[: a.shape[0]] = a
            out[a.shape[0] + gap :] = b
            yield out


def _takes_reference(renderer: Renderer | None) -> bool:
    import inspect

    return renderer is not None and "reference_points" in inspect.signature(renderer.frames).parameters


@hookimpl
def register_renderers(register):
    register(SideBySideRenderer)
