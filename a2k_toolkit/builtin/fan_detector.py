"""Keypoint detector ``fan``: face-alignment's 2D-FAN (Bulat & Tzimiropoulos) behind a choice of face detectors.

The network weights come from face-alignment's own download and cache (``$TORCH_HOME/hub/checkpoints``): the first
use downloads them, later uses read the cached files; nothing is downloaded when the class is constructed. The face
detector backend is chosen by name (``sfd``, ``blazeface`` or ``dlib``; ``dlib`` needs no download on CPU).

:meth:`FanDetector.detect_batch` runs the landmark network on the faces of many images at once, in chunks of
``batch_size``, which is what makes it fast on a GPU; :meth:`FanDetector.landmarks_batch` does the same for given
boxes (tracking).
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from pydantic import Field

from ..components import Component, KeypointDetector, Params
from ..errors import A2KError, require
from ..hookspecs import hookimpl

Box = tuple[float, float, float, float]
# files face-alignment fetches into $TORCH_HOME/hub/checkpoints: the 2D-FAN network and the S3FD face detector
WEIGHT_FILES = ("2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth")


class MissingWeightsError(A2KError):
    """The fan detector's network weights are neither cached nor downloadable."""


def weights_dir() -> str:
    """Where face-alignment looks for (and downloads) its weights: ``$TORCH_HOME/hub/checkpoints``."""
    import os

    import torch.hub

    return os.path.join(torch.hub.get_dir(), "checkpoints")


def _face_alignment():
    return require("face_alignment", "fan", "The fan keypoint detector")


def _area(box) -> float:
    return float(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]))


