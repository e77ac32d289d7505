"""A training config small enough for real training steps in tests (the toolkit's and plugins' alike)."""

from __future__ import annotations

import os
from typing import Any


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` on top, nested dicts merged key by key (as a training config's ``base:`` is)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def tiny_train_config(data_dir: str | os.PathLike, run_dir: str | os.PathLike, **overrides: Any) -> dict[str, Any]:
    """A training config (a dict for ``Trainer`` or ``load_train_config``; ``yaml.safe_dump`` it for ``a2k train``)
    of a tiny Audio2Keypoint model: width 16, depth 2, small PV / PIV encoders, 32-frame windows, batch 4 on the CPU,
    so that a step takes a fraction of a second. It trains on the clips in ``data_dir`` and writes to ``run_dir``,
    logs every step, shows no progress bar, and validates and checkpoints every 1000 steps only (the end of the run
    still writes ``latest/``).

    ``overrides`` go on top, nested dicts merged key by key: ``max_steps=3``, ``model={"width": 32}`` (the other
    model keys stay), ``model={"pv_encoder": None}`` (the audio-only ablation), ``audio={"name": "stack", ...}``."""
    base = {
        "run_dir": str(run_dir),
        "device": "cpu",
        "seed": 0,
        "progress": False,
        "model": {
            "width": 16,
            "depth": 2,
            "channels_2d": [4, 8],
            "disc_width": 8,
            "pv_encoder": {"name": "pv", "params": {"hidden": 32, "out_dim": 8}},
            "piv_encoder": {"name": "piv", "params": {"hidden": 32, "out_dim": 8}},
        },
        "data": {"train": [str(data_dir)], "window": 32, "stride": 16},
        "batch_size": 4,
        "log_every": 1,
        "val_every": 1000,
        "checkpoint_every": 1000,
    }
    return _merged(base, overrides)
