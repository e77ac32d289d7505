"""``a2k serve`` (docs/serve.md) on a real server on 127.0.0.1 with a real WebSocket client: the streamed keypoints
equal an in-process session's, both frame formats, every documented refusal, /healthz and /metrics, and
``a2k stream --url``."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
websockets = pytest.importorskip("websockets")

from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from a2k_toolkit import cli  # noqa: E402
from a2k_toolkit.audio import load_audio, write_wav  # noqa: E402
from a2k_toolkit.io import load_keypoints  # noqa: E402
from a2k_toolkit.pipeline import Pipeline  # noqa: E402
from a2k_toolkit.serve import protocol as P  # noqa: E402
from a2k_toolkit.serve.app import ServeSettings, create_app, make_server  # noqa: E402
from a2k_toolkit.serve.client import ServerError, stream_audio, to_pcm16  # noqa: E402
from a2k_toolkit.testing import free_port  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "a2k_toolkit" / "samples"
IMAGE, SPEECH = SAMPLES / "astronaut.jpg", SAMPLES / "speech.wav"
RATE = 16000
# a photo of a grey wall: decodes, has no face
FLAT_PNG = base64.b64encode(cv2.imencode(".png", np.full((120, 160, 3), 128, np.uint8))[1].tobytes()).decode()


SERVERS: dict = {}  # address -> the uvicorn server of running(), for the leak checks


@contextlib.contextmanager
def running(pipe, *, sndbuf: int | None = None, **settings):
    """A real server on 127.0.0.1 (uvicorn in a thread) with ``settings``; ``sndbuf``: the send buffer of its
    connections in bytes (set on the listening socket, which they inherit), to make a client's backpressure felt
    sooner than the kernel's autotuned megabytes allow."""
    st = ServeSettings(**settings)
    sock = socket.socket()
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = make_server(create_app(pipe, st), st, "127.0.0.1", port, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # the first server's warm-up loads the models
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    SERVERS[f"127.0.0.1:{port}"] = server
    try:
        yield f"127.0.0.1:{port}"
    finally:
        SERVERS.pop(f"127.0.0.1:{port}", None)
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_config(None)


@pytest.fixture(scope="module")
def reference(pipe):
    return pipe.detect(str(IMAGE))


@pytest.fixture(scope="module")
def server(pipe):
    with running(pipe, max_sessions=2, max_message_bytes=256 * 1024) as addr:
        yield addr


@pytest.fixture(scope="module")
def speech():
    return load_audio(SPEECH, RATE)


def in_process(pipe, reference, wav, lookahead_ms=None):
    """What the server should send: an in-process session on the same PCM16 samples, in the same 20 ms chunks."""
    q = np.frombuffer(to_pcm16(wav), "<i2").astype(np.float32) / 32768.0
    session = pipe.stream(reference=reference, lookahead_ms=lookahead_ms, sample_rate=RATE)
    frames = []
    for i in range(0, len(q), 320):
        frames += session.push(q[i : i + 320])
    frames += session.flush()
    return np.stack([f.points for f in frames])


def start_msg(reference, **fields):
    return json.dumps({"type": "start", "reference": reference.points[0].tolist(), "sample_rate": RATE, **fields})


def exchange(url, messages, **connect_args):
    """Send ``messages``, then read until the server closes: (the JSON messages received, the close code)."""
    got = []
    with connect(url, max_size=None, **connect_args) as ws:
        with contextlib.suppress(ConnectionClosed):  # a refusal may close before all is sent: read what came
            for m in messages:
                ws.send(m)
        try:
            while True:
                msg = ws.recv(timeout=20)
                got.append(json.loads(msg) if isinstance(msg, str) else msg)
        except ConnectionClosed as exc:
            return got, exc.rcvd.code if exc.rcvd else None


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Content-Type"], r.read().decode()


def metric(text, name):
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))


# ------------------------------------------------------------------------------------------ the same keypoints


