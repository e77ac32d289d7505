"""Streaming forms of the training-free generators: :class:`StaticStream` (``static``, at once) and
:class:`ProceduralStream` (``procedural`` with a lookahead; its differences from offline are in its docstring); and
:class:`WholeStream`, which generates at flush (``procedural`` with lookahead ``None``, ``audio2keypoint`` with the
energy mouth on and lookahead ``None``).
"""

from __future__ import annotations

import numpy as np

from ...keypoints import NUM_POINTS, Keypoints
from ...motion import apply_blinks, lead
from ...streaming.contract import KeypointStream
from .tracks import LEVEL_HISTORY_S, BlinkTrack, FeatureHistory


class StaticStream(KeypointStream):
    """``static``: the reference for every frame, at once (lookahead 0; equals offline). Frames are ``(68, 2)`` as the
    streaming contract has them: a reference's depth column (mediapipe with z kept) is dropped, which offline
    ``static`` keeps."""

    def __init__(self, reference: Keypoints, meta: dict):
        super().__init__(reference, 0, meta)
        self.ref = reference.points[0][:, :2].astype(np.float32)

    def _push(self, features: np.ndarray) -> np.ndarray:
        return np.repeat(self.ref[None], len(features), 0)

    def _flush(self) -> np.ndarray:
        return np.zeros((0, NUM_POINTS, 2), np.float32)


class WholeStream(KeypointStream):
    """Every frame at flush, from ``generator.generate`` on all the features (lookahead ``None``: equals offline;
    memory grows with the stream)."""

    def __init__(self, generator, reference: Keypoints, seed: int | None):
        super().__init__(reference, None, {"generator": generator.name})
        self.generator, self.seed = generator, seed
        self._rows: list[np.ndarray] = []

    def _push(self, features: np.ndarray) -> np.ndarray:
        self._rows.append(features.copy())
        return np.zeros((0, NUM_POINTS, 2), np.float32)

    def _flush(self) -> np.ndarray:
        if not self._rows:
            return np.zeros((0, NUM_POINTS, 2), np.float32)
        kp = self.generator.generate(np.concatenate(self._rows), self.reference, seed=self.seed)
        self.meta = dict(kp.meta)
        return kp.points


