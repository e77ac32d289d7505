"""Run generators on real clips and score them: :func:`evaluate` -> :class:`EvalResults`.

Each clip's frame 0 (ground truth) is the reference, its own audio the input; every generator sees the same features
(computed once per clip). Clips are consumed one at a time, so ``clips`` may be a lazy iterable over a large split.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..audio import frame_rms
from ..components import AudioFrontend, KeypointGenerator
from ..errors import A2KError, InputError
from ..keypoints import NUM_POINTS, Keypoints, Normalizer
from . import groups as G
from . import metrics as M

# clips with fewer usable frames are skipped (the lagged correlations and jerk need a few frames)
MIN_FRAMES = 8


@dataclass(frozen=True)
class MetricInfo:
    key: str
    title: str
    unit: str
    better: str  # "lower", "higher", "1" (closest to one) or "" (informative)
    doc: str


# Metrics per (generator, clip). Ratios are prediction / real clip.
METRICS: tuple[MetricInfo, ...] = (
    MetricInfo("l1", "L1", "norm. units", "lower", "paper §5.3 L1 of normalised coordinates, frames 1..T-1"),
    MetricInfo("pck", "PCK@0.02", "%", "higher", "share of keypoints within 0.02·max(h,w) of the GT box"),
    MetricInfo("lmd", "LMD", "IOD", "lower", "mouth points relative to the nose tip vs GT"),
    MetricInfo("lip_corr", "lip corr", "r", "higher", "pred vs real mouth opening, best lag within ±3"),
    MetricInfo("lip_lag", "lip lag", "frames", "", "lag of lip corr; > 0: prediction late"),
    MetricInfo("audio_corr", "audio corr", "r", "higher", "pred mouth opening vs audio RMS, best lag within ±3"),
    MetricInfo("audio_lag", "audio lag", "frames", "", "lag of audio corr; > 0: mouth leads the sound"),
    MetricInfo("mouth_std", "mouth std", "IOD", "", "std of the predicted mouth opening"),
    MetricInfo("mouth_ratio", "mouth amp.", "pred/real", "1", "mouth-opening std, pred / real"),
    MetricInfo("head_motion", "head motion", "IOD", "", "nose-tip trajectory spread (2-D std)"),
    MetricInfo("head_ratio", "head amp.", "pred/real", "1", "head motion, pred / real"),
    MetricInfo("jerk", "jerk", "IOD/frame³", "lower", "mean |third difference| of all keypoints"),
    MetricInfo("jerk_ratio", "jerk ratio", "pred/real", "", "jerk, pred / real"),
    MetricInfo("identity", "identity err.", "IOD", "lower", "pose-aligned brow/eye/nose distance to the reference"),
    MetricInfo("identity_ratio", "identity ratio", "pred/real", "", "identity error, pred / real"),
)
# Metrics of the real clips themselves (ground truth): the reference the ratios divide by.
REAL_METRICS: tuple[MetricInfo, ...] = (
    MetricInfo("audio_corr", "audio corr", "r", "", "real mouth opening vs audio RMS, best lag within ±3"),
    MetricInfo("audio_lag", "audio lag", "frames", "", "lag of audio corr; > 0: mouth leads the sound"),
    MetricInfo("mouth_std", "mouth std", "IOD", "", "std of the real mouth opening"),
    MetricInfo("head_motion", "head motion", "IOD", "", "nose-tip trajectory spread (2-D std)"),
    MetricInfo("jerk", "jerk", "IOD/frame³", "", "mean |third difference| of all keypoints"),
    MetricInfo("identity", "identity var.", "IOD", "", "pose-aligned brow/eye/nose distance of each frame to frame 0"),
)
# aggregate ratio = ratio of the aggregated means (robust to clips where the real value is near 0)
RATIO_OF: dict[str, tuple[str, str]] = {
    "mouth_ratio": ("mouth_std", "mouth_std"),
    "head_ratio": ("head_motion", "head_motion"),
    "jerk_ratio": ("jerk", "jerk"),
    "identity_ratio": ("identity", "identity"),
}


@dataclass
class ClipRecord:
    """Per-clip numbers: the real clip's own metrics and each generator's."""

    clip_id: str
    identity: str
    source: str
    num_frames: int
    seconds: float
    real: dict[str, float]
    generators: dict[str, dict[str, float | None]]
    notes: list[str] = field(default_factory=list)
    family: str = G.UNKNOWN  # groups.family_of(clip.meta): the source family it counts in
    language: str = G.UNKNOWN  # groups.language_of(clip.meta)
    meta: dict[str, str] = field(default_factory=dict)  # the clip's family, language and group as its meta has them
    # L1 needs the normaliser's std, known only after the last clip when it is fitted on the evaluated set
    _l1_terms: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clip_id": self.clip_id,
            "identity": self.identity,
            "source": self.source,
            "num_frames": self.num_frames,
            "seconds": round(self.seconds, 4),
            "real": self.real,
            "family": self.family,
            "language": self.language,
            "meta": self.meta,
            "generators": self.generators,
            "notes": self.notes,
        }


@dataclass
class EvalResults:
    """Everything :func:`evaluate` measured; :meth:`to_dict` is what ``results.json`` holds."""

    labels: list[str]
    generators: dict[str, dict[str, Any]]  # label -> {"name", "params"}
    clips: list[ClipRecord]
    aggregate: dict[str, dict[str, dict[str, float | int | None]]]  # label -> metric -> {mean, n_clips, seconds}
    real_aggregate: dict[str, dict[str, float | int | None]]
    skipped: list[dict[str, str]]
    settings: dict[str, Any]
    normalizer: Normalizer
    # mouth opening (and audio RMS) over time for the first few clips, for plots: clip_id -> name -> (T,)
    series: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    # label -> the candidate it is one seed of (the config's `candidate:`); labels "X: seed N" count as seeds of "X"
    candidates: dict[str, str] = field(default_factory=dict)

    @property
    def num_clips(self) -> int:
        return len(self.clips)

    @property
    def seconds(self) -> float:
        return float(sum(c.seconds for c in self.clips))

    def to_dict(self, selection: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every number, as results.json holds it; ``selection`` is :meth:`selection` when the caller has it."""
        return {
            "labels": self.labels,
            "generators": self.generators,
            "num_clips": self.num_clips,
            "seconds": round(self.seconds, 4),
            "settings": self.settings,
            "metrics": {m.key: {"title": m.title, "unit": m.unit, "better": m.better, "doc": m.doc} for m in METRICS},
            "real_metrics": {m.key: {"title": m.title, "unit": m.unit, "doc": m.doc} for m in REAL_METRICS},
            "aggregate": self.aggregate,
            "real_aggregate": self.real_aggregate,
            "selection": selection if selection is not None else self.selection(),
            "clips": [c.to_dict() for c in self.clips],
            "skipped": self.skipped,
            "normalizer": self.normalizer.to_dict(),
        }

    def selection(self) -> dict[str, Any]:
        """The selection protocol's numbers (docs/evaluation.md, "Mean over families"), computed from the clips:
        per-family aggregates of every metric, their means over families (with min and max), the headline figures
        per family and as family means, families won on lip sync against ``procedural``, the same by language
        group, and the spread over the seeds of each candidate."""
        view = _family_view(self.clips, self.labels, full=True)
        languages = {}
        for group, langs in G.language_groups(c.language for c in self.clips).items():
            recs = [c for c in self.clips if c.language in langs]
            languages[group] = {"languages": langs, **_family_view(recs, self.labels, full=False)}
        groups = G.candidate_groups(self.labels, self.candidates)
        return {
            "figures": {f.key: {"title": f.title, "better": f.better, "doc": f.doc} for f in G.HEADLINE},
            "family_aliases": dict(G.FAMILY_ALIASES),
            "language_aliases": dict(G.LANGUAGE_ALIASES),
            **view,
            "languages": languages,
            "candidates": G.seed_spread(groups, view["headline"], view["lip_sync_wins"]),
        }


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


