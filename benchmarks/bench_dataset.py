"""Landmark extraction speed of the Vox-KP builder, per CPU core: dlib on every frame vs. key frames + tracking.

    python benchmarks/bench_dataset.py                       # three real clips from ../shared/data/clips
    python benchmarks/bench_dataset.py a.mp4 b.mp4 --every 1 5 10 25 --upsample 1

Runs single-threaded (one core) and counts CPU time of the face tracker only (decoding, done by ffmpeg beforehand,
is not counted), so ``frames/s/core`` is what one worker process achieves; ``--workers N`` scales it by about N.
``err`` is the mean distance to the every-frame landmarks, as a fraction of the inter-ocular distance.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("A2K_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_CLIPS = ["pcavs_aldridge", "avsr_00008", "vexp_radio10"]


def main() -> None:
    import cv2
    import numpy as np

    from a2k_toolkit.builtin.dlib_detector import DlibDetector
    from a2k_toolkit.data.tracking import FaceTracker
    from a2k_toolkit.io import read_video_frames
    from a2k_toolkit.keypoints import interocular

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="*", help=f"videos (default: {', '.join(DEFAULT_CLIPS)} from {SHARED / 'clips'})")
    ap.add_argument("--every", type=int, nargs="+", default=[1, 5, 10, 25], help="detect_every values")
    ap.add_argument("--upsample", type=int, default=1, help="dlib detector upsampling")
    ap.add_argument("--max-frames", type=int, default=150)
    ap.add_argument("--dataset", help="also time reading this built dataset with VoxKPReader (clips/s, frames/s)")
    args = ap.parse_args()
    if args.dataset:
        bench_reader(Path(args.dataset))
    cv2.setNumThreads(1)
    videos = [Path(v) for v in args.videos] or [SHARED / "clips" / f"{c}.mp4" for c in DEFAULT_CLIPS]
    det = DlibDetector(upsample=args.upsample)
    rows = []
    for video in videos:
        frames = []
        for frame in read_video_frames(video, fps=25):
            frames.append(frame)
            if len(frames) >= args.max_frames:
                break
        det.landmarks(frames[0], (0, 0, 10, 10))  # load the models outside the timing
        ref = None
        for k in args.every:
            tracker = FaceTracker(det, detect_every=k)
            t0 = time.process_time()
            res = tracker.run(iter(frames), len(frames))
            cpu = time.process_time() - t0
            if ref is None:
                ref = res
            ok = ref.seen & res.seen
            err = (
                float(
                    (
                        np.linalg.norm(res.points[ok] - ref.points[ok], axis=-1).mean(-1) / interocular(ref.points[ok])
                    ).mean()
                )
                if ok.any()
                else float("nan")
            )
            rows.append(
                (
                    video.stem,
                    f"{frames[0].shape[1]}x{frames[0].shape[0]}",
                    len(frames),
                    "every frame" if k == 1 else f"every {k}, tracked",
                    res.detection_frames,
                    len(frames) / cpu,
                    err,
                )
            )
    head = ("clip", "size", "frames", "detection", "detections", "frames/s/core", "err/IOD")
    print(f"dlib (upsample={args.upsample}), one thread, CPU time of landmark extraction\n")
    print(f"{head[0]:<16}{head[1]:>9}{head[2]:>8}  {head[3]:<20}{head[4]:>11}{head[5]:>15}{head[6]:>9}")
    for r in rows:
        print(f"{r[0]:<16}{r[1]:>9}{r[2]:>8}  {r[3]:<20}{r[4]:>11}{r[5]:>15.1f}{r[6]:>9.3f}")


def bench_reader(root: Path) -> None:
    from a2k_toolkit.data.reader import VoxKPReader

    for split in ("train", "val", "test"):  # imports and first file access outside the timing
        for _ in VoxKPReader(root, split, rank=0, world_size=1):
            break
    print(f"VoxKPReader on {root} (wall time, page cache as it is)\n")
    print(f"{'split':<8}{'clips':>8}{'frames':>10}{'clips/s':>12}{'frames/s':>14}")
    for split in ("train", "val", "test"):
        t0 = time.perf_counter()
        n = frames = 0
        for clip in VoxKPReader(root, split, rank=0, world_size=1):
            n += 1
            frames += clip.num_frames
        dt = max(time.perf_counter() - t0, 1e-9)
        print(f"{split:<8}{n:>8}{frames:>10}{n / dt:>12.0f}{frames / dt:>14.0f}")
    print()


if __name__ == "__main__":
    main()
