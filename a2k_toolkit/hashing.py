"""Content hashes, each defined once: the checksums of files (dataset manifests, clip packs, checkpoints, dubbing
outputs), of texts (fingerprints, cache keys) and the short stable names derived from keys.

The values are part of files on disk (``manifest.json``, ``config.json`` of a checkpoint, dubbing journals, work
item names, split assignment), so none of them may change: the tests pin each one. This module imports nothing from
the toolkit (the bottom layer, beside ``errors``).
"""

from __future__ import annotations

import hashlib
import os

CHUNK = 1 << 20  # bytes read at a time when hashing a file


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, hex (read in 1 MiB blocks, so a file of any size hashes in constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    """SHA-256 of bytes in memory, hex (any buffer: a contiguous numpy array hashes its memory, without a copy)."""
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    """SHA-256 of ``text`` encoded as UTF-8, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha1_text(text: str) -> str:
    """SHA-1 of ``text`` encoded as UTF-8, hex: for short stable names (work item files, cache keys), not for
    integrity; callers keep a prefix of it."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same on every machine and Python run (unlike ``hash``): the first 8
    bytes of its SHA-1, big-endian. Decides dataset splits and work shards."""
    return int(sha1_text(text)[:16], 16)
