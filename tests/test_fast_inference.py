"""The fast inference path (fused blocks, channels-last stem, windows on single-threaded workers) against the
straightforward path: same outputs to float32 rounding, same behaviours (any length, frame 0, determinism, threads)."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch

from a2k_toolkit.builtin.audio2keypoint import Audio2KeypointGenerator, model_encoders
from a2k_toolkit.builtin.logmel import LogMel
from a2k_toolkit.io import load_audio
from a2k_toolkit.models.config import ModelConfig, build_generator
from a2k_toolkit.models.inference import FusedConvNormAct, WindowedRunner, fuse_for_inference

# Tolerance, in normalised keypoint units (the output's std is about 0.4, a frame-to-frame step about 0.1): the fast
# path does the same arithmetic in another order (GroupNorm statistics from per-channel sums, channels-last 2D
# convolutions), so it may differ by float32 rounding only; measured 3e-6 at the paper width on 60 s of speech. 1e-4
# is 30x that and 1000x below any visible change; a wrong window, group or padding moves outputs by 0.01 or more.
TOL = 1e-4


@pytest.fixture(scope="module")
def speech_features(sample_speech_path):
    return LogMel()(np.resize(load_audio(sample_speech_path, 16000), 16000 * 14), 16000)  # tiled to 350 frames


@pytest.fixture(scope="module")
def small_net(speech_features):
    torch.manual_seed(0)
    cfg = ModelConfig(width=24, channels_2d=(8, 16))
    net = build_generator(cfg, (4, 80), **model_encoders(cfg)).eval()
    net.set_feature_stats(speech_features.mean(0), speech_features.std(0))
    return net


def test_fused_blocks_equal_the_modules(small_net, speech_features):
    fused = fuse_for_inference(small_net)
    blocks = [m for m in fused.modules() if isinstance(m, FusedConvNormAct)]
    # every conv -> GroupNorm -> LeakyReLU block is replaced (stem 2D, 1D encoder, bottleneck, up, merge)
    assert len(blocks) == len(small_net.audio.stem) + 2 + 2 * small_net.depth + 1 + small_net.depth * 2
    assert any(b.channels_last for b in blocks)
    # the original net is untouched and shares its parameters with the fused form
    assert not any(isinstance(m, FusedConvNormAct) for m in small_net.modules())
    assert {id(p) for p in fused.parameters()} == {id(p) for p in small_net.parameters()}
    x = torch.from_numpy(np.stack([speech_features[s : s + 64] for s in (0, 48, 96)]))
    ref = torch.randn(3, 136)
    with torch.inference_mode():
        expected, got = small_net(x, ref), fused(x, ref)
    assert (got - expected).abs().max().item() < TOL
    assert expected.std().item() > 0.05  # a meaningful comparison, not two near-constant outputs


@pytest.mark.parametrize("frames", [1, 37, 64, 65, 300])
def test_fast_runner_matches_the_windowed_path(small_net, speech_features, frames):
    feats = speech_features[:frames]
    ref = np.random.default_rng(0).normal(0, 1, 136).astype(np.float32)
    slow = WindowedRunner(small_net, 64, 16, batch_size=1, fast=False).run([(feats, ref)])[0]
    threads = torch.get_num_threads()
    fast = WindowedRunner(small_net, 64, 16, batch_size=4, workers=2).run([(feats, ref)])[0]
    assert torch.get_num_threads() == threads  # the workers' single-thread setting does not leak out
    assert fast.shape == slow.shape == (frames, 136) and fast.dtype == np.float32
    assert np.abs(fast - slow).max() < TOL
    again = WindowedRunner(small_net, 64, 16, batch_size=4, workers=2).run([(feats, ref)])[0]
    assert np.array_equal(fast, again)  # deterministic


def test_generator_fast_and_straightforward_agree(tiny_a2k_checkpoint, sample_speech_path):
    from a2k_toolkit.keypoints import Keypoints

    feats = LogMel()(load_audio(sample_speech_path, 16000)[: 16000 * 6], 16000)
    ref = Keypoints(np.random.default_rng(1).uniform(60, 160, (1, 68, 2)), image_size=(224, 224))
    fast = Audio2KeypointGenerator(checkpoint=str(tiny_a2k_checkpoint)).generate(feats, ref).points
    slow = Audio2KeypointGenerator(checkpoint=str(tiny_a2k_checkpoint), fast=False, batch_size=1)
    slow = slow.generate(feats, ref).points
    assert fast.shape == (len(feats), 68, 2)
    np.testing.assert_array_equal(fast[0], ref.points[0])  # frame 0 is the reference on both paths
    # pixels: the normalised tolerance times the keypoint scale (a 100-pixel face: well under 0.01 px)
    assert np.abs(fast - slow).max() < 0.01


def test_runnable_threads_reads_the_kernels_count():
    from a2k_toolkit.cpu_runtime import cpu_is_shared, own_runnable_threads, runnable_threads

    assert runnable_threads("0.52 0.58 0.59 3/211 12345\n") == 3
    assert runnable_threads("garbage") is None
    assert cpu_is_shared(1, 1) is False and cpu_is_shared(2, 1) is True
    assert cpu_is_shared(3, 3) is False  # this process's own spinning threads are not other work
    live, own = runnable_threads(), own_runnable_threads()
    assert live is None or live >= 1  # this thread is running while it reads
    assert own is None or own >= 1


def test_a_busy_cpu_is_seen_as_shared():
    import subprocess
    import sys
    import time

    from a2k_toolkit.cpu_runtime import cpu_is_shared, runnable_threads

    if runnable_threads() is None:
        pytest.skip("the kernel does not report runnable threads (not Linux)")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert all(cpu_is_shared() for _ in range(5))
    finally:
        spinner.kill()
        spinner.wait()


@pytest.mark.parametrize("shared", [True, False])
def test_default_workers_follow_the_load(small_net, speech_features, monkeypatch, shared):
    """Worker threads when other work shares the CPU, plain batches on the intra-op threads when it is idle; an
    explicit ``workers`` wins either way. The output is the same."""
    import a2k_toolkit.models.inference as inference

    calls = []
    original = WindowedRunner._parallel

    def spy(forward, batches, workers):
        calls.append(workers)
        return original(forward, batches, workers)

    monkeypatch.setattr(WindowedRunner, "_parallel", staticmethod(spy))
    monkeypatch.setattr(inference, "cpu_is_shared", lambda: shared)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    feats, ref = speech_features[:300], np.zeros(136, np.float32)
    auto = WindowedRunner(small_net, 64, 16, batch_size=4).run([(feats, ref)])[0]
    assert calls == ([2] if shared else [])
    forced = WindowedRunner(small_net, 64, 16, batch_size=4, workers=2).run([(feats, ref)])[0]
    assert calls[-1] == 2
    assert np.abs(auto - forced).max() < TOL


def _omp_max_threads():
    """OpenMP's thread count for the calling thread (torch's own libgomp), or None where it cannot be read."""
    import ctypes
    import glob
    import os

    libs = glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp*.so*"))
    if not libs:
        return None
    return ctypes.CDLL(libs[0]).omp_get_max_threads()


@pytest.mark.skipif(os.cpu_count() < 2, reason="needs 2 cores: with one, a new thread's default is already 1")
def test_a_new_thread_gets_the_process_torch_threads():
    """``match_torch_threads``: a thread started after ``torch.set_num_threads(1)`` still has OpenMP's default (every
    core) until it matches; then it has 1 (the server's and a stream's pushes run in such threads)."""
    from a2k_toolkit.cpu_runtime import match_torch_threads

    if _omp_max_threads() is None:
        pytest.skip("torch does not use a libgomp of its own here")
    seen = {}

    def worker():
        seen["before"] = _omp_max_threads()
        match_torch_threads()
        match_torch_threads()  # once per thread: the second call changes nothing
        seen["after"] = _omp_max_threads()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    finally:
        torch.set_num_threads(threads)
    if seen["before"] == 1:
        pytest.skip("OpenMP's default here is already 1 thread (OMP_NUM_THREADS?)")
    assert seen["after"] == 1


def test_freeze_heap_collects_then_freezes():
    """``freeze_heap``: a cycle that is garbage now is collected first; what is alive is moved to the permanent
    generation (so later full collections skip it)."""
    import gc
    import weakref

    from a2k_toolkit.cpu_runtime import freeze_heap

    class Node:
        pass

    dead, alive = Node(), Node()
    dead.me, alive.me = dead, alive  # two reference cycles; only `alive` is still referenced
    gone, kept = weakref.ref(dead), weakref.ref(alive)
    del dead
    try:
        freeze_heap()
        assert gone() is None  # collected before the freeze
        assert gc.get_freeze_count() > 0 and kept() is alive
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
