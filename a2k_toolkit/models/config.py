"""The architecture description (:class:`ModelConfig`) and the builders that turn it into modules.

A ``ModelConfig`` is saved in every checkpoint, so inference rebuilds exactly the trained architecture. The PV and PIV
encoders are keypoint-encoder *components* (``pv``, ``piv`` or any plugin's), named by typed specs
(:class:`~a2k_toolkit.config.EncoderSpec`). This module never looks components up: the host that builds a model (the
``audio2keypoint`` generator, the trainer) builds the encoder components through its catalog
(:func:`a2k_toolkit.builtin.audio2keypoint.model_encoders`) and hands them to :func:`build_generator`.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config import EncoderSpec
from ..errors import ConfigError


class ModelConfig(BaseModel):
    """Architecture of the generator (with its PV / PIV encoders) and of the discriminator."""

    model_config = ConfigDict(extra="forbid")

    width: int = Field(296, ge=4, description="channels of the temporal UNet (296 = the paper-sized ~7.6 M generator)")
    depth: int = Field(4, ge=1, le=6, description="temporal down-sampling levels: bottleneck at T / 2**depth")
    channels_2d: tuple[int, int] = Field((32, 128), description="first and last channel count of the 2D audio stem")
    pv_encoder: EncoderSpec | None = Field(
        default_factory=lambda: EncoderSpec(name="pv"),
        description="pose-variant keypoint encoder; null together with piv_encoder = 'audio only' ablation",
    )
    piv_encoder: EncoderSpec | None = Field(
        default_factory=lambda: EncoderSpec(name="piv"), description="pose-invariant keypoint encoder; null = no PIV"
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
    input_norm: Literal["global", "window"] = Field(
        "global",
        description="how the audio features are centred before the network: global = minus the training features' "
        "mean (the paper's standardisation); window = minus each window's own mean per feature, which removes the "
        "recording's level and channel (its EQ) whatever the voice or microphone (an extension); both then divide by "
        "the training features' std",
    )


ENCODER_FIELDS = ("pv_encoder", "piv_encoder")


def encoder_module(component: Any, where: str, in_dim: int = 136):
    """The ``torch.nn.Module`` of a built keypoint-encoder component (``where``: its key, for errors)."""
    module = component.build(in_dim)
    if not hasattr(module, "out_dim"):
        raise ConfigError(
            f"keypoint encoder {component.name!r} ({where}) built a module without an `out_dim` attribute"
        )
    return module


def build_generator(
    cfg: ModelConfig, feature_shape: tuple[int, ...], catalog=None, *, pv_encoder=None, piv_encoder=None
):
    """The :class:`~a2k_toolkit.models.generator.Audio2KeypointNet` described by ``cfg`` for a front-end's
    ``feature_shape`` (``(S, F)``, or ``(D,)`` meaning ``(1, D)``), from already-built parts: ``pv_encoder`` and
    ``piv_encoder`` are the keypoint-encoder components that ``cfg.pv_encoder`` / ``cfg.piv_encoder`` name, built by
    the host through its catalog: ``build_generator(cfg, shape, **model_encoders(cfg, catalog))`` (see
    :func:`a2k_toolkit.builtin.audio2keypoint.model_encoders`).

    ``catalog`` is deprecated (for callers not yet passing the parts): a host catalog that builds them here."""
    from .generator import Audio2KeypointNet

    parts = {"pv_encoder": pv_encoder, "piv_encoder": piv_encoder}
    if catalog is not None:
        warnings.warn(
            "build_generator(cfg, shape, catalog) is deprecated: build the encoders with the host's catalog and pass "
            "them, build_generator(cfg, shape, **model_encoders(cfg, catalog))",
            DeprecationWarning,
            stacklevel=2,
        )
        for key in ENCODER_FIELDS:
            spec = getattr(cfg, key)
            if parts[key] is None and spec is not None:
                parts[key] = catalog.build("encoder", spec, where=f"model.{key}")
    modules = {}
    for key in ENCODER_FIELDS:
        spec, part = getattr(cfg, key), parts[key]
        if (spec is None) != (part is None):
            given = "an encoder was given" if spec is None else "no encoder was given"
            raise ConfigError(
                f"model.{key} is {'null' if spec is None else repr(spec.name)} but {given} to build_generator; build "
                "the parts the config names with the host's catalog: build_generator(cfg, shape, "
                "**model_encoders(cfg, catalog))"
            )
        modules[key] = None if part is None else encoder_module(part, f"model.{key}")
    pv, piv = modules["pv_encoder"], modules["piv_encoder"]
    shape = normalize_feature_shape(feature_shape)
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
        shape,
        cfg.width,
        cfg.depth,
        tuple(cfg.channels_2d),
        pv=pv,
        piv=piv,
        residual=cfg.residual,
        dropout=cfg.dropout,
        input_norm=cfg.input_norm,
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
