"""The window plan and the cross-fade of windowed inference, in numpy only (no torch).

:class:`~a2k_toolkit.models.inference.WindowedRunner` runs a torch network over these windows; a runtime without
torch (the ONNX generator of the ``a2k-onnx`` plugin) runs its own network over the same windows and blends them
here, so both put the same weights on the same frames. See :mod:`a2k_toolkit.models.inference` for the scheme.
"""

from __future__ import annotations

import functools
import math

import numpy as np


def window_plan(num_frames: int, window: int, overlap: int) -> list[int]:
    """Start frames of the windows covering ``num_frames`` frames."""
    if num_frames <= window:
        return [0]
    hop = max(1, window - overlap)
    starts = list(range(0, num_frames - window + 1, hop))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    return starts


@functools.lru_cache(maxsize=256)
def window_weights(length: int, overlap: int, ramp_in: bool, ramp_out: bool) -> np.ndarray:
    """Blend weights of one window: raised-cosine ramps (strictly positive) over its first / last ``overlap``
    frames. Read-only: one array per argument set, kept (a stream asks for the same weights every window)."""
    w = np.ones(length, np.float64)
    n = min(overlap, length)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(math.pi * np.arange(1, n + 1) / (n + 1))
        if ramp_in:
            w[:n] *= ramp
        if ramp_out:
            w[length - n :] *= ramp[::-1]
    w.flags.writeable = False
    return w


def window_features(features: np.ndarray, start: int, window: int) -> np.ndarray:
    """The ``window`` feature rows from ``start`` as float32, padded by repeating the last row where the sequence
    ends first."""
    win = np.asarray(features[start : start + window], np.float32)
    if len(win) < window:
        win = np.pad(win, ((0, window - len(win)), (0, 0)), mode="edge")
    return win


class WindowBlend:
    """The windows of several sequences of ``lengths`` frames, and the sum of their weighted outputs.

    ``jobs`` lists ``(sequence, start)`` for every window, sequence by sequence; :meth:`add` adds one window's output
    ``(window, 136)`` with its weights, :meth:`result` divides by the summed weights (in place) and returns one
    ``(T, 136)`` float32 array per sequence. Windows may be added in any order."""

    def __init__(self, lengths: list[int], window: int, overlap: int):
        if not 0 <= overlap < window:
            raise ValueError(f"overlap must be in [0, window) = [0, {window}), got {overlap}")
        self.window, self.overlap = window, overlap
        self.jobs = [(r, s) for r, T in enumerate(lengths) for s in window_plan(T, window, overlap)]
        self.outs = [np.zeros((T, 136), np.float32) for T in lengths]  # float32: an hour is 49 MB, not 98
        self.wsum = [np.zeros(T, np.float32) for T in lengths]

    def add(self, r: int, start: int, y: np.ndarray) -> None:
        W, T = self.window, len(self.outs[r])
        n = min(W, T - start)
        w = window_weights(W, self.overlap, ramp_in=start > 0, ramp_out=start + W < T)[:n]
        self.outs[r][start : start + n] += y[:n] * w[:, None]
        self.wsum[r][start : start + n] += w

    def result(self) -> list[np.ndarray]:
        for o, ws in zip(self.outs, self.wsum):
            o /= ws[:, None]  # in place: no second copy of a long output
        return self.outs


def batch_inputs(
    requests: list[tuple[np.ndarray, np.ndarray | None]], batch: list[tuple[int, int]], window: int, reference: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """The network inputs of a batch of ``(sequence, start)`` windows: features ``(B, window, D)`` float32 and, where
    the network reads it (``reference``), each window's reference frame ``(B, 136)`` float32 (else None)."""
    feats = np.stack([window_features(requests[r][0], s, window) for r, s in batch])
    refs = np.stack([requests[r][1] for r, _ in batch]).astype(np.float32) if reference else None
    return feats, refs


def run_windows(
    requests: list[tuple[np.ndarray, np.ndarray | None]],
    forward,
    window: int,
    overlap: int,
    batch_size: int,
    reference: bool = True,
) -> list[np.ndarray]:
    """Windowed inference with any network: ``forward(features (B, window, D), reference (B, 136) or None) ->
    (B, window, 136)``, ``batch_size`` windows at a time, blended by :class:`WindowBlend`. ``requests`` and the result
    as for :meth:`~a2k_toolkit.models.inference.WindowedRunner.run`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    blend = WindowBlend([len(f) for f, _ in requests], window, overlap)
    for b0 in range(0, len(blend.jobs), batch_size):
        batch = blend.jobs[b0 : b0 + batch_size]
        for (r, s), y in zip(batch, forward(*batch_inputs(requests, batch, window, reference))):
            blend.add(r, s, y)
    return blend.result()
