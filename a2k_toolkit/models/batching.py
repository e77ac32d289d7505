"""One forward pass for the windows that several streams have due at the same time (``a2k serve``'s sessions).

A streaming session runs one window of the generator at a time (docs/streaming.md: one every ``hop`` frames), and a
window alone pays the network's per-call overhead in full: the shipped ensemble is 4 networks of many small layers,
whose Python and dispatch, not their arithmetic, dominate a batch of one. A :class:`WindowBatcher` gathers the
windows that the threads *inside* it (:meth:`WindowBatcher.caller`, one per session push) submit, runs them as one
batch on its own worker thread and hands each caller its rows back:

* **when**: as soon as every caller inside the batcher is waiting on it (nobody else can add a window), when the
  batch reaches ``max_batch`` windows, or ``max_wait_s`` after the first window came, whichever is first. An idle
  server therefore runs a window at once; a busy one, whose pushes queue up, runs larger batches, which cost less a
  window (the load buys its own efficiency);
* **what**: windows of one network go together (a request for another waits for the next batch); each window's
  output is computed on that window only (the network normalises per window), so a caller gets the rows it would get
  alone, to float rounding (the convolutions of another batch size, or of the stacked form, may sum in another
  order);
* **how**: the network's inference form (:func:`~a2k_toolkit.models.inference.fuse_for_inference`) traced with
  :func:`torch.jit.trace` once per network and window shape (``trace=True``): the traced graph runs without Python
  between the layers (measured on the 2-core machine, shipped ensemble: 7.8 ms for one window against 12-20 ms
  eager, 15-17 ms for 4). An ensemble of members of one architecture (the shipped model) also gets its stacked form
  (:mod:`~a2k_toolkit.models.stacked`: the members side by side as one network of grouped layers, checked against the
  ensemble when it is built), traced likewise, for batches of up to :data:`STACKED_MAX_BATCH` windows, which a
  server's batches mostly are. The trace is checked against the eager module on two batch sizes when it is made and
  the eager module used if they differ; a network whose code branches on its input's *values* may still pass that
  check and be traced wrongly: give such a network ``trace=False`` (this toolkit's own networks branch on shapes
  only);
* **where**: on ``workers`` worker threads, or (``processes=True``) each worker's batches in an inference process of
  its own (``spawn``ed on first use; the network sent to it pickled, once). In a process whose other threads run
  Python (a server's sessions), a forward pass in a thread of its own was measured 2-2.5x slower in wall time than
  alone: it waits for the GIL each time it comes back from torch; in a process of its own it does not.

:func:`active_batcher` is the batcher of the calling thread, if any; :class:`~a2k_toolkit.models.inference.
WindowedRunner` sends its windows there (float32 on the CPU's fast path) instead of running them itself.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from .batch_context import active_batcher as active_batcher
from .batch_context import batching_into
from .batch_forms import STACKED_MAX_BATCH as STACKED_MAX_BATCH
from .batch_forms import BatchForms
from .batch_process import InferenceProcess


@dataclass
class _Request:
    net: object
    x: np.ndarray  # (n, W, D) float32
    ref: np.ndarray | None  # (n, 136) float32, or None for a network that reads no reference
    future: Future = field(default_factory=Future)


class WindowBatcher:
    """Gathers the windows of its callers' threads into batched forward passes (see the module docstring).
    ``max_batch``: windows in one forward pass at most; ``max_wait_s``: how long the first window of a batch waits
    for others while a caller is still busy; ``workers``: batches run at once; ``processes``: each worker's batches in
    an inference process of its own. Use as a context manager (or :meth:`start` / :meth:`close`); a batcher not
    started (or closed) runs each request in its caller's thread."""

    def __init__(
        self,
        max_batch: int = 32,
        max_wait_s: float = 0.004,
        *,
        workers: int = 1,
        processes: bool = False,
        trace: bool = True,
        backend: str = "torch",
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.max_batch, self.max_wait_s, self.trace = int(max_batch), float(max_wait_s), trace
        self.workers, self.processes = int(workers), bool(processes)
        self.batches = 0  # forward passes run
        self.windows = 0  # windows they held
        self.busy_s = 0.0  # seconds the workers spent on batches (with an inference process: also the transfers)
        self.compute_s = 0.0  # of them, in the forward passes themselves
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._callers = 0  # threads inside caller()
        self._waiting = 0  # of them, those waiting on a submitted request
        self.forms = BatchForms(trace, backend)  # the forms the batches run through (made on first use)
        self.backend = self.forms.backend  # "torch" or "onnxruntime" (``auto`` resolved)
        self._threads: list[threading.Thread] = []
        self._closed = False

    # ------------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> WindowBatcher:
        with self._cond:
            if not self._threads and not self._closed:
                for k in range(self.workers):
                    t = threading.Thread(target=self._work, name=f"a2k-window-batcher-{k}", daemon=True)
                    t.start()
                    self._threads.append(t)
        return self

    def close(self) -> None:
        """Stop the worker after the requests queued; later requests run in their caller's thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()

    def __enter__(self) -> WindowBatcher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def caller(self):
        """Make the calling thread a caller: its :class:`WindowedRunner` windows come here, and the batcher waits
        for it (up to ``max_wait_s``) before running a batch without its windows."""
        with self._cond:
            self._callers += 1
        try:
            with batching_into(self):
                yield self
        finally:
            with self._cond:
                self._callers -= 1
                self._cond.notify_all()  # the worker may be waiting for this caller

    # ---------------------------------------------------------------------------------------------------- API
    def forward(self, net, x: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
        """``net``'s output ``(n, W, 136)`` float32 for the windows ``x`` ``(n, W, D)`` (and references ``ref``
        ``(n, 136)``, ``None`` for a network without), computed with other callers' windows."""
        req = _Request(net, np.ascontiguousarray(x, np.float32), None if ref is None else np.asarray(ref, np.float32))
        with self._cond:
            if self._closed or not self._threads:
                inline = True
            else:
                inline = False
                self._queue.append(req)
                self._waiting += 1
                self._cond.notify_all()
        if inline:
            return self._run(net, req.x, req.ref)
        try:
            return req.future.result()
        finally:
            with self._cond:
                self._waiting -= 1

    def model(self, net, window: int, dim: int):
        """The module a batch of ``net``'s windows ``(n, window, dim)`` runs through (:meth:`BatchForms.model`)."""
        return self.forms.model(net, window, dim)

    # --------------------------------------------------------------------------------------------- internals
    def _run(self, net, x: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
        return self.forms.run(net, x, ref)

    def _take(self) -> list[_Request]:
        """The requests of the next batch (called with the condition held; waits as the module docstring says)."""
        while not self._queue:
            if self._closed:
                return []
            self._cond.wait()
        deadline = time.monotonic() + self.max_wait_s
        while not self._closed:
            net = self._queue[0].net
            n = sum(len(r.x) for r in self._queue if r.net is net)
            if n >= self.max_batch or self._waiting >= self._callers:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)
        net, size, batch, rest = self._queue[0].net, 0, [], []
        for r in self._queue:
            if r.net is net and (not batch or size + len(r.x) <= self.max_batch):
                batch.append(r)
                size += len(r.x)
            else:
                rest.append(r)
        self._queue = rest
        return batch

    def _work(self) -> None:
        child = InferenceProcess(self.trace, self.backend) if self.processes else None
        try:
            self._serve(child)
        finally:
            if child is not None:
                child.close()

    def _serve(self, child: InferenceProcess | None) -> None:
        while True:
            with self._cond:
                batch = self._take()
            if not batch:
                return
            try:
                t0 = time.perf_counter()
                refs = [r.ref for r in batch]
                x = np.concatenate([r.x for r in batch]) if len(batch) > 1 else batch[0].x
                ref = None if refs[0] is None else (np.concatenate(refs) if len(batch) > 1 else refs[0])
                y = self._run(batch[0].net, x, ref) if child is None else child.run(batch[0].net, x, ref)
                took = time.perf_counter() - t0
                with self._cond:  # the workers' counters
                    self.busy_s += took
                    self.compute_s += took if child is None else child.compute_s
                    self.batches += 1
                    self.windows += len(x)
            except BaseException as exc:  # noqa: BLE001 - each caller gets the error of its batch
                for r in batch:
                    r.future.set_exception(exc)
                continue
            i = 0
            for r in batch:
                r.future.set_result(y[i : i + len(r.x)])
                i += len(r.x)
