"""The training loop: :class:`Trainer` runs a :class:`~.task.GANTask` (paper §4.4) over the config's data.

The task owns what is trained (networks, losses, the G/D/E steps, schedules, EMA, the validation metric); the loop
owns how it runs: the device and the process group (DDP), mixed precision, the data and each epoch's batches,
checkpoints and exact resume (:mod:`.checkpoints`), Ctrl-C / SIGTERM and the metrics log (:mod:`.runtime`). The run
directory's layout is described in :mod:`.checkpoints`.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..catalog import Catalog
from ..config import validate_nested
from ..data.windows import collate
from ..io import atomic_write_text
from ..models.checkpoint import read_checkpoint
from ..models.config import normalize_feature_shape
from . import checkpoints, distributed
from .config import TrainConfig, load_train_config
from .datasets import build_frontend, load_training_data
from .precision import Precision
from .runtime import DataWait, GracefulStop, ListBatchSampler, MetricsLog, RunningMeans
from .task import LOSS_KEYS, GANTask


class Trainer:
    """Build everything from a :class:`TrainConfig` (``resume=True`` continues ``run_dir/latest``); :meth:`fit`.

    ``trainer.task`` is the :class:`~.task.GANTask`; its networks and optimisers are also reachable here
    (``generator``, ``ema_generator``, ``disc``, ``optimizers``), and its step and schedules at the current step
    (:meth:`train_step`, :meth:`adv_weight`, :meth:`lr_factor`).
    """

    def __init__(
        self, config: TrainConfig | dict | str | Path, *, resume: bool = False, catalog: Catalog | None = None
    ):
        self.cfg = cfg = load_train_config(config)
        self.catalog = catalog if catalog is not None else Catalog()
        self.run_dir = Path(cfg.run_dir)
        self.latest_dir, self.best_dir = self.run_dir / "latest", self.run_dir / "best"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        resume_from = checkpoints.resume_source(self.run_dir, resume)
        self.env = distributed.setup(cfg.device)
        try:
            self._build(resume_from)
        except BaseException:
            self.env.close()
            raise

    def _build(self, resume_from: Path | None) -> None:
        cfg, env = self.cfg, self.env
        # every component the config names (front-end, detector, encoders), checked before any data or weights load
        validate_nested(cfg, self.catalog, "", what="training config")
        self.device = env.device
        self.precision = Precision(cfg.amp, self.device)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)

        self.frontend = build_frontend(cfg, self.catalog)
        self.feature_shape = normalize_feature_shape(self.frontend.feature_shape)
        info = read_checkpoint(resume_from) if resume_from is not None else None
        if info is not None:
            checkpoints.check_resume_config(cfg, info.meta.get("train_config", {}), self.run_dir)
        data = load_training_data(cfg, self.frontend, info.normalizer if info is not None else None, env, self.catalog)
        self.train_set, self.val_set, self.sampler = data.train_set, data.val_set, data.sampler
        self.normalizer, self.held_out, self.steps_per_epoch = data.normalizer, data.held_out, data.steps_per_epoch

        self.task = GANTask(
            cfg,
            self.feature_shape,
            self.catalog,
            self.device,
            self.precision,
            self.normalizer,
            total_steps=self.total_steps,
            feature_stats=self.train_set.feature_stats() if info is None else None,
        )
        self.task.gan_forward = distributed.wrap(self.task.gan, env)
        if self.task.disc is not None:
            self.task.disc_forward = distributed.wrap(self.task.disc, env)

        self.step = self.epoch = self.batch_in_epoch = 0
        self.best_metric, self.best_step = float("inf"), -1
        if info is not None:
            checkpoints.restore(self, info)

    @property
    def total_steps(self) -> int:
        total = self.cfg.epochs * self.steps_per_epoch
        return min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    # ------------------------------------------------------------------------------------------------ the task
    @property
    def generator(self):
        return self.task.generator

    @property
    def ema_generator(self):
        return self.task.ema_generator

    @ema_generator.setter
    def ema_generator(self, module) -> None:
        self.task.ema_generator = module

    @property
    def eval_generator(self):
        """The generator that is validated and saved: the weight average when ``ema`` is on, else the trained one."""
        return self.task.eval_generator

    @property
    def disc(self):
        return self.task.disc

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.task.optimizers

    @property
    def scalers(self) -> dict[str, torch.amp.GradScaler]:
        return self.precision.scalers

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return self.precision.dtype

    def adv_weight(self, step: int | None = None) -> float:
        """L_Adv's weight at ``step`` (default: the current one); see :meth:`GANTask.adv_weight`."""
        return self.task.adv_weight(self.step if step is None else step)

    def lr_factor(self, step: int | None = None) -> float:
        """The learning-rate multiplier at ``step`` (default: the current one, 0-based)."""
        return self.task.lr_factor(self.step if step is None else step)

    def _set_learning_rates(self) -> None:
        self.task.set_learning_rates(self.step)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One GAN step on a batch at the current step; returns the (detached) loss terms."""
        return self.task.train_step(batch, self.step)

    def validate(self) -> float | None:
        """The ``val_metric`` over the validation windows (lower is better); None without validation windows."""
        return self.task.validate(self.val_set, self.env)

    # ------------------------------------------------------------------------------------------------ data
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This process's batches of training-window indices in ``epoch`` (the sampler's order, full batches)."""
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

    # ------------------------------------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        """Train until ``epochs`` or ``max_steps``; returns a summary. Always releases the process group."""
        try:
            return self._fit()
        finally:
            self.env.close()

    def _fit(self) -> dict[str, Any]:
        cfg, env = self.cfg, self.env
        log = MetricsLog(self.metrics_path, self.step, enabled=env.is_main, tensorboard=cfg.tensorboard)
        if env.is_main:
            import yaml

            text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
            atomic_write_text(self.run_dir / "train_config.yaml", text)
        bar = self._progress_bar()
        meter, data_wait = RunningMeans(LOSS_KEYS, self.device), DataWait()
        last_val = None
        self.generator.train()
        stop = GracefulStop()
        try:
            while self.step < self.total_steps:
                self.train_set.set_epoch(self.epoch)
                loader = self.make_loader(self.epoch_batches(self.epoch)[self.batch_in_epoch :])
                for batch in data_wait(loader):
                    meter.add(self.train_step(batch))
                    self._advance()
                    bar.update(1)
                    done = self.step >= self.total_steps
                    stopping = stop.agreed(env)  # Ctrl-C: log, save and stop at this step boundary
                    save = done or stopping or self.step % cfg.checkpoint_every == 0
                    if done or save or self.step % cfg.log_every == 0:
                        self._log_losses(log, bar, meter, data_wait)
                    if done or self.step % cfg.val_every == 0:
                        last_val = self._validate_and_log(log)
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
        return self._summary(last_val)

    def _progress_bar(self):
        from tqdm.auto import tqdm

        return tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not (self.cfg.progress and self.env.is_main),
            desc=f"train {self.run_dir.name}",
            unit="step",
            dynamic_ncols=True,
        )

    def _advance(self) -> None:
        """One step done: move the step counter and the position in the epoch."""
        self.step += 1
        self.batch_in_epoch += 1
        if self.batch_in_epoch >= self.steps_per_epoch:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def _log_losses(self, log: MetricsLog, bar, meter: RunningMeans, data_wait: DataWait) -> None:
        """A metrics line of the loss terms' means since the last one (over every process), throughput and the
        share of the time spent waiting for data."""
        means = meter.means(self.env)
        elapsed = time.perf_counter() - meter.t0
        rate = meter.count * self.cfg.batch_size * self.env.world_size / elapsed
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
        meter.reset()

    def _validate_and_log(self, log: MetricsLog) -> float | None:
        """Validate; a better value than the best so far updates ``best/`` (not in a fold, where best/ would be
        picked on the held-out people)."""
        val = self.validate()
        if val is not None:
            if val < self.best_metric:
                self.best_metric, self.best_step = val, self.step
                if self.cfg.data.folds is None:
                    self.save_best()
            log.write(
                {
                    "step": self.step,
                    "epoch": self.epoch,
                    "val_metric": self.cfg.val_metric,
                    "val": val,
                    "best_val": self.best_metric,
                }
            )
        return val

    def _summary(self, last_val: float | None) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "val_metric": self.cfg.val_metric,
            "val": last_val,
            "best_val": self.best_metric if self.best_step >= 0 else None,
            "best_step": self.best_step,
            "run_dir": str(self.run_dir),
        }

    # ------------------------------------------------------------------------------------------------ checkpoints
    def checkpoint_meta(self) -> dict[str, Any]:
        return checkpoints.checkpoint_meta(self)

    def save_best(self) -> None:
        checkpoints.save_best(self)

    def save_latest(self) -> None:
        """Weights + everything needed to continue exactly: optimisers, scalers, RNG of every rank, data position."""
        checkpoints.save_latest(self)


def train(config: TrainConfig | dict | str | Path, *, resume: bool = False, **overrides: Any) -> dict[str, Any]:
    """Train from a config (model, dict or file); ``overrides`` replace top-level keys (e.g. ``max_steps``)."""
    cfg = load_train_config(config, **overrides)
    return Trainer(cfg, resume=resume).fit()
