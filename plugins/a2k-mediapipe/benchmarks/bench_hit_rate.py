"""Hit rate of the face detectors on hard inputs: dlib, mediapipe, fan (when its weights are cached) and the chain
dlib -> mediapipe.

    python plugins/a2k-mediapipe/benchmarks/bench_hit_rate.py [--frames 10] [--markdown]

Inputs (read from the shared data, never copied):

- the 45 shared still faces as they are, and apart the 16 hard ones among them (paintings, drawings, cartoons, a
  statue, masks, sunglasses, low light, a three-quarter view: ``shared_inputs.HARD_FACES``);
- synthetic hard versions of the easy faces (the others, where dlib finds the face): the face scaled to 64 and to
  32 px wide on a canvas of the original size, the image turned by 30 and by 60 degrees, darkened to 10 %
  brightness; and harder still: the face 32 and 24 px wide in a 640 x 640 picture, turned by 90 degrees, at 3 %
  brightness;
- ``--frames`` frames of each hard clip (head turns in lrs3 and lrw, close-up avsr crops: ``HARD_CLIPS``), and the
  same frames of the head-turn clips mirrored (profiles facing the other way).

A synthetic input is a hit only when the face is found where it is: the nose tip (point 30) within half an
inter-ocular distance of dlib's on the original, carried through the same scaling or turn. On a real input any
face found is a hit (each has one face).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared_inputs import HARD_CLIPS, HARD_FACES, clip_frames, load_faces, shared_data  # noqa: E402

from a2k_toolkit.keypoints import face_width, interocular  # noqa: E402


def detectors() -> dict[str, object]:
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager

    catalog = Catalog(make_plugin_manager())  # installed plugins included: mediapipe comes from a2k-mediapipe
    dets = {
        "dlib": catalog.build("detector", "dlib"),
        "mediapipe": catalog.build("detector", "mediapipe"),
        # the face mesh alone, without the searches that run when it finds no face (crops, contrast, turns)
        "mediapipe, mesh only": catalog.build(
            "detector", "mediapipe", {"crops": False, "enhance": False, "rotations": []}
        ),
    }
    if fan_weights_cached():
        dets["fan"] = catalog.build("detector", "fan", {"device": "cpu"})
    else:
        print("fan: skipped (its weights are not in the torch hub cache, and there is no network to fetch them)")
    dets["chain dlib -> mediapipe"] = catalog.build("detector", "chain", {"members": ["dlib", "mediapipe"]})
    return dets


def fan_weights_cached() -> bool:
    try:
        import torch.hub
    except ImportError:
        return False
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return any(folder.glob("2DFAN4*")) and any(folder.glob("s3fd*"))


# -------------------------------------------------------------------------------------------------- inputs
def _canvas_like(image: np.ndarray) -> np.ndarray:
    return np.full_like(image, image.reshape(-1, 3).mean(0).round().astype(np.uint8))


def scaled(image: np.ndarray, pts: np.ndarray, width_px: float):
    """The image scaled so that the face is ``width_px`` wide, centred on a canvas of the original size."""
    import cv2

    s = width_px / float(face_width(pts))
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    out = _canvas_like(image)
    y0, x0 = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    out[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return out, pts * s + np.array([x0, y0])


def placed(image: np.ndarray, pts: np.ndarray, width_px: float, side: int):
    """The image scaled so that the face is ``width_px`` wide, centred in a ``side`` x ``side`` picture (a small face
    in a large photo)."""
    import cv2

    s = width_px / float(face_width(pts))
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    out = np.full((side, side, 3), image.reshape(-1, 3).mean(0).round().astype(np.uint8))
    y0, x0 = (side - small.shape[0]) // 2, (side - small.shape[1]) // 2
    out[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return out, pts * s + np.array([x0, y0])


def turned(image: np.ndarray, pts: np.ndarray, degrees: float):
    import cv2

    h, w = image.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    fill = tuple(int(v) for v in image.reshape(-1, 3).mean(0))
    out = cv2.warpAffine(image, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    return out, pts @ rot[:, :2].T + rot[:, 2]


def darkened(image: np.ndarray, pts: np.ndarray, factor: float = 0.1):
    return np.round(image.astype(np.float32) * factor).astype(np.uint8), pts


def input_sets(dlib, frames_per_clip: int) -> dict[str, list[tuple[str, np.ndarray, np.ndarray | None]]]:
    """``set name -> [(key, image, expected 68 points or None)]``."""
    sets: dict[str, list] = defaultdict(list)
    faces = load_faces()
    for s in faces:
        name = s.key.split("/", 1)[1]
        sets["shared faces, all"].append((s.key, s.image, None))
        if name in HARD_FACES:
            sets["shared faces, the hard ones"].append((s.key, s.image, None))
    for s in faces:
        if s.key.split("/", 1)[1] in HARD_FACES:
            continue
        found = dlib.detect_all(s.image)
        if not found:
            continue
        pts = found[0]
        for label, (img, exp) in [
            ("easy faces scaled to a 64 px face", scaled(s.image, pts, 64)),
            ("easy faces scaled to a 32 px face", scaled(s.image, pts, 32)),
            ("easy faces turned 30 degrees", turned(s.image, pts, 30)),
            ("easy faces turned 60 degrees", turned(s.image, pts, 60)),
            ("easy faces at 10 % brightness", darkened(s.image, pts)),
            # harder still
            ("easy faces as a 32 px face in a 640 px picture", placed(s.image, pts, 32, 640)),
            ("easy faces as a 24 px face in a 640 px picture", placed(s.image, pts, 24, 640)),
            ("easy faces turned 90 degrees", turned(s.image, pts, 90)),
            ("easy faces at 3 % brightness", darkened(s.image, pts, 0.03)),
        ]:
            sets[label].append((s.key, img, exp))
    for rel, why in HARD_CLIPS.items():
        if not (shared_data() / rel).is_file():
            continue
        for i, frame in enumerate(clip_frames(rel, frames_per_clip)):
            sets["hard clip frames (head turns, close-ups)"].append((f"{rel}@{i}", frame, None))
            if "turn" in why:
                sets["head-turn frames mirrored"].append(
                    (f"{rel}@{i} mirrored", np.ascontiguousarray(frame[:, ::-1]), None)
                )
    return dict(sets)


def hit(found: list[np.ndarray], expected: np.ndarray | None) -> bool:
    if not found:
        return False
    if expected is None:
        return True
    tol = 0.5 * float(interocular(expected))
    return any(np.linalg.norm(f[30, :2] - expected[30]) <= tol for f in found)


# ---------------------------------------------------------------------------------------------------- main
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10, help="frames per hard clip")
    ap.add_argument("--misses", action="store_true", help="list each detector's misses")
    args = ap.parse_args(argv)
    if not (shared_data() / "faces").is_dir():
        sys.exit(f"no shared data at {shared_data()} (set A2K_SHARED_DATA)")
    dets = detectors()
    sets = input_sets(dets["dlib"], args.frames)
    results: dict[str, dict[str, int]] = {}
    misses: dict[str, list[str]] = defaultdict(list)
    seconds: dict[str, float] = defaultdict(float)
    count = 0
    for set_name, items in sets.items():
        row = {}
        for det_name, det in dets.items():
            n = 0
            for key, img, exp in items:
                t0 = time.perf_counter()
                found = det.detect_all(img)
                seconds[det_name] += time.perf_counter() - t0
                if hit(found, exp):
                    n += 1
                else:
                    misses[det_name].append(f"{set_name}: {key}")
            row[det_name] = n
        results[set_name] = row
        count += len(items)
    names = list(dets)
    print("| inputs | n | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for set_name, row in results.items():
        n = len(sets[set_name])
        print(f"| {set_name} | {n} | " + " | ".join(f"{row[d]} ({100 * row[d] / n:.0f} %)" for d in names) + " |")
    total = sum(len(v) for k, v in sets.items() if k != "shared faces, the hard ones")
    sums = {d: sum(r[d] for k, r in results.items() if k != "shared faces, the hard ones") for d in names}
    print(
        f"| all (hard faces counted once) | {total} | "
        + " | ".join(f"{sums[d]} ({100 * sums[d] / total:.0f} %)" for d in names)
        + " |"
    )
    print("\nmean time per image: " + ", ".join(f"{d} {1000 * seconds[d] / count:.0f} ms" for d in names))
    if args.misses:
        for d in names:
            print(f"\n{d} missed {len(misses[d])}:")
            for m in misses[d]:
                print(f"  {m}")


if __name__ == "__main__":
    main()
