"""``a2k serve``'s window batcher on real servers on 127.0.0.1 (docs/serve.md, Capacity): concurrent sessions get the
keypoints they get alone, ``/metrics`` counts the batches, a client that leaves while its window is in a batch does
not disturb the others, and the server without batching or with the batches in its own thread streams the same."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("websockets")

sys.path.insert(0, str(Path(__file__).parent))

from test_serve import (  # noqa: E402
    RATE,
    RawClient,
    get,
    in_process,
    metric,
    running,
    start_msg,
    wait_drained,
)

from a2k_toolkit import cli  # noqa: E402
from a2k_toolkit.audio import load_audio  # noqa: E402
from a2k_toolkit.pipeline import Pipeline  # noqa: E402
from a2k_toolkit.serve.client import stream_audio, to_pcm16  # noqa: E402

SPEECH = Path(__file__).resolve().parents[1] / "a2k_toolkit" / "samples" / "speech.wav"


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_config(None)


@pytest.fixture(scope="module")
def reference(pipe):
    return pipe.detect(str(SPEECH.parent / "astronaut.jpg"))


@pytest.fixture(scope="module")
def speech():
    return load_audio(SPEECH, RATE)


def concurrent(url, clips, reference):
    """Each clip streamed by its own client, all at once; their frames' points ``(T, 68, 2)``, in order."""
    got: dict[int, np.ndarray] = {}

    def one(k):
        out = stream_audio(url, clips[k], RATE, reference=reference.points[0])
        got[k] = np.stack([f[2] for f in out["frames"]])

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(clips))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return [got[k] for k in range(len(clips))]


@pytest.mark.parametrize("processes", [1, 0])
def test_concurrent_sessions_equal_in_process_and_metrics_count_batches(pipe, reference, speech, processes):
    """Three clients at once, with the batches in an inference process (the default) or in the server's thread:
    each gets the keypoints of an in-process session of its audio (to float rounding), and ``/metrics`` counts
    the batched forward passes."""
    clips = [speech[k * RATE : k * RATE + 3 * RATE] for k in range(3)]
    with running(pipe, max_sessions=4, inference_processes=processes) as addr:
        _, before = get(f"http://{addr}/metrics")
        got = concurrent(f"ws://{addr}/stream", clips, reference)
        wait_drained(addr)
        _, after = get(f"http://{addr}/metrics")
    for g, clip in zip(got, clips):
        np.testing.assert_allclose(g, in_process(pipe, reference, clip), atol=1e-3)
    batches = metric(after, "a2k_inference_batches_total") - metric(before, "a2k_inference_batches_total")
    win = metric(after, "a2k_inference_windows_total") - metric(before, "a2k_inference_windows_total")
    assert 0 < batches <= win
    assert metric(after, "a2k_inference_compute_seconds_total") <= metric(after, "a2k_inference_seconds_total")


def test_without_batching_no_batch_counters(pipe, reference, speech):
    """``batch_windows=0``: each session runs its own windows (as in-process, to float rounding: audio messages read
    ahead are pushed together, and a push's windows run as one batch), no batch counters."""
    wav = speech[: 2 * RATE]
    with running(pipe, batch_windows=0) as addr:
        got = stream_audio(f"ws://{addr}/stream", wav, RATE, reference=reference.points[0])
        _, text = get(f"http://{addr}/metrics")
    np.testing.assert_allclose(np.stack([f[2] for f in got["frames"]]), in_process(pipe, reference, wav), atol=1e-3)
    assert "a2k_inference_batches_total" not in text


def test_a_client_leaving_mid_batch_leaves_the_others_intact(pipe, reference, speech):
    """Clients that send a burst of audio (their windows queued in the batcher) and vanish at once, while another
    streams: the other's keypoints are unchanged, no error is counted, and the server is drained after."""
    wav = speech[: 4 * RATE]
    want = in_process(pipe, reference, wav)
    burst = to_pcm16(speech[: 2 * RATE])
    with running(pipe, max_sessions=10) as addr:
        result: dict = {}
        other = threading.Thread(
            target=lambda: result.update(stream_audio(f"ws://{addr}/stream", wav, RATE, reference=reference.points[0]))
        )
        other.start()
        for i in range(6):
            client = RawClient(addr)
            client.send(start_msg(reference))
            msg = client.recv()
            assert msg["type"] == "ready", msg
            for j in range(0, len(burst), 640):
                client.send(burst[j : j + 640])
            client.drop(("reset", "eof", "close")[i % 3])
        other.join(120)
        wait_drained(addr)
        _, text = get(f"http://{addr}/metrics")
    np.testing.assert_allclose(np.stack([f[2] for f in result["frames"]]), want, atol=1e-3)
    assert metric(text, "a2k_errors_total") == 0


def test_serve_flags():
    """``a2k serve``'s batching flags reach the settings; out-of-range values are the user's error (exit 2)."""
    from a2k_toolkit.commands.serve import settings_from
    from a2k_toolkit.models import ort_form

    parser = cli.build_parser()
    args = parser.parse_args(["serve", "--batch-windows", "8", "--batch-wait-ms", "2", "--inference-processes", "0"])
    st = settings_from(args)
    assert (st.batch_windows, st.batch_wait_ms, st.inference_processes, st.hop) == (8, 2.0, 0, None)
    assert settings_from(parser.parse_args(["serve", "--hop", "4"])).hop == 4
    # --inference-backend: auto resolved where the settings are made (onnxruntime where it is installed)
    auto = settings_from(parser.parse_args(["serve"])).inference_backend
    assert auto == ("onnxruntime" if ort_form.available() else "torch")
    assert settings_from(parser.parse_args(["serve", "--inference-backend", "torch"])).inference_backend == "torch"
    assert cli.main(["serve", "--port", "0", "--inference-backend", "tvm"]) == 2
    for bad in (["--batch-windows", "-1"], ["--inference-processes", "-1"], ["--hop", "0"], ["--batch-wait-ms", "-1"]):
        assert cli.main(["serve", "--port", "0", *bad]) == 2, bad
