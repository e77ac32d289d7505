"""Checkpoints as safetensors (no pickle): tensors named ``E.*``, ``G.*``, ``D.*`` (and ``psi`` for a personalised
generator), the architecture and training facts as JSON in the file's metadata.

Two kinds:

* ``meta``: embedder, generator and discriminator after meta-training; renders anyone from K shots.
* ``personal``: a generator fine-tuned on K frames of one person, with that person's AdaIN parameters ``psi``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a2k_toolkit.errors import CheckpointError

FORMAT = "a2k-face-translator/1"


@dataclass
class Loaded:
    """A loaded checkpoint: the model (E, G, D; E and D untrained in a personal checkpoint), ``psi`` for a personal
    one, and the metadata."""

    model: Any  # FaceTranslator
    kind: str
    psi: Any = None  # torch.Tensor (psi_dim,) for a personal checkpoint
    info: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path, model, *, kind: str = "meta", psi=None, info: dict | None = None) -> None:
    """Write ``model`` (a :class:`~a2k_face_translator.models.FaceTranslator`) atomically as safetensors.

    ``kind="personal"`` stores only the generator and ``psi`` (the person's AdaIN parameters)."""
    import torch
    from safetensors.torch import save

    from a2k_toolkit.io import atomic_write_bytes

    if kind not in ("meta", "personal"):
        raise ValueError(f"kind must be 'meta' or 'personal', got {kind!r}")
    parts = ("E", "G", "D") if kind == "meta" else ("G",)
    tensors = {}
    for part in parts:
        for k, v in getattr(model, part).state_dict().items():
            tensors[f"{part}.{k}"] = v.detach().to("cpu").contiguous().clone()
    if kind == "personal":
        if psi is None:
            raise ValueError("a personal checkpoint needs psi")
        tensors["psi"] = torch.as_tensor(psi).detach().to("cpu").reshape(-1).contiguous().clone()
    metadata = {
        "format": FORMAT,
        "kind": kind,
        "config": json.dumps(model.cfg.to_dict()),
        "info": json.dumps(info or {}),
    }
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_checkpoint(path, device: str = "cpu") -> Loaded:
    """Read a checkpoint written by :func:`save_checkpoint`; every problem is a :class:`CheckpointError` saying what
    to do."""
    from safetensors import safe_open

    from .models import FaceTranslator, ModelConfig

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"face-translator checkpoint not found: {path}; train one with "
            "`python -m a2k_face_translator.train meta --clips DIR --out CKPT.safetensors` (see the plugin's README)"
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise CheckpointError(f"cannot read {path}: not a safetensors checkpoint or a damaged one ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not an a2k-face-translator checkpoint (format {meta.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    try:
        cfg = ModelConfig(**json.loads(meta["config"]))
        info = json.loads(meta.get("info", "{}"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable model configuration in the checkpoint ({exc})") from None
    kind = meta.get("kind", "meta")
    model = FaceTranslator(cfg)
    parts = ("E", "G", "D") if kind == "meta" else ("G",)
    for part in parts:
        sub = {k[len(part) + 1 :]: v for k, v in tensors.items() if k.startswith(part + ".")}
        try:
            getattr(model, part).load_state_dict(sub, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: the {part} weights do not match the stored configuration: {exc}") from None
    psi = None
    if kind == "personal":
        psi = tensors.get("psi")
        if psi is None or psi.numel() != model.G.psi_dim:
            raise CheckpointError(f"{path}: a personal checkpoint without valid AdaIN parameters (psi)")
        psi = psi.to(device)
    model.to(device).eval()
    return Loaded(model=model, kind=kind, psi=psi, info=info)
