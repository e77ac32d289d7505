"""The generator network's output for features that arrive in chunks (``audio2keypoint``'s stream).

* :class:`WindowedOutputs`: the network's normalised output for features that arrive in chunks. With a lookahead of
  the full window (or more, or ``None``) it runs offline inference's window plan (windows of ``W`` frames every
  ``W - overlap``, the last one end-aligned, cross-faded) and returns a frame once no later window can touch it, so
  the stream equals offline inference; frames within ``W`` of the end are final only at flush. With a shorter
  lookahead ``L`` it runs a window every ``hop`` frames, its newest frame held for its last ``W / 4`` rows, and
  returns frame ``t`` as the blend of the windows whose newest frame is ``0 .. L`` frames after it (weighted by that
  distance plus one), so frame ``t`` depends on the features of frames ``<= t + L`` only.
"""

from __future__ import annotations

import math

import numpy as np


def ramp_weight(k: np.ndarray, length: int) -> np.ndarray:
    """Raised-cosine weight of a frame ``k`` frames from a window's edge (``window_weights``' ramp; 1 from
    ``length`` on)."""
    k = np.asarray(k, np.float64)
    if length <= 0:
        return np.ones_like(k)
    return np.where(k < length, 0.5 - 0.5 * np.cos(math.pi * (k + 1) / (length + 1)), 1.0)


