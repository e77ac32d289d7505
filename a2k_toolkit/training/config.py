"""``TrainConfig``: everything ``a2k train`` needs, in one YAML file validated by pydantic.

A config may start with ``base: other.yaml`` (a path relative to the file): that file is loaded first and this one's
keys are merged over it, mapping by mapping, so an ablation config is a few lines over the full one.

The audio front-end is ``audio:``, as in pipeline and eval configs. ``frontend:``, its earlier name, is still read: with
a ``FutureWarning`` naming the file and the fix in a config a user wrote, silently in the training config a
checkpoint stored (``load_train_config(meta["train_config"], stored=True)``), which the user cannot change.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..config import AudioSpec, DetectorSpec, format_validation_error, read_config_file
from ..errors import ConfigError
from ..models.config import ModelConfig

ABLATIONS = ("full", "audio_only", "no_piv", "no_discriminator")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Where the clips come from and how they are cut into windows."""

    train: list[str] = Field(min_length=1, description="video files, clip .npz files, or directories of either")
    val: list[str] = Field(default_factory=list, description="validation clips (same forms); removed from train")
    exclude: list[str] = Field(default_factory=list, description="files to leave out of train (e.g. suspect clips)")
    format: str = Field(
        "auto",
        description="clip source: auto (by extension), videos, clips (.npz from data/clips.save_clip), or a source "
        "registered with a2k_toolkit.training.data.register_clip_source (e.g. the Vox-KP shard reader)",
    )
    cache_dir: str | None = Field(".a2k-cache/clips", description="where clips extracted from videos are cached")
    detector: DetectorSpec = Field(
        default_factory=lambda: DetectorSpec(name="dlib"), description="keypoint detector for video files"
    )
    window: int = Field(64, ge=8, description="frames per training window (64 = 2.56 s at 25 fps, paper §4.5)")
    stride: int = Field(16, ge=1, description="frames between consecutive training windows")
    min_frames: int | None = Field(
        None,
        ge=2,
        description="also train on clips shorter than the window but at least this long: one window each, padded by "
        "repeating the last frame as inference pads, the padding masked out of every loss (None: such clips are not "
        "used)",
    )
    balance: Literal["none", "family", "group"] = Field(
        "none",
        description="draw training windows so that each source family (or each person group) weighs "
        "n_windows ** balance_power instead of n_windows: with power 0 every family counts the same, with 1 every "
        "window (= none); the dataset's family / group metadata (named-column manifests)",
    )
    balance_power: float = Field(0.5, ge=0, le=1, description="see balance")
    val_stride: int | None = Field(None, ge=1, description="frames between validation windows (default: window)")
    min_valid_fraction: float = Field(0.5, ge=0, le=1, description="skip clips with fewer frames with a face")
    normalizer_sequences: int = Field(10_000, ge=1, description="windows used to fit the keypoint statistics")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    lip_min_coupling: float | None = Field(
        None,
        description="Vox-KP only: windows of clips whose lip-audio coupling is below this (or undefined) are trained "
        "without the lip losses (loss.mouth, loss.sync) but with every other term, so their head motion still counts",
    )
    min_coupling: float | None = Field(
        None,
        description="Vox-KP only: leave out training clips whose lip-audio coupling (recorded by the dataset builder) "
        "is below this or undefined, as large corpora are filtered by sync scores",
    )
    folds: int | None = Field(
        None,
        ge=2,
        description="cross-validation by identity: deal the people of data.train into this many folds, validate on "
        "fold `fold` and train on the others (data.val must be empty); `a2k eval --fold FOLD/FOLDS` scores the "
        "held-out people (docs/training.md)",
    )
    fold: int = Field(0, ge=0, description="the held-out fold when `folds` is set (0 .. folds-1)")
    fold_seed: int = Field(0, description="seed of the deal of identities into folds")

    @model_validator(mode="after")
    def _check_folds(self):
        if self.folds is not None:
            if self.fold >= self.folds:
                raise ValueError(f"fold {self.fold} is out of range for {self.folds} folds (0 .. {self.folds - 1})")
            if self.val:
                raise ValueError("with folds, the held-out fold is the validation set: remove data.val")
        return self


