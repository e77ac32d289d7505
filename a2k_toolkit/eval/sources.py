"""Where evaluation clips come from: saved clip files, videos (keypoints extracted once, then cached), and a split
of a built Vox-KP dataset (:func:`split_clips`).

Every source yields :class:`~a2k_toolkit.data.clips.Clip` objects one at a time.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from ..components import KeypointDetector
from ..data.clips import Clip, extract_clip, load_clip, save_clip
from ..errors import InputError
from ..hashing import sha1_text

CLIP_EXTS = frozenset({".npz"})
VIDEO_EXTS = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"})


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/a2k-toolkit/eval-clips`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "a2k-toolkit" / "eval-clips"


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Clip files and videos named by ``paths``; a directory contributes its ``.npz`` clips and videos (sorted, not
    recursive)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in CLIP_EXTS | VIDEO_EXTS)
            if not found:
                raise InputError(
                    f"no clips in directory {p}: expected saved clip files (.npz, written by a2k_toolkit.data.clips."
                    f"save_clip) or videos ({', '.join(sorted(VIDEO_EXTS))})"
                )
            out += found
        elif p.is_file():
            if p.suffix.lower() not in CLIP_EXTS | VIDEO_EXTS:
                raise InputError(
                    f"{p} is neither a saved clip (.npz) nor a video ({', '.join(sorted(VIDEO_EXTS))}); give clip "
                    "files, videos, or a directory of them"
                )
            out.append(p)
        else:
            raise InputError(f"clip source not found: {p} (give a directory, .npz clip files or video files)")
    return out


def read_clip_file(path: Path) -> Clip:
    """A clip saved with :func:`~a2k_toolkit.data.clips.save_clip`, with a clear error for anything else."""
    try:
        return load_clip(path)
    except KeyError as exc:
        raise InputError(
            f"{path} is an .npz file but not a saved clip (missing {exc}); clips are written by "
            "a2k_toolkit.data.clips.save_clip (keypoints + audio + info)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - zip/npy/json errors differ
        raise InputError(f"cannot read clip file {path}: {exc}; re-create it with save_clip") from None


def _cache_key(path: Path, detector: KeypointDetector, fps: float, sample_rate: int) -> str:
    st = path.stat()
    ident = json.dumps(
        [
            str(path.resolve()),
            st.st_size,
            st.st_mtime_ns,
            fps,
            sample_rate,
            detector.name,
            detector.params.model_dump(mode="json"),
        ],
        sort_keys=True,
    )
    return sha1_text(ident)[:16]


def video_clip(
    path: Path, detector: KeypointDetector, cache_dir: Path | None, *, fps: float = 25.0, sample_rate: int = 16000
) -> Clip:
    """Keypoints + audio of a video at ``fps``, extracted with ``detector``; reused from ``cache_dir`` when the same
    video (path, size, modification time) was extracted with the same detector settings before."""
    cached = None
    if cache_dir is not None:
        cached = Path(cache_dir) / f"{path.stem}-{_cache_key(path, detector, fps, sample_rate)}.npz"
        if cached.is_file():
            try:
                return load_clip(cached)
            except Exception:  # noqa: BLE001 - a damaged cache entry is re-extracted
                pass
    clip = extract_clip(path, detector, fps=fps, sample_rate=sample_rate)
    if cached is not None:
        save_clip(cached, clip)
    return clip


def split_clips(dataset_dir: Path, split: str) -> Iterator[Clip]:
    """Clips of one split (``train``, ``val``, ``test``) of a built Vox-KP dataset directory (``a2k dataset build``);
    ``a2k eval --split NAME`` routes here."""
    from ..data.reader import VoxKPReader

    yield from VoxKPReader(dataset_dir, split, rank=0, world_size=1)


def iter_clips(
    paths: Iterable[str | Path],
    *,
    detector: KeypointDetector | Callable[[], KeypointDetector] | None = None,
    cache_dir: Path | None = None,
    fps: float = 25.0,
    sample_rate: int = 16000,
    split: str | None = None,
) -> Iterator[Clip]:
    """Clips from ``paths``: saved ``.npz`` clips, videos (extracted with ``detector``, built on first need when it
    is a factory, and cached in ``cache_dir``), or with ``split`` the clips of that split of each dataset dir."""
    if split is not None:
        for p in paths:
            yield from split_clips(Path(p), split)
        return
    files = expand_paths(paths)  # check every path before the (slow) extraction starts
    det = detector
    for path in files:
        if path.suffix.lower() in CLIP_EXTS:
            yield read_clip_file(path)
            continue
        if det is None:
            raise InputError(f"{path} is a video: a keypoint detector is needed to extract its keypoints")
        if not isinstance(det, KeypointDetector):
            det = det()
        yield video_clip(path, det, cache_dir, fps=fps, sample_rate=sample_rate)


# the fewest frames a clip keeps after --photo-gap shifts it (its photo and 15 scored frames)
PHOTO_GAP_MIN_FRAMES = 16


def photo_gap(clips: Iterable[Clip], frames: int) -> Iterator[Clip]:
    """Each clip with its frame 0 kept as the photo and its audio and later frames starting ``frames`` frames later
    (``a2k eval --photo-gap``): frame ``t >= 1`` is the real frame ``k + t`` with the audio of frame ``k`` on, so the
    photo's moment does not match the speech's start, as a user's photo does not. ``k = min(frames, T - 16)`` (0 for
    clips of 16 frames or fewer): every clip stays, so cross-validation folds deal the same people."""
    if frames < 0:
        raise InputError(f"--photo-gap must be 0 or more frames, got {frames}")
    for clip in clips:
        k = max(0, min(frames, len(clip.keypoints) - PHOTO_GAP_MIN_FRAMES))
        if k == 0:
            yield clip
            continue
        keep = np.r_[0, k + 1 : len(clip.keypoints)]
        valid = None if clip.valid is None else np.asarray(clip.valid)[keep]
        audio = clip.audio[int(round(k * clip.sample_rate / clip.fps)) :]
        meta = {**clip.meta, "photo_gap": k}
        yield dataclasses.replace(clip, keypoints=clip.keypoints[keep], valid=valid, audio=audio, meta=meta)
