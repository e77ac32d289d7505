"""Keypoint encoders (paper §4.1-4.2): the pose-variant (PV) and pose-invariant (PIV) encoders.

Both map a keypoint frame of 136 values to a latent code, frame by frame: ``(B, T, 136) -> (B, T, out_dim)``. The
generator feeds them the reference frame (``T = 1``); the PIV losses also feed them ground-truth and generated frames.
"""

from __future__ import annotations

import torch
from torch import nn


def unit_rms(e: torch.Tensor) -> torch.Tensor:
    """Each code of ``e`` ``(..., E)`` rescaled to unit RMS over its last dimension (``e / rms(e)``, in float32)."""
    return e * torch.rsqrt(e.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(e.dtype)


class KeypointMLP(nn.Module):
    """A per-frame MLP ``in_dim -> hidden (x layers) -> out_dim`` with LeakyReLU(0.2).

    With ``normalize=True`` every code is rescaled to unit RMS (``e / rms(e)``), so distances between codes live in
    ``[0, 2]`` and a triplet margin means the same thing throughout training (the encoder cannot satisfy the margin by
    inflating its output); the PIV encoder uses this.
    """

    def __init__(
        self, in_dim: int = 136, hidden: int = 256, layers: int = 2, out_dim: int = 64, normalize: bool = False
    ):
        super().__init__()
        dims = [in_dim] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            mods += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        mods.append(nn.Linear(dims[-1], out_dim))
        self.net = nn.Sequential(*mods)
        self.in_dim, self.out_dim, self.normalize = in_dim, out_dim, normalize

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        e = self.net(k)
        return unit_rms(e) if self.normalize else e
