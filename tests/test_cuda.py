"""The same code on a CUDA GPU: training steps under each mixed-precision mode, a single-process NCCL group, and
inference matching the CPU. Skipped where no CUDA device is visible (CI); run on a GPU machine with
``benchmarks/gpu_check.sh`` (docs/benchmarks.md). The inputs are synthetic clips written as real clip files, so these
tests need neither ``../shared/data`` nor ffmpeg."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory) -> Path:
    """Four 8 s synthetic clips with something to learn: each a face of its own shape, place and size (the reference
    tells which) whose mouth opens with the loudness of its noise-burst audio (the audio tells when)."""
    from a2k_toolkit.data.clips import Clip, save_clip

    d = tmp_path_factory.mktemp("cuda-clips")
    rng = np.random.default_rng(0)
    face = rng.uniform(-1, 1, (68, 2)).astype(np.float32)
    T, sr = 200, 16000
    for i in range(4):
        loud = (rng.random(T) < 0.4).astype(np.float32)  # per frame: speaking or silent
        audio = (np.repeat(loud, sr // 25) * 0.3 + 0.01) * rng.standard_normal(T * sr // 25).astype(np.float32)
        shape = face + rng.normal(0, 0.1, face.shape)  # its own face shape
        kp = np.repeat(shape[None] * rng.uniform(30, 60) + rng.uniform(80, 140, 2), T, 0).astype(np.float32)
        kp[:, 57:60, 1] += 6 * loud[:, None]  # the lower lip drops while speaking
        kp[:, 65:68, 1] += 6 * loud[:, None]
        kp += rng.normal(0, 0.05, kp.shape).astype(np.float32)
        save_clip(
            d / f"synthetic_{i}.npz", Clip(keypoints=kp, audio=audio, frame_size=(224, 224), clip_id=f"synthetic_{i}")
        )
    return d


# the toolkit's tiny training config, wider and on the GPU, with the sync and mouth losses, EMA and faster learning
CUDA_CONFIG = {
    "device": "cuda",
    "batch_size": 8,
    "model": {"width": 32, "channels_2d": [8, 16]},
    "data": {"stride": 8},
    "max_steps": 30,
    "loss": {"sync": 1.0, "mouth": 1.0},
    "ema": 0.9,
    "optim": {"lr_g": 1e-3, "lr_e": 1e-3, "lr_d": 1e-3},
}


def tiny(clips: Path, run: Path, **over) -> dict:
    from a2k_toolkit.testing import tiny_train_config

    return tiny_train_config(clips, run, **{**CUDA_CONFIG, **over})


def _rows(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss_reg" in r]


def test_training_on_cuda_under_each_precision(clips_dir, tmp_path):
    """amp off / bf16 / fp16: the same first step as full precision (same seed, same batch), 30 finite steps, and a
    checkpoint that loads and runs on the CPU."""
    from a2k_toolkit.builtin.audio2keypoint import model_encoders
    from a2k_toolkit.models.checkpoint import load_generator, read_checkpoint
    from a2k_toolkit.training import Trainer

    first = {}
    for amp in ("off", "bf16", "fp16"):
        run = tmp_path / amp
        trainer = Trainer(tiny(clips_dir, run, amp=amp))
        assert trainer.device.startswith("cuda")
        assert trainer.amp_dtype == {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        assert trainer.scalers["g"].is_enabled() == (amp == "fp16")
        assert next(trainer.generator.parameters()).is_cuda
        init = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
        trainer.fit()
        rows = _rows(run)
        assert len(rows) == 30
        for r in rows:
            assert all(np.isfinite(r[k]) for k in ("loss_reg", "loss_adv", "loss_d", "loss_sync", "loss_piv_piv")), r
        first[amp] = rows[0]["loss_reg"]
        now = trainer.generator.state_dict()
        assert any(not torch.equal(now[k], init[k]) for k in init)
        info = read_checkpoint(run / "latest")
        net = load_generator(info, encoders=model_encoders(info.model))  # device-free: loads and runs on the CPU
        assert next(net.parameters()).device.type == "cpu"
        assert torch.isfinite(net(torch.zeros(1, 32, 320), torch.zeros(1, 136))).all()
    for amp in ("bf16", "fp16"):
        assert first[amp] == pytest.approx(first["off"], rel=0.03), first


def test_resume_on_cuda_continues_the_same_curve(clips_dir, tmp_path):
    from a2k_toolkit.training import Trainer

    Trainer(tiny(clips_dir, tmp_path / "full", max_steps=8, amp="off")).fit()
    Trainer(tiny(clips_dir, tmp_path / "part", max_steps=5, amp="off")).fit()
    Trainer(tiny(clips_dir, tmp_path / "part", max_steps=8, amp="off"), resume=True).fit()
    a, b = _rows(tmp_path / "full"), _rows(tmp_path / "part")
    for ra, rb in zip(a[5:], b[5:]):
        assert rb["loss_reg"] == pytest.approx(ra["loss_reg"], rel=1e-3, abs=1e-4)


def _nccl_worker(rank: int, world: int, port: int, cfg: dict, out: str) -> None:
    import os

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    from a2k_toolkit.training import Trainer

    trainer = Trainer(cfg)
    backend = torch.distributed.get_backend()
    summary = trainer.fit()
    Path(out, f"rank{rank}.json").write_text(
        json.dumps({"backend": backend, "device": trainer.device, "step": summary["step"]})
    )


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs one GPU per rank: needs 2 CUDA devices")
def test_ddp_with_nccl_one_process_per_gpu(clips_dir, tmp_path):
    """torchrun's environment, one rank per visible GPU: the NCCL group forms, DDP wraps the models, every rank trains
    the same steps. (A world of one is no group: ``a2k train`` then runs plainly; NCCL refuses two ranks on one GPU.)"""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    world = torch.cuda.device_count()
    cfg = tiny(clips_dir, tmp_path / "run", max_steps=6, amp="bf16", device="cuda")
    mp.spawn(_nccl_worker, args=(world, port, cfg, str(tmp_path)), nprocs=world, join=True)
    for rank in range(world):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got == {"backend": "nccl", "device": f"cuda:{rank}", "step": 6}
    assert (tmp_path / "run" / "latest" / "model.safetensors").is_file()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_generation_on_cuda_matches_the_cpu(clips_dir, tmp_path, precision, sample_speech_path, sample_image_path):
    from a2k_toolkit.builtin.audio2keypoint import Audio2KeypointGenerator
    from a2k_toolkit.builtin.logmel import LogMel
    from a2k_toolkit.io import load_audio
    from a2k_toolkit.keypoints import Keypoints
    from a2k_toolkit.training import Trainer

    Trainer(tiny(clips_dir, tmp_path / "run", max_steps=10, amp="off")).fit()
    feats = LogMel()(np.resize(load_audio(sample_speech_path, 16000), 16000 * 12), 16000)
    ref = Keypoints(np.random.default_rng(0).uniform(60, 160, (1, 68, 2)), image_size=(224, 224))
    ckpt = str(tmp_path / "run" / "latest")
    cpu = Audio2KeypointGenerator(checkpoint=ckpt).generate(feats, ref).points
    gpu = Audio2KeypointGenerator(checkpoint=ckpt, precision=precision).to("cuda").generate(feats, ref).points
    assert gpu.shape == cpu.shape == (300, 68, 2)
    scale = np.ptp(cpu[..., 0])  # face width in pixels
    tol = 1e-3 if precision == "fp32" else 2e-2  # fractions of the face: TF32 convolutions vs bf16 autocast
    assert np.abs(gpu - cpu).max() / scale < tol
    assert np.std(cpu[:, 62, 1] - cpu[:, 66, 1]) > 0  # a moving mouth, not a constant output