class WindowedOutputs:
    """The generator network's normalised output ``(136,)`` per frame for features that arrive in chunks (see the
    module docstring). ``runner`` is a :class:`~a2k_toolkit.models.inference.WindowedRunner`; ``push`` and ``flush``
    return the frames ``(n, 136)`` float32 that are final, in order.

    With a lookahead ``L`` shorter than the window ``W``, a window ends at every ``hop``-th frame (``hop`` at most
    ``L + 1``, so that each frame has one ending ``0 .. L`` frames after it; at flush one more ends at the last
    frame). A window holds the ``W - W / 4`` newest frames followed by ``W / 4`` copies of the newest (the frames
    before the stream's start taken as copies of its first): the network's output is least reliable at a window's
    edge, where its convolutions run out of input, and a held newest frame there was measured to give a closer mouth
    than putting the newest frame at the edge (docs/streaming.md). Frame ``t`` is the blend of the windows that end
    ``p = 0 .. L`` frames after it (and not past the end), weighted by ``p + 1`` (the more audio after it, the more
    weight) and by the raised-cosine ramp over the first ``overlap`` frames of a window that starts inside the
    stream."""

    #: the default hop: 1 below this lookahead (frames), 2 from it on (measured: within 0.01 of hop 1's lip sync there,
    #: for half the network's work; below it hop 2 lost up to 0.04)
    HOP_2_FROM = 5

    def __init__(self, runner, reference_n: np.ndarray, lookahead: int | None, hop: int | None = None):
        self.runner, self.ref_n = runner, reference_n
        self.W, self.ov = runner.window, runner.overlap
        self.full = lookahead is None or lookahead >= self.W
        self.lookahead = self.W if self.full else int(lookahead)
        if hop is None:
            hop = 1 if self.lookahead < self.HOP_2_FROM else 2
        self.hop = max(1, self.W - self.ov) if self.full else max(1, min(int(hop), self.lookahead + 1))
        self.pad = self.W // 4  # sliding: copies of the newest frame at a window's end
        self.F = 0  # feature rows received
        self.done = 0  # frames returned
        self._feats: np.ndarray | None = None  # rows from absolute index _fstart on
        self._fstart = 0
        self._first: np.ndarray | None = None  # row 0, the padding before the stream's start
        self._head = np.zeros((0, 0), np.float32)  # the first W rows, for start_outputs
        self._next = 0  # full: the next regular window start not computed yet
        self._acc = np.zeros((0, 136), np.float32 if self.full else np.float64)  # frames [done, ...)
        self._wsum = np.zeros(0, np.float32 if self.full else np.float64)

    def _rows(self, a: int, b: int) -> np.ndarray:
        rows = self._feats[max(a, 0) - self._fstart : b - self._fstart]
        return rows if a >= 0 else np.concatenate([np.repeat(self._first[None], -a, 0), rows])

    def _grow(self, stop: int) -> None:
        n = stop - self.done - len(self._acc)
        if n > 0:
            self._acc = np.concatenate([self._acc, np.zeros((n, 136), self._acc.dtype)])
            self._wsum = np.concatenate([self._wsum, np.zeros(n, self._wsum.dtype)])

    def _run(self, spans: list[tuple[int, int]]) -> list[np.ndarray]:
        return self.runner.run([(self._rows(a, b), self.ref_n) for a, b in spans]) if spans else []

    def _emit(self, stop: int) -> np.ndarray:
        n = stop - self.done
        if n <= 0:
            return np.zeros((0, 136), np.float32)
        out = self._acc[:n] / self._wsum[:n, None]
        self._acc, self._wsum = self._acc[n:], self._wsum[n:]
        self.done = stop
        return out.astype(np.float32, copy=False)

    def _trim(self, keep_from: int) -> None:
        drop = keep_from - self._fstart
        if drop > 0:
            self._feats, self._fstart = self._feats[drop:], keep_from

    def push(self, features: np.ndarray) -> np.ndarray:
        old = self.F
        if self._feats is None:
            self._feats, self._first = features.copy(), features[0].copy()
        else:
            self._feats = np.concatenate([self._feats, features])
        self.F += len(features)
        if len(self._head) < self.W:
            self._head = np.concatenate(
                [self._head.reshape(-1, features.shape[1]), features[: self.W - len(self._head)]]
            )
        if self.full:
            starts = []
            while self._next + self.W < self.F:  # in the plan of every length >= F, with a ramp out (T > s + W)
                starts.append(self._next)
                self._next += self.hop
            self._blend_full(starts, self.F + 1)
            out = self._emit(max(self.done, self.F - self.W))  # no end-aligned window can reach these
            self._trim(max(0, self.F - self.W))
        else:
            first = (old // self.hop + 1) * self.hop
            self._blend_sliding(list(range(first, self.F + 1, self.hop)))
            out = self._emit(max(self.done, self.F - self.lookahead))
            self._trim(max(0, self.F - (self.W - self.pad)))  # where a window ending at the last frame starts
        return out

    def start_outputs(self, sizes: list[int]) -> list[np.ndarray]:
        """Offline inference's output ``(136,)`` for frame 0 of a clip of the first ``n`` features, for each ``n`` of
        ``sizes`` (each at most the features received and the window ``W``; from ``W`` on, frame 0 of any longer
        clip: its first window). With the full lookahead ``W`` of them is frame 0 as returned; with a shorter one
        the returned frame 0 is a blend of windows ending at their newest frame (``keep_mouth_shape`` takes its
        offset from these instead, as offline does from its own frame 0)."""
        if any(n < 1 or n > min(self.F, self.W) for n in sizes):
            raise ValueError(f"sizes must be in 1..{min(self.F, self.W)}, got {sizes}")
        return [y[0] for y in self.runner.run([(self._head[:n], self.ref_n) for n in sizes])]

    def flush(self) -> np.ndarray:
        T = self.F
        if T == 0:
            return np.zeros((0, 136), np.float32)
        if self.full:
            from ...models.windows import window_plan

            # the plan's windows not computed yet: regular ones from _next on, and the end-aligned one
            todo = [s for s in window_plan(T, self.W, self.ov) if not (s % self.hop == 0 and s < self._next)]
            self._blend_full(todo, T)
        elif T % self.hop:
            self._blend_sliding([T])  # a window ending at the last frame, for the frames not returned yet
        return self._emit(T)

    def _blend_full(self, starts: list[int], T: int) -> None:
        """Offline inference's blend (``WindowedRunner.run``): the same weights, added in the same order, with the
        same float32 arithmetic. ``T`` is the sequence length, or more than any window's end while it is unknown."""
        from ...models.windows import window_weights

        for s, y in zip(starts, self._run([(s, min(s + self.W, T)) for s in starts])):
            n = min(self.W, T - s)
            self._grow(s + n)
            w = window_weights(self.W, self.ov, ramp_in=s > 0, ramp_out=s + self.W < T)[:n]
            i = s - self.done
            self._acc[i : i + n] += y[:n] * w[:, None]
            self._wsum[i : i + n] += w

    def _blend_sliding(self, ends: list[int]) -> None:
        """Windows whose newest frame is ``E - 1`` for each ``E`` of ``ends``; each adds to the frames not returned
        yet that it ends ``0 .. lookahead`` frames after."""
        L, n = self.lookahead, self.W - self.pad  # n: frames of the stream in a window
        self._grow(self.F)
        wins = [np.concatenate([self._rows(E - n, E), np.repeat(self._rows(E - 1, E), self.pad, 0)]) for E in ends]
        ys = self.runner.run([(w, self.ref_n) for w in wins]) if wins else []
        for E, y in zip(ends, ys):
            t = np.arange(max(self.done, E - 1 - L), E)
            pos = t - (E - n)  # the frame's row in the window
            w = (E - t).astype(np.float64) * (ramp_weight(pos, self.ov) if E > n else 1.0)
            self._acc[t - self.done] += w[:, None] * y[pos]
            self._wsum[t - self.done] += w
