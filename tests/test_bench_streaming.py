"""The streaming stage of `a2k bench` (benchmarks/suite_streaming.py): its pure accounting of late and dropped
frames, the memory slope and the levels it runs (no timing here: the stage itself is the measurement); and the
start-up line of `a2k serve` that the stage reads its port from."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import a2k_toolkit
from a2k_toolkit.commands.bench import load_suite
from a2k_toolkit.commands.serve import bind, start_line
from a2k_toolkit.errors import InputError

load_suite()  # puts benchmarks/ on sys.path
import suite_streaming as S  # noqa: E402

ROOT = Path(a2k_toolkit.__file__).resolve().parents[1]
FPS = 25.0


def arrivals_for(indices, latency_s, start=100.0):
    """Arrival times of frames ``indices`` that each come ``latency_s`` after their audio's end."""
    return [start + (i + 1) / FPS + lat for i, lat in zip(indices, latency_s)]


def test_on_time_frames_are_neither_late_nor_dropped():
    idx = list(range(10))
    acc = S.frame_accounting(idx, arrivals_for(idx, [0.35] * 10), 100.0, FPS, expected=10, budget_ms=431)
    assert acc["late"] == acc["dropped"] == acc["duplicates"] == acc["out_of_order"] == 0
    np.testing.assert_allclose(acc["latency_ms"], 350.0)


def test_late_is_past_the_budget_and_dropped_is_never_received():
    idx = [0, 1, 2, 4, 5]  # frame 3 and the last two of 8 never come
    lat = [0.30, 0.431, 0.432, 0.9, 0.2]  # 431 ms is on the budget (not late); 432 and 900 are past it
    acc = S.frame_accounting(idx, arrivals_for(idx, lat), 100.0, FPS, expected=8, budget_ms=431)
    assert acc["late"] == 2 and acc["dropped"] == 3
    np.testing.assert_allclose(acc["latency_ms"], [300, 431, 432, 900, 200], atol=1e-6)
    np.testing.assert_allclose(acc["late_at"], [100 + 3 / FPS + 0.432, 100 + 5 / FPS + 0.9])


def test_late_seconds_count_the_moments_not_the_frames():
    # two sessions late in the same second (one stall), one of them again two seconds later
    late_at = [[100.2, 100.5, 100.9], [100.4, 102.1], []]
    assert S.late_seconds(late_at, start=100.0) == 2
    assert S.late_seconds([[], []], start=100.0) == 0


def test_repeats_out_of_range_and_out_of_order_frames_are_counted_apart():
    idx = [0, 2, 1, 2, 7, -1]  # 1 after 2: out of order; 2 again, 7 (of 5 expected) and -1: not frames of it
    acc = S.frame_accounting(idx, arrivals_for(idx, [0.1] * 6), 100.0, FPS, expected=5, budget_ms=431)
    assert acc["duplicates"] == 3 and acc["out_of_order"] == 1
    assert acc["dropped"] == 2 and len(acc["latency_ms"]) == 3  # 3 and 4 missing; 0, 1, 2 counted once


def test_no_frames_at_all():
    acc = S.frame_accounting([], [], 0.0, FPS, expected=4, budget_ms=100)
    assert acc["dropped"] == 4 and acc["late"] == 0 and len(acc["latency_ms"]) == 0


def test_memory_slope_is_per_minute():
    t = np.arange(0, 120.0, 1.0)
    assert S.slope_per_min(list(t), list(500 + 0.05 * t)) == pytest.approx(3.0)  # 0.05 MiB/s
    assert S.slope_per_min(list(t), [512.0] * len(t)) == pytest.approx(0.0, abs=1e-9)
    assert S.slope_per_min([1.0], [5.0]) == 0.0


def test_levels_double_up_to_the_sessions_then_the_soak():
    assert S.levels(8, quick=False) == [1, 2, 4, 8]
    assert S.levels(6, quick=False) == [1, 2, 4, 6]
    assert S.levels(1, quick=False) == [1]
    assert S.levels(8, quick=True) == [8]


def test_the_table_knows_the_streaming_units():
    suite = load_suite()
    for key, unit in (
        ("streaming_latency_p95_ms", "ms"),
        ("streaming_late_frames", "frames"),
        ("streaming_sustained_sessions", "sessions"),
        ("streaming_cpu_per_session_cores", "cores"),
        ("streaming_rss_slope_mib_per_min", "MiB/min"),
        ("streaming_rss_end_mib", "MiB"),
        ("streaming_soak_s", "s"),
    ):
        assert suite.unit_of(key) == unit, key


def test_start_line_names_the_stream_and_the_page():
    assert start_line("127.0.0.1", 8765) == (
        "a2k serve: ws://127.0.0.1:8765/stream, the page at http://127.0.0.1:8765/ (open it in a browser and talk)"
    )
    assert "ws://[::1]:9000/stream" in start_line("::1", 9000) and "http://[::1]:9000/" in start_line("::1", 9000)


def test_a_port_in_use_is_a_user_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=f"127.0.0.1:{port}"):
            bind("127.0.0.1", port)


def test_serve_prints_the_real_port_and_the_page_url():
    """`a2k serve --port 0` binds a free port and names it (and the browser page) in its first line, before the
    models load; the process is stopped once that line is read."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "a2k_toolkit.cli", "serve", "--port", "0", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(30)
    assert line.startswith("a2k serve: ws://127.0.0.1:"), line
    port = int(line.split("ws://127.0.0.1:")[1].split("/")[0])
    assert port > 0 and f"http://127.0.0.1:{port}/" in line


def test_bad_streaming_flags_are_user_errors(capsys):
    from a2k_toolkit.cli import main

    for flag, value in (("--sessions", "0"), ("--soak-s", "0.5"), ("--late-margin-ms", "-1")):
        assert main(["bench", "--only", "streaming", flag, value]) == 2
        assert f"{flag} must be at least" in capsys.readouterr().err


def test_looped_audio_wraps_around_and_stops_at_its_length():
    audio = S.LoopedAudio(b"abcdef", offset=4, nbytes=10)
    assert b"".join(audio.piece(i, 4) for i in range(0, 10, 4)) == b"efabcdefab"
    assert audio.piece(8, 4) == b"ab" and audio.piece(10, 4) == b""
    assert S.LoopedAudio(b"ab", offset=0, nbytes=7).piece(0, 7) == b"abababa"
