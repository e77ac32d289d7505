"""Batch dubbing: many (face, speech) jobs from a CSV or JSONL manifest, resumable, in parallel.

    from a2k_toolkit.dubbing import dub_batch
    summary = dub_batch("jobs.csv", "out/", workers=2)
    print(summary.format())

See ``docs/dubbing.md`` for the manifest columns, the output folder's layout and the reports.
"""

from __future__ import annotations

from .manifest import COLUMNS, ManifestError, RowError, read_manifest
from .runner import DubSummary, Executor, dub_batch
from .worker import DubWorker, Job

__all__ = [
    "COLUMNS",
    "DubSummary",
    "DubWorker",
    "Executor",
    "Job",
    "ManifestError",
    "RowError",
    "dub_batch",
    "read_manifest",
]
