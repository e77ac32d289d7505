"""Any-length inference with memory bounded by the window: overlapping windows, batched, cross-faded.

A sequence of ``T`` frames is cut into windows of the training length ``W`` starting every ``W - overlap`` frames
(the last window ends exactly at ``T``; a sequence shorter than ``W`` is one window whose features are padded by
repeating the last frame). Windows of many requests are stacked ``batch_size`` at a time, so the model never sees more
than ``batch_size x W`` frames at once, whatever the audio length. Every window is conditioned on the same reference
frame, so all windows share one coordinate frame; each window's output is weighted by a raised-cosine ramp over the
``overlap`` frames it shares with its neighbours, and the weighted outputs are summed and renormalised: the sequence
is continuous across window boundaries (no hard cuts).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch


def window_plan(num_frames: int, window: int, overlap: int) -> list[int]:
    """Start frames of the windows covering ``num_frames`` frames."""
    if num_frames <= window:
        return [0]
    hop = max(1, window - overlap)
    starts = list(range(0, num_frames - window + 1, hop))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    return starts


def window_weights(length: int, overlap: int, ramp_in: bool, ramp_out: bool) -> np.ndarray:
    """Blend weights of one window: raised-cosine ramps (strictly positive) over its first / last ``overlap``
    frames."""
    w = np.ones(length, np.float64)
    n = min(overlap, length)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(math.pi * np.arange(1, n + 1) / (n + 1))
        if ramp_in:
            w[:n] *= ramp
        if ramp_out:
            w[length - n :] *= ramp[::-1]
    return w


def autocast(device: str, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


class WindowedRunner:
    """Runs a generator net over sequences of any length (see the module docstring)."""

    def __init__(self, net: torch.nn.Module, window: int, overlap: int = 16, batch_size: int = 32,
                 precision: str = "fp32"):  # fmt: skip
        if not 0 <= overlap < window:
            raise ValueError(f"overlap must be in [0, window) = [0, {window}), got {overlap}")
        self.net, self.window, self.overlap = net, window, overlap
        self.batch_size, self.precision = batch_size, precision

    def run(self, requests: list[tuple[np.ndarray, np.ndarray | None]]) -> list[np.ndarray]:
        """``[(features (T, D), reference (136,) or None), ...]`` -> ``[(T, 136) float32, ...]`` (normalised space)."""
        W, O = self.window, self.overlap
        jobs = [(r, s) for r, (f, _) in enumerate(requests) for s in window_plan(len(f), W, O)]
        outs = [np.zeros((len(f), 136), np.float64) for f, _ in requests]
        wsum = [np.zeros(len(f), np.float64) for f, _ in requests]
        device = next(self.net.parameters()).device
        uses_ref = getattr(self.net, "uses_reference", True)
        with torch.inference_mode(), autocast(str(device), self.precision):
            for b0 in range(0, len(jobs), self.batch_size):
                batch = jobs[b0 : b0 + self.batch_size]
                feats = np.stack([self._window(requests[r][0], s) for r, s in batch])
                x = torch.from_numpy(feats).to(device)
                ref = None
                if uses_ref:
                    ref = torch.from_numpy(np.stack([requests[r][1] for r, _ in batch]).astype(np.float32)).to(device)
                y = self.net(x, ref).float().cpu().numpy()
                for (r, s), yy in zip(batch, y):
                    T = len(outs[r])
                    n = min(W, T - s)
                    w = window_weights(W, O, ramp_in=s > 0, ramp_out=s + W < T)[:n]
                    outs[r][s : s + n] += yy[:n] * w[:, None]
                    wsum[r][s : s + n] += w
        return [(o / ws[:, None]).astype(np.float32) for o, ws in zip(outs, wsum)]

    def _window(self, features: np.ndarray, start: int) -> np.ndarray:
        win = np.asarray(features[start : start + self.window], np.float32)
        if len(win) < self.window:
            win = np.pad(win, ((0, self.window - len(win)), (0, 0)), mode="edge")
        return win
