"""Fixed-length training windows cut from clips: the unit the Audio2Keypoint model is trained on (paper §4.5).

:class:`ClipWindowDataset` computes each clip's features once over the whole clip (so features near a window's edges
see their true context), then serves windows of ``window`` frames every ``stride`` frames::

    {"features": (W, D) float32,        # the front-end's per-frame features, unnormalised
     "keypoints": (W, 136) float32,     # normalised relative to the window's frame 0 (Normalizer.normalize)
     "reference": (136,) float32}       # == keypoints[0]

Windows that contain a frame without a detected face (``Clip.valid`` false) are skipped. Items are numpy arrays, so
the dataset works with ``torch.utils.data.DataLoader`` (which stacks them into tensors) and without torch.

Clips shorter than the window (one word, ~30 frames) are used when ``min_frames`` is set: a clip of ``n`` frames
(``min_frames <= n < window``) gives one window whose last ``window - n`` frames repeat its last frame, features and
keypoints alike -- exactly how inference pads a sequence shorter than the window
(:class:`~a2k_toolkit.models.inference.WindowedRunner`), so the model sees in training what it sees at inference.
Every item then carries ``"mask": (W,) float32`` (1 for the clip's frames, 0 for padding; all ones for full windows)
and the losses count only the masked-in frames.

With an ``augment`` config (:class:`~a2k_toolkit.training.config.AugmentConfig`) each window is transformed at random
before normalisation: the keypoints of all its frames by one in-plane rotation and aspect change about the reference
nose, and one per-part change of the face shape (jaw, brows, nose, eyes, mouth each shifted and scaled about their
centre: another identity with the same motion); the features by a gain (a shift of log-power features) and, where
noisy copies were made, by a clip copy with added white noise. The random draws of window ``i`` come from a generator
seeded with ``(seed, epoch, i)`` (:meth:`ClipWindowDataset.set_epoch`), so they do not depend on the data loader's
workers or order, and a resumed run sees the same windows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..keypoints import Normalizer, face_scale
from .clips import Clip

# iBUG-68 parts moved as units by the face-shape augmentation
SHAPE_PARTS = (range(0, 17), range(17, 22), range(22, 27), range(27, 36), range(36, 42), range(42, 48), range(48, 68))

FeatureSource = Any  # an AudioFrontend, a callable (waveform, sample_rate) -> (T, D), or one (T, D) array per clip


def faceless_before(num_frames: int, valid: np.ndarray | None) -> np.ndarray:
    """``(num_frames + 1,)`` counts of the frames without a face before each frame: frames ``[a, b)`` all have one
    when ``counts[b] - counts[a] == 0`` (``valid=None``: every frame has one)."""
    if valid is None:
        return np.zeros(num_frames + 1, np.int64)
    return np.concatenate([[0], np.cumsum(~np.asarray(valid, bool)[:num_frames])])


def window_starts(num_frames: int, window: int, stride: int, valid: np.ndarray | None = None) -> list[int]:
    """Start frames of the windows of a clip with ``num_frames`` frames; windows touching an invalid frame are
    left out."""
    if num_frames < window:
        return []
    starts = list(range(0, num_frames - window + 1, stride))
    if valid is None:
        return starts
    bad = faceless_before(num_frames, valid)
    return [s for s in starts if bad[s + window] - bad[s] == 0]


def _lerp_rows(rows: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Rows of ``rows`` (float64, at least 2) linearly interpolated at the fractional positions ``t`` (within
    ``[0, len(rows) - 1]``)."""
    i0 = np.minimum(np.floor(t).astype(int), len(rows) - 2)
    f = (t - i0).reshape(-1, *[1] * (rows.ndim - 1))
    return rows[i0] * (1 - f) + rows[i0 + 1] * f


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
        augment: Any = None,
        seed: int = 0,
        feature_shape: tuple[int, int] | None = None,
        lip_min_coupling: float | None = None,
        min_frames: int | None = None,
    ):
        if window < 2:
            raise InputError(f"window must be at least 2 frames, got {window}")
        if min_frames is not None and not 2 <= min_frames <= window:
            raise InputError(f"min_frames must be between 2 and the window ({window}), got {min_frames}")
        self.window = int(window)
        # clips of min_frames .. window-1 frames give one padded window; items carry a "mask"
        self.min_frames = None if min_frames is None else int(min_frames)
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
        self.lengths: list[int] = []  # per window: its frames from the clip (the rest, up to `window`, is padding)
        self.bad: list[np.ndarray] = []  # per clip: faceless_before(T, valid)
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
            self.bad.append(faceless_before(T, valid))
            starts = window_starts(T, self.window, self.stride, valid)
            self.index += [(ci, s) for s in starts]
            self.lengths += [self.window] * len(starts)
            if self.min_frames is not None and self.min_frames <= T < self.window and self.bad[-1][T] == 0:
                self.index.append((ci, 0))
                self.lengths.append(T)
        dims = {f.shape[1] for f in self.features}
        if len(dims) > 1:
            raise InputError(f"clips have features of different sizes {sorted(dims)}; use one front-end for all")
        self.normalizer = normalizer if normalizer is not None else fit_normalizer(self)
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed, self.epoch = int(seed), 0
        # per clip: 1 if its lip-audio coupling (Clip.meta["corr"], from the dataset builder) reaches lip_min_coupling
        self.lip_weights: list[float] | None = None
        if lip_min_coupling is not None:
            self.lip_weights = [
                float(c.meta.get("corr") is not None and c.meta["corr"] >= lip_min_coupling) for c in self.clips
            ]
        if feature_shape is None:
            feature_shape = getattr(frontend_or_features, "feature_shape", None)
        self.feature_shape = tuple(feature_shape) if feature_shape is not None and len(feature_shape) == 2 else None
        self.noisy: list[list[np.ndarray]] = [[] for _ in self.clips]
        if self.augment is not None and self.augment.noise_snr_db is not None:
            if not callable(frontend_or_features) or isinstance(frontend_or_features, (list, tuple)):
                raise InputError(
                    "augment.noise_snr_db needs an audio front-end (noisy copies are recomputed from the "
                    "waveform), not precomputed features"
                )
            self.noisy = [self._noisy_copies(ci, frontend_or_features) for ci in range(len(self.clips))]

    def _noisy_copies(self, ci: int, source: FeatureSource) -> list[np.ndarray]:
        clip, aug = self.clips[ci], self.augment
        audio = np.asarray(clip.audio, np.float32)
        power = float(np.mean(audio.astype(np.float64) ** 2)) if audio.size else 0.0
        out = []
        for k in range(aug.noise_copies):
            rng = np.random.default_rng([self.seed, 7919, ci, k])
            snr = rng.uniform(*aug.noise_snr_db)
            noise = rng.standard_normal(audio.shape).astype(np.float32) * np.float32(np.sqrt(power / 10 ** (snr / 10)))
            f = np.asarray(source(audio + noise, clip.sample_rate), np.float32)
            out.append(f[: len(self.features[ci])])
        return out

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentation draws :meth:`__getitem__` makes (call before each epoch's loader)."""
        self.epoch = int(epoch)

    @property
    def feature_dim(self) -> int:
        return self.features[0].shape[1] if self.features else 0

    def __len__(self) -> int:
        return len(self.index)

    @property
    def padded(self) -> bool:
        """Whether items carry a ``"mask"`` (short clips are used, :attr:`min_frames`)."""
        return self.min_frames is not None

    def _cut(self, rows: np.ndarray, s: int, n: int) -> np.ndarray:
        """``rows[s : s + n]`` padded to the window by repeating its last row (as inference pads)."""
        win = rows[s : s + n]
        if n < self.window:
            win = np.concatenate([win, np.repeat(win[-1:], self.window - n, axis=0)])
        return win

    def _mask(self, n: int) -> np.ndarray:
        m = np.zeros(self.window, np.float32)
        m[:n] = 1.0
        return m

    def raw_window(self, i: int) -> np.ndarray:
        """Window ``i``'s keypoints in pixels, ``(W, 68, 2)`` (a short clip's padded)."""
        ci, s = self.index[i]
        return self._cut(self.keypoints[ci], s, self.lengths[i])

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        ci, s = self.index[i]
        n = self.lengths[i]
        pts = self._cut(self.keypoints[ci], s, n)
        feats = self._cut(self.features[ci], s, n)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            if rng.random() < self.augment.probability:
                source = self.features[ci]
                if self.noisy[ci]:
                    k = int(rng.integers(len(self.noisy[ci]) + 1))  # 0: the clean audio
                    source = self.noisy[ci][k - 1] if k else source
                feats = self._cut(source, s, n)
                if self.augment.tempo and n == self.window:  # a padded window keeps its rate
                    pts, feats = self._tempo(rng, ci, s, source)
                pts, feats = self._augmented(rng, pts, feats)
        kp = self.normalizer.normalize(pts, pts[0])
        item = {"features": feats, "keypoints": kp, "reference": kp[0].copy()}
        if self.lip_weights is not None:
            item["lip_weight"] = np.float32(self.lip_weights[ci])
        if self.padded:
            item["mask"] = self._mask(n)
        return item

    def _tempo(self, rng: np.random.Generator, ci: int, s: int, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The window cut from ``rate x W`` frames at ``s`` (only over frames with a face) and resampled to ``W``."""
        W = self.window
        T = len(self.keypoints[ci])
        rate = 1.0 + rng.uniform(-self.augment.tempo, self.augment.tempo)
        n = int(round(W * rate))
        if s + n > T or self.bad[ci][min(s + n, T)] - self.bad[ci][s] > 0:
            n = min(n, W)  # no room (or a frame without a face) after the window: only speed up
        if n == W:
            return self.keypoints[ci][s : s + W], source[s : s + W]
        # output frame j (centred at j + 0.5 frame periods) <- source time (j + 0.5) * n / W; the same map per sub-frame
        t = np.clip((np.arange(W) + 0.5) * (n / W) - 0.5, 0, n - 1)
        pts = _lerp_rows(self.keypoints[ci][s : s + n].astype(np.float64), t).astype(np.float32)
        # features: resampled per sub-frame so each output frame holds its sub-frames in time order
        S = max(1, int(self.feature_shape[0])) if self.feature_shape is not None else 1
        sub = source[s : s + n].reshape(n * S, -1).astype(np.float64)
        ts = np.clip((np.arange(W * S) + 0.5) * (n / W) - 0.5, 0, n * S - 1)
        return pts, _lerp_rows(sub, ts).reshape(W, -1).astype(np.float32)

    def _augmented(self, rng: np.random.Generator, pts: np.ndarray, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        aug = self.augment
        p = pts.astype(np.float64)
        ref = p[0]
        size = float(face_scale(ref))
        if aug.shape:
            for part in SHAPE_PARTS:
                idx = list(part)
                centre = ref[idx].mean(0)
                scale = np.exp(rng.uniform(-2 * aug.shape, 2 * aug.shape))
                shift = rng.normal(0.0, aug.shape * size, 2)
                p[:, idx] = (p[:, idx] - centre) * scale + centre + shift
        base = ref[27].copy()
        m = np.eye(2)
        if aug.aspect:
            a = rng.uniform(-aug.aspect / 2, aug.aspect / 2)
            m = np.diag([np.exp(a), np.exp(-a)]) @ m
        if aug.rotate:
            t = np.deg2rad(rng.uniform(-aug.rotate, aug.rotate))
            m = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) @ m
        p = (p - base) @ m.T + base
        if aug.gain_db:
            feats = feats + np.float32(rng.uniform(-aug.gain_db, aug.gain_db))
        return p.astype(np.float32), np.asarray(feats, np.float32)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """Windows ``indices`` stacked into one batch ``{"features": (N, W, D), "keypoints": (N, W, 136),
        "reference": (N, 136)}``, normalised in one vectorised call: what ``torch.utils.data.DataLoader`` fetches
        for a batch (its collate function then receives this dict; :func:`collate` takes either form). The values
        equal stacking ``self[i]`` for each ``i``."""
        if len(indices) == 0:
            raise InputError("cannot fetch an empty batch of windows")
        if self.augment is not None:  # every window draws its own transform
            items = [self[i] for i in indices]
            return {k: np.stack([it[k] for it in items]) for k in items[0]}
        where = [(*self.index[i], self.lengths[i]) for i in indices]
        feats = np.stack([self._cut(self.features[ci], s, n) for ci, s, n in where])
        pts = np.stack([self._cut(self.keypoints[ci], s, n) for ci, s, n in where])
        kp = self.normalizer.normalize_many(pts, pts[:, 0])
        batch = {"features": feats, "keypoints": kp, "reference": kp[:, 0].copy()}
        if self.lip_weights is not None:
            batch["lip_weight"] = np.array([self.lip_weights[ci] for ci, _, _ in where], np.float32)
        if self.padded:
            batch["mask"] = np.stack([self._mask(n) for _, _, n in where])
        return batch

    def raw_windows(self) -> Iterator[np.ndarray]:
        """Every window's keypoints in pixels; only the full-length ones when there are any (padding repeats a
        frame, which would bias the statistics fitted on them)."""
        full = [i for i in range(len(self)) if self.lengths[i] == self.window]
        for i in full or range(len(self)):
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
    return {k: torch.from_numpy(np.stack([np.asarray(it[k]) for it in items])) for k in items[0]}
