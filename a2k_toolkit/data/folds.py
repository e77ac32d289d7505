"""Cross-validation by identity: the people of a set of clips dealt into ``folds`` groups.

A data set of a few dozen people is too small for a fixed validation split to rank training recipes (two people
cannot tell a good seed from a bad one, docs/results.md). K-fold cross-validation over *identities* uses every person
once as held-out: train on the other folds, evaluate on this one, and average over the folds. Training
(``data.folds`` / ``data.fold``) and ``a2k eval --fold I/N`` deal the same clips into the same folds, so a fold's
model is always scored on exactly the people it never saw.

The deal depends only on the set of identity names and ``seed``: the sorted names are shuffled with a generator
seeded by ``seed`` and dealt round-robin, so fold sizes differ by at most one person.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import TypeVar

from ..errors import InputError

T = TypeVar("T")


def identity_folds(identities: Iterable[str], folds: int, seed: int = 0) -> dict[str, int]:
    """``{identity: fold}`` for the distinct ``identities``, dealt into ``folds`` groups (see the module docstring)."""
    names = sorted(set(identities))
    if folds < 2:
        raise InputError(f"cross-validation needs at least 2 folds, got {folds}")
    if len(names) < folds:
        raise InputError(f"{len(names)} identities cannot fill {folds} folds; use at most {len(names)} folds")
    random.Random(f"a2k-folds:{seed}").shuffle(names)
    return {name: i % folds for i, name in enumerate(names)}


def parse_fold(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``, ``N >= 2``."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise InputError(f"--fold must look like I/N (fold I of N, counted from 0), got {text!r}") from None
    if n < 2 or not 0 <= i < n:
        raise InputError(f"--fold {text}: need N >= 2 folds and 0 <= I < N")
    return i, n


def split_fold(items: Sequence[T], identity_of, fold: int, folds: int, seed: int = 0) -> tuple[list[T], list[T]]:
    """``(rest, held_out)``: the items whose identity (``identity_of(item)``) is dealt into fold ``fold`` are held
    out; every item keeps its order."""
    deal = identity_folds((identity_of(x) for x in items), folds, seed)
    rest = [x for x in items if deal[identity_of(x)] != fold]
    held = [x for x in items if deal[identity_of(x)] == fold]
    return rest, held