def _aggregate(clips: list[ClipRecord], values: Callable[[ClipRecord], dict], keys: list[str]) -> dict[str, dict]:
    out = {}
    for key in keys:
        used = [(values(c).get(key), c.seconds) for c in clips]
        used = [(v, s) for v, s in used if v is not None and math.isfinite(v)]
        out[key] = {
            "mean": float(np.mean([v for v, _ in used])) if used else None,
            "n_clips": len(used),
            "seconds": round(float(sum(s for _, s in used)), 4),
        }
    return out


def _summarise(records: list[ClipRecord], labels: list[str]) -> tuple[dict, dict]:
    """``(aggregate, real_aggregate)``: unweighted means over clips; aggregate ratios are ratios of those means."""
    keys = [m.key for m in METRICS]
    aggregate = {label: _aggregate(records, lambda c, lb=label: c.generators[lb], keys) for label in labels}
    real_aggregate = _aggregate(records, lambda c: c.real, [m.key for m in REAL_METRICS])
    for label in labels:
        for key, (num, den) in RATIO_OF.items():
            aggregate[label][key] = {
                **aggregate[label][num],
                "mean": M.ratio(aggregate[label][num]["mean"], real_aggregate[den]["mean"]),
            }
    return aggregate, real_aggregate


def _family_view(records: list[ClipRecord], labels: list[str], *, full: bool) -> dict[str, Any]:
    """Per-family aggregates (as :func:`_summarise`, on each family's clips) and their means over families. With
    ``full`` every metric's family mean too; otherwise the headline figures only."""
    by_family: dict[str, list[ClipRecord]] = {}
    for rec in records:
        by_family.setdefault(rec.family, []).append(rec)
    families: dict[str, dict[str, Any]] = {}
    for fam in G.family_order(by_family):
        recs = by_family[fam]
        aggregate, real_aggregate = _summarise(recs, labels)
        languages: dict[str, int] = {}
        for rec in recs:
            languages[rec.language] = languages.get(rec.language, 0) + 1
        families[fam] = {
            "n_clips": len(recs),
            "seconds": round(float(sum(r.seconds for r in recs)), 4),
            "sources": sorted({r.meta.get("family", "").strip().lower() for r in recs} - {""}),
            "languages": languages,
            "headline": G.headline(aggregate, labels),
        }
        if full:
            families[fam].update(aggregate=aggregate, real_aggregate=real_aggregate)
    per_label = {lb: {fam: v["headline"][lb] for fam, v in families.items()} for lb in labels}
    keys = [f.key for f in G.HEADLINE]
    out: dict[str, Any] = {
        "n_clips": len(records),
        "seconds": round(float(sum(r.seconds for r in records)), 4),
        "families": families,
        "headline": {lb: G.family_means(per_label[lb], keys) for lb in labels},
        "lip_sync_wins": G.lip_sync_wins({fam: v["headline"] for fam, v in families.items()}, labels),
    }
    if full:
        metric_keys = [m.key for m in METRICS]
        out["family_mean"] = {
            lb: G.family_means(
                {fam: {k: v["mean"] for k, v in f["aggregate"][lb].items()} for fam, f in families.items()}, metric_keys
            )
            for lb in labels
        }
        out["real_family_mean"] = G.family_means(
            {fam: {k: v["mean"] for k, v in f["real_aggregate"].items()} for fam, f in families.items()},
            [m.key for m in REAL_METRICS],
        )
    return out


