"""The ``streaming`` stage of ``a2k bench`` (:mod:`suite`): a real ``a2k serve`` process on 127.0.0.1 and
real-time clients, as many as ``--sessions``, each playing the bundled speech sample (looped, at 48 kHz, PCM16 in
20 ms messages as a browser's microphone sends it) at its real pace for ``--soak-s`` seconds.

What it measures, per level (a number of concurrent sessions):

* **latency** of every frame: its arrival at the client minus the moment its audio's last sample was due from the
  microphone (the real-time schedule: frame ``i``'s audio ends ``(i + 1) / fps`` s after the session's audio began),
  p50 / p95 / p99 / max over every frame of every session. It holds the lookahead the frame waits for, the server's
  compute and queueing and the loopback network; a client that falls behind its own schedule (``send_lag``) adds
  to it, as a microphone's audio would wait;
* **late frames**: latency above the session's announced ``latency_ms`` (ready message) + ``--late-margin-ms``;
  **dropped frames**: frames expected (one per 1 / fps s of audio) that never came (a failed session's too);
* **CPU per session**: the server process's CPU time (user + system, ``/proc``) over the sessions' audio, divided by
  that wall time and the number of sessions (cores per session);
* **memory**: the server's resident set size sampled every second of the level: first, last, largest, and its
  least-squares slope in MiB per minute (flat memory: near 0).

Without ``--quick`` the levels 1, 2, 4, ... below ``--sessions`` run first (``PROBE_S`` each) and the stage reports
the largest level with no late and no dropped frame (``streaming_sustained_sessions``); the soak at ``--sessions``
gives the other figures. See docs/benchmarks.md, "The streaming stage".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from suite_context import REPO, SAMPLES, Context

RATE = 48000  # Hz of the clients' audio, as a browser's microphone usually sends it (the server resamples)
CHUNK_S = 0.02  # seconds of audio per message
LATE_MARGIN_MS = 100.0  # default --late-margin-ms
PROBE_S = 15.0  # seconds of audio per session at each probe level below --sessions
SAMPLE_EVERY_S = 1.0  # the server's RSS and CPU time are read this often
DRAIN_S = 60.0  # frames not in this long after the last audio was due are counted as dropped


# -------------------------------------------------------------------------------------------- pure accounting
def frame_accounting(
    indices: list[int], arrivals: list[float], audio_start: float, fps: float, expected: int, budget_ms: float
) -> dict[str, Any]:
    """One session's frames against the real-time schedule: ``latency_ms`` of each frame received (its arrival
    minus ``audio_start + (index + 1) / fps``, the moment its audio's last sample was due), ``late`` (latency above
    ``budget_ms``), ``dropped`` (of the ``expected`` frames ``0 .. expected - 1``, those never received),
    ``duplicates`` (received again, or an index outside that range) and ``out_of_order`` (an index below one before
    it), ``late_at`` (the arrival of each late frame). Times are seconds of one clock."""
    seen: set[int] = set()
    latency, duplicates, out_of_order, last, late_at = [], 0, 0, -1, []
    for index, arrival in zip(indices, arrivals):
        if index in seen or not 0 <= index < expected:
            duplicates += 1
            continue
        seen.add(index)
        out_of_order += index < last
        last = max(last, index)
        latency.append(1000.0 * (arrival - audio_start - (index + 1) / fps))
        if latency[-1] > budget_ms:
            late_at.append(arrival)
    lat = np.asarray(latency, np.float64)
    return {
        "latency_ms": lat,
        "late": len(late_at),
        "dropped": expected - len(seen),
        "duplicates": duplicates,
        "out_of_order": int(out_of_order),
        "late_at": late_at,
    }


def late_seconds(late_at: list[list[float]], start: float) -> int:
    """How many distinct whole seconds after ``start`` hold a late frame's arrival (``late_at``: each session's)."""
    return len({int((t - start) // 1.0) for times in late_at for t in times})


def slope_per_min(times_s: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` against ``times_s`` (seconds), per minute; 0 for fewer than 2 samples."""
    t, v = np.asarray(times_s, np.float64), np.asarray(values, np.float64)
    if len(t) < 2 or np.ptp(t) == 0:
        return 0.0
    return float(np.polyfit(t, v, 1)[0] * 60.0)


