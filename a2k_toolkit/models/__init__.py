"""Plain ``nn.Module`` architectures of the Audio2Keypoint stage (paper §4), plus checkpoint reading and windowed
inference. Nothing here imports ``a2k_toolkit.training``."""

from .config import ModelConfig, build_discriminator, build_generator, count_parameters

__all__ = ["ModelConfig", "build_discriminator", "build_generator", "count_parameters"]
