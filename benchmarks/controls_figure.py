"""The controls of the shipped model, measured on the bundled samples: the figure and numbers of docs/controls.md.

    python benchmarks/controls_figure.py [--image a2k_toolkit/samples/astronaut.jpg]
                                         [--audio a2k_toolkit/samples/speech.wav] [--figure docs/images/controls.png]

The default pipeline (dlib on the photo, the shipped ``audio2keypoint``) speaks the audio once per setting, every
other control at the model's defaults (head_motion 3, mouth_scale 1, energy_mouth 0.5, keep_mouth_shape 1,
mouth_prior 0.75, blink_interval 3.5; seed 0):

* ``head_motion`` 0 / 1 / 3: the nose tip's (point 30) distance from frame 0, in the reference's inter-ocular distance
  (IOD), and its spread (``metrics.head_motion``: the RMS distance from its mean position);
* ``mouth_scale`` 0.5 / 1 / 1.4 with ``energy_mouth`` 0, then ``energy_mouth`` 0 / 0.5 / 1 at ``mouth_scale`` 1, then
  ``keep_mouth_shape`` 0 / 1, then ``mouth_prior`` 0 / 0.75: the inner-lip opening (``keypoints.mouth_opening``,
  points 62-66 over the reference IOD), its mean and standard deviation;
* ``blink_interval`` 0 / 3.5 s: the eye opening (the mean gap of the eyelid pairs ``motion.EYELIDS``, 37-41, 38-40,
  43-47, 44-46, over the reference IOD) and the blinks counted (runs of frames below half the reference's opening).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from a2k_toolkit import Pipeline  # noqa: E402
from a2k_toolkit.eval import metrics as M  # noqa: E402
from a2k_toolkit.keypoints import mouth_opening, reference_iod  # noqa: E402
from a2k_toolkit.motion import EYELIDS  # noqa: E402

SAMPLES = REPO / "a2k_toolkit" / "samples"
NOSE = 30
HEAD = (0.0, 1.0, 3.0)
MOUTH = (0.5, 1.0, 1.4)
ENERGY = (0.0, 0.5, 1.0)
KEEP = (0.0, 1.0)
PRIOR = (0.0, 0.75)
BLINK = (0.0, 3.5)


def nose_distance(points: np.ndarray) -> np.ndarray:
    """``(T,)``: the nose tip's distance from its frame-0 position, in the reference IOD."""
    return np.linalg.norm(points[:, NOSE] - points[0, NOSE], axis=-1) / reference_iod(points)


def eye_opening(points: np.ndarray) -> np.ndarray:
    """``(T,)``: the mean gap of the upper and lower eyelid points (both eyes), in the reference IOD."""
    gaps = [np.linalg.norm(points[:, lower] - points[:, upper], axis=-1) for upper, lower in EYELIDS]
    return np.concatenate(gaps, axis=1).mean(1) / reference_iod(points)


def blinks(opening: np.ndarray) -> int:
    """Runs of frames with the eyes below half the reference's (frame 0's) opening."""
    closed = opening < 0.5 * opening[0]
    return int(np.sum(closed[1:] & ~closed[:-1]) + closed[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", type=Path, default=SAMPLES / "astronaut.jpg")
    ap.add_argument("--audio", type=Path, default=SAMPLES / "speech.wav")
    ap.add_argument("--figure", type=Path, help="write the figure (PNG) here")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)

    base = {"renderer": None, "device": "cpu"}
    pipe = Pipeline.from_config(base)
    reference = pipe.detect(args.image)
    feats = pipe.features(pipe.load_audio(str(args.audio)))
    cache: dict[tuple, np.ndarray] = {}

    def run(**params) -> np.ndarray:
        key = tuple(sorted(params.items()))
        if key not in cache:
            gen = {"name": "audio2keypoint", "params": params}
            cache[key] = Pipeline.from_config({**base, "generator": gen}).generate(feats, reference).points
        return cache[key].astype(np.float64)

    head = {h: run(head_motion=h) for h in HEAD}
    mouth = {m: run(mouth_scale=m, energy_mouth=0.0) for m in MOUTH}
    energy = {e: run(mouth_scale=1.0, energy_mouth=e) for e in ENERGY}
    keep = {k: run(keep_mouth_shape=k) for k in KEEP}
    prior = {k: run(mouth_prior=k) for k in PRIOR}
    eyes = {b: run(blink_interval=b) for b in BLINK}
    seconds = len(feats) / pipe.audio.fps
    print(f"{args.image.name} + {args.audio.name}: {len(feats)} frames ({seconds:.1f} s)")

    head_s = {h: (M.head_motion(p, reference_iod(p)), nose_distance(p).max()) for h, p in head.items()}
    print("head_motion: " + "; ".join(f"{h:g}: spread {s:.3f}, max {d:.3f} IOD" for h, (s, d) in head_s.items()))
    open_s = {}
    for label, runs in (
        ("mouth_scale (energy_mouth 0)", mouth),
        ("energy_mouth (mouth_scale 1)", energy),
        ("keep_mouth_shape", keep),
        ("mouth_prior", prior),
    ):
        stats = {k: mouth_opening(p, reference_iod(p)) for k, p in runs.items()}
        open_s[label] = {k: (o.mean(), M.opening_std(o)) for k, o in stats.items()}
        print(f"{label}: " + "; ".join(f"{k:g}: mean {m:.3f}, std {s:.3f} IOD" for k, (m, s) in open_s[label].items()))
    eye_s = {b: eye_opening(p) for b, p in eyes.items()}
    print(
        "blink_interval: "
        + "; ".join(f"{b:g}: {blinks(o)} blinks, min {o.min():.3f}, frame 0 {o[0]:.3f} IOD" for b, o in eye_s.items())
    )
    if args.figure:
        plot(args.figure, pipe.audio.fps, head, mouth, energy, eyes)
    return 0


def plot(path: Path, fps: float, head, mouth, energy, eyes) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(8.0, 8.0), sharex=True)
    blues = ("#9ecae1", "#4292c6", "#08306b")

    def curves(ax, runs, measure, name, colours, ylabel, title):
        for i, ((k, p), c) in enumerate(zip(runs.items(), colours)):
            t = np.arange(len(p)) / fps
            # the first setting drawn wider and dashed: where two settings agree, both stay visible
            style = {"lw": 2.2, "ls": "--"} if i == 0 else {"lw": 1.1}
            ax.plot(t, measure(p), color=c, label=f"{name} {k:g}", **style)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 0.98), ncol=len(runs), frameon=False)
        ax.grid(alpha=0.3)

    def opening(p):
        return mouth_opening(p, reference_iod(p))

    curves(axes[0], head, nose_distance, "head_motion", blues, "nose tip shift (IOD)", "(a) head_motion")
    curves(axes[1], mouth, opening, "mouth_scale", blues, "mouth opening (IOD)", "(b) mouth_scale, energy_mouth 0")
    curves(axes[2], energy, opening, "energy_mouth", ("#4292c6", "#fd8d3c", "#d94801"), "mouth opening (IOD)",
           "(b) energy_mouth, mouth_scale 1")  # fmt: skip
    curves(axes[3], eyes, eye_opening, "blink_interval", ("#4292c6", "#d94801"), "eye opening (IOD)",
           "(c) blink_interval (s)")  # fmt: skip
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(
        "The shipped audio2keypoint's controls on the bundled photo and speech (others at defaults)", fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    print(f"figure: {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    raise SystemExit(main())