class ProceduralStream(KeypointStream):
    """``procedural`` with a lookahead ``L``: each frame's signals from the features up to ``L`` frames after it.

    Differences from offline (docs/streaming.md measures them): the loudness range (10th-97th percentile) is that of
    the last :data:`LEVEL_HISTORY_S` seconds up to frame ``t + L`` (offline: the whole clip), and the edge of the
    smoothing is the newest feature (offline: the clip's end); the nod and sway are scaled by their largest value so
    far (offline: over the clip; the nod's from :data:`NOD_SCALE` up, the sway noise's over at least the 5 s drawn
    ahead of the frame); over the first second the activity is scaled down (a loudness range of a few frames is
    unsure: offline it would be the clip's, which has more); the blinks come from a generator of their own
    (offline: the one after the sway noise), so they fall at other times at the same rate. ``activity`` and
    ``smooth`` are the module's ``speech_activity`` and ``_smooth``."""

    SWAY_SIGMA = 12.0
    SWAY_AHEAD = 125  # frames of sway noise drawn (and smoothed) ahead of the frame, for its scale
    NOD_REACH = 24  # frames of loudness before a frame that its mouth and nod smoothing reach (4 * 3 + 1 + 4 * 2 + 3)
    RAMP_FRAMES = 25  # the loudness range of fewer frames than this is unsure: the activity is scaled down by it
    NOD_SCALE = 0.05  # the nod's scale before any larger is seen (the largest nod of a real clip: 0.05-0.1)

    def __init__(self, generator, reference: Keypoints, lookahead: int, seed: int | None, *, activity, smooth):
        super().__init__(reference, lookahead, {"generator": generator.name})
        self.gen, p = generator, generator.params
        self._activity, self._smooth = activity, smooth
        self.ref = reference.points[0][:, :2].astype(np.float32)  # x, y: a depth column is dropped, as offline
        from ...keypoints import face_scale

        self.size = float(face_scale(self.ref))
        self._noise_rng = np.random.default_rng(seed)
        self.blinks = BlinkTrack(p.blink_interval, p.fps, np.random.default_rng(None if seed is None else [seed, 1]))
        self.history = FeatureHistory()
        self._level_frames = max(lookahead + self.NOD_REACH + 1, int(round(LEVEL_HISTORY_S * p.fps)))
        self._noise = np.zeros((0, 3))  # sway noise rows from _noise_start on
        self._noise_start = 0
        self._sway_done = 0  # frames whose smoothed sway entered the running scale
        self._sway_max = np.zeros(3)
        self._nod_max = self.NOD_SCALE
        self._start: np.ndarray | None = None  # frame 0's (dx, dy, angle)

    def _push(self, features: np.ndarray) -> np.ndarray:
        self.history.add(features)
        return self._frames(self.frames_out, max(self.frames_out, self.frames_in - self.lookahead), None)

    def _flush(self) -> np.ndarray:
        return self._frames(self.frames_out, self.frames_in, self.frames_in)

    def _signals(self, t: int, end: int) -> tuple[float, float]:
        """Mouth opening and (unscaled) nod of frame ``t`` from the features of frames ``< end``."""
        p = self.gen.params
        start = max(0, min(t - self.NOD_REACH, end - self._level_frames))
        act = self._activity(self.history.get(start, end)) * min(1.0, end / self.RAMP_FRAMES)
        n = len(act)
        act = lead(act, p.lead_frames)
        # smoothed, then only this frame's value raised to 1.5: a float32 scalar's power, the rounding it always had
        opening = 0.0 if t == 0 else float(self._smooth(act, 0.8)[t - start] ** 1.5)
        nod = float(self._smooth(np.gradient(self._smooth(act, 3.0)), 2.0)[t - start]) if n >= 3 else 0.0
        return opening, nod

    def _sway(self, start: int, stop: int) -> np.ndarray:
        """Smoothed sway noise of frames ``[start, stop)``, scaled by the largest value up to ``SWAY_AHEAD`` after
        each frame."""
        from scipy.ndimage import gaussian_filter1d

        reach = int(4.0 * self.SWAY_SIGMA + 0.5)  # gaussian_filter1d's radius
        need = stop + self.SWAY_AHEAD + reach + 1
        have = self._noise_start + len(self._noise)
        if need > have:
            self._noise = np.concatenate([self._noise, self._noise_rng.standard_normal((need - have, 3))])
        lo = max(0, start - reach)
        seg = self._noise[lo - self._noise_start :]
        smooth = gaussian_filter1d(seg, self.SWAY_SIGMA, axis=0, mode="nearest")  # frame lo + i in row i
        out = np.empty((stop - start, 3))
        for i, t in enumerate(range(start, stop)):
            upto = t + self.SWAY_AHEAD + 1
            if upto > self._sway_done:
                seen = smooth[self._sway_done - lo : upto - lo]
                self._sway_max = np.maximum(self._sway_max, np.abs(seen).max(0))
                self._sway_done = upto
            out[i] = smooth[t - lo] / (self._sway_max + 1e-6)
        keep = max(0, stop - reach) - self._noise_start
        if keep > 0:
            self._noise, self._noise_start = self._noise[keep:], self._noise_start + keep
        return out

    def _frames(self, first: int, stop: int, total: int | None) -> np.ndarray:
        n = stop - first
        if n <= 0:
            return np.zeros((0, NUM_POINTS, 2), np.float32)
        p = self.gen.params
        end = self.frames_in if total is None else total
        opening, nod = np.empty(n, np.float32), np.empty(n, np.float32)  # float32, as offline
        for i, t in enumerate(range(first, stop)):
            opening[i], nod[i] = self._signals(t, min(t + self.lookahead + 1, end))
            self._nod_max = max(self._nod_max, abs(nod[i]))
            nod[i] /= self._nod_max + 1e-6
        sway = self._sway(first, stop)
        amp = p.head_motion * self.size
        motion = np.stack(
            [amp * sway[:, 0], amp * (0.6 * nod + 0.4 * sway[:, 1]), 0.05 * p.head_motion / 0.04 * sway[:, 2]]
        )
        if self._start is None:
            self._start = motion[:, 0].copy()
        dx, dy, angle = motion - self._start[:, None]
        pts = self.gen.pose(self.ref, opening, dx, dy, angle)
        apply_blinks(pts, self.blinks.closing(first, stop, total))
        if first == 0:
            pts[0] = self.ref
        reach = min(stop + self.lookahead + 1, self.frames_in) - self._level_frames  # the next frame's, at least
        self.history.trim(max(0, min(stop - self.NOD_REACH, reach)))
        return pts.astype(np.float32)
