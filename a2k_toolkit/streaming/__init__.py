"""Streaming: keypoints from live audio, frame by frame (docs/streaming.md).

``Pipeline.stream(image=..., lookahead_ms=...)`` opens a :class:`StreamSession`; components take part through the
contract of :mod:`a2k_toolkit.streaming.contract` (:class:`FeatureStream`, :class:`KeypointStream`); chunked
resampling equal to offline resampling is :class:`StreamResampler`.
"""

from __future__ import annotations

from .contract import FeatureStream, KeypointStream, StreamingNotSupportedError, feature_stream, keypoint_stream
from .resample import StreamResampler
from .session import DEFAULT_LOOKAHEAD_MS, FULL, KeypointFrame, StreamSession, lookahead_frames

__all__ = [
    "DEFAULT_LOOKAHEAD_MS",
    "FULL",
    "FeatureStream",
    "KeypointFrame",
    "KeypointStream",
    "StreamResampler",
    "StreamSession",
    "StreamingNotSupportedError",
    "feature_stream",
    "keypoint_stream",
    "lookahead_frames",
]
