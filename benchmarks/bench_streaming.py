"""Streaming against offline generation: lip sync and mouth LMD per lookahead, and the cost of a push.

    python benchmarks/bench_streaming.py                                  # videos of ../shared/data/clips.csv
    python benchmarks/bench_streaming.py --dataset runs/voxkp-all         # clips of a built Vox-KP dataset
    python benchmarks/bench_streaming.py --per-family 4 --lookaheads 0,200,full --hops 1,2 --workers 8

Clips: ``--per-family`` clips of every source family (``data.folds.family_of``), the ones with the lowest stable
hash of their id, each cut to ``--max-seconds``; keypoints extracted with dlib (cached, as ``a2k eval`` does) or read
from a built dataset. As ``a2k eval`` does, each clip's frame 0 (ground truth) is the reference and its own audio the
input. The generator is the shipped model (``audio2keypoint`` with its stored defaults) unless ``--checkpoint``;
``--folds N`` with checkpoints naming ``{fold}`` (cross-validation runs) gives each clip the model of the fold whose
training held its person out (the ``cross_validation.held_out`` a cross-validation checkpoint records), so the
numbers against the real clips are on people the model never saw.

Per lookahead (ms, or ``full``) and window hop, every clip's audio is pushed through a
:class:`~a2k_toolkit.streaming.StreamSession` in 20 ms chunks, and the streamed keypoints are compared

* with offline generation on the same audio (``generate``): the mouth-opening correlation at the best lag within
  +-3 frames, that lag, and the mouth LMD (IOD);
* with the real clip, next to offline's own numbers: lip sync (the correlation of the predicted with the real mouth
  opening, best lag within +-3, as ``a2k eval``'s ``lip corr``) and mouth LMD. ``ratio`` is the stream's lip sync
  over offline's (means over clips).

Cost: the wall time of every push of a 20 ms chunk, in ms (mean, p95, max), on this machine as it is loaded (one
torch thread per worker process; the load average is printed).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLIPS_CSV = REPO.parent / "shared" / "data" / "clips.csv"
CHUNK_S = 0.02  # seconds of audio per push


def parse_lookaheads(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def select(items, per_family: int):
    """``per_family`` items of each family (lowest stable hash of their id first), ``[(id, family, item)]`` sorted."""
    from a2k_toolkit.hashing import stable_hash

    by_family: dict[str, list] = {}
    for cid, fam, item in items:
        by_family.setdefault(fam, []).append((stable_hash(cid), cid, fam, item))
    picked = []
    for fam in sorted(by_family):
        picked += [(cid, f, item) for _, cid, f, item in sorted(by_family[fam])[:per_family]]
    return picked


def held_out_folds(args) -> dict[str, int]:
    """``{identity: fold}`` from the ``cross_validation.held_out`` of each fold's first checkpoint (``--folds``)."""
    from a2k_toolkit.models.ensemble import read_members

    fold_of: dict[str, int] = {}
    for i in range(args.folds):
        info = read_members(args.checkpoint.split(",")[0].format(fold=i))[0]
        cv = info.meta.get("cross_validation") or {}
        if not cv.get("held_out"):
            raise SystemExit(f"{info.path} is not a cross-validation checkpoint (no cross_validation.held_out)")
        fold_of.update({person: i for person in cv["held_out"]})
    return fold_of


def load_clips(args) -> list:
    """``[(clip_id, family, Clip, fold)]`` of the selection (fold: the one holding the clip out, with ``--folds``)."""
    from a2k_toolkit.data.folds import family_of

    fold_of = held_out_folds(args)
    if args.dataset:
        from a2k_toolkit.data.reader import VoxKPReader

        items = []
        for split in ("train", "val", "test"):
            for clip in VoxKPReader(Path(args.dataset), split, rank=0, world_size=1):
                if not args.folds or clip.identity in fold_of:
                    items.append((clip.clip_id, family_of(clip), clip))
        return [(cid, fam, clip, fold_of.get(clip.identity)) for cid, fam, clip in select(items, args.per_family)]
    if args.folds:
        raise SystemExit("--folds needs --dataset")
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.eval.sources import default_cache_dir, video_clip

    root = Path(args.clips_csv).parent
    with open(args.clips_csv, newline="", encoding="utf-8") as f:
        rows = [(r["path"], family_of(r), r) for r in csv.DictReader(f)]
    detector = Catalog().build("detector", "dlib")
    picked = []
    for path, fam, row in select(rows, args.per_family):
        clip = video_clip(root / path, detector, default_cache_dir())
        clip.clip_id, clip.meta = clip.clip_id or path, {**row, **(clip.meta or {})}
        picked.append((path, fam, clip, None))
    return picked


