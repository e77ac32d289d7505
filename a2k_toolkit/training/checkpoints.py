"""The loop's checkpoints: which run directory may start or resume, the settings a resume must keep, and
``latest/`` (weights + everything needed to continue exactly) and ``best/`` (weights only), written atomically.

Layout of ``run_dir``::

    train_config.yaml   the resolved config of the run
    metrics.jsonl       one JSON object per log / validation line
    latest/             last checkpoint: model.safetensors + config.json + training_state.{safetensors,json}
    best/               lowest validation metric so far: model.safetensors + config.json (weights only)
    tensorboard/        when `tensorboard: true`
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch.distributed as dist

from .. import __version__
from ..errors import CheckpointError, ConfigError
from ..models.checkpoint import atomic_dir, resolve_checkpoint, write_model_files
from .config import RENAMED_KEYS, TrainConfig, load_train_config
from .state import capture_rng, load_training_state, restore_rng, save_training_state

if TYPE_CHECKING:
    from .trainer import Trainer

# config fields that must not change when a run is resumed
RESUME_FIXED = (
    "seed",
    "ablation",
    "audio",
    "model",
    "batch_size",
    "ema",
    ("data", "window"),
    ("data", "stride"),
    ("data", "folds"),
    ("data", "fold"),
    ("data", "fold_seed"),
)


def resume_source(run_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to continue (``resume``), or None for a new run; refuses a new run over a checkpoint and a
    resume without one."""
    latest = run_dir / "latest"
    has_latest = (latest / "config.json").is_file() or (run_dir / ".latest.old").is_dir()
    if resume:
        if not has_latest:
            raise ConfigError(f"nothing to resume: no checkpoint in {latest}; run without --resume to start a new run")
        return resolve_checkpoint(latest)
    if has_latest:
        raise ConfigError(
            f"run directory {run_dir} already has a checkpoint; pass --resume to continue it, or set another run_dir"
        )
    return None


def check_resume_config(cfg: TrainConfig, saved: dict[str, Any], run_dir: Path) -> None:
    """Raise if a :data:`RESUME_FIXED` setting of ``cfg`` differs from the ``saved`` config of the run."""
    now = cfg.model_dump(mode="json")
    try:  # through today's config model: a setting added since the run started compares at its default
        saved = load_train_config(saved, stored=True).model_dump(mode="json")
    except ConfigError:  # compare what was recorded, under today's key names
        saved = {RENAMED_KEYS.get(k, k): v for k, v in saved.items()}
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
            f"cannot resume {run_dir}: {', '.join(changed)} changed since the run started; "
            "restore them, or start a new run_dir"
        )


def checkpoint_meta(tr: Trainer) -> dict[str, Any]:
    """``config.json`` of a checkpoint: model, front-end, statistics, window, position, metrics, training config."""
    fe, cfg = tr.frontend, tr.cfg
    meta = {
        "a2k_version": __version__,
        "model": tr.task.model_cfg.model_dump(mode="json"),
        "frontend": {
            "name": fe.name,
            "params": fe.params.model_dump(mode="json"),
            "feature_shape": list(tr.feature_shape),
            "fps": fe.fps,
            "sample_rate": fe.sample_rate,
        },
        "normalizer": tr.normalizer.to_dict(),
        "window": cfg.data.window,
        "step": tr.step,
        "epoch": tr.epoch,
        "metrics": {
            "val_metric": cfg.val_metric,
            "best_val": tr.best_metric if tr.best_step >= 0 else None,
            "best_step": tr.best_step,
        },
        "train_config": cfg.model_dump(mode="json"),
    }
    if tr.held_out is not None:  # the people this fold held out, so `a2k eval --fold/--folds` scores exactly them
        d = cfg.data
        meta["cross_validation"] = {"folds": d.folds, "fold": d.fold, "fold_seed": d.fold_seed, "held_out": tr.held_out}
    return meta


def save_best(tr: Trainer) -> None:
    if tr.env.is_main:
        with atomic_dir(tr.best_dir) as tmp:
            write_model_files(tmp, tr.eval_generator, checkpoint_meta(tr))


def save_latest(tr: Trainer) -> None:
    """Weights + everything needed to continue exactly: optimisers, scalers, RNG of every rank, data position."""
    rng_meta, rng_tensors = capture_rng()
    ranks = [(rng_meta, rng_tensors)]
    if tr.env.distributed:
        ranks = [None] * tr.env.world_size
        dist.all_gather_object(ranks, (rng_meta, {k: v.cpu() for k, v in rng_tensors.items()}))
    if not tr.env.is_main:
        return
    tensors, opt_meta = tr.task.state_tensors()
    rng = []
    for r, (m, ts) in enumerate(ranks):
        rng.append(m)
        tensors.update({f"rng.r{r}.{k}": v for k, v in ts.items()})
    meta = {
        "step": tr.step,
        "epoch": tr.epoch,
        "batch_in_epoch": tr.batch_in_epoch,
        "best_metric": tr.best_metric if math.isfinite(tr.best_metric) else None,
        "best_step": tr.best_step,
        "world_size": tr.env.world_size,
        "optimizers": opt_meta,
        "scalers": tr.precision.state_dict(),
        "rng": rng,
    }
    with atomic_dir(tr.latest_dir) as tmp:
        write_model_files(tmp, tr.eval_generator, checkpoint_meta(tr))
        save_training_state(tmp, meta, tensors)


def restore(tr: Trainer, info) -> None:
    """Continue from the checkpoint ``info``: weights, training state, position, best metric, RNG."""
    from safetensors.torch import load_file

    try:
        tr.eval_generator.load_state_dict(load_file(str(info.weights_path)), strict=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(
            f"cannot load the generator weights of {info.path} ({exc}); the checkpoint is "
            "corrupt or from another model: start a new run_dir"
        ) from None
    meta, tensors = load_training_state(info.path)
    try:
        tr.task.load_state_tensors(meta["optimizers"], tensors)
        tr.precision.load_state_dict(meta["scalers"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"the training state in {info.path} does not match this model ({exc}); start a new run_dir"
        ) from None
    tr.step, tr.epoch = int(meta["step"]), int(meta["epoch"])
    tr.batch_in_epoch = int(meta["batch_in_epoch"])
    tr.best_metric = meta["best_metric"] if meta.get("best_metric") is not None else math.inf
    tr.best_step = int(meta.get("best_step", -1))
    same_world = int(meta.get("world_size", 1)) == tr.env.world_size
    if not same_world:
        warnings.warn(
            f"resuming a run of {meta.get('world_size')} processes with {tr.env.world_size}: "
            "the data order restarts at the current epoch's beginning",
            UserWarning,
            stacklevel=3,
        )
        tr.batch_in_epoch = 0
    r = tr.env.rank if same_world else 0
    restore_rng(meta["rng"][r], {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"rng.r{r}.")})
