"""The ``a2k serve`` application (docs/serve.md): Starlette routes ``/stream`` (WebSocket), ``/healthz``,
``/metrics``, the browser page at ``/`` (``serve/page/``: the microphone to ``/stream``, the keypoints over the
photo) and the bundled sample face at ``/sample.jpg``. One pipeline serves every connection; each connection
holds its own :class:`~a2k_toolkit.streaming.StreamSession`, whose pushes run in worker threads so the event loop
stays free."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .. import __version__
from ..errors import A2KError
from ..keypoints import Keypoints
from . import protocol as P
from .metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)


@dataclass
class ServeSettings:
    """The limits of a server (the flags of ``a2k serve``; docs/serve.md, "Limits")."""

    max_sessions: int = 8
    max_message_bytes: int = 8 * 1024 * 1024
    idle_timeout_s: float = 30.0
    max_session_s: float = 3600.0
    max_speed: float = 2.0  # audio seconds per second of wall time, sustained (0: no limit)
    burst_s: float = 5.0  # audio a client may send ahead of that rate
    max_queued_frames: int = 250  # frames waiting for a client that does not read them (10 s at 25 fps)
    token: str | None = None
    allow_origins: tuple[str, ...] = field(default_factory=tuple)
    warm_up: bool = True  # load the pipeline's lazy parts before serving (see warm_up)

    def ws_max_size(self) -> int:
        """The protocol-level cap given to uvicorn: above ours, so that a message a little over the limit gets the
        documented error; a message over this one is cut by the WebSocket layer (close 1009, no error message)."""
        return 2 * self.max_message_bytes + (1 << 20)


#: the page loads nothing from elsewhere: scripts, images and the WebSocket are this server's (photos as data: URLs)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _Refused(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.message, self.code = message, code


def _decode_image(data: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise P.ProtocolError('"image" is not a readable JPEG or PNG file')
    return np.ascontiguousarray(img[:, :, ::-1])


def warm_up(pipeline: Any) -> float:
    """Load what a pipeline loads on first use (the detector's model, the generator's weights) before the first
    client comes, so that its session starts in a fraction of a second instead of several seconds (a browser's
    microphone is already running then): a face found on the bundled sample photo, then a second of silence
    streamed through a session. Returns the seconds it took; a failure is logged, never fatal (the first session
    then pays the loading, or reports the error itself)."""
    t0 = time.perf_counter()
    try:
        img = _decode_image(resources.files("a2k_toolkit").joinpath("samples/astronaut.jpg").read_bytes())
        reference = pipeline.detect(img)
        with pipeline.stream(reference=reference, sample_rate=16000) as session:
            session.push(np.zeros(16000, np.float32))
    except Exception as exc:  # noqa: BLE001 - a warm-up only: the sessions report their own errors
        name = type(exc).__name__
        log.warning("a2k serve: the warm-up failed (%s: %s); the first session will load the models", name, exc)
    return time.perf_counter() - t0


def create_app(pipeline: Any, settings: ServeSettings | None = None):
    """The Starlette application serving ``pipeline`` (a built :class:`~a2k_toolkit.pipeline.Pipeline`)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route, WebSocketRoute

    settings = settings or ServeSettings()
    metrics = Metrics()
    ids = itertools.count(1)
    detect_lock = threading.Lock()  # face detectors are not promised to be thread-safe
    fps = float(pipeline.audio.fps)

    def authorized(scope_headers, query) -> bool:
        if not settings.token:
            return True
        given = query.get("token")
        auth = scope_headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), settings.token.encode())

    def origin_ok(headers) -> bool:
        origin = headers.get("origin")
        if origin is None:  # not a browser: the token (if any) is the check
            return True
        if "*" in settings.allow_origins or origin in settings.allow_origins:
            return True
        return urlsplit(origin).netloc == headers.get("host")  # the server's own page

    async def healthz(request):
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "sessions_active": metrics.sessions_active,
                "max_sessions": settings.max_sessions,
                "fps": fps,
            }
        )

    async def metrics_route(request):
        if not authorized(request.headers, request.query_params):
            return PlainTextResponse("a valid token is needed (Authorization: Bearer TOKEN)\n", status_code=401)
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    def static(name: str, media_type: str, headers: dict[str, str] | None = None):
        async def route(request):
            data = resources.files("a2k_toolkit").joinpath(name).read_bytes()
            return Response(data, media_type=media_type, headers={"Cache-Control": "no-cache", **(headers or {})})

        return route

    async def stream(ws):
        await ws.accept()
        try:
            if not origin_ok(ws.headers):
                raise _Refused(f"Origin {ws.headers.get('origin')} is not allowed (see --allow-origin)", P.POLICY)
            if not authorized(ws.headers, ws.query_params):
                raise _Refused("a valid token is needed: 'Authorization: Bearer TOKEN' or ?token=TOKEN", P.POLICY)
            if metrics.sessions_active >= settings.max_sessions:
                raise _Refused(
                    f"the server is full ({settings.max_sessions} sessions, --max-sessions); try again later",
                    P.TRY_LATER,
                )
        except _Refused as exc:
            metrics.sessions_refused += 1
            await _fail(ws, exc.message, exc.code)
            return
        metrics.sessions_active += 1
        metrics.sessions_total += 1
        try:
            await _Connection(ws, next(ids)).run()
        finally:
            metrics.sessions_active -= 1

    async def _fail(ws, text: str, code: int) -> None:
        try:
            await asyncio.wait_for(ws.send_text(P.message("error", message=text)), 2.0)
            await asyncio.wait_for(ws.close(code=code, reason=text[:120]), 2.0)
        except Exception:  # noqa: BLE001 - the client is gone or stuck: nothing more to tell it
            pass

    class _Connection:
        def __init__(self, ws, sid: int):
            self.ws, self.sid = ws, sid
            self.started = time.monotonic()
            self.queue: asyncio.Queue = asyncio.Queue()
            self.sender: asyncio.Task | None = None
            self.session = None
            self.fmt = "json"
            self.audio_s = 0.0
            self.first_audio: float | None = None

        async def run(self) -> None:
            try:
                await self._serve()
            except P.ProtocolError as exc:
                metrics.errors_total += 1
                await self._stop_sender()
                await _fail(self.ws, exc.message, exc.code)
            except A2KError as exc:  # the user's input: no face, a bad chunk, ...
                metrics.errors_total += 1
                await self._stop_sender()
                await _fail(self.ws, str(exc), P.INVALID)
            except _Disconnected:
                await self._stop_sender()
            except Exception as exc:  # noqa: BLE001 - reported to the client, the server keeps serving others
                metrics.errors_total += 1
                await self._stop_sender()
                await _fail(self.ws, f"internal error: {type(exc).__name__}: {exc}", P.INTERNAL)
            finally:
                if self.session is not None:
                    self.session.close()

        async def _receive(self) -> tuple[float, str | bytes]:
            now = time.monotonic()
            left = self.started + settings.max_session_s - now
            if left <= 0:
                raise P.ProtocolError(f"the session reached --max-session-s ({settings.max_session_s:g} s)", P.POLICY)
            wait = min(settings.idle_timeout_s, left)
            try:
                msg = await asyncio.wait_for(self.ws.receive(), wait)
            except asyncio.TimeoutError:
                if wait < settings.idle_timeout_s:
                    raise P.ProtocolError(
                        f"the session reached --max-session-s ({settings.max_session_s:g} s)", P.POLICY
                    ) from None
                raise P.ProtocolError(
                    f"no message for {settings.idle_timeout_s:g} s (--idle-timeout-s); closing", P.POLICY
                ) from None
            if msg["type"] == "websocket.disconnect":
                raise _Disconnected()
            data = msg.get("bytes") if msg.get("bytes") is not None else msg.get("text", "")
            size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8"))
            if size > settings.max_message_bytes:
                raise P.ProtocolError(
                    f"a message of {size} bytes is over the limit of {settings.max_message_bytes} bytes "
                    "(--max-message-bytes); send audio in smaller chunks or a smaller image",
                    P.TOO_BIG,
                )
            return time.perf_counter(), data

        async def _serve(self) -> None:
            _, data = await self._receive()
            if isinstance(data, bytes):
                raise P.ProtocolError('the first message must be the JSON text {"type": "start", ...}', P.UNSUPPORTED)
            start = P.parse_start(P.parse_json(data))
            self.fmt = start.format
            self.session = await run_in_threadpool(self._open, start)
            look = self.session.lookahead
            await self.ws.send_text(
                P.message(
                    "ready",
                    fps=fps,
                    lookahead_ms="full" if look is None else 1000.0 * look / fps,
                    latency_ms=self.session.latency_ms,
                    session=self.sid,
                )
            )
            self.sender = asyncio.create_task(self._send_frames())
            while True:
                t_recv, data = await self._receive()
                if isinstance(data, str):
                    msg = P.parse_json(data)
                    if msg["type"] != "end":
                        raise P.ProtocolError(
                            f'after "start" only binary PCM16 audio and {{"type": "end"}} are expected, got type '
                            f"{msg['type']!r}",
                            P.UNSUPPORTED,
                        )
                    frames = await run_in_threadpool(self.session.flush)
                    self._enqueue(t_recv, frames)
                    self.queue.put_nowait(None)
                    await self.sender
                    await self.ws.send_text(P.message("done", frames=self.session.frames_out))
                    await self.ws.close(code=P.NORMAL)
                    return
                wav = P.pcm16(data)
                await self._throttle(len(wav) / start.sample_rate)
                metrics.audio_seconds += len(wav) / start.sample_rate
                frames = await run_in_threadpool(self.session.push, wav)
                self._enqueue(t_recv, frames)

        def _open(self, start: P.Start):
            if start.image is not None:
                img = _decode_image(start.image)
                with detect_lock:
                    ref = pipeline.detect(img)
            else:
                ref = Keypoints(start.reference[None], fps=fps, image_size=start.image_size)
            return pipeline.stream(reference=ref, lookahead_ms=start.lookahead_ms, sample_rate=start.sample_rate)

        async def _throttle(self, seconds: float) -> None:
            """Backpressure on audio: a client may be ``burst_s`` ahead of ``max_speed`` x real time; past that the
            server waits before reading on, so the client's sends block (TCP flow control)."""
            now = time.monotonic()
            if self.first_audio is None:
                self.first_audio = now
            self.audio_s += seconds
            if settings.max_speed > 0:
                ahead = self.audio_s - settings.burst_s - settings.max_speed * (now - self.first_audio)
                if ahead > 0:
                    metrics.throttled_seconds += ahead / settings.max_speed
                    await asyncio.sleep(ahead / settings.max_speed)

        def _enqueue(self, t_recv: float, frames) -> None:
            # the backlog is what earlier messages produced and the client has not taken yet: one message's own
            # frames may be many (a long chunk, or every frame at the end with lookahead "full") and are no sign
            # of a client that does not read
            backlog = self.queue.qsize()
            if backlog > settings.max_queued_frames:
                raise P.ProtocolError(
                    f"the client is not reading its keypoint frames ({backlog} queued, "
                    f"--max-queued-frames {settings.max_queued_frames}); closing",
                    P.POLICY,
                )
            encode = P.frame_binary if self.fmt == "binary" else P.frame_json
            for f in frames:
                self.queue.put_nowait((t_recv, encode(f.index, f.timestamp, f.points)))

        async def _send_frames(self) -> None:
            while True:
                item = await self.queue.get()
                if item is None:
                    return
                t_recv, payload = item
                try:
                    if isinstance(payload, bytes):
                        await self.ws.send_bytes(payload)
                    else:
                        await self.ws.send_text(payload)
                except Exception:  # noqa: BLE001 - the client went away (starlette's WebSocketDisconnect, ...)
                    raise _Disconnected() from None
                metrics.frames_sent += 1
                metrics.observe_latency(time.perf_counter() - t_recv)

        async def _stop_sender(self) -> None:
            if self.sender is None:
                return
            if not self.sender.done():
                self.sender.cancel()
            try:  # also when it is done: its exception (the client went away) is retrieved, not logged as lost
                await self.sender
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - cancelled, or the client went away
                pass

    routes = [
        Route("/healthz", healthz),
        Route("/metrics", metrics_route),
        WebSocketRoute("/stream", stream),
        Route("/sample.jpg", static("samples/astronaut.jpg", "image/jpeg")),
        # the browser page (docs/serve.md, "The browser page"): nothing but what this server serves
        Route("/", static("serve/page/index.html", "text/html; charset=utf-8", PAGE_HEADERS)),
        Route("/app.js", static("serve/page/app.js", "text/javascript; charset=utf-8", PAGE_HEADERS)),
        Route(
            "/capture-worklet.js",
            static("serve/page/capture-worklet.js", "text/javascript; charset=utf-8", PAGE_HEADERS),
        ),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if settings.warm_up:  # before uvicorn reports the server started and accepts connections
            await run_in_threadpool(warm_up, pipeline)
        yield

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.metrics = metrics
    app.state.settings = settings
    return app


class _Disconnected(Exception):
    pass


def make_server(app, settings: ServeSettings, host: str, port: int, *, log_level: str = "info"):
    """A uvicorn server for ``app`` (``server.run()`` serves until ``server.should_exit`` is set)."""
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, ws="websockets-sansio", ws_max_size=settings.ws_max_size(), log_level=log_level
    )
    return uvicorn.Server(config)
