"""The trainer: GAN steps (paper §4.4), AMP, DDP, validation, atomic checkpoints and exact resume.

Layout of ``run_dir``::

    train_config.yaml   the resolved config of the run
    metrics.jsonl       one JSON object per log / validation line
    latest/             last checkpoint: model.safetensors + config.json + training_state.{safetensors,json}
    best/               lowest validation L1 so far: model.safetensors + config.json (weights only)
    tensorboard/        when `tensorboard: true`

Every step: the generator forward (one DDP forward), a discriminator step on ``[y, y_hat.detach()]`` (one DDP
forward), then one backward of the generator / PIV-encoder losses with the freshly updated discriminator held fixed.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from pydantic import ValidationError

from .. import __version__
from ..catalog import Catalog
from ..config import format_validation_error
from ..data.folds import family_of, group_of, split_fold
from ..data.windows import ClipWindowDataset, collate
from ..errors import CheckpointError, ConfigError, require
from ..eval.metrics import best_lag_correlation
from ..io import atomic_write_text
from ..models.checkpoint import atomic_dir, read_checkpoint, resolve_checkpoint, write_model_files
from ..models.config import build_discriminator, build_generator, normalize_feature_shape
from . import distributed
from .config import TrainConfig, load_train_config
from .data import WeightedDistributedSampler, balance_weights, load_clips, validation_files
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
from .state import (
    capture_rng,
    flatten_optimizer,
    load_training_state,
    restore_rng,
    save_training_state,
    unflatten_optimizer,
)

LOSS_KEYS = ("loss_g", "loss_reg", "loss_mouth", "loss_sync", "loss_adv", "loss_piv_gen", "loss_piv_piv", "loss_d")
MOUTH = slice(48 * 2, 68 * 2)  # the mouth points' coordinates in a (.., 136) keypoint vector
# config fields that must not change when a run is resumed
RESUME_FIXED = (
    "seed",
    "ablation",
    "frontend",
    "model",
    "batch_size",
    "ema",
    ("data", "window"),
    ("data", "stride"),
    ("data", "folds"),
    ("data", "fold"),
    ("data", "fold_seed"),
)


class ListBatchSampler:
    """Yields precomputed batches of indices (the rest of an epoch after a resume)."""

    def __init__(self, batches: list[list[int]]):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def amp_settings(amp: str, device: str) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, use a GradScaler)`` for the config's ``amp`` on ``device``."""
    kind = torch.device(device).type
    if amp == "off" or (amp == "auto" and kind != "cuda"):
        return None, False
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "fp16" and kind != "cuda":
        raise ConfigError(f"amp: fp16 needs a CUDA device (training on {device}); use amp: bf16 or off")
    if amp == "bf16" and kind == "mps":
        raise ConfigError("amp: bf16 is not supported on MPS here; use amp: off")
    return (torch.bfloat16 if amp == "bf16" else torch.float16), amp == "fp16"


