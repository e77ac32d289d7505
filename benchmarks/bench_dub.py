"""Batch dubbing throughput: jobs per minute for 10 s clips with 1 and 2 worker processes.

python benchmarks/bench_dub.py [--jobs 12] [--seconds 10] [--size 256] [--workers 1,2] [--data ../shared/data]

Each setting runs a fresh manifest (different faces, one 10 s cut of the real TTS speech in shared/data) into a fresh
output folder with the default pipeline (logmel + dlib + the shipped audio2keypoint + sketch at --size px). "wall"
includes starting the worker processes (importing torch, loading dlib); "start-up" is the time until the first job
started; "steady" is jobs per minute from the first job's start to the last job's end; "per job" is the mean job
time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FACES = ["obama.jpg", "leo.jpg", "angelina.jpg", "morgan.jpg", "taylor.jpg", "harry.jpg"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=12, help="jobs per setting")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length")
    ap.add_argument("--size", type=int, default=256, help="renderer output size (longest side, px)")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--data", default=os.environ.get("A2K_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--keep", action="store_true", help="keep the outputs (printed folder)")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]

    import soundfile as sf

    from a2k_toolkit.dubbing import dub_batch
    from a2k_toolkit.io import load_audio

    data = Path(args.data)
    if not (data / "speech").is_dir():
        print(f"real data not found at {data}; pass --data", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="a2k-bench-dub-"))
    wav = load_audio(data / "speech" / "vexpress_intro_tts.mp3", 16000)
    clip = tmp / "clip.wav"
    sf.write(str(clip), wav[: int(args.seconds * 16000)], 16000)
    config = {"renderer": {"name": "sketch", "params": {"size": args.size, "background": "reference"}}}
    rows = [
        {
            "id": f"job{i}",
            "image": str(data / "faces" / FACES[i % len(FACES)]),
            "audio": str(clip),
            "output": f"job{i}.mp4",
        }
        for i in range(args.jobs)
    ]
    manifest = tmp / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))

    results = []
    for workers in [int(w) for w in args.workers.split(",")]:
        out = tmp / f"out-w{workers}"
        t0, w0 = time.time(), time.perf_counter()
        summary = dub_batch(manifest, out, config=config, workers=workers, progress=False)
        wall = time.perf_counter() - w0
        done = [r for r in summary.records if r["status"] == "done"]
        if len(done) != args.jobs:
            print(summary.format(), file=sys.stderr)
            return 1
        per_job = statistics.mean(r["timings"]["total"] for r in done)
        first, last = min(r["started_at"] for r in done), max(r["finished_at"] for r in done)
        steady = args.jobs / (last - first) * 60
        results.append((workers, args.jobs, wall, args.jobs / wall * 60, first - t0, steady, per_job))

    cpus = os.cpu_count()
    print(
        f"\nbatch dubbing, {args.jobs} jobs of {args.seconds:g} s speech, sketch {args.size}px, {cpus} CPU cores, "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(
        f"{'workers':>7} | {'jobs':>4} | {'wall s':>6} | {'jobs/min':>8} | {'start-up s':>10} | "
        f"{'steady jobs/min':>15} | {'per job s':>9}"
    )
    print("-" * 80)
    for workers, jobs, wall, jpm, startup, steady, per_job in results:
        print(
            f"{workers:>7} | {jobs:>4} | {wall:>6.1f} | {jpm:>8.1f} | {startup:>10.1f} | {steady:>15.1f} | "
            f"{per_job:>9.2f}"
        )
    if args.keep:
        print(f"(outputs in {tmp})")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
