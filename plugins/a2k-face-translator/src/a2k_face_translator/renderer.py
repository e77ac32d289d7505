"""Renderer ``face-translator``: keypoint sketches -> face images by the few-shot translator, pasted into the photo.

For a keypoint sequence and a reference photo: a square crop box is placed around the reference face (the same
geometry as in training), the person's embedding comes from K shots (the photo, plus ``shots``: other photos of the
same person), optionally the generator is fine-tuned on those shots, and each frame's keypoints are drawn as a
sketch in crop coordinates and translated to a face. With ``paste`` (default) the generated crop is blended into the
photo inside a feathered mask around that frame's face; otherwise the crop itself is the output.

torch is imported only when frames are rendered, so plugin discovery stays light.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import Field

from a2k_toolkit.components import Params, Renderer, path_field
from a2k_toolkit.keypoints import Keypoints
from a2k_toolkit.rendering import prepare_inputs


class FaceTranslatorRenderer(Renderer):
    """Few-shot keypoint-to-face translator (Zakharov et al. 2019) pasted into the photo; needs a checkpoint."""

    name = "face-translator"

    class Params(Params):
        checkpoint: str = path_field(min_length=1, description="path of a .safetensors checkpoint (meta or personal)")
        size: int | None = Field(
            None, ge=16, le=4096, description="longest side of the output; null keeps the image size"
        )
        shots: list[str] = path_field(
            default_factory=list, max_length=64, description="more photos of the same person: K = 1 + len(shots)"
        )
        finetune_steps: int = Field(0, ge=0, le=5000, description="few-shot fine-tuning steps on the K shots")
        finetune_lr: float = Field(1e-4, gt=0, le=1e-2)
        paste: bool = Field(True, description="blend the generated face into the photo; false: output the crop")
        batch: int = Field(16, ge=1, le=512, description="frames generated per forward pass")
        seed: int = 0

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._loaded = None
        self._loaded_key = None

    def load(self):
        """The checkpoint, loaded once per file version onto this renderer's device."""
        from .checkpoint import load_checkpoint

        path = Path(self.params.checkpoint).expanduser()
        key = (str(path), path.stat().st_mtime_ns if path.is_file() else None, self.device)
        if self._loaded is None or self._loaded_key != key:
            self._loaded = load_checkpoint(path, device=self.device)
            self._loaded_key = key
        return self._loaded

    def _shots(self, image: np.ndarray, reference: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """K shot crops and sketches: the reference photo, then every photo in ``shots`` (keypoints by dlib)."""
        from a2k_toolkit.io import load_image

        from .data import crop, dlib_detector, face_box, sketch, to_crop

        boxes = [(image, reference)]
        if self.params.shots:
            detector = dlib_detector()
            for path in self.params.shots:
                img = load_image(path)
                boxes.append((img, detector.detect(img).points[0]))
        frames, sketches = [], []
        for img, pts in boxes:
            box = face_box(pts)
            frames.append(crop(img, box, size))
            sketches.append(sketch(to_crop(pts, box, size), size))
        return np.stack(frames), np.stack(sketches)

    def person(self, image: np.ndarray, reference: np.ndarray):
        """``(generator, psi)`` for the person in ``image`` (keypoints ``reference``, both at the output size)."""
        import torch

        from .data import to_tensor
        from .training import FinetuneConfig, finetune

        loaded = self.load()
        model, G = loaded.model, loaded.model.G
        if loaded.kind == "personal":
            return G, loaded.psi
        frames, sketches = self._shots(image, reference, model.cfg.image_size)
        if self.params.finetune_steps:
            cfg = FinetuneConfig(steps=self.params.finetune_steps, lr=self.params.finetune_lr, seed=self.params.seed)
            G, psi, _ = finetune(model, frames, sketches, cfg, device=self.device)
            return G, psi
        with torch.no_grad():
            e = model.embed(to_tensor(frames, self.device), to_tensor(sketches, self.device))
            return G, G.psi(e[None])[0]

    def frames(
        self, keypoints: Keypoints, reference_image: np.ndarray, *, reference_points=None
    ) -> Iterator[np.ndarray]:
        """Frames for ``keypoints``; the photo's own keypoints are ``reference_points`` if given, else frame 0."""
        inp = prepare_inputs(
            keypoints, reference_image, self.params.size, reference_points=reference_points, renderer=self.name
        )
        G, psi = self.person(inp.image, inp.reference)
        return self._generate(G, psi, inp)

    def _generate(self, G, psi, inp) -> Iterator[np.ndarray]:
        import cv2
        import torch

        from .data import crop_matrix, face_box, sketch, to_crop, to_images, to_tensor

        S = self.load().model.cfg.image_size
        box = face_box(inp.reference)
        to_image = cv2.invertAffineTransform(crop_matrix(box, S))
        oh, ow = inp.size
        for start in range(0, len(inp.points), self.params.batch):
            pts = inp.points[start : start + self.params.batch]
            sk = np.stack([sketch(p, S) for p in to_crop(pts, box, S)])
            with torch.no_grad():
                faces = to_images(G(to_tensor(sk, self.device), psi[None].expand(len(sk), -1)))
            for face, p in zip(faces, pts):
                if not self.params.paste:
                    side = self.params.size or max(oh, ow)
                    yield cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
                    continue
                yield paste(inp.image, face, to_image, p)


def paste(image: np.ndarray, face: np.ndarray, to_image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``image`` with the generated crop ``face`` (mapped back by the 2x3 ``to_image``) blended in over the face of
    ``points`` (its hull raised to the forehead), with a feathered edge."""
    import cv2

    h, w = image.shape[:2]
    pts = np.asarray(points, np.float64)
    height = float(np.ptp(pts[:, 1]))
    forehead = pts[17:27] - [0, 0.25 * height]
    hull = cv2.convexHull(np.round(np.concatenate([pts, forehead])).astype(np.int32))
    x, y, bw, bh = cv2.boundingRect(hull)
    feather = max(3, int(0.08 * max(bw, bh))) | 1
    x0, y0 = max(x - feather, 0), max(y - feather, 0)
    x1, y1 = min(x + bw + feather, w), min(y + bh + feather, h)
    out = image.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillConvexPoly(mask, hull - [x0, y0], 255, cv2.LINE_AA)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=max(1, feather // 4))
    alpha = cv2.GaussianBlur(mask, (feather, feather), 0).astype(np.float32)[..., None] / 255.0
    shift = np.array([[1, 0, -x0], [0, 1, -y0]], np.float64)
    m = to_image.copy()
    m[:, 2] += shift[:, 2]
    gen = cv2.warpAffine(face, m, (x1 - x0, y1 - y0), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(region * (1 - alpha) + gen * alpha + 0.5, 0, 255).astype(np.uint8)
    return out
