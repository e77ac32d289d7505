"""Pose from a reference, measured on shared clips: head motion followed and lip sync kept; the figure of
docs/controls.md.

    python benchmarks/pose_transfer.py [--data ../shared/data] [--clips pcavs_ralph pcavs_aldridge ...]
                                       [--photo faces/obama.jpg] [--figure docs/images/pose-transfer.png]

For each clip (its landmarks found by dlib at 25 fps: the ground truth) the default pipeline (the shipped
audio2keypoint) speaks the clip's own speech twice, without and with ``pose: {source: <the clip's video>}`` (its faces
found again by the pipeline's dlib), on two photos: the clip's first frame (the same person) and ``--photo``
(another person, another face size and tilt). Columns: the correlation of the nose tip's x and y (relative to frame 0,
in each face's inter-ocular distance) and of the head's in-plane angle (the similarity of brows, eyes and nose) with
the clip's, the head-motion ratio (metrics.head_motion, generated / real), and lip sync (``lip_corr`` of
docs/evaluation.md: the best-lag correlation of the inner-lip opening with the clip's real one) without and with the
pose. The figure: the nose tip of the first clip's person, of the photo without pose and of the photo with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from a2k_toolkit import Pipeline  # noqa: E402
from a2k_toolkit.eval import metrics as M  # noqa: E402
from a2k_toolkit.io import read_video_frames  # noqa: E402
from a2k_toolkit.keypoints import similarity  # noqa: E402

NOSE = 30
DEFAULT_CLIPS = ("pcavs_ralph", "pcavs_aldridge", "pcavs_beckham", "pcavs_christie", "pcavs_filan")


def nose_track(points: np.ndarray) -> np.ndarray:
    """The nose tip relative to frame 0, in the sequence's reference IOD, ``(T, 2)``."""
    return (points[:, NOSE] - points[0, NOSE]) / M.reference_iod(points)


def head_angle(points: np.ndarray) -> np.ndarray:
    a, _ = similarity(points[0, 17:48], points[:, 17:48])
    return np.angle(a)


def scores(pred: np.ndarray, real: np.ndarray) -> dict[str, float]:
    n = min(len(pred), len(real))
    p, r = pred[:n].astype(np.float64), real[:n].astype(np.float64)
    tp, tr = nose_track(p), nose_track(r)
    real_open = M.mouth_opening(r, M.reference_iod(r))
    return {
        "nose_x": M.pearson(tp[:, 0], tr[:, 0]),
        "nose_y": M.pearson(tp[:, 1], tr[:, 1]),
        "angle": M.pearson(head_angle(p), head_angle(r)),
        "head_ratio": M.head_motion(p, M.reference_iod(p)) / M.head_motion(r, M.reference_iod(r)),
        "lip": M.best_lag_correlation(real_open, M.mouth_opening(p, M.reference_iod(p)), M.MAX_LAG)[0],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("A2K_SHARED_DATA", REPO.parent / "shared" / "data"))
    )
    ap.add_argument("--clips", nargs="+", default=list(DEFAULT_CLIPS))
    ap.add_argument("--photo", default="faces/obama.jpg", help="another person's photo, relative to --data")
    ap.add_argument("--figure", type=Path, help="write the nose-tip figure (PNG) of the first clip here")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)

    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.data.clips import extract_clip

    base = {"renderer": None, "device": "cpu"}
    plain = Pipeline.from_config(base)
    detector = Catalog().build("detector", "dlib")
    other = plain.load_image(args.data / args.photo)
    rows, figure_data = [], None
    print("| clip | photo | nose x | nose y | angle | head ratio | lip sync without -> with pose |")
    print("|---|---|---|---|---|---|---|")
    for name in args.clips:
        video = args.data / "clips" / f"{name}.mp4"
        clip = extract_clip(video, detector)
        real = clip.keypoints
        posed = Pipeline.from_config({**base, "pose": {"source": str(video)}})
        first = next(iter(read_video_frames(video, fps=25)))
        speech = (clip.audio, clip.sample_rate)
        for label, photo in (("its first frame", first), (Path(args.photo).stem, other)):
            a = plain(photo, speech).keypoints.points
            b = posed(photo, speech).keypoints.points
            sa, sb = scores(a, real), scores(b, real)
            rows.append((name, label, sa, sb))
            print(
                f"| {name} | {label} | {sb['nose_x']:.3f} | {sb['nose_y']:.3f} | {sb['angle']:.3f} | "
                f"{sb['head_ratio']:.2f} | {sa['lip']:.3f} -> {sb['lip']:.3f} |"
            )
            if figure_data is None and photo is other:
                figure_data = (name, Path(args.photo).stem, real, a, b)
    with_pose = [r[3] for r in rows]
    print(
        f"\nmean over {len(rows)} runs: nose x {np.mean([s['nose_x'] for s in with_pose]):.3f}, nose y "
        f"{np.mean([s['nose_y'] for s in with_pose]):.3f}, angle {np.mean([s['angle'] for s in with_pose]):.3f}; "
        f"without pose: nose x {np.mean([r[2]['nose_x'] for r in rows]):.3f}, nose y "
        f"{np.mean([r[2]['nose_y'] for r in rows]):.3f}; lip sync {np.mean([r[2]['lip'] for r in rows]):.3f} -> "
        f"{np.mean([s['lip'] for s in with_pose]):.3f}"
    )
    if args.figure and figure_data is not None:
        plot(args.figure, *figure_data)
    return 0


def plot(path: Path, clip: str, person: str, real: np.ndarray, plain: np.ndarray, posed: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(real), len(plain))
    t = np.arange(n) / 25.0
    fig, axes = plt.subplots(2, 1, figsize=(7.0, 4.2), sharex=True)
    for k, (ax, axis) in enumerate(zip(axes, ("x", "y"))):
        ax.plot(t, nose_track(real[:n])[:, k], color="black", lw=2.0, label=f"{clip} (the pose source)")
        ax.plot(t, nose_track(plain[:n])[:, k], color="tab:blue", lw=1.2, label=f"{person}, generated head motion")
        ax.plot(
            t, nose_track(posed[:n])[:, k], color="tab:orange", lw=1.2, ls="--", label=f"{person}, pose from {clip}"
        )
        ax.set_ylabel(f"nose tip {axis} (IOD)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    axes[-1].set_xlabel("time (s)")
    fig.suptitle("Nose tip relative to frame 0, in each face's inter-ocular distance", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"figure: {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    raise SystemExit(main())
