"""One video -> its Vox-KP samples (:func:`process_video`).

Probe the file, decode its audio (16 kHz mono) and its frames resampled to 25 fps by timestamps (constant and
variable frame rates alike), follow the faces with a :class:`~.tracking.FaceTracker`, keep the main speaker's track,
interpolate short detection gaps, split at long ones, and keep the pieces of at least ``min_frames``. Anything that
makes a video unusable is a :class:`Rejected` with a reason code (the table in docs/dataset.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..components import KeypointDetector, num_frames
from .build_config import BuildConfig
from .clips import Clip, interpolate_gaps
from .packs import PackedClip
from .qa import encode_thumb, face_width, lip_audio_coupling
from .sources import VideoSource
from .tracking import FaceTracker, TrackResult

THUMB_EVERY = 12  # frames between stored thumbnails (every clip of >= 12 frames gets one)
VFR_FRACTION = 0.05  # a video whose frame intervals change more often than this has a variable frame rate


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

    from ..io import ffmpeg_exe, parse_ffmpeg_report

    args = ["-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0?", "-vf", "vfrdet", "-f", "null", "-"]
    proc = subprocess.run([ffmpeg_exe(), *args], capture_output=True, check=False)
    text = proc.stderr.decode("utf-8", "replace")
    info = parse_ffmpeg_report(text)
    info["opened"] = "Input #0" in text
    info["error"] = next((ln.strip() for ln in reversed(text.splitlines()) if "rror" in ln), "")
    vfr = [(float(m[1]), int(m[3])) for m in re.finditer(r"VFR:([\d.]+) \((\d+)/(\d+)\)", text) if int(m[3]) > 0]
    info["vfr_fraction"] = vfr[-1][0] if vfr else 0.0
    return info


@dataclass
class _Tracked:
    """A video's audio and main face track, with what the samples are cut from."""

    info: dict[str, Any]
    audio: np.ndarray
    res: TrackResult
    thumbs: dict[int, tuple[bytes, float]]  # frame -> (JPEG, scale) every THUMB_EVERY frames
    frame_size: tuple[int, int]
    faces: int  # faces visible for long (the main speaker's included)


def process_video(src: VideoSource, cfg: BuildConfig, detector: KeypointDetector) -> tuple[list[PackedClip], dict]:
    """The samples of one video and facts about it (``notes``, frame counts, faces). Raises :class:`Rejected`."""
    info, notes = _check_media(src.path, cfg)
    audio = _load_speech(src.path, cfg)
    T = num_frames(len(audio) / cfg.sample_rate, cfg.fps)
    tracker = FaceTracker(detector, detect_every=cfg.detect_every, max_faces=cfg.max_faces, batch_size=cfg.batch_size)
    thumbs: dict[int, tuple[bytes, float]] = {}
    size: list[int] = []
    res = tracker.run(_frames_with_thumbs(src.path, cfg.fps, thumbs, size), T)
    facts = {
        "frames": T,
        "decoded": res.frames_decoded,
        "detections": res.detection_frames,
        "source_fps": info["fps"],
        "vfr": info["vfr_fraction"] > VFR_FRACTION,
        "faces": res.tracks,
        "max_faces_in_frame": res.max_faces_in_frame,
        "notes": notes,  # the same list: the notes below land in the facts too
    }
    faces = _check_faces(res, T, detector, cfg, notes)
    if res.frames_decoded < T:
        notes.append(f"video ends {T - res.frames_decoded} frames before its audio")
    frame_size = (int(size[0]), int(size[1])) if size else (0, 0)
    video = _Tracked(info, audio, res, thumbs, frame_size, faces)
    samples = _samples(src, cfg, video, notes)
    return samples, facts


def _check_media(path: Path, cfg: BuildConfig) -> tuple[dict[str, Any], list[str]]:
    """The probed facts of a readable video with audio, and the first notes; else :class:`Rejected`."""
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
    if info["vfr_fraction"] > VFR_FRACTION:
        notes.append(
            f"variable frame rate ({100 * info['vfr_fraction']:.0f}% of frame intervals change): "
            f"resampled to {cfg.fps:g} fps by timestamps"
        )
    return info, notes


