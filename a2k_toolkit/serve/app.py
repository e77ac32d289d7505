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
from typing import Any
from urllib.parse import urlsplit

from .. import __version__
from ..cpu_runtime import freeze_heap, match_torch_threads
from ..errors import A2KError
from ..keypoints import Keypoints
from . import assets
from . import protocol as P
from .inbox import Inbox
from .metrics import CONTENT_TYPE, Metrics
from .settings import ServeSettings
from .warmup import decode_image, warm_up

log = logging.getLogger(__name__)


class _Refused(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.message, self.code = message, code


class _Server:
    """One application's state (the pipeline, the limits, the counters, the window batcher) and its HTTP and
    WebSocket routes."""

    def __init__(self, pipeline: Any, settings: ServeSettings):
        self.pipeline, self.settings = pipeline, settings
        self.batcher = None
        if settings.batch_windows > 0:
            from ..models.batching import WindowBatcher

            procs = settings.inference_processes
            self.batcher = WindowBatcher(
                settings.batch_windows,
                settings.batch_wait_ms / 1000.0,
                workers=max(1, procs),
                processes=procs > 0,
                backend=settings.inference_backend,
            )
        self.metrics = Metrics(self.batcher)
        self.ids = itertools.count(1)
        self.detect_lock = threading.Lock()  # face detectors are not promised to be thread-safe
        self.fps = float(pipeline.audio.fps)

    def authorized(self, headers, query) -> bool:
        token = self.settings.token
        if not token:
            return True
        given = query.get("token")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), token.encode())

    def in_batcher(self, fn, *args):
        """``fn(*args)`` as a caller of the window batcher (a session's push, flush or open), if there is one."""
        match_torch_threads()  # a worker thread: the server's --threads, not every core (cpu_runtime)
        if self.batcher is None:
            return fn(*args)
        with self.batcher.caller():
            return fn(*args)

    def origin_ok(self, headers) -> bool:
        origin = headers.get("origin")
        if origin is None:  # not a browser: the token (if any) is the check
            return True
        if "*" in self.settings.allow_origins or origin in self.settings.allow_origins:
            return True
        return urlsplit(origin).netloc == headers.get("host")  # the server's own page

    async def healthz(self, request):
        from starlette.responses import JSONResponse

        active, limit = self.metrics.sessions_active, self.settings.max_sessions
        body = {"status": "ok", "version": __version__, "sessions_active": active, "max_sessions": limit}
        return JSONResponse({**body, "fps": self.fps})

    async def metrics_route(self, request):
        from starlette.responses import PlainTextResponse, Response

        if not self.authorized(request.headers, request.query_params):
            return PlainTextResponse("a valid token is needed (Authorization: Bearer TOKEN)\n", status_code=401)
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def stream(self, ws):
        await ws.accept()
        st, m = self.settings, self.metrics
        try:
            if not self.origin_ok(ws.headers):
                raise _Refused(f"Origin {ws.headers.get('origin')} is not allowed (see --allow-origin)", P.POLICY)
            if not self.authorized(ws.headers, ws.query_params):
                raise _Refused("a valid token is needed: 'Authorization: Bearer TOKEN' or ?token=TOKEN", P.POLICY)
            if m.sessions_active >= st.max_sessions:
                raise _Refused(
                    f"the server is full ({st.max_sessions} sessions, --max-sessions); try again later", P.TRY_LATER
                )
        except _Refused as exc:
            m.sessions_refused += 1
            await _fail(ws, exc.message, exc.code)
            return
        m.sessions_active += 1
        m.sessions_total += 1
        try:
            await _Connection(self, ws, next(self.ids)).run()
        finally:
            m.sessions_active -= 1


async def _fail(ws, text: str, code: int) -> None:
    """Send the error message, then close with ``code``; a client that is gone or does not read gets 2 s each."""
    try:
        await asyncio.wait_for(ws.send_text(P.message("error", message=text)), 2.0)
        await asyncio.wait_for(ws.close(code=code, reason=text[:120]), 2.0)
    except Exception:  # noqa: BLE001 - the client is gone or stuck: nothing more to tell it
        pass


