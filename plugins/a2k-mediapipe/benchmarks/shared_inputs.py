"""The real inputs of the mediapipe benchmarks, read from the shared data (``../shared/data`` beside the repository,
or ``$A2K_SHARED_DATA``): the still faces, frames of the clips, and the identity each belongs to.

Nothing here is copied into the repository; the scripts skip what is absent.
"""

from __future__ import annotations

import csv
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]


def shared_data() -> Path:
    return Path(os.environ.get("A2K_SHARED_DATA", REPO.parent / "shared" / "data"))


# Still faces that are hard on purpose: paintings, drawings, cartoons, a statue, a mask, sunglasses, a dark room.
HARD_FACES: dict[str, str] = {
    "dali.jpg": "black and white, moustache",
    "johncartoon.jpg": "two-tone poster drawing",
    "mulan.jpg": "cartoon (3D animation)",
    "jali.jpg": "computer-generated",
    "paint3.jpg": "caricature painting",
    "paint_boy.jpg": "painting",
    "paint_boy2.jpg": "painting",
    "monalisa2.jpg": "painting",
    "monalisa3.jpg": "painting",
    "morgan.jpg": "painted portrait",
    "statue2.jpg": "stone statue",
    "captain.jpg": "mask",
    "captain2.jpg": "mask",
    "neo.jpg": "sunglasses",
    "lab3.jpg": "low light",
    "dwayne2.jpg": "three-quarter view",
}

# Clips that are hard for detectors: head turns (lrs3, the old man of lrw), close-up crops (avsr).
HARD_CLIPS: dict[str, str] = {
    "clips/lrs3/spectre_4994604c.mp4": "head turns",
    "clips/lrs3/spectre_817ff96d.mp4": "head turns",
    "clips/lrs3/spectre_6a9a4270.mp4": "head turns",
    "clips/lrw/lip_reading_deeplear_2e5462bd.mp4": "head turned (old man)",
    "clips/avsr_00016.mp4": "close-up crop",
    "clips/avsr_00019.mp4": "close-up crop",
    "clips/avsr_00022.mp4": "close-up crop",
    "clips/avsr_00002.mp4": "close-up crop",
    "clips/avsr_00008.mp4": "close-up crop",
}


@dataclass
class Sample:
    key: str  # "faces/obama.jpg" or "clips/vr_2.mp4@3"
    identity: str
    image: np.ndarray  # RGB uint8


def face_identity(filename: str) -> str:
    """The person in a still face, from its file name: digits dropped (``hermione2`` is ``hermione``), the long
    Leonardo DiCaprio file name is ``leo``."""
    stem = Path(filename).stem.lower()
    if "leonardo" in stem:
        return "leo"
    return re.sub(r"\d+$", "", stem)


def face_files() -> list[Path]:
    folder = shared_data() / "faces"
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def load_faces() -> list[Sample]:
    from a2k_toolkit.io import load_image

    return [Sample(f"faces/{p.name}", "face:" + face_identity(p.name), load_image(p)) for p in face_files()]


def clip_rows() -> list[dict]:
    path = shared_data() / "clips.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def clip_frames(rel: str, count: int) -> list[np.ndarray]:
    """``count`` frames spread evenly over a clip (fewer for a shorter one)."""
    from a2k_toolkit.io import probe_video, read_video_frames

    path = shared_data() / rel
    duration = float(probe_video(path, count_frames=False).get("duration") or 1.0)
    frames = list(read_video_frames(path, fps=max(count / max(duration, 0.04), 0.05)))
    if len(frames) > count:
        frames = [frames[i] for i in np.linspace(0, len(frames) - 1, count).round().astype(int)]
    return frames


def mapping_clips() -> list[dict]:
    """The clips of the mapping measurement: every clip except the one-word ``lrcar`` family, plus the first clip of
    each ``lrcar`` identity (so that the 1600 short clips do not swamp the rest)."""
    rows, seen = [], set()
    for row in clip_rows():
        if row["family"] == "lrcar":
            if row["identity"] in seen:
                continue
            seen.add(row["identity"])
        rows.append(row)
    return rows


def load_clip_samples(rows: list[dict], per_clip: int) -> Iterator[Sample]:
    for row in rows:
        n = per_clip if row["family"] != "lrcar" else 2
        try:
            frames = clip_frames(row["path"], n)
        except Exception as exc:  # noqa: BLE001 - a clip that cannot be read is reported and skipped
            print(f"skipped {row['path']}: {exc}")
            continue
        for i, frame in enumerate(frames):
            yield Sample(f"{row['path']}@{i}", "clip:" + row["identity"], frame)


def is_fit(identity: str) -> bool:
    """The split of the mapping measurement, by identity: the fit half (chooses the mapping) or the report half."""
    return zlib.crc32(identity.encode()) % 2 == 0
