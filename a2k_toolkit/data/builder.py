"""Vox-KP builder: a folder of talking-face videos -> 25 fps 68-point keypoint clips with 16 kHz audio.

Each video becomes samples (:func:`~.extraction.process_video`) or a :class:`~.extraction.Rejected` with a reason
code. The build (:func:`build`) runs videos in worker processes (:func:`a2k_toolkit.workpool.run_pool`: a worker
that dies costs only the video that killed it), each worker writing a video's samples to a work item (atomic) before
the parent appends its status line to the build's journal; a rerun skips what the journal says is done or failed, so
a build killed at any moment resumes where it stopped. :func:`~a2k_toolkit.data.dataset.finalize` then packs the
items into shards with splits, statistics, a QA report and a manifest.

The settings live in :mod:`.build_config`; :class:`BuildConfig`, :func:`load_build_config`, :class:`Rejected` and
:func:`process_video` can be imported from here as well.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..components import KeypointDetector
from ..errors import A2KError, ConfigError
from ..hashing import sha256_file
from ..workpool import Outcome, run_pool
from .build_config import BuildConfig, check_config, load_build_config, make_detector
from .extraction import Rejected, process_video
from .layout import Layout, StatusLog
from .packs import write_pack
from .sources import VideoSource, discover, work_shard

__all__ = ["BuildConfig", "Rejected", "build", "load_build_config", "process_video", "run_one"]


# ------------------------------------------------------------------------------------------- worker side

_WORKER: dict[str, Any] = {}


def _init_worker(cfg_json: str, root: str) -> None:
    cfg = BuildConfig.model_validate_json(cfg_json)
    _WORKER.update(cfg=cfg, layout=Layout(root), detector=make_detector(cfg.detector))


def _work(src: VideoSource) -> dict[str, Any]:
    return run_one(src, _WORKER["cfg"], _WORKER["detector"], _WORKER["layout"])


def run_one(src: VideoSource, cfg: BuildConfig, detector: KeypointDetector, layout: Layout) -> dict[str, Any]:
    """Process one video and write its work item; return its status record. Never raises for a bad video."""
    t0 = time.monotonic()
    rec: dict[str, Any] = {
        "key": src.key,
        "identity": src.identity,
        "source": src.source or str(src.path),
        **({"family": src.meta["family"]} if src.meta.get("family") else {}),
    }
    if src.split:
        rec["split"] = src.split
    try:
        samples, facts = process_video(src, cfg, detector)
        item = layout.item_path(src.key)
        write_pack(item, samples)
        rec.update(
            status="done",
            item=layout.rel(item),
            item_sha256=sha256_file(item),
            item_bytes=item.stat().st_size,
            samples=[s.clip.clip_id for s in samples],
            **facts,
        )
    except Rejected as exc:
        rec.update(status="failed", reason=exc.code, message=str(exc))
    except A2KError as exc:
        rec.update(status="failed", reason="error", message=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - one broken video must not stop the build
        rec.update(status="failed", reason="error", message=f"unexpected {type(exc).__name__}: {exc}")
    rec["seconds"] = round(time.monotonic() - t0, 3)
    return rec


# ---------------------------------------------------------------------------------------------- the build


def _is_complete(rec: dict | None, layout: Layout, retry_failed: bool) -> bool:
    if rec is None:
        return False
    if rec.get("status") == "failed":
        return not retry_failed
    if rec.get("status") != "done":
        return False
    item = layout.root / rec.get("item", "")
    return item.is_file() and item.stat().st_size == rec.get("item_bytes")


def build(
    videos: str | Path,
    out: str | Path,
    cfg: BuildConfig | None = None,
    *,
    workers: int = 1,
    shard_index: int = 0,
    num_shards: int = 1,
    retry_failed: bool = False,
    finalize: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build (or resume building) a Vox-KP dataset from ``videos`` into ``out``; returns a summary."""
    cfg = cfg or BuildConfig()
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ConfigError(f"--shard-index must be in [0, {num_shards}) and --num-shards at least 1")
    make_detector(cfg.detector)  # validate name and params before any work
    layout = Layout(out)
    work = {"index": shard_index, "num": num_shards} if num_shards > 1 else None
    sources = discover(videos)
    if num_shards > 1:
        sources = [s for s in sources if work_shard(s.key, num_shards) == shard_index]
    check_config(layout, cfg, work, str(videos))
    status = StatusLog(layout.status)
    known = status.read()
    todo = [s for s in sources if not _is_complete(known.get(s.key), layout, retry_failed)]
    log(
        f"{len(sources)} videos, {len(sources) - len(todo)} already processed, {len(todo)} to do"
        + (f" (work shard {shard_index}/{num_shards})" if work else "")
    )
    counts = {"done": 0, "failed": 0}
    n = len(todo)

    def record(rec: dict) -> None:
        status.append(rec)
        counts[rec["status"]] += 1
        if rec["status"] == "done":
            what = f"{len(rec.get('samples', []))} clip(s)"
        else:
            what = f"{rec['reason']}: {rec['message']}"
        log(f"[{counts['done'] + counts['failed']}/{n}] {rec['key']}: {rec['status']} ({what})")

    if todo:
        if workers <= 1:
            detector = make_detector(cfg.detector)
            for src in todo:
                record(run_one(src, cfg, detector, layout))
        else:
            _run_pool(todo, cfg, layout, workers, record)
    summary = {"videos": len(sources), "processed": n, **counts}
    if finalize:
        from .dataset import finalize as finalize_dataset

        summary["dataset"] = finalize_dataset(out, cfg, log=log)
    return summary


def _run_pool(todo: list[VideoSource], cfg: BuildConfig, layout: Layout, workers: int, record, work=None) -> None:
    """Run videos in worker processes (:func:`~a2k_toolkit.workpool.run_pool`, two videos in flight per worker) and
    ``record`` each one's status record. If a worker dies (a crash in native code, the OOM killer), the videos in
    flight are rerun one at a time, so only the one that kills its worker is recorded as failed. ``work`` replaces
    the per-video function (a picklable module-level function taking a :class:`VideoSource`)."""
    outcomes = run_pool(
        work or _work,
        todo,
        workers=workers,
        initializer=_init_worker,
        initargs=(cfg.model_dump_json(), str(layout.root)),
        inflight=2 * workers,
    )
    for outcome in outcomes:
        record(_status_of(outcome))


def _status_of(outcome: Outcome[VideoSource]) -> dict[str, Any]:
    if outcome.error is None and not outcome.crashed:
        return outcome.result
    src = outcome.item
    rec = {"key": src.key, "identity": src.identity, "source": src.source or str(src.path), "status": "failed"}
    if outcome.crashed:
        rec.update(
            reason="worker_crashed",
            message="the worker process died while processing this video (a crash in native code or out of memory)",
        )
    else:  # e.g. a result that could not be sent back
        rec.update(reason="error", message=f"{type(outcome.error).__name__}: {outcome.error}")
    return rec
