"""Where the videos of a dataset build come from: a folder (VoxCeleb2 layout or any tree) or a CSV manifest.

Every video gets a stable ``key`` (its path relative to the folder or manifest, without extension) that names its
samples and decides which machine builds it (:func:`work_shard`), and an ``identity`` used for identity-disjoint
splits:

* a folder in VoxCeleb2 layout ``id/video/clip.mp4`` (or ``id/clip.mp4``): the identity is the top folder;
* files directly in the folder: each file is its own identity (its name), unless a manifest says otherwise;
* a CSV manifest with columns ``path[,identity[,split]]`` (a header row naming ``path`` is optional): relative paths
  are read from the manifest's folder; ``split`` pins a video's identity to ``train``, ``val`` or ``test``.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import InputError

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


def stable_hash(text: str) -> int:
    """A hash of ``text`` that is the same on every machine and Python run (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


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


def read_manifest(path: Path) -> list[VideoSource]:
    """Rows ``path[,identity[,split]]``; see the module docstring."""
    base = path.parent
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
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
        video = Path(row[0])
        full = video if video.is_absolute() else base / video
        try:
            rel = PurePosixPath(Path(os.path.abspath(full)).relative_to(os.path.abspath(base)).as_posix())
        except ValueError:  # outside the manifest's folder: the path as written
            rel = PurePosixPath(video.as_posix().lstrip("/"))
        key = str(rel.with_suffix("")) if rel.suffix else str(rel)
        identity = row[1] if len(row) >= 2 and row[1] else (rel.parts[0] if len(rel.parts) >= 2 else rel.stem)
        split = row[2].lower() if len(row) >= 3 and row[2] else None
        if split is not None and split not in SPLITS:
            raise InputError(f"{path}, line {lineno}: split {row[2]!r} is not one of {', '.join(SPLITS)}")
        out.append(VideoSource(key=key, path=full, identity=identity, split=split, source=str(rel)))
    return out


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
