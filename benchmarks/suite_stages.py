"""The stages of ``a2k bench`` (:data:`suite.STAGES`): each takes the shared :class:`~suite_context.Context` and
returns ``{key: value}`` (see :mod:`suite` for the keys' units)."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from suite_context import HERE, REPO, SAMPLE_RATE, SAMPLES, Context, median_time, speech


# -------------------------------------------------------------------------------------------------------- stages
def stage_frontend(ctx: Context) -> dict[str, float]:
    """Log-mel front-end on 10 s of speech: seconds and real-time factor."""
    from a2k_toolkit.builtin.logmel import LogMel

    wav = speech(10)
    fe = LogMel().to(ctx.device)
    fe(wav, SAMPLE_RATE)  # warm-up
    t = median_time(lambda: fe(wav, SAMPLE_RATE), ctx.repeat)
    return {"frontend_10s_s": t, "frontend_rtf": t / 10}


def stage_hardware(ctx: Context) -> dict[str, float]:
    """This machine's dense float32 throughput with torch's intra-op threads: a 1024^3 sgemm and a 3x3 convolution
    (64 -> 64 channels, batch 8 of 64x64), GFLOP/s of the best of ``repeat + 2`` runs (the limit, not the typical)."""
    import torch

    def best_gflops(fn, flops: float, runs: int) -> float:
        fn()
        best = min(_timed(fn) for _ in range(runs))
        return flops / best / 1e9

    runs = ctx.repeat + 2
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    x = torch.randn(8, 64, 64, 64)
    with torch.inference_mode():
        sgemm = best_gflops(lambda: a @ b, 2 * 1024**3, runs)
        conv_flops = 2 * 8 * 64 * 64 * 9 * 64 * 64
        conv_gf = best_gflops(lambda: conv(x), conv_flops, runs)
    return {"hardware_sgemm_gflop_per_s": sgemm, "hardware_conv_gflop_per_s": conv_gf}


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def model_gflop(net, window: int, feature_dim: int) -> float:
    """GFLOP of one forward pass of ``net`` on one window (``torch.utils.flop_counter``: 2 per multiply-add of the
    convolutions and matrix products; normalisations and activations are not counted)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, window, feature_dim), torch.zeros(1, 136))
    return counter.get_total_flops() / 1e9


def stage_keypoints(ctx: Context) -> dict[str, float]:
    """The audio2keypoint generator (paper width, random weights) on log-mel features of 10 s, 60 s (and, without
    --quick, 10 min) of speech: seconds after load, front-end excluded; FLOPs and achieved GFLOP/s; the ``lite``
    preset's speed; the shipped default model's (an ensemble runs all its members); with --naive the straightforward
    path next to the fast one; without --quick the peak memory of 1 h of audio in a fresh process."""
    from a2k_toolkit.builtin.audio2keypoint import Audio2KeypointGenerator
    from a2k_toolkit.builtin.logmel import LogMel
    from a2k_toolkit.io import load_image
    from a2k_toolkit.models.config import count_parameters
    from a2k_toolkit.models.inference import window_plan
    from a2k_toolkit.pipeline import Pipeline

    ref = Pipeline.from_config({"renderer": None, "device": ctx.device}).detect(load_image(SAMPLES / "astronaut.jpg"))
    fe = LogMel().to(ctx.device)
    feats = {seconds: fe(speech(seconds), SAMPLE_RATE) for seconds in (10, 60)}
    out: dict[str, float] = {}

    def timed(gen, seconds: int) -> float:
        f = feats[seconds] if seconds in feats else fe(speech(seconds), SAMPLE_RATE)
        frames = []
        t = median_time(lambda: frames.append(len(gen.generate(f, ref))), ctx.repeat)
        if frames[-1] != seconds * 25:
            raise RuntimeError(f"audio2keypoint returned {frames[-1]} frames for {seconds} s, expected {seconds * 25}")
        return t

    variants = [("", "a2k", True, [(10, "10s"), (60, "60s")] + ([] if ctx.quick else [(600, "10min")]))]
    variants.append(("_lite", "lite", True, [(10, "10s"), (60, "60s")]))
    variants.append(("_shipped", None, True, [(10, "10s"), (60, "60s")]))  # a2k_toolkit/weights, as it is
    if ctx.naive:  # one window at a time, no fusion, intra-op threads: the straightforward path
        variants.append(("_naive", "a2k", False, [(10, "10s"), (60, "60s")]))
        variants.append(("_lite_naive", "lite", False, [(10, "10s"), (60, "60s")]))
    for suffix, preset, fast, lengths in variants:
        params = {"fast": fast} if fast else {"fast": False, "batch_size": 1}
        ckpt = str(ctx.checkpoint(preset)) if preset else None
        gen = Audio2KeypointGenerator(checkpoint=ckpt, **params).to(ctx.device)
        gen.generate(feats[10], ref)  # loads the weights, warms up
        for seconds, label in lengths:
            t = timed(gen, seconds)
            tag = suffix.replace("_naive", "")  # keypoints_lite_60s_naive_s: the variant's marker goes last
            mark = "_naive" if "_naive" in suffix else ""
            out[f"keypoints{tag}_{label}{mark}_s"] = t
            out[f"keypoints{tag}_{label}{mark}_rtf"] = t / seconds
        if fast:  # FLOPs are the same on both paths: count them once per model
            info = gen.info
            window_gf = model_gflop(gen.net, info.window, info.feature_shape[0] * info.feature_shape[1])
            windows_60s = len(window_plan(60 * 25, info.window, gen.params.overlap))
            out[f"keypoints{suffix}_params_m"] = count_parameters(gen.net) / 1e6
            out[f"keypoints{suffix}_window_gflop"] = window_gf
            out[f"keypoints{suffix}_60s_gflop"] = window_gf * windows_60s
            out[f"keypoints{suffix}_60s_gflop_per_s"] = window_gf * windows_60s / out[f"keypoints{suffix}_60s_s"]
    t_fe = median_time(lambda: fe(speech(60), SAMPLE_RATE), ctx.repeat)
    out["keypoints_60s_with_frontend_s"] = t_fe + out["keypoints_60s_s"]
    if not ctx.quick:
        out["keypoints_1h_peak_rss_mib"] = fresh_process_peak_mib(ctx.checkpoint("a2k"), 3600, ctx.device)
    return out


