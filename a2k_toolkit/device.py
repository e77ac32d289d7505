"""Device selection shared by inference and training."""

from __future__ import annotations

from .errors import ConfigError


def resolve_device(device: str | None = "auto") -> str:
    """``'auto'`` -> ``'cuda'`` if available, else ``'mps'``, else ``'cpu'``; other values are checked and returned."""
    import torch

    device = device or "auto"
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    head = device.split(":")[0]
    if head == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use device: auto or cpu")
    if head == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r} requested but Apple MPS is not available; use device: auto or cpu")
    try:
        torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"invalid device {device!r}: {exc}") from None
    return device
