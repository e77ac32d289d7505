"""The GAN training recipe of paper §4.4: :class:`TrainConfig`, the task (:mod:`.task`: networks, losses, steps,
schedules) and the loop that runs it (:class:`Trainer`: device, DDP, AMP, data, checkpoints, resume, signals).

Inference never imports this package.
"""

from .config import TrainConfig, load_train_config
from .trainer import Trainer, train

__all__ = ["TrainConfig", "Trainer", "load_train_config", "train"]
