"""Running ``a2k serve`` and a headless browser in tests and benchmarks: a free port, Chromium's arguments, and
:func:`serve_process` (a real ``a2k serve`` child process, waited for until it answers, stopped at the end)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

# headless Chromium as the tests run it (Debian's chromium through playwright)
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# ... with a fake microphone, allowed without asking (add --use-file-for-fake-audio-capture=FILE.wav%noloop)
FAKE_MIC_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_process(
    args: Sequence[str], log_path: Path, *, cwd: Path | None = None, env: dict | None = None, timeout_s: float = 180.0
) -> Iterator[tuple[subprocess.Popen, str, float]]:
    """``a2k serve --host 127.0.0.1 --port 0 ARGS`` as a user starts it, in a child process whose output goes to
    ``log_path``; yields ``(process, "127.0.0.1:PORT", seconds until /healthz answered)``, the port read from its
    start-up line. A process that exits or does not answer within ``timeout_s`` raises ``RuntimeError`` with the end
    of its log. The process is terminated (killed if it does not stop) when the block ends."""
    cmd = [sys.executable, "-m", "a2k_toolkit.cli", "serve", "--host", "127.0.0.1", "--port", "0", *args]
    t0 = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        addr = None
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"a2k serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"a2k serve did not start in {timeout_s:g} s:\n{log_path.read_text()[-3000:]}")
            if addr is None:
                m = re.search(r"ws://([\d.]+:\d+)/stream", log_path.read_text())
                addr = m.group(1) if m else None
            if addr is not None:
                with contextlib.suppress(OSError, ValueError):
                    with urllib.request.urlopen(f"http://{addr}/healthz", timeout=2) as r:
                        if json.load(r)["status"] == "ok":
                            break
            time.sleep(0.2)
        yield proc, addr, time.monotonic() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