def usable(clip, max_seconds: float) -> int:
    T = len(clip.keypoints)
    if clip.valid is not None:
        bad = np.flatnonzero(~np.asarray(clip.valid, bool)[:T])
        T = int(bad[0]) if len(bad) else T
    return min(T, int(round(max_seconds * clip.fps)))


def run_clip(job) -> dict:
    """Every (lookahead, hop) on one clip: metrics and push times."""
    clip_id, family, clip, fold, args = job
    import torch

    torch.set_num_threads(1)
    from a2k_toolkit.eval import metrics as M
    from a2k_toolkit.keypoints import Keypoints
    from a2k_toolkit.pipeline import Pipeline
    from a2k_toolkit.streaming import StreamSession, lookahead_frames

    params = dict(args.params)
    if args.checkpoint:
        paths = [c.format(fold=fold) for c in args.checkpoint.split(",")]
        params["checkpoint"] = paths[0] if len(paths) == 1 else paths
    gen = {"name": "audio2keypoint", "params": params}
    pipe = Pipeline.from_config({"generator": gen, "detector": "dlib", "device": "cpu"})
    fe = pipe.audio
    T = usable(clip, args.max_seconds)
    wav = pipe.load_audio(np.asarray(clip.audio, np.float32), clip.sample_rate)
    wav = wav[: int(round(T * fe.sample_rate / fe.fps))]
    feats = pipe.features(wav)
    T = min(T, len(feats))
    feats, wav = feats[:T], wav[: int(round(T * fe.sample_rate / fe.fps))]
    gt = np.asarray(clip.keypoints[:T, :, :2], np.float64)
    ref = Keypoints(gt[0][None].astype(np.float32), image_size=tuple(clip.frame_size) or None)
    offline = pipe.generate(feats, ref).points.astype(np.float64)
    iod = M.reference_iod(gt)
    real_open, off_open = M.mouth_opening(gt, iod), M.mouth_opening(offline, iod)
    out = {
        "clip": clip_id,
        "family": family,
        "fold": fold,
        "frames": T,
        "offline": {"lip_real": M.best_lag_correlation(real_open, off_open)[0], "lmd_real": M.lmd(offline, gt, iod)},
        "runs": {},
    }
    chunk = int(round(CHUNK_S * fe.sample_rate))
    for la in args.lookaheads:
        frames = lookahead_frames(la, fe.fps)
        for hop in [1] if frames is None else sorted({min(h, frames + 1) for h in args.hops}):  # hop <= L + 1
            session = StreamSession(fe, pipe.generator, ref, lookahead_ms=la, seed=pipe.seed, hop=hop)
            frames, times = [], []
            for i in range(0, len(wav), chunk):
                t0 = time.perf_counter()
                frames += session.push(wav[i : i + chunk])
                times.append(time.perf_counter() - t0)
            frames += session.flush()
            pts = session.keypoints(frames).points.astype(np.float64)
            assert len(pts) == T, (clip_id, la, len(pts), T)
            s_open = M.mouth_opening(pts, iod)
            corr, lag = M.best_lag_correlation(off_open, s_open)
            out["runs"][f"{la}/{hop}"] = {
                "lookahead": la,
                "hop": hop,
                "frames": session.lookahead,
                "lip_offline": corr,
                "lag_offline": lag,
                "lmd_offline": M.lmd(pts, offline, iod),
                "max_diff_px": float(np.abs(pts - offline).max()),
                "lip_real": M.best_lag_correlation(real_open, s_open)[0],
                "lmd_real": M.lmd(pts, gt, iod),
                "push_ms": [1000.0 * t for t in times],
            }
    return out


