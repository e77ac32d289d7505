"""Training-free generators, usable as evaluation baselines.

* ``static``: the reference keypoints repeated for every frame.
* ``procedural``: mouth opening driven by speech energy, head nods and sways driven by prosody, and blinks.

``static`` repeats the reference as it is (with a detector's depth column, if it has one; its stream, whose frames
are ``(68, 2)`` by the streaming contract, drops it);
``procedural`` moves the reference's ``x, y`` and returns ``(T, 68, 2)``: a depth column is dropped, as
``audio2keypoint`` drops it.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..components import KeypointGenerator, Params
from ..errors import InputError
from ..hookspecs import hookimpl
from ..keypoints import Keypoints, face_scale
from ..motion import (
    JAW_DROP_UNIT,
    apply_blinks,
    blink_schedule,
    jaw_drop_offsets,
    lead,
    opening_of,
    smooth,
    speech_activity,
)


def _check(features: np.ndarray, reference: Keypoints) -> tuple[np.ndarray, np.ndarray]:
    feats = np.asarray(features, np.float32)
    if feats.ndim != 2 or len(feats) == 0:
        raise InputError(f"features must have shape (T, D) with T >= 1, got {feats.shape}")
    ref = reference.points[0].astype(np.float32)
    return feats, ref


class StaticGenerator(KeypointGenerator):
    """Repeats the reference keypoints for every frame (the lower bound on motion)."""

    name = "static"

    def generate(self, features, reference, *, seed=None):
        feats, ref = _check(features, reference)
        return Keypoints(
            np.repeat(ref[None], len(feats), 0), image_size=reference.image_size, meta={"generator": self.name}
        )

    def stream(self, reference, *, lookahead=None, seed=None):
        """A :class:`~a2k_toolkit.streaming.contract.KeypointStream` returning the reference for each feature row at
        once (lookahead 0 whatever is asked; equal to :meth:`generate`)."""
        from .streams import StaticStream

        return StaticStream(reference, {"generator": self.name})


class ProceduralGenerator(KeypointGenerator):
    """Mouth opening from speech energy, head nods and sways from prosody, periodic blinks; no training."""

    name = "procedural"

    class Params(Params):
        mouth_open: float = Field(0.35, ge=0, le=2, description="max jaw drop, in units of face size")
        head_motion: float = Field(0.04, ge=0, le=1, description="head sway amplitude, in units of face size")
        blink_interval: float = Field(3.5, gt=0, description="mean seconds between blinks")
        lead_frames: int = Field(1, ge=0, le=5, description="mouth leads the sound by this many frames")
        fps: float = Field(25.0, gt=0)

    def generate(self, features, reference, *, seed=None):
        feats, ref = _check(features, reference)
        ref = ref[:, :2]  # x, y: a detector's depth column (mediapipe with z) is dropped, as audio2keypoint does
        T, p = len(feats), self.params
        rng = np.random.default_rng(seed)
        size = float(face_scale(ref))
        act = lead(speech_activity(feats), p.lead_frames)
        opening = opening_of(act)
        opening[0] = 0.0

        # head: nods follow changes in loudness (prosody), sways are slow seeded noise
        nod = smooth(np.gradient(smooth(act, 3.0)), 2.0) if T >= 3 else np.zeros(T)
        nod = nod / (np.abs(nod).max() + 1e-6)
        sway = smooth(rng.standard_normal((T, 3)), 12.0)
        sway = sway / (np.abs(sway).max(0) + 1e-6)
        amp = p.head_motion * size
        dx = amp * sway[:, 0]
        dy = amp * (0.6 * nod + 0.4 * sway[:, 1])
        angle = 0.05 * p.head_motion / 0.04 * sway[:, 2]
        dx, dy, angle = dx - dx[0], dy - dy[0], angle - angle[0]
        pts = self.pose(ref, opening, dx, dy, angle)

        # blinks: upper lids meet the lower lids over ~5 frames
        apply_blinks(pts, blink_schedule(T, p.blink_interval, p.fps, rng))
        pts[0] = ref
        return Keypoints(pts.astype(np.float32), image_size=reference.image_size, meta={"generator": self.name})

    def pose(self, ref: np.ndarray, opening, dx, dy, angle) -> np.ndarray:
        """Frames ``(n, 68, 2)`` float64 of the reference ``(68, 2)`` with the jaw dropped by ``opening`` (0..1) and
        the head turned by ``angle`` (radians) about its centre and moved by ``(dx, dy)`` pixels, each ``(n,)``."""
        opening, dx, dy, angle = (np.asarray(v) for v in (opening, dx, dy, angle))
        pts = np.repeat(ref[None], len(opening), 0).astype(np.float64)

        # mouth: lower lip, chin and lower jaw move down; upper inner lip slightly up
        pts += jaw_drop_offsets(opening * self.params.mouth_open * float(face_scale(ref)) * JAW_DROP_UNIT)

        centre = ref.mean(0)
        c, s = np.cos(angle), np.sin(angle)
        rel = pts - centre
        rot = np.stack(
            [c[:, None] * rel[..., 0] - s[:, None] * rel[..., 1], s[:, None] * rel[..., 0] + c[:, None] * rel[..., 1]],
            -1,
        )
        return rot + centre + np.stack([dx, dy], -1)[:, None, :]

    def stream(self, reference, *, lookahead=None, seed=None):
        """A :class:`~a2k_toolkit.streaming.contract.KeypointStream`: with ``lookahead=None`` every frame at flush,
        equal to :meth:`generate`; with ``lookahead`` frames, each frame from the features up to that many frames
        after it, in a streaming form of the loudness range, smoothing and scales (docs/streaming.md)."""
        from .streams import ProceduralStream, WholeStream

        if lookahead is None:
            return WholeStream(self, reference, seed)
        return ProceduralStream(self, reference, lookahead, seed, activity=speech_activity, smooth=smooth)


@hookimpl
def register_generators(register):
    register(StaticGenerator)
    register(ProceduralGenerator)
