"""Process settings for CPU work that must be in place before torch (and its OpenMP runtime) is loaded.

``a2k train`` applies :data:`TRAIN_ENV_DEFAULTS` to its own environment before it imports torch, each only where the
variable is not already set, so a user's own setting always wins:

* ``OMP_WAIT_POLICY=PASSIVE``: an OpenMP thread that finishes its share of an operation sleeps instead of
  spinning while it waits for the others. With the default (spin for a while), a training process whose threads share
  cores with other busy processes burns the CPU time those processes need and waits for its own descheduled threads:
  measured on a shared 2-core machine, one paper-width training step took 4-11 s with spinning and 1.2-2.9 s with
  ``PASSIVE`` (docs/training.md, "Performance"). On a machine the run has to itself the difference is small; set
  ``OMP_WAIT_POLICY=ACTIVE`` to keep spinning there.

This module imports nothing heavy, so the command can call it first.
"""

from __future__ import annotations

import os
import threading
from collections.abc import MutableMapping

TRAIN_ENV_DEFAULTS: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}


def apply_env_defaults(defaults: dict[str, str], environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set each variable of ``defaults`` that ``environ`` (default: this process's environment) does not set yet;
    return the ones set. In this process they take effect only if torch has not been imported yet."""
    env = os.environ if environ is None else environ
    applied = {k: v for k, v in defaults.items() if k not in env}
    env.update(applied)
    return applied


def runnable_threads(loadavg_text: str | None = None) -> int | None:
    """The number of runnable threads on this machine right now, this one included (the fourth field of
    ``/proc/loadavg``, ``running/total``); ``None`` where the kernel does not report it (not Linux)."""
    if loadavg_text is None:
        try:
            with open("/proc/loadavg", encoding="ascii") as f:
                loadavg_text = f.read()
        except OSError:
            return None
    try:
        return int(loadavg_text.split()[3].split("/")[0])
    except (IndexError, ValueError):
        return None


def own_runnable_threads() -> int | None:
    """How many of this process's threads are runnable right now (state ``R`` in ``/proc/self/task/*/stat``), the
    caller's included; ``None`` where the kernel does not report it."""
    import glob

    count, seen = 0, False
    for stat in glob.glob("/proc/self/task/*/stat"):
        try:
            with open(stat, encoding="ascii", errors="replace") as f:
                text = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        seen = True
        count += text[text.rfind(")") + 2 :].startswith("R")  # the state follows "(comm) "
    return count if seen else None


def cpu_is_shared(runnable: int | None = None, own: int | None = None) -> bool:
    """Whether other work is running on the CPU now: a runnable thread of another process (unknown: True). This
    process's own runnable threads (e.g. OpenMP threads still spinning after the last operation) do not count.

    Inference on a CPU uses this to choose between intra-op threads (fastest on an idle machine) and independent worker
    threads of one intra-op thread each (no barrier inside each layer, so a thread descheduled by another process does
    not stall the rest: 2.4x faster on a loaded 2-core machine, 10-25 % slower on an idle one)."""
    if runnable is None:
        runnable = runnable_threads()
        own = own_runnable_threads()
    if runnable is None:
        return True
    return runnable - max(1, own or 0) > 0


_thread_state = threading.local()


def match_torch_threads() -> None:
    """Give the calling thread the process's torch intra-op thread count (``torch.get_num_threads()``), once per
    thread. ``torch.set_num_threads`` sets OpenMP's and MKL's counts for the thread that calls it; a thread started
    elsewhere (a server's worker threads, a user's) keeps their default, every core, and an operation that reaches
    OpenMP or MKL without torch setting it first runs there with as many threads, whose waits spin: measured on the
    2-core machine, a stream's pushes from a thread of their own, after ``torch.set_num_threads(1)`` in the main
    thread, cost 3x the CPU time of the same pushes with OpenMP held to one thread (``OMP_NUM_THREADS=1``): 190
    against 62 ms a second of audio. Cheap after the first call in a thread."""
    if getattr(_thread_state, "matched", False):
        return
    import torch

    torch.set_num_threads(torch.get_num_threads())
    _thread_state.matched = True


def freeze_heap() -> None:
    """Collect what is garbage now, then move every object left to the collector's permanent generation
    (``gc.freeze``), so that later full collections scan only what was made since. A process with torch and a
    pipeline loaded holds about 280,000 objects the cycle collector tracks, and one full collection of them took
    about 125 ms on the 2-core machine, holding the GIL: a server's sessions all stop for that long each time one runs.
    Call it once what stays for the process's life is loaded (a server after its warm-up; its inference process after
    each network it is sent); objects frozen are still freed when their last reference goes, only cycles among them
    are never collected."""
    import gc

    gc.collect()
    gc.freeze()
