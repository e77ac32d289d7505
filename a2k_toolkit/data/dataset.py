"""Finishing a Vox-KP dataset: identity-disjoint splits, shards, statistics, QA report, manifest; and merging the
parts built on several machines.

:func:`finalize` is a pure function of the work items and the status log: running it twice, or after a kill, gives
byte-identical files. It first removes ``manifest.json`` (the dataset is unfinished while it runs) and writes it
last.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import A2KError, ConfigError, InputError
from ..hashing import sha256_file as file_sha256
from ..io import atomic_write_text
from ..keypoints import Normalizer
from .layout import Layout, StatusLog
from .packs import Pack, PackedClip, read_pack_metas, write_pack
from .sources import SPLITS, stable_hash

FORMAT = "vox-kp"
VERSION = 1


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


# ------------------------------------------------------------------------------------------------- splits


def assign_splits(
    frames_per_identity: dict[str, int], fractions: tuple[float, float, float], pinned: dict[str, str] | None = None
) -> dict[str, str]:
    """Identity -> ``train``/``val``/``test``, every identity on one side only.

    Pinned identities keep their split. The others, in a fixed pseudo-random order (a hash of the name), go to the
    split furthest below its share of frames; first, each split with a non-zero share that is still empty gets
    one identity (when there are enough), so small datasets have all three splits.
    """
    pinned = dict(pinned or {})
    total = sum(frames_per_identity.values())
    have = {s: 0 for s in SPLITS}
    out: dict[str, str] = {}
    for ident, split in pinned.items():
        if ident in frames_per_identity:
            out[ident] = split
            have[split] += frames_per_identity[ident]
    free = sorted((i for i in frames_per_identity if i not in out), key=lambda i: (stable_hash(i), i))
    wanted = [s for s, f in zip(SPLITS, fractions) if f > 0]
    empty = [s for s in wanted if not any(v == s for v in out.values())]
    if len(free) >= len(wanted):
        for split in empty:
            ident = free.pop(0)
            out[ident] = split
            have[split] += frames_per_identity[ident]
    for ident in free:
        deficits = [(f * total - have[s], -k) for k, (s, f) in enumerate(zip(SPLITS, fractions)) if f > 0]
        _, negk = max(deficits)
        split = SPLITS[-negk]
        out[ident] = split
        have[split] += frames_per_identity[ident]
    return out


# -------------------------------------------------------------------------------------------------- stats


def fit_statistics(clips: Iterator, window: int, max_sequences: int) -> tuple[Normalizer, int]:
    """Paper §4.5: mean/std of the base-point-relative keypoints over the first ``max_sequences`` training
    sequences (non-overlapping ``window``-frame pieces of the clips, each relative to its own first frame)."""
    count = 0

    def sequences():
        nonlocal count
        for clip in clips:
            kp = np.asarray(clip.keypoints)
            starts = range(0, max(1, len(kp) - window + 1), window) if len(kp) >= window else [0]
            for s in starts:
                count += 1
                yield kp[s : s + window]

    norm = Normalizer.fit(sequences(), max_sequences=max_sequences)
    return norm, min(count, max_sequences)


# ----------------------------------------------------------------------------------------------- finalize


def finalize(root: str | Path, cfg=None, *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Pack every done video's samples into shards with splits, statistics, QA report and manifest."""
    from .build_config import BuildConfig
    from .report import write_report

    log = log or (lambda msg: None)
    layout = Layout(root)
    if cfg is None:
        if not layout.config.is_file():
            raise InputError(f"{root} is not a Vox-KP build folder (no config.json); run `a2k dataset build` first")
        cfg = BuildConfig.model_validate(json.loads(layout.config.read_text("utf-8"))["build"])
    layout.manifest.unlink(missing_ok=True)
    status = StatusLog(layout.status).read()
    done = {k: r for k, r in sorted(status.items()) if r.get("status") == "done"}
    clips = _done_clips(layout, done)  # 1. what is there

    # 2. identity-disjoint splits
    frames_per_id: dict[str, int] = defaultdict(int)
    pinned = {r["identity"]: r["split"] for r in done.values() if r.get("split")}
    for m in clips:
        frames_per_id[m["identity"]] += _frames(m)
    id_split = assign_splits(dict(frames_per_id), cfg.split, pinned)

    index, split_info = _write_shards(layout, clips, id_split, cfg, log)  # 3. shards
    _write_statistics(layout, split_info, cfg)  # 4. statistics (train split only)

    # 5. splits, index, QA report
    counts = {s: {k: split_info[s][k] for k in ("clips", "frames", "identities", "hours")} for s in SPLITS}
    splits = {"fractions": list(cfg.split), "pinned": sorted(pinned), "identities": dict(sorted(id_split.items()))}
    atomic_write_text(layout.splits, _dump({**splits, "counts": counts}))
    atomic_write_text(layout.index, _dump({"format": FORMAT, "version": VERSION, "clips": index}))
    report = write_report(layout, status=status, index=index, split_info=split_info)

    _write_manifest(layout, cfg, split_info, status)  # 6. manifest, last
    log(f"dataset finished: {len(index)} clips, report in {layout.qa / 'report.md'}")
    return {"clips": len(index), "splits": {s: split_info[s]["clips"] for s in SPLITS}, "report": report["counts"]}


