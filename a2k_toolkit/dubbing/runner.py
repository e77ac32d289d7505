"""The batch runner: plan a manifest against the output folder's journal, run the jobs, write the reports.

* **Plan** (:mod:`.plan`). Every row is checked (columns, paths, per-row config, input files); a row that already
  finished in an earlier run with the same inputs (same fingerprint) and whose outputs still match their recorded
  SHA-256 is skipped; a row that failed earlier is retried only with ``retry_failed``.
* **Run** (:mod:`.executors`). Jobs go to an executor: in this process (``workers=0``), worker processes that build
  the pipeline once each (``workers>=1``, :func:`a2k_toolkit.workpool.run_pool`), or any object with the same
  ``run`` method (the Ray integration).
* **Record.** Each finished job is appended to ``<out>/.a2k-dub/journal.jsonl`` (a
  :class:`a2k_toolkit.workpool.Journal` keyed by row id: flushed and fsynced), so a killed run loses at most the
  jobs in flight. At the end ``dub-report.jsonl``, ``dub-report.csv`` and ``dub-summary.json`` are written
  atomically (:mod:`.reports`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from .. import io
from ..config import load_config, validate_components
from ..errors import A2KError, InputError
from ..workpool import Journal
from .executors import Executor, InProcessExecutor, PoolExecutor
from .manifest import STATE_DIR, read_manifest
from .plan import clean_stale_temp_files, plan
from .reports import DubSummary, write_reports
from .worker import Job

JOURNAL = "journal.jsonl"


def journal(state_dir: Path) -> Journal:
    """The journal of finished jobs in ``<out>/.a2k-dub/``: one record per line, the latest per row ``id`` wins."""
    return Journal(state_dir / JOURNAL, key="id", sort_keys=False)


class OutputLock:
    """An exclusive lock on the output folder, so two runs never write the same outputs at once."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "lock"
        self._fd: int | None = None

    def __enter__(self):
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory lock
            return self
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise A2KError(
                f"another `a2k dub` run is writing to {self.path.parent.parent}; wait for it to finish "
                "or choose another --out"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None


def dub_batch(
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    *,
    config: Any = None,
    pipeline: Any = None,
    workers: int = 1,
    retry_failed: bool = False,
    device: str | None = None,
    plugins: Any = None,
    progress: bool = True,
    executor: Executor | None = None,
) -> DubSummary:
    """Run every row of ``manifest`` into ``out``; see the module docstring and ``docs/dubbing.md``.

    ``workers=0`` runs in this process (with ``pipeline`` when given); ``workers>=1`` starts that many worker
    processes, each building the pipeline once. ``executor`` replaces both (see :class:`Executor`; the Ray
    integration is one).
    """
    from ..catalog import Catalog

    t0 = time.time()
    manifest, out = Path(manifest), Path(out)
    if workers < 0:
        raise InputError(f"--workers must be >= 0, got {workers}")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder; give a folder for the outputs")
    io.check_output_folder(out, what=f"--out {out}")  # before any work: never fail at the end for an unwritable folder
    rows = read_manifest(manifest)
    if pipeline is not None and config is not None:
        raise InputError("give either `pipeline` or `config`, not both")
    base_cfg = pipeline.config if pipeline is not None else load_config(config)
    if device:  # the validated slots as they are, the device checked (as Pipeline.from_config takes an override)
        base_cfg = load_config({**dict(base_cfg), "device": device})
    catalog = plugins if isinstance(plugins, Catalog) else Catalog(plugins)
    validate_components(base_cfg, catalog)  # a broken base config stops here, before any worker starts
    base_config = base_cfg.model_dump(mode="json")
    if plugins is not None and workers > 0 and executor is None:
        raise InputError(
            "a custom plugin manager only reaches workers=0 (worker processes load installed plugins); "
            "use workers=0, or install the plugin"
        )

    state = out / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    with OutputLock(state):
        done = journal(state)
        records, jobs = plan(rows, manifest.parent, out, base_config, catalog, done.read(), retry_failed)
        clean_stale_temp_files(out, jobs)
        init = {"base_config": base_config, "device": device, "cache_dir": str(state / "faces")}
        if executor is None:
            executor = InProcessExecutor(pipeline, catalog) if workers == 0 else PoolExecutor(workers)
        finished: dict[str, dict[str, Any]] = {}
        try:
            _run(executor, jobs, init, done, finished, progress)
        finally:
            final = _final_records(rows, records, jobs, finished)
            counts: dict[str, int] = {}
            for r in final:
                counts[r["status"]] = counts.get(r["status"], 0) + 1
            summary = DubSummary(str(manifest), str(out), final, executor.workers, time.time() - t0, counts)
            write_reports(out, final, summary)
    return summary


def _run(executor: Executor, jobs: list[Job], init: dict, done: Journal, finished: dict, progress: bool) -> None:
    """Run ``jobs``, appending each record to the journal as it arrives and keeping it in ``finished``."""
    bar = _progress(len(jobs), progress)
    try:
        for job, record in executor.run(jobs, init):
            done.append(record)
            finished[job.id] = record
            bar.update(1)
            if record["status"] == "failed":
                bar.set_postfix_str(f"{sum(r['status'] == 'failed' for r in finished.values())} failed")
    finally:
        bar.close()


def _final_records(rows, records: list, jobs: list[Job], finished: dict[str, dict]) -> list[dict[str, Any]]:
    """One record per row, in manifest order: the planned ones, the finished jobs', ``pending`` for the others."""
    pos = {r.id: i for i, r in enumerate(rows) if r.id is not None}
    for job in jobs:
        rec = finished.get(job.id)
        if rec is None:
            rec = {
                "id": job.id,
                "line": job.line,
                "status": "pending",
                "output": job.output,
                "reason": "not run: the batch was interrupted; run the same command again to finish",
            }
        records[pos[job.id]] = rec
    return [r for r in records if r is not None]


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc="dubbing",
        unit="job",
        disable=not enabled or total == 0,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
    )