PEAK_PROBE = r"""
import sys
sys.path.insert(0, {here!r})
import numpy as np
from suite_context import PeakRSS, SAMPLE_RATE, speech
from a2k_toolkit.builtin.audio2keypoint import Audio2KeypointGenerator
from a2k_toolkit.builtin.logmel import LogMel
from a2k_toolkit.keypoints import Keypoints

gen = Audio2KeypointGenerator(checkpoint={checkpoint!r}).to({device!r})
fe = LogMel().to({device!r})
ref = Keypoints(np.random.default_rng(0).uniform(60, 160, (1, 68, 2)), image_size=(224, 224))
gen.generate(fe(speech(3), SAMPLE_RATE), ref)  # load the weights, warm up
with PeakRSS() as mem:
    wav = speech({seconds})
    out = gen.generate(fe(wav, SAMPLE_RATE), ref)
assert len(out) == {seconds} * 25
print(mem.peak_mib)
"""


def fresh_process_peak_mib(checkpoint: Path, seconds: int, device: str) -> float:
    """Peak RSS (MiB) of a fresh Python process that loads the generator, then turns ``seconds`` of speech (the
    waveform, 220 MiB for an hour, is counted) into features and keypoints."""
    import subprocess

    code = PEAK_PROBE.format(here=str(HERE), checkpoint=str(checkpoint), device=device, seconds=seconds)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"the {seconds} s memory probe failed:\n{proc.stderr[-2000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def stage_train(ctx: Context) -> dict[str, float]:
    """One full training step (generator + PIV encoder + discriminator, all losses, Adam) at batch 32 x 64 frames,
    in a fresh process started as ``a2k train`` starts (its environment defaults, e.g. ``OMP_WAIT_POLICY=PASSIVE``):
    samples (windows) per second, seconds per step, the seconds per step the real training loop waited for its next
    batch, and that process's peak RSS (``train_peak_rss_mib`` is then the training process's own, not this one's)."""
    from bench_model import run_train_probe

    work = ctx.work / "train"
    work.mkdir()
    r = run_train_probe(work, device=ctx.device, steps=ctx.repeat, fit_steps=max(3, ctx.repeat))
    t = statistics.median(r["step_s"])
    return {
        "train_step_s": t,
        "train_samples_per_s": 32 / t,
        "train_data_wait_s": statistics.median(r["fit_wait_s"]),
        "train_process_peak_rss_mib": r["peak_rss_mib"],
    }