def summarise(results: list[dict]) -> tuple[list[dict], dict]:
    keys = list(results[0]["runs"])
    off_lip = float(np.mean([r["offline"]["lip_real"] for r in results]))
    off_lmd = float(np.mean([r["offline"]["lmd_real"] for r in results]))
    rows = []
    for key in keys:
        runs = [r["runs"][key] for r in results]
        push = np.concatenate([run["push_ms"] for run in runs])
        lip = float(np.mean([run["lip_real"] for run in runs]))
        rows.append(
            {
                "lookahead": runs[0]["lookahead"],
                "hop": runs[0]["hop"],
                "frames": runs[0]["frames"],
                "lip_offline": float(np.mean([run["lip_offline"] for run in runs])),
                "lag_offline": float(np.mean([run["lag_offline"] for run in runs])),
                "lmd_offline": float(np.mean([run["lmd_offline"] for run in runs])),
                "max_diff_px": float(max(run["max_diff_px"] for run in runs)),
                "lip_real": lip,
                "ratio": lip / off_lip if off_lip else float("nan"),
                "lmd_real": float(np.mean([run["lmd_real"] for run in runs])),
                "push_mean_ms": float(push.mean()),
                "push_p95_ms": float(np.percentile(push, 95)),
                "push_max_ms": float(push.max()),
            }
        )
    return rows, {"lip_real": off_lip, "lmd_real": off_lmd}


def table(rows: list[dict], offline: dict) -> str:
    lines = [
        "| lookahead | hop | lip sync vs offline (r) | lag | mouth LMD vs offline (IOD) | lip sync vs real (r) | "
        "ratio | mouth LMD vs real (IOD) | push ms: mean | p95 | max |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        la = "full (64 frames)" if r["lookahead"] == "full" else f"{r['lookahead']} ms ({r['frames']} fr)"
        lines.append(
            f"| {la} | {r['hop']} | {r['lip_offline']:.3f} | {r['lag_offline']:+.2f} | {r['lmd_offline']:.4f} | "
            f"{r['lip_real']:.3f} | {r['ratio']:.2f} | {r['lmd_real']:.4f} | {r['push_mean_ms']:.1f} | "
            f"{r['push_p95_ms']:.1f} | {r['push_max_ms']:.1f} |"
        )
    lines.append(f"| offline | | 1 | 0 | 0 | {offline['lip_real']:.3f} | 1.00 | {offline['lmd_real']:.4f} | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--clips-csv", default=str(CLIPS_CSV), help="clips.csv of the shared data (videos)")
    src.add_argument("--dataset", help="a built Vox-KP dataset directory instead of the videos")
    ap.add_argument("--per-family", type=int, default=4, help="clips per source family")
    ap.add_argument("--max-seconds", type=float, default=8.0, help="each clip is cut to this many seconds")
    ap.add_argument("--lookaheads", type=parse_lookaheads, default=parse_lookaheads("0,40,80,120,200,400,full"))
    ap.add_argument("--hops", default="1,2", help="window hops (frames) to run at each shorter lookahead")
    ap.add_argument("--checkpoint", help="generator checkpoint(s), comma-separated, may name {fold} (default: shipped)")
    ap.add_argument("--params", type=json.loads, default={}, help="other generator params, as JSON")
    ap.add_argument("--folds", type=int, default=0, help="with --dataset: each clip gets the fold holding it out")
    ap.add_argument("--workers", type=int, default=1, help="processes (one torch thread each)")
    ap.add_argument("--json", help="write every number here")
    args = ap.parse_args(argv)
    args.hops = [int(h) for h in args.hops.split(",")]
    t0 = time.time()
    clips = load_clips(args)
    families = sorted({c[1] for c in clips})
    print(f"{len(clips)} clips of {len(families)} families ({', '.join(families)}), {time.time() - t0:.0f} s to load")
    jobs = [(*c, args) for c in clips]
    t0 = time.time()
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            results = list(pool.map(run_clip, jobs))
    else:
        results = [run_clip(j) for j in jobs]
    rows, offline = summarise(results)
    seconds = sum(r["frames"] for r in results) / 25.0
    print(
        f"{seconds:.0f} s of audio, {time.time() - t0:.0f} s; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs, {args.workers} worker(s)\n"
    )
    print(table(rows, offline))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "offline": offline, "clips": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
