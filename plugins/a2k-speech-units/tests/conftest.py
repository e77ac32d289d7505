"""Real inputs for the speech-units tests: espeak-ng speech placed between known silences (no recordings needed)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

if importlib.util.find_spec("a2k_speech_units") is None:  # running from a checkout without `pip install -e`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SR = 16000


def speak(text: str, lang: str = "en-us") -> np.ndarray:
    """espeak-ng speech at 16 kHz, trimmed to where the waveform is above -45 dB of its peak."""
    if shutil.which("espeak-ng") is None and shutil.which("espeak") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from a2k_toolkit.audio import load_audio
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager

    espeak = Catalog(make_plugin_manager(entry_points=False)).build("speech", "espeak")
    wav, sr = espeak.synthesize(text, lang)
    wav = load_audio(wav, SR, orig_sample_rate=sr)
    loud = np.flatnonzero(np.abs(wav) > np.abs(wav).max() * 10 ** (-45 / 20))
    return np.ascontiguousarray(wav[loud[0] : loud[-1] + 1])


def with_silences(parts: list[np.ndarray], gaps: list[float], noise_db: float = -70.0, seed: int = 0):
    """``gaps[0]`` s of quiet, parts[0], ``gaps[1]`` s, ... ; quiet is white noise at ``noise_db`` dBFS RMS.
    Returns the waveform and the ``(start_s, end_s)`` of every part."""
    assert len(gaps) == len(parts) + 1
    rng = np.random.default_rng(seed)
    pieces, spans, t = [], [], 0
    for gap, part in zip(gaps, [*parts, None]):
        n = int(round(gap * SR))
        pieces.append((rng.standard_normal(n) * 10 ** (noise_db / 20)).astype(np.float32))
        t += n
        if part is not None:
            pieces.append(part)
            spans.append((t / SR, (t + len(part)) / SR))
            t += len(part)
    return np.concatenate(pieces), spans


@pytest.fixture(scope="session")
def dialogue():
    """Two English sentences between silences of 1.0, 0.8 and 1.0 s, with their true spans."""
    wav, spans = with_silences(
        [speak("Hello there, how are you today?"), speak("I am fine, thank you very much.")], [1.0, 0.8, 1.0]
    )
    return SimpleNamespace(wav=wav, spans=spans, duration=len(wav) / SR)


@pytest.fixture(scope="session")
def host_catalog():
    """The host catalog: the built-ins plus this package's plugin module (independent of what else is installed)."""
    from a2k_speech_units import plugin
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager

    return Catalog(make_plugin_manager(entry_points=False, plugins=[plugin]))
