"""``a2k dub``: batch dubbing from a CSV or JSONL manifest into an output folder (resumable, parallel)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "dub",
        help="dub many (face, speech) jobs from a CSV or JSONL manifest",
        description="Run every row of MANIFEST (columns: id, image|video, [frame], audio|text, [lang], output, "
        "[keypoints], [config]) and write each row's MP4 and keypoint file under --out. Rerunning the same command "
        "skips rows already done (outputs verified by SHA-256) and continues where a killed run stopped. "
        "Reports: DIR/dub-report.jsonl, DIR/dub-report.csv, DIR/dub-summary.json. Exit code 0: every row done; "
        "1: some rows failed (see the report); 2: the manifest or options are unusable.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("manifest", metavar="MANIFEST", help="the jobs: a .csv or .jsonl file (paths relative to it)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder; every output stays inside it")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes, each loading the pipeline once (0: run in this process)",
    )
    p.add_argument("--config", help="pipeline config file (YAML, JSON or TOML); rows may override it")
    p.add_argument("--retry-failed", action="store_true", help="run rows again that failed in an earlier run")
    p.add_argument("--device", default=None, help="override the config's device (auto, cpu, cuda, mps)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..dubbing import dub_batch

    summary = dub_batch(
        args.manifest,
        args.out,
        config=args.config,
        workers=args.workers,
        retry_failed=args.retry_failed,
        device=args.device,
        progress=not args.no_progress,
    )
    print(summary.format())
    return 0 if summary.ok else 1
