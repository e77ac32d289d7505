"""Speed and memory of the Audio2Keypoint model at the paper's width (~7.6 M generator parameters).

    python benchmarks/bench_model.py [--quick] [--device auto|cpu|cuda|mps] [--batch-size 32] [--amp auto|off|bf16]

Prints one table:

* training throughput: full GAN steps (generator + PIV encoder + discriminator, all losses, Adam) through
  ``Trainer.train_step`` at the given batch size, in windows (samples) per second, in a fresh process started with
  the environment ``a2k train`` sets (``OMP_WAIT_POLICY=PASSIVE`` unless already set), with that process's peak RSS
  and the share of each step the real training loop (``Trainer.fit``) spent waiting for its next batch;
* inference real-time factor (compute time / audio duration; < 1 is faster than real time) of the ``audio2keypoint``
  generator for 10 s and 60 s of audio, with and without the log-mel front-end;
* peak memory of a fresh process generating 10 minutes (``--quick``: 2 minutes) of keypoints from features: the
  resident set size once the model is loaded and its peak while generating (polled from ``/proc/self/statm``;
  elsewhere ``resource.getrusage``), and the peak CUDA memory on a GPU.

Weights are random (speed does not depend on them); the inputs are synthetic clips (noise audio, jittered keypoints)
written as real clip files and read through the real data path.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def synthetic_clips(directory: Path, n: int, seconds: float, seed: int = 0) -> None:
    from a2k_toolkit.data.clips import Clip, save_clip

    rng = np.random.default_rng(seed)
    T = int(seconds * 25)
    base = rng.uniform(60, 160, (68, 2)).astype(np.float32)
    for i in range(n):
        kp = base + np.cumsum(rng.normal(0, 0.3, (T, 68, 2)), 0).astype(np.float32)
        audio = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
        save_clip(
            directory / f"synthetic_{i}.npz",
            Clip(keypoints=kp, audio=audio, frame_size=(224, 224), clip_id=f"synthetic_{i}"),
        )


def train_probe(
    work: str, device: str = "auto", amp: str = "auto", batch_size: int = 32, steps: int = 3, fit_steps: int = 3
) -> dict:
    """Run in a fresh process by :func:`run_train_probe`: build a paper-width ``Trainer`` on synthetic clips (4 x 20 s,
    written as clip files), time ``steps`` full GAN steps (``Trainer.train_step``, one warm-up first) on one batch,
    then train ``fit_steps`` steps through ``Trainer.fit`` (the real loop, loader included) and read its
    ``data_wait_fraction``. Returns the step times, the fit loop's seconds per step waiting for data, the generator's
    parameter count and the process's peak RSS (``ru_maxrss``: everything the training process ever held)."""
    import resource

    import torch

    from a2k_toolkit.data.windows import collate
    from a2k_toolkit.models import count_parameters
    from a2k_toolkit.training import Trainer

    work = Path(work)
    clips = work / "clips"
    clips.mkdir(exist_ok=True)
    synthetic_clips(clips, n=4, seconds=20)
    cfg = {
        "run_dir": str(work / "run"),
        "device": device,
        "amp": amp,
        "progress": False,
        "batch_size": batch_size,
        "data": {"train": [str(clips)], "window": 64, "stride": 16},
        "max_steps": fit_steps,
        "log_every": 1,
        "checkpoint_every": 10**6,
        "val_every": 10**6,
    }
    trainer = Trainer(cfg)
    batch = collate(trainer.train_set.__getitems__(trainer.epoch_batches(0)[0]))
    n = len(batch["keypoints"])
    if n != batch_size:
        raise RuntimeError(f"the synthetic training set gave a batch of {n}, expected {batch_size}")
    cuda = trainer.device.startswith("cuda")
    times = []
    for _ in range(steps + 1):  # the first is the warm-up
        t0 = time.perf_counter()
        trainer.train_step(batch)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    trainer.fit()  # fit_steps steps of the real loop; ends with a checkpoint in run/latest
    rows = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "data_wait_fraction" in r]
    wait = [r["data_wait_fraction"] * batch_size / r["samples_per_s"] for r in rows]  # seconds per step
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return {
        "device": trainer.device,
        "params": count_parameters(trainer.generator),
        "step_s": times[1:],
        "fit_wait_s": wait,
        "fit_step_s": [batch_size / r["samples_per_s"] for r in rows],
        "peak_rss_mib": rss,
        "checkpoint": str(work / "run" / "latest"),
    }


