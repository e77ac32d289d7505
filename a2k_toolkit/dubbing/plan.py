"""Planning a batch: every manifest row checked and either given a final record (invalid, already done, failed
earlier) or turned into a :class:`~.worker.Job` to run.

A row that finished in an earlier run with the same inputs (same :func:`fingerprint`) and whose outputs still match
their recorded SHA-256 is skipped; a row that failed earlier is retried only with ``retry_failed``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..config import load_config, validate_components
from ..errors import ConfigError
from ..hashing import sha256_file, sha256_text
from .manifest import RowError, RowSpec, check_duplicates, merge_config, parse_row
from .worker import Job, canonical

FINGERPRINT_VERSION = 1


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


def failed_record(line: int, rid: str | None, reason: str, error_type: str = "RowError", **extra) -> dict[str, Any]:
    """The report record of a row that failed (``reason``: what happened and what to do)."""
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
            records.append(failed_record(row.line, row.id, str(exc)))
    check_duplicates([s for _, s in specs], rows)

    hasher = _Hasher()
    jobs: list[Job] = []
    for i, spec in specs:
        try:
            job = _job(spec, out, base_config, catalog, hasher)
        except (RowError, OSError) as exc:
            records[i] = failed_record(spec.line, spec.id, str(exc))
            continue
        records[i] = _resume(job, journal.get(spec.id), retry_failed)
        if records[i] is None:
            jobs.append(job)
    return records, jobs


def _job(spec: RowSpec, out: Path, base_config: dict[str, Any], catalog, hasher: _Hasher) -> Job:
    """The job of a parsed row: outputs inside ``out``, the merged config valid, the input files there and hashed.
    Raises :class:`RowError` (or ``OSError`` from reading an input) naming the problem."""
    out_real = out.resolve()
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
    return Job(
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
        fingerprint=fingerprint(spec, source_sha, audio_sha, config),
    )


def _resume(job: Job, prev: dict[str, Any] | None, retry_failed: bool) -> dict[str, Any] | None:
    """The final record of a row the journal settles (done with its outputs intact, or failed and not retried), or
    ``None`` when ``job`` must run (its ``attempt`` counted on from the journal's)."""
    if prev is None or prev.get("fingerprint") != job.fingerprint:
        return None
    if prev.get("status") == "done":
        if _verify_checksums(job, prev) is None:
            return {
                **prev,
                "status": "skipped",
                "reason": "already done in an earlier run (outputs verified by SHA-256)",
            }
        job.attempt = 1
    elif prev.get("status") == "failed" and not retry_failed:
        return {**prev, "carried_over": True}
    else:
        job.attempt = int(prev.get("attempt") or 1) + 1
    return None


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
