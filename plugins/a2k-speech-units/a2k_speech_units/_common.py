"""Helpers shared by the front-ends: input checks, resampling to 16 kHz, frame boundaries, optional imports."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import Iterator

import numpy as np

from a2k_toolkit.errors import A2KError, InputError

MODEL_RATE = 16000  # both bundled models are 16 kHz models


class SpeechUnitsDependencyError(A2KError, ImportError):
    """A package a speech-units front-end needs is not installed."""

    def __init__(self, package: str, purpose: str):
        super().__init__(
            f"{purpose} needs the package {package!r}, which is not installed; install it with "
            f"`pip install {package}` (or `pip install -e plugins/a2k-speech-units`)"
        )


def package_dir(package: str, purpose: str) -> str:
    """The directory of an installed package, found *without importing it* (silero_vad's import changes torch's
    global thread count, so it is never imported)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SpeechUnitsDependencyError(package.replace("_", "-"), purpose)
    return list(spec.submodule_search_locations)[0]


def require(module: str, package: str, purpose: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SpeechUnitsDependencyError(package, purpose) from exc


def mono_16k(waveform: np.ndarray, sample_rate: int, who: str) -> np.ndarray:
    """A checked mono float32 waveform at 16 kHz (resampled with a2k's polyphase resampler when needed)."""
    from a2k_toolkit.audio import resample

    wav = np.asarray(waveform, dtype=np.float32)
    if wav.ndim != 1:
        raise InputError(
            f"the {who} front-end takes one mono waveform (N,), got an array of shape {wav.shape}; "
            "average the channels or call it once per waveform"
        )
    if int(sample_rate) <= 0:
        raise InputError(f"sample rate must be positive, got {sample_rate}")
    if wav.size and not np.isfinite(wav).all():
        raise InputError(f"the waveform given to the {who} front-end has NaN or infinite samples; clean the audio")
    return resample(wav, int(sample_rate), MODEL_RATE)


def frame_bounds(T: int, fps: float, sample_rate: int = MODEL_RATE) -> np.ndarray:
    """Sample index where each video frame starts, plus the end of the last: ``round(t * sr / fps)``, ``(T + 1,)``.
    Video frame ``t`` shows ``[t / fps, (t + 1) / fps)``."""
    return np.round(np.arange(T + 1, dtype=np.float64) * (sample_rate / fps)).astype(np.int64)


def interval_means(values: np.ndarray, step: int, bounds: np.ndarray) -> np.ndarray:
    """Mean over each ``[bounds[t], bounds[t + 1])`` (samples) of the step function equal to ``values[i]`` on
    ``[i * step, (i + 1) * step)``; ``values`` is ``(n,)`` or ``(n, K)``. Intervals are clipped to the covered range."""
    n = len(values)
    v = values.reshape(n, -1).astype(np.float64)
    cum = np.concatenate([np.zeros((1, v.shape[1])), np.cumsum(v, axis=0)]) * step

    def integral(x):
        x = np.clip(x, 0, n * step)
        i = np.minimum(x // step, n - 1)
        return cum[i] + v[i] * (x - i * step)[:, None]

    lo, hi = np.clip(bounds[:-1], 0, n * step - 1), np.clip(bounds[1:], 1, n * step)
    hi = np.maximum(hi, lo + 1)
    out = (integral(hi) - integral(lo)) / (hi - lo)[:, None]
    return out if values.ndim == 2 else out[:, 0]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads (``None``: as they are), restoring the count afterwards."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