def test_sample_over_json_equals_in_process_and_generate(pipe, reference, server, speech):
    _, before = get(f"http://{server}/metrics")
    got = stream_audio(f"ws://{server}/stream", speech, RATE, image=IMAGE, lookahead_ms=200, fmt="json")
    assert got["ready"]["fps"] == 25 and got["ready"]["lookahead_ms"] == 200
    assert got["ready"]["latency_ms"] >= 200
    assert [f[0] for f in got["frames"]] == list(range(len(got["frames"])))
    assert got["frames"][10][1] == pytest.approx(10 / 25)
    streamed = np.stack([f[2] for f in got["frames"]])
    np.testing.assert_allclose(streamed, in_process(pipe, reference, speech, 200), atol=1e-4)
    offline = pipe(image=str(IMAGE), audio=str(SPEECH)).keypoints
    assert got["done"]["frames"] == len(streamed) == len(offline)
    ctype, after = get(f"http://{server}/metrics")
    assert ctype.startswith("text/plain; version=0.0.4")
    assert metric(after, "a2k_frames_sent_total") - metric(before, "a2k_frames_sent_total") == len(offline)
    assert metric(after, "a2k_sessions_total") == metric(before, "a2k_sessions_total") + 1
    assert metric(after, "a2k_audio_seconds_total") - metric(before, "a2k_audio_seconds_total") == pytest.approx(
        len(speech) / RATE
    )
    assert metric(after, "a2k_frame_latency_seconds_count") >= len(offline)
    assert 'a2k_frame_latency_seconds_bucket{le="+Inf"}' in after


def test_binary_frames_with_reference_keypoints(pipe, reference, server, speech):
    wav = speech[: 2 * RATE]
    got = stream_audio(
        f"ws://{server}/stream", wav, RATE, reference=reference.points[0], image_size=reference.image_size, fmt="binary"
    )
    streamed = np.stack([f[2] for f in got["frames"]])
    assert streamed.dtype == np.float32 and streamed.shape == (50, 68, 2)
    # to float rounding: the server's window batcher runs the ensemble's stacked form (models.stacked)
    np.testing.assert_allclose(streamed, in_process(pipe, reference, wav), atol=1e-3)
    raw = P.frame_binary(7, 0.28, streamed[7])
    assert len(raw) == 8 + 68 * 2 * 4 and P.read_frame(raw)[0] == 7


def test_healthz(server):
    ctype, body = get(f"http://{server}/healthz")
    assert ctype == "application/json"
    health = json.loads(body)
    assert health["status"] == "ok" and health["max_sessions"] == 2 and health["sessions_active"] == 0


# ------------------------------------------------------------------------------------------- errors and limits


@pytest.mark.parametrize(
    ("messages", "code", "words"),
    [
        ([json.dumps({"type": "start", "sample_rate": RATE})], P.INVALID, 'exactly one of "image"'),
        (["not json"], P.INVALID, "must be JSON"),
        ([b"\x00\x01"], P.UNSUPPORTED, "first message must be"),
        ([json.dumps({"type": "start", "image": base64.b64encode(b"junk").decode()})], P.INVALID, "not a readable"),
        ([json.dumps({"type": "start", "image": "x", "colour": 1})], P.INVALID, "unknown field(s)"),
        ([json.dumps({"type": "start", "reference": [[0, 0]] * 3})], P.INVALID, "68 [x, y] pairs"),
        ([json.dumps({"type": "start", "image": FLAT_PNG})], P.INVALID, "no face found in the image (160x120 px)"),
    ],
)
def test_bad_start_messages(server, messages, code, words):
    got, closed = exchange(f"ws://{server}/stream", messages)
    assert got[-1]["type"] == "error" and words in got[-1]["message"]
    assert closed == code


def test_bad_audio_and_oversized_messages(server, reference):
    got, closed = exchange(f"ws://{server}/stream", [start_msg(reference), b"\x00\x01\x02"])
    assert got[0]["type"] == "ready" and "16-bit PCM" in got[-1]["message"] and closed == P.INVALID
    got, closed = exchange(f"ws://{server}/stream", [start_msg(reference), bytes(256 * 1024 + 2)])
    assert "over the limit of 262144 bytes" in got[-1]["message"] and closed == P.TOO_BIG
    got, closed = exchange(f"ws://{server}/stream", [start_msg(reference), json.dumps({"type": "start"})])
    assert "only binary PCM16" in got[-1]["message"] and closed == P.UNSUPPORTED


