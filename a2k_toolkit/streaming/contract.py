"""The streaming contract: how an audio front-end and a keypoint generator take part in a live stream.

A component streams by having a ``stream`` method (docs/plugins.md, "Streaming"):

* an audio front-end: ``frontend.stream() -> FeatureStream``. Fed mono float32 samples at the front-end's
  ``sample_rate``, in chunks of any size, it returns the feature rows ``(n, D)`` of the video frames that are complete;
  ``flush()`` returns the rest. All rows together equal ``frontend(whole_waveform, sample_rate)``.
* a generator: ``generator.stream(reference, *, lookahead=None, seed=None) -> KeypointStream``. Fed feature rows in
  chunks of any size, it returns the keypoint frames ``(m, 68, 2)`` that are final; ``flush()`` returns the rest, so
  that there is one frame per feature row. ``lookahead`` is how many feature rows past frame ``t`` the generator may
  wait for before it returns frame ``t`` (``None``: as many as it needs to equal ``generate``); the stream's own
  ``lookahead`` attribute says what it actually waits for (never more than asked; ``None`` = until ``flush``).

The base classes below count rows and frames, refuse input after ``flush`` and check that the counts add up; a
component's stream subclasses them and implements ``_push`` and ``_flush``. :func:`feature_stream` and
:func:`keypoint_stream` open a component's stream, with a clear error for one that does not stream.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..keypoints import NUM_POINTS, Keypoints

STREAMING_DOCS = "docs/plugins.md, 'Streaming'"


class StreamingNotSupportedError(ConfigError):
    """A component of the pipeline has no streaming form."""


def _empty_points() -> np.ndarray:
    return np.zeros((0, NUM_POINTS, 2), np.float32)


class FeatureStream:
    """Incremental features of one audio stream (see the module docstring). Subclasses implement ``_push`` and
    ``_flush`` and set ``feature_dim``; ``delay_samples`` is how many samples past the end of a video frame the
    front-end needs before that frame's features are complete (its analysis window reaching into the next frame)."""

    delay_samples: int = 0

    def __init__(self, feature_dim: int):
        self.feature_dim = int(feature_dim)
        self.samples_in = 0  # samples received
        self.frames_out = 0  # feature rows returned
        self.flushed = False

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Mono float32 samples at the front-end's sample rate -> feature rows ``(n, D)`` completed by them."""
        if self.flushed:
            raise InputError("this feature stream was flushed; open a new stream for new audio")
        wav = np.asarray(samples, np.float32).reshape(-1)
        self.samples_in += len(wav)
        out = self._push(wav) if len(wav) else self._empty()
        return self._count(out)

    def flush(self) -> np.ndarray:
        """The remaining feature rows (the audio taken as ended); afterwards the rows number
        ``ceil(duration * fps)`` (none for a stream that received no audio)."""
        if self.flushed:
            return self._empty()
        self.flushed = True
        return self._count(self._flush())

    def _count(self, out: np.ndarray) -> np.ndarray:
        out = np.asarray(out, np.float32)
        if out.ndim != 2 or out.shape[1] != self.feature_dim:
            raise InputError(
                f"{type(self).__name__} returned features of shape {out.shape}, expected (n, {self.feature_dim})"
            )
        self.frames_out += len(out)
        return out

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.feature_dim), np.float32)

    def _push(self, samples: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _flush(self) -> np.ndarray:
        raise NotImplementedError


class KeypointStream:
    """Incremental keypoints of one speaker (see the module docstring). Subclasses implement ``_push`` (feature rows
    ``(n, D)`` float32 -> the frames ``(m, 68, 2)`` now final, in order) and ``_flush`` (the rest) and set
    ``lookahead``; ``meta`` is what the offline :class:`~a2k_toolkit.keypoints.Keypoints` would carry."""

    def __init__(self, reference: Keypoints, lookahead: int | None, meta: dict[str, Any] | None = None):
        if not isinstance(reference, Keypoints):
            raise InputError(f"the reference must be Keypoints (1, 68, 2), got {type(reference).__name__}")
        self.reference = reference
        self.lookahead = lookahead
        self.meta = dict(meta or {})
        self.frames_in = 0  # feature rows received
        self.frames_out = 0  # keypoint frames returned
        self.flushed = False

    def push(self, features: np.ndarray) -> np.ndarray:
        """Feature rows ``(n, D)`` -> keypoint frames ``(m, 68, 2)`` float32 that are final, in order."""
        if self.flushed:
            raise InputError("this keypoint stream was flushed; open a new stream for a new utterance")
        feats = np.asarray(features, np.float32)
        if feats.ndim != 2:
            raise InputError(f"features must be rows (n, D), got an array of shape {feats.shape}")
        if not np.isfinite(feats).all():
            raise InputError("features contain NaN or infinite values")
        self.frames_in += len(feats)
        out = self._push(feats) if len(feats) else _empty_points()
        return self._count(out)

    def flush(self) -> np.ndarray:
        """The remaining frames; afterwards there is exactly one frame per feature row received."""
        if self.flushed:
            return _empty_points()
        self.flushed = True
        out = self._count(self._flush())
        if self.frames_out != self.frames_in:
            raise InputError(
                f"{type(self).__name__} returned {self.frames_out} frames for {self.frames_in} feature rows; a "
                f"generator's stream must return one frame per row ({STREAMING_DOCS})"
            )
        return out

    def _count(self, out: np.ndarray) -> np.ndarray:
        out = np.asarray(out, np.float32)
        if out.ndim != 3 or out.shape[1:] != (NUM_POINTS, 2):
            raise InputError(f"{type(self).__name__} returned keypoints of shape {out.shape}, expected (m, 68, 2)")
        self.frames_out += len(out)
        if self.frames_out > self.frames_in:
            raise InputError(
                f"{type(self).__name__} returned {self.frames_out} frames for {self.frames_in} feature rows"
            )
        return out

    def _push(self, features: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _flush(self) -> np.ndarray:
        raise NotImplementedError


def feature_stream(frontend: Any) -> FeatureStream:
    """``frontend.stream()``, or :class:`StreamingNotSupportedError` naming the front-end when it has none."""
    opener = getattr(frontend, "stream", None)
    if not callable(opener):
        raise StreamingNotSupportedError(
            f"the audio front-end {getattr(frontend, 'name', type(frontend).__name__)!r} does not stream (it has no "
            f"stream() method); use a front-end that does (logmel, librosa-mel, vad from a2k-speech-units, or a stack "
            f"of them), or add one ({STREAMING_DOCS})"
        )
    return opener()


def keypoint_stream(
    generator: Any, reference: Keypoints, *, lookahead: int | None, seed: int | None, **options: Any
) -> KeypointStream:
    """``generator.stream(reference, lookahead=..., seed=..., **options)``, or :class:`StreamingNotSupportedError`
    naming the generator when it has none; ``options`` are the generator's own (e.g. ``hop`` of
    ``audio2keypoint``), an unknown one is an error naming it."""
    opener = getattr(generator, "stream", None)
    if not callable(opener):
        raise StreamingNotSupportedError(
            f"the generator {getattr(generator, 'name', type(generator).__name__)!r} does not stream (it has no "
            f"stream() method); use one that does (audio2keypoint, procedural, static), or add one ({STREAMING_DOCS})"
        )
    if lookahead is not None and (not isinstance(lookahead, (int, np.integer)) or lookahead < 0):
        raise InputError(f"lookahead must be a whole number of frames >= 0 or None, got {lookahead!r}")
    if options:
        import inspect

        params = inspect.signature(opener).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(options) - set(params))
            if unknown:
                known = sorted(set(params) - {"reference", "lookahead", "seed"})
                raise InputError(
                    f"the generator {getattr(generator, 'name', '?')!r} has no streaming option "
                    f"{', '.join(map(repr, unknown))} (its options: {', '.join(known) or 'none'})"
                )
    return opener(reference, lookahead=None if lookahead is None else int(lookahead), seed=seed, **options)
