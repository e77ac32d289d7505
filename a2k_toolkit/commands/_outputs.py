"""The outputs of the commands that write keypoints and a video (``a2k generate``, ``a2k stream``): one set of
options and one check of them, made before any work so that a run never fails at the end for an unwritable path.
Keypoints go through the formats registry (:mod:`a2k_toolkit.formats`): any format it writes, by extension or by
name."""

from __future__ import annotations

from ..errors import InputError


def add_output_arguments(p) -> None:
    """``--keypoints-out``, ``--keypoints-format`` and ``--video-out``."""
    p.add_argument(
        "--keypoints-out",
        help="keypoints to write: .npy, .npz, .json, .csv (OpenFace), .pts, .mp4 (pose video), or a folder 'dir/' "
        "(OpenPose JSON per frame); see `a2k convert --list`",
    )
    p.add_argument("--keypoints-format", metavar="FMT", help="format of --keypoints-out (default: from its extension)")
    p.add_argument("--video-out", help="MP4 to write (needs a renderer in the config)")


def check_outputs(args) -> None:
    """Refuse, before any work, a run with nothing to write, a keypoint output the registry cannot write (format
    unknown, or not one that writes) and any output path that could not be written."""
    from ..formats import check_output
    from ..io import VIDEO_EXTENSIONS, check_output_path

    if not args.keypoints_out and not args.video_out:
        raise InputError("nothing to write: give --keypoints-out KP.npy and/or --video-out OUT.mp4")
    if args.keypoints_out:
        check_output(args.keypoints_out, args.keypoints_format, what="--keypoints-out")
    if args.video_out:
        check_output_path(args.video_out, VIDEO_EXTENSIONS, what="--video-out")