def _done_clips(layout: Layout, done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per clip metadata of the done videos' work items (each checked against its recorded checksum), in key
    order."""
    clips: list[dict[str, Any]] = []
    for key, rec in done.items():
        item = layout.root / rec["item"]
        if not item.is_file() or file_sha256(item) != rec.get("item_sha256"):
            raise A2KError(
                f"work item {item} of video {key!r} is missing or corrupt (checksum mismatch); delete it and rerun "
                "`a2k dataset build` on the same folder to rebuild that video"
            )
        for i, m in enumerate(read_pack_metas(item)):
            clips.append({**m, "item": rec["item"], "item_index": i})
    clips.sort(key=lambda m: m["key"])
    return clips


def _write_shards(layout: Layout, clips: list[dict], id_split: dict[str, str], cfg, log) -> tuple[list, dict]:
    """The shards, split by split, clips in key order (stale shards removed); returns the index entries and the
    facts per split."""
    layout.shards.mkdir(parents=True, exist_ok=True)
    written: set[str] = set()
    index: list[dict[str, Any]] = []
    split_info: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        members = [m for m in clips if id_split[m["identity"]] == split]
        shards = []
        for k in range(0, len(members), cfg.shard_size):
            chunk = members[k : k + cfg.shard_size]
            name = f"{split}-{k // cfg.shard_size:05d}.npz"
            write_pack(layout.shards / name, list(_load_items(layout, chunk)))
            written.add(name)
            shards.append({"file": f"shards/{name}", "clips": len(chunk), "frames": sum(_frames(m) for m in chunk)})
            for pos, m in enumerate(chunk):
                index.append(_index_entry(m, split, f"shards/{name}", pos))
        split_info[split] = {
            "shards": shards,
            "clips": len(members),
            "frames": sum(_frames(m) for m in members),
            "identities": len({m["identity"] for m in members}),
            "hours": round(sum(_frames(m) for m in members) / cfg.fps / 3600, 4),
        }
        log(f"{split}: {len(members)} clips of {split_info[split]['identities']} identities in {len(shards)} shard(s)")
    for stale in layout.shards.glob("*.npz"):
        if stale.name not in written:
            stale.unlink()
    return index, split_info


def _write_statistics(layout: Layout, split_info: dict[str, dict[str, Any]], cfg) -> None:
    """The normalisation statistics, fitted on the train split's shards."""
    stats: dict[str, Any] = {"split": "train", "window": cfg.stats_window, "max_sequences": cfg.stats_max_sequences}
    train_files = [layout.root / s["file"] for s in split_info["train"]["shards"]]
    if train_files:
        norm, n = fit_statistics(_iter_packs(train_files), cfg.stats_window, cfg.stats_max_sequences)
        stats.update(normalizer=norm.to_dict(), sequences=n)
    else:
        stats.update(normalizer=None, sequences=0, note="no training clips: statistics not fitted")
    atomic_write_text(layout.stats, _dump(stats))


def _write_manifest(layout: Layout, cfg, split_info: dict[str, dict[str, Any]], status: dict[str, dict]) -> None:
    """The manifest, written last: the build settings, the splits, and every file's checksum and size."""
    files = sorted(
        [p for p in layout.shards.glob("*.npz")]
        + [layout.index, layout.splits, layout.stats, layout.config]
        + [p for p in layout.qa.glob("*") if p.is_file()]
    )
    done = sum(1 for r in status.values() if r.get("status") == "done")
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "build": cfg.model_dump(mode="json"),
        "splits": split_info,
        "videos": {"done": done, "failed": sum(1 for r in status.values() if r.get("status") == "failed")},
        "files": {layout.rel(p): {"sha256": file_sha256(p), "bytes": p.stat().st_size} for p in files},
    }
    atomic_write_text(layout.manifest, _dump(manifest))


def _frames(meta: dict[str, Any]) -> int:
    return int(meta["meta"].get("frames", 0)) or 0


