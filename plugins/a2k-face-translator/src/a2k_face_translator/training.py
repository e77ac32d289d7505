"""Meta-training and few-shot fine-tuning (Zakharov et al. 2019, §3.2–3.3), with the losses that run offline here.

Meta-training step, for a batch of videos ``i`` (each a :class:`~a2k_face_translator.data.FaceClip`): pick K frames
and one target frame ``t`` of each, ``ê_i = mean_k E(x_k, y_k)``, ``x̂ = G(y_t, P ê_i)``, then

* generator and embedder: ``w_l1 · L1 + w_fm · FM + w_adv · (−D(x̂, y_t, i)) + w_match · |W_i − ê_i|``
* discriminator: hinge loss ``relu(1 − D(x_t, y_t, i)) + relu(1 + D(x̂, y_t, i))`` ``+ w_match · |W_i − ê_i|``

The paper's content loss compares VGG19 and VGGFace activations; no such weights are available offline, so the
reconstruction term here is a multi-scale L1 (full, 1/2 and 1/4 resolution) plus the feature-matching loss on the
discriminator's blocks (which the paper also uses). Embedding matching pulls ``ê_i`` and the discriminator's column
``W_i`` together (each side updated by its own optimiser).

Fine-tuning on K frames of a new person: ``G'`` starts from ``G``, its AdaIN parameters ``ψ'`` from ``P ê``, the
discriminator ``D'`` from ``D`` with its column ``w'`` from ``ê``; the same losses without the matching term.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from .data import FaceClip, to_tensor
from .models import FaceTranslator, ModelConfig


class LossWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    l1: float = Field(10.0, ge=0, description="multi-scale L1 reconstruction")
    fm: float = Field(10.0, ge=0, description="feature matching on the discriminator's blocks")
    adv: float = Field(1.0, ge=0, description="adversarial (hinge) loss")
    match: float = Field(1.0, ge=0, description="embedding matching |W_i - ê_i| (meta-training only)")


class TrainConfig(BaseModel):
    """Meta-training settings (the model's own hyper-parameters are a :class:`ModelConfig`)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(2000, ge=1)
    batch: int = Field(4, ge=1, description="videos per step")
    shots: int = Field(4, ge=1, description="K: frames per video fed to the embedder")
    lr_g: float = Field(2e-4, gt=0, description="learning rate of the generator and embedder")
    lr_d: float = Field(2e-4, gt=0, description="learning rate of the discriminator")
    weights: LossWeights = Field(default_factory=LossWeights)
    seed: int = 0
    log_every: int = Field(50, ge=1)


class FinetuneConfig(BaseModel):
    """Few-shot fine-tuning settings."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(100, ge=0)
    batch: int = Field(4, ge=1)
    lr: float = Field(1e-4, gt=0)
    weights: LossWeights = Field(default_factory=LossWeights)
    seed: int = 0


def multiscale_l1(a: torch.Tensor, b: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Mean absolute error at full, half and quarter resolution (averaged)."""
    total = a.new_zeros(())
    for s in range(scales):
        total = total + (a - b).abs().mean()
        if s + 1 < scales:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return total / scales


def feature_matching(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    return sum((f - r.detach()).abs().mean() for f, r in zip(fake, real)) / len(fake)


def _sample(clips: Sequence[FaceClip], batch: int, shots: int, rng: np.random.Generator):
    """Video indices ``(B,)``, shot frames and sketches ``(B*K, S, S, 3)``, target frames and sketches ``(B, ...)``."""
    vids = rng.choice(len(clips), size=batch, replace=len(clips) < batch)
    sx, sy, tx, ty = [], [], [], []
    for v in vids:
        clip = clips[v]
        idx = rng.choice(len(clip), size=shots + 1, replace=len(clip) < shots + 1)
        sx.append(clip.frames[idx[:shots]])
        sy.append(clip.sketches[idx[:shots]])
        tx.append(clip.frames[idx[shots]])
        ty.append(clip.sketches[idx[shots]])
    return vids, np.concatenate(sx), np.concatenate(sy), np.stack(tx), np.stack(ty)


def meta_train(
    clips: Sequence[FaceClip],
    config: TrainConfig | None = None,
    *,
    model: FaceTranslator | None = None,
    model_config: ModelConfig | None = None,
    device: str = "cpu",
    callback: Callable[[dict], None] | None = None,
) -> tuple[FaceTranslator, list[dict]]:
    """Meta-train on ``clips`` (one discriminator column per clip). Returns the model and one record of losses per
    step. Pass ``model`` to continue training (its ``num_videos`` must equal ``len(clips)``)."""
    cfg = config or TrainConfig()
    model = _meta_model(clips, model, model_config)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model.to(device).train()
    opt_g = torch.optim.Adam([*model.E.parameters(), *model.G.parameters()], lr=cfg.lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.D.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
    history = []
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        losses = _meta_step(model, opt_g, opt_d, _sample(clips, cfg.batch, cfg.shots, rng), cfg, device)
        rec = {"step": step, **losses, "seconds": time.perf_counter() - start}
        if not all(math.isfinite(v) for v in rec.values()):
            raise FloatingPointError(f"training diverged at step {step}: {rec}")
        history.append(rec)
        if callback is not None:
            callback(rec)
    model.eval()
    return model, history


def _meta_model(
    clips: Sequence[FaceClip], model: FaceTranslator | None, model_config: ModelConfig | None
) -> FaceTranslator:
    """The model to meta-train: ``model`` checked against the clips, or a new one with a column per clip."""
    if not clips:
        raise ValueError("meta-training needs at least one clip")
    size = clips[0].size
    if any(c.size != size for c in clips):
        raise ValueError("all clips must have the same crop size")
    if model is None:
        base = model_config or ModelConfig(image_size=size)
        return FaceTranslator(ModelConfig(**{**base.to_dict(), "image_size": size, "num_videos": len(clips)}))
    if model.cfg.num_videos != len(clips) or model.cfg.image_size != size:
        raise ValueError(
            f"the model has {model.cfg.num_videos} video columns at {model.cfg.image_size} px; got {len(clips)} "
            f"clips at {size} px"
        )
    return model


def _meta_step(model: FaceTranslator, opt_g, opt_d, batch, cfg: TrainConfig, device: str) -> dict[str, float]:
    """One meta-training step on a batch of :func:`_sample` (see the module docstring); its losses and scores."""
    vids, sx, sy, tx, ty = batch
    E, G, D = model.E, model.G, model.D
    w = cfg.weights
    sx, sy, x, y = (to_tensor(a, device) for a in (sx, sy, tx, ty))
    vid_t = torch.as_tensor(vids, device=device)
    B = len(vids)

    # generator + embedder
    e_hat = E(sx, sy).view(B, cfg.shots, -1).mean(dim=1)
    x_hat = G(y, G.psi(e_hat))
    W_i = D.W[vid_t]
    with torch.no_grad():
        _, feats_real = D(x, y, W_i)
    score_fake, feats_fake = D(x_hat, y, W_i)
    l1 = multiscale_l1(x_hat, x)
    fm = feature_matching(feats_fake, feats_real)
    adv = -score_fake.mean()
    match = (W_i.detach() - e_hat).abs().mean()
    loss_g = w.l1 * l1 + w.fm * fm + w.adv * adv + w.match * match
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()

    # discriminator (hinge) + its side of embedding matching
    W_i = D.W[vid_t]
    score_real, _ = D(x, y, W_i)
    score_fake_d, _ = D(x_hat.detach(), y, W_i)
    loss_d = F.relu(1 - score_real).mean() + F.relu(1 + score_fake_d).mean()
    loss_d = loss_d + w.match * (W_i - e_hat.detach()).abs().mean()
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    return {
        "l1": l1.item(),
        "fm": fm.item(),
        "adv": adv.item(),
        "match": match.item(),
        "loss_d": loss_d.item(),
        "d_real": score_real.mean().item(),
        "d_fake": score_fake_d.mean().item(),
    }


def finetune(
    model: FaceTranslator,
    frames: np.ndarray,
    sketches: np.ndarray,
    config: FinetuneConfig | None = None,
    *,
    device: str = "cpu",
    callback: Callable[[dict], None] | None = None,
) -> tuple[torch.nn.Module, torch.Tensor, list[dict]]:
    """Few-shot fine-tuning on K frames of one person (uint8 ``(K, S, S, 3)`` and their sketches).

    Returns the fine-tuned generator ``G'``, the person's AdaIN parameters ``ψ'`` ``(psi_dim,)`` and the loss
    history. ``model`` itself is not modified."""
    cfg = config or FinetuneConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model.to(device).eval()
    X, Y = to_tensor(frames, device), to_tensor(sketches, device)
    with torch.no_grad():
        e_hat = model.E(X, Y).mean(dim=0)
        psi0 = model.G.psi(e_hat[None])[0]
    G = copy.deepcopy(model.G).train()
    D = copy.deepcopy(model.D).train()
    psi = torch.nn.Parameter(psi0.clone())
    w_new = torch.nn.Parameter(e_hat.clone())  # with D's shared w0, the paper's w' = w0 + ê
    opt_g = torch.optim.Adam([*G.parameters(), psi], lr=cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*D.body.parameters(), D.w0, D.b, w_new], lr=cfg.lr, betas=(0.5, 0.999))
    w = cfg.weights
    history = []
    for step in range(1, cfg.steps + 1):
        idx = rng.choice(len(X), size=min(cfg.batch, len(X)), replace=False)
        x, y = X[idx], Y[idx]
        wb = w_new[None].expand(len(idx), -1)
        x_hat = G(y, psi[None].expand(len(idx), -1))
        with torch.no_grad():
            _, feats_real = D(x, y, wb)
        score_fake, feats_fake = D(x_hat, y, wb)
        l1 = multiscale_l1(x_hat, x)
        loss_g = w.l1 * l1 + w.fm * feature_matching(feats_fake, feats_real) - w.adv * score_fake.mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        score_real, _ = D(x, y, wb)
        score_fake_d, _ = D(x_hat.detach(), y, wb)
        loss_d = F.relu(1 - score_real).mean() + F.relu(1 + score_fake_d).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        rec = {"step": step, "l1": l1.item(), "loss_g": loss_g.item(), "loss_d": loss_d.item()}
        history.append(rec)
        if callback is not None:
            callback(rec)
    G.eval()
    return G, psi.detach(), history


@torch.no_grad()
def reconstruction_error(
    model: FaceTranslator,
    clips: Sequence[FaceClip],
    *,
    shots: int = 4,
    samples: int = 8,
    seed: int = 1234,
    device: str = "cpu",
) -> float:
    """Mean L1 (pixel values in [-1, 1]) between generated and real target frames: per clip, ``samples`` targets,
    each from an embedding of ``shots`` other frames, chosen with a fixed ``seed`` (a held-out style evaluation)."""
    rng = np.random.default_rng(seed)
    model.to(device).eval()
    errs = []
    for clip in clips:
        for _ in range(samples):
            idx = rng.choice(len(clip), size=shots + 1, replace=len(clip) < shots + 1)
            e = model.E(to_tensor(clip.frames[idx[:shots]], device), to_tensor(clip.sketches[idx[:shots]], device))
            x_hat = model.G(to_tensor(clip.sketches[idx[shots:]], device), model.G.psi(e.mean(0, keepdim=True)))
            errs.append((x_hat - to_tensor(clip.frames[idx[shots:]], device)).abs().mean().item())
    return float(np.mean(errs))
