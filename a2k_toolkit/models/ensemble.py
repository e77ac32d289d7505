"""Ensemble directories: several checkpoints whose predictions the generator averages, written atomically, read
with clear errors.

An **ensemble** is a directory holding ``ensemble.json`` (``{"format": "a2k-ensemble", "members": ["seed0", ...]}``)
and the member checkpoints (:mod:`a2k_toolkit.models.checkpoint`) in the named subdirectories: models of one recipe
trained with different seeds, whose predictions the generator averages (:func:`read_members`,
:class:`~a2k_toolkit.models.generator.EnsembleNet`).
Members must share the front-end, window and keypoint statistics, so their outputs live in one normalised space.
Its ``defaults`` are the generator params the model was chosen with (:data:`DEFAULT_KEYS`,
:func:`checkpoint_defaults`). :func:`~a2k_toolkit.models.checkpoint.resolve_checkpoint` finds an ensemble directory
as it finds a checkpoint; this module never imports ``a2k_toolkit.training``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from .checkpoint import (
    CONFIG_FILE,
    ENSEMBLE_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    CheckpointInfo,
    _format_version,
    _is_checkpoint,
    _is_ensemble,
    atomic_dir,
    load_generator,
    read_checkpoint,
    resolve_checkpoint,
    write_json,
)
from .config import ModelConfig

ENSEMBLE_FORMAT = "a2k-ensemble"


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
    "keep_mouth_shape": (0.0, 1.0),
    "mouth_prior": (0.0, 2.0),
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


def checkpoint_mouth_prior(path: str | os.PathLike | list | tuple | None) -> Path | None:
    """The mouth prior file that comes with a checkpoint (``mouth_prior.safetensors`` in an ensemble or checkpoint
    directory; ``None`` = the shipped weights), or None: a list of checkpoints has none of its own."""
    from ..mouth_prior import FILE_NAME

    if isinstance(path, (list, tuple)):
        return None
    f = resolve_checkpoint(path) / FILE_NAME
    return f if f.is_file() else None


def write_ensemble(
    directory: str | os.PathLike,
    members: list[str | os.PathLike],
    description: str = "",
    defaults: dict[str, float] | None = None,
    mouth_prior: str | os.PathLike | None = None,
) -> Path:
    """Copy the checkpoints ``members`` (checkpoint or run directories) into ``directory/member-K`` and write its
    ``ensemble.json`` (with generator ``defaults``, e.g. ``{"head_motion": 2.0}``), atomically (a reader sees the old
    directory or the complete new one). ``mouth_prior``: a prior file (``a2k mouth-prior``) copied in as the
    ensemble's ``mouth_prior.safetensors`` (checked first)."""
    from ..mouth_prior import FILE_NAME, load_mouth_prior

    defaults = check_defaults(dict(defaults or {}), "ensemble defaults")
    if mouth_prior is not None:
        load_mouth_prior(mouth_prior)  # a damaged or foreign file fails here, not at the first generation
        mouth_prior = Path(mouth_prior) / FILE_NAME if Path(mouth_prior).is_dir() else Path(mouth_prior)
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
        if mouth_prior is not None:
            shutil.copy2(mouth_prior, tmp / FILE_NAME)
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
