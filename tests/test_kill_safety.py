"""Kills in real processes: `a2k generate` killed while encoding keeps the previous outputs as a pair, leaves no
orphaned ffmpeg, and the next run removes what a SIGKILL left behind (Linux: /proc, real signals)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from a2k_toolkit import io

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and Linux signals")

SAMPLES = Path(__file__).resolve().parents[1] / "a2k_toolkit" / "samples"


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for_child(proc: subprocess.Popen, needle: str, timeout: float = 120.0) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for c in children(proc.pid):
            line = cmdline(c)
            if needle in line and "setpriv" not in line:  # exec'd: ffmpeg itself runs
                return c
        if proc.poll() is not None:
            raise AssertionError(f"the process ended before starting {needle!r}: {proc.stderr.read()}")
        time.sleep(0.005)
    raise AssertionError(f"no child process running {needle!r} after {timeout} s")


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def kill_if_alive(pid: int) -> None:
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def test_ffmpeg_dies_with_its_parent_on_sigkill(tmp_path):
    # an ffmpeg job that would run for 10 minutes in real time; its parent is SIGKILLed (no Python cleanup runs)
    code = (
        "from a2k_toolkit import io; "
        "io.run_ffmpeg(['-nostats', '-re', '-f', 'lavfi', '-i', 'sine=d=600', '-f', 'null', '-'])"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ffmpeg = wait_for_child(parent, "sine=d=600")
    try:
        parent.kill()
        parent.wait()
        assert wait_gone(ffmpeg), "ffmpeg outlived its SIGKILLed parent"
    finally:
        kill_if_alive(ffmpeg)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path, tmp: Path) -> list[str]:
    return sorted([p.name for p in folder.glob(".*.a2k-*")] + [p.name for p in tmp.glob("a2k-video-*")])


def test_killed_generate_keeps_the_previous_pair_and_the_next_run_cleans_up(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"renderer": {"name": "sketch", "params": {"size": 128}}}))
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    image = SAMPLES / "astronaut.jpg"
    short = tmp_path / "short.wav"  # different speech: a finished run would change both files
    speech = io.load_audio(SAMPLES / "speech.wav", 16000)[: 16000 * 6]
    io.write_wav(short, speech, 16000)
    long = tmp_path / "long.wav"  # 48 s: the killed runs are still encoding when the signal lands, even under load
    io.write_wav(long, np.tile(speech, 8), 16000)

    def generate(audio: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "a2k_toolkit.cli",
                "generate",
                "--image",
                str(image),
                "--audio",
                str(audio),
                "--config",
                str(cfg),
                "--keypoints-out",
                str(out / "kp.npy"),
                "--video-out",
                str(out / "out.mp4"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )

    first = generate(SAMPLES / "speech.wav")
    assert first.wait() == 0, first.stderr.read()
    before = {p: sha(out / p) for p in ("kp.npy", "out.mp4")}

    # SIGTERM while encoding: handled like Ctrl-C, so everything is cleaned up at once
    run = generate(long)
    ffmpeg = wait_for_child(run, "rawvideo")
    run.send_signal(signal.SIGTERM)
    try:
        assert run.wait(timeout=60) == 128 + signal.SIGTERM
        assert "Traceback" not in run.stderr.read()
        assert wait_gone(ffmpeg)
    finally:
        kill_if_alive(ffmpeg)
    assert {p: sha(out / p) for p in before} == before and leftovers(out, tmp) == []

    # SIGKILL while encoding: no cleanup can run; the pair stays as it was, the encoder dies, temporaries remain
    run = generate(long)
    ffmpeg = wait_for_child(run, "rawvideo")
    run.kill()
    run.wait()
    try:
        assert wait_gone(ffmpeg)
    finally:
        kill_if_alive(ffmpeg)
    assert {p: sha(out / p) for p in before} == before
    stale = leftovers(out, tmp)
    assert any(n.startswith(".kp.") for n in stale) and any(n.startswith(".out.") for n in stale)
    assert any(n.startswith("a2k-video-") for n in stale), stale
    assert all(f"a2k-{run.pid}." in n or f"a2k-video-{run.pid}-" in n for n in stale), stale

    # the next run replaces both files together and removes the killed run's temporaries
    last = generate(short)
    assert last.wait() == 0, last.stderr.read()
    after = {p: sha(out / p) for p in before}
    assert after["kp.npy"] != before["kp.npy"] and after["out.mp4"] != before["out.mp4"]
    assert leftovers(out, tmp) == []
