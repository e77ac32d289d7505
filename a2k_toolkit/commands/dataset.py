"""``a2k dataset build | merge | report``: the Vox-KP dataset builder (see docs/dataset.md)."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("dataset", help="build, merge and inspect Vox-KP keypoint datasets")
    dsub = p.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND", required=True)

    b = dsub.add_parser(
        "build",
        help="talking-face videos -> 25 fps keypoints + 16 kHz audio, sharded, with splits, statistics and QA",
        description="Turn a folder of talking-face videos (VoxCeleb2 layout id/video/clip.mp4, any folder of videos, "
        "or a CSV manifest path[,identity[,split]]) into a Vox-KP dataset in OUT. Rerunning the same command resumes "
        "an interrupted build; finished videos are skipped.",
    )
    b.add_argument("videos", metavar="VIDEOS", help="folder of videos, or a .csv manifest")
    b.add_argument("out", metavar="OUT", help="dataset folder (created; resumed if it exists)")
    b.add_argument("--config", help="build settings file (YAML, JSON or TOML); flags below override it")
    b.add_argument("--detector", help="keypoint detector: dlib, fan, or any registered detector (default: dlib)")
    b.add_argument(
        "--detector-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="detector parameter (repeatable), e.g. --detector-param face_detector=sfd",
    )
    b.add_argument(
        "--detect-every",
        type=int,
        help="run the face detector every N frames and track in between (default 1: every frame)",
    )
    b.add_argument("--min-frames", type=int, help="shortest clip kept, in frames (default 25)")
    b.add_argument("--max-gap", type=int, help="longest face gap interpolated, in frames (default 5)")
    b.add_argument("--split", help="train,val,test fractions by identity (default 0.8,0.1,0.1)")
    b.add_argument("--shard-size", type=int, help="clips per shard (default 256)")
    b.add_argument("--workers", type=int, default=1, help="worker processes (default 1: in this process)")
    b.add_argument("--shard-index", type=int, default=0, help="this machine's part of the videos, 0-based (default 0)")
    b.add_argument("--num-shards", type=int, default=1, help="number of machines sharing the videos (default 1)")
    b.add_argument("--retry-failed", action="store_true", help="process videos that failed before again")
    b.add_argument(
        "--allow-failures",
        action="store_true",
        help="exit 0 even when some videos failed in this run (default: exit 1, the count in the last line)",
    )
    b.set_defaults(func=run_build)

    m = dsub.add_parser(
        "merge",
        help="merge datasets built on several machines into one, with global splits, statistics and report",
        description="Merge the parts built with --shard-index/--num-shards into OUT (verifying each part against "
        "its manifest), then write OUT's shards, splits, statistics, QA report and manifest. Resumable.",
    )
    m.add_argument("parts", nargs="+", metavar="PART", help="finished dataset folders")
    m.add_argument("out", metavar="OUT", help="merged dataset folder")
    m.set_defaults(func=run_merge)

    r = dsub.add_parser("report", help="(re)write the QA report of a dataset and print its summary")
    r.add_argument("out", metavar="OUT", help="dataset folder")
    r.add_argument("--json", action="store_true", help="print the whole report as JSON")
    r.add_argument(
        "--recompute-qa",
        action="store_true",
        help="measure each clip's lip-audio coupling again on its stored keypoints and audio with today's "
        "definition; only the report changes (shards and index keep the stored values)",
    )
    r.set_defaults(func=run_report)


def _parse_params(items: list[str]) -> dict:
    import yaml

    from ..errors import ConfigError

    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--detector-param expects KEY=VALUE, got {item!r}")
        params[key.strip()] = yaml.safe_load(value)
    return params


def run_build(args) -> int:
    from ..data.builder import build, load_build_config
    from ..errors import ConfigError

    overrides: dict = {
        "detect_every": args.detect_every,
        "min_frames": args.min_frames,
        "max_gap": args.max_gap,
        "shard_size": args.shard_size,
    }
    if args.split:
        try:
            overrides["split"] = tuple(float(x) for x in args.split.split(","))
        except ValueError:
            overrides["split"] = ()
        if len(overrides["split"]) != 3:
            raise ConfigError(f"--split expects three numbers (train,val,test) like 0.8,0.1,0.1, got {args.split!r}")
    cfg = load_build_config(args.config, **overrides)
    if args.detector or args.detector_param:
        spec = cfg.detector.model_dump()
        if args.detector and args.detector != spec["name"]:
            spec = {"name": args.detector, "params": {}}
        spec["params"].update(_parse_params(args.detector_param))
        cfg = load_build_config(cfg, detector=spec)
    summary = build(
        args.videos,
        args.out,
        cfg,
        workers=args.workers,
        shard_index=args.shard_index,
        num_shards=args.num_shards,
        retry_failed=args.retry_failed,
    )
    ds = summary.get("dataset", {})
    failed = summary["failed"]
    hint = ""
    if failed and not args.allow_failures:  # a batch job must notice; the reasons are in the QA report
        hint = (
            f"; {failed} video(s) failed (reasons: {args.out}/qa/report.md): exit 1 (--allow-failures to accept them)"
        )
    print(
        f"{summary['videos']} videos ({summary['done']} done and {failed} failed in this run); "
        f"dataset: {ds.get('clips', 0)} clips {ds.get('splits', {})} in {args.out}{hint}"
    )
    return 1 if failed and not args.allow_failures else 0


def run_merge(args) -> int:
    import sys

    from ..data.dataset import merge

    res = merge(args.parts, args.out, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(
        f"merged {res['parts']} parts ({res['videos_added']} videos added): {res['dataset']['clips']} clips "
        f"{res['dataset']['splits']} in {args.out}"
    )
    return 0


def run_report(args) -> int:
    from ..data.report import report

    rep = report(args.out, recompute=args.recompute_qa)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    c = rep["counts"]
    print(
        f"videos: {c['videos']} ({c['done']} done, {c['failed']} rejected); clips: {c['clips']} "
        f"({c['hours'] * 60:.2f} min)"
    )
    for s, v in c["per_split"].items():
        print(f"  {s:5s}: {v['clips']} clips, {v['identities']} identities, {v['frames']} frames")
    for reason, n in rep["rejections"].items():
        print(f"  rejected ({reason}): {n}")
    print(
        f"lip-audio coupling ({rep['coupling']['source']}): median {rep['coupling']['median']}, "
        f"{len(rep['coupling']['weak'])} weak clip(s)"
    )
    ch = rep["coupling"].get("recompute")
    if ch:
        print(
            f"  recomputed: {ch['changed']}/{ch['compared']} clips changed, mean |change| {ch['mean_abs_change']}, "
            f"largest {ch['max_abs_change']} ({ch['max_change_clip']}), best lag changed in {ch['lag_changed']}"
        )
    for fam, v in rep["families"]["per_family"].items():
        print(
            f"  {fam}: {v['clips']} clips, {v['minutes']:.2f} min, faceless frames {v['faceless_fraction']}, "
            f"corr median {v['coupling_median']} mean {v['coupling_mean']}, >= 0.2: {v['coupling_strong_fraction']}"
        )
    print(f"report: {args.out}/qa/report.md")
    return 0
