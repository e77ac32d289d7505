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

import json
import os
import re
from pathlib import Path
from typing import Any

from ..hashing import sha1_text

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


class StatusLog:
    """Append-only JSON lines, one per processed video; the latest line of a key wins.

    Each record is written with one ``write`` of a whole line, flushed and fsynced. A line cut short by a kill is
    ignored when reading, and the next append starts on a fresh line, so the log survives SIGKILL at any moment.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]]:
        latest: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return latest
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    continue  # torn last line
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("key"), str):
                    latest[rec["key"]] = rec
        return latest

    def append(self, record: dict[str, Any]) -> None:
        self.append_many([record])

    def append_many(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(json.dumps(r, sort_keys=True).encode("utf-8") + b"\n" for r in records)
        with open(self.path, "a+b") as f:
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    data = b"\n" + data
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
