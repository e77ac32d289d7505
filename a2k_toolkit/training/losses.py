"""The losses of paper §4.4 and the module that computes everything they need in one forward pass.

Conventions: ``||.||_L1`` is a mean absolute error, ``||.||_L2`` a mean squared error (least-squares GAN), means taken
over every element (batch, frames / patches, values).

* ``L_Reg = mean |y - y_hat|``
* ``L_Adv = mean (1 - D(y_hat))^2``
* ``L_PIV-Gen = mean (E(k) - mean_t E(y_hat_t))^2`` -- E's parameters held fixed: it drives the generator only.
* ``L_PIV-PIV``: the paper writes ``||k - y|| + ||k - y_hat|| + eps`` and describes a triplet loss that pulls the
  code of the reference ``k`` towards the code of every ground-truth frame and pushes it away from the codes of the
  generated frames, in root-mean-squared distance. We read it as the margin triplet
  ``mean_{b,t} max(0, rms(E(k) - E(y_t)) - rms(E(k) - E(y_hat_t)) + margin)``, with ``y_hat`` a fixed negative
  sample (no gradient into the generator) and ``eps`` the margin.
* ``L_D = mean (1 - D(y))^2 + mean D(y_hat)^2``.
* Extensions (weight 0 by default, see ``LossConfig``): ``L_Mouth``, the L1 of the mouth points only, and ``L_Sync``
  (:func:`sync_loss`), one minus the correlation of predicted and real mouth opening per window plus the log ratio of
  their standard deviations.

The generator (audio encoder, PV encoder, decoder) minimises ``L_Gen = L_Adv + L_Reg + L_PIV-Gen``; the PIV encoder
minimises ``L_PIV = L_Reg + L_Adv + L_PIV-PIV`` (it receives L_Reg and L_Adv through its code at the bottleneck); the
discriminator minimises ``L_D``. One backward pass of ``L_Reg + L_Adv + L_PIV-Gen + L_PIV-PIV`` gives each of the
generator and the PIV encoder exactly its own objective's gradient, because L_PIV-Gen is computed with E's parameters
detached and with the part of its gradient that would reach the PIV code through the decoder cancelled (the
gradients of decoding a second time from a detached PIV code, without that second pass: :class:`GANForward`), and
L_PIV-PIV on a detached output.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from ..keypoints import mouth_gap


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values (B, T, ...)`` over the frames where ``mask (B, T)`` is 1 (every frame when ``mask`` is None):
    the padding of a short clip's window (data.min_frames) counts for nothing."""
    if mask is None:
        return values.mean()
    m = mask.to(values.dtype).reshape(*mask.shape, *[1] * (values.dim() - mask.dim()))
    per_frame = values[0, 0].numel()
    return (values * m).sum() / (m.sum() * per_frame).clamp_min(1.0)


def window_mean(values: torch.Tensor, mask: torch.Tensor | None, keepdim: bool = False) -> torch.Tensor:
    """Per window, the mean of ``values (B, T, ...)`` over time (dim 1), over the frames where ``mask (B, T)`` is 1
    when it is given."""
    if mask is None:
        return values.mean(1, keepdim=keepdim)
    m = mask.to(values.dtype).reshape(*mask.shape, *[1] * (values.dim() - mask.dim()))
    return (values * m).sum(1, keepdim=keepdim) / m.sum(1, keepdim=keepdim).clamp_min(1.0)


def reg_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    return masked_mean((pred - target).abs(), mask)


