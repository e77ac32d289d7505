"""What an evaluation measured: the metric definitions (:data:`METRICS`, :data:`REAL_METRICS`), the per-clip
numbers (:class:`ClipRecord`), and :class:`EvalResults` with its aggregates over clips, over families and languages
(the selection protocol), and :func:`merge_results` for the folds of a cross-validation.

:func:`~.evaluate.evaluate` produces these; :mod:`.report` writes them out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..keypoints import Normalizer
from . import groups as G
from . import metrics as M


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
