"""The Audio2Keypoint generator G(s, k) (paper §4.1): a fully convolutional 1D UNet over time.

* down-sampling path: the :class:`~a2k_toolkit.models.audio.AudioEncoder` (2D over the spectrogram, then 1D strided);
* bottleneck: the audio code at ``T / 2**depth`` concatenated with the PV code and the PIV code of the reference
  keypoints (each broadcast along time), mixed by a convolution block;
* up-sampling path (decoder): per level a transposed convolution doubling ``T``, concatenation with the audio
  encoder's skip connection of that resolution, and two convolution blocks;
* head: a 1x1 convolution to 136 values per frame; with ``residual=True`` (an extension of the paper) the head's output
  is an offset added to the reference keypoints, and the head starts at zero (the untrained model is the static
  baseline), so the person's face shape is kept by construction.

Inputs are raw front-end features ``(B, T, D)`` (standardised inside with the ``feature_mean`` / ``feature_std``
buffers fitted on the training data and saved with the weights) and the reference frame ``(B, 136)`` in the
normalised keypoint space of :class:`~a2k_toolkit.keypoints.Normalizer`; the output ``(B, T, 136)`` is in that space.
Any ``T`` works (internally padded to a multiple of ``2**depth``); training uses 64-frame windows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .audio import AudioEncoder
from .blocks import ConvBlock1d, UpBlock1d

KP_DIM = 136


class Audio2KeypointNet(nn.Module):
    def __init__(
        self,
        feature_shape: tuple[int, int],
        width: int = 256,
        depth: int = 4,
        channels_2d: tuple[int, int] = (32, 128),
        pv: nn.Module | None = None,
        piv: nn.Module | None = None,
        kp_dim: int = KP_DIM,
        residual: bool = False,
        dropout: float = 0.0,
        input_norm: str = "global",
    ):
        super().__init__()
        self.feature_shape = (int(feature_shape[0]), int(feature_shape[1]))
        self.feature_dim = self.feature_shape[0] * self.feature_shape[1]
        self.width, self.depth, self.kp_dim = width, depth, kp_dim
        if input_norm not in ("global", "window"):
            raise ValueError(f"input_norm must be 'global' or 'window', got {input_norm!r}")
        self.input_norm = input_norm
        self.register_buffer("feature_mean", torch.zeros(self.feature_dim))
        self.register_buffer("feature_std", torch.ones(self.feature_dim))
        self.audio = AudioEncoder(self.feature_shape, width, depth, channels_2d)
        self.pv = pv  # None: the "audio only" ablation (no reference keypoints)
        self.piv = piv  # None: the "no PIV encoder" ablation
        code_dim = (pv.out_dim if pv is not None else 0) + (piv.out_dim if piv is not None else 0)
        self.bottleneck = ConvBlock1d(width + code_dim, width, 3)
        self.up = nn.ModuleList(UpBlock1d(width, width) for _ in range(depth))
        self.merge = nn.ModuleList(
            nn.Sequential(ConvBlock1d(2 * width, width, 3), ConvBlock1d(width, width, 3)) for _ in range(depth)
        )
        self.head = nn.Conv1d(width, kp_dim, 1)
        self.residual = bool(residual)
        if self.residual and pv is None:
            raise ValueError("residual output needs the reference keypoints (a PV encoder)")
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        if self.residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    @property
    def uses_reference(self) -> bool:
        return self.pv is not None or self.piv is not None

    def set_feature_stats(self, mean, std) -> None:
        """Store the training features' per-dimension mean and std (used to standardise inputs)."""
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(self.feature_dim)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(self.feature_dim).clamp_min(1e-5)
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)

    def encode_audio(self, features: torch.Tensor) -> tuple[list[torch.Tensor], int]:
        """Standardise, pad ``T`` to a multiple of ``2**depth`` (edge frames repeated) and run the audio encoder.
        ``input_norm="window"`` centres each window on its own mean per feature instead of the training mean (a
        window shorter than the model's is padded by repeating its last row first, as training pads it)."""
        T = features.shape[1]
        centre = features.mean(1, keepdim=True) if self.input_norm == "window" else self.feature_mean.to(features.dtype)
        x = (features - centre) / self.feature_std.to(features.dtype)
        mult = 2**self.depth
        pad = (-T) % mult
        if pad:
            x = F.pad(x.transpose(1, 2), (0, pad), mode="replicate").transpose(1, 2)
        return self.audio(x), T

    def codes(self, reference: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """PV and PIV codes ``(B, E)`` of the reference frames ``(B, 136)`` (None where the encoder is absent)."""
        if not self.uses_reference:
            return None, None
        if reference is None:
            raise ValueError("this generator conditions on reference keypoints; pass `reference` (B, 136)")
        k = reference[:, None, :]
        pv = self.pv(k)[:, 0] if self.pv is not None else None
        piv = self.piv(k)[:, 0] if self.piv is not None else None
        return pv, piv

    def decode(
        self,
        levels: list[torch.Tensor],
        T: int,
        codes: list[torch.Tensor | None],
        reference: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Bottleneck + up-sampling path; ``codes`` are ``(B, E)`` tensors (or None) concatenated at the bottleneck.
        A residual generator adds the output to ``reference`` ``(B, 136)`` (required then)."""
        h = levels[-1]
        extra = [c[:, :, None].expand(-1, -1, h.shape[-1]).to(h.dtype) for c in codes if c is not None]
        h = self.bottleneck(torch.cat([h, *extra], 1) if extra else h)
        for i, (up, merge) in enumerate(zip(self.up, self.merge)):
            skip = levels[-2 - i]
            h = merge(torch.cat([up(h), skip], 1))
        if self.dropout is not None:
            h = self.dropout(h)
        out = self.head(h)[:, :, :T].transpose(1, 2)
        if self.residual:
            if reference is None:
                raise ValueError("a residual generator needs `reference` (B, 136) to decode")
            out = out + reference[:, None, :].to(out.dtype)
        return out

    def forward(self, features: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, D)`` features + ``(B, 136)`` reference -> ``(B, T, 136)`` keypoints (normalised space)."""
        levels, T = self.encode_audio(features)
        pv, piv = self.codes(reference)
        return self.decode(levels, T, [pv, piv], reference)


class EnsembleNet(nn.Module):
    """The mean of several generators' outputs (same inputs, same normalised output space): an ensemble of models of
    one recipe trained with different seeds (``a2k_toolkit.models.ensemble``, ``ensemble.json``). Averaging removes
    the part of each model's motion that depends on its seed rather than on the audio."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @property
    def uses_reference(self) -> bool:
        return bool(getattr(self.members[0], "uses_reference", True))

    def forward(self, features: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        out = self.members[0](features, reference)
        for m in self.members[1:]:
            out = out + m(features, reference)
        return out / len(self.members)
