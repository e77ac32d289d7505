"""The generator's audio encoder (paper §4.1): 2D convolutions over the spectrogram of the whole window, reduced to a
temporal sequence at the video frame rate, then down-sampled in time (the UNet's contracting path).

Per-frame features ``(B, T, D)`` with the front-end's ``feature_shape = (S, F)`` (``S`` sub-frames of ``F`` values
per video frame, ``D = S * F``; log-mel: ``(4, 80)``) are viewed as a 1-channel 2D map of ``F x (S * T)``
(frequency x time). Strided 3x3 convolutions halve the frequency axis until it is at most ``freq_target`` bins and
halve the sub-frame axis while ``S`` stays even; the remaining frequency bins and sub-frames are folded into channels,
giving ``(B, width, T)``. ``depth`` stride-2 convolutions then produce ``T / 2, ..., T / 2**depth``; every level is
returned for the decoder's skip connections.

Any ``feature_shape`` works (a wav2vec2 front-end at 50 Hz is ``(2, 768)``): changing the front-end is a config change
plus retraining.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import ConvBlock1d, ConvBlock2d, geometric_channels


def stem_plan(feature_shape: tuple[int, int], freq_target: int = 8) -> list[tuple[int, int]]:
    """Strides ``(freq, time)`` of the 2D layers for a ``(S, F)`` feature shape."""
    S, F = feature_shape
    plan: list[tuple[int, int]] = []
    f, s = F, S
    while f > freq_target or s % 2 == 0 and s > 1:
        sf = 2 if f > freq_target else 1
        st = 2 if (s % 2 == 0 and s > 1) else 1
        plan.append((sf, st))
        f, s = math.ceil(f / sf), s // st
    return plan or [(1, 1)]


def stem_output(feature_shape: tuple[int, int], freq_target: int = 8) -> tuple[int, int]:
    """Frequency bins and sub-frames left after the 2D stem."""
    S, F = feature_shape
    f, s = F, S
    for sf, st in stem_plan(feature_shape, freq_target):
        f, s = math.ceil(f / sf), s // st
    return f, s


def spectrogram(features: torch.Tensor, feature_shape: tuple[int, int]) -> torch.Tensor:
    """``(B, T, S * F)`` -> the 2D map ``(B, 1, F, T * S)``, sub-frames in time order."""
    B, T, D = features.shape
    S, F = feature_shape
    if D != S * F:
        raise ValueError(f"features have {D} values per frame, the audio encoder expects {S} x {F} = {S * F}")
    return features.reshape(B, T, S, F).permute(0, 3, 1, 2).reshape(B, 1, F, T * S)


def stem_to_sequence(x: torch.Tensor, T: int) -> torch.Tensor:
    """The 2D stem's output ``(B, C, f, T * s)`` folded into a sequence ``(B, C * f * s, T)``: each frame's remaining
    frequency bins and sub-frames become channels."""
    B, C, f = x.shape[:3]
    s = x.shape[3] // T
    return x.reshape(B, C, f, T, s).permute(0, 1, 2, 4, 3).reshape(B, C * f * s, T)


class AudioEncoder(nn.Module):
    def __init__(
        self,
        feature_shape: tuple[int, int],
        width: int = 256,
        depth: int = 4,
        channels_2d: tuple[int, int] = (32, 128),
        freq_target: int = 8,
    ):
        super().__init__()
        self.feature_shape = (int(feature_shape[0]), int(feature_shape[1]))
        self.depth = depth
        plan = stem_plan(self.feature_shape, freq_target)
        chans = geometric_channels(channels_2d[0], channels_2d[1], len(plan))
        layers, cin = [], 1
        for (sf, st), c in zip(plan, chans):
            layers.append(ConvBlock2d(cin, c, (sf, st)))
            cin = c
        self.stem = nn.Sequential(*layers)
        f, s = stem_output(self.feature_shape, freq_target)
        self.folded = cin * f * s
        self.to_seq = ConvBlock1d(self.folded, width, 3)
        self.level0 = ConvBlock1d(width, width, 3)
        self.down = nn.ModuleList(ConvBlock1d(width, width, 4, 2, 1) for _ in range(depth))

    def spectrogram(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, S * F)`` -> the 2D map ``(B, 1, F, T * S)`` (:func:`spectrogram`)."""
        return spectrogram(features, self.feature_shape)

    def forward(self, features: torch.Tensor) -> list[torch.Tensor]:
        """``(B, T, D)`` -> ``[(B, width, T), (B, width, T/2), ..., (B, width, T/2**depth)]``."""
        B, T, _ = features.shape
        x = stem_to_sequence(self.stem(self.spectrogram(features)), T)
        h = self.level0(self.to_seq(x))
        levels = [h]
        for down in self.down:
            h = down(h)
            levels.append(h)
        return levels
