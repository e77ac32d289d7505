"""Run generators on real clips and score them: :func:`evaluate` -> :class:`~.results.EvalResults`.

Each clip's frame 0 (ground truth) is the reference, its own audio the input; every generator sees the same features
(computed once per clip). Clips are consumed one at a time, so ``clips`` may be a lazy iterable over a large split.
The metric definitions, the result types and the aggregation live in :mod:`.results` (importable from here too).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from ..audio import frame_rms
from ..components import AudioFrontend, KeypointGenerator
from ..errors import A2KError, InputError
from ..keypoints import NUM_POINTS, Keypoints, Normalizer
from . import groups as G
from . import metrics as M
from .results import METRICS, RATIO_OF, REAL_METRICS, ClipRecord, EvalResults, MetricInfo, _summarise, merge_results

__all__ = [
    "METRICS",
    "MIN_FRAMES",
    "REAL_METRICS",
    "ClipRecord",
    "EvalResults",
    "MetricInfo",
    "evaluate",
    "fit_normalizer",
    "merge_results",
]

# clips with fewer usable frames are skipped (the lagged correlations and jerk need a few frames)
MIN_FRAMES = 8


class _GroundTruthMoments:
    """Streaming version of :meth:`Normalizer.fit` over every evaluated ground-truth sequence (each centred on its
    own frame 0), so clips need only one pass."""

    def __init__(self, scale_by_face: bool = True):
        self._norm = Normalizer(scale_by_face=scale_by_face)
        self.total = np.zeros(NUM_POINTS * 2)
        self.total_sq = np.zeros(NUM_POINTS * 2)
        self.count = 0
        self.sequences = 0

    def add(self, seq: np.ndarray) -> None:
        c = self._norm.centre(seq, seq[0]).astype(np.float64)
        self.total += c.sum(0)
        self.total_sq += (c**2).sum(0)
        self.count += len(c)
        self.sequences += 1

    def normalizer(self) -> Normalizer:
        if self.count == 0:
            raise InputError("no clip could be evaluated, so no normalisation statistics can be fitted")
        mean = self.total / self.count
        std = np.maximum(np.sqrt(np.maximum(self.total_sq / self.count - mean**2, 0.0)), 1e-3)
        return Normalizer(mean=mean, std=std, scale_by_face=self._norm.scale_by_face)


def _usable_frames(clip) -> int:
    """Length of the leading run of frames with a (detected or interpolated) face."""
    valid = getattr(clip, "valid", None)
    T = len(clip.keypoints)
    if valid is None:
        return T
    valid = np.asarray(valid, bool)[:T]
    bad = np.flatnonzero(~valid)
    return int(bad[0]) if len(bad) else T


def _features(frontend: AudioFrontend, audio: np.ndarray, sample_rate: int, T: int, clip_id: str) -> np.ndarray:
    from ..io import resample

    wav = resample(np.asarray(audio, np.float32), int(sample_rate), frontend.sample_rate)
    feats = np.asarray(frontend(wav, frontend.sample_rate))
    if len(feats) >= T:
        return feats[:T]
    if T - len(feats) <= 2:  # rounding of the clip's last frame
        return np.concatenate([feats, np.repeat(feats[-1:], T - len(feats), 0)])
    raise InputError(
        f"clip {clip_id!r}: its audio gives {len(feats)} feature frames but it has {T} keypoint frames; the clip's "
        "audio and keypoints must cover the same duration (re-extract it)"
    )


def _as_points(out: Any, label: str, T: int) -> np.ndarray:
    pts = out.points if isinstance(out, Keypoints) else np.asarray(out)
    if pts.ndim != 3 or pts.shape[0] != T or pts.shape[1] != NUM_POINTS:
        raise A2KError(
            f"generator {label!r} returned keypoints of shape {tuple(pts.shape)} for {T} feature frames; a generator "
            f"must return (T, 68, 2) with T = len(features)"
        )
    pts = np.asarray(pts[..., :2], np.float64)
    if not np.isfinite(pts).all():
        raise A2KError(f"generator {label!r} returned NaN or infinite keypoints")
    return pts


def _real_metrics(gt: np.ndarray, rms: np.ndarray, iod: float, max_lag: int) -> tuple[dict[str, float], np.ndarray]:
    opening = M.mouth_opening(gt, iod)
    corr, lag = M.best_lag_correlation(opening, rms, max_lag)
    return {
        "audio_corr": corr,
        "audio_lag": lag,
        "mouth_std": M.opening_std(opening),
        "head_motion": M.head_motion(gt, iod),
        "jerk": M.jerk(gt, iod),
        "identity": M.identity_error(gt, gt[0], iod),
    }, opening


def _generator_metrics(pred, gt, rms, real_open, real: dict[str, float], iod: float, alpha: float, max_lag: int):
    opening = M.mouth_opening(pred, iod)
    lip_corr, lip_lag = M.best_lag_correlation(real_open, opening, max_lag)
    audio_corr, audio_lag = M.best_lag_correlation(opening, rms, max_lag)
    m: dict[str, float | None] = {
        "l1": None,  # filled in once the normaliser is known
        "pck": M.pck(pred, gt, alpha),
        "lmd": M.lmd(pred, gt, iod),
        "lip_corr": lip_corr,
        "lip_lag": lip_lag,
        "audio_corr": audio_corr,
        "audio_lag": audio_lag,
        "mouth_std": M.opening_std(opening),
        "head_motion": M.head_motion(pred, iod),
        "jerk": M.jerk(pred, iod),
        "identity": M.identity_error(pred, gt[0], iod),
    }
    for key, (num, den) in RATIO_OF.items():
        m[key] = M.ratio(m[num], real[den])
    return m, opening


def fit_normalizer(clips: Iterable[Any]) -> Normalizer:
    """L1 statistics fitted on the ground truth of ``clips`` (their usable frames), as :func:`evaluate` fits them
    when it is given none; for scoring several evaluations (the folds of a cross-validation) in one unit."""
    moments = _GroundTruthMoments()
    for clip in clips:
        T = _usable_frames(clip)
        if T >= MIN_FRAMES:
            moments.add(np.asarray(clip.keypoints[:T, :, :2], np.float64))
    return moments.normalizer()


class _Scoring(NamedTuple):
    normalizer: Normalizer | None  # None: L1 waits for the statistics fitted on the evaluated clips
    alpha: float
    max_lag: int
    seed: int | None
    progress: Callable[[str], None] | None


def evaluate(
    generators: Mapping[str, KeypointGenerator],
    clips: Iterable[Any],
    frontend: AudioFrontend,
    *,
    normalizer: Normalizer | None = None,
    alpha: float = M.PCK_ALPHA,
    max_lag: int = M.MAX_LAG,
    seed: int | None = 0,
    keep_series: int = 3,
    progress: Callable[[str], None] | None = None,
    candidates: Mapping[str, str] | None = None,
    predictions: Callable[[ClipRecord, np.ndarray, dict[str, np.ndarray]], None] | None = None,
) -> EvalResults:
    """Run every generator on every clip (frame 0 of the ground truth as the reference, the clip's own audio as
    input) and score the predictions against the ground truth.

    ``generators`` maps a report label to a built generator; ``clips`` yields :class:`~a2k_toolkit.data.clips.Clip`
    (or anything with ``keypoints``, ``audio``, ``sample_rate``, ``fps``, ``clip_id``, optionally ``valid``).
    ``normalizer`` gives the L1 statistics (e.g. the training set's); when ``None`` they are fitted on the ground
    truth of the evaluated clips. Only a clip's leading run of frames with a face is evaluated; clips with fewer
    than :data:`MIN_FRAMES` such frames are skipped (listed in ``skipped``). Aggregates are unweighted means over
    clips; aggregate ratios are ratios of those means. ``candidates`` maps labels to the candidate they are one seed
    of, for the spread over seeds (labels ``"X: seed N"`` count as seeds of ``X`` without it); each clip's family and
    language come from its ``meta`` (:mod:`.groups`). ``predictions``, when given, is called once per scored clip
    with its record, its ground truth (T, 68, 2) and each label's predicted points (for analyses beyond the report:
    ``a2k eval --save-predictions``).
    """
    _check_request(generators, frontend, candidates)
    scoring = _Scoring(normalizer, alpha, max_lag, seed, progress)
    moments = _GroundTruthMoments()
    records: list[ClipRecord] = []
    skipped: list[dict[str, str]] = []
    series: dict[str, dict[str, np.ndarray]] = {}
    for i, clip in enumerate(clips):
        clip_id = getattr(clip, "clip_id", "") or f"clip{i}"
        T = _evaluated_frames(clip, clip_id, frontend, skipped)
        if T is None:
            continue
        rec, gt, curves, preds = _score_clip(clip, clip_id, T, generators, frontend, scoring)
        if predictions is not None:
            predictions(rec, gt, preds)
        if len(series) < keep_series:
            series[clip_id] = curves
        if normalizer is None:
            moments.add(gt)
        records.append(rec)
    if not records:
        raise InputError(
            f"no clip could be evaluated ({len(skipped)} skipped: each needs at least {MIN_FRAMES} frames with a face "
            "from frame 0); check the clip sources"
        )
    if normalizer is None:
        normalizer = moments.normalizer()
        for rec in records:
            for label, terms in rec._l1_terms.items():
                rec.generators[label]["l1"] = float((terms / normalizer.std).mean())
            rec._l1_terms.clear()
    labels = list(generators)
    aggregate, real_aggregate = _summarise(records, labels)
    settings = {
        "alpha": alpha,
        "max_lag": max_lag,
        "seed": seed,
        "fps": frontend.fps,
        "min_frames": MIN_FRAMES,
        "frontend": {"name": frontend.name, "params": frontend.params.model_dump(mode="json")},
        "normalizer_source": (
            "given"
            if scoring.normalizer is not None
            else f"fitted on the ground truth of the {moments.sequences} evaluated clips"
        ),
        "distance_unit": "IOD = inter-ocular distance (eye centre to eye centre) of the clip's frame 0",
    }
    gens = {label: {"name": g.name, "params": g.params.model_dump(mode="json")} for label, g in generators.items()}
    return EvalResults(
        labels, gens, records, aggregate, real_aggregate, skipped, settings, normalizer, series, dict(candidates or {})
    )


def _check_request(generators: Mapping[str, KeypointGenerator], frontend: AudioFrontend, candidates) -> None:
    if not generators:
        raise InputError("no generators to evaluate; give at least one (for example `static`)")
    unknown = sorted(set(candidates or {}) - set(generators))
    if unknown:
        raise InputError(
            f"candidates name labels that are not evaluated: {', '.join(map(repr, unknown))}; the "
            f"labels are {', '.join(map(repr, generators))}"
        )
    for gen in generators.values():
        gen.check_frontend(frontend)


def _evaluated_frames(clip, clip_id: str, frontend: AudioFrontend, skipped: list[dict[str, str]]) -> int | None:
    """The number of frames of ``clip`` to evaluate, or ``None`` (recorded in ``skipped``) when too few."""
    if abs(float(clip.fps) - frontend.fps) > 1e-3:
        raise InputError(
            f"clip {clip_id!r} is at {clip.fps:g} fps but the audio front-end produces {frontend.fps:g} fps "
            "features; re-extract the clip at the front-end's frame rate"
        )
    T = _usable_frames(clip)
    if T < MIN_FRAMES:
        reason = f"only {T} usable frames (need {MIN_FRAMES}) from frame 0"
        warnings.warn(f"skipping clip {clip_id!r}: {reason}", UserWarning, stacklevel=3)
        skipped.append({"clip_id": clip_id, "reason": reason})
        return None
    return T


def _score_clip(
    clip, clip_id: str, T: int, generators: Mapping[str, KeypointGenerator], frontend: AudioFrontend, s: _Scoring
) -> tuple[ClipRecord, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The record of one clip (the real clip's metrics and each generator's), its ground truth, the mouth
    opening (and audio RMS) curves for the plots, and each generator's predicted points."""
    notes = []
    if T < len(clip.keypoints):
        notes.append(f"evaluated the first {T} of {len(clip.keypoints)} frames (no face after that)")
    gt = np.asarray(clip.keypoints[:T, :, :2], np.float64)
    sr = int(clip.sample_rate)
    audio = np.asarray(clip.audio, np.float32)[: int(round(T * sr / clip.fps))]
    iod = M.reference_iod(gt)
    rms = frame_rms(audio, sr, T, clip.fps)
    real, real_open = _real_metrics(gt, rms, iod, s.max_lag)
    feats = _features(frontend, audio, sr, T, clip_id)
    size = tuple(getattr(clip, "frame_size", None) or ())
    image_size = size if len(size) == 2 and all(size) else None
    ref = Keypoints(gt[0].astype(np.float32), fps=clip.fps, image_size=image_size)
    meta = getattr(clip, "meta", None) or {}
    rec = ClipRecord(
        clip_id,
        getattr(clip, "identity", ""),
        getattr(clip, "source", ""),
        T,
        T / clip.fps,
        real,
        {},
        notes,
        G.family_of(meta),
        G.language_of(meta),
        {k: str(meta[k]) for k in ("family", "language", "group") if meta.get(k)},
    )
    curves = {"real": real_open, "rms": rms}
    preds: dict[str, np.ndarray] = {}
    for label, gen in generators.items():
        if s.progress:
            s.progress(f"{clip_id}: {label}")
        pred = _as_points(gen.generate(feats, ref, seed=s.seed), label, T)
        m, opening = _generator_metrics(pred, gt, rms, real_open, real, iod, s.alpha, s.max_lag)
        if s.normalizer is not None:
            m["l1"] = M.l1_normalised(pred, gt, s.normalizer)
        else:
            rec._l1_terms[label] = M.l1_per_coordinate(pred, gt, Normalizer(scale_by_face=True))
        rec.generators[label] = m
        curves[label] = opening
        preds[label] = pred
    return rec, gt, curves, preds
