"""Streaming form of the ``audio2keypoint`` generator: :class:`Audio2KeypointStream`, the learned generator's
post-processing (anchor, denormalisation, silence gate, motion scales, blinks) frame by frame on the network's
outputs of :class:`~a2k_toolkit.builtin.streams.windows.WindowedOutputs`.
"""

from __future__ import annotations

import numpy as np

from ...errors import InputError
from ...keypoints import NUM_POINTS, Keypoints, apply_similarity, similarity
from ...motion import (
    RIGID,
    add_jaw_drop,
    add_mouth_offset,
    apply_blinks,
    meet_lips,
    mouth_shape_offset,
    rescale_motion,
)
from ...streaming.contract import KeypointStream
from .tracks import LEVEL_HISTORY_S, BlinkTrack, EnergyTrack, FeatureHistory
from .windows import WindowedOutputs

# keep_mouth_shape in a stream: its offset is re-estimated each time this many more frames of features have arrived
HOLD_STEP = 4


def _gate(points: np.ndarray, reference: np.ndarray, weight: np.ndarray) -> None:
    """The silence gate's blend (``close_mouth_in_silence``): each frame's mouth towards the reference's, carried to
    the frame's head pose, with weight ``1 - weight``; in place."""
    t = np.flatnonzero(weight < 1.0)
    if len(t) == 0:
        return
    a, b = similarity(np.asarray(reference[RIGID], np.float64), np.asarray(points[t, RIGID], np.float64))
    rest = apply_similarity(reference[48:68], a, b)
    w = weight[t, None, None]
    points[t, 48:68] = w * points[t, 48:68] + (1.0 - w) * rest


