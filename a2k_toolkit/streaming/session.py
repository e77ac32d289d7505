"""A streaming session: one speaker's audio in chunks, keypoint frames out as soon as they are final.

``Pipeline.stream(image=..., lookahead_ms=...)`` opens one (docs/streaming.md). Per session::

    audio chunk (any size, any sample rate) -> StreamResampler (= offline resampling) -> clip to [-1, 1]
      -> front-end FeatureStream (rows of complete video frames) -> generator KeypointStream (final frames)
      -> [pose: the frames in a reference's head pose] -> KeypointFrame(index, timestamp, points (68, 2))

A session holds only its own state (no globals), so a server keeps one per connection. It is not thread-safe: push
from one thread at a time (a server may run pushes in a worker thread; the numerical work releases the GIL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cpu_runtime import match_torch_threads
from ..errors import InputError
from ..keypoints import Keypoints
from .contract import feature_stream, keypoint_stream
from .resample import StreamResampler

#: the lookahead a session uses when none is given (8 frames), chosen from the measurement in docs/streaming.md: the
#: shortest at which the shipped model's lip sync on the shared clips is 0.9 x offline's with a margin at either hop
#: (0.91; 200 ms: 0.88-0.89, 240 ms: 0.90, 400 ms: 0.92; each 40 ms more past it gains about 0.01)
DEFAULT_LOOKAHEAD_MS = 320.0
#: ``lookahead_ms`` value asking for the stream to equal offline generation (as much lookahead as that takes)
FULL = "full"


@dataclass(frozen=True)
class KeypointFrame:
    """One final keypoint frame: its index (0 = the reference), the time it starts at in the stream's audio
    (``index / fps`` seconds) and its 68 points ``(68, 2)`` float32 in pixels of the reference image."""

    index: int
    timestamp: float
    points: np.ndarray


def lookahead_frames(lookahead_ms: float | str | None, fps: float) -> int | None:
    """Whole frames of lookahead for ``lookahead_ms`` (rounded down; ``None`` = :data:`DEFAULT_LOOKAHEAD_MS`);
    ``"full"`` (or infinity) -> ``None``: as much as the generator needs to equal offline generation."""
    if lookahead_ms is None:
        lookahead_ms = DEFAULT_LOOKAHEAD_MS
    if isinstance(lookahead_ms, str):
        if lookahead_ms.strip().lower() == FULL:
            return None
        try:
            lookahead_ms = float(lookahead_ms)
        except ValueError:
            raise InputError(f"lookahead must be a number of milliseconds or 'full', got {lookahead_ms!r}") from None
    if isinstance(lookahead_ms, bool) or not isinstance(lookahead_ms, (int, float)) or math.isnan(lookahead_ms):
        raise InputError(f"lookahead must be a number of milliseconds or 'full', got {lookahead_ms!r}")
    if lookahead_ms < 0:
        raise InputError(f"lookahead must be >= 0 ms, got {lookahead_ms:g}")
    if math.isinf(lookahead_ms):
        return None
    return int(math.floor(lookahead_ms * fps / 1000.0 + 1e-9))


def as_mono(chunk: Any) -> np.ndarray:
    """A chunk as mono float32: ``(N,)`` mono or ``(N, C)`` frames of up to 8 channels (averaged); integer samples
    are scaled from their type's range, as when a file is read."""
    from ..audio import _to_float32

    a = np.asarray(chunk)
    if a.ndim == 2 and 1 <= a.shape[1] <= 8:
        a = _to_float32(a)
        a = a[:, 0] if a.shape[1] == 1 else a.mean(axis=1, dtype=np.float32)
    elif a.ndim != 1:
        raise InputError(
            f"an audio chunk must be mono samples (N,) or frames (N, C) with up to 8 channels, got shape {a.shape}"
        )
    try:
        return _to_float32(a)
    except Exception as exc:  # noqa: BLE001 - the loader's own message for a bad dtype
        raise InputError(f"an audio chunk must hold numbers: {exc}") from None


