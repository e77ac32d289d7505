"""Renderer speed: frames per second of every renderer at 256x256 and 512x512 on this machine; prints a table.

    python benchmarks/bench_render.py [--frames 100] [--sizes 256 512] [--translator-checkpoint CKPT]
                                      [--gallery docs/images]

Input: the bundled sample photo (512x512) driven by 25 fps keypoints from the `procedural` generator on the bundled
speech. Columns: setup (checks, triangulation, model load: the time to the first frame minus one frame), steady
frames/s by wall clock and by this process's CPU time (the machine may be shared: compare the two), best of
``--repeat`` runs. `warp + mp4` also encodes the frames to H.264 with audio (io.write_video).

Without ``--translator-checkpoint`` the face-translator row uses an untrained model of the default architecture:
speed does not depend on the weights, the look does (the gallery then skips it).

``--gallery DIR`` writes the small PNGs used by docs/renderers.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "plugins" / "a2k-face-translator" / "src"))

from a2k_toolkit import io  # noqa: E402
from a2k_toolkit.keypoints import Keypoints  # noqa: E402

SAMPLES = REPO / "a2k_toolkit" / "samples"


def sample_keypoints(frames: int) -> tuple[np.ndarray, Keypoints, np.ndarray]:
    from a2k_toolkit.pipeline import Pipeline

    pipe = Pipeline.from_config({"renderer": None, "device": "cpu"})
    res = pipe(image=SAMPLES / "astronaut.jpg", audio=SAMPLES / "speech.wav")
    kp = res.keypoints
    reps = -(-frames // len(kp))
    pts = np.concatenate([kp.points] * reps)[:frames]
    return res.image, Keypoints(pts, fps=kp.fps, image_size=kp.image_size), res.waveform


def untrained_checkpoint(tmp: Path) -> Path:
    import torch

    from a2k_face_translator.checkpoint import save_checkpoint
    from a2k_face_translator.models import FaceTranslator, ModelConfig

    torch.manual_seed(0)
    path = tmp / "untrained.safetensors"
    save_checkpoint(path, FaceTranslator(ModelConfig()), info={"note": "untrained, for speed only"})
    return path


def make_renderers(size: int, checkpoint: Path | None):
    from a2k_toolkit.builtin.side_by_side import SideBySideRenderer
    from a2k_toolkit.builtin.sketch import SketchRenderer
    from a2k_toolkit.builtin.warp import WarpRenderer
    from a2k_toolkit.catalog import Catalog

    rows = [
        ("sketch", SketchRenderer(size=size, background="reference")),
        ("warp", WarpRenderer(size=size)),
        ("warp map_step=2", WarpRenderer(size=size, map_step=2)),
        ("side-by-side ref|sketch|warp", SideBySideRenderer(size=size, catalog=Catalog())),
    ]
    if checkpoint is not None:
        from a2k_face_translator import FaceTranslatorRenderer

        rows.append(("face-translator (64 px model)", FaceTranslatorRenderer(checkpoint=str(checkpoint), size=size)))
    return rows


def close_up(image: np.ndarray, kp: Keypoints) -> tuple[np.ndarray, Keypoints]:
    """A square crop 1.8 face sizes wide around the reference face, and the keypoints in its pixels."""
    x0, y0 = kp.points[0].min(0)
    x1, y1 = kp.points[0].max(0)
    side = 1.8 * max(x1 - x0, y1 - y0)
    left = int(np.clip((x0 + x1) / 2 - side / 2, 0, image.shape[1] - side))
    top = int(np.clip((y0 + y1) / 2 - 0.1 * side - side / 2, 0, image.shape[0] - side))
    crop = np.ascontiguousarray(image[top : top + int(side), left : left + int(side)])
    return crop, Keypoints(kp.points - [left, top], fps=kp.fps, image_size=crop.shape[:2])


def measure(renderer, kp: Keypoints, image: np.ndarray, repeat: int) -> tuple[float, float, float]:
    """``(seconds to the first frame, wall frames/s, cpu frames/s)``: best of ``repeat`` runs."""
    best = (np.inf, 0.0, 0.0)
    for _ in range(repeat):
        t0 = time.perf_counter()
        it = iter(renderer.frames(kp, image))
        next(it)
        t1, c1 = time.perf_counter(), time.process_time()
        n = sum(1 for _ in it)
        t2, c2 = time.perf_counter(), time.process_time()
        fps = n / (t2 - t1)
        if fps > best[1]:
            best = (t1 - t0, fps, n / max(c2 - c1, 1e-9))
    return best


def measure_mp4(size: int, kp: Keypoints, image: np.ndarray, wav: np.ndarray, tmp: Path) -> float:
    from a2k_toolkit.builtin.warp import WarpRenderer

    t = time.perf_counter()
    n = io.write_video(tmp / "bench.mp4", WarpRenderer(size=size).frames(kp, image), kp.fps, audio=wav)
    return n / (time.perf_counter() - t)


def gallery(
    out: Path, image: np.ndarray, kp: Keypoints, checkpoint: Path | None, size: int = 192, finetune_steps: int = 100
) -> None:
    """Small PNGs of each renderer on the sample photo, at the frame where the mouth is open widest (the translator
    fine-tuned for ``finetune_steps`` on the photo alone)."""
    import cv2

    from a2k_toolkit.builtin.side_by_side import SideBySideRenderer
    from a2k_toolkit.builtin.sketch import SketchRenderer
    from a2k_toolkit.builtin.warp import WarpRenderer
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.keypoints import mouth_opening, reference_iod

    out.mkdir(parents=True, exist_ok=True)
    t = int(np.argmax(mouth_opening(kp.points, reference_iod(kp.points))))
    kp2 = Keypoints(kp.points[[0, t]], fps=kp.fps, image_size=kp.image_size)
    # crop the square around the face so the small images show it
    x0, y0 = kp.points[0].min(0)
    x1, y1 = kp.points[0].max(0)
    side = 2.2 * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - 0.1 * side
    box = [int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))]
    box += [int(min(box[0] + side, image.shape[1])), int(min(box[1] + side, image.shape[0]))]
    crop = image[box[1] : box[3], box[0] : box[2]]
    kpc = kp2.with_points(kp2.points - [box[0], box[1]])
    kpc.image_size = crop.shape[:2]

    def save(name: str, frame: np.ndarray) -> None:
        io.save_image(out / name, frame)
        print(f"wrote {out / name} ({frame.shape[1]}x{frame.shape[0]})")

    save("render-reference.png", cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
    save("render-sketch.png", SketchRenderer(size=size, background="reference").render(kpc, crop)[1])
    save("render-warp.png", WarpRenderer(size=size).render(kpc, crop)[1])
    save("render-side-by-side.png", SideBySideRenderer(size=128, catalog=Catalog()).render(kpc, crop)[1])
    if checkpoint is not None:
        from a2k_face_translator import FaceTranslatorRenderer

        # one shot (the photo itself), fine-tuned on it as in the paper's few-shot setting
        translator = FaceTranslatorRenderer(checkpoint=str(checkpoint), size=size, finetune_steps=finetune_steps)
        save("render-face-translator.png", translator.render(kpc, crop)[1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--translator-checkpoint", help="a trained face-translator checkpoint (else: untrained weights)")
    p.add_argument("--gallery", help="write the docs PNGs to this directory")
    p.add_argument("--gallery-finetune", type=int, default=100, help="translator fine-tuning steps for the gallery")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    image, kp, wav = sample_keypoints(args.frames)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    print(f"input: {SAMPLES.name}/astronaut.jpg {image.shape[1]}x{image.shape[0]}, {len(kp)} frames of keypoints\n")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        ckpt = Path(args.translator_checkpoint) if args.translator_checkpoint else untrained_checkpoint(tmp)
        header = f"{'renderer':32s} {'framing':9s} {'size':>9s} {'first ms':>9s} {'frames/s':>9s} {'cpu fps':>9s}"
        print(header)
        print("-" * len(header))
        framings = {"wide": (image, kp), "close-up": close_up(image, kp)}
        for size in args.sizes:
            for name, r in make_renderers(size, ckpt):
                for framing, (img, k) in framings.items():
                    first, fps, cpu_fps = measure(r, k, img, args.repeat)
                    print(
                        f"{name:32s} {framing:9s} {size:>4d}x{size:<4d} {first * 1e3:9.1f} {fps:9.1f} {cpu_fps:9.1f}",
                        flush=True,
                    )
            for framing, (img, k) in framings.items():
                mp4 = measure_mp4(size, k, img, wav, tmp)
                name = "warp + mp4 (H.264 + AAC)"
                print(f"{name:32s} {framing:9s} {size:>4d}x{size:<4d} {'':9s} {mp4:9.1f}", flush=True)
        if not args.translator_checkpoint:
            print("\nface-translator: untrained weights (speed only); pass --translator-checkpoint for a trained one")
        if args.gallery:
            ckpt = Path(args.translator_checkpoint) if args.translator_checkpoint else None
            gallery(Path(args.gallery), image, kp, ckpt, finetune_steps=args.gallery_finetune)
    return 0


if __name__ == "__main__":
    sys.exit(main())
