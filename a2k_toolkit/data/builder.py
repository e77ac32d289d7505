"""Vox-KP builder: a folder of talking-face videos -> 25 fps 68-point keypoint clips with 16 kHz audio.

Per video (:func:`process_video`): probe it, decode its audio (16 kHz mono) and its frames resampled to 25 fps by
timestamps (constant and variable frame rates alike), follow the faces with a :class:`FaceTracker`, keep the main
speaker's track, interpolate short detection gaps, split at long ones, and keep the pieces of at least
``min_frames``. Anything that makes a video unusable is a :class:`Rejected` with a reason code.

The build (:func:`build`) runs videos in a process pool, each worker writing a video's samples to a work item
(atomic) before the parent appends its status line; a rerun skips what the log says is done or failed, so a build
killed at any moment resumes where it stopped. :func:`~a2k_toolkit.data.dataset.finalize` then packs the items
into shards with splits, statistics, a QA report and a manifest.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..components import KeypointDetector, num_frames
from ..config import ComponentSpec, format_validation_error
from ..errors import A2KError, ConfigError
from ..hashing import sha256_file
from .clips import Clip, interpolate_gaps
from .layout import Layout, StatusLog
from .packs import PackedClip, write_pack
from .qa import encode_thumb, face_width, lip_audio_coupling
from .sources import VideoSource, discover, work_shard
from .tracking import FaceTracker

THUMB_EVERY = 12  # frames between stored thumbnails (every clip of >= 12 frames gets one)


class BuildConfig(BaseModel):
    """Settings of a Vox-KP build. The *extraction* settings (all but ``split``, ``shard_size`` and ``stats_*``)
    must stay the same when a build is resumed; the others only affect packing and may change."""

    model_config = ConfigDict(extra="forbid")

    fps: float = Field(25.0, gt=0, description="frame rate the videos are resampled to")
    sample_rate: int = Field(16000, ge=8000, description="audio sample rate (mono)")
    detector: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="dlib"), description="keypoint detector")
    detect_every: int = Field(1, ge=1, description="run the face detector every N frames, track landmarks between")
    batch_size: int = Field(32, ge=1, description="frames per detector batch (detect_every: 1; GPU batching for fan)")
    max_faces: int = Field(4, ge=1, description="faces followed per video (the main speaker's track is kept)")
    multi_face: Literal["main", "reject"] = Field(
        "main", description="videos showing another face for long: keep the main track, or reject the video"
    )
    max_gap: int = Field(5, ge=0, description="longest run of frames without a face that is interpolated")
    min_frames: int = Field(25, ge=1, description="shortest clip kept (frames); longer gaps split a video")
    min_face: float = Field(40.0, ge=0, description="smallest median face width kept (pixels)")
    silence_db: float = Field(-60.0, description="audio quieter than this (dBFS, RMS) is rejected as silent")
    split: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train/val/test fractions (by identity)")
    shard_size: int = Field(256, ge=1, description="clips per shard")
    stats_window: int = Field(64, ge=2, description="frames per sequence for the normalisation statistics")
    stats_max_sequences: int = Field(10000, ge=1, description="sequences the statistics are fitted on (paper: 10k)")

    @field_validator("split")
    @classmethod
    def _split(cls, v):
        if any(x < 0 for x in v) or sum(v) <= 0:
            raise ValueError("split fractions must be non-negative and not all zero")
        return tuple(float(x) / sum(v) for x in v)

    PACKING_FIELDS: ClassVar[frozenset[str]] = frozenset({"split", "shard_size", "stats_window", "stats_max_sequences"})

    def extraction(self) -> dict[str, Any]:
        """The settings that decide a video's samples (compared when a build resumes)."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in self.PACKING_FIELDS}


def load_build_config(source: str | Path | dict | BuildConfig | None = None, **overrides) -> BuildConfig:
    """A :class:`BuildConfig` from a YAML/JSON/TOML file or a dict, with ``overrides`` (``None`` values ignored)."""
    from ..config import read_config_file

    if isinstance(source, BuildConfig):
        data = source.model_dump()
    elif source is None:
        data = {}
    elif isinstance(source, dict):
        data = dict(source)
    else:
        data = read_config_file(Path(source))
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid build config: {format_validation_error(exc)}") from None


