"""The batch runner: plan a manifest against the output folder's journal, run the jobs, write the reports.

* **Plan.** Every row is checked (columns, paths, per-row config, input files); a row that already finished in an
  earlier run with the same inputs (same :func:`fingerprint`) and whose outputs still match their recorded SHA-256
  is skipped; a row that failed earlier is retried only with ``retry_failed``.
* **Run.** Jobs go to an executor: in this process (``workers=0``), a process pool whose initializer builds the
  pipeline once per worker (``workers>=1``), or any object with the same ``run`` method (the Ray integration).
* **Record.** Each finished job is appended to ``<out>/.a2k-dub/journal.jsonl`` (flushed and fsynced), so a killed
  run loses at most the jobs in flight. At the end ``dub-report.jsonl``, ``dub-report.csv`` and
  ``dub-summary.json`` are written atomically.
"""

from __future__ import annotations

import csv
import io as _stdio
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import io
from ..config import load_config, validate_components
from ..errors import A2KError, ConfigError, InputError
from ..hashing import sha256_file, sha256_text
from .manifest import (
    STATE_DIR,
    RowError,
    RowSpec,
    check_duplicates,
    merge_config,
    parse_row,
    read_manifest,
)
from .worker import DubWorker, Job, canonical

FINGERPRINT_VERSION = 1
CSV_FIELDS = (
    "id",
    "line",
    "status",
    "reason",
    "output",
    "keypoints",
    "frames",
    "duration_s",
    "video_sha256",
    "keypoints_sha256",
    "face_cache",
    "attempt",
    "worker",
    "t_detect",
    "t_speech",
    "t_generate",
    "t_render_encode",
    "t_verify",
    "t_total",
)


class Executor(Protocol):
    """Runs jobs and yields ``(job, record)`` pairs as they finish, in any order.

    ``init`` holds what each worker needs to build a :class:`DubWorker`: ``base_config`` (a dumped pipeline
    config), ``device`` (an override or ``None``) and ``cache_dir`` (the shared face cache folder). A worker runs a
    job with ``DubWorker.run(job)``, which never raises for the job's own problems.
    """

    workers: int

    def run(self, jobs: list[Job], init: dict[str, Any]) -> Iterator[tuple[Job, dict[str, Any]]]: ...


@dataclass
class DubSummary:
    """What a batch run did; ``records`` holds one report record per manifest row, in manifest order."""

    manifest: str
    out: str
    records: list[dict[str, Any]]
    workers: int
    wall_s: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.counts.get("failed", 0) == 0 and self.counts.get("pending", 0) == 0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "failed"]

    def to_dict(self) -> dict[str, Any]:
        done = self.counts.get("done", 0)
        return {
            "manifest": self.manifest,
            "out": self.out,
            "rows": len(self.records),
            **self.counts,
            "workers": self.workers,
            "wall_s": round(self.wall_s, 3),
            "jobs_per_minute": round(done / self.wall_s * 60, 2) if self.wall_s > 0 and done else 0.0,
            "failed_rows": [{"id": r.get("id"), "line": r.get("line"), "reason": r.get("reason")} for r in self.failed],
        }

    def format(self, max_failed: int = 20) -> str:
        c = self.counts
        lines = [
            f"{len(self.records)} rows: {c.get('done', 0)} done, {c.get('skipped', 0)} skipped (already done), "
            f"{c.get('failed', 0)} failed"
            + (f", {c['pending']} not run" if c.get("pending") else "")
            + f" in {self.wall_s:.1f} s "
            + (f"with {self.workers} worker(s)" if self.workers else "in this process")
        ]
        for r in self.failed[:max_failed]:
            lines.append(f"  failed: line {r.get('line')} id {r.get('id')!r}: {r.get('reason')}")
        if len(self.failed) > max_failed:
            lines.append(f"  ... and {len(self.failed) - max_failed} more failed rows (see dub-report.csv)")
        if any(r.get("carried_over") for r in self.failed):
            lines.append("  rows that failed in an earlier run were not retried; rerun with --retry-failed to retry")
        lines.append(f"report: {Path(self.out) / 'dub-report.csv'} (and .jsonl); summary: dub-summary.json")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------- planning