def levels(sessions: int, quick: bool) -> list[int]:
    """The session counts to run, in order: 1, 2, 4, ... below ``sessions``, then ``sessions`` (only it with
    ``quick``)."""
    probes = [] if quick else [2**k for k in range(int(math.log2(sessions)) + 1) if 2**k < sessions]
    return probes + [sessions]


# ------------------------------------------------------------------------------------------------ the server
def proc_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the server's inference processes; Linux ``/proc``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            pass
    return out


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` and its descendants alive now (Linux ``/proc``; ``None``
    elsewhere)."""
    total = None
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total = (total or 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            continue
    return total


def proc_rss_mib(pid: int) -> float | None:
    """Resident set size of process ``pid`` and its descendants in MiB (Linux ``/proc``; ``None`` elsewhere)."""
    total = None
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total = (total or 0.0) + int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError, IndexError):
            continue
    return total


@contextlib.contextmanager
def serve_process(work: Path, sessions: int, device: str, timeout_s: float = 180.0):
    """``a2k serve`` as a user starts it (``--port 0``: the port is read from its start-up line), in a fresh
    process; yields ``(process, "127.0.0.1:PORT", seconds until /healthz answered)``."""
    from a2k_toolkit.testing import serve_process as serving

    args = ["--max-sessions", str(sessions), "--device", device, "--log-level", "warning"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with serving(args, work / "serve.log", cwd=work, env=env, timeout_s=timeout_s) as started:
        yield started


# ------------------------------------------------------------------------------------------------ the clients
@dataclass
class LoopedAudio:
    """``nbytes`` bytes of PCM16 audio: ``loop`` (bytes) repeated, from byte ``offset`` of it on."""

    loop: bytes
    offset: int
    nbytes: int

    def piece(self, start: int, size: int) -> bytes:
        """Bytes ``start .. start + size`` of the audio (fewer at its end)."""
        size = max(0, min(size, self.nbytes - start))
        pos = (self.offset + start) % len(self.loop)
        out = self.loop[pos : pos + size]
        while len(out) < size:
            out += self.loop[: size - len(out)]
        return out


@dataclass
class Session:
    """One client's connection and what it saw."""

    ws: Any
    ready: dict
    audio: LoopedAudio
    ready_s: float
    indices: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    send_lag_s: list[float] = field(default_factory=list)
    done: dict | None = None
    error: str | None = None
    failed_at: float | None = None  # loop time of the failure

    def fail(self, message: str) -> None:
        if self.error is None:
            self.error, self.failed_at = message, asyncio.get_running_loop().time()


async def open_session(url: str, image: bytes, audio: LoopedAudio) -> Session:
    """Connect, send the start message (the bundled photo: the server finds its face), wait for ``ready``."""
    from websockets.asyncio.client import connect

    from a2k_toolkit.serve.client import start_message

    t0 = time.monotonic()
    # no keepalive pings: an overloaded server then shows as late frames, not as a client giving up on it
    ws = await connect(url, max_size=None, open_timeout=60, ping_interval=None)
    await ws.send(json.dumps(start_message(RATE, "binary", image=image)))
    ready = json.loads(await asyncio.wait_for(ws.recv(), 60))
    if ready.get("type") != "ready":
        await ws.close()
        raise RuntimeError(f"the server refused a session: {ready.get('message', ready)}")
    return Session(ws, ready, audio, time.monotonic() - t0)


async def play(s: Session, begin: float) -> None:
    """Send ``s.audio`` at real-time pace from ``begin`` (loop time): message ``j`` when its last sample is due,
    ``begin + (j + 1) * CHUNK_S``, then ``end``; meanwhile read the frames (index and arrival) until ``done``."""
    from websockets.exceptions import ConnectionClosed

    from a2k_toolkit.serve.protocol import FRAME_HEADER

    loop = asyncio.get_running_loop()
    step = 2 * int(round(RATE * CHUNK_S))

    async def send() -> None:
        for j, i in enumerate(range(0, s.audio.nbytes, step)):
            piece = s.audio.piece(i, step)
            due = begin + (j + 1) * CHUNK_S
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            s.send_lag_s.append(loop.time() - due)
            await s.ws.send(piece)
        await s.ws.send(json.dumps({"type": "end"}))

    sender = asyncio.create_task(send())
    try:
        async for msg in s.ws:
            now = loop.time()
            if isinstance(msg, bytes):
                s.indices.append(FRAME_HEADER.unpack_from(msg)[0])
                s.arrivals.append(now)
                continue
            body = json.loads(msg)
            if body["type"] == "done":
                s.done = body
            elif body["type"] == "error":
                s.fail(body["message"])
        await sender
    except ConnectionClosed as exc:
        s.fail(f"connection closed: {exc}")
    except Exception as exc:  # noqa: BLE001 - one failed session is counted, the others go on
        s.fail(f"{type(exc).__name__}: {exc}")
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        await s.ws.close()


async def play_until(s: Session, begin: float, deadline: float) -> None:
    """:func:`play`, given up at ``deadline`` (loop time): the frames not in by then count as dropped."""
    try:
        await asyncio.wait_for(play(s, begin), max(0.0, deadline - asyncio.get_running_loop().time()))
    except TimeoutError:
        s.fail(f"no 'done' within {DRAIN_S:g} s of the audio's end")


def session_audio(seconds: float, n: int) -> list[LoopedAudio]:
    """``n`` clients' PCM16 audio of ``seconds`` each at :data:`RATE`: the speech sample looped, each client
    starting 1.3 s further into it than the one before."""
    from a2k_toolkit.io import load_audio
    from a2k_toolkit.serve.client import to_pcm16

    loop = to_pcm16(load_audio(SAMPLES / "speech.wav", RATE))
    nbytes = 2 * int(round(seconds * RATE))
    return [LoopedAudio(loop, 2 * int(k * 1.3 * RATE) % len(loop), nbytes) for k in range(n)]


async def run_level(url: str, pid: int, n: int, seconds: float) -> dict[str, Any]:
    """``n`` real-time sessions of ``seconds`` of audio each, their message phases spread over one frame (as
    independent microphones are); the sessions, the server's CPU time over their audio and its RSS every second."""
    image = (SAMPLES / "astronaut.jpg").read_bytes()
    sessions = await asyncio.gather(*(open_session(url, image, a) for a in session_audio(seconds, n)))
    loop = asyncio.get_running_loop()
    fps = float(sessions[0].ready["fps"])
    begin = loop.time() + 0.5
    starts = [begin + k / (n * fps) for k in range(n)]
    end = starts[-1] + seconds  # the last sample of every session is due by then
    samples: list[tuple[float, float | None]] = []
    await asyncio.sleep(max(0.0, begin - loop.time()))
    cpu0, client0, t0 = proc_cpu_s(pid), time.process_time(), loop.time()
    plays = asyncio.ensure_future(asyncio.gather(*(play_until(s, t, end + DRAIN_S) for s, t in zip(sessions, starts))))
    # the server's RSS every second and its CPU time at the end of the audio (or sooner, if every session is over)
    while loop.time() < end and not plays.done():
        samples.append((loop.time() - begin, proc_rss_mib(pid)))
        await asyncio.wait([plays], timeout=min(SAMPLE_EVERY_S, max(0.0, end - loop.time())))
    cpu1, client1, t1 = proc_cpu_s(pid), time.process_time(), loop.time()
    await plays
    wall = t1 - t0
    return {
        "sessions": sessions,
        "starts": starts,
        "fps": fps,
        "server_cpu_cores": None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / wall,
        "client_cpu_cores": (client1 - client0) / wall,
        "rss": [(t, m) for t, m in samples if m is not None],
    }


# -------------------------------------------------------------------------------------------------- figures
def level_figures(level: dict[str, Any], seconds: float, margin_ms: float) -> dict[str, float]:
    """The figures of one level (keys without the stage's prefix)."""
    fps, sessions = level["fps"], level["sessions"]
    expected = int(round(seconds * fps))
    budget = float(sessions[0].ready["latency_ms"]) + margin_ms
    acc = [frame_accounting(s.indices, s.arrivals, t, fps, expected, budget) for s, t in zip(sessions, level["starts"])]
    lat = np.concatenate([a["latency_ms"] for a in acc]) if acc else np.zeros(0)
    lag = np.concatenate([np.asarray(s.send_lag_s) for s in sessions]) * 1000.0
    out = {
        "sessions": float(len(sessions)),
        "frames": float(expected * len(sessions)),
        "late_frames": float(sum(a["late"] for a in acc)),
        # the whole seconds of the run (from its first session's start) with a late frame in any session: a few
        # stalls of the machine show as few seconds with many late frames, an overload as many seconds
        "late_seconds": float(late_seconds([a["late_at"] for a in acc], min(level["starts"], default=0.0))),
        "dropped_frames": float(sum(a["dropped"] for a in acc)),
        "misordered_frames": float(sum(a["duplicates"] + a["out_of_order"] for a in acc)),
        "failed_sessions": float(sum(s.error is not None or s.done is None for s in sessions)),
        "lookahead_ms": float(sessions[0].ready["lookahead_ms"]),
        "announced_latency_ms": float(sessions[0].ready["latency_ms"]),
        "late_budget_ms": budget,
        "ready_max_s": max(s.ready_s for s in sessions),
        "send_lag_p99_ms": float(np.percentile(lag, 99)) if len(lag) else 0.0,
        "client_cpu_cores": level["client_cpu_cores"],
    }
    if len(lat):
        for q in (50, 95, 99):
            out[f"latency_p{q}_ms"] = float(np.percentile(lat, q))
        out["latency_max_ms"] = float(lat.max())
    if level["server_cpu_cores"] is not None:
        out["server_cpu_cores"] = level["server_cpu_cores"]
        out["cpu_per_session_cores"] = level["server_cpu_cores"] / len(sessions)
    if level["rss"]:
        t, rss = zip(*level["rss"])
        out.update(rss_start_mib=rss[0], rss_end_mib=rss[-1], rss_max_mib=max(rss))
        out["rss_slope_mib_per_min"] = slope_per_min(list(t), list(rss))
    failed = [(s.failed_at - t, s.error) for s, t in zip(sessions, level["starts"]) if s.error]
    if failed:
        out["first_failure_s"] = min(t for t, _ in failed)  # seconds into its audio
        print(
            f"bench: streaming: {len(failed)} session(s) failed, the first {out['first_failure_s']:.1f} s into "
            f"its audio: {min(failed)[1]}",
            file=sys.stderr,
            flush=True,
        )
    return out


def stage_streaming(ctx: Context) -> dict[str, float]:
    """``a2k serve`` with real-time clients: latency from a sample's due time to its frame's arrival
    (p50/p95/p99/max), late and dropped frames, CPU per session, the server's memory over the soak; without --quick
    first the levels 1, 2, 4, ... below ``--sessions``. ``streaming_sustained_sessions``: the largest level that,
    with every level before it, had no late or dropped frame and no failed session (0: none)."""
    n = ctx.sessions or (2 if ctx.quick else 8)
    soak = ctx.soak_s or (15.0 if ctx.quick else 60.0)
    soak = max(1, round(soak / (2 * CHUNK_S))) * 2 * CHUNK_S  # whole frames of whole messages
    margin = LATE_MARGIN_MS if ctx.late_margin_ms is None else ctx.late_margin_ms
    out: dict[str, float] = {}
    sustained, chain = 0, True
    with serve_process(ctx.work, n, ctx.device) as (proc, addr, start_s):
        out["streaming_server_start_s"] = start_s
        for level in levels(n, ctx.quick):
            if not chain and level < n:
                continue  # a level below already failed: on to the soak
            seconds = soak if level == n else PROBE_S
            print(f"bench: streaming: {level} session(s), {seconds:g} s", file=sys.stderr, flush=True)
            got = asyncio.run(run_level(f"ws://{addr}/stream", proc.pid, level, seconds))
            fig = level_figures(got, seconds, margin)
            chain = chain and fig["late_frames"] == 0 and fig["dropped_frames"] == 0 and fig["failed_sessions"] == 0
            sustained = level if chain else sustained
            if level == n:
                out.update({f"streaming_{k}": v for k, v in fig.items()})
            else:
                keep = ("latency_p95_ms", "late_frames", "dropped_frames", "cpu_per_session_cores")
                out.update({f"streaming_probe{level}_{k}": fig[k] for k in keep if k in fig})
    out.update(streaming_soak_s=soak, streaming_late_margin_ms=margin, streaming_sustained_sessions=float(sustained))
    return out