class AugmentConfig(_Strict):
    """Random augmentation of training windows (off by default; the paper uses none). Each window draws its own
    parameters from a generator seeded by (seed, epoch, window), so runs and resumes are reproducible."""

    rotate: float = Field(0.0, ge=0, le=45, description="in-plane rotation of the whole window, uniform in +-degrees")
    aspect: float = Field(0.0, ge=0, le=0.5, description="face width / height jitter: x and y scaled by exp(+-a/2)")
    shape: float = Field(
        0.0,
        ge=0,
        le=0.2,
        description="identity jitter: every point moved by one fixed random offset for the whole window (std, in face "
        "sizes), smoothed over neighbouring points; new face shapes with the same motion",
    )
    tempo: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="speaking-rate jitter: the window is cut from (1 +- tempo) x its length of the clip and resampled "
        "to the window length, audio features (per sub-frame) and keypoints alike, so speech and lips stay in sync",
    )
    gain_db: float = Field(0.0, ge=0, le=40, description="audio gain, uniform in +-dB (a shift of the log-mel)")
    noise_snr_db: tuple[float, float] | None = Field(
        None, description="also train on copies of each clip's audio with white noise at an SNR drawn in this range"
    )
    noise_copies: int = Field(2, ge=1, le=8, description="noisy copies per clip (features precomputed once)")
    probability: float = Field(1.0, ge=0, le=1, description="chance that a window is augmented at all")

    @property
    def enabled(self) -> bool:
        return self.probability > 0 and bool(
            self.rotate or self.aspect or self.shape or self.gain_db or self.tempo or self.noise_snr_db
        )


class OptimConfig(_Strict):
    lr_g: float = Field(1e-4, gt=0, description="Adam learning rate of the generator (paper §5.1)")
    lr_e: float = Field(1e-4, gt=0, description="Adam learning rate of the PIV encoder")
    lr_d: float = Field(1e-4, gt=0, description="Adam learning rate of the discriminator")
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(None, gt=0, description="clip each network's gradient norm to this")
    schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="learning-rate schedule of all three networks: constant (the paper), or cosine from the rates "
        "above down to `final_lr_fraction` of them at the last step (epochs x steps per epoch, or max_steps)",
    )
    final_lr_fraction: float = Field(0.1, ge=0, le=1, description="cosine: the last step's fraction of each rate")


class LossConfig(_Strict):
    """Weights of the terms of paper §4.4 (all 1 by default) and the PIV triplet margin."""

    reg: float = Field(1.0, ge=0, description="L_Reg, L1 between generated and ground-truth keypoints")
    adv: float = Field(1.0, ge=0, description="L_Adv, least-squares adversarial loss of the generator / PIV encoder")
    piv_gen: float = Field(1.0, ge=0, description="L_PIV-Gen, PIV code of the reference vs mean code of the output")
    piv_piv: float = Field(1.0, ge=0, description="L_PIV-PIV, the PIV encoder's triplet loss")
    d: float = Field(1.0, ge=0, description="L_D, the discriminator's least-squares loss")
    triplet_margin: float = Field(0.2, ge=0, description="margin of the triplet on RMS code distances")
    mouth: float = Field(
        0.0,
        ge=0,
        description="extra L1 on the 20 mouth points (48-67), added to L_Reg with this weight (0 = the paper's loss); "
        "lip motion is a small part of the keypoints' variance and is what the audio predicts best",
    )
    mouth_frame: Literal["image", "nose"] = Field(
        "image",
        description="coordinates of L_Mouth: image (the mouth points as they are, head pose included) or nose (each "
        "mouth point relative to its frame's nose tip, 30, like the mouth LMD metric: a head turn the audio cannot "
        "predict no longer counts as a mouth error)",
    )
    sync: float = Field(
        0.0,
        ge=0,
        description="weight of L_Sync: per window, 1 - correlation of predicted and real mouth opening (inner-lip "
        "gap 62-66) plus |log(std ratio)| (0 = the paper's loss); counters L1's pull towards a still mouth",
    )
    adv_start: int = Field(0, ge=0, description="steps trained with L_Reg (+ PIV terms) only before L_Adv starts")
    adv_ramp: int = Field(0, ge=0, description="steps over which L_Adv's weight then ramps linearly from 0 to `adv`")
    exact_piv_gradients: bool = Field(
        True,
        description="keep L_PIV-Gen's gradient out of the PIV encoder exactly, at the cost of one extra gradient pass "
        "through the decoder; false skips it and lets L_PIV-Gen reach the encoder through its code at the bottleneck",
    )