class Audio2KeypointStream(KeypointStream):
    """The ``audio2keypoint`` generator frame by frame: :class:`WindowedOutputs`, then the post-processing of
    ``generate`` on each final frame. ``anchor`` is ``anchor_start`` and ``activity`` is ``voice_activity`` of the
    generator's module; ``hop`` the frames between windows when the lookahead is shorter than the window (``None``:
    :attr:`WindowedOutputs.HOP_2_FROM`'s rule).

    With the full lookahead every step equals offline, except the silence gate (off by default): its speech level is
    the 95th loudness percentile of the last :data:`LEVEL_HISTORY_S` seconds up to frame ``t + lookahead`` (offline:
    of the whole clip)."""

    def __init__(
        self, generator, reference: Keypoints, lookahead: int | None, seed: int | None, *, anchor, activity, hop=None
    ):
        from ...models.inference import WindowedRunner

        info, p = generator.info, generator.params
        self.info, self.params = info, p
        self.ref = np.asarray(reference.points[0][:, :2], np.float32)
        self.ref_n = info.normalizer.normalize(self.ref[None], self.ref)[0]
        self.dim = info.feature_shape[0] * info.feature_shape[1]
        runner = WindowedRunner(generator.net, info.window, p.overlap, p.batch_size, p.precision, fast=p.fast)
        if hop is not None and (isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or hop < 1):
            raise InputError(f"hop must be a whole number of frames >= 1 (or None: the default), got {hop!r}")
        self.net_out = WindowedOutputs(runner, self.ref_n, lookahead, hop)
        runner.run([(np.zeros((info.window, self.dim), np.float32), self.ref_n)])  # warm up: not on the first push
        meta = {"generator": generator.name, "checkpoint": generator.checkpoint_label}
        super().__init__(reference, self.net_out.lookahead, meta)
        self._anchor, self._activity = anchor, activity
        self._out0: np.ndarray | None = None
        self.head, self.mouth = generator.head_motion, generator.mouth_scale
        self.keep, self._held = generator.keep_mouth_shape, {}
        self._prior = generator.mouth_prior_offset(self.ref)  # the mouth prior's offset: one for the session
        self.blinks = None
        if generator.blink_interval > 0:
            rng = np.random.default_rng(0 if seed is None else seed)
            self.blinks = BlinkTrack(generator.blink_interval, info.fps, rng)
        self.history = FeatureHistory() if p.silence_gate_db is not None else None
        self._level_frames = max(1, int(round(LEVEL_HISTORY_S * info.fps)))
        self.energy = EnergyTrack(self.lookahead, info.fps) if generator.energy_mouth > 0 else None
        self._drop = generator.energy_drop(self.ref) if self.energy is not None else 0.0

    def _push(self, features: np.ndarray) -> np.ndarray:
        if features.shape[1] != self.dim:
            raise InputError(
                f"features must have shape (n, {self.dim}) for this checkpoint, got {features.shape}; compute them "
                f"with the checkpoint's front-end {self.info.frontend['name']!r}"
            )
        if self.history is not None:
            self.history.add(features)
        if self.energy is not None:
            self.energy.add(features)
        return self._finish(self.net_out.push(features), total=None)

    def _flush(self) -> np.ndarray:
        return self._finish(self.net_out.flush(), total=self.frames_in)

    def _finish(self, out: np.ndarray, total: int | None) -> np.ndarray:
        t0, n = self.frames_out, len(out)
        if n == 0:
            return np.zeros((0, NUM_POINTS, 2), np.float32)
        reach = max(self.params.anchor_frames, 1)
        if t0 < reach:  # anchor_start on frames at their own index, with frame 0's output as the offset base
            if t0 == 0:
                self._out0 = out[0].copy()
            tmp = np.zeros((t0 + n, out.shape[1]), np.float32)
            tmp[0], tmp[t0:] = self._out0, out
            out = self._anchor(tmp, self.ref_n, self.params.anchor_frames, copy=False)[t0:]
        pts = np.empty((n, NUM_POINTS, 2), np.float32)
        for i in range(0, n, 4096):
            pts[i : i + 4096] = self.info.normalizer.denormalize(out[i : i + 4096], self.ref)
        if self.keep:
            self._hold(pts, t0, total)
        if self._prior is not None:
            add_mouth_offset(pts, self._prior, self.params.anchor_frames, 1.0, t0)
        if t0 == 0:
            pts[0] = self.ref
        active = None
        if self.history is not None:
            active = self._gate_weights(t0, n, total)
            _gate(pts, self.ref, active)
        if self.head != 1.0 or self.mouth != 1.0:
            rescale_motion(pts, self.ref, self.head, self.mouth)
        if self.energy is not None:
            drop = self.energy.opening(t0, n, self.frames_in, total) * self._drop
            add_jaw_drop(pts, self.ref, drop if active is None else drop * active)
        if self.params.lip_contact:
            meet_lips(pts, self.ref)
        if self.blinks is not None:
            apply_blinks(pts, self.blinks.closing(t0, t0 + n, total))
        return pts

    def _hold(self, pts: np.ndarray, t0: int, total: int | None) -> None:
        """``keep_mouth_shape`` on frames ``[t0, t0 + n)`` (in place). Offline takes the offset from the network's
        frame 0 on the clip's first window; frame ``t`` here takes it from frame 0 of offline inference on the first
        ``min(t + lookahead + 1, W)`` features (those that have arrived when it is returned, whatever the chunk
        sizes; at flush at most the clip's), rounded down to a multiple of :data:`HOLD_STEP` from that on: with the
        full lookahead that is offline's, with a shorter one the offset converges to it over the first
        ``W - lookahead`` frames, at the cost of about ``W / HOLD_STEP`` windows more per session."""
        n = self.net_out
        t = t0 + np.arange(len(pts))
        have = t + n.lookahead + 1  # the features that have arrived when frame t is returned
        q = HOLD_STEP  # in steps of HOLD_STEP frames: a few extra windows per session, not one per frame
        sizes = np.minimum(np.where(have < q, have, have // q * q), n.W if total is None else min(n.W, total))
        todo = sorted(set(sizes.tolist()) - set(self._held))
        for k, y in zip(todo, n.start_outputs(todo)):
            self._held[k] = mouth_shape_offset(self.ref, self.info.normalizer.denormalize(y[None], self.ref)[0])
        add_mouth_offset(
            pts, np.stack([self._held[k] for k in sizes.tolist()]), self.params.anchor_frames, self.keep, t0
        )
        for k in [k for k in self._held if k < sizes[-1]]:  # later frames need sizes[-1] or more
            del self._held[k]

    def _gate_weights(self, t0: int, n: int, total: int | None) -> np.ndarray:
        """The silence gate's weight of frames ``[t0, t0 + n)``, each from the features up to its lookahead."""
        end = self.frames_in if total is None else total
        w = np.empty(n)
        for i, t in enumerate(range(t0, t0 + n)):
            stop = min(t + self.lookahead + 1, end)
            start = max(0, min(t - 3, stop - self._level_frames))
            w[i] = self._activity(self.history.get(start, stop), self.params.silence_gate_db)[t - start]
        nxt = t0 + n  # the next frame reaches back to min(nxt - 3, its stop - level), its stop at least this
        self.history.trim(max(0, min(nxt - 3, min(nxt + self.lookahead + 1, self.frames_in) - self._level_frames)))
        return w
