"""Pipeline configuration: ``{name, params}`` per slot, validated in two steps.

1. :class:`PipelineConfig` checks the shape (slots, names, unknown keys).
2. :func:`validate_components` checks each slot's ``params`` with the chosen component's own ``Params``, and the
   params of every component nested in them (a typed :class:`ComponentSpec` param, such as a renderer's panels or
   a front-end's members), recursively.

Both run before anything is built, and errors point at the key: ``renderer.params.size: ...``,
``renderer.params.panels[1].params.size: ...``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .errors import ConfigError, UnknownComponentError

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

#: what a spec names when no front-end is set and the generator declares none
DEFAULT_FRONTEND = "logmel"


class ComponentSpec(BaseModel):
    """One slot: a registered component name and its parameters. A bare string is shorthand for ``{name: ...}``.

    The typed subclasses (:class:`AudioSpec`, :class:`EncoderSpec`, :class:`RendererSpec`, ...; or
    ``ComponentSpec.of(kind)``) say which kind of component they name. A component's ``Params`` that hold one (or a
    list of them, or an optional one) declare a nested component: :func:`validate_components` checks its params
    with the rest of the config, and the host's catalog builds it (``catalog.build(kind, spec)``).
    """

    model_config = ConfigDict(extra="forbid")

    #: the component kind this spec names ("" for an untyped spec, which is not checked as a nested component)
    kind: ClassVar[str] = ""

    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    # the component's validated Params, kept by validate_spec so that building does not validate them again
    _checked: BaseModel | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, ComponentSpec) and not isinstance(value, cls):  # another spec type: same content
            return {"name": value.name, "params": value.params}
        return value

    @classmethod
    def of(cls, kind: str) -> type[ComponentSpec]:
        """The spec type naming a component of ``kind`` (``"audio"``, ``"encoder"``, ``"renderer"``, ...)."""
        try:
            return SPEC_TYPES[kind]
        except KeyError:
            raise KeyError(f"unknown component kind {kind!r}; kinds: {', '.join(SPEC_TYPES)}") from None

    def names_component(self) -> bool:
        """Whether this spec names a registered component of its ``kind`` (a typed spec does; a subclass may keep a
        name for something else, e.g. the side-by-side renderer's ``reference`` panel)."""
        return bool(self.kind)

    @property
    def checked_params(self) -> BaseModel | None:
        """The component's validated ``Params`` once :func:`validate_spec` has checked this spec, else None."""
        return self._checked

    def __eq__(self, other: object) -> bool:  # the content, whatever the spec type and whether checked yet
        if not isinstance(other, ComponentSpec):
            return NotImplemented
        return self.name == other.name and self.params == other.params

    __hash__ = None  # type: ignore[assignment]  # mutable, like the base model


class AudioSpec(ComponentSpec):
    """An audio front-end: ``{name, params}``."""

    kind = "audio"


class SpeechSpec(ComponentSpec):
    """A speech synthesizer: ``{name, params}``."""

    kind = "speech"


class DetectorSpec(ComponentSpec):
    """A keypoint detector: ``{name, params}``."""

    kind = "detector"


class EncoderSpec(ComponentSpec):
    """A keypoint encoder: ``{name, params}``."""

    kind = "encoder"


class GeneratorSpec(ComponentSpec):
    """A keypoint generator: ``{name, params}``."""

    kind = "generator"


class RendererSpec(ComponentSpec):
    """A renderer: ``{name, params}``."""

    kind = "renderer"


SPEC_TYPES: dict[str, type[ComponentSpec]] = {
    t.kind: t for t in (AudioSpec, SpeechSpec, DetectorSpec, EncoderSpec, GeneratorSpec, RendererSpec)
}


class PoseConfig(BaseModel):
    """Head pose taken from a reference (:mod:`a2k_toolkit.pose`): ``{source, loop, format}``; a bare string is
    shorthand for ``{source: ...}``."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        min_length=1,
        description="a video (its faces found by the pipeline's detector) or a keypoint file or folder in any format "
        "`a2k convert --list` reads; relative paths are read from the current directory",
    )
    loop: bool = Field(
        True,
        description="a source shorter than the speech plays forwards and backwards (ping-pong) until the speech ends; "
        "false: it holds its last pose. A longer source is cut to the speech's length either way",
    )
    format: str | None = Field(None, description="the keypoint file's format when its extension does not say it")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, (str, Path)):
            return {"source": str(value)}
        return value


class PipelineConfig(BaseModel):
    """What a :class:`~a2k_toolkit.Pipeline` is built from."""

    model_config = ConfigDict(extra="forbid")

    audio: AudioSpec | None = Field(
        None,
        description="audio front-end; unset (null): the one the generator declares (a checkpoint's own front-end), "
        f"else {DEFAULT_FRONTEND}",
    )
    speech: SpeechSpec = Field(
        default_factory=lambda: SpeechSpec(name="espeak"),
        description="text-to-speech source used when the input is text",
    )
    detector: DetectorSpec = Field(default_factory=lambda: DetectorSpec(name="dlib"))
    generator: GeneratorSpec = Field(default_factory=lambda: GeneratorSpec(name="audio2keypoint"))
    renderer: RendererSpec | None = Field(default_factory=lambda: RendererSpec(name="warp"))
    pose: PoseConfig | None = Field(
        None,
        description="head pose from a reference video or keypoint file, re-targeted to the photo's face, replacing the "
        "generator's own head motion (the lips still follow the speech); null = the generator's head motion",
    )
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


def validate_spec(
    spec: ComponentSpec, catalog: Catalog, where: str, *, kind: str | None = None, what: str = "config"
) -> BaseModel:
    """The validated ``Params`` of the component ``spec`` names (of ``kind``, default the spec's own), after checking
    every component spec nested in them too, recursively. Errors name the key path from ``where``
    (``renderer.params.panels[1].params.size: ...``) and say what was invalid (``what``: "config", or e.g. a
    checkpoint). The result is kept on the spec, so checking it again, or building it, does not validate again."""
    if spec.checked_params is not None:
        return spec.checked_params
    kind = kind or spec.kind
    try:
        cls = catalog.get(kind, spec.name)
    except UnknownComponentError as exc:
        if "." in where or "[" in where:  # a nested spec: say where it is (a slot's message names it already)
            exc.args = (f"invalid {what}: {where}.name: {exc.args[0]}",)
        raise
    try:
        params = cls.Params.model_validate(spec.params)
    except ValidationError as exc:
        raise ConfigError(f"invalid {what}: {format_validation_error(exc, f'{where}.params')}") from None
    validate_nested(params, catalog, f"{where}.params", what=what)
    spec._checked = params
    return params


def nested_specs(model: BaseModel, where: str = "") -> Iterator[tuple[str, ComponentSpec]]:
    """``(key path, spec)`` of every typed :class:`ComponentSpec` among ``model``'s fields: directly, in lists and
    tuples, or inside nested models (not inside another spec's params: those belong to that component)."""

    def walk(value: Any, path: str) -> Iterator[tuple[str, ComponentSpec]]:
        if isinstance(value, ComponentSpec):
            if value.names_component():
                yield path, value
        elif isinstance(value, BaseModel):
            for key in type(value).model_fields:
                yield from walk(getattr(value, key), f"{path}.{key}" if path else key)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                yield from walk(item, f"{path}[{i}]")

    yield from walk(model, where)


def validate_nested(params: BaseModel, catalog: Catalog, where: str, *, what: str = "config") -> None:
    """Check every component spec nested in validated ``params`` (:func:`validate_spec`; key paths from ``where``)."""
    for path, spec in nested_specs(params, where):
        validate_spec(spec, catalog, path, what=what)


def generator_frontend(config: PipelineConfig, catalog: Catalog) -> AudioSpec:
    """The front-end the pipeline runs: ``config.audio`` when set, else the one the generator declares
    (:meth:`~a2k_toolkit.KeypointGenerator.frontend_spec`, read from its params: a checkpoint's own front-end), else
    ``logmel``."""
    if config.audio is not None:
        return config.audio
    params = validate_spec(config.generator, catalog, "generator", kind="generator")
    declared = catalog.get("generator", config.generator.name).frontend_spec(params, catalog)
    return AudioSpec.model_validate(declared if declared is not None else DEFAULT_FRONTEND)


def with_frontend(config: PipelineConfig, catalog: Catalog) -> PipelineConfig:
    """``config`` with its ``audio`` slot filled in (:func:`generator_frontend`); the same object when it is set."""
    if config.audio is not None:
        return config
    return config.model_copy(update={"audio": generator_frontend(config, catalog)})


def validate_components(config: PipelineConfig, catalog: Catalog) -> dict[str, BaseModel]:
    """Check every slot's component name and params, and every component nested in them; return the validated
    ``Params`` per slot. An unset ``audio`` slot is not in the result: it is the front-end the generator declares,
    which :func:`with_frontend` fills in (reading, for a trained generator, its checkpoint's config; no weights)."""
    validated: dict[str, BaseModel] = {}
    for slot, kind in SLOTS.items():
        spec = getattr(config, slot)
        if spec is not None:
            validated[slot] = validate_spec(spec, catalog, slot, kind=kind)
    return validated


def check_paths(params: dict[str, BaseModel]) -> None:
    """Refuse validated slot params (from :func:`validate_components`), or the params of a component nested in them,
    naming a file or directory that does not exist (the parameters components declare with
    :func:`~a2k_toolkit.components.path_field`, e.g. a checkpoint)."""
    from .components import param_paths

    missing = []
    for slot, p in params.items():
        nested = [(f"{path}.params", s.checked_params) for path, s in nested_specs(p, f"{slot}.params")]
        for where, model in [(f"{slot}.params", p), *nested]:
            for key, value in param_paths(model) if model is not None else ():
                if not Path(value).expanduser().exists():
                    missing.append(f"{where}.{key}: {value} not found")
    if missing:
        raise ConfigError(
            f"invalid config: {'; '.join(missing)}; check the spelling, or give the path from the "
            f"current directory ({Path.cwd()}), which is where relative paths are read from"
        )


def config_schema() -> dict[str, Any]:
    """JSON schema of the pipeline config."""
    return PipelineConfig.model_json_schema()