def make_detector(spec: ComponentSpec, plugins=None) -> KeypointDetector:
    """Build (and validate) the detector named by ``spec``."""
    from ..catalog import Catalog

    cls = Catalog(plugins).get("detector", spec.name)
    try:
        return cls(spec.params)
    except ValidationError as exc:
        raise ConfigError(f"invalid build config: {format_validation_error(exc, 'detector.params')}") from None


# ----------------------------------------------------------------------------------------------- one video


class Rejected(Exception):
    """A video that cannot become a sample; ``code`` is a short reason, the message says why."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def probe_media(path: Path) -> dict[str, Any]:
    """Streams, size, fps, duration and frame count of a media file, plus whether its frame rate is variable
    (ffmpeg's ``vfrdet``: the fraction of frame intervals that differ from the previous one)."""
    import re
    import subprocess

    from ..io import _parse_ffmpeg_report, ffmpeg_exe

    proc = subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-i",
            str(path),
            "-map",
            "0:v:0?",
            "-vf",
            "vfrdet",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        check=False,
    )
    text = proc.stderr.decode("utf-8", "replace")
    info = _parse_ffmpeg_report(text)
    info["opened"] = "Input #0" in text
    info["error"] = next((ln.strip() for ln in reversed(text.splitlines()) if "rror" in ln), "")
    vfr = [(float(m[1]), int(m[3])) for m in re.finditer(r"VFR:([\d.]+) \((\d+)/(\d+)\)", text) if int(m[3]) > 0]
    info["vfr_fraction"] = vfr[-1][0] if vfr else 0.0
    return info


