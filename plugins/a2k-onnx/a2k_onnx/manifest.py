"""The exported model directory: ``a2k-onnx.json`` (the manifest) beside one or more ``.onnx`` graphs.

A directory written by ``a2k export --onnx DIR`` holds

* ``generator.onnx`` -- the network of one inference window: ``features (B, W, D)`` float32 (raw front-end
  features, standardised inside the graph) and ``reference (B, 136)`` float32 (the reference frame in the
  normaliser's space) -> ``keypoints (B, W, 136)`` float32 (normalised space); for an ensemble, the mean of its
  members inside the one graph (or, exported with ``--per-member``, one graph per member, ``member-K.onnx``, whose
  outputs the runtime averages in the order listed). ``B`` is a dynamic axis; ``W`` (the window) and ``D`` are fixed;
* ``a2k-onnx.json`` -- everything else inference needs, as plain JSON: the window, the front-end spec the features
  must come from, the keypoint normaliser's statistics, the generator defaults the model was chosen with
  (``overlap``, ``anchor_frames``, ``head_motion``, ``mouth_scale``, ``blink_interval``, ``energy_mouth``,
  ``keep_mouth_shape``, ``mouth_prior``), the SHA-256 and size of each graph, and the measured agreement with PyTorch
  at export time;
* ``mouth_prior.safetensors`` -- the model's mouth prior (a2k_toolkit.mouth_prior: numpy arrays, no pickle), when
  its defaults use one, listed with its SHA-256 and size as the graphs are.

Reading is safe for files from anywhere: the manifest is JSON validated field by field (unknown keys refused), graph
names are plain file names inside the directory, each graph's size and SHA-256 are checked before onnxruntime sees it,
and nothing is unpickled (an ONNX graph is a protobuf; onnxruntime confines any external data to the directory).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from a2k_toolkit import A2KError, CheckpointError, ConfigError, MissingDependencyError, Normalizer
from a2k_toolkit.hashing import sha256_file

MANIFEST_FILE = "a2k-onnx.json"
PRIOR_FILE = "mouth_prior.safetensors"  # the mouth prior, when the defaults use one
FORMAT = "a2k-onnx"
FORMAT_VERSION = 1
INPUT_FEATURES, INPUT_REFERENCE, OUTPUT = "features", "reference", "keypoints"
KP_DIM = 136
EXPORT_HINT = "export one with `a2k export --onnx DIR` (pip install -e plugins/a2k-onnx)"


class OnnxModelError(CheckpointError):
    """An exported model directory that is missing, incomplete, altered or not understood."""


class MissingPackageError(MissingDependencyError):
    """A package this plugin needs for one task is not installed; the message says how to install it."""

    def __init__(self, package: str, purpose: str):
        A2KError.__init__(
            self,
            f"{purpose} needs the package {package!r}, which is not installed; install it with `pip install "
            f"{package}`, or this plugin with all its dependencies: `pip install -e plugins/a2k-onnx`",
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _DirectoryFile(_Strict):
    """A file of the export, checked against its size and SHA-256 before it is read (:func:`verify_file`); its name
    a plain file name inside the directory ending in :attr:`SUFFIX`."""

    SUFFIX: ClassVar[str]
    file: str = Field(description="file name inside the directory")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=1)

    @field_validator("file")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not v.endswith(cls.SUFFIX) or "/" in v or "\\" in v or v.startswith(".") or Path(v).name != v:
            raise ValueError(f"must be a plain {cls.SUFFIX} file name inside the directory, got {v!r}")
        return v


class GraphFile(_DirectoryFile):
    SUFFIX: ClassVar[str] = ".onnx"
    members: list[str] = Field(default_factory=list, description="the checkpoints this graph computes (informative)")


class PriorFile(_DirectoryFile):
    """The mouth prior (safetensors) the defaults' ``mouth_prior`` uses."""

    SUFFIX: ClassVar[str] = ".safetensors"


class FrontendInfo(_Strict):
    name: str
    params: dict[str, Any]
    feature_shape: tuple[int, int]
    fps: float = Field(gt=0)
    sample_rate: int = Field(gt=0)
    log_power: bool = Field(False, description="the front-end's features are log power in dB (the silence gate)")


class Defaults(_Strict):
    overlap: int = Field(ge=0)
    anchor_frames: int = Field(ge=0)
    head_motion: float = Field(ge=0, le=4)
    mouth_scale: float = Field(ge=0, le=3)
    blink_interval: float = Field(ge=0, le=60)
    energy_mouth: float = Field(0.0, ge=0, le=3, description="absent in manifests written before it existed: off")
    keep_mouth_shape: float = Field(0.0, ge=0, le=1, description="absent in manifests written before it existed: off")
    mouth_prior: float = Field(0.0, ge=0, le=2, description="absent in manifests written before it existed: off")


