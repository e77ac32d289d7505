"""Reading a finished Vox-KP dataset: :class:`Clip` objects per split, each rank of a DDP job reading its own part.

::

    from a2k_toolkit.data.reader import VoxKPReader, load_statistics

    train = VoxKPReader("vox-kp", "train")          # rank and world size from torch.distributed or RANK/WORLD_SIZE
    normalizer = load_statistics("vox-kp")           # paper §4.5 mean/std of the train split
    for clip in train:                               # Clip: keypoints (T, 68, 2), audio (16 kHz), identity, ...
        ...

Shards are assigned to ranks round-robin (``shards[rank::world_size]``, after an optional per-epoch shuffle with a
seed shared by all ranks). When a split has fewer shards than ranks, every rank reads all shards and keeps every
``world_size``-th clip instead. A shard is read with one ``np.load`` and its clips are views into its arrays.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..keypoints import Normalizer
from .clips import Clip
from .layout import Layout
from .packs import Pack
from .sources import SPLITS


def dist_rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` from an initialised ``torch.distributed``, else ``RANK``/``WORLD_SIZE``, else (0, 1)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _manifest(root: Path) -> dict[str, Any]:
    path = Layout(root).manifest
    if not path.is_file():
        raise InputError(
            f"{root} is not a finished Vox-KP dataset (no manifest.json); build it with `a2k dataset build VIDEOS "
            f"{root}` (rerun the same command to finish an interrupted build)"
        )
    return json.loads(path.read_text("utf-8"))


class VoxKPReader:
    """The clips of one split of a Vox-KP dataset, for this rank (see the module docstring)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        rank: int | None = None,
        world_size: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        min_coupling: float | None = None,
    ):
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        self.root = Path(root)
        manifest = _manifest(self.root)
        self.shards: list[dict[str, Any]] = manifest["splits"][split]["shards"]
        r, w = dist_rank_world()
        self.rank = r if rank is None else rank
        self.world_size = w if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise InputError(f"rank {self.rank} is outside world size {self.world_size}")
        self.split, self.shuffle, self.seed, self.epoch = split, shuffle, seed, 0
        self.min_coupling = min_coupling
        self.fps = float(manifest["build"]["fps"])
        self.sample_rate = int(manifest["build"]["sample_rate"])

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle the shard order for ``epoch`` (same order on every rank)."""
        self.epoch = epoch

    @property
    def per_clip(self) -> bool:
        """True when there are fewer shards than ranks: ranks then split the clips, not the shards."""
        return len(self.shards) < self.world_size

    def _my_shards(self) -> list[dict[str, Any]]:
        shards = list(self.shards)
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(shards)
        return shards if self.per_clip else shards[self.rank :: self.world_size]

    def __len__(self) -> int:
        """Clips this rank reads (before ``min_coupling`` filtering)."""
        if self.per_clip:
            total = sum(s["clips"] for s in self.shards)
            return len(range(self.rank, total, self.world_size))
        return sum(s["clips"] for s in self._my_shards())

    def __iter__(self) -> Iterator[Clip]:
        k = 0
        for shard in self._my_shards():
            pack = Pack(self.root / shard["file"])
            for i in range(len(pack)):
                take = not self.per_clip or k % self.world_size == self.rank
                k += 1
                if not take:
                    continue
                clip = pack[i]
                corr = clip.meta.get("corr")
                if self.min_coupling is not None and (corr is None or corr < self.min_coupling):
                    continue  # undefined coupling (still mouth, silence) counts as failing the filter
                yield clip

    def clips(self) -> list[Clip]:
        return list(self)


def load_split(root: str | Path, split: str = "train", **kwargs) -> list[Clip]:
    """All clips of ``split`` for this rank, as a list."""
    return VoxKPReader(root, split, **kwargs).clips()


def load_statistics(root: str | Path) -> Normalizer:
    """The normalisation statistics (paper §4.5) the build fitted on the train split."""
    path = Layout(root).stats
    if not path.is_file():
        _manifest(Path(root))
        raise InputError(f"{path} is missing; rerun the build to finish the dataset")
    stats = json.loads(path.read_text("utf-8"))
    if not stats.get("normalizer"):
        raise InputError(f"{root} has no normalisation statistics ({stats.get('note', 'no training clips')})")
    return Normalizer.from_dict(stats["normalizer"])
