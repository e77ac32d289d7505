"""The training task: what is trained and how, apart from the loop that runs it (:mod:`.trainer`).

The split follows pyannote's model / task idea. :class:`GANTask` owns the recipe of paper §4.4:

* the networks, built from the config: the generator, its weight average (``ema``), the discriminator, and the
  :class:`~.losses.GANForward` that computes everything the losses need in one forward pass;
* the optimisers and the schedules: learning rate (``optim.schedule``), L_Adv's warm-up (``loss.adv_start`` /
  ``adv_ramp``), the EMA decay;
* one GAN step (:meth:`GANTask.train_step`): the generator forward, a discriminator step on ``[y, y_hat.detach()]``,
  then one backward of the generator / PIV-encoder losses with the freshly updated discriminator held fixed;
* the validation metric (``val_metric``).

The loop (:class:`~.trainer.Trainer`) owns the device, DDP, mixed precision, the data, checkpoints, resume, signals
and logging; it passes the current step in, and may swap :attr:`GANTask.gan_forward` / :attr:`GANTask.disc_forward`
for their DistributedDataParallel wrappers.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..data.windows import collate
from ..eval.metrics import best_lag_correlation
from ..models.config import ENCODER_FIELDS, build_discriminator, build_generator
from .config import TrainConfig
from .losses import (
    GANForward,
    adversarial_loss,
    discriminator_loss,
    frozen,
    mouth_opening,
    nose_relative_mouth,
    piv_gen_loss,
    piv_triplet_loss,
    reg_loss,
    sync_loss,
    weighted_mean,
    window_mean,
)
from .precision import Precision
from .state import flatten_optimizer, unflatten_optimizer

LOSS_KEYS = ("loss_g", "loss_reg", "loss_mouth", "loss_sync", "loss_adv", "loss_piv_gen", "loss_piv_piv", "loss_d")
MOUTH = slice(48 * 2, 68 * 2)  # the mouth points' coordinates in a (.., 136) keypoint vector


class GANTask:
    """The networks, optimisers, schedules, GAN step and validation metric of a :class:`TrainConfig`.

    ``feature_shape``: the front-end's; ``normalizer``: the keypoint statistics (for the mouth-opening losses and
    metrics); ``feature_stats``: ``(mean, std)`` of the training features for the generator's input standardisation
    (None when the weights come from a checkpoint); ``total_steps``: the horizon of the learning-rate schedule.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        feature_shape: tuple[int, int],
        catalog,
        device: str,
        precision: Precision,
        normalizer,
        *,
        total_steps: int,
        feature_stats: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        self.cfg, self.device, self.precision, self.total_steps = cfg, device, precision, total_steps
        self.norm_stats = tuple(
            torch.as_tensor(v, dtype=torch.float32, device=device) for v in (normalizer.mean, normalizer.std)
        )
        self.model_cfg = cfg.effective_model()
        encoders = model_encoders(self.model_cfg, catalog)
        self.generator = build_generator(self.model_cfg, feature_shape, **encoders).to(device)
        if feature_stats is not None:
            self.generator.set_feature_stats(*feature_stats)
        # the weights validation and checkpoints use: an exponential moving average of the generator's, if `ema`
        self.ema_generator = None
        if cfg.ema > 0:
            self.ema_generator = copy.deepcopy(self.generator).eval().requires_grad_(False)
        self.disc = build_discriminator(self.model_cfg).to(device) if cfg.uses_discriminator else None
        self.gan = GANForward(self.generator, cfg.loss.exact_piv_gradients)
        # what the step calls: these modules, or the DistributedDataParallel wrappers the loop puts in their place
        self.gan_forward, self.disc_forward = self.gan, self.disc
        self.optimizers = self._make_optimizers()

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Adam for the generator (``g``), the PIV encoder (``e``, if any) and the discriminator (``d``, if any)."""
        o = self.cfg.optim
        g_params = [p for n, p in self.generator.named_parameters() if not n.startswith("piv.")]
        e_params = list(self.generator.piv.parameters()) if self.generator.piv is not None else []
        # the same Adam update in one fused kernel per optimiser (about 3x faster than the per-tensor loop on CPU)
        fused = {"fused": True} if torch.device(self.device).type in ("cpu", "cuda") else {}
        adam = {"betas": o.betas, "weight_decay": o.weight_decay, **fused}
        optimizers: dict[str, torch.optim.Optimizer] = {"g": torch.optim.Adam(g_params, lr=o.lr_g, **adam)}
        if e_params:
            optimizers["e"] = torch.optim.Adam(e_params, lr=o.lr_e, **adam)
        if self.disc is not None:
            optimizers["d"] = torch.optim.Adam(self.disc.parameters(), lr=o.lr_d, **adam)
        return optimizers

    # ------------------------------------------------------------------------------------------------ schedules
    def adv_weight(self, step: int) -> float:
        """L_Adv's weight at ``step``: 0 before ``loss.adv_start``, then a linear ramp over ``loss.adv_ramp`` steps to
        ``loss.adv``."""
        w = self.cfg.loss
        if step < w.adv_start:
            return 0.0
        if w.adv_ramp <= 0:
            return w.adv
        return w.adv * min(1.0, (step - w.adv_start + 1) / w.adv_ramp)

    def lr_factor(self, step: int) -> float:
        """The learning-rate multiplier of ``optim.schedule`` at ``step`` (0-based)."""
        o = self.cfg.optim
        if o.schedule == "constant":
            return 1.0
        progress = min(1.0, step / max(1, self.total_steps - 1))
        return o.final_lr_fraction + (1.0 - o.final_lr_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def set_learning_rates(self, step: int) -> None:
        o, f = self.cfg.optim, self.lr_factor(step)
        for name, opt in self.optimizers.items():
            base = {"g": o.lr_g, "e": o.lr_e, "d": o.lr_d}[name]
            for group in opt.param_groups:
                group["lr"] = base * f

    def ema_decay(self, step: int) -> float:
        """The average's decay after ``step`` updates: ``ema`` capped by ``(1 + step) / (10 + step)`` so the early,
        random weights fade out quickly."""
        return min(self.cfg.ema, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        if self.ema_generator is None:
            return
        d = self.ema_decay(step)
        avg = list(self.ema_generator.parameters())
        torch._foreach_lerp_(avg, [p.detach() for p in self.generator.parameters()], 1.0 - d)
        for a, b in zip(self.ema_generator.buffers(), self.generator.buffers()):
            a.copy_(b)

    @property
    def eval_generator(self):
        """The generator that is validated and saved: the weight average when ``ema`` is on, else the trained one."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    # ------------------------------------------------------------------------------------------------ the step
    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """One GAN step on a batch, ``step`` steps into the run; returns the (detached) loss terms of
        :data:`LOSS_KEYS`."""
        w = self.cfg.loss
        w_adv = self.adv_weight(step)
        self.set_learning_rates(step)
        dev = self.device
        feats = batch["features"].to(dev, non_blocking=True)
        kp = batch["keypoints"].to(dev, non_blocking=True)
        ref = batch["reference"].to(dev, non_blocking=True)
        mask = batch["mask"].to(dev, non_blocking=True) if "mask" in batch else None
        with self.precision.autocast():
            out = self.gan_forward(feats, ref, kp)
        pred = out["pred"].float()
        # the discriminator sees a short clip's padding as the same (real) frames on both sides: nothing to learn there
        fake = out["pred"] if mask is None else kp.to(out["pred"].dtype) + (out["pred"] - kp) * mask[..., None]
        loss_d = self._discriminator_step(kp, fake)

        lip_w = batch["lip_weight"].to(dev) if "lip_weight" in batch else None
        loss_reg, loss_mouth, loss_sync, loss_adv, loss_pg, loss_pp = self._generator_terms(
            out, pred, fake, kp, mask, lip_w, w_adv
        )
        total = (
            w.reg * loss_reg
            + w.mouth * loss_mouth
            + w.sync * loss_sync
            + w_adv * loss_adv
            + w.piv_gen * loss_pg
            + w.piv_piv * loss_pp
        )
        self._generator_step(total)
        self.update_ema(step)
        # L_Gen as the paper defines it (the generator's objective), for logging
        loss_g = w.reg * loss_reg + w.mouth * loss_mouth + w.sync * loss_sync + w_adv * loss_adv + w.piv_gen * loss_pg
        terms = (loss_g, loss_reg, loss_mouth, loss_sync, loss_adv, loss_pg, loss_pp, loss_d)
        return {k: v.detach() for k, v in zip(LOSS_KEYS, terms)}

    def _discriminator_step(self, kp: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """L_D on ``[y, y_hat.detach()]`` and one update of the discriminator; returns L_D (0 without one)."""
        if self.disc is None:
            return torch.zeros((), device=self.device)
        opt, scaler = self.optimizers["d"], self.precision.scalers["d"]
        with self.precision.autocast():
            scores = self.disc_forward(torch.cat([kp, fake.detach().float()], 0)).float()
        loss_d = self.cfg.loss.d * discriminator_loss(scores[: len(kp)], scores[len(kp) :])
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss_d).backward()
        self._clip("d", self.disc.parameters())
        scaler.step(opt)
        scaler.update()
        return loss_d

    def _generator_terms(self, out, pred, fake, kp, mask, lip_w, w_adv) -> tuple[torch.Tensor, ...]:
        """``(L_Reg, L_Mouth, L_Sync, L_Adv, L_PIV-Gen, L_PIV-PIV)``; a term whose weight is 0 is not computed."""
        w = self.cfg.loss
        zero = torch.zeros((), device=self.device)
        loss_reg = reg_loss(pred, kp, mask)
        loss_mouth = self._mouth_loss(pred, kp, mask, lip_w) if w.mouth else zero
        loss_sync = zero
        if w.sync:
            mean, std = self.norm_stats
            loss_sync = sync_loss(
                mouth_opening(pred, mean, std), mouth_opening(kp, mean, std), weights=lip_w, mask=mask
            )
        loss_adv = loss_pg = loss_pp = zero
        if self.disc is not None and w_adv > 0:
            with self.precision.autocast():
                scores_fake = torch.func.functional_call(self.disc, frozen(self.disc), (fake,)).float()
            loss_adv = adversarial_loss(scores_fake)
        if "e_ref" in out:
            loss_pg = piv_gen_loss(out["e_ref_fixed"].float(), out["e_pred_fixed"].float(), mask)
            loss_pp = piv_triplet_loss(
                out["e_ref"].float(), out["e_pos"].float(), out["e_neg"].float(), w.triplet_margin, mask
            )
        return loss_reg, loss_mouth, loss_sync, loss_adv, loss_pg, loss_pp

    def _mouth_loss(self, pred, kp, mask, lip_w) -> torch.Tensor:
        """L1 of the mouth points, in the image frame or relative to the nose tip (``loss.mouth_frame``)."""
        if self.cfg.loss.mouth_frame == "nose":
            mean, std = self.norm_stats
            err = (nose_relative_mouth(pred, mean, std) - nose_relative_mouth(kp, mean, std)).abs().flatten(2)
        else:
            err = (pred[..., MOUTH] - kp[..., MOUTH]).abs()
        per_window = err.mean((1, 2)) if mask is None else window_mean(err.mean(2), mask)
        return weighted_mean(per_window, lip_w)

    def _generator_step(self, total: torch.Tensor) -> None:
        """One backward of the generator / PIV-encoder objective and one update of each."""
        opts = [self.optimizers[n] for n in ("g", "e") if n in self.optimizers]
        scaler = self.precision.scalers["g"]
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        if self.cfg.optim.grad_clip:
            for n in ("g", "e"):
                if n in self.optimizers:
                    self._clip(n, [p for gr in self.optimizers[n].param_groups for p in gr["params"]])
        for opt in opts:
            scaler.step(opt)
        scaler.update()

    def _clip(self, name: str, params) -> None:
        if self.cfg.optim.grad_clip:
            self.precision.scalers["d" if name == "d" else "g"].unscale_(self.optimizers[name])
            torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)

    # ------------------------------------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self, val_set, env) -> float | None:
        """The ``val_metric`` over ``val_set``'s windows (lower is better): mean L1 in the normalised keypoint space
        (the paper's "Avg. L1"), the mouth points' L1, or ``lip_sync``: 1 - the correlation of predicted and real
        mouth opening (inner-lip gap 62-66) over each validation clip (its windows in order, best lag within +-3
        frames, as ``a2k eval`` measures lip sync), averaged over clips. ``env``: the processes that share the work."""
        if val_set is None:
            return None
        gen = self.eval_generator
        gen.eval()
        sync = self.cfg.val_metric == "lip_sync"
        # lip_sync needs whole clips: every rank evaluates every window (validation sets are small)
        ranks = 1 if sync else env.world_size
        idx = list(range(0 if sync else env.rank, len(val_set), ranks))
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # |err| all, count, |err| mouth, count
        mean, std = self.norm_stats
        openings: dict[int, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
        for i in range(0, len(idx), self.cfg.batch_size):
            chunk = idx[i : i + self.cfg.batch_size]
            batch = collate(val_set.__getitems__(chunk))
            with self.precision.autocast():
                pred = gen(batch["features"].to(self.device), batch["reference"].to(self.device))
            kp = batch["keypoints"].to(self.device)
            pred = pred.float()
            m = batch["mask"].to(self.device)[..., None] if "mask" in batch else torch.ones_like(kp[..., :1])
            err = (pred - kp).abs() * m
            sums[0] += err.sum().double()
            sums[1] += m.sum().double() * kp.shape[-1]
            sums[2] += err[..., MOUTH].sum().double()
            sums[3] += m.sum().double() * (MOUTH.stop - MOUTH.start)
            if sync:
                po, ro = mouth_opening(pred, mean, std), mouth_opening(kp, mean, std)
                for k, j in enumerate(chunk):
                    ci, start = val_set.index[j]
                    openings.setdefault(ci, []).append(
                        (start, po[k, : val_set.lengths[j]], ro[k, : val_set.lengths[j]])
                    )
        if env.distributed and not sync:
            dist.all_reduce(sums)
        if gen is self.generator:
            gen.train()
        if self.cfg.val_metric == "mouth_l1":
            return float(sums[2] / sums[3].clamp_min(1))
        if sync:
            return lip_sync_metric(openings)
        return float(sums[0] / sums[1].clamp_min(1))

    # ------------------------------------------------------------------------------------------------ state
    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """What resuming needs beyond the saved weights: the discriminator's, the raw generator's (when the saved
        ones are the average) and the optimisers' tensors, and the optimisers' JSON-able rest."""
        tensors: dict[str, torch.Tensor] = {}
        if self.disc is not None:
            tensors.update({f"disc.{k}": v for k, v in self.disc.state_dict().items()})
        if self.ema_generator is not None:  # model.safetensors holds the average; the raw weights go on training
            tensors.update({f"raw.{k}": v for k, v in self.generator.state_dict().items()})
        opt_meta = {n: flatten_optimizer(o.state_dict(), f"opt_{n}", tensors) for n, o in self.optimizers.items()}
        return tensors, opt_meta

    def load_state_tensors(self, opt_meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """The inverse of :meth:`state_tensors` (the saved weights are loaded into :attr:`eval_generator` apart)."""
        if self.ema_generator is not None:
            self.generator.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("raw.")})
        if self.disc is not None:
            self.disc.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("disc.")})
        for n, opt in self.optimizers.items():
            opt.load_state_dict(unflatten_optimizer(opt_meta[n], tensors))


def model_encoders(model_cfg, catalog) -> dict[str, Any]:
    """The keypoint-encoder components ``model.pv_encoder`` / ``model.piv_encoder`` name (None where null), built
    through the host's ``catalog``: the parts :func:`~a2k_toolkit.models.config.build_generator` takes."""
    parts = {}
    for key in ENCODER_FIELDS:
        spec = getattr(model_cfg, key)
        parts[key] = (
            None if spec is None else catalog.build("encoder", spec, where=f"model.{key}", what="training config")
        )
    return parts


def lip_sync_metric(openings: dict[int, list[tuple[int, torch.Tensor, torch.Tensor]]]) -> float | None:
    """1 - the mean over clips of the best-lag (+-3 frames) correlation of predicted and real mouth opening, each
    clip's ``(start, predicted, real)`` window parts put in order first; None without clips."""
    corrs = []
    for parts in openings.values():
        parts.sort(key=lambda t: t[0])
        x = torch.cat([p for _, p, _ in parts]).cpu().numpy()
        y = torch.cat([r for _, _, r in parts]).cpu().numpy()
        corrs.append(best_lag_correlation(x, y, max_lag=3)[0])
    return 1.0 - float(np.mean(corrs)) if corrs else None