class _Hasher:
    """SHA-256 of input files, memoised by (path, size, mtime) so rows sharing a file hash it once."""

    def __init__(self):
        self._memo: dict[tuple[str, int, int], str] = {}

    def __call__(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._memo:
            self._memo[key] = sha256_file(path)
        return self._memo[key]


def _check_input(path: Path, column: str) -> None:
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        raise RowError(
            f"{column} file {what}: {path} (relative paths in the manifest are resolved against the "
            "manifest's folder); fix the path in the manifest"
        )


def fingerprint(spec: RowSpec, source_sha: str, audio_sha: str | None, config: dict[str, Any]) -> str:
    """Identifies a job's inputs: file contents, frame, speech, full config and output names. A finished job is
    skipped on a rerun only if its fingerprint is unchanged."""
    return sha256_text(
        canonical(
            {
                "v": FINGERPRINT_VERSION,
                "source": source_sha,
                "kind": "image" if spec.image else "video",
                "frame": spec.frame,
                "audio": audio_sha,
                "text": spec.text,
                "lang": spec.lang,
                "config": config,
                "output": spec.output,
                "keypoints": spec.keypoints,
            }
        )
    )


def _failed(line: int, rid: str | None, reason: str, error_type: str = "RowError", **extra) -> dict[str, Any]:
    return {"id": rid, "line": line, "status": "failed", "reason": reason, "error_type": error_type, **extra}


def plan(
    rows, base: Path, out: Path, base_config: dict[str, Any], catalog, journal: dict[str, dict], retry_failed: bool
) -> tuple[list[dict[str, Any] | None], list[Job]]:
    """Per row: either a final record (invalid, skipped, failed earlier) or ``None`` with a :class:`Job` to run."""
    specs: list[tuple[int, RowSpec]] = []
    records: list[dict[str, Any] | None] = []
    for i, row in enumerate(rows):
        try:
            specs.append((i, parse_row(row, base)))
            records.append(None)
        except RowError as exc:
            records.append(_failed(row.line, row.id, str(exc)))
    check_duplicates([s for _, s in specs], rows)

    out_real = out.resolve()
    hasher = _Hasher()
    jobs: list[Job] = []
    for i, spec in specs:
        try:
            for rel in spec.output_files:  # symlinks inside --out must not lead outside it
                target = (out / rel).resolve()
                if target != out_real and out_real not in target.parents:
                    raise RowError(
                        f"`output` {rel!r} resolves outside --out (through a symbolic link) to {target}; "
                        "outputs must stay inside the output folder"
                    )
            config = merge_config(base_config, spec.config_override)
            try:
                cfg = load_config(config)
                validate_components(cfg, catalog)
            except ConfigError as exc:
                raise RowError(f"per-row `config` is invalid: {exc}") from None
            config = cfg.model_dump(mode="json")
            if spec.writes_video and cfg.renderer is None:
                raise RowError(
                    "`output` is an .mp4 but the row's config has no renderer; set a `renderer`, or give "
                    "a keypoint file (.npz) as `output`"
                )
            _check_input(spec.source, "image" if spec.image else "video")
            if spec.audio is not None:
                _check_input(spec.audio, "audio")
            source_sha = hasher(spec.source)
            audio_sha = hasher(spec.audio) if spec.audio is not None else None
        except (RowError, OSError) as exc:
            records[i] = _failed(spec.line, spec.id, str(exc))
            continue
        fp = fingerprint(spec, source_sha, audio_sha, config)
        job = Job(
            id=spec.id,
            line=spec.line,
            source=str(spec.source.absolute()),
            source_kind="image" if spec.image else "video",
            source_sha256=source_sha,
            frame=spec.frame,
            audio=str(spec.audio.absolute()) if spec.audio else None,
            audio_sha256=audio_sha,
            text=spec.text,
            lang=spec.lang,
            config=config,
            out_dir=str(out.absolute()),
            output=spec.output,
            keypoints=spec.keypoints,
            fingerprint=fp,
        )
        prev = journal.get(spec.id)
        if prev is not None and prev.get("fingerprint") == fp:
            if prev.get("status") == "done":
                problem = _verify_checksums(job, prev)
                if problem is None:
                    records[i] = {
                        **prev,
                        "status": "skipped",
                        "reason": "already done in an earlier run (outputs verified by SHA-256)",
                    }
                    continue
                job.attempt = 1
            elif prev.get("status") == "failed" and not retry_failed:
                records[i] = {**prev, "carried_over": True}
                continue
            else:
                job.attempt = int(prev.get("attempt") or 1) + 1
        jobs.append(job)
        records[i] = None
    return records, jobs


def _verify_checksums(job: Job, prev: dict[str, Any]) -> str | None:
    checks = [(job.keypoints_path, prev.get("keypoints_sha256"))]
    if job.video_path is not None:
        checks.append((job.video_path, prev.get("video_sha256")))
    for path, expected in checks:
        if not expected:
            return f"no checksum recorded for {path.name}"
        if not path.is_file():
            return f"{path.name} is missing"
        if sha256_file(path) != expected:
            return f"{path.name} changed since it was written"
    return None


def clean_stale_temp_files(out: Path, jobs: Iterable[Job]) -> int:
    """Remove temporary files a killed run left next to its outputs (``io.atomic_path`` names them
    ``.<stem>.<random><ext>``). Only called while holding the output folder's lock."""
    removed = 0
    for job in jobs:
        for rel in {job.output, job.keypoints}:
            target = out / rel
            if not target.parent.is_dir():
                continue
            for tmp in target.parent.glob(f".{target.stem}.*{target.suffix}"):
                if tmp.is_file() and tmp.name != target.name:
                    tmp.unlink(missing_ok=True)
                    removed += 1
    return removed


# ---------------------------------------------------------------------------------------------- journal and lock


class Journal:
    """Append-only JSONL of finished jobs in ``<out>/.a2k-dub/journal.jsonl``; the latest record per id wins."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "journal.jsonl"

    def load(self) -> dict[str, dict[str, Any]]:
        latest: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return latest
        for line in self.path.read_text("utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a killed run
            if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                latest[rec["id"]] = rec
        return latest

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())


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


# ----------------------------------------------------------------------------------------------------------- reports


# a spreadsheet evaluates a cell starting with one of these as a formula (OWASP "CSV injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` safe to open in a spreadsheet: text that would start a formula gets a leading single quote.

    Numbers are left alone (a negative number is a number, not a formula); only strings are neutralised."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_reports(out: Path, records: list[dict[str, Any]], summary: DubSummary) -> None:
    io.atomic_write_text(out / "dub-report.jsonl", "".join(json.dumps(r, default=str) + "\n" for r in records))
    buf = _stdio.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        flat = {**r, **{f"t_{k}": v for k, v in (r.get("timings") or {}).items()}}
        writer.writerow({k: csv_cell(v) for k, v in flat.items()})
    io.atomic_write_text(out / "dub-report.csv", buf.getvalue())
    io.atomic_write_text(out / "dub-summary.json", json.dumps(summary.to_dict(), indent=2, default=str) + "\n")


# ------------------------------------------------------------------------------------------------------------ runner


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
    if device:
        base_cfg = load_config({**base_cfg.model_dump(mode="json"), "device": device})
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
        journal = Journal(state)
        records, jobs = plan(rows, manifest.parent, out, base_config, catalog, journal.load(), retry_failed)
        clean_stale_temp_files(out, jobs)
        init = {"base_config": base_config, "device": device, "cache_dir": str(state / "faces")}
        if executor is None:
            executor = InProcessExecutor(pipeline, catalog) if workers == 0 else PoolExecutor(workers)
        pos = {r.id: i for i, r in enumerate(rows) if r.id is not None}
        finished: dict[str, dict[str, Any]] = {}
        bar = _progress(len(jobs), progress)
        try:
            for job, record in executor.run(jobs, init):
                journal.append(record)
                finished[job.id] = record
                bar.update(1)
                if record["status"] == "failed":
                    bar.set_postfix_str(f"{sum(r['status'] == 'failed' for r in finished.values())} failed")
        finally:
            bar.close()
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
            final = [r for r in records if r is not None]
            counts: dict[str, int] = {}
            for r in final:
                counts[r["status"]] = counts.get(r["status"], 0) + 1
            summary = DubSummary(str(manifest), str(out), final, executor.workers, time.time() - t0, counts)
            write_reports(out, final, summary)
    return summary


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


# --------------------------------------------------------------------------------------------------------- executors


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


def _init_worker(init: dict[str, Any], threads: int, counter) -> None:
    """Process-pool initializer: die with the parent, share the CPU fairly, build the pipeline once."""
    global _WORKER
    _die_with_parent()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    device = init["device"]
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    if (device or init["base_config"].get("device")) in (None, "auto", "cuda"):
        device = _gpu_for(index) or device
    _WORKER = DubWorker(init["base_config"], device=device, cache_dir=init["cache_dir"])
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


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


def _die_with_parent() -> None:
    """Make this worker exit when the parent dies (SIGKILL included), so no orphan keeps writing outputs."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    import threading

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True, name="a2k-parent-watch").start()


