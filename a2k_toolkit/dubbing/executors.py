"""Executors run planned jobs and yield ``(job, record)`` pairs as they finish: in this process
(:class:`InProcessExecutor`, ``workers=0``), in worker processes (:class:`PoolExecutor`), or anything with the same
``run`` method (:class:`Executor`; the Ray integration is one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Protocol

from ..workpool import Outcome, run_pool, worker_index, worker_threads
from .plan import failed_record
from .worker import DubWorker, Job


class Executor(Protocol):
    """Runs jobs and yields ``(job, record)`` pairs as they finish, in any order.

    ``init`` holds what each worker needs to build a :class:`DubWorker`: ``base_config`` (a dumped pipeline
    config), ``device`` (an override or ``None``) and ``cache_dir`` (the shared face cache folder). A worker runs a
    job with ``DubWorker.run(job)``, which never raises for the job's own problems.
    """

    workers: int

    def run(self, jobs: list[Job], init: dict[str, Any]) -> Iterator[tuple[Job, dict[str, Any]]]: ...


class InProcessExecutor:
    """Runs jobs one after another in this process (``workers=0``), with a live pipeline if given."""

    workers = 0

    def __init__(self, pipeline: Any = None, plugins: Any = None):
        self.pipeline, self.plugins = pipeline, plugins

    def run(self, jobs: list[Job], init: dict[str, Any]) -> Iterator[tuple[Job, dict[str, Any]]]:
        if not jobs:
            return
        worker = DubWorker(
            init["base_config"],
            device=init["device"],
            plugins=self.plugins,
            pipeline=self.pipeline,
            cache_dir=init["cache_dir"],
        )
        for job in jobs:
            yield job, worker.run(job)


_WORKER: DubWorker | None = None


def _init_worker(init: dict[str, Any]) -> None:
    """Worker initializer (after :mod:`a2k_toolkit.workpool` made it die with the parent and share the CPU): build
    the pipeline once, on GPU ``worker_index() mod GPUs`` when the config leaves the device to the runner."""
    global _WORKER
    device = init["device"]
    if (device or init["base_config"].get("device")) in (None, "auto", "cuda"):
        device = _gpu_for(worker_index() or 0) or device
    _WORKER = DubWorker(init["base_config"], device=device, cache_dir=init["cache_dir"])


def _gpu_for(index: int) -> str | None:
    """``cuda:<index mod count>`` when CUDA GPUs are visible, so workers spread over them."""
    try:
        import torch
    except ImportError:
        return None

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return f"cuda:{index % n}" if n else None


def _run_in_worker(job: Job) -> dict[str, Any]:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.run(job)


def _next_attempt(job: Job) -> Job:
    return dataclasses.replace(job, attempt=job.attempt + 1)


class PoolExecutor:
    """Worker processes (:func:`a2k_toolkit.workpool.run_pool`, ``spawn``), each building the pipeline once.

    At most ``workers`` jobs are in flight. If a worker process dies (a crash in native code, out of memory), the
    jobs in flight with it are rerun one at a time, each alone in a fresh worker (their ``attempt`` counted); a job
    that kills its worker alone too is reported as failed.
    """

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self.threads = worker_threads(self.workers)

    def run(self, jobs: list[Job], init: dict[str, Any]) -> Iterator[tuple[Job, dict[str, Any]]]:
        if not jobs:
            return
        outcomes = run_pool(
            _run_in_worker, jobs, workers=self.workers, initializer=_init_worker, initargs=(init,), rerun=_next_attempt
        )
        for outcome in outcomes:
            yield outcome.item, _record_of(outcome)


def _record_of(outcome: Outcome[Job]) -> dict[str, Any]:
    job = outcome.item
    if outcome.error is None and not outcome.crashed:
        return outcome.result
    if outcome.crashed:
        reason = (
            f"the worker process died while running this job (tried {job.attempt} times): a crash in native code, "
            "out of memory, or workers that cannot start (if every row fails like this, run with --workers 0 to "
            "see the error)"
        )
        error_type = "WorkerCrashed"
    else:  # DubWorker.run reports a job's own problems; this is e.g. a result that could not be sent back
        reason = f"the worker could not return this job's result: {type(outcome.error).__name__}: {outcome.error}"
        error_type = type(outcome.error).__name__
    return failed_record(
        job.line,
        job.id,
        reason,
        error_type,
        output=job.output,
        fingerprint=job.fingerprint,
        attempt=job.attempt,
        timings={},
    )
