"""What the stages of ``a2k bench`` (:mod:`suite`) share: where the samples and configs are, the peak-memory probe,
the median timer, the speech sample at any length, and the :class:`Context` each stage gets."""

from __future__ import annotations

import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the sibling bench_*.py scripts, whose helpers the stages reuse

SAMPLES = REPO / "a2k_toolkit" / "samples"
# the training configs whose models the keypoint stages time: the paper width and the `lite` preset
PRESETS = {
    "a2k": REPO / "configs" / "train" / "paper" / "a2k.yaml",
    "lite": REPO / "configs" / "train" / "presets" / "lite.yaml",
}
SAMPLE_RATE = 16000


# ------------------------------------------------------------------------------------------------------- helpers
def _rss_mib() -> float:
    """This process's resident set size now (Linux ``/proc``); elsewhere its peak so far (``getrusage``)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        scale = 2**20 if sys.platform == "darwin" else 2**10  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


class PeakRSS:
    """Context manager polling :func:`_rss_mib` every few milliseconds; ``.peak_mib`` once it exits."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak_mib = interval, 0.0
        self._done = threading.Event()

    def _poll(self) -> None:
        while not self._done.is_set():
            self.peak_mib = max(self.peak_mib, _rss_mib())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak_mib = _rss_mib()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, _rss_mib())


def median_time(fn: Callable[[], Any], repeat: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Median seconds of ``repeat`` calls of ``fn`` (the caller warms up first)."""
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def speech(seconds: float) -> np.ndarray:
    """The bundled speech sample, tiled to ``seconds`` at 16 kHz (float32 mono)."""
    from a2k_toolkit.io import load_audio

    wav = load_audio(SAMPLES / "speech.wav", SAMPLE_RATE)
    return np.resize(wav, int(seconds * SAMPLE_RATE)).astype(np.float32)


@dataclass
class Context:
    """What the stages share: settings, a scratch directory and a lazily made random-weight checkpoint."""

    quick: bool
    repeat: int
    work: Path
    device: str = "cpu"
    naive: bool = False
    sessions: int | None = None  # the streaming stage's concurrent sessions (None: its default)
    soak_s: float | None = None  # the streaming stage's seconds of audio per session at that count (None: default)
    late_margin_ms: float | None = None  # a frame later than the announced latency + this is late (None: default)
    _checkpoints: dict[str, Path] = field(default_factory=dict, repr=False)

    def checkpoint(self, preset: str = "a2k") -> Path:
        """An Audio2Keypoint checkpoint with random weights and the model of the training config ``PRESETS[preset]``
        (``a2k``: the paper width, configs/train/paper/a2k.yaml; ``lite``: configs/train/presets/lite.yaml), written
        as ``a2k train`` writes one."""
        if preset not in self._checkpoints:
            from bench_model import synthetic_clips

            from a2k_toolkit.training import Trainer
            from a2k_toolkit.training.config import load_train_config

            clips = self.work / "ckpt-clips"
            if not clips.exists():
                clips.mkdir()
                synthetic_clips(clips, n=2, seconds=8)
            model = load_train_config(PRESETS[preset]).model.model_dump(mode="json")
            run = self.work / f"ckpt-{preset}"
            cfg = {
                "run_dir": str(run),
                "device": self.device,
                "progress": False,
                "batch_size": 4,
                "model": model,
                "data": {"train": [str(clips)], "window": 64, "stride": 16},
            }
            Trainer(cfg).save_latest()
            self._checkpoints[preset] = run / "latest"
        return self._checkpoints[preset]
