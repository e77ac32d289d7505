"""The three networks of the few-shot talking-head model of Zakharov et al. (2019), sized for small images.

* :class:`Embedder` ``E(x, y)``: an image of the person and its keypoint sketch -> an embedding vector ``e``
  (residual downsampling blocks, global sum pooling); the few-shot embedding ``ê`` is the mean over K frames.
* :class:`Generator` ``G(y, ψ)``: a target keypoint sketch -> an image of the person. An image-to-image network
  (downsampling residual blocks with instance norm, residual blocks and upsampling residual blocks with adaptive
  instance normalisation); the AdaIN parameters ``ψ = P ê`` come from the embedding through the learnt projection
  ``P``. Few-shot fine-tuning replaces ``ψ`` by a free parameter ``ψ'`` initialised to ``P ê``.
* :class:`Discriminator` ``D(x, y, i)``: a projection discriminator. A residual network maps the image and sketch
  to a vector ``V(x, y)``; the realism score is ``V · (W_i + w0) + b`` with ``W_i`` a learnt column per training
  video (the embedding-matching loss pulls ``W_i`` towards ``ê_i``). Its block outputs serve the feature-matching
  loss. Spectral normalisation is applied in the discriminator (the paper applies it everywhere; in a generator
  trained for a few hundred steps on a CPU it mostly slows learning down).

Images and sketches are float tensors ``(B, 3, S, S)`` in ``[-1, 1]``; ``S`` is a power of two from 32 up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters; stored in every checkpoint."""

    image_size: int = 64
    channels: int = 16  # width of the first level; doubles per level up to max_channels (sized for a CPU)
    max_channels: int = 128
    embed_dim: int = 128
    gen_down: int = 3  # generator downsamplings (64 px -> 8 px bottleneck)
    gen_res_blocks: int = 2
    num_videos: int = 1  # columns of the discriminator's projection matrix W (one per meta-training video)

    def __post_init__(self):
        s = self.image_size
        if s < 32 or s & (s - 1):
            raise ValueError(f"image_size must be a power of two >= 32, got {s}")
        if s >> self.gen_down < 4:
            raise ValueError(f"image_size {s} is too small for {self.gen_down} generator downsamplings")

    def widths(self, levels: int) -> list[int]:
        return [min(self.channels * 2**i, self.max_channels) for i in range(levels + 1)]

    def to_dict(self) -> dict:
        return asdict(self)


def _conv(cin: int, cout: int, k: int = 3, sn: bool = False) -> nn.Module:
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    return spectral_norm(conv) if sn else conv


