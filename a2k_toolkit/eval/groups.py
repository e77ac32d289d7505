"""Selection-grade views of an evaluation: every figure as the **mean over source families**.

The clips of a Vox-KP dataset come from a few source families (VoxCeleb2, HDTF, GRID, ...) in very unequal numbers
(one family may have hundreds of times the clips of another), so a mean over clips is mostly a mean over the largest
family. The selection protocol (docs/evaluation.md, "Mean over families") counts each family once:

* a clip's family is its ``meta["family"]`` mapped through :data:`FAMILY_ALIASES` (``lrs2``, ``lrs3`` and ``lrw``
  are one family, ``lipread``); a clip without one is in family ``unknown``; its language likewise
  (:data:`LANGUAGE_ALIASES`);
* a family's value of a metric is the mean over the family's clips, computed exactly as the overall aggregate is
  (unweighted by clip; a ratio metric is the ratio of the means over the family's clips);
* the family mean is the unweighted mean of the family values, reported with their min and max.

This module holds the tables and the arithmetic on aggregates; grouping clips and aggregating each group is
:meth:`a2k_toolkit.eval.evaluate.EvalResults.selection`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.folds import FAMILY_ALIASES, family_of  # noqa: F401 - one definition
from ..data.folds import UNKNOWN_FAMILY as UNKNOWN
from . import metrics as M

# language as written -> its ISO 639-1 code (lower-cased, region subtags such as en-US dropped first)
LANGUAGE_ALIASES: dict[str, str] = {
    "english": "en",
    "eng": "en",
    "arabic": "ar",
    "ara": "ar",
    "chinese": "zh",
    "mandarin": "zh",
    "cmn": "zh",
    "zho": "zh",
    "german": "de",
    "deu": "de",
    "french": "fr",
    "fra": "fr",
    "spanish": "es",
    "spa": "es",
}
ENGLISH = "en"
NON_ENGLISH = "non-en"
STATIC = "static"  # the generator the LMD ratio divides by
PROCEDURAL = "procedural"  # the generator "families won on lip sync" counts against
# "A: seed 0", "A: seed 1", ... are seeds of the candidate "A" unless their entries name a candidate
SEED_LABEL = re.compile(r"^(?P<candidate>.*\S)\s*:\s*seed\s*\d+\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    better: str  # as MetricInfo.better: "lower", "higher", "1" or ""
    doc: str


# the headline figures of the selection protocol, per family and as the family mean
HEADLINE: tuple[Figure, ...] = (
    Figure("lip_corr", "lip corr", "higher", "lip-sync correlation with the real mouth (lip_corr)"),
    Figure(
        "lmd_vs_static",
        "LMD ×static",
        "lower",
        "mouth LMD / the `static` generator's LMD on the same clips (ratio of the means); only with `static`",
    ),
    Figure("mouth_ratio", "mouth ×real", "1", "mouth-opening std, pred / real (ratio of the means)"),
    Figure("head_ratio", "head ×real", "1", "head motion, pred / real (ratio of the means)"),
    Figure("identity_ratio", "identity ×real", "", "identity error, pred / real (ratio of the means)"),
)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip().lower()


def language_of(meta: Mapping[str, Any] | None) -> str:
    """A clip's language code: ``meta["language"]`` lower-cased, without a region (``en-US`` -> ``en``), mapped
    through :data:`LANGUAGE_ALIASES`; ``unknown`` when the clip has none."""
    raw = re.split(r"[-_]", _text((meta or {}).get("language")))[0]
    return LANGUAGE_ALIASES.get(raw, raw) if raw else UNKNOWN


def language_groups(languages: Iterable[str]) -> dict[str, list[str]]:
    """Groups of the language table -> the languages each pools: ``en``; ``non-en`` (every known language but
    English); each non-English language on its own when there are several; ``unknown``. Only non-empty groups."""
    langs = sorted(set(languages))
    others = [lang for lang in langs if lang not in (ENGLISH, UNKNOWN)]
    groups: dict[str, list[str]] = {}
    if ENGLISH in langs:
        groups[ENGLISH] = [ENGLISH]
    if others:
        groups[NON_ENGLISH] = others
    if len(others) > 1:
        groups.update({lang: [lang] for lang in others})
    if UNKNOWN in langs:
        groups[UNKNOWN] = [UNKNOWN]
    return groups


def family_order(families: Iterable[str]) -> list[str]:
    """Families sorted by name, ``unknown`` last."""
    return sorted(set(families), key=lambda f: (f == UNKNOWN, f))


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def headline(aggregate: Mapping[str, Mapping[str, Mapping[str, Any]]], labels: list[str]) -> dict[str, dict]:
    """``{label: {figure: value}}`` from one group's aggregate (``label -> metric -> {mean, ...}``)."""
    static_lmd = aggregate[STATIC]["lmd"]["mean"] if STATIC in labels else None
    out = {}
    for label in labels:
        agg = aggregate[label]
        out[label] = {}
        for fig in HEADLINE:
            if fig.key == "lmd_vs_static":
                if STATIC in labels:
                    out[label][fig.key] = M.ratio(agg["lmd"]["mean"], static_lmd)
            else:
                out[label][fig.key] = agg[fig.key]["mean"]
    return out


