"""Where things live in a Vox-KP dataset folder, and its append-safe per-video status log.

::

    OUT/
      config.json          build settings (a resumed build must use the same extraction settings)
      work/status.jsonl    one JSON line per processed video: done (with its samples) or failed (with a reason)
      work/items/ab/*.npz  the samples of one video (a clip pack), written before its status line
      shards/{split}-NNNNN.npz   the packed dataset (clip packs), per split
      index.json           every clip: split, shard, identity, source, frames, QA measures
      splits.json          identity -> split, with counts
      stats.json           normalisation statistics (paper §4.5) fitted on the train split
      qa/report.json, qa/report.md, qa/contact_sheet.png
      manifest.json        every file above (except work/) with its SHA-256; written last: a dataset without it
                           is unfinished
"""

from __future__ import annotations

import re
from pathlib import Path

from ..hashing import sha1_text
from ..workpool import Journal

MANIFEST = "manifest.json"


class Layout:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    config = property(lambda self: self.root / "config.json")
    work = property(lambda self: self.root / "work")
    status = property(lambda self: self.root / "work" / "status.jsonl")
    items = property(lambda self: self.root / "work" / "items")
    shards = property(lambda self: self.root / "shards")
    index = property(lambda self: self.root / "index.json")
    splits = property(lambda self: self.root / "splits.json")
    stats = property(lambda self: self.root / "stats.json")
    qa = property(lambda self: self.root / "qa")
    manifest = property(lambda self: self.root / MANIFEST)

    def item_path(self, key: str) -> Path:
        """The work item (clip pack) of the video ``key``: readable name plus a hash against collisions."""
        h = sha1_text(key)
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[-80:].strip("._") or "video"
        return self.items / h[:2] / f"{safe}-{h[:10]}.npz"

    def rel(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()


class StatusLog(Journal):
    """The build's journal: one JSON line per processed video, keyed by ``key``, the latest line of a key winning
    (see :class:`a2k_toolkit.workpool.Journal`: it survives SIGKILL at any moment)."""

    def __init__(self, path: str | Path):
        super().__init__(path, key="key")