def stage_loader(ctx: Context) -> dict[str, float]:
    """The training data loader (``Trainer.make_loader``, as ``a2k train`` builds it) over clip files of the real
    format (8 synthetic clips of 30 s): windows of 64 frames per second while it produces an epoch of batches of 32,
    and the one-time set-up (reading the clips, their log-mel features, the keypoint normaliser)."""
    from bench_model import synthetic_clips

    from a2k_toolkit.data.windows import ClipWindowDataset
    from a2k_toolkit.training import Trainer
    from a2k_toolkit.training.data import load_clips

    clips = ctx.work / "loader-clips"
    clips.mkdir()
    synthetic_clips(clips, n=8, seconds=30, seed=1)
    cfg = {
        "run_dir": str(ctx.work / "loader-run"),
        "device": ctx.device,
        "progress": False,
        "batch_size": 32,
        "data": {"train": [str(clips)], "window": 64, "stride": 16},
    }
    trainer = Trainer(cfg)
    d = trainer.cfg.data
    setup = median_time(
        lambda: ClipWindowDataset(load_clips(d.train, d), trainer.frontend, None, d.window, d.stride), ctx.repeat
    )
    batches = trainer.epoch_batches(0)
    windows = sum(len(b) for b in batches)

    def epoch():
        for batch in trainer.make_loader(batches):
            if len(batch["keypoints"]) != 32:
                raise RuntimeError(f"the loader gave a batch of {len(batch['keypoints'])}, expected 32")

    epoch()  # warm-up
    return {"loader_windows_per_s": windows / median_time(epoch, ctx.repeat), "loader_setup_s": setup}


def stage_landmarks(ctx: Context) -> dict[str, float]:
    """dlib face detection + 68 landmarks on the bundled 512x512 photo, every frame detected (no tracking): frames
    per second of one core (CPU time of this thread)."""
    import cv2

    from a2k_toolkit.builtin.dlib_detector import DlibDetector
    from a2k_toolkit.io import load_image

    cv2.setNumThreads(1)
    image = load_image(SAMPLES / "astronaut.jpg")
    det = DlibDetector()
    det.detect(image)  # loads the models
    frames = 5 if ctx.quick else 25
    cpu = median_time(lambda: [det.detect(image) for _ in range(frames)], ctx.repeat, clock=time.thread_time)
    return {"landmarks_frames_per_s": frames / cpu}


def stage_render(ctx: Context) -> dict[str, float]:
    """The warp and sketch renderers on the bundled photo driven by procedural keypoints: steady frames per second
    (wall clock, after the first frame) at 256x256 and 512x512."""
    from bench_render import measure, sample_keypoints

    from a2k_toolkit.builtin.sketch import SketchRenderer
    from a2k_toolkit.builtin.warp import WarpRenderer

    image, kp, _ = sample_keypoints(25 if ctx.quick else 100)
    out: dict[str, float] = {}
    for size in (256, 512):
        for name, renderer in (
            ("warp", WarpRenderer(size=size)),
            ("sketch", SketchRenderer(size=size, background="reference")),
        ):
            measure(renderer, kp, image, 1)  # warm-up
            fps = [measure(renderer, kp, image, 1)[1] for _ in range(ctx.repeat)]
            out[f"render_{name}_{size}_frames_per_s"] = statistics.median(fps)
    return out


def stage_generate(ctx: Context) -> dict[str, float]:
    """End to end as ``a2k generate`` does it: the default pipeline (logmel, dlib, the shipped audio2keypoint model,
    warp at 256 px), the bundled photo and 10 s of speech from a WAV file to an H.264 MP4 with audio; wall seconds
    after load."""
    from a2k_toolkit.io import write_wav
    from a2k_toolkit.pipeline import Pipeline

    audio = ctx.work / "speech-10s.wav"
    write_wav(audio, speech(10), SAMPLE_RATE)
    image = SAMPLES / "astronaut.jpg"
    pipe = Pipeline.from_config({"renderer": {"name": "warp", "params": {"size": 256}}, "device": ctx.device})
    video = ctx.work / "generate.mp4"

    def run():
        pipe(image=image, audio=audio).save(video=video)

    run()  # warm-up: loads dlib, ffmpeg, page cache
    return {"generate_10s_s": median_time(run, ctx.repeat)}
