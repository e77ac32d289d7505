"""Clip packs: many clips in one ``.npz`` file, with byte-identical output for identical input.

A pack stores the clips' arrays concatenated (one read loads a whole shard; clips are views into it):

===================  =====================  ===========================================================
``keypoints``        float32 ``(F, 68, 2)``  all frames of all clips, pixels of the 25 fps frames
``valid``            bool ``(F,)``           landmarks measured in that frame (False: interpolated)
``audio``            int16 ``(S,)``          16 kHz mono PCM of all clips
``frame_offsets``    int64 ``(N + 1,)``      clip ``i`` is ``keypoints[frame_offsets[i]:frame_offsets[i+1]]``
``audio_offsets``    int64 ``(N + 1,)``      ... and ``audio[audio_offsets[i]:audio_offsets[i+1]]``
``thumbs``           uint8 ``(B,)``          one small JPEG per clip (QA contact sheets), concatenated
``thumb_offsets``    int64 ``(N + 1,)``
``meta``             str (JSON)              per clip: key, identity, source, fps, sample_rate, frame_size,
                                             thumb frame/scale, qa
===================  =====================  ===========================================================

The zip members carry a fixed timestamp, so writing the same clips twice gives the same bytes (and checksums):
an interrupted and resumed build is bit-identical to an uninterrupted one. Files are read with
``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import atomic_path
from .clips import Clip

PACK_FORMAT = 1
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass
class PackedClip:
    """A clip plus the small JPEG thumbnail (one of its frames) that QA reports draw on."""

    clip: Clip
    thumb: bytes = b""


def audio_to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.round(np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)


def pcm16_to_audio(pcm: np.ndarray) -> np.ndarray:
    return (np.asarray(pcm, np.float32) / 32767.0).astype(np.float32)


def write_npz_deterministic(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """An uncompressed ``.npz`` whose bytes depend only on ``arrays`` (atomic)."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name in sorted(arrays):
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(arrays[name]), allow_pickle=False)


def write_pack(path: str | Path, items: list[PackedClip]) -> None:
    """Write clips (in the given order) as one pack."""
    frame_off, audio_off, thumb_off = [0], [0], [0]
    metas: list[dict[str, Any]] = []
    for it in items:
        c = it.clip
        frame_off.append(frame_off[-1] + len(c.keypoints))
        audio_off.append(audio_off[-1] + len(c.audio))
        thumb_off.append(thumb_off[-1] + len(it.thumb))
        metas.append(
            {
                "key": c.clip_id,
                "identity": c.identity,
                "source": c.source,
                "fps": c.fps,
                "sample_rate": c.sample_rate,
                "frame_size": list(c.frame_size),
                "meta": c.meta,
            }
        )
    empty_kp = np.zeros((0, 68, 2), np.float32)
    arrays = {
        "format": np.array(PACK_FORMAT, np.int64),
        "keypoints": np.concatenate([np.asarray(it.clip.keypoints, np.float32) for it in items]) if items else empty_kp,
        "valid": np.concatenate([_valid(it.clip) for it in items]) if items else np.zeros(0, bool),
        "audio": np.concatenate([audio_to_pcm16(it.clip.audio) for it in items]) if items else np.zeros(0, np.int16),
        "thumbs": np.frombuffer(b"".join(it.thumb for it in items), np.uint8),
        "frame_offsets": np.array(frame_off, np.int64),
        "audio_offsets": np.array(audio_off, np.int64),
        "thumb_offsets": np.array(thumb_off, np.int64),
        "meta": np.array(json.dumps(metas, sort_keys=True)),
    }
    write_npz_deterministic(path, arrays)


def _valid(clip: Clip) -> np.ndarray:
    return np.asarray(clip.valid if clip.valid is not None else np.ones(len(clip.keypoints), bool), bool)


class Pack:
    """A pack loaded into memory; ``pack[i]`` is a :class:`Clip` whose arrays are views into the pack's."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with np.load(self.path, allow_pickle=False) as z:
                fmt = int(z["format"])
                if fmt != PACK_FORMAT:
                    raise InputError(
                        f"{self.path} is a clip pack of format {fmt}; this a2k-toolkit reads "
                        f"{PACK_FORMAT}: rebuild the dataset or use a matching a2k-toolkit"
                    )
                self.keypoints = z["keypoints"]
                self.valid = z["valid"]
                self.audio = z["audio"]
                self.thumbs = z["thumbs"]
                self.frame_offsets = z["frame_offsets"]
                self.audio_offsets = z["audio_offsets"]
                self.thumb_offsets = z["thumb_offsets"]
                self.metas: list[dict[str, Any]] = json.loads(str(z["meta"]))
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
            raise InputError(f"cannot read clip pack {self.path}: {exc}; rebuild it (rerun the build)") from None

    def __len__(self) -> int:
        return len(self.metas)

    def __getitem__(self, i: int) -> Clip:
        m = self.metas[i]
        f0, f1 = self.frame_offsets[i], self.frame_offsets[i + 1]
        a0, a1 = self.audio_offsets[i], self.audio_offsets[i + 1]
        return Clip(
            keypoints=self.keypoints[f0:f1],
            audio=pcm16_to_audio(self.audio[a0:a1]),
            sample_rate=m["sample_rate"],
            fps=m["fps"],
            frame_size=tuple(m["frame_size"]),
            valid=self.valid[f0:f1],
            clip_id=m["key"],
            identity=m["identity"],
            source=m["source"],
            meta=dict(m["meta"]),
        )

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def thumb(self, i: int) -> bytes:
        return self.thumbs[self.thumb_offsets[i] : self.thumb_offsets[i + 1]].tobytes()

    def packed(self, i: int) -> PackedClip:
        return PackedClip(self[i], self.thumb(i))


def read_pack_metas(path: str | Path) -> list[dict[str, Any]]:
    """Only the per-clip metadata of a pack (no arrays loaded)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"]))
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read clip pack {path}: {exc}; rebuild it (rerun the build)") from None
