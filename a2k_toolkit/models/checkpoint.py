"""Checkpoint directories: what inference needs, written atomically, read with clear errors.

A checkpoint is a directory holding

* ``model.safetensors`` -- the generator's weights (with its PV / PIV encoders and the input feature mean / std);
* ``config.json`` -- everything else inference needs: the architecture (:class:`ModelConfig`), the audio front-end's
  name, params and ``feature_shape``, the keypoint :class:`~a2k_toolkit.keypoints.Normalizer` statistics, the window
  length, plus the training step, metrics, the full training config and the SHA-256 of the weights file.

An ensemble directory (``ensemble.json`` and member checkpoints in subdirectories, whose predictions the
generator averages) is read and written by :mod:`a2k_toolkit.models.ensemble`; :func:`resolve_checkpoint` finds
one as it finds a checkpoint (:data:`ENSEMBLE_FILE`).

Training checkpoints (``latest/``) also hold ``training_state.safetensors`` + ``training_state.json`` (discriminator,
optimisers, RNG states, data position); inference ignores them. This module never imports ``a2k_toolkit.training``.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..files import atomic_folder
from ..hashing import sha256_file
from ..keypoints import Normalizer
from .config import ModelConfig, normalize_feature_shape

FORMAT = "a2k-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
ENSEMBLE_FILE = "ensemble.json"
# Default weights shipped with the package (a later release puts a checkpoint here); picked up when present.
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
TRAIN_HINT = (
    "train one with `a2k train configs/train/paper/a2k.yaml` and set the generator's `checkpoint` param to the run "
    "directory (it picks best/, else latest/)"
)


def atomic_dir(target: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """A context manager yielding a fresh temporary directory next to ``target``; on success it replaces ``target``,
    on error it is removed (:func:`~a2k_toolkit.files.atomic_folder`).

    The swap is two renames (``target`` -> ``.target.old``, temporary -> ``target``); if a crash falls between them,
    :func:`resolve_checkpoint` finds ``.target.old``.
    """
    target = Path(target)
    return atomic_folder(target, aside=f".{target.name}.old")


def write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def save_tensors(path: Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """safetensors file of CPU, contiguous copies of ``tensors``, fsynced."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # safetensors writes 0600; give the file a plain open()'s permissions
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_model_files(directory: Path, net, meta: dict[str, Any]) -> None:
    """Write ``model.safetensors`` and ``config.json`` (``meta`` plus format and checksum) into ``directory``."""
    directory = Path(directory)
    save_tensors(directory / WEIGHTS_FILE, net.state_dict(), {"format": FORMAT})
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **meta,
        "files": {WEIGHTS_FILE: {"sha256": sha256_file(directory / WEIGHTS_FILE)}},
    }
    write_json(directory / CONFIG_FILE, data)


def _is_checkpoint(p: Path) -> bool:
    return (p / CONFIG_FILE).is_file()


def _format_version(meta: dict[str, Any], path: Path) -> int:
    try:
        return int(meta.get("format_version", 0))
    except (TypeError, ValueError):
        raise CheckpointError(
            f"{path}: format_version must be an integer, got {meta.get('format_version')!r}; the "
            "file is corrupt or was written by another tool"
        ) from None


def _is_ensemble(p: Path) -> bool:
    return (p / ENSEMBLE_FILE).is_file()


def resolve_checkpoint(path: str | os.PathLike | None) -> Path:
    """The checkpoint directory for ``path``: a checkpoint directory, a run directory (``best/``, else ``latest/``),
    a file inside a checkpoint, or ``None`` for the default weights shipped in ``a2k_toolkit/weights/``."""
    if path is None or str(path) == "":
        if _is_checkpoint(DEFAULT_WEIGHTS_DIR) or _is_ensemble(DEFAULT_WEIGHTS_DIR):
            return DEFAULT_WEIGHTS_DIR
        raise CheckpointError(f"no Audio2Keypoint checkpoint given and no default weights are installed; {TRAIN_HINT}")
    p = Path(path).expanduser()
    if p.is_file() and p.name in (CONFIG_FILE, WEIGHTS_FILE):
        p = p.parent
    if not p.exists():
        old = p.parent / f".{p.name}.old"
        if _is_checkpoint(old) or _is_ensemble(old):  # a crash interrupted the directory swap in atomic_dir
            return old
        raise CheckpointError(f"checkpoint {p} not found; check the path, or {TRAIN_HINT}")
    if _is_checkpoint(p) or _is_ensemble(p):
        return p
    for sub in ("best", "latest"):
        if _is_checkpoint(p / sub):
            return p / sub
        if _is_checkpoint(p / f".{sub}.old"):
            return p / f".{sub}.old"
    raise CheckpointError(
        f"{p} is not a checkpoint: expected {CONFIG_FILE} and {WEIGHTS_FILE} in it (or a run directory with best/ or "
        f"latest/); {TRAIN_HINT}"
    )