def run_train_probe(work: Path, **kwargs) -> dict:
    """:func:`train_probe` in a fresh Python process started as ``a2k train`` starts: with the environment defaults
    ``a2k train`` applies before torch loads (:data:`a2k_toolkit.cpu_runtime.TRAIN_ENV_DEFAULTS`), so the figure is
    what the command gets, and the peak memory is the training process's own."""
    from a2k_toolkit.cpu_runtime import TRAIN_ENV_DEFAULTS, apply_env_defaults

    env = os.environ.copy()
    apply_env_defaults(TRAIN_ENV_DEFAULTS, env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import bench_model; "
        f"print(json.dumps(bench_model.train_probe({str(work)!r}, **{kwargs!r})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"training probe failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_training(args, work: Path):
    import statistics

    steps = 2 if args.quick else 8
    r = run_train_probe(work, device=args.device, amp=args.amp, batch_size=args.batch_size, steps=steps)
    dt = statistics.median(r["step_s"])
    wait = statistics.median(r["fit_wait_s"]) / statistics.median(r["fit_step_s"])
    return r["device"], r["params"], dt, args.batch_size / dt, Path(r["checkpoint"]), r["peak_rss_mib"], wait


def bench_inference(args, checkpoint: Path):
    import torch

    from a2k_toolkit.builtin.audio2keypoint import Audio2KeypointGenerator
    from a2k_toolkit.builtin.logmel import LogMel
    from a2k_toolkit.device import resolve_device
    from a2k_toolkit.keypoints import Keypoints

    device = resolve_device(args.device)
    gen = Audio2KeypointGenerator(checkpoint=str(checkpoint)).to(device)
    fe = LogMel().to(device)
    ref = Keypoints(np.random.default_rng(0).uniform(60, 160, (1, 68, 2)), image_size=(224, 224))
    rows = []
    gen.generate(fe(np.zeros(16000, np.float32), 16000), ref)  # warm-up (loads the weights)
    for seconds in (10, 60):
        wav = (0.1 * np.random.default_rng(1).standard_normal(seconds * 16000)).astype(np.float32)
        t0 = time.perf_counter()
        feats = fe(wav, 16000)
        t1 = time.perf_counter()
        out = gen.generate(feats, ref)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        assert len(out) == seconds * 25
        rows.append((seconds, (t2 - t1) / seconds, (t2 - t0) / seconds))
    return rows


MEMORY_PROBE = r"""
import json, os, resource, sys, threading, time
import numpy as np
sys.path.insert(0, {repo!r})
import torch
from a2k_toolkit.builtin.audio2keypoint import Audio2KeypointGenerator
from a2k_toolkit.device import resolve_device
from a2k_toolkit.keypoints import Keypoints

def rss_mib():
    try:  # current resident set size (Linux)
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # elsewhere: the peak so far
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

device = resolve_device({device!r})
gen = Audio2KeypointGenerator(checkpoint={checkpoint!r}).to(device)
ref = Keypoints(np.random.default_rng(0).uniform(60, 160, (1, 68, 2)), image_size=(224, 224))
T = {seconds} * 25
feats = np.random.default_rng(0).normal(-40, 15, (T, 320)).astype(np.float32)
gen.generate(feats[:64], ref)  # load the weights, warm up
before = rss_mib()
peak = [before]
done = threading.Event()
def poll():
    while not done.is_set():
        peak[0] = max(peak[0], rss_mib())
        time.sleep(0.005)
thread = threading.Thread(target=poll, daemon=True)
thread.start()
if device.startswith("cuda"):
    torch.cuda.reset_peak_memory_stats()
t0 = time.perf_counter()
out = gen.generate(feats, ref)
dt = time.perf_counter() - t0
done.set()
thread.join()
cuda = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
print(json.dumps({{"frames": len(out), "before_mib": before, "peak_mib": max(peak[0], rss_mib()),
                  "features_mib": feats.nbytes / 2**20, "output_mib": out.points.nbytes / 2**20,
                  "cuda_peak_mib": cuda, "seconds": dt}}))
"""


def bench_memory(args, checkpoint: Path):
    seconds = 120 if args.quick else 600
    code = MEMORY_PROBE.format(repo=str(REPO), device=args.device, checkpoint=str(checkpoint), seconds=seconds)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise SystemExit(f"memory probe failed:\n{proc.stderr[-3000:]}")
    return seconds, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer timed steps, 2 min instead of 10 min for memory")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"])
    args = ap.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="a2k-bench-") as tmp:
        device, params, step_s, sps, ckpt, train_rss, wait = bench_training(args, Path(tmp))
        infer = bench_inference(args, ckpt)
        mem_s, mem = bench_memory(args, ckpt)
    print(
        f"\nAudio2Keypoint benchmark on {device} (torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"amp={args.amp}); generator parameters: {params / 1e6:.2f} M\n"
    )
    rows = [
        (
            f"training, full GAN step, batch {args.batch_size} x 64 frames",
            f"{sps:.1f} samples/s ({step_s * 1000:.0f} ms/step)",
        ),
        ("  peak RSS of the training process", f"{train_rss:.0f} MiB"),
        ("  time the training loop waits for data", f"{100 * wait:.2f} % of each step"),
    ]
    for seconds, rtf_gen, rtf_all in infer:
        rows.append(
            (f"inference {seconds} s audio: real-time factor", f"{rtf_gen:.4f} generator, {rtf_all:.4f} with log-mel")
        )
    rows.append(
        (
            f"inference {mem_s // 60} min audio ({mem['frames']} frames): peak RSS",
            f"{mem['peak_mib']:.0f} MiB = {mem['before_mib']:.0f} loaded + "
            f"{mem['peak_mib'] - mem['before_mib']:.0f} while generating (features {mem['features_mib']:.0f}, "
            f"output {mem['output_mib']:.0f}; {mem['seconds']:.1f} s)",
        )
    )
    if mem["cuda_peak_mib"] is not None:
        rows.append(("  peak CUDA memory", f"{mem['cuda_peak_mib']:.0f} MiB"))
    w = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(w)} | value")
    print(f"{'-' * w}-+-{'-' * 40}")
    for name, value in rows:
        print(f"{name.ljust(w)} | {value}")


if __name__ == "__main__":
    main()