def test_too_many_sessions(server, reference):
    url = f"ws://{server}/stream"
    with connect(url) as a, connect(url) as b:
        for ws in (a, b):
            ws.send(start_msg(reference))
            assert json.loads(ws.recv(timeout=20))["type"] == "ready"
        got, closed = exchange(url, [])
        assert "server is full (2 sessions" in got[-1]["message"] and closed == P.TRY_LATER
    deadline = time.monotonic() + 5
    while json.loads(get(f"http://{server}/healthz")[1])["sessions_active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    got, closed = exchange(url, [start_msg(reference), json.dumps({"type": "end"})])
    assert got[0]["type"] == "ready" and got[-1] == {"type": "done", "frames": 0} and closed == P.NORMAL
    assert "a2k_sessions_refused_total 1" in get(f"http://{server}/metrics")[1]


def test_token_and_origin(pipe, reference):
    with running(pipe, token="s3cret", allow_origins=("https://app.example",), idle_timeout_s=0.5) as addr:
        url = f"ws://{addr}/stream"
        got, closed = exchange(url, [start_msg(reference)], additional_headers={"Authorization": "Bearer nope"})
        assert "a valid token is needed" in got[-1]["message"] and closed == P.POLICY
        got, closed = exchange(url + "?token=s3cret", [start_msg(reference)], origin="https://evil.example")
        assert "Origin https://evil.example is not allowed" in got[-1]["message"] and closed == P.POLICY
        for extra in ({"origin": "https://app.example"}, {"origin": f"http://{addr}"}, {}):
            got, closed = exchange(url, [start_msg(reference)], additional_headers={"Authorization": "Bearer s3cret"},
                                   **extra)  # fmt: skip
            assert got[0]["type"] == "ready"  # then silence: the idle timeout closes it
            assert "--idle-timeout-s" in got[-1]["message"] and closed == P.POLICY
        with pytest.raises(urllib.error.HTTPError, match="401"):
            get(f"http://{addr}/metrics")
        assert get(f"http://{addr}/metrics", {"Authorization": "Bearer s3cret"})[0].startswith("text/plain")


def test_non_loopback_needs_a_token(capsys):
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 2
    assert "--token" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- a2k stream --url


def test_stream_url_writes_the_in_process_keypoints(pipe, reference, server, speech, tmp_path):
    wav = speech[: 3 * RATE]
    audio = tmp_path / "clip.wav"
    write_wav(audio, wav, RATE)
    out, local = tmp_path / "remote.npz", tmp_path / "local.npz"
    assert cli.main(["stream", "--image", str(IMAGE), "--audio", str(audio), "--url", f"ws://{server}/stream",
                     "--keypoints-out", str(out)]) == 0  # fmt: skip
    assert cli.main(["stream", "--image", str(IMAGE), "--audio", str(audio), "--keypoints-out", str(local)]) == 0
    remote_kp, local_kp = load_keypoints(out), load_keypoints(local)
    assert remote_kp.points.shape == local_kp.points.shape == (75, 68, 2)
    assert remote_kp.image_size == local_kp.image_size and remote_kp.fps == 25
    # PCM16 on the wire: a quantisation of the samples, far below a pixel
    np.testing.assert_allclose(remote_kp.points, local_kp.points, atol=0.05)
    with pytest.raises(ServerError, match="cannot connect"):
        stream_audio(f"ws://127.0.0.1:{free_port()}/stream", wav, RATE, reference=reference.points[0], timeout_s=2)


def test_audio_faster_than_allowed_is_throttled(pipe, reference, speech):
    with running(pipe, max_speed=0.5, burst_s=0.2) as addr:
        t0 = time.perf_counter()
        got = stream_audio(f"ws://{addr}/stream", speech[:RATE], RATE, reference=reference.points[0])
        assert time.perf_counter() - t0 >= 1.5  # 1 s of audio at 0.5 x real time after a 0.2 s burst: 1.6 s
        assert len(got["frames"]) == 25
        assert metric(get(f"http://{addr}/metrics")[1], "a2k_throttled_seconds_total") > 0


def test_audio_read_ahead_is_pushed_together_with_the_same_frames(pipe, reference, speech, monkeypatch):
    """A client far ahead of its session's pushes (3 s of audio sent at once in 20 ms messages, as a microphone's
    backlog after a stall): the messages read meanwhile are pushed together (a2k_audio_messages_merged_total), at most
    MERGE_MAX_S seconds at once, and the frames are the in-process ones (to float rounding: another chunking), in
    order, every one of them, then "done"."""
    from a2k_toolkit.serve.inbox import MERGE_MAX_S
    from a2k_toolkit.streaming.session import StreamSession

    wav = speech[: 3 * RATE]
    pushes = []
    real = StreamSession.push

    def noted(self, chunk, sample_rate=None):  # the real push, its chunk sizes noted
        pushes.append(len(chunk))
        return real(self, chunk, sample_rate)

    with running(pipe, max_speed=0) as addr:
        monkeypatch.setattr(StreamSession, "push", noted)  # after the warm-up's push
        _, before = get(f"http://{addr}/metrics")
        with connect(f"ws://{addr}/stream", max_size=None) as ws:
            ws.send(start_msg(reference, format="binary"))
            assert json.loads(ws.recv(timeout=60))["type"] == "ready"
            pcm = to_pcm16(wav)
            for i in range(0, len(pcm), 640):
                ws.send(pcm[i : i + 640])
            ws.send(json.dumps({"type": "end"}))
            frames, done = [], None
            while done is None:
                msg = ws.recv(timeout=60)
                if isinstance(msg, bytes):
                    frames.append(P.read_frame(msg))
                else:
                    done = json.loads(msg)
        _, after = get(f"http://{addr}/metrics")
    monkeypatch.undo()
    assert done == {"type": "done", "frames": 75}
    assert [f[0] for f in frames] == list(range(75))
    np.testing.assert_allclose(np.stack([f[2] for f in frames]), in_process(pipe, reference, wav), atol=1e-3)
    merged = metric(after, "a2k_audio_messages_merged_total") - metric(before, "a2k_audio_messages_merged_total")
    assert merged > 0 and len(pushes) == 3 * 50 - merged
    assert sum(pushes) == len(wav) and max(pushes) <= MERGE_MAX_S * RATE


def wait_idle(addr: str) -> None:
    """Until the server counts no open session (its handler has returned)."""
    deadline = time.monotonic() + 10
    while json.loads(get(f"http://{addr}/healthz")[1])["sessions_active"]:
        assert time.monotonic() < deadline, "a session is still open"
        time.sleep(0.05)


def test_a_session_past_max_session_s_gets_an_error_and_a_clean_close(pipe, reference, speech):
    with running(pipe, max_session_s=1.5) as addr:
        url = f"ws://{addr}/stream"
        # talking in real time for longer than a session may last
        got, frames, t0 = [], 0, time.monotonic()
        with connect(url, max_size=None) as ws:
            ws.send(start_msg(reference, format="binary"))
            assert json.loads(ws.recv(timeout=20))["type"] == "ready"
            pcm = to_pcm16(speech[: 4 * RATE])

            def talk():
                with contextlib.suppress(ConnectionClosed, OSError):
                    for i in range(0, len(pcm), 640):
                        ws.send(pcm[i : i + 640])
                        time.sleep(0.02)

            talker = threading.Thread(target=talk, daemon=True)
            talker.start()
            try:
                while True:
                    msg = ws.recv(timeout=20)
                    if isinstance(msg, bytes):
                        frames += 1
                    else:
                        got.append(json.loads(msg))
            except ConnectionClosed as exc:
                closed = exc.rcvd.code if exc.rcvd else None
            talker.join(5)
        elapsed = time.monotonic() - t0
        assert got and got[-1]["type"] == "error", got
        assert "the session reached --max-session-s (1.5 s)" in got[-1]["message"] and closed == P.POLICY
        assert [m["type"] for m in got] == ["error"] and 1.4 <= elapsed < 8 and frames >= 10, (elapsed, frames)
        # and silent after the start message: the session time ends it, not the (longer) idle timeout
        t0 = time.monotonic()
        got, closed = exchange(url, [start_msg(reference)])
        assert [m["type"] for m in got] == ["ready", "error"] and closed == P.POLICY
        assert "--max-session-s" in got[-1]["message"] and time.monotonic() - t0 < 8
        wait_idle(addr)
        assert metric(get(f"http://{addr}/metrics")[1], "a2k_errors_total") == 2


def test_a_client_that_does_not_read_is_dropped_and_others_are_served(pipe, reference, speech):
    """A client that sends audio but never reads its frames: once its frames back up past --max-queued-frames the
    server sends an error and closes, while another client's session goes on. Small socket buffers on both ends
    (the kernel would otherwise buffer megabytes) make the backlog appear after a few seconds of audio."""
    with running(pipe, max_speed=0, max_queued_frames=10, sndbuf=8192) as addr:
        url = f"ws://{addr}/stream"
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(addr.rsplit(":", 1)[1])))
        # max_queue=1: the client library stops reading the socket once one message waits in its queue
        stuck = connect(url, sock=sock, max_queue=1, max_size=None, ping_interval=None)
        stuck.send(start_msg(reference, format="json"))
        pcm = to_pcm16(np.tile(speech, 3))

        def flood():
            with contextlib.suppress(ConnectionClosed, OSError):
                for i in range(0, len(pcm), 6400):
                    stuck.send(pcm[i : i + 6400])

        other: dict = {}

        def serve_other():  # meanwhile, a client that reads: all its frames at the end (lookahead "full")
            try:
                other.update(stream_audio(url, speech[:RATE], RATE, reference=reference.points[0], lookahead_ms="full"))
            except Exception as exc:  # noqa: BLE001 - reported below
                other["error"] = exc

        threads = [threading.Thread(target=f, daemon=True) for f in (flood, serve_other)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while metric(get(f"http://{addr}/metrics")[1], "a2k_errors_total") < 1:
            assert time.monotonic() < deadline, "the server never gave up on the client that does not read"
            time.sleep(0.05)
        # now read: the frames that were waiting in the buffers, the error, the close
        got = []
        try:
            while True:
                got.append(json.loads(stuck.recv(timeout=10)))
        except ConnectionClosed as exc:
            closed = exc.rcvd.code if exc.rcvd else None
        stuck.close()
        threads[1].join(30)
        assert got[0]["type"] == "ready" and got[-1]["type"] == "error", [m["type"] for m in got[-3:]]
        assert "the client is not reading its keypoint frames" in got[-1]["message"]
        assert "--max-queued-frames 10" in got[-1]["message"] and closed == P.POLICY
        frames = [m["index"] for m in got[1:-1]]
        assert frames == list(range(len(frames))) and len(frames) < len(pcm) / 2 / RATE * 25
        assert "error" not in other, other.get("error")
        assert len(other["frames"]) == 25 and other["done"]["frames"] == 25
        wait_idle(addr)
        assert metric(get(f"http://{addr}/metrics")[1], "a2k_errors_total") == 1


# ------------------------------------------------------------------------------- clients that go away mid-stream


class RawClient:
    """A WebSocket client with no thread of its own (websockets' sans-I/O protocol over a plain socket), so that a
    test can drop the connection at any moment and leave nothing running behind it in the test process."""

    def __init__(self, addr: str, timeout: float = 20.0):
        from websockets.client import ClientProtocol
        from websockets.http11 import Response
        from websockets.uri import parse_uri

        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.proto = ClientProtocol(parse_uri(f"ws://{addr}/stream"), max_size=None)
        self.proto.send_request(self.proto.connect())
        self.events: list = []
        self._flush()
        while not any(isinstance(e, Response) for e in self.events):
            self._read()
        assert self.events.pop(0).status_code == 101

    def _flush(self) -> None:
        for data in self.proto.data_to_send():
            if data:
                self.sock.sendall(data)

    def _read(self) -> None:
        data = self.sock.recv(65536)
        if data:
            self.proto.receive_data(data)
        else:
            self.proto.receive_eof()
        self.events += self.proto.events_received()
        self._flush()  # the protocol's own replies (pong, close)
        if not data and not self.events:
            raise ConnectionError("the server closed the connection")

    def send(self, message: str | bytes) -> None:
        from websockets.protocol import State

        if self.proto.state is not State.OPEN:  # the server has closed it (a refusal came with the handshake)
            return
        if isinstance(message, str):
            self.proto.send_text(message.encode())
        else:
            self.proto.send_binary(message)
        self._flush()

    def recv(self):
        """The next text (as JSON) or binary message."""
        from websockets.frames import Opcode

        while True:
            while not self.events:
                self._read()
            frame = self.events.pop(0)
            if frame.opcode is Opcode.TEXT:
                return json.loads(frame.data)
            if frame.opcode is Opcode.BINARY:
                return bytes(frame.data)
            if frame.opcode is Opcode.CLOSE:
                raise ConnectionError("the server closed the connection")

    def drop(self, how: str) -> None:
        """Go away without ``end``: ``"reset"`` a TCP reset (SO_LINGER 0), ``"eof"`` the TCP connection closed
        without a WebSocket close frame, ``"close"`` a close frame (1001, going away) and the socket closed at once."""
        from websockets.protocol import State

        if how == "reset":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif how == "close":
            if self.proto.state is State.OPEN:  # else the server closed it first (a refusal)
                self.proto.send_close(1001)
                self._flush()
        else:
            assert how == "eof", how
            with contextlib.suppress(OSError):  # the server may have closed it first (a refusal)
                self.sock.shutdown(socket.SHUT_WR)
        self.sock.close()


def uvicorn_load(addr: str) -> tuple[int, int]:
    """The server's open WebSocket connections and running ASGI tasks, as uvicorn counts them."""
    state = SERVERS[addr].server_state
    return len(state.connections), len(state.tasks)


def wait_drained(addr: str) -> None:
    """Until the server has no open session, connection or request task left (a deadline, not a timing: a session
    that left mid-push ends when that push does, which a loaded 2-core machine has taken over 10 s to finish)."""
    deadline = time.monotonic() + 30
    while json.loads(get(f"http://{addr}/healthz")[1])["sessions_active"] or uvicorn_load(addr) != (0, 0):
        assert time.monotonic() < deadline, f"still open: {uvicorn_load(addr)} (connections, tasks)"
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["reset", "eof", "close"])
def test_a_client_that_disconnects_mid_stream_is_cleaned_up_and_others_are_served(pipe, reference, server, speech, how):
    """A client that streams audio, gets frames, then goes away without "end" (a TCP reset, a bare TCP close, a
    WebSocket close frame): its session ends without an error counted, /metrics shows it gone, and the next
    client's session streams the in-process keypoints."""
    _, before = get(f"http://{server}/metrics")
    client = RawClient(server)
    client.send(start_msg(reference, format="binary"))
    assert client.recv()["type"] == "ready"
    pcm = to_pcm16(speech[: 3 * RATE])
    for i in range(0, RATE * 2, 640):  # 1 s of audio in 20 ms messages
        client.send(pcm[i : i + 640])
    assert isinstance(client.recv(), bytes)  # the frames are coming
    client.send(pcm[RATE * 2 :])  # and 2 s more in one message: the server is busy with it when the client goes
    client.drop(how)
    wait_drained(server)
    _, after = get(f"http://{server}/metrics")
    assert metric(after, "a2k_sessions_active") == 0
    assert metric(after, "a2k_sessions_total") == metric(before, "a2k_sessions_total") + 1
    assert metric(after, "a2k_errors_total") == metric(before, "a2k_errors_total")  # going away is no error
    assert metric(after, "a2k_audio_seconds_total") > metric(before, "a2k_audio_seconds_total") + 0.9
    wav = speech[:RATE]
    got = stream_audio(f"ws://{server}/stream", wav, RATE, reference=reference.points[0], fmt="binary")
    np.testing.assert_allclose(np.stack([f[2] for f in got["frames"]]), in_process(pipe, reference, wav), atol=1e-3)
    assert got["done"]["frames"] == 25
    wait_drained(server)


