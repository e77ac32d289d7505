"""One talking-face clip as training/evaluation data: 25 fps keypoints + 16 kHz mono audio.

:func:`extract_clip` decodes a video, resamples it to ``fps``, extracts the audio, and runs a keypoint detector on
every frame (largest face). Frames without a face are interpolated when the gap is short.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..components import KeypointDetector, num_frames
from ..errors import InputError
from ..io import load_audio, probe_video, read_video_frames


@dataclass
class Clip:
    """Keypoints ``(T, 68, 2)`` in pixels of the (resampled) video frames, their validity, and the clip's audio."""

    keypoints: np.ndarray
    audio: np.ndarray
    sample_rate: int = 16000
    fps: float = 25.0
    frame_size: tuple[int, int] = (0, 0)  # (height, width)
    valid: np.ndarray | None = None  # (T,) bool: a face was detected in that frame (others interpolated)
    clip_id: str = ""
    identity: str = ""
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.keypoints)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


def interpolate_gaps(points: np.ndarray, valid: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Linearly fill runs of invalid frames no longer than ``max_gap`` (edges: nearest valid frame).

    Returns the filled points and the mask of frames that are now usable.
    """
    pts = points.copy()
    usable = valid.copy()
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        return pts, usable
    T = len(valid)
    t = 0
    while t < T:
        if valid[t]:
            t += 1
            continue
        start = t
        while t < T and not valid[t]:
            t += 1
        gap = t - start
        if gap > max_gap:
            continue
        left, right = start - 1, t
        if left < 0 and right >= T:
            continue
        if left < 0:
            pts[start:t] = pts[right]
        elif right >= T:
            pts[start:t] = pts[left]
        else:
            w = (np.arange(1, gap + 1) / (gap + 1))[:, None, None]
            pts[start:t] = (1 - w) * pts[left] + w * pts[right]
        usable[start:t] = True
    return pts, usable


def extract_clip(
    path: str | Path,
    detector: KeypointDetector,
    *,
    fps: float = 25.0,
    sample_rate: int = 16000,
    max_gap: int = 5,
    identity: str = "",
) -> Clip:
    """Decode ``path`` at ``fps``, detect 68 keypoints per frame, and load its audio at ``sample_rate``.

    The number of frames is ``ceil(audio_duration * fps)`` (the video is padded with its last frame or cut to match),
    so features from any front-end align frame by frame.
    """
    path = Path(path)
    info = probe_video(path, count_frames=False)
    if info["video_codec"] is None:
        raise InputError(f"{path} is not a video file (no video stream)")
    if info["audio_codec"] is None:
        raise InputError(f"{path} has no audio track")
    audio = load_audio(path, sample_rate)
    T = num_frames(len(audio) / sample_rate, fps)
    frames = []
    for i, frame in enumerate(read_video_frames(path, fps=fps)):
        if i >= T:
            break
        frames.append(frame)
    if not frames:
        raise InputError(f"{path} has no decodable video frames")
    h, w = frames[0].shape[:2]
    points = np.zeros((T, 68, 2), np.float32)
    valid = np.zeros(T, bool)
    for i, pts in enumerate(detector.detect_batch(frames)):
        if pts is not None:
            points[i], valid[i] = pts, True
    if len(frames) < T and valid[len(frames) - 1]:  # video slightly shorter than its audio: hold the last frame
        points[len(frames) :] = points[len(frames) - 1]
        valid[len(frames) :] = True
    filled, usable = interpolate_gaps(points, valid, max_gap)
    return Clip(
        keypoints=filled,
        audio=audio,
        sample_rate=sample_rate,
        fps=fps,
        frame_size=(h, w),
        valid=usable,
        clip_id=path.stem,
        identity=identity or path.stem,
        source=str(path),
        meta={"detected_fraction": float(valid.mean()), "source_fps": info["fps"]},
    )


def save_clip(path: str | Path, clip: Clip) -> None:
    """Write a clip as one ``.npz`` (atomic)."""
    import json

    from ..io import atomic_path

    meta = {
        "sample_rate": clip.sample_rate,
        "fps": clip.fps,
        "frame_size": list(clip.frame_size),
        "clip_id": clip.clip_id,
        "identity": clip.identity,
        "source": clip.source,
        "meta": clip.meta,
    }
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                keypoints=clip.keypoints,
                audio=clip.audio,
                valid=clip.valid if clip.valid is not None else np.ones(len(clip.keypoints), bool),
                info=json.dumps(meta),
            )


def load_clip(path: str | Path) -> Clip:
    import json

    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["info"]))
        return Clip(
            keypoints=z["keypoints"],
            audio=z["audio"],
            valid=z["valid"],
            sample_rate=meta["sample_rate"],
            fps=meta["fps"],
            frame_size=tuple(meta["frame_size"]),
            clip_id=meta["clip_id"],
            identity=meta["identity"],
            source=meta["source"],
            meta=meta.get("meta", {}),
        )