class Trainer:
    """Build everything from a :class:`TrainConfig` (``resume=True`` continues ``run_dir/latest``); :meth:`fit`."""

    def __init__(
        self, config: TrainConfig | dict | str | Path, *, resume: bool = False, catalog: Catalog | None = None
    ):
        self.cfg = cfg = load_train_config(config)
        self.catalog = catalog if catalog is not None else Catalog()
        self.run_dir = Path(cfg.run_dir)
        self.latest_dir, self.best_dir = self.run_dir / "latest", self.run_dir / "best"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        resume_from = self._check_run_dir(resume)
        self.env = distributed.setup(cfg.device)
        try:
            self._build(resume_from)
        except BaseException:
            self.env.close()
            raise

    # ------------------------------------------------------------------------------------------------ set-up
    def _check_run_dir(self, resume: bool) -> Path | None:
        has_latest = (self.latest_dir / "config.json").is_file() or (self.run_dir / ".latest.old").is_dir()
        if resume:
            if not has_latest:
                raise ConfigError(
                    f"nothing to resume: no checkpoint in {self.latest_dir}; run without --resume to start a new run"
                )
            return resolve_checkpoint(self.latest_dir)
        if has_latest:
            raise ConfigError(
                f"run directory {self.run_dir} already has a checkpoint; pass --resume to continue it, "
                "or set another run_dir"
            )
        return None

    def _build(self, resume_from: Path | None) -> None:
        cfg, env = self.cfg, self.env
        self.device = env.device
        self.amp_dtype, use_scaler = amp_settings(cfg.amp, self.device)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)

        try:
            self.frontend = self.catalog.build("audio", cfg.frontend.name, cfg.frontend.params)
        except ValidationError as exc:
            raise ConfigError(f"invalid training config: {format_validation_error(exc, 'frontend.params')}") from None
        self.feature_shape = normalize_feature_shape(self.frontend.feature_shape)

        info = read_checkpoint(resume_from) if resume_from is not None else None
        if info is not None:
            self._check_resume_config(info.meta.get("train_config", {}))
        self._load_data(info.normalizer if info is not None else None)

        self.model_cfg = cfg.effective_model()
        self.generator = build_generator(self.model_cfg, self.feature_shape, self.catalog).to(self.device)
        if info is None:
            self.generator.set_feature_stats(*self.train_set.feature_stats())
        # the weights validation and checkpoints use: an exponential moving average of the generator's, if `ema`
        self.ema_generator = None
        if cfg.ema > 0:
            self.ema_generator = copy.deepcopy(self.generator).eval().requires_grad_(False)
        self.disc = build_discriminator(self.model_cfg).to(self.device) if cfg.uses_discriminator else None
        self.gan = GANForward(self.generator, cfg.loss.exact_piv_gradients)
        self.gan_ddp, self.disc_ddp = self.gan, self.disc
        if env.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [env.local_rank] if self.device.startswith("cuda") else None
            self.gan_ddp = DDP(self.gan, device_ids=ids)
            if self.disc is not None:
                self.disc_ddp = DDP(self.disc, device_ids=ids)

        o = cfg.optim
        g_params = [p for n, p in self.generator.named_parameters() if not n.startswith("piv.")]
        e_params = list(self.generator.piv.parameters()) if self.generator.piv is not None else []
        kind = torch.device(self.device).type
        # the same Adam update in one fused kernel per optimiser (about 3x faster than the per-tensor loop on CPU)
        fused = {"fused": True} if kind in ("cpu", "cuda") else {}
        adam = {"betas": o.betas, "weight_decay": o.weight_decay, **fused}
        self.optimizers: dict[str, torch.optim.Optimizer] = {"g": torch.optim.Adam(g_params, lr=o.lr_g, **adam)}
        if e_params:
            self.optimizers["e"] = torch.optim.Adam(e_params, lr=o.lr_e, **adam)
        if self.disc is not None:
            self.optimizers["d"] = torch.optim.Adam(self.disc.parameters(), lr=o.lr_d, **adam)
        self.scalers = {
            n: torch.amp.GradScaler(kind if kind == "cuda" else "cpu", enabled=use_scaler) for n in ("g", "d")
        }

        self.step = self.epoch = self.batch_in_epoch = 0
        self.best_metric, self.best_step = math.inf, -1
        if info is not None:
            self._restore(info)

    def _load_data(self, normalizer) -> None:
        cfg, env = self.cfg, self.env
        if not env.is_main:
            env.barrier()  # let rank 0 extract and cache the clips first
        val_files = validation_files(cfg.data)
        train_clips = load_clips(cfg.data.train, cfg.data, exclude=[*val_files, *cfg.data.exclude])
        val_clips = load_clips(cfg.data.val, cfg.data) if cfg.data.val else []
        if env.is_main:
            env.barrier()
        self.held_out: list[str] | None = None
        if cfg.data.folds is not None:  # cross-validation: the held-out fold's people are the validation set
            train_clips, val_clips = split_fold(
                train_clips, group_of, cfg.data.fold, cfg.data.folds, cfg.data.fold_seed, family_of
            )
            self.held_out = sorted({c.identity for c in val_clips})
        if not train_clips:
            raise ConfigError(
                "no usable training clips found in data.train (or every clip has too few frames with a "
                "face, see data.min_valid_fraction)"
            )
        d = cfg.data
        if cfg.augment.gain_db and not self.frontend.log_power:
            qualify = [e.name for e in self.catalog.entries("audio") if e.cls.log_power]
            raise ConfigError(
                f"augment.gain_db shifts log-power features; the {self.frontend.name!r} front-end's are "
                f"not (use one of {', '.join(qualify)}, or set gain_db: 0)"
            )
        self.train_set = ClipWindowDataset(
            train_clips,
            self.frontend,
            normalizer,
            d.window,
            d.stride,
            augment=cfg.augment,
            seed=cfg.seed,
            lip_min_coupling=d.lip_min_coupling,
            min_frames=d.min_frames,
        )
        if normalizer is None and len(self.train_set) == 0:
            raise ConfigError(
                f"no training windows: every clip is shorter than data.window ({d.window} frames) or "
                "has undetected frames; add longer clips or lower data.window"
            )
        self.normalizer = self.train_set.normalizer
        # the keypoint statistics as tensors, for the mouth-opening losses and metrics
        self.norm_stats = tuple(
            torch.as_tensor(v, dtype=torch.float32, device=self.device)
            for v in (self.normalizer.mean, self.normalizer.std)
        )
        self.val_set = (
            ClipWindowDataset(
                val_clips, self.frontend, self.normalizer, d.window, d.val_stride or d.window, min_frames=d.min_frames
            )
            if val_clips
            else None
        )
        if self.val_set is not None and len(self.val_set) == 0:
            self.val_set = None
        per_rank = len(self.train_set) // env.world_size
        self.steps_per_epoch = per_rank // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"{len(self.train_set)} training windows make no full batch of {cfg.batch_size} per process "
                f"({env.world_size} process(es)); lower batch_size or data.stride, or add clips"
            )
        from torch.utils.data import DistributedSampler

        if d.balance == "none":
            self.sampler = DistributedSampler(
                self.train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=cfg.seed, drop_last=True
            )
        else:
            unit = family_of if d.balance == "family" else group_of
            units = [unit(self.train_set.clips[ci]) for ci, _ in self.train_set.index]
            self.sampler = WeightedDistributedSampler(
                balance_weights(units, d.balance_power), env.world_size, env.rank, cfg.seed
            )

    @property
    def total_steps(self) -> int:
        total = self.cfg.epochs * self.steps_per_epoch
        return min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    def _check_resume_config(self, saved: dict[str, Any]) -> None:
        now = self.cfg.model_dump(mode="json")
        try:  # through today's config model: a setting added since the run started compares at its default
            saved = load_train_config(saved).model_dump(mode="json")
        except ConfigError:
            pass  # compare what was recorded
        changed = []
        for key in RESUME_FIXED:
            path = key if isinstance(key, tuple) else (key,)
            a, b = now, saved
            for k in path:
                a, b = (a or {}).get(k), (b or {}).get(k)
            if a != b:
                changed.append(".".join(path))
        if changed:
            raise ConfigError(
                f"cannot resume {self.run_dir}: {', '.join(changed)} changed since the run started; "
                "restore them, or start a new run_dir"
            )

    # ------------------------------------------------------------------------------------------------ training
    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=self.amp_dtype)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        self.sampler.set_epoch(epoch)
        idx = list(self.sampler)
        bs = self.cfg.batch_size
        return [idx[i * bs : (i + 1) * bs] for i in range(len(idx) // bs)]

    def make_loader(self, batches: list[list[int]]):
        """The ``DataLoader`` of :meth:`fit` over ``batches`` of training-window indices: each batch fetched in one
        vectorised call (:meth:`ClipWindowDataset.__getitems__`), ``data.num_workers`` worker processes, pinned
        memory on CUDA."""
        from torch.utils.data import DataLoader

        return DataLoader(
            self.train_set,
            batch_sampler=ListBatchSampler(batches),
            collate_fn=collate,
            num_workers=self.cfg.data.num_workers,
            generator=torch.Generator(),
            pin_memory=self.device.startswith("cuda"),
        )

    def _clip(self, name: str, params) -> None:
        if self.cfg.optim.grad_clip:
            self.scalers["d" if name == "d" else "g"].unscale_(self.optimizers[name])
            torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)

    def adv_weight(self, step: int | None = None) -> float:
        """L_Adv's weight at ``step`` (default: the current one): 0 before ``loss.adv_start``, then a linear ramp over
        ``loss.adv_ramp`` steps to ``loss.adv``."""
        w = self.cfg.loss
        step = self.step if step is None else step
        if step < w.adv_start:
            return 0.0
        if w.adv_ramp <= 0:
            return w.adv
        return w.adv * min(1.0, (step - w.adv_start + 1) / w.adv_ramp)

    def lr_factor(self, step: int | None = None) -> float:
        """The learning-rate multiplier of ``optim.schedule`` at ``step`` (default: the current one, 0-based)."""
        o = self.cfg.optim
        if o.schedule == "constant":
            return 1.0
        step = self.step if step is None else step
        progress = min(1.0, step / max(1, self.total_steps - 1))
        return o.final_lr_fraction + (1.0 - o.final_lr_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _set_learning_rates(self) -> None:
        o, f = self.cfg.optim, self.lr_factor()
        for name, opt in self.optimizers.items():
            base = {"g": o.lr_g, "e": o.lr_e, "d": o.lr_d}[name]
            for group in opt.param_groups:
                group["lr"] = base * f

    @property
    def eval_generator(self):
        """The generator that is validated and saved: the weight average when ``ema`` is on, else the trained one."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def ema_decay(self, step: int | None = None) -> float:
        """The average's decay after ``step`` updates: ``ema`` capped by ``(1 + step) / (10 + step)`` so the early,
        random weights fade out quickly."""
        step = self.step if step is None else step
        return min(self.cfg.ema, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema_generator is None:
            return
        d = self.ema_decay()
        avg = list(self.ema_generator.parameters())
        torch._foreach_lerp_(avg, [p.detach() for p in self.generator.parameters()], 1.0 - d)
        for a, b in zip(self.ema_generator.buffers(), self.generator.buffers()):
            a.copy_(b)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One GAN step on a batch; returns the (detached) loss terms."""
        w = self.cfg.loss
        w_adv = self.adv_weight()
        self._set_learning_rates()
        dev = self.device
        feats = batch["features"].to(dev, non_blocking=True)
        kp = batch["keypoints"].to(dev, non_blocking=True)
        ref = batch["reference"].to(dev, non_blocking=True)
        mask = batch["mask"].to(dev, non_blocking=True) if "mask" in batch else None
        zero = torch.zeros((), device=dev)
        with self.autocast():
            out = self.gan_ddp(feats, ref, kp)
        pred = out["pred"].float()
        # the discriminator sees a short clip's padding as the same (real) frames on both sides: nothing to learn there
        fake = out["pred"] if mask is None else kp.to(out["pred"].dtype) + (out["pred"] - kp) * mask[..., None]

        loss_d = zero
        if self.disc is not None:
            opt = self.optimizers["d"]
            with self.autocast():
                scores = self.disc_ddp(torch.cat([kp, fake.detach().float()], 0)).float()
            loss_d = w.d * discriminator_loss(scores[: len(kp)], scores[len(kp) :])
            opt.zero_grad(set_to_none=True)
            self.scalers["d"].scale(loss_d).backward()
            self._clip("d", self.disc.parameters())
            self.scalers["d"].step(opt)
            self.scalers["d"].update()

        loss_reg = reg_loss(pred, kp, mask)
        lip_w = batch["lip_weight"].to(dev) if "lip_weight" in batch else None
        loss_mouth = zero
        if w.mouth:
            if self.cfg.loss.mouth_frame == "nose":
                mean, std = self.norm_stats
                err = (nose_relative_mouth(pred, mean, std) - nose_relative_mouth(kp, mean, std)).abs().flatten(2)
            else:
                err = (pred[..., MOUTH] - kp[..., MOUTH]).abs()
            per_window = err.mean((1, 2)) if mask is None else window_mean(err.mean(2), mask)
            loss_mouth = weighted_mean(per_window, lip_w)
        loss_sync = zero
        if w.sync:
            mean, std = self.norm_stats
            loss_sync = sync_loss(
                mouth_opening(pred, mean, std), mouth_opening(kp, mean, std), weights=lip_w, mask=mask
            )
        loss_adv = loss_pg = loss_pp = zero
        if self.disc is not None and w_adv > 0:
            with self.autocast():
                scores_fake = torch.func.functional_call(self.disc, frozen(self.disc), (fake,)).float()
            loss_adv = adversarial_loss(scores_fake)
        if "e_ref" in out:
            loss_pg = piv_gen_loss(out["e_ref_fixed"].float(), out["e_pred_fixed"].float(), mask)
            loss_pp = piv_triplet_loss(
                out["e_ref"].float(), out["e_pos"].float(), out["e_neg"].float(), w.triplet_margin, mask
            )
        total = (
            w.reg * loss_reg
            + w.mouth * loss_mouth
            + w.sync * loss_sync
            + w_adv * loss_adv
            + w.piv_gen * loss_pg
            + w.piv_piv * loss_pp
        )
        opts = [self.optimizers[n] for n in ("g", "e") if n in self.optimizers]
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        self.scalers["g"].scale(total).backward()
        if self.cfg.optim.grad_clip:
            for n in ("g", "e"):
                if n in self.optimizers:
                    self._clip(n, [p for gr in self.optimizers[n].param_groups for p in gr["params"]])
        for opt in opts:
            self.scalers["g"].step(opt)
        self.scalers["g"].update()
        self._update_ema()
        # L_Gen as the paper defines it (the generator's objective), for logging
        loss_g = w.reg * loss_reg + w.mouth * loss_mouth + w.sync * loss_sync + w_adv * loss_adv + w.piv_gen * loss_pg
        terms = (loss_g, loss_reg, loss_mouth, loss_sync, loss_adv, loss_pg, loss_pp, loss_d)
        return {k: v.detach() for k, v in zip(LOSS_KEYS, terms)}

    @torch.no_grad()
    def validate(self) -> float | None:
        """The ``val_metric`` over the validation windows (lower is better): mean L1 in the normalised keypoint space
        (the paper's "Avg. L1"), the mouth points' L1, or ``lip_sync``: 1 - the correlation of predicted and real
        mouth opening (inner-lip gap 62-66) over each validation clip (its windows in order, best lag within +-3
        frames, as ``a2k eval`` measures lip sync), averaged over clips."""
        if self.val_set is None:
            return None
        gen = self.eval_generator
        gen.eval()
        sync = self.cfg.val_metric == "lip_sync"
        # lip_sync needs whole clips: every rank evaluates every window (validation sets are small)
        ranks = 1 if sync else self.env.world_size
        idx = list(range(0 if sync else self.env.rank, len(self.val_set), ranks))
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # |err| all, count, |err| mouth, count
        mean, std = self.norm_stats
        openings: dict[int, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
        for i in range(0, len(idx), self.cfg.batch_size):
            chunk = idx[i : i + self.cfg.batch_size]
            batch = collate(self.val_set.__getitems__(chunk))
            with self.autocast():
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
                    ci, start = self.val_set.index[j]
                    n = self.val_set.lengths[j]
                    openings.setdefault(ci, []).append((start, po[k, :n], ro[k, :n]))
        if self.env.distributed and not sync:
            dist.all_reduce(sums)
        if gen is self.generator:
            gen.train()
        if self.cfg.val_metric == "mouth_l1":
            return float(sums[2] / sums[3].clamp_min(1))
        if sync:
            corrs = []
            for parts in openings.values():
                parts.sort(key=lambda t: t[0])
                x = torch.cat([p for _, p, _ in parts]).cpu().numpy()
                y = torch.cat([r for _, _, r in parts]).cpu().numpy()
                corrs.append(best_lag_correlation(x, y, max_lag=3)[0])
            return 1.0 - float(np.mean(corrs)) if corrs else None
        return float(sums[0] / sums[1].clamp_min(1))

    def fit(self) -> dict[str, Any]:
        """Train until ``epochs`` or ``max_steps``; returns a summary. Always releases the process group."""
        try:
            return self._fit()
        finally:
            self.env.close()

    def _fit(self) -> dict[str, Any]:
        from tqdm.auto import tqdm

        cfg, env = self.cfg, self.env
        log = MetricsLog(self.metrics_path, self.step, enabled=env.is_main, tensorboard=cfg.tensorboard)
        if env.is_main:
            import yaml

            atomic_write_text(
                self.run_dir / "train_config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
            )
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not (cfg.progress and env.is_main),
            desc=f"train {self.run_dir.name}",
            unit="step",
            dynamic_ncols=True,
        )
        acc = {k: torch.zeros((), device=self.device) for k in LOSS_KEYS}
        n_acc, t0 = 0, time.perf_counter()
        data_wait = DataWait()
        last_val = None
        self.generator.train()
        stop = GracefulStop()
        try:
            while self.step < self.total_steps:
                self.train_set.set_epoch(self.epoch)
                loader = self.make_loader(self.epoch_batches(self.epoch)[self.batch_in_epoch :])
                for batch in data_wait(loader):
                    losses = self.train_step(batch)
                    for k in LOSS_KEYS:
                        acc[k] += losses[k]
                    n_acc += 1
                    self.step += 1
                    self.batch_in_epoch += 1
                    if self.batch_in_epoch >= self.steps_per_epoch:
                        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    bar.update(1)
                    done = self.step >= self.total_steps
                    stopping = stop.agreed(env)  # Ctrl-C: log, save and stop at this step boundary
                    save = done or stopping or self.step % cfg.checkpoint_every == 0
                    if done or save or self.step % cfg.log_every == 0:
                        means = self._reduce({k: v / n_acc for k, v in acc.items()})
                        elapsed = time.perf_counter() - t0
                        rate = n_acc * cfg.batch_size * env.world_size / elapsed
                        log.write(
                            {
                                "step": self.step,
                                "epoch": self.epoch,
                                **means,
                                "samples_per_s": round(rate, 2),
                                "data_wait_fraction": round(data_wait.take() / elapsed, 4),
                            }
                        )
                        bar.set_postfix(reg=f"{means['loss_reg']:.4f}", d=f"{means['loss_d']:.3f}")
                        acc = {k: torch.zeros((), device=self.device) for k in LOSS_KEYS}
                        n_acc, t0 = 0, time.perf_counter()
                    if done or self.step % cfg.val_every == 0:
                        last_val = self.validate()
                        if last_val is not None:
                            better = last_val < self.best_metric
                            if better:
                                self.best_metric, self.best_step = last_val, self.step
                                if cfg.data.folds is None:  # in a fold, best/ would be picked on the held-out people
                                    self.save_best()
                            log.write(
                                {
                                    "step": self.step,
                                    "epoch": self.epoch,
                                    "val_metric": cfg.val_metric,
                                    "val": last_val,
                                    "best_val": self.best_metric,
                                }
                            )
                    if save:
                        self.save_latest()
                    if stopping:
                        raise KeyboardInterrupt(f"stopped at step {self.step}; continue with --resume")
                    if done:
                        break
        finally:
            stop.restore()
            bar.close()
            log.close()
        return {
            "step": self.step,
            "epoch": self.epoch,
            "val_metric": cfg.val_metric,
            "val": last_val,
            "best_val": self.best_metric if self.best_step >= 0 else None,
            "best_step": self.best_step,
            "run_dir": str(self.run_dir),
        }

    def _reduce(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        t = torch.stack([values[k].float() for k in LOSS_KEYS])
        if self.env.distributed:
            dist.all_reduce(t)
            t /= self.env.world_size
        return {k: float(v) for k, v in zip(LOSS_KEYS, t.tolist())}

    # ----------------------------------------------------------------------------------------- checkpoints
    def checkpoint_meta(self) -> dict[str, Any]:
        fe = self.frontend
        return {
            "a2k_version": __version__,
            "model": self.model_cfg.model_dump(mode="json"),
            "frontend": {
                "name": fe.name,
                "params": fe.params.model_dump(mode="json"),
                "feature_shape": list(self.feature_shape),
                "fps": fe.fps,
                "sample_rate": fe.sample_rate,
            },
            "normalizer": self.normalizer.to_dict(),
            "window": self.cfg.data.window,
            "step": self.step,
            "epoch": self.epoch,
            "metrics": {
                "val_metric": self.cfg.val_metric,
                "best_val": self.best_metric if self.best_step >= 0 else None,
                "best_step": self.best_step,
            },
            "train_config": self.cfg.model_dump(mode="json"),
            # the people this fold held out, so `a2k eval --fold/--folds` can check it scores exactly them
            **(
                {
                    "cross_validation": {
                        "folds": self.cfg.data.folds,
                        "fold": self.cfg.data.fold,
                        "fold_seed": self.cfg.data.fold_seed,
                        "held_out": self.held_out,
                    }
                }
                if self.held_out is not None
                else {}
            ),
        }

    def save_best(self) -> None:
        if self.env.is_main:
            with atomic_dir(self.best_dir) as tmp:
                write_model_files(tmp, self.eval_generator, self.checkpoint_meta())

    def save_latest(self) -> None:
        """Weights + everything needed to continue exactly: optimisers, scalers, RNG of every rank, data position."""
        rng_meta, rng_tensors = capture_rng()
        ranks = [(rng_meta, rng_tensors)]
        if self.env.distributed:
            ranks = [None] * self.env.world_size
            dist.all_gather_object(ranks, (rng_meta, {k: v.cpu() for k, v in rng_tensors.items()}))
        if not self.env.is_main:
            return
        tensors: dict[str, torch.Tensor] = {}
        if self.disc is not None:
            tensors.update({f"disc.{k}": v for k, v in self.disc.state_dict().items()})
        if self.ema_generator is not None:  # model.safetensors holds the average; the raw weights go on training
            tensors.update({f"raw.{k}": v for k, v in self.generator.state_dict().items()})
        opt_meta = {n: flatten_optimizer(o.state_dict(), f"opt_{n}", tensors) for n, o in self.optimizers.items()}
        rng = []
        for r, (m, ts) in enumerate(ranks):
            rng.append(m)
            tensors.update({f"rng.r{r}.{k}": v for k, v in ts.items()})
        meta = {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_metric": self.best_metric if math.isfinite(self.best_metric) else None,
            "best_step": self.best_step,
            "world_size": self.env.world_size,
            "optimizers": opt_meta,
            "scalers": {n: s.state_dict() for n, s in self.scalers.items()},
            "rng": rng,
        }
        with atomic_dir(self.latest_dir) as tmp:
            write_model_files(tmp, self.eval_generator, self.checkpoint_meta())
            save_training_state(tmp, meta, tensors)

    def _restore(self, info) -> None:
        from safetensors.torch import load_file

        try:
            self.eval_generator.load_state_dict(load_file(str(info.weights_path)), strict=True)
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(
                f"cannot load the generator weights of {info.path} ({exc}); the checkpoint is "
                "corrupt or from another model: start a new run_dir"
            ) from None
        meta, tensors = load_training_state(info.path)
        try:
            if self.ema_generator is not None:
                self.generator.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("raw.")})
            if self.disc is not None:
                self.disc.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("disc.")})
            for n, opt in self.optimizers.items():
                opt.load_state_dict(unflatten_optimizer(meta["optimizers"][n], tensors))
            for n, s in self.scalers.items():
                if meta["scalers"].get(n):
                    s.load_state_dict(meta["scalers"][n])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"the training state in {info.path} does not match this model ({exc}); start a new run_dir"
            ) from None
        self.step, self.epoch = int(meta["step"]), int(meta["epoch"])
        self.batch_in_epoch = int(meta["batch_in_epoch"])
        self.best_metric = meta["best_metric"] if meta.get("best_metric") is not None else math.inf
        self.best_step = int(meta.get("best_step", -1))
        same_world = int(meta.get("world_size", 1)) == self.env.world_size
        if not same_world:
            import warnings

            warnings.warn(
                f"resuming a run of {meta.get('world_size')} processes with {self.env.world_size}: "
                "the data order restarts at the current epoch's beginning",
                UserWarning,
                stacklevel=2,
            )
            self.batch_in_epoch = 0
        r = self.env.rank if same_world else 0
        restore_rng(meta["rng"][r], {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"rng.r{r}.")})


