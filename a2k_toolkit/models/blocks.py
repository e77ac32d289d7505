"""Small convolution blocks shared by the generator and the discriminator.

GroupNorm instead of BatchNorm everywhere: outputs then do not depend on what else is in the batch (batched and
single inference agree) and there are no running statistics to synchronise across DDP ranks.
"""

from __future__ import annotations

import math

from torch import nn


def groups_for(channels: int, max_groups: int = 8) -> int:
    """The largest group count <= ``max_groups`` that divides ``channels``."""
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


class ConvBlock1d(nn.Sequential):
    """Conv1d -> GroupNorm -> LeakyReLU(0.2), on ``(B, C, T)``."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int | None = None):
        pad = (kernel - 1) // 2 if padding is None else padding
        super().__init__(
            nn.Conv1d(cin, cout, kernel, stride, pad),
            nn.GroupNorm(groups_for(cout), cout),
            nn.LeakyReLU(0.2),
        )


class UpBlock1d(nn.Sequential):
    """ConvTranspose1d (kernel 4, stride 2: doubles T) -> GroupNorm -> LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.ConvTranspose1d(cin, cout, 4, 2, 1),
            nn.GroupNorm(groups_for(cout), cout),
            nn.LeakyReLU(0.2),
        )


class ConvBlock2d(nn.Sequential):
    """Conv2d 3x3 -> GroupNorm -> LeakyReLU(0.2), on ``(B, C, F, S)`` (frequency x time)."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int] = (1, 1)):
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride, 1),
            nn.GroupNorm(groups_for(cout), cout),
            nn.LeakyReLU(0.2),
        )


def geometric_channels(first: int, last: int, n: int) -> list[int]:
    """``n`` channel counts growing geometrically from ``first`` to ``last`` (rounded to multiples of 4 when > 8)."""
    if n <= 1:
        return [last] * n
    out = []
    for i in range(n):
        c = first * (last / first) ** (i / (n - 1))
        c = int(round(c / 4) * 4) if c > 8 else int(math.ceil(c))
        out.append(max(1, c))
    return out
