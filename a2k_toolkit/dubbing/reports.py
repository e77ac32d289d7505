"""The reports of a batch run: ``dub-report.jsonl`` (one record per manifest row), ``dub-report.csv`` (the same,
flat, safe to open in a spreadsheet) and ``dub-summary.json`` (counts, throughput, failed rows), written atomically;
and :class:`DubSummary`, what :func:`~.runner.dub_batch` returns.
"""

from __future__ import annotations

import csv
import io as _stdio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import io

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
