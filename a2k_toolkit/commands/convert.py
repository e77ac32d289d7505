"""``a2k convert``: keypoints from one format into another (OpenPose JSON, pose images, OpenFace CSV, .pts, ...)."""

from __future__ import annotations

import argparse
import re

from ..errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert keypoints between formats (OpenPose JSON, pose images, OpenFace CSV, .pts, .npy, ...)",
        description="Convert a keypoint sequence between formats. Formats are inferred from extensions and folder "
        "contents (an output folder, a path ending in '/', defaults to OpenPose JSON per frame); --from / --to name "
        "them. Outputs are written atomically. `a2k convert --list` shows the formats; docs/formats.md describes "
        "each one.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("input", nargs="?", help="keypoint file or folder to read")
    p.add_argument("output", nargs="?", help="file or folder to write (a folder: end the path with '/')")
    p.add_argument("--list", action="store_true", help="list the formats and exit")
    p.add_argument("--from", dest="from_format", metavar="FMT", help="input format (default: inferred)")
    p.add_argument("--to", dest="to_format", metavar="FMT", help="output format (default: inferred)")
    p.add_argument("--fps", type=float, help="frame rate of the sequence (formats that store none read as 25)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--image-size", metavar="WxH", help="size of the image the points are in (e.g. 512x512)")
    size.add_argument("--image", help="the image the points are in (its size is used)")
    p.add_argument(
        "--missing",
        choices=("error", "hold"),
        default="error",
        help="frames without a face in OpenPose/OpenFace input: refuse them, or repeat the previous face",
    )
    p.add_argument("--normalized", action="store_true", help="OpenPose output: coordinates in 0-1 + canvas size")
    p.add_argument("--radius", type=int, default=3, help="pose images: dot radius in pixels")
    p.add_argument("--no-pupils", action="store_true", help="pose images: draw the 68 points only (DWPose's face)")
    p.set_defaults(func=run)


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> ``(height, width)``."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m or int(m[1]) <= 0 or int(m[2]) <= 0:
        raise InputError(f"--image-size must be WIDTHxHEIGHT in pixels (e.g. 512x512), got {text!r}")
    return int(m[2]), int(m[1])


def list_formats() -> str:
    from ..formats import FORMATS

    rows = [("format", "forms", "read/write", "what")]
    rows += [(f.name, f.forms, f.directions, f.description) for f in FORMATS.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows)


def run(args) -> int:
    from .. import formats
    from ..io import load_image
    from ..plugins import make_plugin_manager

    formats.add_plugin_formats(make_plugin_manager())  # formats plugins add (a2k-mediapipe: MediaPipe landmark files)
    if args.list:
        print(list_formats())
        return 0
    if not args.input or not args.output:
        raise InputError("give an INPUT and an OUTPUT: a2k convert kp.npy openpose/ (a2k convert --list: the formats)")
    if args.fps is not None and not args.fps > 0:
        raise InputError(f"--fps must be a positive number, got {args.fps:g}")
    options = {}
    if args.normalized:
        options["normalized"] = True
    if args.radius != 3:
        options["radius"] = args.radius
    if args.no_pupils:
        options["pupils"] = False
    # everything is checked before the input is read: the output's format, options and folder
    out_format = formats.check_output(args.output, args.to_format, what="output")
    unknown = sorted(set(options) - set(out_format.options))
    if unknown:
        flag = {"normalized": "--normalized", "radius": "--radius", "pupils": "--no-pupils"}[unknown[0]]
        raise InputError(f"{flag} does not apply to {out_format.name} output")
    in_format = formats.input_format(args.input, args.from_format)
    image_size = None
    if args.image_size:
        image_size = parse_size(args.image_size)
    elif args.image:
        image_size = load_image(args.image).shape[:2]
    kp = formats.read(args.input, in_format.name, fps=args.fps, image_size=image_size, missing=args.missing)
    formats.write(args.output, kp, out_format, **options)
    size = f", {kp.image_size[1]}x{kp.image_size[0]}" if kp.image_size else ""
    print(
        f"{len(kp)} frames ({len(kp) / kp.fps:.2f} s at {kp.fps:g} fps{size}): {args.input} ({in_format.name}) -> "
        f"{args.output} ({out_format.name})"
    )
    return 0
