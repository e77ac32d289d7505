"""``a2k generate``: one face image + speech (audio file or text) -> keypoint file and/or MP4."""

from __future__ import annotations

import argparse

from ..errors import InputError
from ._outputs import add_output_arguments, check_outputs


def add_parser(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="generate keypoints (and a video) from a face image and speech",
        description="Generate a 25 fps 68-point keypoint sequence from one face image and speech, and optionally "
        "render it to an H.264 MP4 with the speech muxed in.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--image", required=True, help="face image (PNG, JPEG, ...)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", help="speech: audio file (wav, flac, ogg, mp3, m4a) or a video with an audio track")
    src.add_argument("--text", help="speech as text, spoken by the config's speech synthesizer")
    p.add_argument("--lang", default=None, help="language / voice for --text (e.g. en, de, hi)")
    p.add_argument("--config", help="pipeline config file (YAML, JSON or TOML)")
    add_output_arguments(p)
    p.add_argument("--device", default=None, help="override the config's device (auto, cpu, cuda, mps)")
    p.add_argument(
        "--pose-from",
        metavar="PATH",
        help="head motion from this video (faces found by the config's detector) or keypoint file or folder (any "
        "format `a2k convert --list` reads), re-targeted to the photo's face; the lips still follow the speech. "
        "Overrides the config's `pose.source` (docs/controls.md)",
    )
    p.add_argument(
        "--pose-loop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a pose source shorter than the speech plays forwards and backwards until the speech ends "
        "(--no-pose-loop: holds its last pose); default: the config's `pose.loop`, else loop",
    )
    p.set_defaults(func=run)


def _pose(args, config) -> dict | None:
    """The config's ``pose`` with --pose-from / --pose-loop applied (None: leave the config's as it is)."""
    from pathlib import Path

    if args.pose_from is None and args.pose_loop is None:
        return None
    pose = config.pose
    if args.pose_from is None:
        if pose is None:
            flag = "--pose-loop" if args.pose_loop else "--no-pose-loop"
            raise InputError(f"{flag} needs a pose source: give --pose-from PATH (or `pose` in the config)")
        return {**pose.model_dump(), "loop": args.pose_loop}
    if not Path(args.pose_from).expanduser().exists():
        raise InputError(
            f"--pose-from {args.pose_from}: not found; give a video of a face or a keypoint file or folder "
            f"(relative paths are read from {Path.cwd()})"
        )
    loop = args.pose_loop if args.pose_loop is not None else (pose.loop if pose is not None else True)
    return {"source": args.pose_from, "loop": loop}


def run(args) -> int:
    from ..config import load_config
    from ..pipeline import Pipeline

    check_outputs(args)  # every output is checked before any work starts
    config = load_config(args.config)
    overrides = {"device": args.device} if args.device else {}
    pose = _pose(args, config)
    if pose is not None:
        overrides["pose"] = pose
    pipe = Pipeline.from_config(config, **overrides)
    if args.video_out and pipe.renderer is None:
        raise InputError("--video-out needs a renderer; set `renderer` in the config (for example `renderer: sketch`)")
    result = pipe(image=args.image, audio=args.audio, text=args.text, lang=args.lang)
    result.save(keypoints=args.keypoints_out, video=args.video_out, format=args.keypoints_format)
    n = len(result.keypoints)
    written = [x for x in (args.keypoints_out, args.video_out) if x]
    print(f"{n} frames ({n / result.keypoints.fps:.2f} s at {result.keypoints.fps:g} fps) -> {', '.join(written)}")
    return 0
