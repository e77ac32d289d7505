"""The architecture description (:class:`ModelConfig`) and the builders that turn it into modules.

A ``ModelConfig`` is saved in every checkpoint, so inference rebuilds exactly the trained architecture. The PV and PIV
encoders are keypoint-encoder *components* (``pv``, ``piv`` or any plugin's), looked up by name in the catalog.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import ComponentSpec, format_validation_error
from ..errors import ConfigError


class ModelConfig(BaseModel):
    """Architecture of the generator (with its PV / PIV encoders) and of the discriminator."""

    model_config = ConfigDict(extra="forbid")

    width: int = Field(296, ge=4, description="channels of the temporal UNet (296 = the paper-sized ~7.6 M generator)")
    depth: int = Field(4, ge=1, le=6, description="temporal down-sampling levels: bottleneck at T / 2**depth")
    channels_2d: tuple[int, int] = Field((32, 128), description="first and last channel count of the 2D audio stem")
    pv_encoder: ComponentSpec | None = Field(
        default_factory=lambda: ComponentSpec(name="pv"),
        description="pose-variant keypoint encoder; null together with piv_encoder = 'audio only' ablation",
    )
    piv_encoder: ComponentSpec | None = Field(
        default_factory=lambda: ComponentSpec(name="piv"), description="pose-invariant keypoint encoder; null = no PIV"
    )
    disc_width: int = Field(64, ge=4, description="channels of the discriminator's first layer (training only)")
    disc_layers: int = Field(3, ge=2, le=5, description="convolution layers of the discriminator before its head")
    residual: bool = Field(
        False,
        description="predict offsets from the reference keypoints (output = reference + decoder output, head "
        "initialised to zero) instead of absolute keypoints; keeps the person's face shape by construction, which "
        "matters when training on few identities (an extension of the paper; needs the reference encoders)",
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the decoder's features (regularisation)")


def build_encoder(spec: ComponentSpec, where: str, catalog=None, in_dim: int = 136):
    from ..catalog import Catalog

    catalog = catalog if catalog is not None else Catalog()
    cls = catalog.get("encoder", spec.name)
    try:
        component = cls(spec.params)
    except ValidationError as exc:
        raise ConfigError(f"invalid config: {format_validation_error(exc, f'{where}.params')}") from None
    module = component.build(in_dim)
    if not hasattr(module, "out_dim"):
        raise ConfigError(f"keypoint encoder {spec.name!r} built a module without an `out_dim` attribute")
    return module


def build_generator(cfg: ModelConfig, feature_shape: tuple[int, ...], catalog=None):
    """The :class:`~a2k_toolkit.models.generator.Audio2KeypointNet` described by ``cfg`` for a front-end's
    ``feature_shape`` (``(S, F)``, or ``(D,)`` meaning ``(1, D)``)."""
    from .generator import Audio2KeypointNet

    shape = normalize_feature_shape(feature_shape)
    pv = build_encoder(cfg.pv_encoder, "model.pv_encoder", catalog) if cfg.pv_encoder is not None else None
    piv = build_encoder(cfg.piv_encoder, "model.piv_encoder", catalog) if cfg.piv_encoder is not None else None
    if piv is not None and pv is None:
        raise ConfigError(
            "model.piv_encoder is set but model.pv_encoder is null; the PIV encoder needs the "
            "reference keypoints too: set both, or both null for the 'audio only' model"
        )
    if cfg.residual and pv is None:
        raise ConfigError(
            "model.residual needs the reference keypoints: it cannot be used without model.pv_encoder "
            "(the 'audio only' ablation); set residual: false"
        )
    return Audio2KeypointNet(
        shape, cfg.width, cfg.depth, tuple(cfg.channels_2d), pv=pv, piv=piv, residual=cfg.residual, dropout=cfg.dropout
    )


def build_discriminator(cfg: ModelConfig):
    from .discriminator import PatchDiscriminator

    return PatchDiscriminator(136, cfg.disc_width, cfg.disc_layers)


def normalize_feature_shape(feature_shape: Any) -> tuple[int, int]:
    shape = tuple(int(v) for v in feature_shape)
    if len(shape) == 1:
        shape = (1, shape[0])
    if len(shape) != 2 or min(shape) < 1:
        raise ConfigError(f"the audio front-end's feature_shape must be (sub_frames, values) or (values,), got {shape}")
    return shape


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())
