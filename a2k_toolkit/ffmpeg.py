"""The ffmpeg binary shipped by imageio-ffmpeg, run as a child process that cannot outlive this one.

ffmpeg is always called with argument lists, never shell strings. :func:`child_argv` prefixes a command with
``setpriv --pdeathsig KILL`` where that exists, so the kernel kills the child when its parent dies, even by SIGKILL.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

from .errors import A2KError


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped by imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.lru_cache(maxsize=1)
def _pdeathsig_prefix() -> tuple[str, ...]:
    if not sys.platform.startswith("linux") or os.environ.get("A2K_NO_PDEATHSIG"):
        return ()
    import shutil

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ()
    try:  # util-linux >= 2.33 has --pdeathsig
        ok = subprocess.run([setpriv, "--pdeathsig", "KILL", "--", "true"], capture_output=True, timeout=10).returncode
    except (OSError, subprocess.SubprocessError):
        return ()
    return (setpriv, "--pdeathsig", "KILL", "--") if ok == 0 else ()


def child_argv(argv: list[str]) -> list[str]:
    """``argv`` for a helper process (ffmpeg) that must not outlive this one.

    On Linux the command runs under ``setpriv --pdeathsig KILL``: the kernel kills it when the thread that started
    it dies, even by SIGKILL, so an encoder never keeps writing for a killed run. That needs no ``preexec_fn``
    (which is unsafe in a process with threads, as torch's are). Where ``setpriv`` is missing (or
    ``A2K_NO_PDEATHSIG`` is set) the command runs as is; the callers still kill it on every error and on SIGTERM.
    Start and wait for the child in the same thread (the signal follows the thread, not the process)."""
    return [*_pdeathsig_prefix(), *argv]


def run_ffmpeg(args: list[str], *, input: bytes | None = None, what: str = "ffmpeg") -> bytes:
    """Run ffmpeg with an argument list (never a shell string); raise :class:`A2KError` with its last error lines."""
    proc = subprocess.run(
        child_argv([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *args]),
        input=input,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise A2KError(f"{what} failed: {' | '.join(tail) or f'ffmpeg exited with code {proc.returncode}'}")
    return proc.stdout