def test_100_rapid_connect_disconnect_cycles_leave_nothing_behind(pipe, reference, speech):
    """100 connections in a row as fast as they come: half go away right after the WebSocket handshake, half right
    after their start message (before or while the server opens the session); each by a TCP reset, a bare TCP close
    or a close frame. Afterwards the server has no session, connection or task left, no more threads than before,
    every connection was counted, none as an error, and a normal session streams."""
    with running(pipe) as addr:
        got = stream_audio(f"ws://{addr}/stream", speech[:RATE], RATE, reference=reference.points[0])
        assert got["done"]["frames"] == 25  # a first session: the worker threads it needs are up
        wait_drained(addr)
        threads = set(threading.enumerate())
        for i in range(100):
            client = RawClient(addr)
            with contextlib.suppress(OSError):  # a refused one may be closed by the server before we are done
                if i % 2:
                    client.send(start_msg(reference))
                client.drop(("reset", "eof", "close")[i % 3])
            client.sock.close()
        wait_drained(addr)
        text = get(f"http://{addr}/metrics")[1]
        assert metric(text, "a2k_sessions_active") == 0
        # every connection was a session or (when the ones before it had not ended yet) refused as over the limit
        assert metric(text, "a2k_sessions_total") + metric(text, "a2k_sessions_refused_total") == 101
        assert metric(text, "a2k_errors_total") == 0
        got = stream_audio(f"ws://{addr}/stream", speech[:RATE], RATE, reference=reference.points[0])
        assert len(got["frames"]) == 25 and got["done"]["frames"] == 25
        wait_drained(addr)
        # new threads: only the worker threads of the pool that runs the sessions' pushes (anyio's, idle ones end
        # after 10 s), at most one per session that may be open at once
        new = [t for t in threading.enumerate() if t not in threads]
        print(f"\n{len(new)} new worker threads; {metric(text, 'a2k_sessions_refused_total'):g} refused")
        assert all(type(t).__name__ == "WorkerThread" for t in new), new
        assert len(new) <= ServeSettings().max_sessions, new
