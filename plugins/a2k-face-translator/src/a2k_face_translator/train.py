"""Command line: meta-train the translator on talking-head clips, or fine-tune it on one person.

    python -m a2k_face_translator.train meta --clips CLIPS_DIR --out meta.safetensors [--steps 2000 ...]
    python -m a2k_face_translator.train finetune --checkpoint meta.safetensors --video PERSON.mp4 \\
        --out person.safetensors [--shots 8 --steps 200]

Keypoints come from the toolkit's dlib detector (``a2k_toolkit.data.clips.extract_clip``); ``--cache DIR`` keeps them
between runs. Errors print one line (exit code 2).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from a2k_toolkit.errors import A2KError, InputError


def _videos(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.glob("*.mp4"))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"--clips: {p} is neither a video file nor a directory")
    if not out:
        raise InputError(f"--clips: no .mp4 videos found in {', '.join(paths)}")
    return out


def _clip(video: Path, cache: Path | None, detector):
    from a2k_toolkit.data.clips import extract_clip, load_clip, save_clip

    if cache is None:
        return extract_clip(video, detector)
    st = video.stat()
    cached = cache / f"{video.stem}-{st.st_size}-{st.st_mtime_ns}.npz"
    if cached.is_file():
        return load_clip(cached)
    clip = extract_clip(video, detector)
    save_clip(cached, clip)
    return clip


def load_face_clips(videos: list[Path], size: int, *, cache: Path | None = None, stride: int = 1, log=print) -> list:
    """Face clips of ``videos`` (keypoints extracted with dlib, cached in ``cache``)."""
    from .data import dlib_detector, load_face_clip

    detector = dlib_detector()
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    clips = []
    for v in videos:
        t = time.perf_counter()
        clip = _clip(v, cache, detector)
        try:
            fc = load_face_clip(v, size, clip=clip, stride=stride)
        except InputError as exc:
            log(f"skipping {v.name}: {exc}")
            continue
        clips.append(fc)
        log(f"{v.name}: {len(fc)} frames, identity {fc.identity} ({time.perf_counter() - t:.1f} s)")
    if not clips:
        raise InputError("no usable clip (no faces found)")
    return clips


def _device(name: str) -> str:
    from a2k_toolkit.device import resolve_device

    return resolve_device(name)


def cmd_meta(args) -> int:
    import torch

    from .checkpoint import load_checkpoint, save_checkpoint
    from .models import FaceTranslator, ModelConfig
    from .training import LossWeights, TrainConfig, meta_train, reconstruction_error

    if args.threads:
        torch.set_num_threads(args.threads)
    videos = [v for v in _videos(args.clips) if v.stem not in set(args.exclude)]
    clips = load_face_clips(videos, args.image_size, cache=Path(args.cache) if args.cache else None, stride=args.stride)
    device = _device(args.device)
    cfg = TrainConfig(
        steps=args.steps,
        batch=args.batch,
        shots=args.shots,
        lr_g=args.lr_g,
        lr_d=args.lr_d,
        seed=args.seed,
        log_every=args.log_every,
        weights=LossWeights(l1=args.w_l1, fm=args.w_fm, adv=args.w_adv, match=args.w_match),
    )
    if args.resume:
        model = load_checkpoint(args.resume, device).model
    else:
        mcfg = ModelConfig(
            image_size=args.image_size,
            channels=args.channels,
            max_channels=args.max_channels,
            embed_dim=args.embed_dim,
            num_videos=len(clips),
        )
        model = FaceTranslator(mcfg)
    history: list[dict] = []
    names = [c.clip_id for c in clips]

    def save(final: bool) -> None:
        info = {
            "clips": names,
            "steps": len(history),
            "train": cfg.model_dump(),
            "last": history[-1] if history else None,
        }
        if final:
            info["reconstruction_l1"] = reconstruction_error(model, clips, shots=args.shots, device=device)
        save_checkpoint(args.out, model, kind="meta", info=info)

    def log(rec: dict) -> None:
        history.append(rec)
        if rec["step"] % cfg.log_every == 0 or rec["step"] == 1:
            recent = history[-cfg.log_every :]
            mean = {k: np.mean([r[k] for r in recent]) for k in ("l1", "fm", "adv", "loss_d")}
            print(
                f"step {rec['step']:6d}  l1 {mean['l1']:.4f}  fm {mean['fm']:.4f}  adv {mean['adv']:+.3f}  "
                f"D {mean['loss_d']:.3f}  ({rec['seconds']:.0f} s)",
                flush=True,
            )
        if args.save_every and rec["step"] % args.save_every == 0:
            save(final=False)
            model.train()

    before = reconstruction_error(model, clips, shots=args.shots, device=device)
    print(
        f"{len(clips)} clips, {sum(len(c) for c in clips)} frames at {model.cfg.image_size} px; "
        f"reconstruction L1 before: {before:.4f}",
        flush=True,
    )
    meta_train(clips, cfg, model=model, device=device, callback=log)
    save(final=True)
    after = reconstruction_error(model, clips, shots=args.shots, device=device)
    print(f"reconstruction L1 after {len(history)} steps: {after:.4f} (before {before:.4f}); wrote {args.out}")
    return 0


def cmd_finetune(args) -> int:
    import torch

    from a2k_toolkit.io import load_image

    from .checkpoint import load_checkpoint, save_checkpoint
    from .data import crop, dlib_detector, face_box, sketch, to_crop
    from .training import FinetuneConfig, finetune, reconstruction_error

    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    loaded = load_checkpoint(args.checkpoint, device)
    if loaded.kind != "meta":
        raise InputError(f"{args.checkpoint} is already a personal checkpoint; fine-tune from a meta checkpoint")
    size = loaded.model.cfg.image_size
    if args.video:
        fc = load_face_clips([Path(args.video)], size, cache=Path(args.cache) if args.cache else None)[0]
        idx = np.linspace(0, len(fc) - 1, min(args.shots, len(fc))).round().astype(int)
        frames, sketches = fc.frames[idx], fc.sketches[idx]
    else:
        det = dlib_detector()
        frames, sketches = [], []
        for p in args.images:
            img = load_image(p)
            pts = det.detect(img).points[0]
            box = face_box(pts)
            frames.append(crop(img, box, size))
            sketches.append(sketch(to_crop(pts, box, size), size))
        frames, sketches = np.stack(frames), np.stack(sketches)
    from .data import FaceClip

    shots = FaceClip(frames, sketches, np.zeros((len(frames), 68, 2), np.float32))
    before = reconstruction_error(loaded.model, [shots], shots=min(4, len(frames)), device=device)
    cfg = FinetuneConfig(steps=args.steps, lr=args.lr, seed=args.seed)
    G, psi, hist = finetune(loaded.model, frames, sketches, cfg, device=device)
    loaded.model.G = G
    info = {
        "base": str(args.checkpoint),
        "shots": len(frames),
        "finetune": cfg.model_dump(),
        "l1_first": hist[0]["l1"] if hist else None,
        "l1_last": hist[-1]["l1"] if hist else None,
    }
    save_checkpoint(args.out, loaded.model, kind="personal", psi=psi, info=info)
    print(
        f"fine-tuned on {len(frames)} shots for {args.steps} steps: L1 {info['l1_first']} -> {info['l1_last']} "
        f"(meta model on these frames: {before:.4f}); wrote {args.out}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m a2k_face_translator.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter
    m = sub.add_parser("meta", help="meta-train on talking-head clips", formatter_class=fmt)
    m.add_argument("--clips", nargs="+", required=True, help="videos (.mp4) or directories of them")
    m.add_argument(
        "--exclude", nargs="*", default=[], help="clip names (file stems) to leave out, e.g. a held-out person"
    )
    m.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    m.add_argument("--resume", help="meta checkpoint to continue from (same clips)")
    m.add_argument("--image-size", type=int, default=64)
    m.add_argument("--channels", type=int, default=16)
    m.add_argument("--max-channels", type=int, default=128)
    m.add_argument("--embed-dim", type=int, default=128)
    m.add_argument("--steps", type=int, default=2000)
    m.add_argument("--batch", type=int, default=4)
    m.add_argument("--shots", type=int, default=4, help="K frames per video for the embedder")
    m.add_argument("--lr-g", type=float, default=2e-4)
    m.add_argument("--lr-d", type=float, default=2e-4)
    m.add_argument("--w-l1", type=float, default=10.0)
    m.add_argument("--w-fm", type=float, default=10.0)
    m.add_argument("--w-adv", type=float, default=1.0)
    m.add_argument("--w-match", type=float, default=1.0)
    m.add_argument("--stride", type=int, default=1, help="keep every n-th frame of each clip")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--log-every", type=int, default=50)
    m.add_argument("--save-every", type=int, default=0, help="also write the checkpoint every n steps")
    m.add_argument("--cache", help="directory caching the clips' keypoints between runs")
    m.add_argument("--device", default="auto")
    m.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    m.set_defaults(func=cmd_meta)
    f = sub.add_parser("finetune", help="few-shot fine-tuning on one person", formatter_class=fmt)
    f.add_argument("--checkpoint", required=True, help="meta checkpoint")
    src = f.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="a video of the person (K frames are taken evenly spaced)")
    src.add_argument("--images", nargs="+", help="photos of the person (K = their number)")
    f.add_argument("--shots", type=int, default=8, help="K frames taken from --video")
    f.add_argument("--steps", type=int, default=200)
    f.add_argument("--lr", type=float, default=1e-4)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", required=True, help="personal checkpoint to write (.safetensors)")
    f.add_argument("--cache", help="directory caching the video's keypoints")
    f.add_argument("--device", default="auto")
    f.add_argument("--threads", type=int, default=0)
    f.set_defaults(func=cmd_finetune)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (A2KError, ValueError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
