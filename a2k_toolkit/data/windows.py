"""Fixed-length training windows cut from clips: the unit the Audio2Keypoint model is trained on (paper §4.5).

:class:`ClipWindowDataset` computes each clip's features once over the whole clip (so features near a window's edges
see their true context), then serves windows of ``window`` frames every ``stride`` frames::

    {"features": (W, D) float32,        # the front-end's per-frame features, unnormalised
     "keypoints": (W, 136) float32,     # normalised relative to the window's frame 0 (Normalizer.normalize)
     "reference": (136,) float32}       # == keypoints[0]

Windows that contain a frame without a detected face (``Clip.valid`` false) are skipped. Items are numpy arrays, so
the dataset works with ``torch.utils.data.DataLoader`` (which stacks them into tensors) and without torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..keypoints import Normalizer
from .clips import Clip

FeatureSource = Any  # an AudioFrontend, a callable (waveform, sample_rate) -> (T, D), or one (T, D) array per clip


def window_starts(num_frames: int, window: int, stride: int, valid: np.ndarray | None = None) -> list[int]:
    """Start frames of the windows of a clip with ``num_frames`` frames; windows touching an invalid frame are
    left out."""
    if num_frames < window:
        return []
    starts = list(range(0, num_frames - window + 1, stride))
    if valid is None:
        return starts
    bad = np.concatenate([[0], np.cumsum(~np.asarray(valid, bool))])
    return [s for s in starts if bad[s + window] - bad[s] == 0]


def clip_features(clip: Clip, source: FeatureSource) -> np.ndarray:
    """The features ``(T, D)`` of a whole clip, from a front-end or any ``(waveform, sample_rate)`` callable."""
    fps = getattr(source, "fps", None)
    if fps is not None and abs(float(fps) - float(clip.fps)) > 1e-6:
        raise InputError(
            f"clip {clip.clip_id!r} is at {clip.fps:g} fps but the audio front-end produces features at {fps:g} fps; "
            "extract the clips at the front-end's fps or set the front-end's `fps` to match"
        )
    feats = source(clip.audio, clip.sample_rate)
    return np.asarray(feats, np.float32)


class ClipWindowDataset:
    """Windows of ``window`` frames every ``stride`` frames (default ``window // 4``) over a list of clips.

    ``normalizer=None`` fits one on these windows (:func:`fit_normalizer`); pass the training set's to a validation
    set.
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        frontend_or_features: FeatureSource | Sequence[np.ndarray],
        normalizer: Normalizer | None,
        window: int = 64,
        stride: int | None = None,
    ):
        if window < 2:
            raise InputError(f"window must be at least 2 frames, got {window}")
        self.window = int(window)
        self.stride = int(stride or max(1, window // 4))
        self.clips = list(clips)
        if isinstance(frontend_or_features, (list, tuple)):
            if len(frontend_or_features) != len(self.clips):
                raise InputError(f"got {len(frontend_or_features)} feature arrays for {len(self.clips)} clips")
            feats = [np.asarray(f, np.float32) for f in frontend_or_features]
        elif callable(frontend_or_features):
            feats = [clip_features(c, frontend_or_features) for c in self.clips]
        else:
            raise InputError("frontend_or_features must be an audio front-end, a callable or a list of (T, D) arrays")
        self.features: list[np.ndarray] = []
        self.keypoints: list[np.ndarray] = []
        self.index: list[tuple[int, int]] = []
        for ci, (clip, f) in enumerate(zip(self.clips, feats)):
            kp = np.asarray(clip.keypoints, np.float32)[..., :2]
            if f.ndim != 2:
                raise InputError(f"features of clip {clip.clip_id!r} must be (T, D), got {f.shape}")
            if abs(len(f) - len(kp)) > 1:
                raise InputError(
                    f"clip {clip.clip_id!r} has {len(kp)} keypoint frames but {len(f)} feature frames; features and "
                    "keypoints must be at the same frame rate (T = ceil(duration * fps) for both)"
                )
            T = min(len(f), len(kp))
            self.features.append(f[:T])
            self.keypoints.append(kp[:T])
            valid = clip.valid[:T] if clip.valid is not None else None
            self.index += [(ci, s) for s in window_starts(T, self.window, self.stride, valid)]
        dims = {f.shape[1] for f in self.features}
        if len(dims) > 1:
            raise InputError(f"clips have features of different sizes {sorted(dims)}; use one front-end for all")
        self.normalizer = normalizer if normalizer is not None else fit_normalizer(self)

    @property
    def feature_dim(self) -> int:
        return self.features[0].shape[1] if self.features else 0

    def __len__(self) -> int:
        return len(self.index)

    def raw_window(self, i: int) -> np.ndarray:
        """Window ``i``'s keypoints in pixels, ``(W, 68, 2)``."""
        ci, s = self.index[i]
        return self.keypoints[ci][s : s + self.window]

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        ci, s = self.index[i]
        pts = self.keypoints[ci][s : s + self.window]
        kp = self.normalizer.normalize(pts, pts[0])
        return {
            "features": self.features[ci][s : s + self.window],
            "keypoints": kp,
            "reference": kp[0].copy(),
        }

    def __getitems__(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """Windows ``indices`` stacked into one batch ``{"features": (N, W, D), "keypoints": (N, W, 136),
        "reference": (N, 136)}``, normalised in one vectorised call: what ``torch.utils.data.DataLoader`` fetches
        for a batch (its collate function then receives this dict; :func:`collate` takes either form). The values
        equal stacking ``self[i]`` for each ``i``."""
        if len(indices) == 0:
            raise InputError("cannot fetch an empty batch of windows")
        W = self.window
        where = [self.index[i] for i in indices]
        feats = np.stack([self.features[ci][s : s + W] for ci, s in where])
        pts = np.stack([self.keypoints[ci][s : s + W] for ci, s in where])
        kp = self.normalizer.normalize_many(pts, pts[:, 0])
        return {"features": feats, "keypoints": kp, "reference": kp[:, 0].copy()}

    def raw_windows(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.raw_window(i)

    def feature_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and std of the features over every frame of every clip (for input standardisation)."""
        if not self.features:
            raise InputError("cannot compute feature statistics of an empty dataset")
        total = np.zeros(self.feature_dim)
        total_sq = np.zeros(self.feature_dim)
        n = 0
        for f in self.features:
            f64 = f.astype(np.float64)
            total += f64.sum(0)
            total_sq += (f64**2).sum(0)
            n += len(f)
        mean = total / n
        std = np.sqrt(np.maximum(total_sq / n - mean**2, 0.0))
        return mean.astype(np.float32), np.maximum(std, 1e-5).astype(np.float32)


def fit_normalizer(dataset: ClipWindowDataset, max_sequences: int = 10_000, **kwargs: Any) -> Normalizer:
    """Fit the keypoint statistics on the dataset's windows (each relative to its frame 0), as the paper does on its
    first 10k training sequences (§4.5)."""
    if len(dataset) == 0:
        raise InputError("no training windows: every clip is shorter than the window or has undetected frames")
    return Normalizer.fit(dataset.raw_windows(), max_sequences=max_sequences, **kwargs)


def collate(items: list[dict[str, np.ndarray]] | dict[str, np.ndarray]) -> dict[str, Any]:
    """Stack a list of items into ``torch`` tensors (what ``DataLoader``'s default collate does, without its
    type dispatch); a batch already stacked by :meth:`ClipWindowDataset.__getitems__` is converted as it is."""
    import torch

    if isinstance(items, dict):
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in items.items()}
    return {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}
