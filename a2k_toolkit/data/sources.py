"""Where the videos of a dataset build come from: a folder (VoxCeleb2 layout or any tree) or a CSV manifest.

Every video gets a stable ``key`` (its path relative to the folder or manifest, without extension) that names its
samples and decides which machine builds it (:func:`work_shard`), and an ``identity`` used for identity-disjoint
splits:

* a folder in VoxCeleb2 layout ``id/video/clip.mp4`` (or ``id/clip.mp4``): the identity is the top folder;
* files directly in the folder: each file is its own identity (its name), unless a manifest says otherwise;
* a CSV manifest with columns ``path[,identity[,split]]`` (a header row naming ``path`` is optional): relative paths
  are read from the manifest's folder; ``split`` pins a video's identity to ``train``, ``val`` or ``test``;
* a CSV manifest with a header row that names its columns (``path`` and ``identity`` required, any order), such as
  the shared data's ``clips.csv``: ``split`` pins as above, ``family`` (the source family: voxceleb2, grid, ...),
  ``language`` and ``group`` are carried into every sample's metadata, and every other column is ignored. A ``notes``
  column saying "may be the same person as A, B" or "same person as A" (names of identities in the manifest) puts
  those identities in one ``group``, so cross-validation keeps them on one side (:func:`identity_groups`).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from ..errors import InputError
from ..hashing import stable_hash

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".ts"})
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class VideoSource:
    """One input video."""

    key: str  # stable, unique, '/'-separated: the relative path without extension
    path: Path
    identity: str
    split: str | None = None  # pinned split from a manifest
    source: str = ""  # the path as recorded in the dataset: relative to the folder or manifest where possible
    # metadata carried into every sample of the video: family, language, group (named-column manifests)
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


def work_shard(key: str, num_shards: int) -> int:
    """Which of ``num_shards`` machines builds the video ``key``."""
    return stable_hash(key) % num_shards


def discover(videos: str | Path) -> list[VideoSource]:
    """The videos under a folder, or listed in a ``.csv`` manifest, sorted by key."""
    videos = Path(videos)
    if videos.is_file() and videos.suffix.lower() == ".csv":
        sources = read_manifest(videos)
    elif videos.is_dir():
        sources = _scan_folder(videos)
    elif videos.exists():
        raise InputError(f"{videos} is neither a folder of videos nor a .csv manifest; give one of those")
    else:
        raise InputError(f"video folder or manifest not found: {videos}")
    _check_unique(sources)
    return sorted(sources, key=lambda s: s.key)


def _scan_folder(root: Path) -> list[VideoSource]:
    out = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in VIDEO_EXTENSIONS or path.name.startswith("."):
            continue
        rel = PurePosixPath(path.relative_to(root).as_posix())
        key = str(rel.with_suffix(""))
        identity = rel.parts[0] if len(rel.parts) >= 2 else rel.stem
        out.append(VideoSource(key=key, path=path, identity=identity, source=str(rel)))
    return out


# metadata columns of a named-column manifest carried into the samples
META_COLUMNS = ("family", "language", "group")
_SAME_PERSON = re.compile(r"same person as ([^;]+)", re.IGNORECASE)


def read_manifest(path: Path) -> list[VideoSource]:
    """Rows ``path[,identity[,split]]``, or named columns; see the module docstring."""
    base = path.parent
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "path" in header:  # a header row: columns by name
        return _read_named(path, base, header, rows)
    out = []
    for lineno, row in enumerate(rows, start=1):
        row = [c.strip() for c in row]
        if not row or not any(row) or row[0].startswith("#"):
            continue
        if lineno == 1 and row[0].lower() == "path":
            continue
        if not row[0]:
            raise InputError(f"{path}, line {lineno}: the first column (path) is empty; every row needs a video path")
        if len(row) > 3:
            raise InputError(f"{path}, line {lineno}: expected path[,identity[,split]], got {len(row)} columns")
        identity = row[1] if len(row) >= 2 and row[1] else None
        split = row[2] if len(row) >= 3 and row[2] else None
        out.append(_source(path, lineno, base, row[0], identity, split, {}))
    return out


def _source(
    manifest: Path,
    lineno: int,
    base: Path,
    video_text: str,
    identity: str | None,
    split: str | None,
    meta: dict[str, str],
) -> VideoSource:
    video = Path(video_text)
    full = video if video.is_absolute() else base / video
    try:
        rel = PurePosixPath(Path(os.path.abspath(full)).relative_to(os.path.abspath(base)).as_posix())
    except ValueError:  # outside the manifest's folder: the path as written
        rel = PurePosixPath(video.as_posix().lstrip("/"))
    key = str(rel.with_suffix("")) if rel.suffix else str(rel)
    identity = identity or (rel.parts[0] if len(rel.parts) >= 2 else rel.stem)
    if split is not None:
        if split.lower() not in SPLITS:
            raise InputError(f"{manifest}, line {lineno}: split {split!r} is not one of {', '.join(SPLITS)}")
        split = split.lower()
    return VideoSource(key=key, path=full, identity=identity, split=split, source=str(rel), meta=meta)


def _read_named(path: Path, base: Path, header: list[str], rows: list[list[str]]) -> list[VideoSource]:
    if "identity" not in header and len(header) > 3:
        raise InputError(
            f"{path}: a manifest with named columns needs an `identity` column (it has "
            f"{', '.join(header)}); add one, or use the plain form path[,identity[,split]]"
        )
    col = {name: header.index(name) for name in header}
    out, notes = [], {}
    for lineno, row in enumerate(rows[1:], start=2):
        row = [c.strip() for c in row]
        if not row or not any(row) or row[0].startswith("#"):
            continue
        if len(row) > len(header):
            raise InputError(
                f"{path}, line {lineno}: {len(row)} columns where the header names {len(header)}; "
                "quote fields that contain commas"
            )
        row += [""] * (len(header) - len(row))
        get = lambda name, row=row: row[col[name]] if name in col else ""  # noqa: E731
        if not get("path"):
            raise InputError(f"{path}, line {lineno}: the path column is empty; every row needs a video path")
        meta = {name: get(name) for name in META_COLUMNS if get(name)}
        src = _source(path, lineno, base, get("path"), get("identity") or None, get("split") or None, meta)
        notes.setdefault(src.identity, []).append(get("notes"))
        out.append(src)
    groups = identity_groups({s.identity for s in out}, notes)
    return [replace(s, meta={**s.meta, "group": s.meta.get("group") or groups[s.identity]}) for s in out]


def identity_groups(identities: set[str], notes: dict[str, list[str]]) -> dict[str, str]:
    """``{identity: group}``: identities that a note says "may be the same person as A, B" (or "same person as A")
    of one another share a group, named by its alphabetically first identity; names that are not identities (e.g.
    clip names) are ignored."""
    parent = {i: i for i in identities}

    def find(i: str) -> str:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for ident, texts in notes.items():
        for text in texts:
            for m in _SAME_PERSON.finditer(text or ""):
                for other in re.split(r",|\band\b", m.group(1)):
                    other = other.strip()
                    if other in parent and other != ident:
                        a, b = sorted((find(ident), find(other)))
                        parent[b] = a
    return {i: find(i) for i in identities}


def _check_unique(sources: list[VideoSource]) -> None:
    seen: dict[str, Path] = {}
    for s in sources:
        if s.key in seen:
            raise InputError(
                f"two videos get the same key {s.key!r}: {seen[s.key]} and {s.path}; rename one (keys are paths "
                "without extension)"
            )
        seen[s.key] = s.path
    pinned: dict[str, str] = {}
    for s in sources:
        if s.split is None:
            continue
        if pinned.setdefault(s.identity, s.split) != s.split:
            raise InputError(
                f"identity {s.identity!r} is pinned to both {pinned[s.identity]!r} and {s.split!r} in the manifest; "
                "an identity must stay on one side of the split"
            )