def mouth_opening(kp: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The mouth opening (:func:`a2k_toolkit.keypoints.mouth_gap`, points 62-66) of normalised ``(..., 136)``
    keypoints, standardisation undone with the normaliser's ``mean`` / ``std``: in the normalised space's unit, the
    reference face's :func:`~a2k_toolkit.keypoints.face_scale`. That is the toolkit's opening in reference IOD times
    ``IOD / face_scale`` of the window's reference, one positive constant per window, to which :func:`sync_loss` is
    invariant (its correlation exactly, its log std ratio up to ``eps``) and so is the lip_sync validation metric."""
    p = (kp * std + mean).reshape(*kp.shape[:-1], 68, 2)
    return mouth_gap(p)


def nose_relative_mouth(kp: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The mouth points 48-67 of normalised ``(..., 136)`` keypoints relative to their frame's nose tip (30),
    standardisation undone, ``(..., 20, 2)``, divided by the normaliser's mean std of the mouth coordinates so that an
    L1 on them has the scale of the image-frame L_Mouth (:attr:`LossConfig.mouth_frame` ``nose``)."""
    p = (kp * std + mean).reshape(*kp.shape[:-1], 68, 2)
    scale = std.reshape(68, 2)[48:68].mean().clamp_min(1e-8)
    return (p[..., 48:68, :] - p[..., 30:31, :]) / scale


def weighted_mean(per_window: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``(B,)`` values, or their ``weights``-weighted mean (0 when every weight is 0)."""
    if weights is None:
        return per_window.mean()
    w = weights.to(per_window.dtype)
    return (per_window * w).sum() / w.sum().clamp_min(1.0)


def sync_loss(
    pred_open: torch.Tensor,
    real_open: torch.Tensor,
    eps: float = 1e-3,
    weights: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Lip-sync loss on mouth openings ``(B, T)``: per window ``1 - corr(pred, real)`` (Pearson over time) plus
    ``|log(std_pred / std_real)|`` (right amplitude), averaged over windows (weighted by ``weights`` ``(B,)`` if
    given). ``eps`` (face-size units) keeps windows with a still mouth finite. With ``mask (B, T)`` the moments are
    taken over each window's masked-in frames only."""
    x = pred_open - window_mean(pred_open, mask, keepdim=True)
    y = real_open - window_mean(real_open, mask, keepdim=True)
    sx = window_mean(x.pow(2), mask).add(eps**2).sqrt()
    sy = window_mean(y.pow(2), mask).add(eps**2).sqrt()
    corr = window_mean(x * y, mask) / (sx * sy)
    return weighted_mean((1.0 - corr) + (sx.log() - sy.log()).abs(), weights)


def adversarial_loss(d_fake: torch.Tensor) -> torch.Tensor:
    return (1.0 - d_fake).pow(2).mean()


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    return (1.0 - d_real).pow(2).mean() + d_fake.pow(2).mean()


def piv_gen_loss(e_ref: torch.Tensor, e_pred: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``e_ref (B, E)``, ``e_pred (B, T, E)`` (the mean over the frames ``mask (B, T)`` keeps, if given)."""
    return (e_ref - window_mean(e_pred, mask)).pow(2).mean()


def rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((a - b).pow(2).mean(-1) + 1e-8)


def piv_triplet_loss(
    e_ref: torch.Tensor, e_pos: torch.Tensor, e_neg: torch.Tensor, margin: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``e_ref (B, E)`` anchors; ``e_pos (B, T, E)`` ground-truth frames; ``e_neg (B, T, E)`` generated frames
    (the frames ``mask (B, T)`` keeps, if given)."""
    anchor = e_ref[:, None, :]
    return masked_mean(torch.relu(rms_distance(anchor, e_pos) - rms_distance(anchor, e_neg) + margin), mask)


def frozen(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s parameters detached, for :func:`torch.func.functional_call` (gradients reach inputs only)."""
    return {n: p.detach() for n, p in module.named_parameters()}


class _WithoutCodeGradient(torch.autograd.Function):
    """Identity on ``pred`` whose backward sends the incoming gradient on to ``pred`` and *minus* its
    vector-Jacobian product through the decoder onto ``code``: what reaches ``code`` by this route cancels, so a loss
    on the output reaches every generator parameter but not the network that produced ``code``. It equals decoding a
    second time from ``code.detach()`` (the same values, the same gradients) at the cost of one gradient-of-input pass
    through the decoder instead of a second forward and full backward."""

    @staticmethod
    def forward(ctx, pred: torch.Tensor, code: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(pred, code)
        return pred.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        pred, code = ctx.saved_tensors
        (through,) = torch.autograd.grad(pred, code, grad, retain_graph=True, allow_unused=True)
        return grad, (None if through is None else -through)


def _without_code_gradient(pred: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    return _WithoutCodeGradient.apply(pred, code)


class GANForward(nn.Module):
    """Wraps the generator so one (DDP-wrapped) forward yields the output and every PIV code the losses need."""

    def __init__(self, generator: nn.Module, exact_piv_gradients: bool = True):
        super().__init__()
        self.generator = generator
        self.exact = exact_piv_gradients

    def forward(self, features: torch.Tensor, reference: torch.Tensor, keypoints: torch.Tensor) -> dict:
        g = self.generator
        levels, T = g.encode_audio(features)
        pv, piv = g.codes(reference)
        pred = g.decode(levels, T, [pv, piv], reference)
        out = {"pred": pred}
        if g.piv is not None:
            pred_for_piv = _without_code_gradient(pred, piv) if self.exact and piv.requires_grad else pred
            params = frozen(g.piv)
            out["e_ref_fixed"] = functional_call(g.piv, params, (reference[:, None, :],))[:, 0]
            out["e_pred_fixed"] = functional_call(g.piv, params, (pred_for_piv,))
            out["e_ref"] = piv
            out["e_pos"] = g.piv(keypoints)
            out["e_neg"] = g.piv(pred.detach())
        return out