@dataclass
class CheckpointInfo:
    """The parsed ``config.json`` of a checkpoint."""

    path: Path
    meta: dict[str, Any]
    model: ModelConfig
    feature_shape: tuple[int, int]
    frontend: dict[str, Any]  # {"name": ..., "params": {...}}
    fps: float
    sample_rate: int
    normalizer: Normalizer
    window: int

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_FILE


def read_checkpoint(path: str | os.PathLike | None) -> CheckpointInfo:
    """Resolve and parse a checkpoint's ``config.json`` (weights are not loaded)."""
    root = resolve_checkpoint(path)
    if _is_ensemble(root) and not _is_checkpoint(root):
        raise CheckpointError(
            f"{root} is an ensemble of checkpoints ({ENSEMBLE_FILE}), not one checkpoint; read it "
            "with read_members, or point at one of its members"
        )
    cfg_path = root / CONFIG_FILE
    try:
        meta = json.loads(cfg_path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read {cfg_path}: {exc}; the checkpoint is corrupt, use another one "
            f"(for example the run's latest/) or {TRAIN_HINT}"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f'{cfg_path} is not an a2k checkpoint config (no "format": "{FORMAT}")')
    if _format_version(meta, cfg_path) > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {root} has format version {meta['format_version']}, newer than this a2k-toolkit understands "
            f"({FORMAT_VERSION}); upgrade a2k-toolkit"
        )
    try:
        fe = meta["frontend"]
        return CheckpointInfo(
            path=root,
            meta=meta,
            model=ModelConfig.model_validate(meta["model"]),
            feature_shape=normalize_feature_shape(fe["feature_shape"]),
            frontend={"name": fe["name"], "params": dict(fe.get("params") or {})},
            fps=float(fe["fps"]),
            sample_rate=int(fe["sample_rate"]),
            normalizer=Normalizer.from_dict(meta["normalizer"]),
            window=int(meta["window"]),
        )
    except Exception as exc:  # noqa: BLE001 - any missing or malformed field
        raise CheckpointError(
            f"checkpoint config {cfg_path} is incomplete or malformed ({type(exc).__name__}: {exc}); the checkpoint "
            "is corrupt or was written by another tool"
        ) from None


def load_generator(info: CheckpointInfo, device: str = "cpu", catalog=None, verify: bool = True, *, encoders=None):
    """Build the checkpoint's generator from its parts and load its weights (checksum verified), in eval mode on
    ``device``. ``encoders``: the encoder components its model names, built by the host
    (``model_encoders(info.model, catalog)`` in :mod:`a2k_toolkit.builtin.audio2keypoint`); ``catalog`` is deprecated
    (see :func:`~a2k_toolkit.models.config.build_generator`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .config import build_generator

    wpath = info.weights_path
    if not wpath.is_file():
        raise CheckpointError(
            f"checkpoint {info.path} has no {WEIGHTS_FILE}; it is incomplete: use another one or {TRAIN_HINT}"
        )
    expected = info.meta.get("files", {}).get(WEIGHTS_FILE, {}).get("sha256")
    if verify and expected and sha256_file(wpath) != expected:
        raise CheckpointError(
            f"{wpath} is corrupt (its SHA-256 does not match the one recorded in {CONFIG_FILE}); restore it from a "
            f"backup, use the run's other checkpoint (best/ or latest/), or {TRAIN_HINT}"
        )
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read weights {wpath}: {exc}; the file is corrupt or truncated") from None
    net = build_generator(info.model, info.feature_shape, catalog, **(encoders or {}))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"weights in {wpath} do not match the architecture in its {CONFIG_FILE} ({' '.join(first[:3])[:400]}); "
            "the checkpoint was edited or mixed from different runs"
        ) from None
    return net.to(device).eval()
