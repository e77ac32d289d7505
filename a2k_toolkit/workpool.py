"""Crash-tolerant work in worker processes, and the journal that makes it resumable.

The dataset builder (one item per video) and batch dubbing (one item per manifest row) both run their items with
:func:`run_pool` and record each finished item in a :class:`Journal`, so a run killed at any moment resumes where it
stopped:

* **Failures stay with their item.** The work function's result, or the exception it raised, comes back as that
  item's :class:`Outcome`; the other items go on.
* **A worker that dies** (a crash in native code, the OOM killer, a kill) breaks the pool, and every item in flight
  with it. Those items are rerun one at a time, each alone in a fresh one-worker pool, so only an item that kills its
  worker while alone is reported (``Outcome.crashed``); then the others go on in a fresh pool.
* **Workers die with the parent**, even when it is SIGKILLed (``PR_SET_PDEATHSIG`` on Linux, and a thread that
  watches the parent elsewhere), so no orphan keeps writing outputs. When the caller stops early -- an exception,
  Ctrl-C, SIGTERM (which the CLI raises like Ctrl-C), or closing the generator -- the workers are terminated at once.
* **A fair share of the CPU**: each worker's math libraries (OpenMP, BLAS, OpenCV, torch) get ``cores / workers``
  threads. :func:`worker_index` numbers the workers of a pool (0, 1, ...), e.g. to spread them over GPUs.
* **The journal** (:class:`Journal`) is append-only JSON lines, the latest record of a key winning. Each append is
  one ``write`` of whole lines, flushed and fsynced; a line torn by a kill is ignored when reading and the next append
  starts on a fresh line.

Items and work functions must be picklable (workers are started with ``spawn``); the work function and the
initializer must be module-level functions. This module imports nothing from the toolkit.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_WORKER_INDEX: int | None = None


@dataclass
class Outcome(Generic[T]):
    """What became of one item: ``result`` (what the work function returned), ``error`` (what it raised, or what
    stopped its result from coming back), or ``crashed`` (its worker process died while it ran alone)."""

    item: T
    result: Any = None
    error: BaseException | None = None
    crashed: bool = False
    runs: int = 1  # times the item was started in this call (a rerun after a crash counts)


def worker_threads(workers: int) -> int:
    """Threads per worker so that ``workers`` of them share the cores: ``cores // workers``, at least 1."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def worker_index() -> int | None:
    """In a worker of :func:`run_pool`: its number in its pool (0, 1, ...); elsewhere ``None``."""
    return _WORKER_INDEX


def run_pool(
    fn: Callable[[T], Any],
    items: Iterable[T],
    *,
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    inflight: int | None = None,
    rerun: Callable[[T], T] | None = None,
) -> Iterator[Outcome[T]]:
    """Run ``fn(item)`` for every item in ``workers`` spawned processes; yield an :class:`Outcome` per item as it
    finishes (in any order), exactly once per item.

    ``initializer(*initargs)`` runs once in each worker before its first item (build the model there).
    ``inflight`` items are handed out at a time (default ``workers``; more keeps workers busy while the parent
    records results). ``rerun(item)`` gives the item to run again after a crash (e.g. with its attempt counted); it
    must return a new item rather than change the one it is given.
    """
    workers = max(1, int(workers))
    limit = max(1, inflight or workers)
    threads = worker_threads(workers)
    queue: deque[tuple[T, int]] = deque((item, 0) for item in items)
    suspects: deque[tuple[T, int]] = deque()
    while queue or suspects:
        alone = bool(suspects)
        pending = deque([suspects.popleft()]) if alone else queue
        pool = _start(1 if alone else workers, threads, initializer, initargs)
        finished = False
        try:
            yield from _drain(pool, fn, pending, 1 if alone else limit, alone, suspects, rerun)
            if alone and pending:  # the fresh pool broke before the item could be handed to it
                item, runs = pending.popleft()
                yield Outcome(item, crashed=True, runs=runs)
            finished = True
        finally:
            _close(pool, graceful=finished)