class StreamSession:
    """One speaker's stream (see the module docstring). ``push`` returns the frames that became final, ``flush`` the
    rest; together they are one frame per ``1 / fps`` seconds of audio, as offline generation gives.

    ``lookahead_ms`` (default :data:`DEFAULT_LOOKAHEAD_MS`; ``"full"``: equal to offline) is rounded down to whole
    frames; ``sample_rate`` is the rate of the pushed audio (default: the front-end's); ``options`` go to the
    generator's ``stream`` (e.g. ``hop`` for ``audio2keypoint``). ``pose`` (a :class:`~a2k_toolkit.pose.PoseTransfer`:
    ``pose(points, start)`` -> the frames from ``start`` on in a reference's head pose, with a ``meta`` dict) poses
    each frame as it leaves, as offline generation poses the whole sequence."""

    def __init__(
        self,
        frontend: Any,
        generator: Any,
        reference: Keypoints,
        *,
        lookahead_ms: float | str | None = None,
        sample_rate: int | None = None,
        seed: int | None = 0,
        pose: Any = None,
        **options: Any,
    ):
        if not isinstance(reference, Keypoints) or reference.points.shape[0] < 1:
            raise InputError("a stream needs reference Keypoints (1, 68, 2); detect them from the image")
        self.frontend, self.generator, self.reference = frontend, generator, reference[0:1]
        self.fps = float(frontend.fps)
        self.requested_lookahead = lookahead_frames(lookahead_ms, self.fps)
        self._features = feature_stream(frontend)
        self._keypoints = keypoint_stream(
            generator, self.reference, lookahead=self.requested_lookahead, seed=seed, **options
        )
        self.sample_rate = None if sample_rate is None else self._check_rate(sample_rate)
        self._resampler: StreamResampler | None = None
        self.pose = pose
        self.samples_in = 0  # samples received, at the input rate
        self.frames_out = 0
        self.closed = False

    # ------------------------------------------------------------------------------------------------ properties
    @property
    def lookahead(self) -> int | None:
        """Frames of audio past a frame that the generator waits for before returning it (``None``: until flush)."""
        return self._keypoints.lookahead

    @property
    def latency_ms(self) -> float | None:
        """How long after a frame's audio ends it is final, compute time aside: the generator's lookahead plus the
        front-end's analysis window past the frame plus the resampler's filter (``None``: at flush)."""
        if self.lookahead is None:
            return None
        ms = 1000.0 * self.lookahead / self.fps + 1000.0 * self._features.delay_samples / self.frontend.sample_rate
        if self._resampler is not None:
            ms += 1000.0 * self._resampler.delay_samples / self._resampler.orig_sr
        return ms

    @property
    def meta(self) -> dict[str, Any]:
        meta = dict(self._keypoints.meta)
        return meta if self.pose is None else {**meta, **getattr(self.pose, "meta", {})}

    # ------------------------------------------------------------------------------------------------------ API
    def push(self, chunk: Any, sample_rate: int | None = None) -> list[KeypointFrame]:
        """Audio samples (mono ``(N,)`` or ``(N, C)``, float or integer PCM) at ``sample_rate`` (default: the
        session's, else the front-end's; one rate per session) -> the keypoint frames that became final."""
        self._check_open()
        rate = self._check_rate(
            sample_rate if sample_rate is not None else self.sample_rate or self.frontend.sample_rate
        )
        if self.sample_rate is None:
            self.sample_rate = rate
        elif rate != self.sample_rate:
            raise InputError(
                f"this session's audio is at {self.sample_rate} Hz, got a chunk at {rate} Hz; a session has one "
                "sample rate (open a new session for another)"
            )
        wav = as_mono(chunk)
        if len(wav) and not np.isfinite(wav).all():
            raise InputError("the audio chunk contains NaN or infinite samples")
        if self._resampler is None:
            self._resampler = StreamResampler(rate, self.frontend.sample_rate)
        self.samples_in += len(wav)
        return self._run(lambda: self._resampler.push(wav), final=False)

    def flush(self) -> list[KeypointFrame]:
        """The remaining frames (the audio taken as ended); the session is then closed."""
        self._check_open()
        out = self._run(lambda: self._resampler.flush() if self._resampler is not None else np.zeros(0), final=True)
        self.closed = True
        return out

    def close(self) -> None:
        """End the session without the remaining frames."""
        self.closed = True

    def __enter__(self) -> StreamSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def keypoints(self, frames: list[KeypointFrame]) -> Keypoints:
        """``frames`` (in order) as one :class:`Keypoints` sequence, with the fps, image size and metadata that
        offline generation gives."""
        pts = np.stack([f.points for f in frames]) if frames else np.zeros((0, 68, 2), np.float32)
        return Keypoints(pts, fps=self.fps, image_size=self.reference.image_size, meta=self.meta)

    # -------------------------------------------------------------------------------------------------- internals
    def _check_open(self) -> None:
        if self.closed:
            raise InputError("this stream session is closed (flushed, closed or failed); open a new one")

    @staticmethod
    def _check_rate(rate: Any) -> int:
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise InputError(f"sample_rate must be a positive whole number of Hz, got {rate!r}")
        return int(rate)

    def _run(self, samples, *, final: bool) -> list[KeypointFrame]:
        match_torch_threads()  # a push from a thread of its own: the process's torch threads, not every core
        try:
            wav = np.clip(samples(), -1.0, 1.0)  # as loaded audio is, after resampling
            feats = self._features.push(wav)
            if final:
                feats = np.concatenate([feats, self._features.flush()])
            pts = self._keypoints.push(feats)
            if final:
                pts = np.concatenate([pts, self._keypoints.flush()])
            if self.pose is not None and len(pts):  # frame by frame, as they leave: the index says the source frame
                pts = self.pose(pts, self.frames_out)
        except BaseException:
            self.closed = True  # a component failed half-way: its state is no longer trustworthy
            raise
        first = self.frames_out
        self.frames_out += len(pts)
        return [KeypointFrame(first + i, (first + i) / self.fps, p) for i, p in enumerate(pts)]