def fit_normalizer(clips: Iterable[Any]) -> Normalizer:
    """L1 statistics fitted on the ground truth of ``clips`` (their usable frames), as :func:`evaluate` fits them
    when it is given none; for scoring several evaluations (the folds of a cross-validation) in one unit."""
    moments = _GroundTruthMoments()
    for clip in clips:
        T = _usable_frames(clip)
        if T >= MIN_FRAMES:
            moments.add(np.asarray(clip.keypoints[:T, :, :2], np.float64))
    return moments.normalizer()


def merge_results(parts: list[EvalResults], settings: dict[str, Any] | None = None) -> EvalResults:
    """One :class:`EvalResults` over the clips of several evaluations of the same labels on disjoint clips (the
    folds of a cross-validation: each fold's models scored on the people they never saw). Aggregates are recomputed
    over all clips; ``settings`` are added to the first part's; ``generators`` are the first part's."""
    if not parts:
        raise InputError("nothing to merge: no evaluation results given")
    labels = parts[0].labels
    for part in parts[1:]:
        if part.labels != labels:
            raise InputError(f"cannot merge evaluations of different generators: {part.labels} vs {labels}")
    records = [c for part in parts for c in part.clips]
    aggregate, real_aggregate = _summarise(records, labels)
    series: dict[str, dict[str, np.ndarray]] = {}
    for part in parts:
        series.update({k: v for k, v in part.series.items() if len(series) < 3 and k not in series})
    return EvalResults(
        labels,
        parts[0].generators,
        records,
        aggregate,
        real_aggregate,
        [s for part in parts for s in part.skipped],
        {**parts[0].settings, **(settings or {})},
        parts[0].normalizer,
        series,
        dict(parts[0].candidates),
    )


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
    language come from its ``meta`` (:mod:`.groups`).
    """
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
    fitting = normalizer is None
    moments = _GroundTruthMoments()
    records: list[ClipRecord] = []
    skipped: list[dict[str, str]] = []
    series: dict[str, dict[str, np.ndarray]] = {}
    for i, clip in enumerate(clips):
        clip_id = getattr(clip, "clip_id", "") or f"clip{i}"
        if abs(float(clip.fps) - frontend.fps) > 1e-3:
            raise InputError(
                f"clip {clip_id!r} is at {clip.fps:g} fps but the audio front-end produces {frontend.fps:g} fps "
                "features; re-extract the clip at the front-end's frame rate"
            )
        T = _usable_frames(clip)
        if T < MIN_FRAMES:
            reason = f"only {T} usable frames (need {MIN_FRAMES}) from frame 0"
            warnings.warn(f"skipping clip {clip_id!r}: {reason}", UserWarning, stacklevel=2)
            skipped.append({"clip_id": clip_id, "reason": reason})
            continue
        notes = []
        if T < len(clip.keypoints):
            notes.append(f"evaluated the first {T} of {len(clip.keypoints)} frames (no face after that)")
        gt = np.asarray(clip.keypoints[:T, :, :2], np.float64)
        sr = int(clip.sample_rate)
        audio = np.asarray(clip.audio, np.float32)[: int(round(T * sr / clip.fps))]
        iod = M.reference_iod(gt)
        rms = frame_rms(audio, sr, T, clip.fps)
        real, real_open = _real_metrics(gt, rms, iod, max_lag)
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
        keep = len(series) < keep_series
        if keep:
            series[clip_id] = {"real": real_open, "rms": rms}
        if fitting:
            moments.add(gt)
        for label, gen in generators.items():
            if progress:
                progress(f"{clip_id}: {label}")
            pred = _as_points(gen.generate(feats, ref, seed=seed), label, T)
            m, opening = _generator_metrics(pred, gt, rms, real_open, real, iod, alpha, max_lag)
            if normalizer is not None:
                m["l1"] = M.l1_normalised(pred, gt, normalizer)
            else:
                rec._l1_terms[label] = M.l1_per_coordinate(pred, gt, Normalizer(scale_by_face=True))
            rec.generators[label] = m
            if keep:
                series[clip_id][label] = opening
        records.append(rec)
    if not records:
        raise InputError(
            f"no clip could be evaluated ({len(skipped)} skipped: each needs at least {MIN_FRAMES} frames with a face "
            "from frame 0); check the clip sources"
        )
    if fitting:
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
            f"fitted on the ground truth of the {moments.sequences} evaluated clips" if fitting else "given"
        ),
        "distance_unit": "IOD = inter-ocular distance (eye centre to eye centre) of the clip's frame 0",
    }
    gens = {label: {"name": g.name, "params": g.params.model_dump(mode="json")} for label, g in generators.items()}
    return EvalResults(
        labels, gens, records, aggregate, real_aggregate, skipped, settings, normalizer, series, dict(candidates or {})
    )
