"""The GAN training recipe of paper §4.4: losses, :class:`TrainConfig`, the trainer (AMP, DDP, checkpoints, resume).

Inference never imports this package.
"""

from .config import TrainConfig, load_train_config
from .trainer import Trainer, train

__all__ = ["TrainConfig", "Trainer", "load_train_config", "train"]
