"""The data of a training run, as the loop loads it: the audio front-end, the train / val window sets (with the
cross-validation split) and the sampler that deals the training windows to the processes."""

from __future__ import annotations

from dataclasses import dataclass

from ..components import AudioFrontend
from ..data.folds import family_of, group_of, split_fold
from ..data.windows import ClipWindowDataset
from ..errors import ConfigError
from .config import TrainConfig
from .data import WeightedDistributedSampler, balance_weights, load_clips, validation_files
from .distributed import DistEnv


@dataclass
class TrainingData:
    train_set: ClipWindowDataset
    val_set: ClipWindowDataset | None
    normalizer: object  # the keypoint statistics: fitted on train_set, or the checkpoint's on resume
    held_out: list[str] | None  # the people of the held-out fold (cross-validation), else None
    sampler: object  # DistributedSampler or WeightedDistributedSampler over train_set
    steps_per_epoch: int


def build_frontend(cfg: TrainConfig, catalog) -> AudioFrontend:
    """The config's audio front-end, built through the host's ``catalog``; a ``gain_db`` augmentation needs one
    with ``log_power``."""
    frontend = catalog.build("audio", cfg.audio, where="audio", what="training config")
    if cfg.augment.gain_db and not frontend.log_power:
        qualify = [e.name for e in catalog.entries("audio") if e.cls.log_power]
        raise ConfigError(
            f"augment.gain_db shifts log-power features; the {frontend.name!r} front-end's are "
            f"not (use one of {', '.join(qualify)}, or set gain_db: 0)"
        )
    return frontend


def load_training_data(cfg: TrainConfig, frontend: AudioFrontend, normalizer, env: DistEnv, catalog) -> TrainingData:
    """Clips -> window sets -> sampler. ``normalizer``: the checkpoint's when resuming, else None (fitted here);
    ``catalog``: the host's, which builds the keypoint detector for video files."""
    train_clips, val_clips, held_out = _load_split(cfg, env, catalog)
    d = cfg.data
    train_set = ClipWindowDataset(
        train_clips,
        frontend,
        normalizer,
        d.window,
        d.stride,
        augment=cfg.augment,
        seed=cfg.seed,
        lip_min_coupling=d.lip_min_coupling,
        min_frames=d.min_frames,
    )
    if normalizer is None and len(train_set) == 0:
        raise ConfigError(
            f"no training windows: every clip is shorter than data.window ({d.window} frames) or "
            "has undetected frames; add longer clips or lower data.window"
        )
    normalizer = train_set.normalizer
    val_set = None
    if val_clips:
        val_set = ClipWindowDataset(
            val_clips, frontend, normalizer, d.window, d.val_stride or d.window, min_frames=d.min_frames
        )
        if len(val_set) == 0:
            val_set = None
    steps_per_epoch = len(train_set) // env.world_size // cfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"{len(train_set)} training windows make no full batch of {cfg.batch_size} per process "
            f"({env.world_size} process(es)); lower batch_size or data.stride, or add clips"
        )
    return TrainingData(train_set, val_set, normalizer, held_out, _sampler(cfg, train_set, env), steps_per_epoch)


def training_clips(cfg: TrainConfig, catalog) -> list:
    """The clips a run of ``cfg`` trains on (after data.val, data.exclude and the held-out fold are taken out), in
    one process: what a model fitted beside the network (the mouth prior, ``a2k mouth-prior``) must see, no more."""
    return _load_split(cfg, DistEnv(), catalog)[0]


def _load_split(cfg: TrainConfig, env: DistEnv, catalog):
    """``(train clips, val clips, held-out people or None)``: data.val, or the held-out fold of data.train."""
    if not env.is_main:
        env.barrier()  # let rank 0 extract and cache the clips first
    val_files = validation_files(cfg.data)
    train_clips = load_clips(cfg.data.train, cfg.data, exclude=[*val_files, *cfg.data.exclude], catalog=catalog)
    val_clips = load_clips(cfg.data.val, cfg.data, catalog=catalog) if cfg.data.val else []
    if env.is_main:
        env.barrier()
    held_out = None
    if cfg.data.folds is not None:  # cross-validation: the held-out fold's people are the validation set
        train_clips, val_clips = split_fold(
            train_clips, group_of, cfg.data.fold, cfg.data.folds, cfg.data.fold_seed, family_of
        )
        held_out = sorted({c.identity for c in val_clips})
    if not train_clips:
        raise ConfigError(
            "no usable training clips found in data.train (or every clip has too few frames with a "
            "face, see data.min_valid_fraction)"
        )
    return train_clips, val_clips, held_out


def _sampler(cfg: TrainConfig, train_set: ClipWindowDataset, env: DistEnv):
    """Each process's share of the training windows per epoch: uniform (``data.balance: none``) or weighted by
    family / person group."""
    from torch.utils.data import DistributedSampler

    d = cfg.data
    if d.balance == "none":
        return DistributedSampler(
            train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=cfg.seed, drop_last=True
        )
    unit = family_of if d.balance == "family" else group_of
    units = [unit(train_set.clips[ci]) for ci, _ in train_set.index]
    return WeightedDistributedSampler(balance_weights(units, d.balance_power), env.world_size, env.rank, cfg.seed)
