"""What to evaluate: named generator entries (label + ``{name, params}``), from a config file and/or the
``--generators`` shorthand. Generators are chosen by registered name only, never by import path.

Config file (YAML, JSON or TOML)::

    entries:
      - static                                  # bare name: label = name, default params
      - label: a2k-final
        generator: {name: audio2keypoint, params: {checkpoint: runs/final}}
      - label: a2k-no-disc
        generator: {name: audio2keypoint, params: {checkpoint: runs/no_disc}}
      - label: "B, seed 1"                      # one seed of a candidate: the report gives the spread over its
        candidate: B                            # seeds (labels "B: seed N" are seeds of B without this key)
        generator: {name: audio2keypoint, params: {checkpoint: runs/b-s1}}
    audio: logmel                               # the audio front-end (default logmel)
    seed: 0
    alpha: 0.02                                 # PCK threshold factor
    max_lag: 3                                  # lag search range of the correlations, frames
    normalizer: stats.json                      # optional L1 statistics (default: fitted on the evaluated GT)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..catalog import Catalog
from ..components import KeypointGenerator
from ..config import ComponentSpec, format_validation_error, read_config_file, validate_spec
from ..errors import ConfigError, InputError
from ..keypoints import Normalizer


class EvalEntry(BaseModel):
    """One row of the report: a label and the generator spec it stands for. A bare string is a generator name."""

    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(None, min_length=1, description="row name in the report (default: from the spec)")
    generator: ComponentSpec
    candidate: str | None = Field(
        None,
        min_length=1,
        description="the candidate this entry is one seed of: the "
        "report gives the spread over each candidate's seeds (default: the label's prefix "
        "before ': seed N', if it has one)",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"generator": {"name": value}}
        return value

    @property
    def display_label(self) -> str:
        if self.label:
            return self.label
        ckpt = self.generator.params.get("checkpoint")
        if not ckpt:
            return self.generator.name

        def short(c) -> str:  # a member run's latest/ or best/ goes by the run's name
            p = Path(str(c))
            return p.parent.name if p.name in ("latest", "best") and p.parent.name else p.name

        if isinstance(ckpt, list):  # an ensemble: its members by run name
            return f"{self.generator.name}:{'+'.join(short(c) for c in ckpt)}"
        return f"{self.generator.name}:{Path(str(ckpt)).name}"


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: list[EvalEntry] = Field(default_factory=list)
    audio: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="logmel"))
    seed: int | None = 0
    alpha: float = Field(0.02, gt=0, lt=1)
    max_lag: int = Field(3, ge=0, le=25)
    normalizer: str | None = Field(None, description="JSON with L1 statistics (Normalizer.to_dict, or a results.json)")


def load_eval_config(path: str | Path | None) -> EvalConfig:
    if path is None:
        return EvalConfig()
    data = read_config_file(Path(path))
    try:
        return EvalConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid eval config {path}: {format_validation_error(exc)}") from None


def parse_generator_specs(items: list[str] | None) -> list[EvalEntry]:
    """``--generators`` values: comma-separated ``NAME`` (default params) or ``NAME:CHECKPOINT`` (sets the
    generator's ``checkpoint`` param). The option may repeat."""
    entries = []
    for item in items or []:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, ckpt = part.partition(":")
            if not name or (sep and not ckpt):
                raise ConfigError(f"bad generator spec {part!r}: use NAME or NAME:CHECKPOINT_DIR, e.g. static")
            params = {"checkpoint": ckpt} if sep else {}
            entries.append(EvalEntry(generator=ComponentSpec(name=name, params=params)))
    return entries


FOLD_FIELD = "{fold}"
# generator params whose paths may name a {fold}: one model (and one mouth prior) per cross-validation fold
FOLD_PARAMS = ("checkpoint", "mouth_prior_file")


def _fold_paths(value):
    return value if isinstance(value, list) else [value]


def uses_fold(entries: list[EvalEntry]) -> bool:
    """Whether any entry's ``checkpoint`` (or ``mouth_prior_file``) names a ``{fold}`` placeholder
    (cross-validation, ``--folds``)."""
    return any(
        FOLD_FIELD in str(path)
        for e in entries
        for key in FOLD_PARAMS
        for path in _fold_paths(e.generator.params.get(key) or [])
    )


def with_fold(entries: list[EvalEntry], fold: int | None) -> list[EvalEntry]:
    """The entries with ``{fold}`` in their ``checkpoint`` (a path, or each path of a list) and
    ``mouth_prior_file`` replaced by ``fold``."""
    if not uses_fold(entries):
        return list(entries)
    if fold is None:
        raise ConfigError(
            "a generator checkpoint contains {fold}, which names one model per cross-validation fold; "
            "evaluate with --folds N (every fold) or --fold I/N"
        )
    out = []
    for e in entries:
        params = dict(e.generator.params)
        for key in FOLD_PARAMS:
            value = params.get(key)
            if value is not None:
                sub = [str(c).replace(FOLD_FIELD, str(fold)) for c in _fold_paths(value)]
                params[key] = sub if isinstance(value, list) else sub[0]
        if params != e.generator.params:
            spec = ComponentSpec(name=e.generator.name, params=params)
            # the label keeps the placeholder-free template name
            e = EvalEntry(label=e.display_label, generator=spec, candidate=e.candidate)
        out.append(e)
    return out


def candidate_map(entries: list[EvalEntry]) -> dict[str, str]:
    """``{label: candidate}`` of the entries that name a ``candidate`` (for :func:`~a2k_toolkit.eval.evaluate`)."""
    return {e.display_label: e.candidate for e in entries if e.candidate}


def build_generators(
    entries: list[EvalEntry], catalog: Catalog, fold: int | None = None
) -> dict[str, KeypointGenerator]:
    """Validate every entry (name, params and every component spec nested in them, unique labels) before building
    any; return ``label -> generator``, each built through ``catalog``, the host's (one per ``a2k eval`` run).
    ``fold`` fills ``{fold}`` placeholders in checkpoint paths (:func:`with_fold`)."""
    entries = with_fold(entries, fold)
    if not entries:
        raise ConfigError("no generators to evaluate: pass --generators static,procedural or a --config with entries")
    checked = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        label = entry.display_label
        if label in seen:
            raise ConfigError(
                f"two generator entries share the label {label!r} (entries {seen[label] + 1} and {i + 1}); give each "
                "a distinct `label` in the --config file"
            )
        seen[label] = i
        cls = catalog.get("generator", entry.generator.name)
        if "checkpoint" in entry.generator.params and "checkpoint" not in cls.Params.model_fields:
            raise ConfigError(
                f"generator {entry.generator.name!r} has no `checkpoint` parameter, so {label!r} cannot name one; use "
                f"`{entry.generator.name}` alone, or set its params in a --config file"
            )
        what = f"generator entry {label!r}"
        validate_spec(entry.generator, catalog, "generator", kind="generator", what=what)  # nested specs too
        checked.append((label, entry.generator, what))
    # through the host's catalog (the build context): a generator's encoders and other parts come from its plugins
    return {label: catalog.build("generator", spec, where="generator", what=what) for label, spec, what in checked}


def load_normalizer(path: str | Path) -> Normalizer:
    """L1 statistics from a JSON file: ``Normalizer.to_dict()`` output, or a previous report's ``results.json``."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"normalisation statistics file not found: {p}")
    try:
        data = json.loads(p.read_text("utf-8"))
        if isinstance(data, dict) and "normalizer" in data:
            data = data["normalizer"]
        return Normalizer.from_dict(data)
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise InputError(
            f"cannot read normalisation statistics from {p} ({exc}); expected JSON with `mean` and `std` lists of "
            "136 numbers (Normalizer.to_dict()), or a results.json written by `a2k eval`"
        ) from None