class Manifest(_Strict):
    format: Literal["a2k-onnx"]
    format_version: int = Field(ge=1)
    a2k_version: str = ""
    exporter: str = ""
    opset: int = Field(ge=1)
    torch_version: str = ""
    source: dict[str, Any] = Field(default_factory=dict, description="where the weights came from (informative)")
    window: int = Field(ge=1)
    uses_reference: bool
    frontend: FrontendInfo
    normalizer: dict[str, Any]
    defaults: Defaults
    graphs: list[GraphFile] = Field(min_length=1)
    mouth_prior: PriorFile | None = Field(None, description="the mouth prior the defaults' mouth_prior uses")
    combine: Literal["mean"] = "mean"
    checks: dict[str, Any] = Field(default_factory=dict, description="agreement with PyTorch measured at export")

    @property
    def feature_dim(self) -> int:
        return self.frontend.feature_shape[0] * self.frontend.feature_shape[1]

    @property
    def input_names(self) -> list[str]:
        return [INPUT_FEATURES, INPUT_REFERENCE] if self.uses_reference else [INPUT_FEATURES]

    def keypoint_normalizer(self) -> Normalizer:
        return Normalizer.from_dict(self.normalizer)


def read_manifest(directory: str | Path) -> Manifest:
    """The validated manifest of an exported model directory (no graph is read)."""
    root = Path(directory).expanduser()
    if root.is_file() and (root.name == MANIFEST_FILE or root.suffix == ".onnx"):
        root = root.parent
    if not root.is_dir():
        raise OnnxModelError(f"ONNX model directory {root} not found; {EXPORT_HINT}")
    path = root / MANIFEST_FILE
    if not path.is_file():
        found = sorted(p.name for p in root.glob("*.onnx"))
        what = f" (it holds {', '.join(found[:3])}, but no manifest)" if found else ""
        raise OnnxModelError(
            f"{root} is not an exported a2k model: {MANIFEST_FILE} is missing{what}. The manifest carries the window, "
            f"front-end, normaliser and checksums the graphs need; {EXPORT_HINT}"
        )
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise OnnxModelError(f"cannot read {path}: {exc}; the export is corrupt, {EXPORT_HINT}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise OnnxModelError(f'{path} is not an a2k ONNX manifest (no "format": "{FORMAT}"); {EXPORT_HINT}')
    version = data.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise OnnxModelError(
            f"{path} has format version {version}, newer than this a2k-onnx understands ({FORMAT_VERSION}); "
            "upgrade a2k-onnx"
        )
    try:
        manifest = Manifest.model_validate(data)
        manifest.keypoint_normalizer()  # finite statistics, positive std
    except (ValidationError, A2KError, KeyError, TypeError, ValueError) as exc:
        detail = _first_error(exc)
        raise OnnxModelError(f"{path} is malformed ({detail}); the export is corrupt, {EXPORT_HINT}") from None
    names = [g.file for g in manifest.graphs]
    if len(set(names)) != len(names):
        raise OnnxModelError(f"{path} lists a graph twice ({', '.join(names)}); the export is corrupt")
    return manifest


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(p) for p in err['loc']) or 'manifest'}: {err['msg']}"
    return f"{type(exc).__name__}: {exc}"


def verify_graphs(root: str | Path, manifest: Manifest) -> list[Path]:
    """The graph files of ``manifest``, each checked against its recorded size and SHA-256 (:func:`verify_file`)."""
    return [verify_file(root, g) for g in manifest.graphs]


def verify_file(root: str | Path, entry: _DirectoryFile) -> Path:
    """The file of a manifest entry (a graph's or the mouth prior's), checked against its recorded size and SHA-256
    (missing, a link out of the directory or a mismatch: an :class:`OnnxModelError` naming the file)."""
    root = Path(root).expanduser()
    path = root / entry.file
    if not path.is_file():
        raise OnnxModelError(f"{path} is missing: the export in {root} is incomplete; {EXPORT_HINT}")
    if path.resolve().parent != root.resolve():
        raise OnnxModelError(f"{path} leads outside {root} (a link); an export must hold its files")
    size = path.stat().st_size
    if size != entry.bytes or sha256_file(path) != entry.sha256:
        raise OnnxModelError(
            f"{path} does not match its checksum in {MANIFEST_FILE} (SHA-256"
            f"{'' if size == entry.bytes else f' and size: {size} bytes, recorded {entry.bytes}'}): the file was "
            f"altered or damaged after export. Export the model again; do not run a file you cannot trust"
        )
    return path


def check_overlap(overlap: int, window: int, where: str = "generator.params.overlap") -> None:
    if not 0 <= overlap < window:
        raise ConfigError(f"{where} ({overlap}) must be smaller than the exported model's window ({window} frames)")
