"""Checkpoint directories: what inference needs, written atomically, read with clear errors.

A checkpoint is a directory holding

* ``model.safetensors`` -- the generator's weights (with its PV / PIV encoders and the input feature mean / std);
* ``config.json`` -- everything else inference needs: the architecture (:class:`ModelConfig`), the audio front-end's
  name, params and ``feature_shape``, the keypoint :class:`~a2k_toolkit.keypoints.Normalizer` statistics, the window
  length, plus the training step, metrics, the full training config and the SHA-256 of the weights file.

An **ensemble** is a directory holding ``ensemble.json`` (``{"format": "a2k-ensemble", "members": ["seed0", ...]}``)
and the member checkpoints in the named subdirectories: models of one recipe trained with different seeds, whose
predictions the generator averages (:func:`read_members`, :class:`EnsembleNet`). Members must share the front-end,
window and keypoint statistics, so their outputs live in one normalised space.

Training checkpoints (``latest/``) also hold ``training_state.safetensors`` + ``training_state.json`` (discriminator,
optimisers, RNG states, data position); inference ignores them. This module never imports ``a2k_toolkit.training``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
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
ENSEMBLE_FORMAT = "a2k-ensemble"
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


def load_members(infos: list[CheckpointInfo], device: str = "cpu", catalog=None, verify: bool = True, *, encoders=None):
    """One checkpoint's generator (:func:`load_generator`), or for several an :class:`EnsembleNet` averaging them;
    ``encoders``: one mapping of built encoder components per member (as for :func:`load_generator`)."""
    parts = encoders if encoders is not None else [None] * len(infos)
    nets = [load_generator(info, device, catalog, verify, encoders=e) for info, e in zip(infos, parts)]
    if len(nets) == 1:
        return nets[0]
    from .generator import EnsembleNet

    return EnsembleNet(nets).eval()


def ensemble_members(root: Path) -> list[Path]:
    """The member checkpoint directories listed in ``root/ensemble.json`` (subdirectories of ``root``)."""
    path = root / ENSEMBLE_FILE
    try:
        meta = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}; the ensemble is corrupt") from None
    if not isinstance(meta, dict) or meta.get("format") != ENSEMBLE_FORMAT:
        raise CheckpointError(f'{path} is not an a2k ensemble file (no "format": "{ENSEMBLE_FORMAT}")')
    if _format_version(meta, path) > FORMAT_VERSION:
        raise CheckpointError(
            f"ensemble {root} has format version {meta['format_version']}, newer than this "
            f"a2k-toolkit understands ({FORMAT_VERSION}); upgrade a2k-toolkit"
        )
    names = meta.get("members")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise CheckpointError(f'{path}: "members" must be a non-empty list of subdirectory names')
    members = []
    for name in names:
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise CheckpointError(
                f"{path}: member {name!r} must be a subdirectory of the ensemble (a relative path "
                "without '..'), so the ensemble can be moved as one directory"
            )
        member = root / rel
        if not member.resolve().is_relative_to(root.resolve()):
            raise CheckpointError(
                f"{path}: member {name!r} leads outside the ensemble (through a link); an ensemble "
                "must hold its members, so it can be moved as one directory"
            )
        if not _is_checkpoint(member):
            raise CheckpointError(
                f"{path}: member {name!r} is not a checkpoint ({member / CONFIG_FILE} is missing); "
                "the ensemble is incomplete"
            )
        members.append(member)
    return members


def read_members(path: str | os.PathLike | list | tuple | None) -> list[CheckpointInfo]:
    """The checkpoints a generator averages: one for a checkpoint or run directory, the members of an ensemble
    directory, or each path of a list (each a checkpoint or run directory). ``None`` = the shipped default. Members
    must agree on everything their outputs depend on besides the weights (front-end, window, keypoint statistics,
    whether they read the reference); a mismatch is an error naming it."""
    if isinstance(path, (list, tuple)):
        if not path:
            raise CheckpointError("an empty list of checkpoints; give at least one checkpoint directory")
        infos = [read_checkpoint(p) for p in path]
    else:
        root = resolve_checkpoint(path)
        infos = [read_checkpoint(m) for m in ensemble_members(root)] if _is_ensemble(root) else [read_checkpoint(root)]
    first = infos[0]
    for info in infos[1:]:
        diffs = []
        for field in ("feature_shape", "frontend", "fps", "sample_rate", "window"):
            if getattr(info, field) != getattr(first, field):
                diffs.append(f"{field} {getattr(info, field)} vs {getattr(first, field)}")
        if _reads_reference(info.model) != _reads_reference(first.model):
            diffs.append("one reads the reference keypoints, the other does not")
        a, b = info.normalizer.to_dict(), first.normalizer.to_dict()
        if a.keys() != b.keys() or any(not _close(a[k], b[k]) for k in a):
            diffs.append("keypoint statistics (normalizer): the members were trained on different data")
        if diffs:
            raise CheckpointError(
                f"checkpoints {first.path} and {info.path} cannot be averaged: "
                f"{'; '.join(diffs)}. Ensemble only models of one recipe on one data set (e.g. "
                "different seeds)"
            )
    return infos


def _reads_reference(m: ModelConfig) -> bool:
    return m.pv_encoder is not None or m.piv_encoder is not None


def _close(a: Any, b: Any) -> bool:
    import numpy as np

    try:
        return bool(np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-5, atol=1e-6))
    except (TypeError, ValueError):
        return a == b


# generator params an ensemble directory may set defaults for (`defaults` in ensemble.json): the inference settings
# a model was chosen with (docs/results.md), used where the generator's params leave them unset
DEFAULT_KEYS = {
    "head_motion": (0.0, 4.0),
    "mouth_scale": (0.0, 3.0),
    "blink_interval": (0.0, 60.0),
    "energy_mouth": (0.0, 3.0),
}


def check_defaults(defaults: Any, where: str) -> dict[str, float]:
    """``defaults`` as ``{param: float}`` with known params in their ranges; a :class:`CheckpointError` otherwise."""
    if not isinstance(defaults, dict):
        raise CheckpointError(f"{where}: `defaults` must be a mapping of generator params to numbers")
    out = {}
    for key, value in defaults.items():
        if key not in DEFAULT_KEYS:
            raise CheckpointError(
                f"{where}: unknown default {key!r}; an ensemble can set defaults for {', '.join(DEFAULT_KEYS)}"
            )
        lo, hi = DEFAULT_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= float(value) <= hi:
            raise CheckpointError(f"{where}: default {key} = {value!r} must be a number in [{lo:g}, {hi:g}]")
        out[key] = float(value)
    return out


def checkpoint_defaults(path: str | os.PathLike | list | tuple | None) -> dict[str, float]:
    """The generator defaults stored with an ensemble directory (``defaults`` in its ensemble.json; ``None`` = the
    shipped weights); ``{}`` for a checkpoint, run directory or list."""
    if isinstance(path, (list, tuple)):
        return {}
    root = resolve_checkpoint(path)
    if not _is_ensemble(root):
        return {}
    try:
        meta = json.loads((root / ENSEMBLE_FILE).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {root / ENSEMBLE_FILE}: {exc}; the ensemble is corrupt") from None
    return check_defaults(meta.get("defaults", {}), str(root / ENSEMBLE_FILE))


def write_ensemble(
    directory: str | os.PathLike,
    members: list[str | os.PathLike],
    description: str = "",
    defaults: dict[str, float] | None = None,
) -> Path:
    """Copy the checkpoints ``members`` (checkpoint or run directories) into ``directory/member-K`` and write its
    ``ensemble.json`` (with generator ``defaults``, e.g. ``{"head_motion": 2.0}``), atomically (a reader sees the old
    directory or the complete new one)."""
    defaults = check_defaults(dict(defaults or {}), "ensemble defaults")
    infos = read_members([str(m) for m in members])  # refuses members that cannot be averaged
    target = Path(directory)
    if target.exists() and not (target.is_dir() and _is_ensemble(target)):
        raise CheckpointError(
            f"{target} exists and is not an ensemble directory; it would be replaced. Give a new "
            "directory (an existing ensemble is replaced atomically)"
        )
    with atomic_dir(target) as tmp:
        names = []
        for k, info in enumerate(infos):
            name = f"member-{k}"
            (tmp / name).mkdir()
            for fname in (WEIGHTS_FILE, CONFIG_FILE):
                shutil.copy2(info.path / fname, tmp / name / fname)
            names.append(name)
        write_json(
            tmp / ENSEMBLE_FILE,
            {
                "format": ENSEMBLE_FORMAT,
                "format_version": FORMAT_VERSION,
                "members": names,
                "description": description,
                **({"defaults": defaults} if defaults else {}),
            },
        )
    return target
