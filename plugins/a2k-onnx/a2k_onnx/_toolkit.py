"""The a2k-toolkit functions this plugin reuses, imported in this one module.

The ONNX generator must put the same weights on the same frames and post-process the network's output exactly as the
``audio2keypoint`` generator does, so it calls the toolkit's own functions rather than copies of them: the window
plan of ``a2k_toolkit.models.windows``, the motion steps of ``a2k_toolkit.motion`` and the mouth prior of
``a2k_toolkit.mouth_prior``, all public modules
(docs/architecture.md, "Public names") without torch.
"""

from __future__ import annotations

from a2k_toolkit.models.windows import run_windows, window_features, window_plan
from a2k_toolkit.motion import BLOCK, LOUDNESS_PARAMS, finish_sequence, loudness_param
from a2k_toolkit.mouth_prior import load_mouth_prior

__all__ = [
    "BLOCK",
    "LOUDNESS_PARAMS",
    "finish_sequence",
    "load_mouth_prior",
    "loudness_param",
    "run_windows",
    "window_features",
    "window_plan",
]
