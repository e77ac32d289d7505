"""A client of ``a2k serve``: play audio through a server's ``/stream`` and collect the keypoint frames
(``a2k stream --url``). A sender thread sends the start message and PCM16 chunks (at real-time pace if asked); the
calling thread reads the frames."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import A2KError
from . import protocol as P


class ServerError(A2KError):
    """The server sent an error message (or closed the connection before ``done``)."""


def to_pcm16(wav: np.ndarray) -> bytes:
    """Float samples in [-1, 1] -> PCM16 little-endian bytes (rounded, clipped)."""
    return np.clip(np.round(np.asarray(wav, np.float64) * 32768.0), -32768, 32767).astype("<i2").tobytes()


def start_message(
    sample_rate: int,
    fmt: str = "binary",
    lookahead_ms: float | str | None = None,
    *,
    image: str | Path | bytes | None = None,
    reference: np.ndarray | None = None,
    image_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The start message (docs/serve.md, "Start") for a face given as an image file (or its bytes) or as reference
    keypoints ``(68, 2)`` with their image size."""
    start: dict[str, Any] = {"type": "start", "sample_rate": int(sample_rate), "format": fmt}
    if lookahead_ms is not None:
        start["lookahead_ms"] = lookahead_ms if lookahead_ms == "full" else float(lookahead_ms)
    if image is not None:
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        start["image"] = base64.b64encode(data).decode("ascii")
    else:
        start["reference"] = np.asarray(reference, np.float32).reshape(P.POINTS, 2).tolist()
        if image_size is not None:
            start["image_size"] = [int(image_size[0]), int(image_size[1])]
    return start


def stream_audio(
    url: str,
    wav: np.ndarray,
    sample_rate: int,
    *,
    image: str | Path | bytes | None = None,
    reference: np.ndarray | None = None,
    image_size: tuple[int, int] | None = None,
    lookahead_ms: float | str | None = None,
    chunk_ms: float = 20.0,
    realtime: bool = False,
    fmt: str = "binary",
    token: str | None = None,
    origin: str | None = None,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Send ``wav`` (mono float32 at ``sample_rate``) to the server at ``url`` in ``chunk_ms`` pieces and return
    ``{"ready": <ready message>, "frames": [(index, t, points (68, 2)), ...], "recv_times": [...], "done": ...}``;
    ``recv_times`` are ``time.perf_counter()`` values of each frame's arrival, ``"sent_at"`` the start of sending."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    start = start_message(sample_rate, fmt, lookahead_ms, image=image, reference=reference, image_size=image_size)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    pcm = to_pcm16(wav)
    step = 2 * max(1, int(round(sample_rate * chunk_ms / 1000.0)))
    out: dict[str, Any] = {"frames": [], "recv_times": []}
    failure: list[BaseException] = []
    try:
        ws = connect(url, additional_headers=headers, origin=origin, max_size=None, open_timeout=timeout_s)
    except (OSError, TimeoutError) as exc:
        raise ServerError(f"cannot connect to {url}: {exc}") from None
    with ws:
        ws.send(json.dumps(start))
        ready = json.loads(_recv(ws, timeout_s))
        if ready.get("type") != "ready":
            raise ServerError(f"the server refused the session: {ready.get('message', ready)}")
        out["ready"] = ready

        def send() -> None:
            try:
                t0 = out["sent_at"] = time.perf_counter()
                for i in range(0, len(pcm), step):
                    piece = pcm[i : i + step]
                    if realtime:
                        time.sleep(max(0.0, t0 + (i + len(piece)) / 2 / sample_rate - time.perf_counter()))
                    ws.send(piece)
                ws.send(json.dumps({"type": "end"}))
            except ConnectionClosed:
                pass  # the reader reports why
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                failure.append(exc)

        sender = threading.Thread(target=send, name="a2k-stream-send", daemon=True)
        sender.start()
        try:
            while True:
                msg = _recv(ws, timeout_s)
                if isinstance(msg, bytes):
                    out["frames"].append(P.read_frame(msg))
                    out["recv_times"].append(time.perf_counter())
                    continue
                body = json.loads(msg)
                if body["type"] == "frame":
                    out["frames"].append((body["index"], body["t"], np.asarray(body["points"], np.float32)))
                    out["recv_times"].append(time.perf_counter())
                elif body["type"] == "done":
                    out["done"] = body
                    break
                elif body["type"] == "error":
                    raise ServerError(f"the server ended the session: {body['message']}")
        finally:
            sender.join(timeout=5.0)
    if failure:
        raise failure[0]
    return out


def _recv(ws, timeout_s: float):
    from websockets.exceptions import ConnectionClosed

    try:
        return ws.recv(timeout=timeout_s)
    except TimeoutError:
        raise ServerError(f"no message from the server for {timeout_s:g} s") from None
    except ConnectionClosed as exc:
        raise ServerError(f"the server closed the connection ({exc})") from None


def run_url(args) -> int:
    """``a2k stream --url``: the command's inputs played through a server instead of an in-process session; the
    keypoints (and the MP4, rendered here with the config's renderer) are written as in-process."""
    from ..audio import load_audio, probe_audio
    from ..images import load_image
    from ..keypoints import Keypoints
    from ..pipeline import Pipeline, Result

    pipe = None
    if args.video_out:
        pipe = Pipeline.from_config(args.config, **({"device": args.device} if args.device else {}))
        if pipe.renderer is None:
            raise A2KError("--video-out needs a renderer; set `renderer` in the config (e.g. `renderer: sketch`)")
    rate = probe_audio(args.audio).sample_rate
    wav = load_audio(args.audio, rate)
    image = load_image(args.image)
    got = stream_audio(
        args.url,
        wav,
        rate,
        image=Path(args.image),
        lookahead_ms=args.lookahead_ms,
        chunk_ms=args.chunk_ms,
        realtime=args.realtime,
        token=getattr(args, "token", None),
    )
    frames = got["frames"]
    if [f[0] for f in frames] != list(range(len(frames))):
        raise ServerError("the server's frames are not in order (a bug in the server)")
    pts = np.stack([f[2] for f in frames]) if frames else np.zeros((0, P.POINTS, 2), np.float32)
    keypoints = Keypoints(pts, fps=float(got["ready"]["fps"]), image_size=image.shape[:2])
    audio, sr = (pipe.load_audio(args.audio), pipe.audio.sample_rate) if pipe else (wav, rate)
    Result(keypoints, image, audio, sr, pipe.renderer if pipe else None).save(
        keypoints=args.keypoints_out, video=args.video_out
    )
    n = len(keypoints)
    written = [x for x in (args.keypoints_out, args.video_out) if x]
    lat = [1000.0 * (t - got["sent_at"] - (i + 1) / keypoints.fps) for (i, _, _), t in zip(frames, got["recv_times"])]
    print(f"{n} frames ({n / keypoints.fps:.2f} s at {keypoints.fps:g} fps) from {args.url} -> {', '.join(written)}")
    if args.realtime and lat:
        print(
            f"frame latency after its audio: p50 {np.percentile(lat, 50):.0f} ms, p95 {np.percentile(lat, 95):.0f} ms"
        )
    return 0
