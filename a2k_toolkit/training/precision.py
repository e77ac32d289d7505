"""Mixed precision of a training run (the loop's side of AMP): the autocast dtype for the config's ``amp`` on the
run's device, and the two gradient scalers the GAN steps use (``g``: generator + PIV encoder, ``d``: discriminator)."""

from __future__ import annotations

import contextlib

import torch

from ..errors import ConfigError


def amp_settings(amp: str, device: str) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, use a GradScaler)`` for the config's ``amp`` on ``device``."""
    kind = torch.device(device).type
    if amp == "off" or (amp == "auto" and kind != "cuda"):
        return None, False
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "fp16" and kind != "cuda":
        raise ConfigError(f"amp: fp16 needs a CUDA device (training on {device}); use amp: bf16 or off")
    if amp == "bf16" and kind == "mps":
        raise ConfigError("amp: bf16 is not supported on MPS here; use amp: off")
    return (torch.bfloat16 if amp == "bf16" else torch.float16), amp == "fp16"


class Precision:
    """``amp`` on ``device``: :meth:`autocast` for the forward passes, ``scalers["g"]`` / ``scalers["d"]`` for the
    backward passes (enabled for fp16 only; disabled scalers pass losses and steps through unchanged)."""

    def __init__(self, amp: str, device: str):
        self.dtype, use_scaler = amp_settings(amp, device)
        self.device_type = torch.device(device).type
        where = "cuda" if self.device_type == "cuda" else "cpu"
        self.scalers = {n: torch.amp.GradScaler(where, enabled=use_scaler) for n in ("g", "d")}

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def state_dict(self) -> dict[str, dict]:
        return {n: s.state_dict() for n, s in self.scalers.items()}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        for n, s in self.scalers.items():
            if state.get(n):
                s.load_state_dict(state[n])
