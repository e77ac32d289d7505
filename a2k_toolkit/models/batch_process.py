"""The inference process of a :class:`~a2k_toolkit.models.batching.WindowBatcher` worker (``processes=True``): its
batches run in a process of their own, whose GIL no session's Python work holds."""

from __future__ import annotations

import contextlib
import time
import weakref

import numpy as np

from ..cpu_runtime import freeze_heap
from .batch_forms import BatchForms


class InferenceProcess:
    """A worker's inference process (``processes=True``): the batches run there, in a process of their own, whose
    GIL no session's Python work holds. Started on first use (and again after it ended); the networks are sent to it
    pickled, once each."""

    def __init__(self, trace: bool, backend: str = "torch"):
        self.trace, self.backend = trace, backend
        self.proc = self.conn = None
        self.compute_s = 0.0  # the last batch's forward pass, timed in the process
        self.keys: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _start(self) -> None:
        import multiprocessing

        import torch

        ctx = multiprocessing.get_context("spawn")  # not fork: the server has threads
        self.conn, theirs = ctx.Pipe()
        args = (theirs, self.trace, torch.get_num_threads(), self.backend)
        proc = ctx.Process(target=_child_main, args=args, name="a2k-inference", daemon=True)
        try:
            proc.start()
        finally:
            theirs.close()
        self.proc = proc  # only a started process: close() joins it
        self.keys = weakref.WeakKeyDictionary()

    def run(self, net, x: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
        import pickle

        if self.proc is None or not self.proc.is_alive():
            self._start()
        try:
            kind, payload = "ok", None
            if net not in self.keys:
                self.conn.send(("load", len(self.keys), pickle.dumps(net)))
                kind, payload = self.conn.recv()
                if kind == "ok":
                    self.keys[net] = len(self.keys)
            if kind == "ok":
                self.conn.send(("run", self.keys[net], x, ref))
                kind, payload = self.conn.recv()
        except (OSError, EOFError):
            self.proc.join(1.0)
            code, self.proc = self.proc.exitcode, None
            raise RuntimeError(
                f"the inference process ended (exit code {code}); the next batch starts a new one"
            ) from None
        if kind == "error":
            raise RuntimeError(f"in the inference process: {payload}")
        y, self.compute_s = payload
        return y

    def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            self.conn.send(("close",))
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()
        self.proc = None


def _child_main(conn, trace: bool, threads: int, backend: str = "torch") -> None:
    """The inference process's loop: ``("load", key, pickled net)``, ``("run", key, x, ref)`` -> ``("ok", y)`` or
    ``("error", message)``, ``("close",)`` (or the parent gone) ends it."""
    import pickle

    import torch

    torch.set_num_threads(threads)
    forms = BatchForms(trace, backend)
    nets = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "close":
            return
        try:
            if msg[0] == "load":
                nets[msg[1]] = pickle.loads(msg[2]).eval()
                conn.send(("ok", None))
            else:
                t0 = time.perf_counter()
                net, x = nets[msg[1]], msg[2]
                new = not forms.has(net, x.shape[1], x.shape[2])
                y = forms.run(net, x, msg[3])
                conn.send(("ok", (y, time.perf_counter() - t0)))
                if new:  # the forms just made stay: later full collections skip them (cpu_runtime)
                    freeze_heap()
        except Exception as exc:  # noqa: BLE001 - reported to the batch's callers
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
