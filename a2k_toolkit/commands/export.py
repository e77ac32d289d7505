"""``a2k export --onnx OUT_DIR``: the Audio2Keypoint generator as an ONNX model directory (the a2k-onnx plugin)."""

from __future__ import annotations

PLUGIN_HINT = "pip install -e plugins/a2k-onnx"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export the Audio2Keypoint generator to ONNX (needs the a2k-onnx plugin)",
        description="Export the network of one inference window (features + reference keypoints -> keypoints, a "
        "dynamic batch axis) of a checkpoint or ensemble to OUT_DIR/generator.onnx, with OUT_DIR/a2k-onnx.json "
        "(window, front-end, normaliser, the model's inference defaults, a SHA-256 per graph). The graph is checked "
        "with onnx.checker and onnxruntime is compared with torch on random and real inputs before anything is "
        "written. Run it with `generator: {name: audio2keypoint-onnx, params: {model: OUT_DIR}}` (docs/export.md). "
        f"Needs the a2k-onnx plugin: {PLUGIN_HINT}.",
    )
    p.add_argument("--onnx", required=True, metavar="OUT_DIR", help="directory to write (replaced atomically)")
    p.add_argument(
        "--checkpoint",
        nargs="+",
        default=None,
        metavar="PATH",
        help="checkpoint, run or ensemble directory (several: averaged like the generator's list); default: the "
        "shipped model",
    )
    p.add_argument("--opset", type=int, default=18, help="ONNX opset to write (the dynamo exporter needs >= 18)")
    p.add_argument(
        "--exporter",
        choices=("dynamo", "torchscript"),
        default="dynamo",
        help="torch's exporter: dynamo (torch.export, the default) or the older torchscript tracer (faster)",
    )
    p.add_argument(
        "--per-member",
        action="store_true",
        help="an ensemble as one graph per member, averaged at run time (default: one graph computing the mean)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest keypoint difference onnxruntime vs torch accepted on the check, as a fraction of the face width",
    )
    p.add_argument("--image", default=None, help="face image of the check (default: the bundled sample)")
    p.add_argument("--audio", default=None, help="speech of the check (default: the bundled sample)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import A2KError

    try:
        from a2k_onnx.export import export_onnx
    except ImportError as exc:
        if getattr(exc, "name", None) not in ("a2k_onnx", "a2k_onnx.export"):
            raise
        raise A2KError(
            f"`a2k export --onnx` needs the a2k-onnx plugin package, which is not installed; from a checkout of "
            f"a2k-toolkit: {PLUGIN_HINT}"
        ) from None
    checkpoint = args.checkpoint
    if checkpoint is not None and len(checkpoint) == 1:
        checkpoint = checkpoint[0]
    export_onnx(
        args.onnx,
        checkpoint,
        opset=args.opset,
        exporter=args.exporter,
        per_member=args.per_member,
        tolerance=args.tolerance,
        image=args.image,
        audio=args.audio,
    )
    return 0
