"""Work functions for tests/test_workpool.py. Worker processes are spawned, so these live in a module they can
import (the test adds this folder to ``sys.path``, which spawn hands on to the children)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from a2k_toolkit import workpool

_STATE: dict = {}


def init(tag: str) -> None:
    _STATE["tag"] = tag
    _STATE["inits"] = _STATE.get("inits", 0) + 1


def job(item: tuple[int, int]) -> dict:
    """``item`` is ``(value, attempt)``: 3 kills its worker (as a segfault would), 5 raises, the rest sleep a little
    and report who ran them."""
    value, attempt = item
    if value == 3:
        os._exit(139)
    if value == 5:
        raise ValueError(f"bad value {value}")
    time.sleep(0.2)
    return {
        "value": value,
        "attempt": attempt,
        "pid": os.getpid(),
        "index": workpool.worker_index(),
        "tag": _STATE.get("tag"),
        "inits": _STATE.get("inits"),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "torch_loaded": "torch" in sys.modules,
    }


def next_attempt(item: tuple[int, int]) -> tuple[int, int]:
    return item[0], item[1] + 1


def crash_always(item: int) -> int:
    os._exit(1)


def unpicklable(item: int):
    return lambda: item  # a result that cannot be sent back to the parent


def sleeper(item: tuple[str, float]) -> str:
    """Write this worker's pid to ``<folder>/<pid>.pid``, then sleep; ``item`` is ``(folder, seconds)``."""
    folder, seconds = item
    Path(folder, f"{os.getpid()}.pid").write_text(str(os.getpid()))
    time.sleep(seconds)
    return folder


def quick_or_slow(item: tuple[str, int]) -> int:
    """Item ``(folder, n)``: 0 and 1 return at once, the others write their pid and sleep for two minutes (unless
    ``A2K_TEST_QUICK`` is set)."""
    folder, n = item
    if n >= 2 and not os.environ.get("A2K_TEST_QUICK"):
        Path(folder, f"{os.getpid()}.pid").write_text(str(os.getpid()))
        time.sleep(120)
    return n
