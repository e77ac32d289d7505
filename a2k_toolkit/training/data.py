"""Training data: clip sources (the seam where the Vox-KP shard reader plugs in) and the train / val window sets.

A *clip source* turns the paths listed in ``data.train`` / ``data.val`` into :class:`~a2k_toolkit.data.clips.Clip`
objects. Built in:

* ``clips`` -- ``.npz`` files written by :func:`a2k_toolkit.data.clips.save_clip` (or directories of them);
* ``videos`` -- talking-head videos, turned into clips by :func:`~a2k_toolkit.data.clips.extract_clip` with the
  configured keypoint detector, and cached as ``.npz`` in ``data.cache_dir`` (keyed by path, size, mtime, detector);
* ``auto`` -- per file by extension (``.npz`` -> clips, anything else -> videos);
* ``voxkp`` -- built Vox-KP dataset directories (``a2k dataset build``); a path reads its ``train`` split, and
  ``DIR@val`` / ``DIR@test`` name another split (so ``data.val: [DIR@val]``).

Another reader registers itself with :func:`register_clip_source` and is chosen with ``data.format: <name>``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..data.clips import Clip, extract_clip, load_clip, save_clip
from ..errors import ConfigError, InputError
from ..hashing import sha1_text
from .config import DataConfig

VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg"}
CLIP_EXTS = {".npz"}

ClipSource = Callable[[list[str], DataConfig], Iterable[Clip]]
CLIP_SOURCES: dict[str, ClipSource] = {}


def register_clip_source(name: str, source: ClipSource) -> None:
    """Make ``data.format: name`` read clips with ``source(paths, data_config) -> iterable of Clip``."""
    if name in CLIP_SOURCES and CLIP_SOURCES[name] is not source:
        raise ConfigError(f"a clip source named {name!r} is already registered")
    CLIP_SOURCES[name] = source


def expand_paths(paths: Iterable[str], exts: set[str]) -> list[Path]:
    """Files given directly, plus the files with one of ``exts`` found (recursively, sorted) in given directories."""
    out: list[Path] = []
    for p in paths:
        path = Path(p).expanduser()
        if path.is_dir():
            out += sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in exts)
        elif path.is_file():
            out.append(path)
        else:
            raise ConfigError(f"training data path {path} does not exist; fix data.train / data.val in the config")
    return out


def _cache_file(video: Path, cfg: DataConfig) -> Path | None:
    if not cfg.cache_dir:
        return None
    st = video.stat()
    key = json.dumps([str(video.resolve()), st.st_size, st.st_mtime_ns, cfg.detector.model_dump(mode="json")])
    digest = sha1_text(key)[:12]
    return Path(cfg.cache_dir) / f"{video.stem}-{digest}.npz"


def video_clips(paths: list[str], cfg: DataConfig, *, catalog=None) -> Iterable[Clip]:
    """Clips from videos, keypoints by ``data.detector``, built through the host's ``catalog`` (the trainer's)."""
    detector = None
    for video in expand_paths(paths, VIDEO_EXTS):
        cached = _cache_file(video, cfg)
        if cached is not None and cached.is_file():
            try:
                yield load_clip(cached)
                continue
            except Exception:  # noqa: BLE001 - a damaged cache entry is re-extracted
                pass
        if detector is None:
            detector = _detector(cfg, catalog)
        clip = extract_clip(video, detector)
        if cached is not None:
            save_clip(cached, clip)
        yield clip


def _detector(cfg: DataConfig, catalog):
    if catalog is None:  # transitional: a caller that does not pass the host's catalog yet
        import warnings

        from ..catalog import Catalog

        warnings.warn(
            "reading training videos without the host's catalog is deprecated: pass catalog= to load_clips",
            DeprecationWarning,
            stacklevel=3,
        )
        catalog = Catalog()
    return catalog.build("detector", cfg.detector, where="data.detector")


def npz_clips(paths: list[str], cfg: DataConfig) -> Iterable[Clip]:
    for f in expand_paths(paths, CLIP_EXTS):
        try:
            yield load_clip(f)
        except Exception as exc:  # noqa: BLE001
            raise InputError(
                f"cannot read clip file {f}: {exc}; write clips with a2k_toolkit.data.clips.save_clip"
            ) from exc


def auto_clips(paths: list[str], cfg: DataConfig, *, catalog=None) -> Iterable[Clip]:
    for f in expand_paths(paths, VIDEO_EXTS | CLIP_EXTS):
        if f.suffix.lower() in CLIP_EXTS:
            yield from npz_clips([str(f)], cfg)
        else:
            yield from video_clips([str(f)], cfg, catalog=catalog)


register_clip_source("auto", auto_clips)
register_clip_source("videos", video_clips)
register_clip_source("clips", npz_clips)


def split_path(path: str, default_split: str = "train") -> tuple[str, str]:
    """``"DIR@val"`` -> ``("DIR", "val")``; ``"DIR"`` -> ``("DIR", default_split)``."""
    root, sep, split = str(path).rpartition("@")
    if sep and split in ("train", "val", "test"):
        return root, split
    return str(path), default_split


def voxkp_clips(paths: list[str], cfg: DataConfig) -> Iterable[Clip]:
    """Every clip of the named split of each Vox-KP dataset (all of them on every rank: the DistributedSampler over
    training windows splits the work); ``data.min_coupling`` filters the train split only."""
    from ..data.reader import VoxKPReader

    for p in paths:
        root, split = split_path(p)
        min_coupling = cfg.min_coupling if split == "train" else None
        yield from VoxKPReader(root, split, rank=0, world_size=1, min_coupling=min_coupling)


register_clip_source("voxkp", voxkp_clips)


def load_clips(paths: list[str], cfg: DataConfig, exclude: Iterable[str] = (), *, catalog=None) -> list[Clip]:
    """Clips from ``paths`` with the configured source, skipping files in ``exclude`` (the validation files) and
    clips where a face was found in fewer than ``data.min_valid_fraction`` of the frames. ``catalog``: the host's,
    which builds the keypoint detector for video files (the sources that take one: ``videos``, ``auto``)."""
    if cfg.format not in CLIP_SOURCES:
        raise ConfigError(f"unknown data.format {cfg.format!r}; available: {', '.join(sorted(CLIP_SOURCES))}")
    for key in ("min_coupling", "lip_min_coupling"):
        if getattr(cfg, key) is not None and cfg.format != "voxkp":
            raise ConfigError(
                f"data.{key} needs data.format: voxkp (the coupling is measured by `a2k dataset "
                f"build`); build a Vox-KP dataset or remove {key}"
            )
    excluded = {os.path.realpath(p) for p in exclude}
    if excluded and cfg.format in ("auto", "videos", "clips"):
        files = [str(f) for f in expand_paths(paths, VIDEO_EXTS | CLIP_EXTS) if os.path.realpath(f) not in excluded]
    else:
        files = list(paths)
    clips = []
    source = CLIP_SOURCES[cfg.format]
    with_host = {"catalog": catalog} if source in (video_clips, auto_clips) else {}
    for clip in source(files, cfg, **with_host):
        frac = float(clip.valid.mean()) if clip.valid is not None and len(clip.valid) else 1.0
        if frac >= cfg.min_valid_fraction:
            clips.append(clip)
    return clips


def validation_files(cfg: DataConfig) -> list[str]:
    if not cfg.val or cfg.format not in ("auto", "videos", "clips"):
        return []
    return [str(f) for f in expand_paths(cfg.val, VIDEO_EXTS | CLIP_EXTS)]


# ------------------------------------------------------------------------------------------- balanced sampling


def balance_weights(units: list[str], power: float) -> np.ndarray:
    """Per-window sampling weights such that the windows of each unit (a family or a person group; ``units[i]`` is
    window ``i``'s) together weigh ``n_unit ** power`` (normalised to sum to 1): ``power`` 1 is uniform over windows,
    0 gives every unit the same share."""
    _, inverse, counts = np.unique(np.asarray(units, dtype=object).astype(str), return_inverse=True, return_counts=True)
    mass = counts.astype(np.float64) ** power
    w = (mass / counts)[inverse]
    return w / w.sum()


class WeightedDistributedSampler:
    """Draws ``len(weights)`` window indices per epoch with replacement, by ``weights``, from a generator seeded by
    ``(seed, epoch)``, and hands process ``rank`` every ``num_replicas``-th of them (the same draws on every rank, so
    the ranks' shares are disjoint in position and equal in size). The interface of ``DistributedSampler``
    (``set_epoch``, iteration, ``len``)."""

    def __init__(self, weights: np.ndarray, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        self.weights = np.asarray(weights, np.float64)
        self.num_replicas, self.rank, self.seed = int(num_replicas), int(rank), int(seed)
        self.epoch = 0
        self.num_samples = len(self.weights) // self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, 104729, self.epoch])
        total = self.num_samples * self.num_replicas
        draws = rng.choice(len(self.weights), size=total, replace=True, p=self.weights)
        return iter(draws[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples
