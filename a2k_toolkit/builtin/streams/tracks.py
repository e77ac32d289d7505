"""What the generator streams share, frame by frame: the blinks (:class:`BlinkTrack`), the feature rows a stream
may still need (:class:`FeatureHistory`) and the loudness-driven mouth opening (:class:`EnergyTrack`).
"""

from __future__ import annotations

import numpy as np

from ...motion import BLINK_SHAPE, activity_of_loudness, lead_and_open

# seconds of features the running speech level of the silence gate and procedural's loudness range look back over
LEVEL_HISTORY_S = 10.0


class BlinkTrack:
    """:func:`~a2k_toolkit.motion.blink_schedule` frame by frame: the same draws from the same generator in
    the same order, so the same closures. (Offline draws blinks while their time is before the clip's end; a stream
    that returns the last two frames before it knows the end -- a lookahead under 2 frames -- may show a blink drawn
    just past the end in them.)"""

    def __init__(self, interval: float, fps: float, rng: np.random.Generator):
        self.interval, self.fps, self.rng = interval, fps, rng
        self._t = rng.uniform(0.5, 1.5) * interval * fps
        self._centres: list[int] = []

    def closing(self, start: int, stop: int, total: int | None = None) -> np.ndarray:
        """Eyelid closure of frames ``[start, stop)``; ``total`` is the stream's length once known."""
        while self._t < stop + 2 and (total is None or self._t < total):
            self._centres.append(int(self._t))
            self._t += self.rng.uniform(0.6, 1.4) * self.interval * self.fps
        out = np.zeros(stop - start)
        for c in self._centres:
            for k, v in zip(range(-2, 3), BLINK_SHAPE):
                if 0 < c + k and start <= c + k < stop:
                    out[c + k - start] = max(out[c + k - start], v)
        self._centres = [c for c in self._centres if c + 2 >= stop]
        return out


class FeatureHistory:
    """The feature rows a stream may still need: from ``keep`` frames before the first frame not returned (and at
    least ``history`` frames before the newest row)."""

    def __init__(self):
        self.rows: np.ndarray | None = None
        self.start = 0  # absolute index of rows[0]

    @property
    def stop(self) -> int:
        return self.start + (0 if self.rows is None else len(self.rows))

    def add(self, features: np.ndarray) -> None:
        self.rows = features.copy() if self.rows is None else np.concatenate([self.rows, features])

    def get(self, a: int, b: int) -> np.ndarray:
        return self.rows[a - self.start : b - self.start]

    def trim(self, keep_from: int) -> None:
        drop = keep_from - self.start
        if drop > 0 and self.rows is not None:
            self.rows, self.start = self.rows[drop:], keep_from


class EnergyTrack:
    """The loudness-driven mouth opening (:func:`~a2k_toolkit.motion.loudness_opening`, ``procedural``'s
    mouth and ``audio2keypoint``'s ``energy_mouth``) frame by frame with a lookahead ``L``: frame ``t``'s from the
    features up to frame ``t + L``, as in :class:`~a2k_toolkit.builtin.streams.baselines.ProceduralStream` (the
    loudness range of the last :data:`LEVEL_HISTORY_S` seconds, scaled down over the first :data:`RAMP_FRAMES`
    frames; the smoothing's edge is the newest feature)."""

    REACH = 4  # frames before a frame that its opening reaches (the lead, 1, and the smoothing's radius, 3)
    RAMP_FRAMES = 25  # the loudness range of fewer frames than this is unsure: the activity is scaled down by it

    def __init__(self, lookahead: int, fps: float, lead_frames: int = 1):
        self.lookahead, self.lead = int(lookahead), int(lead_frames)
        self.history = FeatureHistory()  # each row's loudness (its mean feature value), not the rows themselves
        self._level_frames = max(self.lookahead + self.REACH + 1, int(round(LEVEL_HISTORY_S * fps)))

    def add(self, features: np.ndarray) -> None:
        self.history.add(features.mean(axis=1))  # each frame's once, as speech_activity takes it of each row

    def opening(self, t0: int, n: int, frames_in: int, total: int | None) -> np.ndarray:
        """The opening ``(n,)`` of frames ``[t0, t0 + n)`` with ``frames_in`` feature rows received (``total`` at
        flush); frames before ``t0`` are not asked again."""
        end = frames_in if total is None else total
        out = np.zeros(n)
        for i, t in enumerate(range(t0, t0 + n)):
            stop = min(t + self.lookahead + 1, end)
            start = max(0, min(t - self.REACH, stop - self._level_frames))
            act = activity_of_loudness(self.history.get(start, stop)) * min(1.0, stop / self.RAMP_FRAMES)
            out[i] = 0.0 if t == 0 else lead_and_open(act, self.lead)[t - start]
        nxt = t0 + n
        self.history.trim(max(0, min(nxt - self.REACH, min(nxt + self.lookahead + 1, frames_in) - self._level_frames)))
        return out
