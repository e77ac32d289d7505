"""``a2k stream``: play an audio file through a streaming session (in this process), in chunks, optionally at
real-time pace, and write the keypoints (and an MP4) -- at ``--lookahead-ms full`` the same as ``a2k generate``."""

from __future__ import annotations

import argparse
import time

import numpy as np

from ..errors import A2KError, InputError
from ._outputs import add_output_arguments, check_outputs


def add_parser(sub) -> None:
    p = sub.add_parser(
        "stream",
        help="play an audio file through a streaming session and write the keypoints (and a video)",
        description="Play speech through a streaming session in chunks, as live audio would arrive, and write the "
        "keypoint frames it returns (and optionally an MP4 rendered from them, as `a2k generate` does). With "
        "--lookahead-ms full the keypoints equal `a2k generate`'s; a shorter lookahead returns each frame sooner "
        "(docs/streaming.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--image", required=True, help="face image (PNG, JPEG, ...)")
    p.add_argument("--audio", required=True, help="speech: audio file, or a video with an audio track")
    p.add_argument("--config", help="pipeline config file (YAML, JSON or TOML)")
    add_output_arguments(p)
    p.add_argument(
        "--lookahead-ms",
        default=None,
        help="audio after a frame the generator waits for before returning it, in ms, or 'full' (equal to "
        "`a2k generate`); default: the streaming default (docs/streaming.md)",
    )
    p.add_argument("--chunk-ms", type=float, default=20.0, help="audio per push, in ms")
    p.add_argument("--realtime", action="store_true", help="push each chunk when its audio would have been heard")
    p.add_argument("--hop", type=int, default=None, help="audio2keypoint: frames between windows (short lookahead)")
    p.add_argument("--device", default=None, help="override the config's device (auto, cpu, cuda, mps)")
    p.add_argument("--url", help="play through an `a2k serve` server (ws://HOST:PORT/stream) instead of in-process")
    p.add_argument("--token", help="with --url: the server's bearer token")
    p.set_defaults(func=run)


def _check_url_format(args) -> None:
    """With --url the keypoints are written in the format their path names (``a2k serve``'s client takes no format):
    refuse a --keypoints-format that names another one."""
    from ..formats import output_format

    if not (args.keypoints_out and args.keypoints_format):
        return
    try:
        implied = output_format(args.keypoints_out).name
    except A2KError:
        implied = None
    wanted = output_format(args.keypoints_out, args.keypoints_format).name
    if implied != wanted:
        raise InputError(
            f"--keypoints-format {wanted} cannot be combined with --url yet (its keypoints are written in the "
            f"format the path names{f', {implied}' if implied else ''}); write them with the format's own extension "
            "or without --url, or convert them afterwards with `a2k convert`"
        )


def run(args) -> int:
    from ..audio import load_audio, probe_audio
    from ..io import load_image
    from ..pipeline import Pipeline, Result

    check_outputs(args)  # every output is checked before any work starts, as `a2k generate` does
    if not args.chunk_ms > 0:
        raise InputError(f"--chunk-ms must be positive, got {args.chunk_ms:g}")
    if args.url:  # the same inputs and outputs, through a server (docs/serve.md)
        from ..serve.client import run_url

        _check_url_format(args)
        return run_url(args)
    overrides = {"device": args.device} if args.device else {}
    pipe = Pipeline.from_config(args.config, **overrides)
    if args.video_out and pipe.renderer is None:
        raise InputError("--video-out needs a renderer; set `renderer` in the config (for example `renderer: sketch`)")
    # the file at its own rate, as a microphone would deliver it: the session resamples it as offline loading does
    rate = probe_audio(args.audio).sample_rate
    wav = load_audio(args.audio, rate)
    image = load_image(args.image)
    options = {"hop": args.hop} if args.hop is not None else {}
    session = pipe.stream(image=image, lookahead_ms=args.lookahead_ms, sample_rate=rate, **options)
    chunk = max(1, int(round(rate * args.chunk_ms / 1000.0)))
    frames, push_ms, late_ms = [], [], []
    start = time.perf_counter()
    with session:
        for i in range(0, len(wav), chunk):
            piece = wav[i : i + chunk]
            if args.realtime:  # the chunk is complete when its last sample has been heard
                time.sleep(max(0.0, start + (i + len(piece)) / rate - time.perf_counter()))
            t0 = time.perf_counter()
            got = session.push(piece)
            now = time.perf_counter()
            push_ms.append(1000.0 * (now - t0))
            if args.realtime:  # from the end of a frame's audio to the frame leaving the session
                late_ms += [1000.0 * (now - start - (f.index + 1) / session.fps) for f in got]
            frames += got
        frames += session.flush()
    keypoints = session.keypoints(frames)
    result = Result(keypoints, image, pipe.load_audio(args.audio), pipe.audio.sample_rate, pipe.renderer)
    result.save(keypoints=args.keypoints_out, video=args.video_out, format=args.keypoints_format)
    n = len(keypoints)
    written = [x for x in (args.keypoints_out, args.video_out) if x]
    if session.lookahead is None:
        ahead = "full (every frame at the end)"
    else:
        ahead = f"{1000.0 * session.lookahead / session.fps:g} ms"
        ahead = f"full ({ahead})" if session.requested_lookahead is None else ahead
    print(f"{n} frames ({n / keypoints.fps:.2f} s at {keypoints.fps:g} fps) -> {', '.join(written)}")
    pushes = np.asarray(push_ms)
    print(
        f"lookahead {ahead}; {len(pushes)} pushes of {args.chunk_ms:g} ms: compute mean {pushes.mean():.1f} ms, "
        f"p95 {np.percentile(pushes, 95):.1f} ms, max {pushes.max():.1f} ms"
        + (
            f"; frame latency after its audio: p50 {np.percentile(late_ms, 50):.0f} ms, "
            f"p95 {np.percentile(late_ms, 95):.0f} ms"
            if late_ms
            else ""
        )
    )
    return 0
