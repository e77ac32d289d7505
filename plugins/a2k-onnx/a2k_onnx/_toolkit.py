"""The a2k-toolkit internals this plugin reuses, imported in this one module.

The ONNX generator must put the same weights on the same frames and post-process the network's output exactly as the
``audio2keypoint`` generator does, so it calls the toolkit's own functions rather than copies of them. None of them
imports torch. They are not (yet) public names of a2k-toolkit (docs/architecture.md, "Public names"): when they
move, only this module changes.
"""

from __future__ import annotations

from a2k_toolkit.builtin.audio2keypoint import anchor_start, close_mouth_in_silence
from a2k_toolkit.builtin.motion import BLOCK, apply_blinks, blink_schedule, rescale_motion
from a2k_toolkit.models.windows import run_windows, window_features, window_plan

__all__ = [
    "BLOCK",
    "anchor_start",
    "apply_blinks",
    "blink_schedule",
    "close_mouth_in_silence",
    "rescale_motion",
    "run_windows",
    "window_features",
    "window_plan",
]