class ResDown(nn.Module):
    """Pre-activation residual block with average-pool downsampling (optionally instance-normalised)."""

    def __init__(self, cin: int, cout: int, *, norm: bool = False, sn: bool = False, first: bool = False):
        super().__init__()
        self.first = first
        self.n1 = nn.InstanceNorm2d(cin, affine=True) if norm and not first else nn.Identity()
        self.n2 = nn.InstanceNorm2d(cout, affine=True) if norm else nn.Identity()
        self.c1, self.c2 = _conv(cin, cout, sn=sn), _conv(cout, cout, sn=sn)
        self.skip = _conv(cin, cout, 1, sn=sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(self.n1(x))
        h = self.c2(F.relu(self.n2(self.c1(h))))
        return F.avg_pool2d(h, 2) + F.avg_pool2d(self.skip(x), 2)


def adain(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance normalisation: per-channel standardise, then scale by ``1 + gamma`` and shift by ``beta``."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = (x.var(dim=(2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return (x - mean) / std * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class ResAdaIN(nn.Module):
    """Residual block with AdaIN before each convolution, optionally upsampling (nearest) by two."""

    def __init__(self, cin: int, cout: int, *, up: bool = False):
        super().__init__()
        self.cin, self.cout, self.up = cin, cout, up
        self.c1, self.c2 = _conv(cin, cout), _conv(cout, cout)
        self.skip = _conv(cin, cout, 1) if (cin != cout or up) else nn.Identity()

    @property
    def n_params(self) -> int:
        return 2 * self.cin + 2 * self.cout

    def forward(self, x: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        g1, b1, g2, b2 = torch.split(psi, [self.cin, self.cin, self.cout, self.cout], dim=1)
        h = F.relu(adain(x, g1, b1))
        if self.up:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        h = self.c2(F.relu(adain(self.c1(h), g2, b2)))
        return h + self.skip(x)


class Embedder(nn.Module):
    """``E(x, y)``: image + sketch -> embedding ``(B, embed_dim)``."""

    def __init__(self, cfg: ModelConfig, *, sn: bool = False):
        super().__init__()
        levels = cfg.image_size.bit_length() - 1 - 2  # down to 4x4
        w = cfg.widths(levels)
        blocks = [ResDown(6, w[1], sn=sn, first=True)]
        blocks += [ResDown(w[i], w[i + 1], sn=sn) for i in range(1, levels)]
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Linear(w[levels], cfg.embed_dim)
        if sn:
            self.out = spectral_norm(self.out)

    def features(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = torch.cat([x, y], dim=1)
        feats = []
        for block in self.blocks:
            h = block(h)
            feats.append(h)
        return self.out(F.relu(h).sum(dim=(2, 3))), feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.features(x, y)[0]


class Generator(nn.Module):
    """``G(y, ψ)``: sketch ``(B, 3, S, S)`` + AdaIN parameters ``(B, psi_dim)`` -> image in ``[-1, 1]``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.widths(cfg.gen_down)
        self.inp = _conv(3, w[0])
        self.down = nn.ModuleList([ResDown(w[i], w[i + 1], norm=True) for i in range(cfg.gen_down)])
        self.mid = nn.ModuleList([ResAdaIN(w[-1], w[-1]) for _ in range(cfg.gen_res_blocks)])
        self.up = nn.ModuleList([ResAdaIN(w[i + 1], w[i], up=True) for i in reversed(range(cfg.gen_down))])
        self.out_channels = w[0]
        self.out = _conv(w[0], 3)
        self.psi_dim = sum(b.n_params for b in [*self.mid, *self.up]) + 2 * w[0]
        self.project = nn.Linear(cfg.embed_dim, self.psi_dim)  # P: embedding -> AdaIN parameters
        nn.init.normal_(self.project.weight, std=0.01)
        nn.init.zeros_(self.project.bias)

    def psi(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.project(embedding)

    def forward(self, sketch: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        h = self.inp(sketch)
        for block in self.down:
            h = block(h)
        offset = 0
        for block in [*self.mid, *self.up]:
            h = block(h, psi[:, offset : offset + block.n_params])
            offset += block.n_params
        g, b = torch.split(psi[:, offset:], [self.out_channels, self.out_channels], dim=1)
        return torch.tanh(self.out(F.relu(adain(h, g, b))))


class Discriminator(nn.Module):
    """``D(x, y, i)``: projection discriminator; :meth:`forward` returns the score and the block features."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.body = Embedder(cfg, sn=True)  # same shape as the embedder, its own weights, spectrally normalised
        self.W = nn.Parameter(torch.randn(cfg.num_videos, cfg.embed_dim) * 0.02)
        self.w0 = nn.Parameter(torch.zeros(cfg.embed_dim))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``w``: the projection columns ``(B, embed_dim)`` (``W[i]`` in meta-training, ``w'`` when fine-tuning)."""
        v, feats = self.body.features(x, y)
        return (v * (w + self.w0)).sum(dim=1) + self.b, feats


class FaceTranslator(nn.Module):
    """Embedder, generator and discriminator together, with their :class:`ModelConfig`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.E, self.G, self.D = Embedder(cfg), Generator(cfg), Discriminator(cfg)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, sketches: torch.Tensor) -> torch.Tensor:
        """Few-shot embedding ``ê`` ``(embed_dim,)``: the mean of ``E`` over the K given frames."""
        return self.E(images, sketches).mean(dim=0)