def _drain(pool, fn, pending: deque, limit: int, alone: bool, suspects: deque, rerun) -> Iterator[Outcome]:
    """Hand out ``pending`` to ``pool`` (``limit`` at a time) until it is empty or the pool breaks; then collect
    every item in flight. Items in flight when the pool broke go to ``suspects`` (or crash, when ``alone``)."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    running: dict[Any, tuple[Any, int]] = {}
    broken = False
    while running or (pending and not broken):
        while pending and not broken and len(running) < limit:
            item, runs = pending[0]
            task = rerun(item) if runs and rerun is not None else item
            try:
                future = pool.submit(fn, task)
            except BrokenProcessPool:  # a worker died since the last result: this item never started
                broken = True
                break
            pending.popleft()
            running[future] = (task, runs + 1)
        if not running:
            break
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            item, runs = running.pop(future)
            try:
                result = future.result()
            except BrokenProcessPool:
                broken = True
                if alone:
                    yield Outcome(item, crashed=True, runs=runs)
                else:
                    suspects.append((item, runs))
                continue
            except Exception as exc:  # noqa: BLE001 - raised by fn in the worker, or its result did not unpickle
                yield Outcome(item, error=exc, runs=runs)
                continue
            yield Outcome(item, result=result, runs=runs)


def _start(workers: int, threads: int, initializer, initargs: tuple):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    return ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_bootstrap, initargs=(threads, counter, initializer, initargs)
    )


def _close(pool, *, graceful: bool) -> None:
    """Shut ``pool`` down: wait for its workers to exit (all work is collected), or, when the caller stopped early,
    terminate them now (their results would not be recorded anyway)."""
    if graceful:
        pool.shutdown(wait=True)
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + 5.0
    for proc in processes:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)


# ------------------------------------------------------------------------------------------------ worker side


def _bootstrap(threads: int, counter, initializer, initargs: tuple) -> None:
    """Every worker's initializer: die with the parent, take a fair share of threads, learn its index, then run
    the user's initializer."""
    global _WORKER_INDEX
    die_with_parent()
    for var in THREAD_ENV:
        os.environ.setdefault(var, str(threads))
    with counter.get_lock():
        _WORKER_INDEX = counter.value
        counter.value += 1
    if initializer is not None:
        initializer(*initargs)
    limit_threads(threads)


def limit_threads(threads: int) -> None:
    """Cap OpenCV's threads and, when torch is loaded (it is heavy: never imported here), torch's."""
    try:
        import cv2
    except ImportError:  # pragma: no cover - opencv is a core dependency
        pass
    else:
        cv2.setNumThreads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def die_with_parent() -> None:
    """Make this process exit when its parent dies (SIGKILL included), so no orphan keeps writing outputs."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True, name="a2k-parent-watch").start()


# ---------------------------------------------------------------------------------------------------- journal


class Journal:
    """Append-only JSON lines, one record per finished item; the latest record of a ``key`` wins.

    Each append is one ``write`` of whole lines, flushed and fsynced. A line cut short by a kill (no newline, or not
    JSON) is ignored when reading, and the next append starts on a fresh line, so the journal survives SIGKILL at
    any moment. Records are written with sorted keys unless ``sort_keys=False`` (then in their own order).
    """

    def __init__(self, path: str | Path, key: str, *, sort_keys: bool = True):
        self.path = Path(path)
        self.key = key
        self.sort_keys = sort_keys

    def read(self) -> dict[str, dict[str, Any]]:
        """``{key: latest record}``; records without a string ``key`` are ignored."""
        latest: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return latest
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    continue  # torn last line
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get(self.key), str):
                    latest[rec[self.key]] = rec
        return latest

    def append(self, record: dict[str, Any]) -> None:
        self.append_many([record])

    def append_many(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = (json.dumps(r, sort_keys=self.sort_keys, default=str) + "\n" for r in records)
        data = "".join(lines).encode("utf-8")
        with open(self.path, "a+b") as f:
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    data = b"\n" + data
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