def _index_entry(m: dict[str, Any], split: str, shard: str, pos: int) -> dict[str, Any]:
    q = m["meta"]
    return {
        "key": m["key"],
        "split": split,
        "shard": shard,
        "position": pos,
        "identity": m["identity"],
        "source": m["source"],
        "frames": _frames(m),
        "fps": m["fps"],
        "frame_size": m["frame_size"],
        "coupling": q.get("corr"),
        "lag_ms": q.get("lag_ms"),
        "face_width": q.get("face_width"),
        "measured": q.get("measured"),
        "video_key": q.get("video_key"),
    }


def _load_items(layout: Layout, metas: list[dict[str, Any]]) -> Iterator[PackedClip]:
    cache: dict[str, Pack] = {}
    for m in metas:
        if m["item"] not in cache:
            cache.clear()  # items are in key order: one item open at a time
            cache[m["item"]] = Pack(layout.root / m["item"])
        yield cache[m["item"]].packed(m["item_index"])


def _iter_packs(files: list[Path]):
    for f in files:
        yield from Pack(f)


# -------------------------------------------------------------------------------------------------- merge


def verify(root: str | Path) -> dict[str, Any]:
    """Check a finished dataset against its manifest; return the manifest. Raises naming the first bad file."""
    layout = Layout(root)
    if not layout.manifest.is_file():
        raise InputError(
            f"{root} is not a finished Vox-KP dataset (no manifest.json): its build was interrupted or is running; "
            "rerun `a2k dataset build` with the same arguments to finish it"
        )
    manifest = json.loads(layout.manifest.read_text("utf-8"))
    for rel, fact in manifest["files"].items():
        p = layout.root / rel
        if not p.is_file() or p.stat().st_size != fact["bytes"] or file_sha256(p) != fact["sha256"]:
            raise InputError(f"{p} does not match the manifest of {root} (missing or changed); rebuild that dataset")
    return manifest


def merge(parts: list[str | Path], out: str | Path, *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Merge datasets built on several machines (``--shard-index i --num-shards N``) into ``out``, then finalize it
    with global splits, statistics and report. Each part is verified against its manifest first. Resumable."""
    from ..io import atomic_write_text as write_text
    from .build_config import BuildConfig, check_config

    log = log or (lambda msg: None)
    if not parts:
        raise InputError("nothing to merge: give at least one built dataset folder")
    manifests = [verify(p) for p in parts]
    cfgs = [BuildConfig.model_validate(m["build"]) for m in manifests]
    for p, c in zip(parts[1:], cfgs[1:]):
        if c.extraction() != cfgs[0].extraction():
            diff = sorted(k for k, v in c.extraction().items() if cfgs[0].extraction().get(k) != v)
            raise ConfigError(
                f"{p} was built with other settings than {parts[0]} ({', '.join(diff)}); parts of one "
                "dataset must share their extraction settings"
            )
    layout = Layout(out)
    check_config(layout, cfgs[0], None, None)
    status = StatusLog(layout.status)
    have = status.read()
    added, skipped = 0, 0
    for part in parts:
        part_layout = Layout(part)
        part_status = StatusLog(part_layout.status).read()
        # regroup the part's clips by source video: one work item per video, as the build writes them
        by_video: dict[str, list[PackedClip]] = defaultdict(list)
        for shard in sorted(part_layout.shards.glob("*.npz")):
            pack = Pack(shard)
            for i in range(len(pack)):
                pc = pack.packed(i)
                by_video[pc.clip.meta["video_key"]].append(pc)
        records = []
        for key in sorted(set(part_status) | set(by_video)):
            rec = part_status.get(key)
            if rec is None:
                raise InputError(f"{part}: clips of video {key!r} have no status record; rebuild that part")
            old = have.get(key)
            if (
                old is not None
                and old.get("status") == rec.get("status")
                and (rec.get("status") == "failed" or (layout.root / old.get("item", "")).is_file())
            ):
                skipped += 1
                continue
            rec = dict(rec)
            if rec.get("status") == "done":
                clips = sorted(by_video.get(key, []), key=lambda pc: pc.clip.meta["start_frame"])
                if [c.clip.clip_id for c in clips] != rec.get("samples"):
                    raise InputError(
                        f"{part}: the shards do not hold the clips its status log lists for {key!r}; rebuild that part"
                    )
                item = layout.item_path(key)
                write_pack(item, clips)
                rec.update(item=layout.rel(item), item_sha256=file_sha256(item), item_bytes=item.stat().st_size)
            rec["merged_from"] = str(part)
            records.append(rec)
            added += 1
        status.append_many(records)
        have.update({r["key"]: r for r in records})
        log(f"{part}: {len(records)} videos merged")
    write_text(layout.root / "merged_from.json", _dump([str(p) for p in parts]))
    result = finalize(out, cfgs[0], log=log)
    return {"parts": len(parts), "videos_added": added, "videos_already_there": skipped, "dataset": result}