class FanDetector(KeypointDetector):
    """68 landmarks with face-alignment's 2D-FAN; GPU-batched when a GPU is present (optional extra ``fan``)."""

    name = "fan"

    class Params(Params):
        face_detector: Literal["sfd", "blazeface", "dlib"] = Field(
            "sfd", description="face-alignment's face detector backend ('dlib' runs offline on CPU)"
        )
        device: str = Field("auto", description="'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', ...")
        batch_size: int = Field(16, ge=1, le=1024, description="face crops per forward pass of the landmark network")
        flip_input: bool = Field(True, description="average with the prediction on the mirrored crop (2x the cost)")
        compile: bool = Field(False, description="torch.compile the network (one-time cost, faster afterwards)")

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self.device = self.params.device
        self._fa = None

    def to(self, device) -> Component:
        device = str(device)
        if device != self.device:
            self._fa = None  # rebuilt on the new device at next use
        self.device = device
        return self

    # ------------------------------------------------------------------------------------------------ model

    @property
    def face_alignment(self):
        """The underlying ``face_alignment.FaceAlignment``, built (and its weights fetched) on first use."""
        if self._fa is None:
            from ..device import resolve_device

            fa = _face_alignment()
            self.device = resolve_device(self.device)
            try:
                with warnings.catch_warnings():  # face-alignment calls its dlib backend deprecated; a choice here
                    warnings.filterwarnings("ignore", message=".*detector is deprecated", category=UserWarning)
                    self._fa = fa.FaceAlignment(
                        fa.LandmarksType.TWO_D,
                        device=self.device,
                        flip_input=self.params.flip_input,
                        face_detector=self.params.face_detector,
                        compile=self.params.compile,
                        max_batch_size=self.params.batch_size,
                    )
            except OSError as exc:  # urllib's URLError included: no network, or a partial download
                raise MissingWeightsError(
                    f"the fan detector could not get its weights ({exc}); face-alignment downloads them on first use "
                    f"into {weights_dir()}. On a machine without internet, copy {', '.join(WEIGHT_FILES)} there from "
                    "a machine that has them (or set TORCH_HOME to a folder holding hub/checkpoints/ with them)"
                ) from None
        return self._fa

    # ------------------------------------------------------------------------------------------------ faces

    def face_boxes(self, image: np.ndarray) -> list[Box]:
        """Face boxes ``(left, top, right, bottom)`` in pixels, largest first."""
        raw = self.face_alignment.face_detector.detect_from_image(np.ascontiguousarray(image).copy())
        return self._sorted_boxes(raw)

    @staticmethod
    def _sorted_boxes(raw) -> list[Box]:
        boxes = [tuple(float(v) for v in b[:4]) for b in (raw if raw is not None else [])]
        return sorted(boxes, key=lambda b: -_area(b))

    def face_boxes_batch(self, images: list[np.ndarray]) -> list[list[Box]]:
        """Face boxes per image; one batched detector pass on a GPU when the images share a size."""
        fa = self.face_alignment
        detector = fa.face_detector
        same_size = len({img.shape for img in images}) == 1
        if "cuda" in self.device and same_size and self.params.face_detector in ("sfd", "blazeface"):
            import torch

            out: list[list[Box]] = []
            for start in range(0, len(images), self.params.batch_size):
                chunk = np.stack(images[start : start + self.params.batch_size])
                tensor = torch.from_numpy(chunk).permute(0, 3, 1, 2).to(self.device)
                out.extend(self._sorted_boxes(b) for b in detector.detect_from_batch(tensor))
            return out
        return [self.face_boxes(img) for img in images]

    # -------------------------------------------------------------------------------------------- landmarks

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """68 landmarks ``(68, 2)`` inside a face box (also used for tracking from a previous frame's box)."""
        return self.landmarks_batch([image], [box])[0]

    def landmarks_batch(self, images: list[np.ndarray], boxes: list[Box]) -> list[np.ndarray]:
        """Landmarks for one box per image, the crops of all images going through the network in batches.

        Pre- and post-processing are face-alignment's own (``crop``, ``flip``, ``get_preds_fromhm``), as in
        ``FaceAlignment.get_landmarks_from_image``, so the result equals running it image by image.
        """
        if len(images) != len(boxes):
            raise ValueError(f"got {len(images)} images but {len(boxes)} boxes")
        if not images:
            return []
        import torch

        fa = self.face_alignment
        utils = require("face_alignment.utils", "fan", "The fan keypoint detector")
        centers, scales, crops = [], [], []
        for image, d in zip(images, boxes):
            center = np.array([d[2] - (d[2] - d[0]) / 2.0, d[3] - (d[3] - d[1]) / 2.0])
            center[1] = center[1] - (d[3] - d[1]) * utils.CENTER_Y_OFFSET
            scale = (d[2] - d[0] + d[3] - d[1]) / fa.face_detector.reference_scale
            centers.append(center)
            scales.append(scale)
            img = np.ascontiguousarray(image)
            crops.append(utils.crop(img, center, scale).transpose((2, 0, 1)).astype(np.float32) / 255.0)
        heatmaps = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.params.batch_size):
                inp = torch.from_numpy(np.stack(crops[start : start + self.params.batch_size]))
                inp = inp.to(self.device, dtype=fa.dtype)
                out = fa.face_alignment_net(inp)
                out = out[-1] if isinstance(out, list) else out
                if self.params.flip_input:
                    flipped = fa.face_alignment_net(utils.flip(inp))
                    flipped = flipped[-1] if isinstance(flipped, list) else flipped
                    out = out + utils.flip(flipped, is_label=True)
                heatmaps.append(out.to(device="cpu", dtype=torch.float32).numpy())
        hm = np.concatenate(heatmaps)
        result = []
        for i in range(len(crops)):
            _, pts_img, _ = utils.get_preds_fromhm(hm[i : i + 1], centers[i], scales[i])
            result.append(np.asarray(pts_img, np.float32).reshape(68, 2))
        return result

    # ------------------------------------------------------------------------------------------- contract

    def detect_all(self, image: np.ndarray) -> list[np.ndarray]:
        boxes = self.face_boxes(image)
        return self.landmarks_batch([image] * len(boxes), boxes)

    def detect_batch(self, images: list[np.ndarray]) -> list[np.ndarray | None]:
        """Keypoints of the largest face per image (``None`` where there is none), the landmark network batched
        across images."""
        boxes = self.face_boxes_batch(list(images))
        hits = [i for i, b in enumerate(boxes) if b]
        pts = self.landmarks_batch([images[i] for i in hits], [boxes[i][0] for i in hits])
        out: list[np.ndarray | None] = [None] * len(images)
        for i, p in zip(hits, pts):
            out[i] = p
        return out


@hookimpl
def register_keypoint_detectors(register):
    register(FanDetector)
