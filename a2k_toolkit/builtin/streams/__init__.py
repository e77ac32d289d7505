"""Streaming forms of the built-in front-ends and generators (the contract: :mod:`a2k_toolkit.streaming.contract`).

The components' ``stream()`` methods build these; docs/streaming.md says what each one equals. One module per
component, each saying how its streams differ from offline:

* :mod:`.features`: :class:`MelFeatureStream` (``logmel``, ``librosa-mel``) and :class:`StackFeatureStream`
  (``stack``), the front-ends';
* :mod:`.windows`: :class:`WindowedOutputs`, the generator network's output for features that arrive in chunks
  (offline inference's window plan at the full lookahead, windows ending every ``hop`` frames with a shorter one);
* :mod:`.audio2keypoint`: :class:`Audio2KeypointStream`, the learned generator's post-processing frame by frame on
  :class:`WindowedOutputs`;
* :mod:`.baselines`: :class:`ProceduralStream`, :class:`StaticStream`, :class:`WholeStream` (generate at flush);
* :mod:`.tracks`: what the generator streams share, frame by frame: :class:`BlinkTrack` (the blinks),
  :class:`FeatureHistory` (the feature rows still needed), :class:`EnergyTrack` (the loudness-driven mouth).

Every generator stream here computes frame ``t`` from the features of frames ``< min(t + lookahead + 1, T)``, never
from what else happens to have arrived, so its output does not depend on how the audio was cut into chunks.
"""

from __future__ import annotations

from .audio2keypoint import Audio2KeypointStream
from .baselines import ProceduralStream, StaticStream, WholeStream
from .features import MelFeatureStream, StackFeatureStream
from .tracks import LEVEL_HISTORY_S, BlinkTrack, EnergyTrack, FeatureHistory
from .windows import WindowedOutputs, ramp_weight

__all__ = [
    "LEVEL_HISTORY_S",
    "Audio2KeypointStream",
    "BlinkTrack",
    "EnergyTrack",
    "FeatureHistory",
    "MelFeatureStream",
    "ProceduralStream",
    "StackFeatureStream",
    "StaticStream",
    "WholeStream",
    "WindowedOutputs",
    "ramp_weight",
]