class TrainConfig(_Strict):
    run_dir: str = Field("runs/a2k", description="checkpoints (latest/, best/), metrics.jsonl and TensorBoard logs")
    seed: int = 0
    device: str = Field("auto", description="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="mixed precision on CUDA: auto = bf16 where supported, else fp16; off on CPU / MPS"
    )
    ablation: Literal["full", "audio_only", "no_piv", "no_discriminator"] = Field(
        "full",
        description="paper Table 1: full model, audio only (no reference keypoints), no PIV encoder, no "
        "discriminator; removes components from `model`, never adds them",
    )
    audio: AudioSpec = Field(
        default_factory=lambda: AudioSpec(name="logmel"),
        description="the audio front-end the model is trained for (`frontend:` before; still read, with a warning)",
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    val_metric: Literal["l1", "mouth_l1", "lip_sync"] = Field(
        "l1",
        description="what picks best/: l1 (mean L1 of all keypoints, the paper's Avg. L1), mouth_l1 (L1 of the mouth "
        "points) or lip_sync (1 - correlation of predicted and real mouth opening over the validation windows)",
    )
    ema: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="decay of an exponential moving average of the generator's weights (0 = off; e.g. 0.999): "
        "validation, best/ and the weights in latest/ use the average, the raw weights are kept for resuming",
    )
    batch_size: int = Field(32, ge=1, description="windows per step and per process (global: x world size)")
    epochs: int = Field(300, ge=1, description="passes over the training windows (paper §5.1)")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps (before `epochs` if smaller)")
    log_every: int = Field(10, ge=1, description="steps between metric lines")
    val_every: int = Field(500, ge=1, description="steps between validations (and best/ updates)")
    checkpoint_every: int = Field(500, ge=1, description="steps between latest/ checkpoints")
    tensorboard: bool = Field(False, description="also log to run_dir/tensorboard (needs the tensorboard extra)")
    progress: bool = Field(True, description="show a progress bar")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v.split(":")[0] not in {"auto", "cpu", "cuda", "mps"}:
            raise ValueError(f"unknown device {v!r}; use auto, cpu, cuda, cuda:N or mps")
        return v

    @model_validator(mode="after")
    def _check(self):
        if self.data.window % 2**self.model.depth:
            raise ValueError(
                f"data.window ({self.data.window}) must be a multiple of 2**model.depth ({2**self.model.depth})"
            )
        return self

    def effective_model(self) -> ModelConfig:
        """``model`` with the components the ablation removes set to null (``audio_only`` also turns off
        ``residual``, which needs the reference)."""
        m = self.model.model_copy()
        if self.ablation == "audio_only":
            m.pv_encoder = m.piv_encoder = None
            m.residual = False  # no reference to add offsets to: the audio-only model predicts absolute keypoints
        elif self.ablation == "no_piv":
            m.piv_encoder = None
        return m

    @property
    def uses_discriminator(self) -> bool:
        return self.ablation != "no_discriminator"


# earlier key names of TrainConfig fields: old -> new
RENAMED_KEYS = {"frontend": "audio"}


def _renamed(data: dict[str, Any], where: str, *, stored: bool) -> dict[str, Any]:
    """``data`` (one file's keys, or a dict config) with the earlier key names of :data:`RENAMED_KEYS` replaced by
    today's; a warning naming ``where`` and the fix unless the config is one a checkpoint ``stored``."""
    if not any(old in data for old in RENAMED_KEYS):
        return data
    out = dict(data)
    for old, new in RENAMED_KEYS.items():
        if old not in out:
            continue
        if new in out:
            raise ConfigError(f"{where}: both `{new}:` and `{old}:` (its earlier name) are set; keep only `{new}:`")
        out[new] = out.pop(old)
        if not stored:
            warnings.warn(
                f"{where}: the training config key `{old}:` is now `{new}:` (the name pipeline and eval configs use); "
                f"rename it, `{old}:` will stop being read in a later release",
                FutureWarning,
                stacklevel=2,
            )
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_with_base(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"config {path} includes itself through `base`")
    data = _renamed(read_config_file(path), str(path), stored=False)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: `base` must be a path to another config file")
    return _merge(_read_with_base((path.parent / base), (*seen, path)), data)


def load_train_config(
    source: TrainConfig | dict[str, Any] | str | Path, *, stored: bool = False, **overrides: Any
) -> TrainConfig:
    """A validated :class:`TrainConfig` from a model, a dict or a YAML / JSON / TOML file (with ``base:``).

    ``stored=True`` for the training config a checkpoint recorded (``meta["train_config"]``): earlier key names
    (``frontend:``) are read without the warning a config the user wrote gets."""
    if isinstance(source, TrainConfig):
        data = source.model_dump()
        where = "training config"
    elif isinstance(source, dict):
        where = "training config"
        data = _renamed(source, where, stored=stored)
    else:
        path = Path(source)
        data, where = _read_with_base(path), str(path)
    over = _renamed({k: v for k, v in overrides.items() if v is not None}, "training config override", stored=stored)
    data = _merge(data, over)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {where}: {format_validation_error(exc)}") from None
