"""Pipeline configuration: ``{name, params}`` per slot, validated in two steps.

1. :class:`PipelineConfig` checks the shape (slots, names, unknown keys).
2. :func:`validate_components` checks each slot's ``params`` with the chosen component's own ``Params``.

Both run before anything is built, and errors point at the key: ``renderer.params.size: ...``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .catalog import Catalog

# config slot -> component kind
SLOTS: dict[str, str] = {
    "audio": "audio",
    "speech": "speech",
    "detector": "detector",
    "generator": "generator",
    "renderer": "renderer",
}


class ComponentSpec(BaseModel):
    """One slot: a registered component name and its parameters. A bare string is shorthand for ``{name: ...}``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        return value


class PipelineConfig(BaseModel):
    """What a :class:`~a2k_toolkit.Pipeline` is built from."""

    model_config = ConfigDict(extra="forbid")

    audio: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="logmel"))
    speech: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(name="espeak"),
        description="text-to-speech source used when the input is text",
    )
    detector: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="dlib"))
    generator: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="audio2keypoint"))
    renderer: ComponentSpec | None = Field(default_factory=lambda: ComponentSpec(name="warp"))
    device: str = Field("auto", description="'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:1', 'mps', ...")
    seed: int | None = Field(0, description="seed for stochastic generators; null for a fresh one each call")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        head = v.split(":")[0]
        if head not in {"auto", "cpu", "cuda", "mps", "xpu"}:
            raise ValueError(f"unknown device {v!r}; use auto, cpu, cuda, cuda:N, mps or xpu")
        return v


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """``slot.params.key: message`` lines from a pydantic error."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        loc = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not a parameter of this component; check the spelling or the component's docs)"
        lines.append(f"{loc}: {msg}")
    return "; ".join(lines)


def read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text("utf-8")
    ext = path.suffix.lower()
    try:
        if ext in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif ext == ".json":
            data = json.loads(text)
        elif ext == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        else:
            raise ConfigError(f"unsupported config file type {ext!r} for {path}; use .yaml, .yml, .json or .toml")
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - parser errors differ per format
        raise ConfigError(f"cannot parse config file {path}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must contain a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(source: PipelineConfig | dict[str, Any] | str | Path | None = None) -> PipelineConfig:
    """A :class:`PipelineConfig` from a model, a dict, or a YAML / JSON / TOML file (checks the shape only)."""
    if isinstance(source, PipelineConfig):
        return source
    if source is None:
        data: dict[str, Any] = {}
        where = "config"
    elif isinstance(source, dict):
        data, where = source, "config"
    else:
        path = Path(source)
        data, where = read_config_file(path), str(path)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {where}: {format_validation_error(exc)}") from None


def validate_components(config: PipelineConfig, catalog: Catalog) -> dict[str, BaseModel]:
    """Check every slot's component name and params; return the validated ``Params`` per slot."""
    validated: dict[str, BaseModel] = {}
    for slot, kind in SLOTS.items():
        spec = getattr(config, slot)
        if spec is None:
            continue
        cls = catalog.get(kind, spec.name)
        try:
            validated[slot] = cls.Params.model_validate(spec.params)
        except ValidationError as exc:
            raise ConfigError(f"invalid config: {format_validation_error(exc, f'{slot}.params')}") from None
    return validated


def check_paths(params: dict[str, BaseModel]) -> None:
    """Refuse validated slot params (from :func:`validate_components`) naming a file or directory that does not exist
    (the parameters components declare with :func:`~a2k_toolkit.components.path_field`, e.g. a checkpoint)."""
    from .components import param_paths

    missing = []
    for slot, p in params.items():
        for key, value in param_paths(p):
            if not Path(value).expanduser().exists():
                missing.append(f"{slot}.params.{key}: {value} not found")
    if missing:
        raise ConfigError(
            f"invalid config: {'; '.join(missing)}; check the spelling, or give the path from the "
            f"current directory ({Path.cwd()}), which is where relative paths are read from"
        )


def config_schema() -> dict[str, Any]:
    """JSON schema of the pipeline config."""
    return PipelineConfig.model_json_schema()
