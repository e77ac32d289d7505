"""An ensemble of generators of one architecture as one network: the inference form of
:class:`~a2k_toolkit.models.generator.EnsembleNet` whose members differ only in their weights.

The shipped model is 4 small networks of many layers; run one after the other, a window pays the per-layer dispatch of
every member. :class:`StackedEnsembleNet` puts the members side by side in the channel dimension: every convolution
becomes one grouped convolution (``groups`` times the member count, each member's weights its own block), every
GroupNorm one GroupNorm of as many more groups (groups never straddle two members), the keypoint encoders' linear
layers block-diagonal 1x1 convolutions, and the concatenations (skip connections, the codes at the bottleneck) are
made member by member. A forward pass then runs each layer once for all members and returns their mean: the
ensemble's output, to float rounding (the sums of another layout may add in another order; checked when it is built,
see :func:`stack_ensemble`).

It is built from a trained :class:`EnsembleNet` (:func:`stack_ensemble`), never trained itself, and holds copies of
the members' weights. :func:`~a2k_toolkit.models.inference.fuse_for_inference` applies to it as to a member (its
blocks are ``Sequential(conv, GroupNorm, LeakyReLU)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .audio import spectrogram, stem_to_sequence
from .encoders import KeypointMLP, unit_rms
from .generator import Audio2KeypointNet, EnsembleNet

# the largest difference from the plain ensemble's output (normalised keypoint units) that stack_ensemble accepts
TOLERANCE = 1e-4


def _stack_conv(convs: list[nn.Module]) -> nn.Module:
    """One grouped convolution (Conv1d, Conv2d or ConvTranspose1d) doing what each of ``convs`` does on its own
    block of channels."""
    c, k = convs[0], len(convs)
    kw = dict(stride=c.stride, padding=c.padding, dilation=c.dilation, groups=c.groups * k, bias=c.bias is not None)
    if isinstance(c, nn.ConvTranspose1d):
        out = nn.ConvTranspose1d(
            c.in_channels * k, c.out_channels * k, c.kernel_size, output_padding=c.output_padding, **kw
        )
    else:
        out = type(c)(c.in_channels * k, c.out_channels * k, c.kernel_size, padding_mode=c.padding_mode, **kw)
    with torch.no_grad():
        out.weight.copy_(torch.cat([m.weight for m in convs], 0))
        if c.bias is not None:
            out.bias.copy_(torch.cat([m.bias for m in convs], 0))
    return out


def _stack_norm(norms: list[nn.GroupNorm]) -> nn.GroupNorm:
    n, k = norms[0], len(norms)
    out = nn.GroupNorm(n.num_groups * k, n.num_channels * k, n.eps, n.affine)
    if n.affine:
        with torch.no_grad():
            out.weight.copy_(torch.cat([m.weight for m in norms]))
            out.bias.copy_(torch.cat([m.bias for m in norms]))
    return out


def _stack_block(blocks: list[nn.Sequential]) -> nn.Sequential:
    """``Sequential(conv, GroupNorm, LeakyReLU)`` of each member -> one such block over all of them."""
    return nn.Sequential(
        _stack_conv([b[0] for b in blocks]),
        _stack_norm([b[1] for b in blocks]),
        nn.LeakyReLU(blocks[0][2].negative_slope),
    )


class _StackedMLP(nn.Module):
    """Each member's :class:`~a2k_toolkit.models.encoders.KeypointMLP` on the same input ``(B, in_dim)``: the first
    layer one wide linear layer, the others block-diagonal (grouped 1x1 convolutions); ``(B, K, out_dim)``."""

    def __init__(self, mlps: list[nn.Module]):
        super().__init__()
        k = len(mlps)
        self.k, self.normalize, self.out_dim = k, bool(mlps[0].normalize), int(mlps[0].out_dim)
        layers = [list(m.net) for m in mlps]
        first = [ls[0] for ls in layers]
        self.first = nn.Linear(first[0].in_features, first[0].out_features * k)
        with torch.no_grad():
            self.first.weight.copy_(torch.cat([m.weight for m in first], 0))
            self.first.bias.copy_(torch.cat([m.bias for m in first], 0))
        self.slope = float(layers[0][1].negative_slope)
        rest = []
        for i in range(2, len(layers[0]), 2):
            lin = [ls[i] for ls in layers]
            conv = nn.Conv1d(lin[0].in_features * k, lin[0].out_features * k, 1, groups=k)
            with torch.no_grad():
                conv.weight.copy_(torch.cat([m.weight for m in lin], 0)[:, :, None])
                conv.bias.copy_(torch.cat([m.bias for m in lin], 0))
            rest.append(conv)
        self.rest = nn.ModuleList(rest)

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        h = self.first(k)[:, :, None]  # (B, K * hidden, 1)
        for conv in self.rest:
            h = conv(F.leaky_relu(h, self.slope))
        e = h.reshape(h.shape[0], self.k, self.out_dim)
        return unit_rms(e) if self.normalize else e


def _interleave(parts: list[torch.Tensor], k: int) -> torch.Tensor:
    """Concatenate ``(B, k * C_i, T)`` tensors member by member: ``(B, k * sum C_i, T)``, each member's channels
    together (what each member's own ``torch.cat([...], 1)`` gives, side by side)."""
    B, T = parts[0].shape[0], parts[0].shape[-1]
    return torch.cat([p.reshape(B, k, -1, T) for p in parts], 2).reshape(B, -1, T)


class StackedEnsembleNet(nn.Module):
    """The mean of ``k`` :class:`~a2k_toolkit.models.generator.Audio2KeypointNet` of one architecture, as one network
    (see the module docstring). Same inputs and output as :class:`EnsembleNet`."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        m0, k = members[0], len(members)
        self.k, self.depth = k, m0.depth
        self.feature_shape, self.input_norm, self.residual = m0.feature_shape, m0.input_norm, m0.residual
        self.register_buffer("feature_mean", torch.stack([m.feature_mean for m in members]))  # (K, D)
        self.register_buffer("feature_std", torch.stack([m.feature_std for m in members]))
        enc = [m.audio for m in members]
        self.stem = nn.Sequential(*[_stack_block([e.stem[i] for e in enc]) for i in range(len(enc[0].stem))])
        self.to_seq = _stack_block([e.to_seq for e in enc])
        self.level0 = _stack_block([e.level0 for e in enc])
        self.down = nn.ModuleList(_stack_block([e.down[i] for e in enc]) for i in range(len(enc[0].down)))
        self.pv = _StackedMLP([m.pv for m in members]) if m0.pv is not None else None
        self.piv = _StackedMLP([m.piv for m in members]) if m0.piv is not None else None
        self.bottleneck = _stack_block([m.bottleneck for m in members])
        self.up = nn.ModuleList(_stack_block([m.up[i] for m in members]) for i in range(len(m0.up)))
        self.merge = nn.ModuleList(
            nn.Sequential(*[_stack_block([m.merge[i][j] for m in members]) for j in range(len(m0.merge[i]))])
            for i in range(len(m0.merge))
        )
        self.head = _stack_conv([m.head for m in members])
        self.kp_dim = m0.kp_dim

    @property
    def uses_reference(self) -> bool:
        return self.pv is not None or self.piv is not None

    def forward(self, features: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        B, T, D = features.shape
        k = self.k
        if self.input_norm == "window":
            centre = features.mean(1, keepdim=True)[:, None]  # (B, 1, 1, D)
        else:
            centre = self.feature_mean.to(features.dtype)[None, :, None]  # (1, K, 1, D)
        x = (features[:, None] - centre) / self.feature_std.to(features.dtype)[None, :, None]  # (B, K, T, D)
        pad = (-T) % 2**self.depth
        if pad:
            x = torch.cat([x, x[:, :, -1:].expand(-1, -1, pad, -1)], 2)  # the last frame repeated, as each member
        Tp = T + pad
        maps = spectrogram(x.reshape(B * k, Tp, D), self.feature_shape)  # (B * K, 1, F, Tp * S)
        x = self.stem(maps.reshape(B, k, *maps.shape[2:]))  # each member's map in its own input channel
        h = self.level0(self.to_seq(stem_to_sequence(x, Tp)))  # member-major channels
        levels = [h]
        for down in self.down:
            h = down(h)
            levels.append(h)
        h = levels[-1]
        parts = [h]
        if self.uses_reference:
            if reference is None:
                raise ValueError("this generator conditions on reference keypoints; pass `reference` (B, 136)")
            for enc in (self.pv, self.piv):
                if enc is not None:
                    parts.append(enc(reference).to(h.dtype).reshape(B, -1, 1).expand(-1, -1, h.shape[-1]))
        h = self.bottleneck(_interleave(parts, k) if len(parts) > 1 else h)
        for i, (up, merge) in enumerate(zip(self.up, self.merge)):
            h = merge(_interleave([up(h), levels[-2 - i]], k))
        out = self.head(h)[:, :, :T].reshape(B, k, self.kp_dim, T).mean(1).transpose(1, 2)
        if self.residual:
            out = out + reference[:, None, :].to(out.dtype)
        return out


def stackable(net: nn.Module) -> bool:
    """Whether ``net`` is an :class:`EnsembleNet` of :class:`Audio2KeypointNet` members of one architecture (the same
    layer shapes: what :class:`StackedEnsembleNet` can hold)."""
    if not isinstance(net, EnsembleNet) or len(net.members) < 2:
        return False
    members = list(net.members)
    if not all(type(m) is Audio2KeypointNet and m.dropout is None for m in members):
        return False
    if not all(e is None or type(e) is KeypointMLP for m in members for e in (m.pv, m.piv)):
        return False  # a third party's keypoint encoder: its layers are its own

    def shapes(m):
        return [(name, tuple(p.shape)) for name, p in m.state_dict().items()], (
            m.feature_shape,
            m.input_norm,
            m.residual,
            m.depth,
            m.pv is not None and bool(m.pv.normalize),
            m.piv is not None and bool(m.piv.normalize),
        )

    first = shapes(members[0])
    return all(shapes(m) == first for m in members[1:])


def stack_ensemble(net: nn.Module, *, check: bool = True) -> nn.Module:
    """``net``'s :class:`StackedEnsembleNet` (in eval mode, on ``net``'s device), or ``net`` itself where it is not
    :func:`stackable` or (``check``) the stacked form's output on random windows differs from ``net``'s by more than
    :data:`TOLERANCE`."""
    if not stackable(net):
        return net
    members = list(net.members)
    try:
        device = next(net.parameters()).device
        stacked = StackedEnsembleNet(members).to(device).eval()
    except (AttributeError, TypeError, IndexError, RuntimeError):  # a member of another make: run it as it is
        return net
    if check:
        g = torch.Generator().manual_seed(0)
        W, D = 2 ** members[0].depth * 3 + 1, members[0].feature_dim  # a length that needs the padding
        x = torch.randn(2, W, D, generator=g).to(device)
        ref = torch.randn(2, members[0].kp_dim, generator=g).to(device) if net.uses_reference else None
        with torch.inference_mode():
            want, got = net.eval()(x, ref), stacked(x, ref)
        if got.shape != want.shape or float((got - want).abs().max()) > TOLERANCE:
            return net
    return stacked
