"""Batch dubbing on a Ray cluster: the same manifest, output folder, journal and reports as ``a2k dub``.

The driver (this script) plans the manifest exactly like the local runner (``a2k_toolkit.dubbing``), then runs the
jobs on Ray actors: one actor per worker, each building the pipeline once, with one GPU each when the cluster has
GPUs (``num_gpus=1``), else one CPU. The driver keeps the journal and writes the reports, so a killed run resumes
with ``a2k dub`` or this script alike.

Every node must see the manifest's input files and the output folder at the same paths (a shared file system), and
have a2k-toolkit (and its plugins) installed. Usage::

    python integrations/ray/a2k_ray_dub.py jobs.csv --out /shared/out --address auto --workers 8

See docs/dubbing.md ("On a Ray cluster").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

from a2k_toolkit.dubbing import DubWorker, Job, dub_batch
from a2k_toolkit.errors import A2KError, require


class _Actor:
    """Holds one :class:`DubWorker` (pipeline built once) on a Ray worker process."""

    def __init__(self, init: dict[str, Any], use_gpu: bool):
        device = init["device"]
        if use_gpu and device in (None, "auto"):
            device = "cuda"  # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU: it is cuda:0 here
        self.worker = DubWorker(init["base_config"], device=device, cache_dir=init["cache_dir"])

    def run(self, job: Job) -> dict[str, Any]:
        return self.worker.run(job)


class RayExecutor:
    """Runs dubbing jobs on Ray actors (an :class:`a2k_toolkit.dubbing.Executor`).

    ``workers``: number of actors (default: one per GPU in the cluster, else one per CPU, at most one per job).
    ``gpus_per_worker``: ``None`` = 1 when the cluster has GPUs, else 0. ``ray_init``: keyword arguments for
    ``ray.init`` when Ray is not initialised yet (e.g. ``{"address": "auto"}`` or ``{"num_cpus": 2}``).
    """

    MAX_ATTEMPTS = 2

    def __init__(
        self, workers: int | None = None, gpus_per_worker: float | None = None, ray_init: dict[str, Any] | None = None
    ):
        self.ray = require("ray", "ray", "Batch dubbing on Ray")
        self.requested, self.gpus_per_worker, self.ray_init = workers, gpus_per_worker, ray_init or {}
        self.workers = workers or 0

    def _resources(self) -> tuple[int, float]:
        ray = self.ray
        if not ray.is_initialized():
            ray.init(**self.ray_init)
        total = ray.cluster_resources()
        gpus = float(total.get("GPU", 0))
        per_gpu = self.gpus_per_worker if self.gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
        if per_gpu > gpus:
            raise A2KError(f"{per_gpu:g} GPU(s) per worker requested but the Ray cluster has {gpus:g}")
        default = int(gpus // per_gpu) if per_gpu else int(total.get("CPU", 1))
        return max(1, self.requested or default), per_gpu

    def run(self, jobs: list[Job], init: dict[str, Any]) -> Iterator[tuple[Job, dict[str, Any]]]:
        if not jobs:
            return
        ray = self.ray
        n, per_gpu = self._resources()
        n = min(n, len(jobs))
        self.workers = n
        # ship this module's code with the actor class, so nodes need a2k-toolkit installed but not this file
        if _Actor.__module__ != "__main__":
            ray.cloudpickle.register_pickle_by_value(sys.modules[_Actor.__module__])
        Actor = ray.remote(num_cpus=1, num_gpus=per_gpu, max_restarts=1)(_Actor)
        actors = [Actor.remote(init, per_gpu > 0) for _ in range(n)]
        queue = list(reversed(jobs))
        running: dict[Any, tuple[Job, Any]] = {}
        try:
            for actor in actors:
                if queue:
                    job = queue.pop()
                    running[actor.run.remote(job)] = (job, actor)
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                ref = ready[0]
                job, actor = running.pop(ref)
                try:
                    yield job, ray.get(ref)
                except ray.exceptions.RayActorError as exc:  # the actor's process died (crash, OOM, node lost)
                    if job.attempt < self.MAX_ATTEMPTS:
                        job.attempt += 1
                        queue.append(job)
                    else:
                        yield (
                            job,
                            {
                                "id": job.id,
                                "line": job.line,
                                "status": "failed",
                                "error_type": "WorkerCrashed",
                                "reason": f"the Ray worker died while running this job (tried {job.attempt} "
                                f"times): {str(exc).splitlines()[0]}",
                                "output": job.output,
                                "fingerprint": job.fingerprint,
                                "attempt": job.attempt,
                                "timings": {},
                            },
                        )
                if queue:
                    nxt = queue.pop()
                    running[actor.run.remote(nxt)] = (nxt, actor)  # a dead actor restarts once (max_restarts)
        finally:
            for actor in actors:
                ray.kill(actor)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="a2k_ray_dub", description="Run an a2k dubbing manifest on a Ray cluster.")
    p.add_argument("manifest", help="the jobs: a .csv or .jsonl file (paths relative to it)")
    p.add_argument("--out", required=True, help="output folder, on a file system every node sees")
    p.add_argument("--config", help="pipeline config file (YAML, JSON or TOML)")
    p.add_argument("--workers", type=int, default=None, help="Ray actors (default: one per GPU, else per CPU)")
    p.add_argument("--gpus-per-worker", type=float, default=None, help="default: 1 if the cluster has GPUs, else 0")
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster address ('auto' to join a running cluster); default: start a local Ray instance",
    )
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance (without --address)")
    p.add_argument("--retry-failed", action="store_true", help="run rows again that failed in an earlier run")
    p.add_argument("--device", default=None, help="override the config's device")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    ray_init = {"address": args.address} if args.address else {"num_cpus": args.num_cpus}
    try:
        ex = RayExecutor(args.workers, args.gpus_per_worker, ray_init)
        summary = dub_batch(
            args.manifest,
            args.out,
            config=args.config,
            executor=ex,
            retry_failed=args.retry_failed,
            device=args.device,
            progress=not args.no_progress,
        )
    except A2KError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.format())
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
