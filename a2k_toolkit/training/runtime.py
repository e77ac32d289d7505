"""The training loop's plumbing: the batch sampler of a resumed epoch, the clock of time spent waiting for data,
the running means of the loss terms between log lines, the graceful stop on Ctrl-C / SIGTERM, and the metrics log."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..errors import require
from ..io import atomic_write_text


class ListBatchSampler:
    """Yields precomputed batches of indices (the rest of an epoch after a resume)."""

    def __init__(self, batches: list[list[int]]):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class RunningMeans:
    """Sums of the loss terms of the steps since the last log line, and the time they took."""

    def __init__(self, keys: tuple[str, ...], device: str):
        self.keys, self.device = keys, device
        self.reset()

    def reset(self) -> None:
        self.sums = {k: torch.zeros((), device=self.device) for k in self.keys}
        self.count, self.t0 = 0, time.perf_counter()

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        for k in self.keys:
            self.sums[k] += losses[k]
        self.count += 1

    def means(self, env) -> dict[str, float]:
        """The means over the steps since :meth:`reset`, averaged over the processes too."""
        t = torch.stack([(self.sums[k] / self.count).float() for k in self.keys])
        if env.distributed:
            dist.all_reduce(t)
            t /= env.world_size
        return {k: float(v) for k, v in zip(self.keys, t.tolist())}


class DataWait:
    """Wraps the loader of :meth:`~.trainer.Trainer.fit` and adds up the time spent blocked waiting for the next
    batch (the loader starving training); :meth:`take` returns the sum since the last call and restarts it."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, iterable):
        it = iter(iterable)
        while True:
            t = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - t
            yield item

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


class GracefulStop:
    """First Ctrl-C or SIGTERM (what SLURM, Kubernetes and systemd send): finish the current step, save latest/,
    stop (all ranks agree, so a signal reaching any rank stops every rank); a second one aborts at once."""

    def __init__(self):
        import signal
        import threading

        self.requested = False
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        import signal
        import sys

        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{name}: stopping after this step and saving latest/ (again to abort now)", file=sys.stderr)

    def agreed(self, env) -> bool:
        if not env.distributed:
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=env.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self) -> None:
        import signal

        for sig, previous in self.previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self.previous = {}


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (and TensorBoard scalars); on resume drops lines past the
    checkpoint's step, so the file holds one continuous curve."""

    def __init__(self, path: Path, step: int, enabled: bool = True, tensorboard: bool = False):
        self.path, self.enabled, self.tb = path, enabled, None
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            kept = [ln for ln in path.read_text("utf-8").splitlines() if ln.strip() and _step(ln) <= step]
            atomic_write_text(path, "".join(ln + "\n" for ln in kept))
        if tensorboard:
            require("tensorboard", "tensorboard", "TensorBoard logging (`tensorboard: true`)")
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(path.parent / "tensorboard"), purge_step=step + 1 if step else None)
        self.f = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.f.write(json.dumps({**record, "time": round(time.time(), 3)}) + "\n")
        self.f.flush()
        if self.tb is not None:
            for k, v in record.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.enabled:
            self.f.close()
            if self.tb is not None:
                self.tb.close()


def _step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # a torn last line is dropped
