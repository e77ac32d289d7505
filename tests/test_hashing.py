"""The one hashing module: values pinned (they are in files on disk), and no other module hashes files itself."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from a2k_toolkit import hashing
from a2k_toolkit.data.layout import Layout
from a2k_toolkit.data.sources import stable_hash, work_shard

PACKAGE = Path(__file__).resolve().parents[1] / "a2k_toolkit"


def test_values_are_the_published_digests():
    assert hashing.sha256_text("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert hashing.sha256_text("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert hashing.sha1_text("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert hashing.stable_hash("abc") == 0xA9993E364706816A
    # non-ASCII text is hashed as UTF-8
    assert hashing.sha256_text("é") == hashlib.sha256("é".encode()).hexdigest()
    assert hashing.sha256_bytes(b"abc") == hashing.sha256_text("abc")
    assert hashing.sha256_bytes(memoryview(b"")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_a_file_larger_than_one_block_hashes_like_its_bytes(tmp_path):
    data = bytes(range(256)) * (3 * hashing.CHUNK // 256 + 17)  # three blocks and a partial one
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert hashing.sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert hashing.sha256_file(str(path)) == hashing.sha256_file(path)
    (tmp_path / "empty").write_bytes(b"")
    assert hashing.sha256_file(tmp_path / "empty") == hashing.sha256_text("")


def test_names_and_splits_derived_from_hashes_are_unchanged(tmp_path):
    # the formulas these replaced, written out: existing datasets keep their item names, shards and splits
    key = "id00017/01dfn2spqyE/00001"
    old_hash = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big")
    assert stable_hash(key) == old_hash and work_shard(key, 7) == old_hash % 7
    h = hashlib.sha1(key.encode("utf-8")).hexdigest()
    assert (
        Layout(tmp_path).item_path(key)
        == tmp_path / "work" / "items" / h[:2] / f"id00017_01dfn2spqyE_00001-{h[:10]}.npz"
    )


def test_the_training_clip_cache_keeps_its_file_names(tmp_path):
    import json

    from a2k_toolkit.training.config import DataConfig
    from a2k_toolkit.training.data import _cache_file

    video = tmp_path / "talk é.mp4"
    video.write_bytes(b"not really a video")
    cfg = DataConfig(train=["x"], cache_dir=str(tmp_path / "cache"))
    st = video.stat()
    key = json.dumps([str(video.resolve()), st.st_size, st.st_mtime_ns, cfg.detector.model_dump(mode="json")])
    old = hashlib.sha1(key.encode()).hexdigest()[:12]  # the formula it replaced, written out
    assert _cache_file(video, cfg) == tmp_path / "cache" / f"talk é-{old}.npz"


def _hash_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text("utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "hashlib":
            names.append(f"hashlib.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "hashlib":
            names.append("from hashlib import")
    return names


def test_only_the_hashing_module_computes_sha256():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "hashing.py" and path.parent == PACKAGE:
            continue
        calls = [c for c in _hash_calls(path) if c in ("hashlib.sha256", "from hashlib import")]
        if calls:
            offenders[path.relative_to(PACKAGE).as_posix()] = calls
    assert offenders == {}, f"use a2k_toolkit.hashing instead: {offenders}"
