"""Cross-session batching (``a2k_toolkit.models.batching``, ``a2k serve``'s window batcher): real torch, the shipped
model, real threads and a real inference process; the server side on real servers on 127.0.0.1."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from a2k_toolkit.audio import load_audio
from a2k_toolkit.models.batching import WindowBatcher, active_batcher
from a2k_toolkit.pipeline import Pipeline

SAMPLES = Path(__file__).resolve().parents[1] / "a2k_toolkit" / "samples"
RATE = 16000


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_config(None)


@pytest.fixture(scope="module")
def reference(pipe):
    return pipe.detect(str(SAMPLES / "astronaut.jpg"))


@pytest.fixture(scope="module")
def speech():
    return load_audio(SAMPLES / "speech.wav", RATE)


def stream(pipe, reference, wav, batcher=None, chunk=320):
    """The keypoints of ``wav`` streamed in ``chunk``-sample pushes, each as a caller of ``batcher`` (if any)."""
    session = pipe.stream(reference=reference, sample_rate=RATE)
    frames = []
    for i in range(0, len(wav), chunk):
        if batcher is None:
            frames += session.push(wav[i : i + chunk])
        else:
            with batcher.caller():
                frames += session.push(wav[i : i + chunk])
    frames += session.flush()
    return np.stack([f.points for f in frames])


def windows(net, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 64, 320), dtype=np.float32), rng.standard_normal((n, 136), dtype=np.float32)


def test_traced_forward_equals_the_module(pipe):
    """The batcher's traced inference forms give their eager form's output exactly, for any batch size: the shipped
    ensemble's stacked form (models.stacked) for batches of up to STACKED_MAX_BATCH windows, the members one after
    the other for larger ones; the two agree to float rounding."""
    from a2k_toolkit.models.batching import STACKED_MAX_BATCH
    from a2k_toolkit.models.inference import fuse_for_inference
    from a2k_toolkit.models.stacked import TOLERANCE, stack_ensemble

    net = pipe.generator.net
    batcher = WindowBatcher()
    model = batcher.model(net, 64, 320)
    assert isinstance(model.small, torch.jit.ScriptModule) and isinstance(model.large, torch.jit.ScriptModule)
    fused, stacked = fuse_for_inference(net), fuse_for_inference(stack_ensemble(net))
    for n in (1, 2, 5, STACKED_MAX_BATCH + 1):
        x, r = windows(net, n, seed=n)
        with torch.inference_mode():
            members = fused(torch.from_numpy(x), torch.from_numpy(r)).numpy()
            want = stacked(torch.from_numpy(x), torch.from_numpy(r)).numpy() if n <= STACKED_MAX_BATCH else members
        got = batcher.forward(net, x, r)  # not started: runs in the caller's thread
        assert np.array_equal(got, want)
        np.testing.assert_allclose(got, members, atol=TOLERANCE)


def test_sessions_in_threads_get_the_rows_they_get_alone(pipe, reference, speech):
    """Four sessions pushing from four threads through one batcher: their windows are batched together, and each
    session's keypoints are the ones it streams alone (to float rounding: another batch size may sum a convolution
    in another order)."""
    clips = [speech[k * RATE // 2 : k * RATE // 2 + 3 * RATE] for k in range(4)]
    alone = [stream(pipe, reference, c) for c in clips]
    got: dict[int, np.ndarray] = {}
    with WindowBatcher(max_wait_s=0.02) as batcher:
        threads = [
            threading.Thread(target=lambda k=k: got.__setitem__(k, stream(pipe, reference, clips[k], batcher)))
            for k in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert batcher.windows > batcher.batches, "no two windows were ever batched together"
    for k in range(4):
        assert got[k].shape == alone[k].shape
        np.testing.assert_allclose(got[k], alone[k], atol=1e-3)  # pixels of a 512 px photo


def test_a_single_caller_streams_as_in_process(pipe, reference, speech):
    """One session alone in the batcher: every batch is its own window, run through the ensemble's stacked form, so
    its keypoints are the in-process ones to float rounding (the stacked layers sum in another order)."""
    wav = speech[: 2 * RATE]
    with WindowBatcher() as batcher:
        got = stream(pipe, reference, wav, batcher)
    want = stream(pipe, reference, wav)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-3)  # pixels of a 512 px photo


def test_inference_process_equals_the_thread(pipe):
    """With ``processes=True`` the batches run in a process of the worker's own, with the same result."""
    net = pipe.generator.net
    x, r = windows(net, 3)
    want = WindowBatcher().forward(net, x, r)
    with WindowBatcher(processes=True) as batcher:
        with batcher.caller():
            assert active_batcher() is batcher
            y = batcher.forward(net, x, r)
            y2 = batcher.forward(net, x[:1], r[:1])  # the network is sent once; later batches reuse it
    assert active_batcher() is None
    np.testing.assert_array_equal(y, want)
    np.testing.assert_allclose(y2, want[:1], atol=1e-5)
    assert batcher.batches == 2 and batcher.windows == 4 and 0 < batcher.compute_s <= batcher.busy_s


def test_a_failing_batch_fails_its_callers_only():
    """A forward pass that raises hands the error to the callers of that batch; the worker serves the next."""

    class Picky(torch.nn.Module):
        def forward(self, x, ref):
            if float(x[0, 0, 0]) < 0:
                raise ValueError("a negative first feature")
            return x[:, :, :1].repeat(1, 1, 136)

    net = Picky()
    bad = -np.ones((1, 4, 3), np.float32)
    good = np.ones((1, 4, 3), np.float32)
    ref = np.zeros((1, 136), np.float32)
    with WindowBatcher(max_wait_s=0, trace=False) as batcher:  # a network that branches on values: not traced
        with batcher.caller():
            with pytest.raises(ValueError, match="negative"):
                batcher.forward(net, bad, ref)
            assert np.array_equal(batcher.forward(net, good, ref), np.ones((1, 4, 136), np.float32))
    assert batcher.batches == 1


def test_the_batcher_waits_for_busy_callers_but_not_for_idle_ones():
    """A window waits (up to max_wait_s) for a caller that is still inside its push, so both go in one batch; with
    no other caller inside, it runs at once."""

    class Net(torch.nn.Module):
        def forward(self, x, ref):
            return x[:, :, :1].repeat(1, 1, 136)

    net = Net()
    x, ref = np.ones((1, 4, 3), np.float32), np.zeros((1, 136), np.float32)
    with WindowBatcher(max_wait_s=5.0, trace=False) as batcher:
        with batcher.caller():
            t0 = time.monotonic()
            batcher.forward(net, x, ref)
            assert time.monotonic() - t0 < 2.0  # alone: not the 5 s
        second = threading.Event()

        def other():
            with batcher.caller():
                second.wait()
                batcher.forward(net, x, ref)

        t = threading.Thread(target=other)
        t.start()
        while batcher._callers < 1:
            time.sleep(0.001)
        with batcher.caller():
            threading.Timer(0.2, second.set).start()
            batcher.forward(net, x, ref)
        t.join()
    assert batcher.batches == 2 and batcher.windows == 3  # the two of the second round in one batch


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