def _frames_with_thumbs(path: Path, fps: float, thumbs: dict[int, tuple[bytes, float]], size: list) -> Iterator:
    from ..io import read_video_frames

    for t, frame in enumerate(read_video_frames(path, fps=fps)):
        if t == 0:
            size[:] = frame.shape[:2]
        if t % THUMB_EVERY == 0:
            thumbs[t] = encode_thumb(frame)
        yield frame


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of every run of True."""
    runs, t, T = [], 0, len(mask)
    while t < T:
        if mask[t]:
            s = t
            while t < T and mask[t]:
                t += 1
            runs.append((s, t))
        else:
            t += 1
    return runs


def process_video(src: VideoSource, cfg: BuildConfig, detector: KeypointDetector) -> tuple[list[PackedClip], dict]:
    """The samples of one video and facts about it (``notes``, frame counts, faces). Raises :class:`Rejected`."""
    from ..errors import AudioLoadError
    from ..io import load_audio

    path = src.path
    if not path.is_file():
        raise Rejected("missing", f"file not found: {path}")
    if path.stat().st_size == 0:
        raise Rejected("empty_file", "the file is empty (0 bytes)")
    info = probe_media(path)
    if not info["opened"]:
        raise Rejected("not_a_video", f"ffmpeg cannot read it as a media file ({info['error'] or 'unknown format'})")
    if info["video_codec"] is None and info["audio_codec"] is None:
        raise Rejected("zero_length", "the media file holds no streams (zero-length video)")
    if info["video_codec"] is None:
        raise Rejected("not_a_video", "no video stream (an audio-only file?)")
    if not info["frames"] or not info["duration"]:
        raise Rejected("zero_length", "the video has no frames (zero-length video)")
    if info["audio_codec"] is None:
        raise Rejected("no_audio", "the video has no audio track; Vox-KP needs the speech")
    notes = []
    if info["vfr_fraction"] > 0.05:
        notes.append(
            f"variable frame rate ({100 * info['vfr_fraction']:.0f}% of frame intervals change): "
            f"resampled to {cfg.fps:g} fps by timestamps"
        )
    try:
        audio = load_audio(path, cfg.sample_rate)
    except AudioLoadError as exc:
        raise Rejected("bad_audio", f"cannot decode the audio track: {exc}") from None
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    level = 20 * math.log10(max(rms, 1e-12))
    if level < cfg.silence_db:
        raise Rejected("silent_audio", f"the audio track is silent ({level:.0f} dBFS < {cfg.silence_db:g} dBFS)")

    T = num_frames(len(audio) / cfg.sample_rate, cfg.fps)
    tracker = FaceTracker(detector, detect_every=cfg.detect_every, max_faces=cfg.max_faces, batch_size=cfg.batch_size)
    thumbs: dict[int, tuple[bytes, float]] = {}
    size: list[int] = []
    res = tracker.run(_frames_with_thumbs(path, cfg.fps, thumbs, size), T)
    facts = {
        "frames": T,
        "decoded": res.frames_decoded,
        "detections": res.detection_frames,
        "source_fps": info["fps"],
        "vfr": info["vfr_fraction"] > 0.05,
        "faces": res.tracks,
        "max_faces_in_frame": res.max_faces_in_frame,
        "notes": notes,
    }
    if res.frames_decoded == 0:
        raise Rejected("zero_length", "no video frame could be decoded")
    if not res.seen.any():
        raise Rejected(
            "no_face", f"no face found in any of the {res.frames_decoded} frames by detector {detector.name!r}"
        )
    main = res.tracks[0]
    others = [
        tr for tr in res.tracks[1:] if tr["frames"] >= 0.25 * T and tr["median_width"] >= 0.5 * main["median_width"]
    ]
    if others:
        msg = (
            f"{1 + len(others)} faces visible for long; main speaker's track kept (largest face, "
            f"{main['median_width']:.0f} px, in {main['frames']}/{T} frames)"
        )
        if cfg.multi_face == "reject":
            raise Rejected("multiple_faces", msg.replace("main speaker's track kept", "rejected (multi_face: reject)"))
        notes.append(msg)
    if res.frames_decoded < T:
        notes.append(f"video ends {T - res.frames_decoded} frames before its audio")

    filled, usable = interpolate_gaps(res.points, res.seen, cfg.max_gap)
    runs = _runs(usable)
    long_runs = [r for r in runs if r[1] - r[0] >= cfg.min_frames]
    if not long_runs:
        longest = max((r[1] - r[0] for r in runs), default=0)
        raise Rejected(
            "too_short",
            f"no face track of at least {cfg.min_frames} frames (longest: {longest} frames, {longest / cfg.fps:.2f} s)",
        )
    if len(runs) > 1:
        notes.append(
            f"face lost for more than {cfg.max_gap} frames: split into {len(runs)} pieces, {len(long_runs)} kept"
        )
    hop = cfg.sample_rate / cfg.fps
    frame_size = (int(size[0]), int(size[1])) if size else (0, 0)
    samples: list[PackedClip] = []
    small = 0
    for i, (s, e) in enumerate(long_runs):
        pts = filled[s:e]
        width = float(np.median(face_width(pts)))
        if width < cfg.min_face:
            small += 1
            continue
        seg_audio = audio[int(round(s * hop)) : min(len(audio), int(round(e * hop)))]
        seen = res.seen[s:e]
        thumb_ts = [t for t in sorted(thumbs) if s <= t < e and res.seen[t]]
        mid = (s + e) / 2
        tt = min(thumb_ts, key=lambda t: (abs(t - mid), t)) if thumb_ts else None
        qa = {
            "video_key": src.key,
            "start_frame": s,
            "frames": e - s,
            "piece": i,
            "pieces": len(long_runs),
            "face_width": round(width, 2),
            "measured": round(float(seen.mean()), 4),
            "detected": round(float(res.detected[s:e].mean()), 4),
            "interpolated": int((~seen).sum()),
            "source_fps": info["fps"],
            "vfr": bool(info["vfr_fraction"] > 0.05),
            "faces": 1 + len(others),
            "thumb_frame": None if tt is None else tt - s,
            "thumb_scale": None if tt is None else thumbs[tt][1],
            **lip_audio_coupling(pts, seg_audio, cfg.sample_rate, cfg.fps),
            **src.meta,  # family, language, group from a named-column manifest
        }
        clip = Clip(
            keypoints=pts.astype(np.float32),
            audio=seg_audio,
            sample_rate=cfg.sample_rate,
            fps=cfg.fps,
            frame_size=frame_size,
            valid=seen.copy(),
            clip_id=f"{src.key}@{s}",
            identity=src.identity,
            source=src.source or str(src.path),
            meta=qa,
        )
        samples.append(PackedClip(clip, thumbs[tt][0] if tt is not None else b""))
    if not samples:
        raise Rejected(
            "face_too_small",
            f"the face is smaller than min_face = {cfg.min_face:g} px wide in every piece long enough to keep",
        )
    if small:
        notes.append(f"{small} piece(s) dropped: face narrower than {cfg.min_face:g} px")
    return samples, facts


# ------------------------------------------------------------------------------------------- worker side

_WORKER: dict[str, Any] = {}


def _init_worker(cfg_json: str, root: str, threads: int) -> None:
    # N workers share the cores: keep each one's math libraries from starting a thread per core
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    import cv2

    cv2.setNumThreads(threads)
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


def check_config(layout: Layout, cfg: BuildConfig, work: dict | None, videos: str | None) -> None:
    """Write ``config.json`` on the first run; on a resume, refuse different extraction settings."""
    from ..io import atomic_write_text

    if layout.config.is_file():
        old = json.loads(layout.config.read_text("utf-8"))
        old_cfg = BuildConfig.model_validate(old["build"])
        if old_cfg.extraction() != cfg.extraction():
            diff = sorted(k for k, v in cfg.extraction().items() if old_cfg.extraction().get(k) != v)
            raise ConfigError(
                f"{layout.root} was built with different settings ({', '.join(diff)}); resume it with the same "
                f"settings (see {layout.config}) or build into a new folder"
            )
        if old.get("work_shard") != work:
            raise ConfigError(
                f"{layout.root} holds work shard {old.get('work_shard')} but this run asks for {work}; give the "
                "same --shard-index/--num-shards, or another output folder"
            )
        if old_cfg == cfg:
            return
    layout.root.mkdir(parents=True, exist_ok=True)
    doc = {"format": "vox-kp", "build": cfg.model_dump(mode="json"), "work_shard": work, "videos": videos}
    atomic_write_text(layout.config, json.dumps(doc, indent=2, sort_keys=True) + "\n")


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
    """Run videos in a spawn process pool. If a worker dies (a crash in native code, the OOM killer), the videos in
    flight are rerun one at a time, so only the one that kills its worker is recorded as failed. ``work`` replaces
    the per-video function (a picklable module-level function taking a :class:`VideoSource`)."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")
    args = (cfg.model_dump_json(), str(layout.root), max(1, (os.cpu_count() or 1) // workers))
    queue = deque(todo)
    suspects: deque[VideoSource] = deque()
    while queue or suspects:
        alone = bool(suspects)
        pending = deque([suspects.popleft()]) if alone else queue
        with ProcessPoolExecutor(
            1 if alone else workers, mp_context=ctx, initializer=_init_worker, initargs=args
        ) as pool:
            inflight: dict = {}
            broken = False
            while (pending or inflight) and not broken:
                while pending and len(inflight) < 2 * workers:
                    src = pending.popleft()
                    inflight[pool.submit(work or _work, src)] = src
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in done:
                    src = inflight.pop(fut)
                    try:
                        rec = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        if alone:
                            record(
                                {
                                    "key": src.key,
                                    "identity": src.identity,
                                    "source": src.source or str(src.path),
                                    "status": "failed",
                                    "reason": "worker_crashed",
                                    "message": "the worker process died while processing this video (a crash in "
                                    "native code or out of memory)",
                                }
                            )
                        else:
                            suspects.append(src)
                        continue
                    except Exception as exc:  # noqa: BLE001 - e.g. the worker could not start (bad detector)
                        rec = {
                            "key": src.key,
                            "identity": src.identity,
                            "source": src.source or str(src.path),
                            "status": "failed",
                            "reason": "error",
                            "message": f"{type(exc).__name__}: {exc}",
                        }
                    record(rec)
            if broken and not alone:
                suspects.extend(inflight.values())
            if alone and pending:  # not reached: one video per isolated pool
                queue.extendleft(pending)
