"""Cross-validation by identity: the people of a set of clips dealt into ``folds`` groups.

A data set of a few dozen people is too small for a fixed validation split to rank training recipes (two people
cannot tell a good seed from a bad one, docs/results.md). K-fold cross-validation over *identities* uses every person
once as held-out: train on the other folds, evaluate on this one, and average over the folds. Training
(``data.folds`` / ``data.fold``) and ``a2k eval --fold I/N`` deal the same clips into the same folds, so a fold's
model is always scored on exactly the people it never saw.

The deal depends only on the set of identity names and ``seed``: the sorted names are shuffled with a generator
seeded by ``seed`` and dealt round-robin, so fold sizes differ by at most one person.

Clips carry two more facts from a named-column manifest (``a2k dataset build clips.csv``, data/sources.py):

* ``group``: identities that may be one person (the same recording in several crops, a face cluster that may be
  split in two) share a group, and a group is dealt as one unit, so the same person is never on both sides;
* ``family``: the source family (voxceleb2, grid, lrcar, ...). Units are dealt family by family (strata), continuing
  the round-robin, so every fold holds a share of every family that has enough people -- a fold without any grid
  speaker could not say how a recipe does on grid.

:func:`family_of` is the one place that maps the recorded family to the family that results are reported by
(:data:`FAMILY_ALIASES`: the lip-reading crops lrs2, lrs3 and lrw count as one family, ``lipread``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ..errors import InputError
from .sources import stable_hash

T = TypeVar("T")


# recorded family -> reported family (the lip-reading crops are one family however many corpora they come from)
FAMILY_ALIASES = {"lrs2": "lipread", "lrs3": "lipread", "lrw": "lipread"}
UNKNOWN_FAMILY = "unknown"


def family_of(item: Any) -> str:
    """The reported family of a clip (or of its ``meta`` dict, or None): ``meta["family"]`` lower-cased and mapped
    through :data:`FAMILY_ALIASES`; ``"unknown"`` when the dataset records none. Training (folds, balance) and
    evaluation (the mean over families) both count families by this."""
    meta = item if isinstance(item, Mapping) else getattr(item, "meta", None) or {}
    fam = str(meta.get("family") or "").strip().lower()
    return FAMILY_ALIASES.get(fam, fam) if fam else UNKNOWN_FAMILY


def family_subset(clips: Iterable[Any], per_family: int) -> set[str]:
    """The ids of at most ``per_family`` clips of each family: those with the lowest stable hash of their clip id, a
    subset spread over the family's people that does not depend on the clips' order or on the folds."""
    by_family: dict[str, list[str]] = {}
    for c in clips:
        by_family.setdefault(family_of(c), []).append(c.clip_id)
    return {cid for ids in by_family.values() for cid in sorted(ids, key=stable_hash)[:per_family]}


def group_of(clip: Any) -> str:
    """The unit a clip is dealt into folds by: its ``group`` (identities that may be one person), else its
    identity."""
    meta = getattr(clip, "meta", None) or {}
    return str(meta.get("group") or clip.identity)


def identity_folds(
    identities: Iterable[str], folds: int, seed: int = 0, strata: Mapping[str, str] | None = None
) -> dict[str, int]:
    """``{identity: fold}`` for the distinct ``identities``, dealt into ``folds`` groups (see the module docstring);
    with ``strata`` (``{identity: family}``) the names are dealt stratum by stratum, in sorted order of the strata,
    continuing the round-robin."""
    names = sorted(set(identities))
    if folds < 2:
        raise InputError(f"cross-validation needs at least 2 folds, got {folds}")
    if len(names) < folds:
        raise InputError(f"{len(names)} identities cannot fill {folds} folds; use at most {len(names)} folds")
    rng = random.Random(f"a2k-folds:{seed}")
    if not strata:
        rng.shuffle(names)
        return {name: i % folds for i, name in enumerate(names)}
    deal, k = {}, 0
    for stratum in sorted({strata.get(n, "") for n in names}):
        members = [n for n in names if strata.get(n, "") == stratum]
        rng.shuffle(members)
        for name in members:
            deal[name] = k % folds
            k += 1
    return deal


def unit_strata(items: Sequence[Any], unit_of, family) -> dict[str, str] | None:
    """``{unit: family}``, a unit's family being the most common among its items (ties: alphabetically first);
    None when no item has a recorded family (plain datasets deal as before)."""
    counts: dict[str, dict[str, int]] = {}
    for x in items:
        fam = family(x)
        counts.setdefault(unit_of(x), {}).setdefault(fam, 0)
        counts[unit_of(x)][fam] += 1
    if all(set(c) == {UNKNOWN_FAMILY} for c in counts.values()):
        return None
    return {u: min(c, key=lambda f: (-c[f], f)) for u, c in counts.items()}


def parse_fold(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``, ``N >= 2``."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise InputError(f"--fold must look like I/N (fold I of N, counted from 0), got {text!r}") from None
    if n < 2 or not 0 <= i < n:
        raise InputError(f"--fold {text}: need N >= 2 folds and 0 <= I < N")
    return i, n


def split_fold(
    items: Sequence[T], identity_of, fold: int, folds: int, seed: int = 0, family=None
) -> tuple[list[T], list[T]]:
    """``(rest, held_out)``: the items whose unit (``identity_of(item)``: an identity or a group) is dealt into fold
    ``fold`` are held out; every item keeps its order. ``family(item)`` (e.g. :func:`family_of`) stratifies the deal
    by family."""
    strata = unit_strata(items, identity_of, family) if family is not None else None
    deal = identity_folds((identity_of(x) for x in items), folds, seed, strata)
    rest = [x for x in items if deal[identity_of(x)] != fold]
    held = [x for x in items if deal[identity_of(x)] == fold]
    return rest, held
