"""The settings of a Vox-KP build (:class:`BuildConfig`), read from a file or a dict, and the build folder's
``config.json`` that holds them, so that a resumed build or a merge uses the same extraction settings.

Used by the builder (:mod:`.builder`) and by finalizing and merging (:mod:`.dataset`); imports neither.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..components import KeypointDetector
from ..config import ComponentSpec, format_validation_error
from ..errors import ConfigError
from .layout import Layout


class BuildConfig(BaseModel):
    """Settings of a Vox-KP build. The *extraction* settings (all but ``split``, ``shard_size`` and ``stats_*``)
    must stay the same when a build is resumed; the others only affect packing and may change."""

    model_config = ConfigDict(extra="forbid")

    fps: float = Field(25.0, gt=0, description="frame rate the videos are resampled to")
    sample_rate: int = Field(16000, ge=8000, description="audio sample rate (mono)")
    detector: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="dlib"), description="keypoint detector")
    detect_every: int = Field(1, ge=1, description="run the face detector every N frames, track landmarks between")
    batch_size: int = Field(32, ge=1, description="frames per detector batch (detect_every: 1; GPU batching for fan)")
    max_faces: int = Field(4, ge=1, description="faces followed per video (the main speaker's track is kept)")
    multi_face: Literal["main", "reject"] = Field(
        "main", description="videos showing another face for long: keep the main track, or reject the video"
    )
    max_gap: int = Field(5, ge=0, description="longest run of frames without a face that is interpolated")
    min_frames: int = Field(25, ge=1, description="shortest clip kept (frames); longer gaps split a video")
    min_face: float = Field(40.0, ge=0, description="smallest median face width kept (pixels)")
    silence_db: float = Field(-60.0, description="audio quieter than this (dBFS, RMS) is rejected as silent")
    split: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train/val/test fractions (by identity)")
    shard_size: int = Field(256, ge=1, description="clips per shard")
    stats_window: int = Field(64, ge=2, description="frames per sequence for the normalisation statistics")
    stats_max_sequences: int = Field(10000, ge=1, description="sequences the statistics are fitted on (paper: 10k)")

    @field_validator("split")
    @classmethod
    def _split(cls, v):
        if any(x < 0 for x in v) or sum(v) <= 0:
            raise ValueError("split fractions must be non-negative and not all zero")
        return tuple(float(x) / sum(v) for x in v)

    PACKING_FIELDS: ClassVar[frozenset[str]] = frozenset({"split", "shard_size", "stats_window", "stats_max_sequences"})

    def extraction(self) -> dict[str, Any]:
        """The settings that decide a video's samples (compared when a build resumes)."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in self.PACKING_FIELDS}


def load_build_config(source: str | Path | dict | BuildConfig | None = None, **overrides) -> BuildConfig:
    """A :class:`BuildConfig` from a YAML/JSON/TOML file or a dict, with ``overrides`` (``None`` values ignored)."""
    from ..config import read_config_file

    if isinstance(source, BuildConfig):
        data = source.model_dump()
    elif source is None:
        data = {}
    elif isinstance(source, dict):
        data = dict(source)
    else:
        data = read_config_file(Path(source))
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid build config: {format_validation_error(exc)}") from None


def make_detector(spec: ComponentSpec, plugins=None) -> KeypointDetector:
    """Build (and validate) the detector named by ``spec``."""
    from ..catalog import Catalog

    cls = Catalog(plugins).get("detector", spec.name)
    try:
        return cls(spec.params)
    except ValidationError as exc:
        raise ConfigError(f"invalid build config: {format_validation_error(exc, 'detector.params')}") from None


def check_config(layout: Layout, cfg: BuildConfig, work: dict | None, videos: str | None) -> None:
    """Write ``config.json`` on the first run; on a resume, refuse different extraction settings."""
    from ..io import atomic_write_text

    if layout.config.is_file():
        old = json.loads(layout.config.read_text("utf-8"))
        old_cfg = BuildConfig.model_validate(old["build"])
        if old_cfg.extraction() != cfg.extraction():
            diff = sorted(k for k, v in cfg.extraction().items() if old_cfg.extraction().get(k) != v)
            raise ConfigError(
                f"{layout.root} was built with different settings ({', '.join(diff)}); resume it with the same "
                f"settings (see {layout.config}) or build into a new folder"
            )
        if old.get("work_shard") != work:
            raise ConfigError(
                f"{layout.root} holds work shard {old.get('work_shard')} but this run asks for {work}; give the "
                "same --shard-index/--num-shards, or another output folder"
            )
        if old_cfg == cfg:
            return
    layout.root.mkdir(parents=True, exist_ok=True)
    doc = {"format": "vox-kp", "build": cfg.model_dump(mode="json"), "work_shard": work, "videos": videos}
    atomic_write_text(layout.config, json.dumps(doc, indent=2, sort_keys=True) + "\n")