def _load_speech(path: Path, cfg: BuildConfig) -> np.ndarray:
    """The audio track as float32 mono at ``cfg.sample_rate``; :class:`Rejected` when undecodable or silent."""
    from ..errors import AudioLoadError
    from ..io import load_audio

    try:
        audio = load_audio(path, cfg.sample_rate)
    except AudioLoadError as exc:
        raise Rejected("bad_audio", f"cannot decode the audio track: {exc}") from None
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    level = 20 * math.log10(max(rms, 1e-12))
    if level < cfg.silence_db:
        raise Rejected("silent_audio", f"the audio track is silent ({level:.0f} dBFS < {cfg.silence_db:g} dBFS)")
    return audio


def _frames_with_thumbs(path: Path, fps: float, thumbs: dict[int, tuple[bytes, float]], size: list) -> Iterator:
    from ..io import read_video_frames

    for t, frame in enumerate(read_video_frames(path, fps=fps)):
        if t == 0:
            size[:] = frame.shape[:2]
        if t % THUMB_EVERY == 0:
            thumbs[t] = encode_thumb(frame)
        yield frame


def _check_faces(res: TrackResult, T: int, detector: KeypointDetector, cfg: BuildConfig, notes: list[str]) -> int:
    """The number of faces visible for long (the main speaker's included); :class:`Rejected` when there is no face
    or (``multi_face: reject``) another face is visible for long."""
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
    return 1 + len(others)


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


def _samples(src: VideoSource, cfg: BuildConfig, video: _Tracked, notes: list[str]) -> list[PackedClip]:
    """The pieces of the main track long enough and with a face large enough, as samples."""
    filled, usable = interpolate_gaps(video.res.points, video.res.seen, cfg.max_gap)
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
    samples: list[PackedClip] = []
    small = 0
    for i, (s, e) in enumerate(long_runs):
        pts = filled[s:e]
        width = float(np.median(face_width(pts)))
        if width < cfg.min_face:
            small += 1
            continue
        samples.append(_piece(src, cfg, video, pts, width, s, e, (i, len(long_runs))))
    if not samples:
        raise Rejected(
            "face_too_small",
            f"the face is smaller than min_face = {cfg.min_face:g} px wide in every piece long enough to keep",
        )
    if small:
        notes.append(f"{small} piece(s) dropped: face narrower than {cfg.min_face:g} px")
    return samples


def _piece(
    src: VideoSource,
    cfg: BuildConfig,
    video: _Tracked,
    pts: np.ndarray,
    width: float,
    s: int,
    e: int,
    piece: tuple[int, int],
) -> PackedClip:
    """The sample of frames ``[s, e)``: keypoints, audio, QA measures and the thumbnail nearest its middle."""
    res, thumbs, info = video.res, video.thumbs, video.info
    hop = cfg.sample_rate / cfg.fps
    seg_audio = video.audio[int(round(s * hop)) : min(len(video.audio), int(round(e * hop)))]
    seen = res.seen[s:e]
    thumb_ts = [t for t in sorted(thumbs) if s <= t < e and res.seen[t]]
    mid = (s + e) / 2
    tt = min(thumb_ts, key=lambda t: (abs(t - mid), t)) if thumb_ts else None
    qa = {
        "video_key": src.key,
        "start_frame": s,
        "frames": e - s,
        "piece": piece[0],
        "pieces": piece[1],
        "face_width": round(width, 2),
        "measured": round(float(seen.mean()), 4),
        "detected": round(float(res.detected[s:e].mean()), 4),
        "interpolated": int((~seen).sum()),
        "source_fps": info["fps"],
        "vfr": bool(info["vfr_fraction"] > VFR_FRACTION),
        "faces": video.faces,
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
        frame_size=video.frame_size,
        valid=seen.copy(),
        clip_id=f"{src.key}@{s}",
        identity=src.identity,
        source=src.source or str(src.path),
        meta=qa,
    )
    return PackedClip(clip, thumbs[tt][0] if tt is not None else b"")