class PoolExecutor:
    """A process pool (``spawn``) whose initializer builds the pipeline once per worker.

    At most ``workers`` jobs are in flight. If a worker process dies (a crash in native code, out of memory), the
    jobs it may have been running are retried once in a fresh pool, then reported as failed.
    """

    MAX_ATTEMPTS = 2

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self.threads = max(1, (os.cpu_count() or 1) // self.workers)

    def _pool(self):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("spawn")
        counter = ctx.Value("i", 0)
        return ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=_init_worker, initargs=(self._init, self.threads, counter)
        )

    def run(self, jobs: list[Job], init: dict[str, Any]) -> Iterator[tuple[Job, dict[str, Any]]]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        if not jobs:
            return
        self._init = init
        queue = list(reversed(jobs))
        pool = self._pool()
        inflight: dict[Any, Job] = {}
        try:
            while queue or inflight:
                while queue and len(inflight) < self.workers:
                    job = queue.pop()
                    inflight[pool.submit(_run_in_worker, job)] = job
                done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                broken = False
                for fut in done:
                    job = inflight.pop(fut)
                    try:
                        yield job, fut.result()
                    except BrokenProcessPool:
                        broken = True
                        if job.attempt < self.MAX_ATTEMPTS:
                            job.attempt += 1
                            queue.append(job)
                        else:
                            yield (
                                job,
                                _failed(
                                    job.line,
                                    job.id,
                                    "the worker process died while running this job "
                                    f"(tried {job.attempt} times): a crash in native code, out of memory, "
                                    "or workers that cannot start (if every row fails like this, run "
                                    "with --workers 0 to see the error)",
                                    "WorkerCrashed",
                                    output=job.output,
                                    fingerprint=job.fingerprint,
                                    attempt=job.attempt,
                                    timings={},
                                ),
                            )
                if broken:
                    for job in list(inflight.values()):  # the others in flight die with the pool; rerun them
                        queue.append(job)
                    inflight.clear()
                    pool.shutdown(wait=True, cancel_futures=True)
                    pool = self._pool()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