class DataWait:
    """Wraps the loader of :meth:`Trainer.fit` and adds up the time spent blocked waiting for the next batch (the
    loader starving training); :meth:`take` returns the sum since the last call and restarts it."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, iterable):
        it = iter(iterable)
        while True:
            t = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - t
            yield item

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


class GracefulStop:
    """First Ctrl-C or SIGTERM (what SLURM, Kubernetes and systemd send): finish the current step, save latest/,
    stop (all ranks agree, so a signal reaching any rank stops every rank); a second one aborts at once."""

    def __init__(self):
        import signal
        import threading

        self.requested = False
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        import signal
        import sys

        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{name}: stopping after this step and saving latest/ (again to abort now)", file=sys.stderr)

    def agreed(self, env) -> bool:
        if not env.distributed:
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=env.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self) -> None:
        import signal

        for sig, previous in self.previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self.previous = {}


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (and TensorBoard scalars); on resume drops lines past the
    checkpoint's step, so the file holds one continuous curve."""

    def __init__(self, path: Path, step: int, enabled: bool = True, tensorboard: bool = False):
        self.path, self.enabled, self.tb = path, enabled, None
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            kept = [ln for ln in path.read_text("utf-8").splitlines() if ln.strip() and _step(ln) <= step]
            atomic_write_text(path, "".join(ln + "\n" for ln in kept))
        if tensorboard:
            require("tensorboard", "tensorboard", "TensorBoard logging (`tensorboard: true`)")
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(path.parent / "tensorboard"), purge_step=step + 1 if step else None)
        self.f = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.f.write(json.dumps({**record, "time": round(time.time(), 3)}) + "\n")
        self.f.flush()
        if self.tb is not None:
            for k, v in record.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.enabled:
            self.f.close()
            if self.tb is not None:
                self.tb.close()


def _step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # a torn last line is dropped


def train(config: TrainConfig | dict | str | Path, *, resume: bool = False, **overrides: Any) -> dict[str, Any]:
    """Train from a config (model, dict or file); ``overrides`` replace top-level keys (e.g. ``max_steps``)."""
    cfg = load_train_config(config, **overrides)
    return Trainer(cfg, resume=resume).fit()
