"""The discriminator D(y) (paper §4.3): a PatchGAN over the temporal stack of frame-to-frame displacements.

``(B, T, 136)`` keypoints -> displacements ``y[t+1] - y[t]`` as ``(B, 136, T - 1)`` -> 1D convolutions (two of stride
2, then stride 1) -> one realism score per temporal patch, ``(B, P)``. Scores are unbounded (least-squares GAN).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import groups_for


class PatchDiscriminator(nn.Module):
    def __init__(self, kp_dim: int = 136, width: int = 64, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv1d(kp_dim, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = width
        for i in range(1, layers):
            stride = 2 if i < 2 else 1
            kernel = 4 if stride == 2 else 3
            c2 = width * 2**i
            mods += [nn.Conv1d(c, c2, kernel, stride, 1), nn.GroupNorm(groups_for(c2), c2), nn.LeakyReLU(0.2)]
            c = c2
        mods.append(nn.Conv1d(c, 1, 3, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        motion = (keypoints[:, 1:] - keypoints[:, :-1]).transpose(1, 2)
        return self.net(motion)[:, 0]
