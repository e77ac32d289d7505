"""``a2k serve``: a WebSocket server that turns live audio into keypoint frames (docs/serve.md)."""

from __future__ import annotations

import argparse
import ipaddress
import socket

from ..errors import InputError
from ..models.ort_form import BACKENDS, resolve_backend

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve streaming keypoints over WebSocket",
        description="Serve live keypoints: a client sends a face (image or reference keypoints), then PCM16 audio, "
        "over a WebSocket at /stream, and gets keypoint frames back as soon as they are final. Also /healthz, "
        "Prometheus /metrics. Protocol and limits: docs/serve.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", help="pipeline config file (YAML, JSON or TOML), as for `a2k generate`")
    p.add_argument("--device", default=None, help="override the config's device (auto, cpu, cuda, mps)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; non-loopback needs --token or --insecure")
    p.add_argument("--port", type=int, default=8765, help="port to bind (0: any free port)")
    p.add_argument("--token", default=None, help="require this bearer token (Authorization header or ?token=)")
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser Origin allowed to connect besides the server's own page, e.g. https://app.example "
        "(repeatable; '*' for any)",
    )
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without --token")
    p.add_argument("--max-sessions", type=int, default=8, help="concurrent sessions; more are refused (1013)")
    p.add_argument("--max-message-bytes", type=int, default=8 * 1024 * 1024, help="largest message accepted")
    p.add_argument("--idle-timeout-s", type=float, default=30.0, help="close a connection silent this long")
    p.add_argument("--max-session-s", type=float, default=3600.0, help="longest connection, wall-clock seconds")
    p.add_argument(
        "--max-speed",
        type=float,
        default=2.0,
        help="audio accepted per second of wall time, in seconds, sustained; faster clients are throttled (0: off)",
    )
    p.add_argument("--burst-s", type=float, default=5.0, help="seconds of audio a client may send ahead of that")
    p.add_argument(
        "--max-queued-frames", type=int, default=250, help="frames waiting for a client that does not read; more: close"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads per push; the sessions' pushes already run in parallel worker threads, and more "
        "threads per push oversubscribe the cores (docs/serve.md, Capacity)",
    )
    p.add_argument(
        "--batch-windows",
        type=int,
        default=32,
        help="the most windows of all sessions run in one forward pass of the network (0: each session runs its "
        "own; docs/serve.md, Capacity)",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=4.0,
        help="how long a window waits for other sessions' windows while one of their pushes is still busy",
    )
    p.add_argument(
        "--inference-processes",
        type=int,
        default=1,
        help="processes the batched forward passes run in, besides the server's (0: in a thread of the server's "
        "process, where the sessions' Python work holds the GIL it needs; docs/serve.md, Capacity)",
    )
    p.add_argument(
        "--inference-backend",
        default="auto",
        help=f"what runs the batched forward passes, one of {', '.join(BACKENDS)}: torch (traced), onnxruntime "
        "(needs the onnx and onnxruntime packages; measured 0.6-1x torch's time a batch), auto: onnxruntime where "
        "installed, else torch (docs/serve.md, Capacity)",
    )
    p.add_argument(
        "--hop",
        type=int,
        default=None,
        help="frames between the generator's windows in every session (audio2keypoint; default: its own, 2 at the "
        "default lookahead); 4 halves the network's work for a little lip sync (docs/streaming.md, Cost)",
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def settings_from(args):
    from ..serve.app import ServeSettings

    checks = [
        ("--max-sessions", args.max_sessions >= 1),
        ("--max-message-bytes", args.max_message_bytes >= 1024),
        ("--idle-timeout-s", args.idle_timeout_s > 0),
        ("--max-session-s", args.max_session_s > 0),
        ("--max-speed", args.max_speed >= 0),
        ("--burst-s", args.burst_s >= 0),
        ("--max-queued-frames", args.max_queued_frames >= 1),
        ("--threads", args.threads >= 1),
        ("--batch-windows", args.batch_windows >= 0),
        ("--batch-wait-ms", 0 <= args.batch_wait_ms <= 1000),
        ("--inference-processes", 0 <= args.inference_processes <= 64),
        ("--hop", args.hop is None or args.hop >= 1),
    ]
    for flag, ok in checks:
        if not ok:
            raise InputError(f"{flag} is out of range (see `a2k serve --help`)")
    if not is_loopback(args.host) and not args.token and not args.insecure:
        raise InputError(
            f"--host {args.host} is reachable from other machines: give --token SECRET (clients send "
            "'Authorization: Bearer SECRET'), or --insecure to serve without one"
        )
    return ServeSettings(
        max_sessions=args.max_sessions,
        max_message_bytes=args.max_message_bytes,
        idle_timeout_s=args.idle_timeout_s,
        max_session_s=args.max_session_s,
        max_speed=args.max_speed,
        burst_s=args.burst_s,
        max_queued_frames=args.max_queued_frames,
        token=args.token or None,
        allow_origins=tuple(args.allow_origin),
        batch_windows=args.batch_windows,
        batch_wait_ms=args.batch_wait_ms,
        inference_processes=args.inference_processes,
        inference_backend=resolve_backend(args.inference_backend),
        hop=args.hop,
    )


def run(args) -> int:
    from ..errors import require

    for module in ("starlette", "uvicorn", "websockets"):
        require(module, "serve", "a2k serve")
    from ..pipeline import Pipeline
    from ..serve.app import create_app, make_server

    settings = settings_from(args)
    import torch

    torch.set_num_threads(args.threads)  # also the worker threads' (set before they start)
    sock = bind(args.host, args.port)  # bound first, so that the message names the port (also with --port 0)
    try:
        port = sock.getsockname()[1]
        pipe = Pipeline.from_config(args.config, **({"device": args.device} if args.device else {}))
        server = make_server(create_app(pipe, settings), settings, args.host, port, log_level=args.log_level)
        print(start_line(args.host, port), flush=True)
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv6 for an address with ``:``), for uvicorn to listen on; a port in use
    or an address not of this machine is the user's error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(
            f"cannot serve on {host}:{port}: {exc.strerror or exc} (try another --port or --host)"
        ) from None
    return sock


def start_line(host: str, port: int) -> str:
    """The start-up message: the WebSocket URL and the browser page's (docs/serve.md)."""
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"a2k serve: ws://{netloc}/stream, the page at http://{netloc}/ (open it in a browser and talk)"