async def _in_thread(fn, *args):
    """``fn(*args)`` in a worker thread, so that the event loop stays free (the numerical work releases the GIL)."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


def create_app(pipeline: Any, settings: ServeSettings | None = None):
    """The Starlette application serving ``pipeline`` (a built :class:`~a2k_toolkit.pipeline.Pipeline`)."""
    from starlette.applications import Starlette
    from starlette.routing import Route, WebSocketRoute

    settings = settings or ServeSettings()
    srv = _Server(pipeline, settings)
    routes = [
        Route("/healthz", srv.healthz),
        Route("/metrics", srv.metrics_route),
        WebSocketRoute("/stream", srv.stream),
        *assets.routes(),  # the browser page and the sample face
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if srv.batcher is not None:
            srv.batcher.start()
        try:
            if settings.warm_up:  # before uvicorn reports the server started and accepts connections
                await _in_thread(srv.in_batcher, warm_up, pipeline)  # also traces the network for the batcher
            freeze_heap()  # what is loaded now stays: later full collections skip it (cpu_runtime)
            yield
        finally:
            if srv.batcher is not None:
                await _in_thread(srv.batcher.close)

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.metrics = srv.metrics
    app.state.settings = settings
    app.state.batcher = srv.batcher
    return app


class _Connection:
    """One WebSocket connection: one streaming session, its outgoing queue and the task that sends it."""

    def __init__(self, srv: _Server, ws, sid: int):
        self.srv, self.ws, self.sid = srv, ws, sid
        self.settings, self.metrics = srv.settings, srv.metrics
        self.started = time.monotonic()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.sender: asyncio.Task | None = None
        self.session = None
        self.fmt = "json"
        self.audio_s = 0.0
        self.first_audio: float | None = None
        self.inbox = Inbox()  # the messages read ahead of the pushes (serve/inbox.py)
        self.reader: asyncio.Task | None = None

    async def run(self) -> None:
        try:
            await self._serve()
        except P.ProtocolError as exc:
            self.metrics.errors_total += 1
            await self._stop_sender()
            await _fail(self.ws, exc.message, exc.code)
        except A2KError as exc:  # the user's input: no face, a bad chunk, ...
            self.metrics.errors_total += 1
            await self._stop_sender()
            await _fail(self.ws, str(exc), P.INVALID)
        except _Disconnected:
            await self._stop_sender()
        except Exception as exc:  # noqa: BLE001 - reported to the client, the server keeps serving others
            self.metrics.errors_total += 1
            await self._stop_sender()
            await _fail(self.ws, f"internal error: {type(exc).__name__}: {exc}", P.INTERNAL)
        finally:
            await self._stop_reader()
            if self.session is not None:
                self.session.close()

    async def _receive(self) -> tuple[float, str | bytes]:
        now = time.monotonic()
        left = self.started + self.settings.max_session_s - now
        if left <= 0:
            raise P.ProtocolError(f"the session reached --max-session-s ({self.settings.max_session_s:g} s)", P.POLICY)
        wait = min(self.settings.idle_timeout_s, left)
        try:
            msg = await asyncio.wait_for(self.ws.receive(), wait)
        except asyncio.TimeoutError:
            if wait < self.settings.idle_timeout_s:
                raise P.ProtocolError(
                    f"the session reached --max-session-s ({self.settings.max_session_s:g} s)", P.POLICY
                ) from None
            raise P.ProtocolError(
                f"no message for {self.settings.idle_timeout_s:g} s (--idle-timeout-s); closing", P.POLICY
            ) from None
        if msg["type"] == "websocket.disconnect":
            raise _Disconnected()
        data = msg.get("bytes") if msg.get("bytes") is not None else msg.get("text", "")
        size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8"))
        if size > self.settings.max_message_bytes:
            raise P.ProtocolError(
                f"a message of {size} bytes is over the limit of {self.settings.max_message_bytes} bytes "
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
        self.session = await _in_thread(self.srv.in_batcher, self._open, start)
        look = self.session.lookahead
        await self._send_text(
            P.message(
                "ready",
                fps=self.srv.fps,
                lookahead_ms="full" if look is None else 1000.0 * look / self.srv.fps,
                latency_ms=self.session.latency_ms,
                session=self.sid,
            )
        )
        self.sender = asyncio.create_task(self._send_frames())
        self.reader = asyncio.create_task(self._read_ahead(start.sample_rate))
        while True:
            t_recv, data = await self.inbox.next()
            if isinstance(data, str):
                msg = P.parse_json(data)
                if msg["type"] != "end":
                    raise P.ProtocolError(
                        f'after "start" only binary PCM16 audio and {{"type": "end"}} are expected, got type '
                        f"{msg['type']!r}",
                        P.UNSUPPORTED,
                    )
                frames = await _in_thread(self.srv.in_batcher, self.session.flush)
                self._enqueue(t_recv, frames)
                self.queue.put_nowait(None)
                await self.sender
                await self._send_text(P.message("done", frames=self.session.frames_out))
                with contextlib.suppress(Exception):  # the client left after "done": the session is complete
                    await self.ws.close(code=P.NORMAL)
                return
            wav, merged = self.inbox.audio_with_next(P.pcm16(data), start.sample_rate)
            self.metrics.merged_messages += merged
            self.metrics.audio_seconds += len(wav) / start.sample_rate
            frames = await _in_thread(self.srv.in_batcher, self.session.push, wav)
            self._enqueue(t_recv, frames)

    async def _read_ahead(self, rate: int) -> None:
        """Read the client's messages into the inbox while its earlier audio is being pushed, up to the inbox's
        room (then wait: the client's sends block, as without read-ahead); throttled as :meth:`_throttle` says. A
        failure to read (a protocol error, the client gone) goes into the inbox after the messages before it."""
        try:
            while True:
                await self.inbox.room()
                t_recv, data = await self._receive()
                if isinstance(data, bytes):
                    await self._throttle(len(data) / 2 / rate)
                self.inbox.put((t_recv, data), len(data))
                if isinstance(data, str):
                    return  # "end" (or a message the session refuses): nothing is read after it
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the session's loop, in order
            self.inbox.put(exc)

    async def _stop_reader(self) -> None:
        if self.reader is None:
            return
        if not self.reader.done():
            self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader

    async def _send_text(self, text: str) -> None:
        try:
            await self.ws.send_text(text)
        except Exception:  # noqa: BLE001 - the client went away (as in _send_frames): no error of the session
            raise _Disconnected() from None

    def _open(self, start: P.Start):
        if start.image is not None:
            img = decode_image(start.image)
            with self.srv.detect_lock:
                ref = self.srv.pipeline.detect(img)
        else:
            ref = Keypoints(start.reference[None], fps=self.srv.fps, image_size=start.image_size)
        options = {} if self.settings.hop is None else {"hop": self.settings.hop}
        return self.srv.pipeline.stream(
            reference=ref, lookahead_ms=start.lookahead_ms, sample_rate=start.sample_rate, **options
        )

    async def _throttle(self, seconds: float) -> None:
        """Backpressure on audio: a client may be ``burst_s`` ahead of ``max_speed`` x real time; past that the
        server waits before reading on, so the client's sends block (TCP flow control)."""
        now = time.monotonic()
        if self.first_audio is None:
            self.first_audio = now
        self.audio_s += seconds
        if self.settings.max_speed > 0:
            ahead = self.audio_s - self.settings.burst_s - self.settings.max_speed * (now - self.first_audio)
            if ahead > 0:
                self.metrics.throttled_seconds += ahead / self.settings.max_speed
                await asyncio.sleep(ahead / self.settings.max_speed)

    def _enqueue(self, t_recv: float, frames) -> None:
        # the backlog is what earlier messages produced and the client has not taken yet: one message's own
        # frames may be many (a long chunk, or every frame at the end with lookahead "full") and are no sign
        # of a client that does not read
        backlog = self.queue.qsize()
        if backlog > self.settings.max_queued_frames:
            raise P.ProtocolError(
                f"the client is not reading its keypoint frames ({backlog} queued, "
                f"--max-queued-frames {self.settings.max_queued_frames}); closing",
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
            self.metrics.frames_sent += 1
            self.metrics.observe_latency(time.perf_counter() - t_recv)

    async def _stop_sender(self) -> None:
        if self.sender is None:
            return
        if not self.sender.done():
            self.sender.cancel()
        try:  # also when it is done: its exception (the client went away) is retrieved, not logged as lost
            await self.sender
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - cancelled, or the client went away
            pass


class _Disconnected(Exception):
    pass


def make_server(app, settings: ServeSettings, host: str, port: int, *, log_level: str = "info"):
    """A uvicorn server for ``app`` (``server.run()`` serves until ``server.should_exit`` is set)."""
    import uvicorn

    # no permessage-deflate: PCM16 and float32 frames hardly compress, and it cost CPU per message (docs/serve.md)
    kw = dict(ws="websockets-sansio", ws_max_size=settings.ws_max_size(), ws_per_message_deflate=False)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, **kw)
    return uvicorn.Server(config)