def spread(values: Mapping[str, float | None]) -> dict[str, Any]:
    """Unweighted mean, min and max of the defined values of ``{family: value}``, the families of the min and max,
    and how many families had a value."""
    used = {k: float(v) for k, v in values.items() if _finite(v)}
    if not used:
        return {"mean": None, "min": None, "max": None, "min_family": None, "max_family": None, "n_families": 0}
    lo, hi = min(used, key=used.get), max(used, key=used.get)
    return {
        "mean": float(np.mean(list(used.values()))),
        "min": used[lo],
        "max": used[hi],
        "min_family": lo,
        "max_family": hi,
        "n_families": len(used),
    }


def family_means(per_family: Mapping[str, Mapping[str, Mapping[str, float | None]]], keys: Iterable[str]) -> dict:
    """``{key: spread}`` over families of ``per_family[family][key]`` (family values of one generator), for the keys
    some family has."""
    return {
        key: spread({fam: vals.get(key) for fam, vals in per_family.items()})
        for key in keys
        if any(key in vals for vals in per_family.values())
    }


def lip_sync_wins(
    per_family: Mapping[str, Mapping[str, Mapping[str, float | None]]], labels: list[str], against: str = PROCEDURAL
) -> dict[str, Any] | None:
    """Families where each generator's lip corr is above ``against``'s (``per_family[family][label][figure]``):
    ``{"against", "labels": {label: {won, lost, tied, n_families}}}``; ``None`` without ``against`` among the
    labels. Families where either value is undefined are left out."""
    if against not in labels:
        return None
    out = {}
    for label in labels:
        if label == against:
            continue
        won, lost, tied = [], [], []
        for fam, vals in per_family.items():
            mine, theirs = vals[label].get("lip_corr"), vals[against].get("lip_corr")
            if not (_finite(mine) and _finite(theirs)):
                continue
            (won if mine > theirs else lost if mine < theirs else tied).append(fam)
        out[label] = {"won": won, "lost": lost, "tied": tied, "n_families": len(won) + len(lost) + len(tied)}
    return {"against": against, "labels": out}


def candidate_groups(labels: list[str], explicit: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """``{candidate: [labels]}``: a label's candidate is ``explicit[label]`` (the entry's ``candidate:``), else the
    prefix before ``: seed N`` (``"A: seed 3"`` -> ``"A"``); labels with neither are no candidate's."""
    explicit = explicit or {}
    out: dict[str, list[str]] = {}
    for label in labels:
        name = explicit.get(label)
        if not name:
            m = SEED_LABEL.match(label)
            name = m.group("candidate") if m else None
        if name:
            out.setdefault(name, []).append(label)
    return out


def _stats(values: Mapping[str, float | None]) -> dict[str, Any]:
    used = [float(v) for v in values.values() if _finite(v)]
    return {
        "mean": float(np.mean(used)) if used else None,
        "std": float(np.std(used, ddof=1)) if len(used) >= 2 else None,
        "min": min(used) if used else None,
        "max": max(used) if used else None,
        "n_seeds": len(used),
        "values": dict(values),
    }


def seed_spread(
    groups: Mapping[str, list[str]],
    family_headline: Mapping[str, Mapping[str, Mapping[str, Any]]],
    wins: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Per candidate: mean, std (n − 1), min and max over its seeds of each family-mean headline figure
    (``family_headline[label][figure]["mean"]``) and of the number of families won on lip sync."""
    out = {}
    for name, members in groups.items():
        figures = {
            fig.key: _stats({lb: family_headline[lb][fig.key]["mean"] for lb in members})
            for fig in HEADLINE
            if all(fig.key in family_headline[lb] for lb in members)
        }
        entry: dict[str, Any] = {"labels": list(members), "figures": figures}
        if wins is not None:
            won = {lb: (len(wins["labels"][lb]["won"]) if lb in wins["labels"] else None) for lb in members}
            entry["lip_sync_won"] = _stats(won)
        out[name] = entry
    return out
